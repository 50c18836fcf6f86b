#!/usr/bin/env bash
# socket.io 4 peer for bm-bench (Node.js, npm).
#   socketio.sh install   npm ci in bench/peers/socketio (from the checked-in package-lock.json)
#   socketio.sh start     exec node server.js on 127.0.0.1:$BENCH_PORT
#   socketio.sh version   node and socket.io versions
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
case "${1:-}" in
  install)
    [ -d "$here/socketio/node_modules/socket.io" ] || (cd "$here/socketio" && npm ci --no-audit --no-fund)
    ;;
  start)
    : "${BENCH_PORT:?}" "${BENCH_RELAY_KEY:?}" "${BENCH_SITE:?}"
    ulimit -n "$(ulimit -Hn)"
    export NODE_ENV=production
    exec node "$here/socketio/server.js"
    ;;
  version)
    echo "socket.io $(node -p 'require(process.argv[1]).version' "$here/socketio/node_modules/socket.io/package.json") on Node.js $(node --version)"
    ;;
  *) echo "usage: $0 install|start|version" >&2; exit 2 ;;
esac
