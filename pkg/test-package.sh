#!/usr/bin/env bash
# make test-package: the two Debian packages on this very machine, checked as
# a sysadmin would check them.
#
#   1. dpkg -i both; the service user, key file, conffile, unit
#      (systemd-analyze verify), man page, completions; php -m, php --ri,
#      php-fpm -m.
#   2. The relay started the way its unit starts it (there is no running
#      systemd here): the unit's User/Group, Environment, UMask and ExecStart,
#      read from the installed unit file, via setpriv. A push from a PHP
#      script through the packaged extension reaches a `bm-relay listen`
#      subscriber, opened with the site secret.
#   3. Reinstalling keeps the admin's edit of the conffile and the key file.
#   4. dpkg -r: PHP keeps working without warnings, the extension is gone,
#      the config stays; dpkg -P: user, group, config, ini links and
#      phpenmod's state are gone, and the file-system snapshot taken before
#      step 1 is identical again.
#
# Whatever happens (failure, Ctrl-C), the EXIT trap stops the relay and
# purges both packages, so the PHP suites that must run the pure-PHP
# fallback never find the extension installed system-wide.
#
# Usage: pkg/test-package.sh dist/bm-relay_V_A.deb dist/phpX.Y-bm-relay_V_A.deb
# No pipefail: checks are `producer | grep -q`, where grep stops reading at
# the first match and the producer's SIGPIPE must not fail the check.
set -eu

DEB_RELAY=$(realpath "$1")
DEB_EXT=$(realpath "$2")
PHP_VER=$(php-config --version | cut -d. -f1,2)
PKG_RELAY=$(dpkg-deb -f "$DEB_RELAY" Package)
PKG_EXT=$(dpkg-deb -f "$DEB_EXT" Package)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

t0=$(date +%s.%N)
tmp=$(mktemp -d)
chmod 0755 "$tmp"
relay_pid=""
listen_pid=""
installed=""
checks=0

fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
ok() { checks=$((checks + 1)); echo "test-package: ok: $*"; }

cleanup() {
    local rc=$?
    [ -n "$listen_pid" ] && kill "$listen_pid" 2>/dev/null
    [ -n "$relay_pid" ] && kill -TERM "$relay_pid" 2>/dev/null
    wait 2>/dev/null || true
    if [ -n "$installed" ]; then
        # Leave the machine as it was found, even after a failure.
        $SUDO dpkg --purge "$PKG_EXT" "$PKG_RELAY" >/dev/null 2>&1 || true
        if dpkg-query -W -f='${Status}' "$PKG_EXT" 2>/dev/null | grep -q installed \
           || php -m | grep -qx bm_relay; then
            echo "test-package: could not purge $PKG_EXT: PHP still loads bm_relay" >&2
            rc=1
        fi
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# What a package may touch; compared before install and after purge.
snapshot() {
    {
        find /etc /usr/bin /usr/lib/php /usr/lib/systemd /lib/systemd /var/lib/php/modules \
             /var/lib/systemd /usr/share/man/man1 /usr/share/doc /usr/share/lintian/overrides \
             /usr/share/bash-completion /usr/share/zsh /usr/share/fish \
             -path /etc/ld.so.cache -prune -o -print 2>/dev/null | grep -i 'bm.relay\|bm_relay' || true
        getent passwd bm-relay || true
        getent group bm-relay || true
    } | sort
}

# 0. A clean machine: an installed copy is the admin's, not ours to clobber.
for p in "$PKG_RELAY" "$PKG_EXT"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        fail "$p is already installed here; remove it first (dpkg --purge $p)"
    fi
done
php -m | grep -qx bm_relay && fail "PHP already loads bm_relay (make install?); run make uninstall first"
snapshot > "$tmp/before"

# 1. Install.
installed=1
$SUDO dpkg -i "$DEB_RELAY" "$DEB_EXT" > "$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i"; }
for p in "$PKG_RELAY" "$PKG_EXT"; do
    dpkg-query -W -f='${Status}' "$p" | grep -qx 'install ok installed' || fail "$p is not 'install ok installed'"
done
ok "dpkg -i $(basename "$DEB_RELAY") $(basename "$DEB_EXT")"

# The service user: a system account that cannot log in.
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd bm-relay) || fail "no bm-relay user"
[ "$uid" -lt 1000 ] || fail "bm-relay uid $uid is not a system uid"
case "$shell" in */nologin|/bin/false) ;; *) fail "bm-relay has a login shell: $shell" ;; esac
[ ! -e "$home" ] || fail "bm-relay's home $home exists"
getent group bm-relay >/dev/null || fail "no bm-relay group"
ok "system user bm-relay (uid $uid, $shell, no home)"

# The key file: 0600, the service user's; the config: a conffile, no keys.
[ "$(stat -c '%a %U %G' /etc/bm-relay/sites.toml)" = "600 bm-relay bm-relay" ] \
    || fail "/etc/bm-relay/sites.toml is $(stat -c '%a %U %G' /etc/bm-relay/sites.toml)"
dpkg-query -W -f='${Conffiles}\n' "$PKG_RELAY" | grep -q '^ /etc/bm-relay/relay.toml ' \
    || fail "/etc/bm-relay/relay.toml is not a conffile"
! grep -Eq '^[^#]*"[^"]+" *= *"[A-Za-z0-9_-]{43}"' /etc/bm-relay/relay.toml /etc/bm-relay/sites.toml \
    || fail "the package ships a relay key"
ok "key file 0600 bm-relay, relay.toml is a conffile, no keys shipped"

# The unit, as systemd would load it.
unit=$(dpkg -L "$PKG_RELAY" | grep '/systemd/system/bm-relay.service$') || fail "no unit installed"
out=$(systemd-analyze verify "$unit" 2>&1) || true
[ -z "$out" ] || { echo "$out" >&2; fail "systemd-analyze verify $unit"; }
[ -L /etc/systemd/system/multi-user.target.wants/bm-relay.service ] || fail "the unit is not enabled"
dpkg-deb -e "$DEB_RELAY" "$tmp/ctl"
grep -q 'deb-systemd-invoke stop .*bm-relay.service' "$tmp/ctl/prerm" || fail "prerm does not stop bm-relay.service"
ok "unit $unit verifies, is enabled, prerm stops it"

# Man pages and completions, generated from the clap definitions.
man -w bm-relay >/dev/null 2>&1 || fail "man -w bm-relay"
zcat "$(man -w bm-relay)" | grep -q 'keygen' || fail "man bm-relay does not list keygen"
zcat "$(man -w bm-relay-serve)" | grep -q 'sites\\\?-file' || fail "man bm-relay-serve lacks --sites-file"
bash -c 'source /usr/share/bash-completion/completions/bm-relay && complete -p bm-relay' >/dev/null \
    || fail "bash completion does not register bm-relay"
[ -s /usr/share/zsh/vendor-completions/_bm-relay ] && [ -s /usr/share/fish/vendor_completions.d/bm-relay.fish ] \
    || fail "zsh/fish completions missing"
[ "$(bm-relay --version)" = "bm-relay $(dpkg-query -W -f='${Version}' "$PKG_RELAY")" ] \
    || fail "bm-relay --version '$(bm-relay --version)' is not the package version"
ok "man bm-relay, man bm-relay-serve, bash/zsh/fish completions, --version = package version"

# The extension, in the CLI and FPM.
php -m | grep -qx bm_relay || fail "php -m does not list bm_relay"
php -r 'exit((new ReflectionFunction("bm_push"))->isInternal() ? 0 : 1);' || fail "bm_push is not the extension's"
php --ri bm_relay > "$tmp/ri" || fail "php --ri bm_relay"
for key in url site secret_file secret mode timeout_ms connect_timeout_ms queue_size flush_timeout_ms; do
    grep -q "bm_relay.$key" "$tmp/ri" || fail "php --ri bm_relay lacks bm_relay.$key"
done
[ -L "/etc/php/$PHP_VER/cli/conf.d/30-bm_relay.ini" ] || fail "no cli conf.d link"
if [ -d "/etc/php/$PHP_VER/fpm" ]; then
    [ -L "/etc/php/$PHP_VER/fpm/conf.d/30-bm_relay.ini" ] || fail "no fpm conf.d link"
    "php-fpm$PHP_VER" -m | grep -qx bm_relay || fail "php-fpm$PHP_VER -m does not list bm_relay"
fi
[ -f "$(php-config --extension-dir)/bm_relay.so" ] || fail "no bm_relay.so in the extension dir"
ok "php -m, php --ri (every setting), php-fpm -m list bm_relay; cli and fpm conf.d links"

# 2. The relay as its unit runs it, on free ports (an admin's edit of the
# conffile), with a site key in the key file.
port=$((20000 + RANDOM % 12000)); admin=$((port + 1))
$SUDO sed -i -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" \
             -e "s/^admin_listen = .*/admin_listen = \"127.0.0.1:$admin\"/" /etc/bm-relay/relay.toml
bm-relay keygen --site example.com --json > "$tmp/keys.json"
secret=$(php -r 'echo json_decode(file_get_contents($argv[1]))->site_secret;' "$tmp/keys.json")
relay_key=$(php -r 'echo json_decode(file_get_contents($argv[1]))->relay_key;' "$tmp/keys.json")
printf '"example.com" = "%s"\n' "$relay_key" | $SUDO tee -a /etc/bm-relay/sites.toml >/dev/null
[ "$(stat -c '%a %U' /etc/bm-relay/sites.toml)" = "600 bm-relay" ] || fail "appending changed the key file's mode"
umask_=$(sed -n 's/^UMask=//p' "$unit")
user=$(sed -n 's/^User=//p' "$unit"); group=$(sed -n 's/^Group=//p' "$unit")
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
envs=$(sed -n 's/^Environment=//p' "$unit")
[ "$user" = bm-relay ] && [ "$group" = bm-relay ] || fail "the unit runs as '$user:$group', not bm-relay"
# shellcheck disable=SC2086 # ExecStart and Environment are word lists, as systemd splits them
(umask "$umask_"; ulimit -c 0; exec env -i PATH=/usr/bin:/bin $envs \
    setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all \
    -- $exec_start) > "$tmp/relay.log" 2>&1 &
relay_pid=$!
up=""
for _ in $(seq 200); do
    if curl -fsS "http://127.0.0.1:$admin/healthz" 2>/dev/null | grep -q '"sites":1'; then up=1; break; fi
    kill -0 "$relay_pid" 2>/dev/null || break
    sleep 0.05
done
[ -n "$up" ] || { cat "$tmp/relay.log" >&2; fail "the packaged relay did not start with one site"; }
ps -o user= -p "$relay_pid" | grep -qx bm-relay \
    || fail "the relay does not run as bm-relay"
grep -qi 'readable by every user' "$tmp/relay.log" && fail "the relay warns about the key file's mode"
ok "relay started as the unit starts it ($exec_start) as bm-relay, one site from the key file"

# A subscriber for user 7, then a push from PHP through the extension.
token=$(printf '%s' "$secret" | bm-relay token --secret - --site example.com --user 7)
printf '%s' "$secret" | bm-relay listen --url "ws://127.0.0.1:$port/v1/ws" --token "$token" \
    --secret - --site example.com --count 1 --timeout 10 > "$tmp/listen.out" 2> "$tmp/listen.err" &
listen_pid=$!
for _ in $(seq 200); do grep -q '"ready"' "$tmp/listen.out" 2>/dev/null && break; sleep 0.05; done
grep -q '"ready"' "$tmp/listen.out" || { cat "$tmp/listen.err" >&2; fail "the subscriber was not accepted"; }
install -m 0644 /dev/null "$tmp/site.secret"; printf '%s\n' "$secret" > "$tmp/site.secret"
cat > "$tmp/push.php" <<'PHP'
<?php
// What WordPress does: bm_push() with the packaged extension, settings from
// the ini keys (here -d), secret from a file.
$r = bm_push(['type' => 'pkg.test', 'data' => ['text' => 'from the package'], 'to' => [7]]);
var_dump($r);
exit($r === false ? 1 : 0);
PHP
php -d "bm_relay.url=http://127.0.0.1:$port" -d bm_relay.site=example.com \
    -d "bm_relay.secret_file=$tmp/site.secret" -d bm_relay.mode=sync "$tmp/push.php" > "$tmp/push.out" 2>&1 \
    || { cat "$tmp/push.out" >&2; fail "bm_push through the packaged relay"; }
wait "$listen_pid" || { cat "$tmp/listen.err" >&2; fail "the subscriber did not get the event"; }
listen_pid=""
grep -q '"from the package"' "$tmp/listen.out" || { cat "$tmp/listen.out" >&2; fail "the event did not arrive opened"; }
for s in "$secret" "$relay_key"; do
    ! grep -qF -e "$s" "$tmp/relay.log" "$tmp/push.out" || fail "a key appears in the relay log or PHP output"
done
php -d "bm_relay.secret_file=$tmp/site.secret" --ri bm_relay | grep -qF -e "$secret" && fail "php --ri shows the secret"
ok "PHP bm_push → packaged relay → subscriber opened {\"text\":\"from the package\"}; no key in logs or phpinfo"
kill -TERM "$relay_pid"; wait "$relay_pid" || true; relay_pid=""

# 3. An upgrade (here: the same version again) keeps the admin's files.
$SUDO dpkg -i "$DEB_RELAY" > "$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i again"; }
grep -q "^listen = \"127.0.0.1:$port\"" /etc/bm-relay/relay.toml || fail "reinstalling lost the edit of relay.toml"
$SUDO grep -qF -e "$relay_key" /etc/bm-relay/sites.toml || fail "reinstalling lost the key file"
ok "reinstall keeps the edited relay.toml and the key file"

# 4. Remove: PHP keeps working; config stays. Purge: nothing is left.
$SUDO dpkg -r "$PKG_EXT" "$PKG_RELAY" > "$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -r"; }
php -m | grep -qx bm_relay && fail "php -m still lists bm_relay after dpkg -r"
[ -z "$(php -r 'echo "ok";' 2>&1 >/dev/null)" ] && [ "$(php -r 'echo "ok";' 2>/dev/null)" = ok ] \
    || fail "php warns or fails after dpkg -r: $(php -r '' 2>&1)"
ls /etc/php/"$PHP_VER"/*/conf.d/*bm_relay* >/dev/null 2>&1 && fail "conf.d links left after dpkg -r"
[ ! -e /usr/bin/bm-relay ] || fail "/usr/bin/bm-relay left after dpkg -r"
[ -f /etc/bm-relay/relay.toml ] || fail "dpkg -r removed the conffile (only purge may)"
ok "dpkg -r: bm_relay unloaded, php runs without warnings, config kept"
$SUDO dpkg -P "$PKG_EXT" "$PKG_RELAY" > "$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -P"; }
installed=""
snapshot > "$tmp/after"
diff -u "$tmp/before" "$tmp/after" >&2 || fail "dpkg -P left the lines marked + above"
for p in "$PKG_RELAY" "$PKG_EXT"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in ""|*not-installed) ;; *) fail "$p is still known to dpkg: $st" ;; esac
done
ok "dpkg -P: no user, group, config, ini link, phpenmod state or file left"

# A floor: a check skipped by an edit of this script fails the run.
[ "$checks" -eq 11 ] || fail "$checks checks ran, expected 11"
awk -v a="$t0" -v b="$(date +%s.%N)" -v n="$checks" 'BEGIN { printf "test-package: %d checks passed in %.1f s\n", n, b - a }'
