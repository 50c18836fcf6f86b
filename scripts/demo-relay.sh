#!/usr/bin/env bash
# The relay on its own, end to end on loopback (called by `make demo`; the
# Makefile builds target/release/bm-relay first):
#
#   1. `bm-relay keygen` makes a site secret and its relay key;
#   2. the relay starts with that relay key only (it never sees the secret);
#   3. `bm-relay listen` connects as user 2 (and watches thread 7), holding
#      the secret the way a browser holds its keys, so it can open envelopes;
#   4. `bm-relay push` seals two events (a user-key and a thread-key one) and
#      sends them signed, as WordPress would;
#   5. the listener prints them opened; the relay saw only ciphertext.
#
# Everything stops on exit or Ctrl-C. Ports: BM_DEMO_PORT (default 8787) and
# the next one for the admin listener.
set -euo pipefail

BIN=${BM_RELAY_BIN:-target/release/bm-relay}
[ -x "$BIN" ] || { echo "demo-relay: $BIN is missing; run 'make build' first" >&2; exit 1; }
PORT=${BM_DEMO_PORT:-8787}
ADMIN=$((PORT + 1))
SITE=demo.local

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. a new site: bm-relay keygen --site $SITE"
keys=$("$BIN" keygen --site "$SITE" --json)
SECRET=$(sed -E 's/.*"site_secret":"([^"]+)".*/\1/' <<<"$keys")
RELAY_KEY=$(sed -E 's/.*"relay_key":"([^"]+)".*/\1/' <<<"$keys")
echo "site secret (WordPress only): ${SECRET:0:6}…   relay key (the relay's only key): ${RELAY_KEY:0:6}…"

say "2. the relay: bm-relay serve --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN --site $SITE=<relay key>"
"$BIN" serve --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN" --site "$SITE=$RELAY_KEY" &
relay=$!
pids+=($relay)
for _ in $(seq 200); do
  curl -fsS "http://127.0.0.1:$ADMIN/healthz" >/dev/null 2>&1 && break
  if ! kill -0 "$relay" 2>/dev/null || ! [ -d "/proc/$relay" ] || grep -q '^State:.*Z' "/proc/$relay/status" 2>/dev/null; then
    echo "demo-relay: the relay did not start (port $PORT or $ADMIN in use? set BM_DEMO_PORT)" >&2
    exit 1
  fi
  sleep 0.05
done
curl -fsS "http://127.0.0.1:$ADMIN/healthz" || { echo "demo-relay: the relay is not healthy" >&2; exit 1; }
echo

say "3. a subscriber: bm-relay listen as user 2, watching thread 7 (it holds the secret, so it opens envelopes)"
TOKEN=$("$BIN" token --secret - --site "$SITE" --user 2 <<<"$SECRET")
THREAD_TOKEN=$("$BIN" token --secret - --site "$SITE" --user 2 --thread 7 <<<"$SECRET")
"$BIN" listen --url "ws://127.0.0.1:$PORT/v1/ws" --token "$TOKEN" \
  --thread 7 --thread-token "$THREAD_TOKEN" \
  --secret - --site "$SITE" --count 2 --timeout 20 <<<"$SECRET" &
listener=$!
pids+=($listener)
for _ in $(seq 100); do   # until the relay counts the listener's subscription
  curl -fsS "http://127.0.0.1:$ADMIN/metrics" | grep -q '^bm_relay_subscriptions 1$' && break
  sleep 0.05
done

say "4. WordPress-style pushes: bm-relay push (sealed, signed)"
echo "-> to user 2, sealed with user 2's key:"
"$BIN" push --url "http://127.0.0.1:$PORT" --site "$SITE" --secret - --to 2 \
  --type message.new --data '{"thread":7,"text":"Hello from WordPress"}' <<<"$SECRET"
echo "-> to thread 7's subscribers, sealed with the thread key:"
"$BIN" push --url "http://127.0.0.1:$PORT" --site "$SITE" --secret - --thread 7 \
  --type typing --data '{"user":3}' <<<"$SECRET"

say "5. what the subscriber printed above: each 'ev' line carries the opened payload"
wait "$listener" || true
echo
echo "relay metrics (excerpt):"
curl -fsS "http://127.0.0.1:$ADMIN/metrics" | grep -E '^bm_relay_(events_pushed_total|deliveries_total|connections) '
say "done: the relay is stopped on exit"
