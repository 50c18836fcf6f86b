#!/usr/bin/env bash
# Two relays as one over a three-server NATS cluster, on loopback (the
# relay-level part of issue 13's demo; WordPress is not involved):
#
#   1. three nats-servers in one NATS cluster (private config, temp dir);
#   2. relay 1 joins through NATS server 1, relay 2 through server 3;
#   3. Bob (user 2) listens on relay 2; Alice (user 3) on relay 1;
#   4. "WordPress" pushes to relay 1 only: Bob gets his event from relay 2,
#      and relay 1's push result counts him online;
#   5. relay 1's /metrics shows its peer and the NATS traffic.
#
# Everything stops on exit or Ctrl-C. Ports: BM_DEMO_PORT (default 8787)
# and the next ones (relays and their admin ports), NATS from 14222.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/nats-cluster.sh
. scripts/lib/nats-cluster.sh

BIN=${BM_RELAY_BIN:-target/release/bm-relay}
[ -x "$BIN" ] || { echo "demo-relay-cluster: $BIN is missing; run 'make relay' first" >&2; exit 1; }
PORT=${BM_DEMO_PORT:-8787}
NPORT=${BM_DEMO_NATS_PORT:-14222}
SITE=demo.local
RUN=$(mktemp -d)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. three nats-servers in one NATS cluster (127.0.0.1:$NPORT-$((NPORT + 2)))"
nats_cluster_start "$RUN" "$NPORT"
nats_cluster_wait "$NPORT"

keys=$("$BIN" keygen --site "$SITE" --json)
SECRET=$(sed -E 's/.*"site_secret":"([^"]+)".*/\1/' <<<"$keys")
RELAY_KEY=$(sed -E 's/.*"relay_key":"([^"]+)".*/\1/' <<<"$keys")

say "2. relay 1 (:$PORT, via NATS server 1) and relay 2 (:$((PORT + 2)), via NATS server 3)"
for r in 1 2; do
  p=$((PORT + 2 * (r - 1)))
  n=$((NPORT + 2 * (r - 1)))
  BM_RELAY_SITES="$SITE=$RELAY_KEY" "$BIN" serve --listen "127.0.0.1:$p" --admin-listen "127.0.0.1:$((p + 1))" \
    --nats "nats://127.0.0.1:$n" --node-name "relay-$r" 2>"$RUN/relay$r.log" &
  pids+=($!)
done
for r in 1 2; do
  a=$((PORT + 2 * (r - 1) + 1))
  for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$a/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
  echo "relay $r: $(curl -fsS "http://127.0.0.1:$a/healthz")"
done

say "3. Bob (user 2) listens on relay 2; Alice (user 3) on relay 1"
listen() { # relay-port user
  "$BIN" listen --url "ws://127.0.0.1:$1/v1/ws" --token "$("$BIN" token --secret - --site "$SITE" --user "$2" <<<"$SECRET")" \
    --secret - --site "$SITE" --count 1 --timeout 20 <<<"$SECRET"
}
listen $((PORT + 2)) 2 | sed 's/^/  bob@relay2:   /' &
bob=$!
pids+=($bob)
listen "$PORT" 3 | sed 's/^/  alice@relay1: /' &
alice=$!
pids+=($alice)
for _ in $(seq 100); do   # until relay 1 sees Bob (presence is cluster-wide)
  curl -fsS "http://127.0.0.1:$((PORT + 1))/metrics" 2>/dev/null | grep -q '^bm_relay_cluster_directory_entries [1-9]' && break
  sleep 0.05
done

say "4. WordPress pushes to relay 1 only: to Bob (on relay 2), then to Alice (on relay 1)"
"$BIN" push --url "http://127.0.0.1:$PORT" --site "$SITE" --secret - --to 2 \
  --type message.new --data '{"text":"Hello Bob, via relay 1 and NATS"}' <<<"$SECRET"
"$BIN" push --url "http://127.0.0.1:$PORT" --site "$SITE" --secret - --to 3 \
  --type message.new --data '{"text":"Hello Alice"}' <<<"$SECRET"
ok=0
wait "$bob" && wait "$alice" && ok=1

say "5. NATS traffic (relay 1)"
curl -fsS "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E '^bm_relay_cluster_(peers|deliveries_sent_total|nats_out_messages_total) '
if [ "$ok" = 1 ]; then say "done: both listeners got their event; everything stops on exit"; else
  echo "demo-relay-cluster: a listener did not get its event" >&2; tail -5 "$RUN"/relay*.log >&2; exit 1; fi
