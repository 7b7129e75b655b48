#!/usr/bin/env bash
# The peer comparison: idem (IdempotencyLayer over RedisStore) beside axum-idempotent,
# Powertools for AWS Lambda (Python) idempotent_function with its Redis persistence layer,
# and express-idempotency with its Redis adapter, all on the same local Redis and the same
# workload (examples/peer_load.rs: fresh keys, replays, races of identical requests).
# Peers are installed from their registries into bench/peers/.work (git-ignored); none of
# their code is committed. Each peer writes only keys under a prefix of its own, deleted
# after its run. Writes the table of medians to docs/bench/peers.md.
#
# The Redis: unless REDIS_URL names one, the script builds Redis 8.0.2 (bench/peers/redis.sh,
# from Debian's source tarball) and runs it on a free port for the whole comparison, since
# axum-idempotent's Redis store needs hash-field expiry (Redis >= 7.4).
#
#   bench/peers/run.sh                      # 3 runs of 10 s phases per peer
#   RUNS=1 DURATION=3s bench/peers/run.sh   # a quick look
#   REDIS_URL=redis://127.0.0.1:6379 bench/peers/run.sh   # an existing Redis
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$ROOT/bench/peers/.work
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-32}
OUT=${OUT:-$ROOT/docs/bench/peers.md}
PEERS=${PEERS:-"idem axum-idempotent axum-idempotent-memory powertools express-idempotency"}
mkdir -p "$WORK" "$(dirname "$OUT")"

log() { printf '\n== %s\n' "$*" >&2; }

REDIS_PID=
if [ -z "${REDIS_URL:-}" ]; then
  log "building Redis 8.0.2 into $WORK/redis"
  bench/peers/redis.sh "$WORK/redis"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$WORK/redis/bin/redis-server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    > "$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  REDIS_URL=redis://127.0.0.1:$port
  for _ in $(seq 1 50); do redis-cli -p "$port" ping > /dev/null 2>&1 && break; sleep 0.1; done
fi
redis_host=$(echo "$REDIS_URL" | sed -E 's#redis://([^:/]+).*#\1#')
redis_port=$(echo "$REDIS_URL" | sed -E 's#redis://[^:]+:([0-9]+).*#\1#; t; s#.*#6379#')
rcli() { redis-cli -h "$redis_host" -p "$redis_port" "$@"; }
log "Redis: $(rcli info server | grep -E '^redis_version' | tr -d '\r') at $REDIS_URL"

log "installing peers into $WORK"
if [ ! -d "$WORK/node/node_modules/express-idempotency-redis-adapter" ]; then
  mkdir -p "$WORK/node"
  echo '{"private":true}' > "$WORK/node/package.json"
  (cd "$WORK/node" && npm install --no-audit --no-fund --silent \
    express@4 express-idempotency express-idempotency-redis-adapter)
fi
if [ ! -x "$WORK/venv/bin/python" ] || ! "$WORK/venv/bin/python" -c 'import aws_lambda_powertools, redis, boto3' 2>/dev/null; then
  python3 -m venv "$WORK/venv"
  # boto3: the idempotency package imports its DynamoDB layer even when Redis is used.
  "$WORK/venv/bin/pip" install -q "aws-lambda-powertools[redis]" boto3
fi
log "building the Rust servers and the load driver (release)"
cargo build --release -q -p idem-bench --example peer_load --example peer_idem --example peer_axum_idempotent
BIN=$ROOT/target/release/examples

SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=
}
stop_all() {
  stop_server
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
}
trap stop_all EXIT

# start_server LOGFILE CMD...: runs CMD in the background and sets ADDR to the address it logs.
start_server() {
  local logfile=$1; shift
  "$@" > "$logfile" 2>&1 &
  SERVER_PID=$!
  ADDR=
  for _ in $(seq 1 100); do
    ADDR=$(grep -oE 'listening on [0-9.]+:[0-9]+' "$logfile" | head -n1 | awk '{print $3}') || true
    if [ -n "$ADDR" ]; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$logfile" >&2; return 1; fi
    sleep 0.1
  done
  cat "$logfile" >&2
  return 1
}

clean_prefix() { # delete this run's keys, and only them
  # Keys hold spaces and braces: one per line, deleted 500 per call.
  rcli --scan --pattern "$1*" | xargs -r -d '\n' -n 500 redis-cli -h "$redis_host" -p "$redis_port" unlink > /dev/null
}

RESULTS=$WORK/results.jsonl
: > "$RESULTS"
for peer in $PEERS; do
  for run in $(seq 1 "$RUNS"); do
    prefix="idem-bench-peer-$peer-$$-$run"
    log "$peer, run $run of $RUNS (keys under $prefix)"
    case $peer in
      idem) start_server "$WORK/$peer.log" "$BIN/peer_idem" --redis "$REDIS_URL" --prefix "$prefix:" ;;
      axum-idempotent) start_server "$WORK/$peer.log" "$BIN/peer_axum_idempotent" --redis "$REDIS_URL" ;;
      # Its Redis session store needs HEXPIRE (Redis >= 7.4); its in-memory store shows
      # what the layer itself does without a network store.
      axum-idempotent-memory) start_server "$WORK/$peer.log" "$BIN/peer_axum_idempotent" --store memory ;;
      powertools) start_server "$WORK/$peer.log" env AWS_LAMBDA_FUNCTION_NAME="$prefix" REDIS_URL="$REDIS_URL" \
        "$WORK/venv/bin/python" "$ROOT/bench/peers/powertools_server.py" ;;
      express-idempotency) start_server "$WORK/$peer.log" env NODE_PATH="$WORK/node/node_modules" \
        REDIS_URL="$REDIS_URL" node "$ROOT/bench/peers/express_server.js" ;;
      *) echo "unknown peer $peer" >&2; exit 1 ;;
    esac
    "$BIN/peer_load" --name "$peer" --url "http://$ADDR" --clients "$CLIENTS" \
      --duration "$DURATION" --key-prefix "$prefix" --quiet >> "$RESULTS"
    stop_server
    clean_prefix "$prefix"
  done
done

log "writing $OUT"
redis_version=$(rcli info server | grep -E '^redis_version:' | cut -d: -f2 | tr -d '\r')
jq -s -r --arg redis "$redis_version" --arg runs "$RUNS" --arg duration "$DURATION" --arg clients "$CLIENTS" '
  def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
  def r0: . * 1 | round;
  def r2: . * 100 | round / 100;
  group_by(.name) | map({
    name: .[0].name,
    fresh: (map(.fresh.rps) | median),
    replay: (map(.replay.rps) | median),
    fresh_p99: (map(.fresh.p99_ms) | median),
    replay_p99: (map(.replay.p99_ms) | median),
    race_max: (map(.race_runs | max) | max),
    replay_runs: (map(.replay_runs) | max),
    race_all: (map(.race_runs | map(tostring) | join(" ")) | join(" / ")),
    errors: (map(.errors | to_entries | map(.value) | add // 0) | add)
  }) as $rows
  | ($rows | map(select(.name == "idem")) | .[0].fresh // null) as $idem
  | "# Peers on the same Redis\n\n"
  + "Generated by `bench/peers/run.sh` (\($runs) runs of \($duration) per phase, \($clients) clients, medians; machine: 2 cores, server, load driver and Redis \($redis) on the same machine). Handler: 1 ms of fixed work. Race: 5 rounds of 32 identical requests released together; the right number of handler runs is 1 per round.\n\n"
  + "| peer | fresh req/s | replay req/s | p99 fresh ms | p99 replay ms | handler runs during replays (right: 0) | handler runs per race round, each round of each run (right: 1) | idem ÷ peer, fresh | errors |\n"
  + "|---|---:|---:|---:|---:|---:|---|---:|---:|\n"
  + ($rows | sort_by(-.fresh) | map(
      "| \(.name) | \(.fresh | r0) | \(.replay | r0) | \(.fresh_p99 | r2) | \(.replay_p99 | r2) | \(.replay_runs) | \(.race_all) | \(if $idem then ($idem / .fresh | r2) else "–" end) | \(.errors) |"
    ) | join("\n"))
  + "\n"
' "$RESULTS" > "$OUT"
cat "$OUT"
