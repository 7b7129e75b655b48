#!/usr/bin/env bash
# The payment benchmarks of docs/BENCHMARKS.md, on a release build of `idem`:
#  1. idem serve fresh payments against the bare SQL transaction, same run, 32 clients,
#     on PostgreSQL, SQLite and MariaDB (RUNS runs each, medians);
#  2. the default mix (fresh=80,replay=15,conflict=5) on PostgreSQL and SQLite;
#  3. a sweep of fresh-only and replay-only loads over 1, 4, 16, 32, 64 clients on
#     PostgreSQL, with the plot docs/bench/concurrency.png.
#  4. (part `baselines`) fresh payments against both baselines in the same run, the bare
#     SQL transaction and one SQL statement per payment, with accounts picked uniformly and
#     with 80 % of payments to 10 hot payees, at BASELINES_CLIENTS clients on
#     BASELINES_ENGINES (RUNS runs each, alternating, medians).
#  5. (part `batching`, not in the default parts) fresh payments with group commit off
#     (`--batch-max 1`) and on (`--batch-max BATCH_MAX`, default 64), each in a run beside
#     the one-statement baseline, uniform and hot accounts, at BATCH_CLIENTS clients on
#     BATCH_ENGINES (RUNS runs, the order of off and on alternating, medians) →
#     docs/bench/batching.md.
#  6. (part `broker`) the broker path: fresh orders through `idem serve --nats` and
#     `--amqp` on PostgreSQL, against the same consumer loop with the node's idempotency
#     off (`--baseline-unsafe`), BROKER_CLIENTS clients, RUNS pairs per broker, the brokers
#     alternating, the baseline first in odd pairs and last in even ones, medians. Needs an `idem` with the test guard: IDEM_BIN a build with
#     `--features unsafe-disable-idempotency`, or built so here when IDEM_BIN is unset.
# Every run uses fresh databases it creates and drops. Parts 1–3 write
# docs/bench/payments.md, part 4 docs/bench/baselines.md, part 5 docs/bench/broker.md.
#
#   bench/run.sh                        # every part: 3 runs of 10 s
#   bench/run.sh baselines              # only the named parts (payments, baselines, broker)
#   IDEM_BIN=/tmp/idem-guard bench/run.sh broker   # the broker part on a guard build
#   IDEM_NODE_BIN=path/to/idem bench/run.sh       # the spawned nodes run this binary, the
#                                       # load generator IDEM_BIN (or the build)
#   RUNS=1 DURATION=3s bench/run.sh     # a quick look
#   IDEM_BIN=path/to/idem bench/run.sh  # measure a given release binary, no build
#   IDEM_BENCH_NODE_ARGS="--flag value" bench/run.sh   # extra `idem serve` arguments for
#                                       # every spawned node (split on whitespace)
#   BASELINES_CLIENTS="32 64" BASELINES_ENGINES=postgres bench/run.sh baselines
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
SWEEP_DURATION=${SWEEP_DURATION:-5s}
CLIENTS=${CLIENTS:-32}
POSTGRES=${IDEM_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
SQLITE=${IDEM_BENCH_SQLITE:-sqlite://idem-bench.db}
MYSQL=${IDEM_BENCH_MYSQL:-mysql://root@127.0.0.1:3306/test}
BASELINES_CLIENTS=${BASELINES_CLIENTS:-64}
BASELINES_ENGINES=${BASELINES_ENGINES:-postgres mysql sqlite}
BROKER_CLIENTS=${BROKER_CLIENTS:-32}
BATCH_CLIENTS=${BATCH_CLIENTS:-1 64}
BATCH_ENGINES=${BATCH_ENGINES:-postgres mysql sqlite}
BATCH_MAX=${BATCH_MAX:-64}
NATS=${IDEM_BENCH_NATS:-nats://127.0.0.1:4222}
AMQP=${IDEM_BENCH_AMQP:-amqp://guest:guest@127.0.0.1:5672/%2f}
OUT=$ROOT/docs/bench/payments.md
BASELINES_OUT=$ROOT/docs/bench/baselines.md
BROKER_OUT=$ROOT/docs/bench/broker.md
BATCHING_OUT=$ROOT/docs/bench/batching.md
WORK=$ROOT/target/idem-bench
mkdir -p "$WORK" "$ROOT/docs/bench"
PARTS=${*:-payments baselines}
for part in $PARTS; do
  case $part in
    payments | baselines | batching | broker) ;;
    *) echo "unknown part '$part' (payments, baselines, batching, broker)" >&2; exit 2 ;;
  esac
done
wants() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# Every spawned node gets the extra arguments, such as a flag under test.
SERVE_ARGS=()
for arg in ${IDEM_BENCH_NODE_ARGS:-}; do SERVE_ARGS+=("--serve-arg=$arg"); done
url_of() {
  case $1 in
    postgres) echo "$POSTGRES" ;;
    sqlite) echo "$SQLITE" ;;
    mysql) echo "$MYSQL" ;;
    *) echo "unknown engine '$1' (postgres, mysql, sqlite)" >&2; return 2 ;;
  esac
}

log() { printf '\n== %s\n' "$*" >&2; }
if [ -n "${IDEM_BIN:-}" ]; then
  IDEM=$IDEM_BIN  # a release binary built before, such as a copy kept aside
else
  # The broker part's baseline needs the test guard's switch; the other parts run the
  # same code with the switch off.
  FEATURES=()
  if wants broker; then FEATURES=(--features unsafe-disable-idempotency); fi
  log "building idem (release${FEATURES[*]:+, ${FEATURES[*]}})"
  cargo build --release -q -p idem-cli ${FEATURES[@]+"${FEATURES[@]}"}
  IDEM=${CARGO_TARGET_DIR:-$ROOT/target}/release/idem
fi
NODE=${IDEM_NODE_BIN:-$IDEM}
bench() { "$IDEM" bench --spawn --idem-bin "$NODE" --fresh-database ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} "$@"; }

payments() {
  : > "$WORK/baseline.jsonl"
  for db in "postgres $POSTGRES" "sqlite $SQLITE" "mysql $MYSQL"; do
    set -- $db
    for run in $(seq 1 "$RUNS"); do
      log "fresh payments vs bare SQL on $1, run $run of $RUNS"
      bench --database "$2" --mix fresh=1 --clients "$CLIENTS" \
        --duration "$DURATION" --baseline-sql --json --quiet \
        | jq -c --arg engine "$1" '{engine: $engine, fresh: .kinds.fresh, sql: .baseline_sql.figures, ratio: .fresh_vs_sql, errors: (.errors | to_entries | map(.value) | add // 0)}' \
        >> "$WORK/baseline.jsonl"
    done
  done

  : > "$WORK/mix.jsonl"
  for db in "postgres $POSTGRES" "sqlite $SQLITE"; do
    set -- $db
    for run in $(seq 1 "$RUNS"); do
      log "default mix on $1, run $run of $RUNS"
      bench --database "$2" --clients "$CLIENTS" \
        --duration "$DURATION" --json --quiet | jq -c --arg engine "$1" '. + {engine: $engine}' >> "$WORK/mix.jsonl"
    done
  done

  log "sweep over clients on postgres"
  bench --database "$POSTGRES" --sweep 1,4,16,32,64 \
    --duration "$SWEEP_DURATION" --plot "$ROOT/docs/bench/concurrency.png" --json --quiet > "$WORK/sweep.json"

  log "writing $OUT"
  {
    echo "# Payment benchmarks (generated by bench/run.sh)"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); server, load generator and databases on the same machine. $RUNS runs of $DURATION, $CLIENTS clients, medians."
    echo
    echo "## idem serve fresh payments against the bare SQL transaction"
    echo
    echo "| database | idem serve fresh payments/s | bare SQL transactions/s | ratio (median of runs) | idem p99 ms | SQL p99 ms | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    jq -s -r '
      def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
      group_by(.engine) | .[] |
      "| \(.[0].engine) | \(map(.fresh.rps) | median | round) | \(map(.sql.rps) | median | round) | \(map(.ratio) | median * 100 | round / 100) | \(map(.fresh.p99_ms) | median * 100 | round / 100) | \(map(.sql.p99_ms) | median * 100 | round / 100) | \(map(.errors) | add) |"
    ' "$WORK/baseline.jsonl"
    echo
    echo "## The default mix (fresh=80, replay=15, conflict=5)"
    echo
    echo "| database | kind | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    jq -s -r '
      def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
      def r2: . * 100 | round / 100;
      group_by(.engine) | .[] | . as $runs | ["fresh", "replay", "conflict"][] as $k |
      "| \($runs[0].engine) | \($k) | \($runs | map(.kinds[$k].rps) | median | round) | \($runs | map(.kinds[$k].p50_ms) | median | r2) | \($runs | map(.kinds[$k].p90_ms) | median | r2) | \($runs | map(.kinds[$k].p99_ms) | median | r2) | \($runs | map(.kinds[$k].max_ms) | median | r2) | \($runs | map(.kinds[$k].errors) | add) |"
    ' "$WORK/mix.jsonl"
    echo
    echo "## Fresh payments and replays against concurrency (PostgreSQL, one run of $SWEEP_DURATION per point)"
    echo
    echo "![throughput and p99 against clients](concurrency.png)"
    echo
    echo "| clients | fresh req/s | fresh p99 ms | replay req/s | replay p99 ms | replay ÷ fresh |"
    echo "|---:|---:|---:|---:|---:|---:|"
    jq -r '.points[] | "| \(.clients) | \(.fresh.rps | round) | \(.fresh.p99_ms * 100 | round / 100) | \(.replay.rps | round) | \(.replay.p99_ms * 100 | round / 100) | \(.replay.rps / .fresh.rps * 100 | round / 100) |"' "$WORK/sweep.json"
    echo
    echo "Errors over the sweep: $(jq '.errors | to_entries | map(.value) | add // 0' "$WORK/sweep.json")"
  } > "$OUT"
  cat "$OUT"
}

baselines() {
  : > "$WORK/baselines.jsonl"
  # The run is the outer loop: every setting is measured once before any is measured again.
  for run in $(seq 1 "$RUNS"); do
    for engine in $BASELINES_ENGINES; do
      for clients in $BASELINES_CLIENTS; do
        for skew in uniform hot; do
          log "fresh payments vs both baselines on $engine, $clients clients, accounts $skew, run $run of $RUNS"
          bench --database "$(url_of "$engine")" --mix fresh=1 --clients "$clients" --accounts-skew "$skew" \
            --duration "$DURATION" --baseline-sql --baseline-statement --json --quiet \
            | jq -c --arg engine "$engine" --arg skew "$skew" --arg uptime "$(uptime)" '{engine: $engine, clients: .clients, skew: $skew,
                fresh: .kinds.fresh, sql: .baseline_sql.figures, statement: .baseline_statement.figures,
                vs_sql: .fresh_vs_sql, vs_statement: .fresh_vs_statement, uptime: $uptime,
                errors: ((.errors | to_entries | map(.value) | add // 0) + (.baseline_sql.errors | to_entries | map(.value) | add // 0)
                  + (.baseline_statement.errors | to_entries | map(.value) | add // 0))}' \
            >> "$WORK/baselines.jsonl"
        done
      done
    done
  done

  log "writing $BASELINES_OUT"
  {
    echo "# Fresh payments against both SQL baselines (generated by bench/run.sh baselines)"
    echo
    echo "Machine: $(nproc) cores; server, load generator and databases on the same machine. $RUNS runs of $DURATION per setting, alternating, medians; each ratio divides two rates of the same run. Commit $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%d). Extra node arguments: ${IDEM_BENCH_NODE_ARGS:-none}. Load at the end: $(uptime)."
    echo
    echo "| database | clients | accounts | idem fresh/s | transaction/s | statement/s | idem ÷ transaction | idem ÷ statement | runs (÷ transaction; ÷ statement) | idem p99 ms | errors |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|"
    jq -s -r '
      def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
      def r2: . * 100 | round / 100;
      group_by([.engine, .clients, .skew]) | .[] |
      "| \(.[0].engine) | \(.[0].clients) | \(.[0].skew) | \(map(.fresh.rps) | median | round) | \(map(.sql.rps) | median | round) | \(map(.statement.rps) | median | round) | **\(map(.vs_sql) | median | r2)** | **\(map(.vs_statement) | median | r2)** | \(map(.vs_sql | r2 | tostring) | join(", ")); \(map(.vs_statement | r2 | tostring) | join(", ")) | \(map(.fresh.p99_ms) | median | r2) | \(map(.errors) | add) |"
    ' "$WORK/baselines.jsonl"
  } > "$BASELINES_OUT"
  cat "$BASELINES_OUT"
}

batching() {
  : > "$WORK/batching.jsonl"
  for run in $(seq 1 "$RUNS"); do
    # Odd runs measure batching off first, even runs on first.
    SETTINGS="1 $BATCH_MAX"
    if [ $((run % 2)) -eq 0 ]; then SETTINGS="$BATCH_MAX 1"; fi
    for engine in $BATCH_ENGINES; do
      for clients in $BATCH_CLIENTS; do
        # One client is the latency check: uniform accounts only.
        SKEWS="uniform hot"
        if [ "$clients" -eq 1 ]; then SKEWS=uniform; fi
        for skew in $SKEWS; do
          for batch in $SETTINGS; do
            log "fresh payments, --batch-max $batch, vs one statement on $engine, $clients clients, accounts $skew, run $run of $RUNS"
            bench --database "$(url_of "$engine")" --mix fresh=1 --clients "$clients" --accounts-skew "$skew" \
              --duration "$DURATION" --baseline-statement --serve-arg=--batch-max="$batch" --json --quiet \
              | jq -c --arg engine "$engine" --arg skew "$skew" --argjson batch "$batch" --argjson run "$run" --arg uptime "$(uptime)" \
                '{engine: $engine, clients: .clients, skew: $skew, batch: $batch, run: $run, fresh: .kinds.fresh,
                  statement: .baseline_statement.figures, vs_statement: .fresh_vs_statement, uptime: $uptime,
                  errors: ((.errors | to_entries | map(.value) | add // 0)
                    + (.baseline_statement.errors | to_entries | map(.value) | add // 0))}' \
              >> "$WORK/batching.jsonl"
          done
        done
      done
    done
  done

  log "writing $BATCHING_OUT"
  {
    echo "# Group commit: fresh payments with batching off and on, against one statement per payment (generated by bench/run.sh batching)"
    echo
    echo "Machine: $(nproc) cores; server, load generator and databases on the same machine. $RUNS runs of $DURATION per setting, off and on alternating first, medians; each run of idem is followed by the one-statement baseline on the same database. Commit $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%d). --batch-max $BATCH_MAX. Extra node arguments: ${IDEM_BENCH_NODE_ARGS:-none}. Load at the end: $(uptime)."
    echo
    python3 "$ROOT/bench/batching_table.py" "$WORK/batching.jsonl"
  } > "$BATCHING_OUT"
  cat "$BATCHING_OUT"
}

broker() {
  : > "$WORK/broker.jsonl"
  # The run is the outer loop: each broker's pair is measured once before any again.
  for run in $(seq 1 "$RUNS"); do
    for target in "nats $NATS" "amqp $AMQP"; do
      set -- $target
      # Odd runs measure the baseline first, even runs last: running second gains or
      # loses (warm caches, fuller tables and stream) on alternate sides.
      ORDER=()
      if [ $((run % 2)) -eq 0 ]; then ORDER=(--baseline-last); fi
      log "$1: idem serve against its consumer loop without idempotency, run $run of $RUNS ${ORDER[*]:-}"
      bench --broker "$2" --database "$POSTGRES" --clients "$BROKER_CLIENTS" \
        --duration "$DURATION" --baseline-unsafe ${ORDER[@]+"${ORDER[@]}"} --json --quiet \
        | jq -c --arg uptime "$(uptime)" '{broker: .broker, clients: .clients, baseline_first: .baseline_first, idem: .idem.figures,
            unsafe: .baseline_unsafe.figures, ratio: .idem_vs_unsafe, uptime: $uptime,
            errors: ((.idem.errors | to_entries | map(.value) | add // 0)
              + (.baseline_unsafe.errors | to_entries | map(.value) | add // 0))}' \
        >> "$WORK/broker.jsonl"
    done
  done

  log "writing $BROKER_OUT"
  {
    echo "# Payments through a broker against the same consumer loop without idempotency (generated by bench/run.sh broker)"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); node, publishers, brokers and PostgreSQL on the same machine. $RUNS pairs of $DURATION per broker, the brokers alternating; both nodes of a pair on the same stream and database, the node with \`--unsafe-disable-idempotency\` first in odd pairs and last in even ones; each ratio divides the two rates of one pair; medians. Commit $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%d), load generator $IDEM, nodes $NODE. Extra node arguments: ${IDEM_BENCH_NODE_ARGS:-none}. Load at the end: $(uptime)."
    echo
    echo "| broker | clients | idem replies/s | without idempotency replies/s | idem ÷ without | runs | idem p50 / p99 ms | without p50 / p99 ms | errors |"
    echo "|---|---:|---:|---:|---:|---|---:|---:|---:|"
    jq -s -r '
      def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
      def r2: . * 100 | round / 100;
      group_by(.broker) | .[] |
      "| \(.[0].broker) | \(.[0].clients) | \(map(.idem.rps) | median | round) | \(map(.unsafe.rps) | median | round) | **\(map(.ratio) | median | r2)** | \(map(.ratio | r2 | tostring) | join(", ")) | \(map(.idem.p50_ms) | median | r2) / \(map(.idem.p99_ms) | median | r2) | \(map(.unsafe.p50_ms) | median | r2) / \(map(.unsafe.p99_ms) | median | r2) | \(map(.errors) | add) |"
    ' "$WORK/broker.jsonl"
  } > "$BROKER_OUT"
  cat "$BROKER_OUT"
}

if wants payments; then payments; fi
if wants baselines; then baselines; fi
if wants batching; then batching; fi
if wants broker; then broker; fi
