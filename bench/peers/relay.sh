#!/usr/bin/env bash
# bm-relay peer for bm-bench.
#   relay.sh install   build target/release/bm-relay (cargo, the workspace's own)
#   relay.sh start     exec the relay on 127.0.0.1:$BENCH_PORT (admin on +1)
#   relay.sh version   print its version
# Environment (set by bm-bench): BENCH_PORT, BENCH_RUN, BENCH_RELAY_KEY,
# BENCH_SITE, BM_RELAY (the binary); for a cluster node (the cluster
# scenario) also BENCH_NATS (nats://127.0.0.1:port) and BENCH_NODE (its name).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${BM_RELAY:-$root/target/release/bm-relay}"
case "${1:-}" in
  install)
    [ -x "$bin" ] || (cd "$root" && cargo build --release --locked -p bm-relay)
    ;;
  start)
    : "${BENCH_PORT:?}" "${BENCH_RELAY_KEY:?}" "${BENCH_SITE:?}"
    ulimit -n "$(ulimit -Hn)"
    # Defaults for everything (ping 25 s, 1 MiB queue per socket, no history:
    # the relay has none). Only warnings are logged: no per-connection lines.
    export RUST_LOG=warn
    # the relay key goes through the environment, not the command line
    export BM_RELAY_SITES="$BENCH_SITE=$BENCH_RELAY_KEY"
    # The idle scenario holds 19k sockets: above the default connection cap
    # (18,000, less 2,500 kept for pushes), so the cap is what the fd limit
    # allows, with a small reserve (the bench's pushes are few connections).
    # A build from before these caps (a before/after comparison with
    # --relay-bin) has no such keys and needs no file.
    : "${BENCH_RUN:?}"
    mkdir -p "$BENCH_RUN"
    config=()
    if grep -q api_reserve_connections "$bin"; then
      printf '[limits]\nmax_connections = %d\napi_reserve_connections = 50\n' "$(( $(ulimit -n) - 100 ))" \
        > "$BENCH_RUN/relay-limits.toml"
      config=(--config "$BENCH_RUN/relay-limits.toml")
    fi
    cluster=()
    if [ -n "${BENCH_NATS:-}" ]; then
      cluster=(--nats "$BENCH_NATS" --node-name "${BENCH_NODE:?}")
    fi
    exec "$bin" serve "${config[@]}" "${cluster[@]}" --listen "127.0.0.1:$BENCH_PORT" --admin-listen "127.0.0.1:$((BENCH_PORT + 1))"
    ;;
  version)
    v="$("$bin" --version)"
    c="$(git -C "$root" log -1 --format=%h -- relay 2>/dev/null || true)"
    d="$(git -C "$root" status --porcelain -- relay 2>/dev/null | head -1)"
    echo "$v${c:+ (relay/ at commit $c${d:+, with uncommitted changes})}"
    ;;
  *) echo "usage: $0 install|start|version" >&2; exit 2 ;;
esac
