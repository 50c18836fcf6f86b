#!/usr/bin/env bash
# nats-server for bm-bench's cluster scenario (the broker of the two relays
# and of the two Centrifugo nodes on NATS). Debian's nats-server
# (scripts/install-deps.sh broker).
#   nats.sh start     exec nats-server on 127.0.0.1:$BENCH_PORT, monitoring (/varz) on 127.0.0.1:$BENCH_MONITOR_PORT
#   nats.sh version   its version
# Core NATS only: no JetStream, no system account, nothing on disk.
set -euo pipefail
bin=""
for p in /usr/sbin/nats-server /usr/bin/nats-server /usr/local/bin/nats-server; do
  [ -x "$p" ] && { bin="$p"; break; }
done
case "${1:-}" in
  install)
    [ -n "$bin" ] || bash "$(cd "$(dirname "$0")/../.." && pwd)/scripts/install-deps.sh" broker
    ;;
  start)
    : "${BENCH_PORT:?}" "${BENCH_MONITOR_PORT:?}" "${BENCH_RUN:?}"
    [ -n "$bin" ] || { echo "nats.sh: nats-server is not installed (scripts/install-deps.sh broker)" >&2; exit 1; }
    mkdir -p "$BENCH_RUN"
    printf 'listen: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\nno_sys_acc: true\n' "$BENCH_PORT" "$BENCH_MONITOR_PORT" \
      > "$BENCH_RUN/nats.conf"
    ulimit -n "$(ulimit -Hn)"
    exec "$bin" -c "$BENCH_RUN/nats.conf"
    ;;
  version)
    [ -n "$bin" ] && "$bin" --version
    ;;
  *) echo "usage: $0 install|start|version" >&2; exit 2 ;;
esac
