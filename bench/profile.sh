#!/usr/bin/env bash
# Where a fresh payment's time goes: a sampling profile (perf, cpu-clock, whole machine) of
# `idem bench` sending fresh payments to a spawned `idem serve` on PostgreSQL. Prints the
# CPU share of each process (server, load generator, database) and, inside `idem serve`,
# of each part: HTTP, JSON, idempotency and service logic, SQL driver, runtime, kernel.
#
#   bench/profile.sh                  # 32 clients; CLIENTS=1 for one request at a time
#   IDEM_BENCH_NODE_ARGS="--batch-max 64" bench/profile.sh   # extra `idem serve` arguments
set -euo pipefail
cd "$(dirname "$0")/.."
IDEM=${IDEM_BIN:-target/release/idem}
DB=${IDEM_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
CLIENTS=${CLIENTS:-32}
OUT=target/idem-profile
mkdir -p "$OUT"
SERVE_ARGS=()
for arg in ${IDEM_BENCH_NODE_ARGS:-}; do SERVE_ARGS+=("--serve-arg=$arg"); done
"$IDEM" bench --spawn --database "$DB" --fresh-database --mix fresh=1 --clients "$CLIENTS" \
  --duration 20s ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} --quiet --json > "$OUT/bench.json" &
BENCH=$!
sleep 6 # accounts opened, load running
SERVER=$(pgrep -n -f "$(basename "$IDEM") serve" || true)
perf record -q -e cpu-clock -F 999 -a -o "$OUT/perf.data" -- sleep 10 2> /dev/null
ps -eLo lwp=,pid= > "$OUT/threads.txt" # perf names threads; this maps them to processes
wait "$BENCH"
perf report -i "$OUT/perf.data" --no-children --sort pid,dso,sym --stdio 2> /dev/null \
  > "$OUT/report.txt"
python3 bench/profile_buckets.py "$OUT/report.txt" "$OUT/threads.txt" "$SERVER" "$BENCH"
jq -r '"fresh payments/s during the profile: \(.kinds.fresh.rps | round)"' "$OUT/bench.json"
