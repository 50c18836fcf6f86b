# shellcheck shell=bash
# Shared by scripts/demo.sh (make demo) and scripts/demo-cluster.sh
# (make demo-cluster): build what is missing, start the whole site through
# js-tests/e2e/site.php, read its ready line, run its smoke
# check, stop it. Sourced, not run; the caller has `set -euo pipefail` and
# is in the repository root.
#
# Variables the caller may read after demo_start_site: URL CHAT WS IMPL,
# READY (the whole ready line, JSON). DEMO_PIDS: more processes to stop
# (after the site) on exit; DEMO_TMP: a directory to remove then.

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
DEMO_PIDS=()
DEMO_TMP=

say() { printf 'demo: %s\n' "$*" >&2; }
elapsed() { awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
# One field of a JSON object (PHP is here anyway; no jq needed).
field() { php -r '$j = json_decode($argv[1], true); $v = $j; foreach (explode(".", $argv[2]) as $k) { $v = is_array($v) ? ($v[$k] ?? "") : ""; } echo is_scalar($v) ? $v : json_encode($v);' "$1" "$2"; }

# Installs what is missing (Debian packages, the release relay, the
# extension); "$@" are more install-deps.sh groups.
demo_deps() {
  bash scripts/install-deps.sh build php wp "$@"
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
}

stopped=0
stop() {
  [ "$stopped" = 1 ] && return
  stopped=1
  # site.php stops every server (each in its own process group, waited
  # for) and removes its temp directories on end of input or on TERM.
  if [ -n "${SITE_IN:-}" ]; then exec {SITE_IN}>&-; SITE_IN=; fi
  if [ -n "${SITE_PID:-}" ]; then
    kill -TERM "$SITE_PID" 2>/dev/null || true
    wait "$SITE_PID" 2>/dev/null || true
  fi
  local p
  for p in "${DEMO_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${DEMO_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$DEMO_TMP" ]; then rm -rf "$DEMO_TMP"; fi
}
on_signal() {
  say "stopping …"
  stop
  say "stopped"
  exit 130
}
trap on_signal INT TERM HUP
trap stop EXIT

# Starts site.php (environment: the ports above, plus whatever the caller
# exported, e.g. BM_CLUSTER_NATS) and waits for its ready line.
demo_start_site() {
  coproc SITE {
    BM_EXT_SO="$EXT" BM_HTTP_PORT="$HTTP_PORT" BM_RELAY_PORT="$RELAY_PORT" BM_ADMIN_PORT="$ADMIN_PORT" \
      BM_SITE_PASSWORD="$PASSWORD" exec php js-tests/e2e/site.php
  }
  SITE_PID=$SITE_PID
  SITE_IN=${SITE[1]}
  SITE_OUT=${SITE[0]}
  if ! read -r -t 180 -u "$SITE_OUT" READY || [ "$(field "$READY" ready)" != 1 ]; then
    say "the site did not start (see the messages above)"
    exit 1
  fi
  URL=$(field "$READY" url)
  CHAT=$(field "$READY" chat_url)
  WS=$(field "$READY" ws_url)
  IMPL=$(field "$READY" impl)
  say "up after $(elapsed) s (PHP runs the $IMPL)"
}

# The smoke check (site.php `smoke`): exits 1 if it fails; its answer (a
# JSON line) is left in SMOKE_ANSWER.
demo_smoke() {
  echo smoke >&"$SITE_IN"
  if ! read -r -t 60 -u "$SITE_OUT" SMOKE_ANSWER; then
    say "smoke: no answer"
    exit 1
  fi
  if [ "$(field "$SMOKE_ANSWER" ok)" != smoke ]; then
    say "smoke FAILED: $(field "$SMOKE_ANSWER" error)"
    exit 1
  fi
}

# Runs until the site stops (Ctrl-C).
demo_wait() {
  wait "$SITE_PID" || true
  say "the site stopped"
}
