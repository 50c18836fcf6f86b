#!/usr/bin/env bash
# Installs the Debian packages bm-relay's build, tests and demo need.
# Idempotent: it asks dpkg what is already there and does nothing (not even
# `apt-get update`) when every package is present.
#
#   scripts/install-deps.sh            # everything (build, test, demo)
#   scripts/install-deps.sh php wp     # only some groups
set -euo pipefail

declare -A GROUPS_=(
  [build]="build-essential pkg-config ca-certificates curl"
  [php]="php8.2-cli php8.2-dev php8.2-fpm php8.2-curl php8.2-mbstring php8.2-xml php8.2-mysql libfcgi-bin phpunit libclang-dev clang libphp8.2-embed"
  # python3-aiosmtpd: the SMTP server on loopback that MailTest sends to
  [wp]="mariadb-server mariadb-client wordpress wordpress-theme-twentytwentyone nginx-light python3 python3-aiosmtpd"
  # `make lint-php` (PHP_CodeSniffer, ruleset phpcs.xml)
  [lint]="php-codesniffer"
  [broker]="nats-server"
  # `make package` / `make test-package`: lintian checks the debs,
  # systemd-analyze verifies the unit, adduser runs the relay's postinst;
  # also `make test-relay-deploy` (nginx -t, systemd-analyze verify)
  [package]="lintian systemd adduser nginx-light openssl"
  [browser]="chromium fonts-noto-color-emoji coturn"
  # make test-conformance: an independent WebSocket client for the relay
  [conformance]="python3 python3-websockets"
  # benchmarks only (mk/bench.mk installs it; not part of `make deps`);
  # redis-server: the broker of the two-node Centrifugo of the cluster scenario
  [bench]="nginx-light libnginx-mod-nchan gnuplot-nox nodejs redis-server"
)
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(build php wp broker browser lint conformance package)

want=()
for g in "${groups[@]}"; do
  [ -n "${GROUPS_[$g]+x}" ] || { echo "install-deps: unknown group '$g' (known: ${!GROUPS_[*]})" >&2; exit 2; }
  for p in ${GROUPS_[$g]}; do want+=("$p"); done
done

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps apache2 and friends out (the wordpress
# package recommends a web server; we run our own on loopback).
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts some daemons on install where a service manager runs; the
# project starts its own private instances on loopback, never these.
for svc in mariadb nginx nats-server php8.2-fpm redis-server coturn; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
echo "install-deps: done"
