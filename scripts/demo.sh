#!/usr/bin/env bash
# make demo — the whole bm-relay system on loopback, for a person to try:
# a private MariaDB, Debian's WordPress with the plugin active and a page
# holding [bm_chat], two demo users, the relay, and PHP's built-in server
# loading the extension. Prints the URL and the logins; Ctrl-C (or SIGTERM)
# stops every server and removes the temp directories.
#
#   scripts/demo.sh                 run until Ctrl-C
#   DEMO_SMOKE=1 scripts/demo.sh    start, check (page answers, a message
#                                   goes Alice → Bob through REST and the
#                                   relay), stop; exit status says if it worked
#
# Ports (127.0.0.1): BM_DEMO_HTTP_PORT (8080), BM_DEMO_RELAY_PORT (8787),
# BM_DEMO_ADMIN_PORT (8788). BM_DEMO_PASSWORD sets the users' password.
# BM_WP_KEEP=1 keeps the run directory (logs) after stopping.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
# shellcheck source=lib/demo-site.sh
. scripts/lib/demo-site.sh

demo_deps
say "starting MariaDB, WordPress, the relay and PHP on 127.0.0.1 …"
demo_start_site

if [ "$SMOKE" = 1 ]; then
  demo_smoke
  say "smoke: /chat/ answers with the chat page; Alice's message reached Bob's socket through the relay" \
    "$(field "$SMOKE_ANSWER" send_to_receive_ms) ms after she posted it (delivery recorded by WordPress)"
  stop
  say "smoke OK — started, checked and stopped in $(elapsed) s"
  exit 0
fi

cat <<EOT

  bm-relay demo is running (PHP with the $IMPL, relay, MariaDB, WordPress).

  Chat page:  $CHAT
  Log in as   alice / $PASSWORD
         and  bob   / $PASSWORD     (also carol, dave; admin for Settings → bm-relay)
  Tip: Alice in a normal window, Bob in a private window (separate cookies).

  WordPress:  $URL/wp-login.php
  Relay:      $WS   (health: http://127.0.0.1:$ADMIN_PORT/healthz)

  Ctrl-C stops everything.

EOT
demo_wait
