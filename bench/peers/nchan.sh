#!/usr/bin/env bash
# Nchan peer for bm-bench (Debian nginx-light + libnginx-mod-nchan).
#   nchan.sh install   apt packages (through scripts/install-deps.sh bench)
#   nchan.sh start     write nginx.conf from the template and exec nginx (master + 1 worker) on 127.0.0.1:$BENCH_PORT
#   nchan.sh version   nginx and nchan versions
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
case "${1:-}" in
  install)
    bash "$root/scripts/install-deps.sh" bench
    ;;
  start)
    : "${BENCH_PORT:?}" "${BENCH_RUN:?}"
    mkdir -p "$BENCH_RUN/tmp"
    sed -e "s|@PORT@|$BENCH_PORT|" -e "s|@RUN@|$BENCH_RUN|g" "$here/nchan/nginx.conf" > "$BENCH_RUN/nginx.conf"
    ulimit -n "$(ulimit -Hn)"
    exec /usr/sbin/nginx -e stderr -p "$BENCH_RUN" -c "$BENCH_RUN/nginx.conf"
    ;;
  version)
    v="$(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //')"
    m="$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
    echo "$v, libnginx-mod-nchan $m"
    ;;
  *) echo "usage: $0 install|start|version" >&2; exit 2 ;;
esac
