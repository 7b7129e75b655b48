#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one after the other, one process each, and prints
# per target the executions, executions per second and crashes. Exits non-zero when any
# target crashed (its reproducer is then in fuzz/artifacts/<target>/).
#
#   fuzz/run.sh SECONDS [TARGET...]     all targets, or the ones named
#
# Needs `cargo install cargo-fuzz` and a nightly toolchain. New inputs go to
# target/fuzz-corpus/<target>; the committed corpus (corpus/<target>) and the kept
# reproducers (regressions/<target>) are read, never written. With MERGE=1, the new inputs
# that reach edges the committed corpus does not are merged into it afterwards.
# TOOLCHAIN (default nightly) and SANITIZER (default address) pass on to cargo fuzz.
set -euo pipefail

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")"
toolchain=${TOOLCHAIN:-nightly}
sanitizer=${SANITIZER:-address}
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for file in fuzz_targets/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi

# cargo fuzz SUBCOMMAND ARGS..., with the toolchain and sanitizer chosen above.
fuzz() { cargo "+$toolchain" fuzz "$1" --sanitizer "$sanitizer" "${@:2}"; }

fuzz build
work=target/fuzz-work
mkdir -p "$work"
printf '%-16s %12s %10s %8s\n' target executions exec/s crashes
failed=0
for target in "${targets[@]}"; do
  mkdir -p "$work/corpus/$target" "corpus/$target" "artifacts/$target"
  inputs=("$work/corpus/$target" "corpus/$target")
  [ -d "regressions/$target" ] && inputs+=("regressions/$target")
  options=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048)
  [ -f "dicts/$target.dict" ] && options+=(-dict="dicts/$target.dict")
  before=$(ls "artifacts/$target" | wc -l)
  status=0
  fuzz run "$target" "${inputs[@]}" -- "${options[@]}" >"$work/$target.log" 2>&1 || status=$?
  crashes=$(( $(ls "artifacts/$target" | wc -l) - before ))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
  stat() { sed -n "s/^stat::$1: *//p" "$work/$target.log" | tail -n1; }
  printf '%-16s %12s %10s %8s\n' "$target" "$(stat number_of_executed_units)" \
    "$(stat average_exec_per_sec)" "$crashes"
  if [ "$crashes" -ne 0 ]; then
    failed=1
    echo "  $target crashed: see $work/$target.log and artifacts/$target/" >&2
  elif [ "${MERGE:-0}" = 1 ]; then
    # Edges only, not hit counts: the committed corpus stays a few hundred small files.
    fuzz run "$target" "corpus/$target" "$work/corpus/$target" -- -merge=1 -use_counters=0 \
      >"$work/$target.merge.log" 2>&1
  fi
done
exit "$failed"
