#!/usr/bin/env bash
# Centrifugo v6 peer for bm-bench.
#   centrifugo.sh install   go install github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION into run/bench/bin
#   centrifugo.sh start     write centrifugo.json from the template and exec the server on 127.0.0.1:$BENCH_PORT
#   centrifugo.sh version   the module version the binary was built from
# Environment (set by bm-bench): BENCH_PORT, BENCH_RUN, BENCH_RELAY_KEY, BENCH_CENTRIFUGO_API_KEY;
# for a node of two (the cluster scenario) also BENCH_BROKER:
#   nats://127.0.0.1:port    the NATS broker (PUB/SUB only; presence stays per node)
#   redis://127.0.0.1:port   the Redis engine (broker and presence manager), presence on for every channel
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version="${CENTRIFUGO_VERSION:-v6.9.1}"
bindir="$root/run/bench/bin"
bin="$bindir/centrifugo"
case "${1:-}" in
  install)
    if [ ! -x "$bin" ]; then
      command -v go >/dev/null || { echo "centrifugo.sh: Go is needed to build Centrifugo (go install)" >&2; exit 1; }
      mkdir -p "$bindir"
      GOBIN="$bindir" go install "github.com/centrifugal/centrifugo/v6@$version"
    fi
    ;;
  start)
    : "${BENCH_PORT:?}" "${BENCH_RUN:?}" "${BENCH_RELAY_KEY:?}" "${BENCH_CENTRIFUGO_API_KEY:?}"
    mkdir -p "$BENCH_RUN"
    # the config's last line closes the object: a broker goes in before it
    extra=""
    case "${BENCH_BROKER:-}" in
      "") ;;
      nats://*) extra=", \"broker\": { \"enabled\": true, \"type\": \"nats\", \"nats\": { \"url\": \"$BENCH_BROKER\" } }" ;;
      redis://*)
        # Redis as the engine: PUB/SUB and presence in Redis, presence on
        # for the personal channels, as bm-relay keeps every user's
        # presence cluster-wide.
        extra=", \"engine\": { \"type\": \"redis\", \"redis\": { \"address\": [\"$BENCH_BROKER\"] } }"
        extra="$extra, \"channel\": { \"without_namespace\": { \"presence\": true } }"
        ;;
      *) echo "centrifugo.sh: BENCH_BROKER must be nats://… or redis://…" >&2; exit 2 ;;
    esac
    sed -e "s|@PORT@|$BENCH_PORT|" -e "s|@HMAC@|$BENCH_RELAY_KEY|" -e "s|@APIKEY@|$BENCH_CENTRIFUGO_API_KEY|" \
      -e "s|^}\$|  $extra\n}|" "$here/centrifugo/config.json" > "$BENCH_RUN/config.json"
    ulimit -n "$(ulimit -Hn)"
    exec "$bin" --config "$BENCH_RUN/config.json"
    ;;
  version)
    if command -v go >/dev/null && go version -m "$bin" >/dev/null 2>&1; then
      echo "Centrifugo $(go version -m "$bin" | awk '$1=="mod" {print $3}') ($(go version -m "$bin" | head -1 | awk '{print $2}'))"
    else
      "$bin" version
    fi
    ;;
  *) echo "usage: $0 install|start|version" >&2; exit 2 ;;
esac
