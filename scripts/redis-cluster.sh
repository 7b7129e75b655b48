#!/usr/bin/env bash
# A three-master Redis Cluster on local ports, for idem's cluster tests and chaos runs.
#
#   scripts/redis-cluster.sh start   # start it (nothing to do when it is already up and ok)
#   scripts/redis-cluster.sh stop    # stop its servers and remove its directory
#   scripts/redis-cluster.sh url     # print the URL idem takes for it
#   scripts/redis-cluster.sh status  # print `cluster_state` (exit 1 unless ok)
#
# Environment: IDEM_CLUSTER_PORTS (default "30001 30002 30003"), IDEM_CLUSTER_DIR (default
# /tmp/idem-redis-cluster; one subdirectory per port holding nodes.conf, the pid file and
# the log). No replicas and nothing on disk but the node config: a master that dies loses
# its keys, and restarted with the same port and directory it rejoins with its slots.
# While one is down the others keep serving their own slots
# (`cluster-require-full-coverage no`).
set -euo pipefail

ports=(${IDEM_CLUSTER_PORTS:-30001 30002 30003})
dir=${IDEM_CLUSTER_DIR:-/tmp/idem-redis-cluster}
host=127.0.0.1

url() {
  local nodes=()
  for port in "${ports[@]}"; do nodes+=("$host:$port"); done
  (IFS=,; echo "redis+cluster://${nodes[*]}")
}

state() { # the cluster_state one node reports, or "down"
  redis-cli -h "$host" -p "$1" cluster info 2>/dev/null | tr -d '\r' \
    | sed -n 's/^cluster_state://p' | grep . || echo down
}

all_ok() {
  for port in "${ports[@]}"; do
    [[ $(state "$port") == ok ]] || return 1
  done
}

# One master, daemonized, as the chaos run restarts it: same port, same directory, so the
# same nodes.conf.
start_node() {
  local port=$1
  mkdir -p "$dir/$port"
  redis-server --port "$port" --bind "$host" --daemonize yes \
    --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" \
    --cluster-node-timeout 2000 --cluster-require-full-coverage no \
    --save "" --appendonly no --dir "$dir/$port" \
    --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log"
}

wait_for() { # description, probe...
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  echo "redis-cluster: $what did not happen in 10 s" >&2
  return 1
}

start() {
  if all_ok; then
    echo "redis-cluster: already up: $(url)"
    return 0
  fi
  for port in "${ports[@]}"; do
    if ! redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then
      start_node "$port"
    fi
  done
  for port in "${ports[@]}"; do
    wait_for "port $port answering" redis-cli -h "$host" -p "$port" ping >/dev/null
  done
  # A node that knows only itself has no slots: create the cluster. Nodes that already
  # agree (restarted from their nodes.conf) only need time to see each other again.
  local known
  known=$(redis-cli -h "$host" -p "${ports[0]}" cluster info | tr -d '\r' \
    | sed -n 's/^cluster_known_nodes://p')
  if [[ $known == 1 ]]; then
    local nodes=()
    for port in "${ports[@]}"; do nodes+=("$host:$port"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  fi
  wait_for "cluster_state:ok on every node" all_ok
  echo "redis-cluster: up: $(url)"
}

stop() {
  for port in "${ports[@]}"; do
    if [[ -f $dir/$port/redis.pid ]]; then
      kill "$(cat "$dir/$port/redis.pid")" 2>/dev/null || true
    fi
  done
  for port in "${ports[@]}"; do
    wait_for "port $port closing" bash -c "! redis-cli -h $host -p $port ping >/dev/null 2>&1"
  done
  rm -rf "$dir"
  echo "redis-cluster: stopped"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  url) url ;;
  status)
    state "${ports[0]}"
    all_ok
    ;;
  *)
    echo "usage: $0 start|stop|url|status" >&2
    exit 2
    ;;
esac
