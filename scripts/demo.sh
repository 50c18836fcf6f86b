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
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
CARGO="${CARGO:-cargo}"
HTTP_PORT="${BM_DEMO_HTTP_PORT:-8080}"
RELAY_PORT="${BM_DEMO_RELAY_PORT:-8787}"
ADMIN_PORT="${BM_DEMO_ADMIN_PORT:-8788}"
PASSWORD="${BM_DEMO_PASSWORD:-bm-demo-pass}"
SMOKE="${DEMO_SMOKE:-0}"
EXT="$ROOT/target/release/bm_relay.so"
START=$(date +%s.%N)

say() { printf 'demo: %s\n' "$*" >&2; }
elapsed() { awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
# One field of a JSON object (PHP is here anyway; no jq needed).
field() { php -r '$j = json_decode($argv[1], true); $v = $j; foreach (explode(".", $argv[2]) as $k) { $v = is_array($v) ? ($v[$k] ?? "") : ""; } echo is_scalar($v) ? $v : json_encode($v);' "$1" "$2"; }

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

# ---- what is missing -----------------------------------------------------
bash scripts/install-deps.sh build php wp
if ! target/release/bm-relay serve --help 2>/dev/null | grep -q -- --admin-listen; then
  say "building the relay"
  $CARGO build --release --locked -p bm-relay
fi
if [ ! -f "$EXT" ]; then
  say "building the PHP extension (make ext)"
  make --no-print-directory ext
fi
php -n -d extension="$EXT" -r 'exit(extension_loaded("bm_relay") ? 0 : 1);' \
  || { say "$EXT does not load as the bm_relay extension"; exit 1; }
# The page's scripts are plain ES modules served by WordPress: no npm
# packages or build step are needed to run the demo.

# ---- start ---------------------------------------------------------------
say "starting MariaDB, WordPress, the relay and PHP on 127.0.0.1 …"
coproc SITE {
  BM_EXT_SO="$EXT" BM_HTTP_PORT="$HTTP_PORT" BM_RELAY_PORT="$RELAY_PORT" BM_ADMIN_PORT="$ADMIN_PORT" \
    BM_SITE_PASSWORD="$PASSWORD" exec php wp-plugin-shim/tests/e2e/site.php
}
SITE_PID=$SITE_PID
SITE_IN=${SITE[1]}
SITE_OUT=${SITE[0]}

stopped=0
stop() {
  [ "$stopped" = 1 ] && return
  stopped=1
  # site.php stops every server (each in its own process group, waited
  # for) and removes its temp directories on end of input or on TERM.
  if [ -n "${SITE_IN:-}" ]; then exec {SITE_IN}>&-; SITE_IN=; fi
  kill -TERM "$SITE_PID" 2>/dev/null || true
  wait "$SITE_PID" 2>/dev/null || true
}
on_signal() {
  say "stopping …"
  stop
  say "stopped"
  exit 130
}
trap on_signal INT TERM HUP
trap stop EXIT

if ! read -r -t 180 -u "$SITE_OUT" ready || [ "$(field "$ready" ready)" != 1 ]; then
  say "the site did not start (see the messages above)"
  exit 1
fi
URL=$(field "$ready" url)
CHAT=$(field "$ready" chat_url)
WS=$(field "$ready" ws_url)
IMPL=$(field "$ready" impl)
say "up after $(elapsed) s (PHP runs the $IMPL)"

if [ "$SMOKE" = 1 ]; then
  echo smoke >&"$SITE_IN"
  if ! read -r -t 60 -u "$SITE_OUT" answer; then
    say "smoke: no answer"
    exit 1
  fi
  if [ "$(field "$answer" ok)" != smoke ]; then
    say "smoke FAILED: $(field "$answer" error)"
    exit 1
  fi
  say "smoke: /chat/ answers with the chat page; Alice's message reached Bob's socket through the relay" \
    "$(field "$answer" send_to_receive_ms) ms after she posted it (delivery recorded by WordPress)"
  stop
  say "smoke OK — started, checked and stopped in $(elapsed) s"
  exit 0
fi

cat <<EOF

  bm-relay demo is running (PHP with the $IMPL, relay, MariaDB, WordPress).

  Chat page:  $CHAT
  Log in as   alice / $PASSWORD
         and  bob   / $PASSWORD     (also carol, dave; admin for Settings → bm-relay)
  Tip: Alice in a normal window, Bob in a private window (separate cookies).

  WordPress:  $URL/wp-login.php
  Relay:      $WS   (health: http://127.0.0.1:$ADMIN_PORT/healthz)

  Ctrl-C stops everything.

EOF
wait "$SITE_PID" || true
say "the site stopped"
