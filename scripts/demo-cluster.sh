#!/usr/bin/env bash
# make demo-cluster — `make demo` with two relays as one: three
# nats-servers in one NATS cluster, relay 1 (the site's relay: WordPress
# pushes to it only) joined through NATS server 1, relay 2 through server
# 3. Alice's browser (and every user but Bob) connects to relay 1, Bob's to
# relay 2 (WordPress gives Bob relay 2's URL in his token bundle), so a
# message Alice sends reaches Bob through WordPress → relay 1 → NATS →
# relay 2. Ctrl-C (or SIGTERM) stops every server and removes the temp
# directories.
#
#   scripts/demo-cluster.sh               run until Ctrl-C
#   DEMO_SMOKE=1 scripts/demo-cluster.sh  start, check (Alice's message
#                                         reaches Bob's socket on relay 2),
#                                         stop; exit status says if it worked
#
# Ports (127.0.0.1): as make demo (BM_DEMO_HTTP_PORT 8080, relay 1
# BM_DEMO_RELAY_PORT 8787 and BM_DEMO_ADMIN_PORT 8788), relay 2
# BM_DEMO_RELAY2_PORT (8789) and BM_DEMO_ADMIN2_PORT (8790), NATS
# BM_DEMO_NATS_PORT (14222) and the next two (routes: +100..+102).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
# shellcheck source=lib/demo-site.sh
. scripts/lib/demo-site.sh
# shellcheck source=lib/nats-cluster.sh
. scripts/lib/nats-cluster.sh
RELAY2_PORT="${BM_DEMO_RELAY2_PORT:-8789}"
ADMIN2_PORT="${BM_DEMO_ADMIN2_PORT:-8790}"
NPORT="${BM_DEMO_NATS_PORT:-14222}"

demo_deps broker
DEMO_TMP=$(mktemp -d)
say "starting three nats-servers (127.0.0.1:$NPORT-$((NPORT + 2))) …"
NATS_PIDS_VAR=DEMO_PIDS nats_cluster_start "$DEMO_TMP" "$NPORT"
nats_cluster_wait "$NPORT"

say "starting MariaDB, WordPress, two relays and PHP on 127.0.0.1 …"
export BM_CLUSTER_NATS="nats://127.0.0.1:$NPORT nats://127.0.0.1:$((NPORT + 2))"
export BM_RELAY2_PORT="$RELAY2_PORT" BM_ADMIN2_PORT="$ADMIN2_PORT" BM_RELAY2_USERS=bob
demo_start_site
WS2=$(field "$READY" relay2.ws_url)
[ "$WS2" = "ws://127.0.0.1:$RELAY2_PORT/v1/ws" ] || { say "relay 2 did not start (ready line: $READY)"; exit 1; }

if [ "$SMOKE" = 1 ]; then
  demo_smoke
  bob_url=$(field "$SMOKE_ANSWER" bob_url)
  if [ "$bob_url" != "$WS2" ]; then
    say "smoke FAILED: Bob's socket went to $bob_url, not relay 2 ($WS2)"
    exit 1
  fi
  peers1=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | sed -n 's/^bm_relay_cluster_peers //p')
  sent1=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | sed -n 's/^bm_relay_cluster_deliveries_sent_total //p')
  if [ "$peers1" != 1 ] || [ "${sent1:-0}" = 0 ]; then
    say "smoke FAILED: relay 1 has $peers1 peer(s) and forwarded ${sent1:-0} deliveries over NATS (want 1 and > 0)"
    exit 1
  fi
  say "smoke: Alice's message went WordPress → relay 1 → NATS → relay 2 → Bob's socket" \
    "$(field "$SMOKE_ANSWER" send_to_receive_ms) ms after she posted it (delivery recorded by WordPress;" \
    "relay 1: $peers1 peer, $sent1 deliveries forwarded)"
  stop
  say "smoke OK — started, checked and stopped in $(elapsed) s"
  exit 0
fi

cat <<EOT

  bm-relay cluster demo is running (PHP with the $IMPL, two relays over
  three nats-servers, MariaDB, WordPress).

  Chat page:  $CHAT
  Log in as   alice / $PASSWORD   (browser on relay 1: $WS)
         and  bob   / $PASSWORD   (browser on relay 2: $WS2)
  Tip: Alice in a normal window, Bob in a private window (separate cookies).

  WordPress pushes to relay 1 only; relay 1 forwards Bob's events over NATS.
  Health:     http://127.0.0.1:$ADMIN_PORT/healthz  http://127.0.0.1:$ADMIN2_PORT/healthz
  Metrics:    http://127.0.0.1:$ADMIN_PORT/metrics  (bm_relay_cluster_*)

  Ctrl-C stops everything.

EOT
demo_wait
