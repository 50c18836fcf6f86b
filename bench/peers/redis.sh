#!/usr/bin/env bash
# redis-server for bm-bench's cluster scenario: the engine (broker and
# presence) of the two Centrifugo nodes on Redis. Debian's redis-server
# (scripts/install-deps.sh bench).
#   redis.sh start     exec redis-server on 127.0.0.1:$BENCH_PORT, nothing saved
#   redis.sh version   its version
set -euo pipefail
case "${1:-}" in
  install)
    command -v redis-server >/dev/null || bash "$(cd "$(dirname "$0")/../.." && pwd)/scripts/install-deps.sh" bench
    ;;
  start)
    : "${BENCH_PORT:?}" "${BENCH_RUN:?}"
    mkdir -p "$BENCH_RUN"
    ulimit -n "$(ulimit -Hn)"
    # no RDB snapshots, no AOF: Centrifugo's presence lives in memory only
    exec redis-server --bind 127.0.0.1 --port "$BENCH_PORT" --save '' --appendonly no --daemonize no \
      --dir "$BENCH_RUN" --logfile ''
    ;;
  version)
    redis-server --version | awk '{print "Redis " substr($3, 3)}'
    ;;
  *) echo "usage: $0 install|start|version" >&2; exit 2 ;;
esac
