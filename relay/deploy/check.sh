#!/usr/bin/env bash
# Checks the deployment files in relay/deploy/ with the real tools:
#   - relay.toml parses and is accepted by `bm-relay serve` (it starts, then stops);
#   - nginx-bm-relay.conf passes `nginx -t` (with a throwaway certificate);
#   - bm-relay.service passes `systemd-analyze verify`.
# A tool that is not installed fails the run (a skipped check would pass
# quietly); `make test-relay-deploy` installs them first. Run by `make test-relay-deploy`.
set -euo pipefail
cd "$(dirname "$0")"
BIN=${BM_RELAY_BIN:-../../target/release/bm-relay}
[ -x "$BIN" ] || { echo "check: $BIN is missing (make relay)" >&2; exit 1; }
BIN=$(realpath "$BIN")
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

# 1. The sample config, with one site enabled and free ports, starts a relay.
port=$((20000 + RANDOM % 12000))   # below the ephemeral range
admin=$((port + 1))
sed -e 's/^# "example.com"/"example.com"/' \
    -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" \
    -e "s/^admin_listen = .*/admin_listen = \"127.0.0.1:$admin\"/" relay.toml > "$tmp/relay.toml"
"$BIN" serve --config "$tmp/relay.toml" 2>"$tmp/relay.log" &
pid=$!
ok=""
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$admin/healthz" 2>/dev/null | grep -q '"sites":1'; then ok=1; break; fi
  sleep 0.05
done
kill -TERM "$pid"; wait "$pid" || true; pid=""
[ -n "$ok" ] || { echo "check: the sample relay.toml did not start a relay:" >&2; cat "$tmp/relay.log" >&2; exit 1; }
echo "check: relay.toml starts a relay"

# 2. nginx.
for tool in nginx openssl systemd-analyze; do
  command -v "$tool" >/dev/null || { echo "check: $tool is not installed (scripts/install-deps.sh package, or make deps)" >&2; exit 1; }
done
{
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/k.pem" -out "$tmp/c.pem" -days 1 -subj /CN=relay.example.com 2>/dev/null
  sed -e "s#/etc/letsencrypt/live/relay.example.com/fullchain.pem#$tmp/c.pem#" \
      -e "s#/etc/letsencrypt/live/relay.example.com/privkey.pem#$tmp/k.pem#" nginx-bm-relay.conf > "$tmp/site.conf"
  printf 'pid %s/nginx.pid;\nerror_log %s/error.log;\nevents {}\nhttp { include %s/site.conf; }\n' "$tmp" "$tmp" "$tmp" > "$tmp/nginx.conf"
  nginx -t -q -c "$tmp/nginx.conf"
  echo "check: nginx -t accepts nginx-bm-relay.conf"
}

# 3. systemd.
{
  # The man: pages of Documentation= exist only once the Debian package is
  # installed (verify runs `man` on them); make test-package verifies the
  # installed unit with them, here they are left out.
  sed -e "s#/usr/bin/bm-relay#$BIN#" -e '/^Documentation=/ s#man:[^ ]* *##g' bm-relay.service > "$tmp/bm-relay.service"
  out=$(systemd-analyze verify "$tmp/bm-relay.service" 2>&1 || true)
  if [ -n "$out" ]; then echo "$out" >&2; echo "check: systemd-analyze verify failed" >&2; exit 1; fi
  echo "check: systemd-analyze verify accepts bm-relay.service"
}
