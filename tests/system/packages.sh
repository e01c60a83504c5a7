#!/usr/bin/env bash
# The packages, for real. Builds the .deb, the source RPM and the .rpm
# (packaging/build), lints them (lintian on the .deb; rpmlint on the spec, the
# .src.rpm and the .rpm: no error, no warning, with packaging/rpm/rpmlint.toml:
# Fedora's policy, each override saying why), then in a booted
# Debian 12 systemd container:
#   .deb: apt install (recommends not yet) -> fortune.socket enabled,
#         listening, the Qt reader gets a built-in fortune; apt install
#         fortunes-min (what it recommends) -> its fortunes are served;
#         upgrade to a higher revision -> restarted, still serving; fortunes-min
#         purged -> the built-in fortunes again, the service still running;
#         apt remove -> nothing listens; apt purge -> nothing left.
#   .rpm: rpm -i --nodeps (Debian's rpm, its own database) under Fedora's
#         presets (`disable *`) -> scriptlets quiet, nothing enabled;
#         `systemctl enable --now fortune.socket` (what admin.md says) serves;
#         rpm -U to revision 2 -> fortune.service restarted, fortune.socket
#         not; rpm -e -> nothing left.
# Revision 2's changelog entry is on top in both formats.
# Every socket of the package is moved to a 127.0.0.1 high port by a drop-in
# written before installing, so nothing listens beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '[packages] %s\n' "$*" >&2; }
. tests/system/lib/steps.sh
require_tools cargo lintian rpmlint rpm rpmbuild rpm2cpio cpio readelf debootstrap systemd-nspawn nsenter /usr/bin/python3

. tests/system/lib/container.sh

work=$(mktemp -d /tmp/fortune-packages.XXXXXX)
cleanup() {
    rm -rf "$work"
    _container_exit
}
trap cleanup EXIT

# --- build and lint ---------------------------------------------------------
say "packaging/build"
packaging/build >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; fail "packaging/build failed"; }
packages=$(cargo metadata --no-deps --format-version 1 --locked |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/packages
deb=$(ls "$packages"/fortune-server_*_*.deb)
srpm=$(ls "$packages"/fortune-server-*.src.rpm)
rpm=$(ls "$packages"/fortune-server-[0-9]*.rpm | grep -v '\.src\.rpm$')
cp "$deb" "$srpm" "$rpm" "$work/"
deb=$work/$(basename "$deb")
srpm=$work/$(basename "$srpm")
rpm=$work/$(basename "$rpm")
ls -l "$deb" "$srpm" "$rpm" >&2

say "lintian $(basename "$deb")"
lintian --fail-on error,warning --display-info --pedantic "$deb" >&2 ||
    fail "lintian reports errors or warnings (above)"
rpm2cpio "$srpm" | (cd "$work" && cpio -id --quiet fortune-server.spec)
# No error, no warning: rpmlint FILE... (Fedora's policy: rpmlint.toml).
rpmlint_clean() {
    say "rpmlint ${*##*/}"
    rpmlint -c packaging/rpm/rpmlint.toml "$@" >"$work/rpmlint.log" 2>&1 || true
    cat "$work/rpmlint.log" >&2
    grep -q ' 0 errors, 0 warnings' "$work/rpmlint.log" || fail "rpmlint reports errors or warnings (above)"
}
rpmlint_clean "$work/fortune-server.spec" "$srpm" "$rpm"

# The binary in each: stripped (no symbol table), with its GNU build id.
check_binary() {
    readelf -S "$1" | grep -q '\.symtab' && fail "$2: /usr/bin/fortune-server is not stripped"
    readelf -n "$1" | grep -q 'Build ID' || fail "$2: /usr/bin/fortune-server has no build id"
    return 0
}
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/fortune-server >"$work/deb-bin"
check_binary "$work/deb-bin" "${deb##*/}"
rpm2cpio "$rpm" | (cd "$work" && cpio -id --quiet ./usr/bin/fortune-server)
check_binary "$work/usr/bin/fortune-server" "${rpm##*/}"

say "rpm -qlp"
# What the spec must ship: the binary, every unit of systemd/ with the
# collection drop-ins, every generated man page and completion.
{
    cargo metadata --no-deps --format-version 1 --locked | /usr/bin/python3 -c '
import json, sys
for t in json.load(sys.stdin)["packages"][0]["targets"]:
    if "bin" in t["kind"]:
        print("/usr/bin/" + t["name"])'
    for unit in systemd/*.socket systemd/*.service; do echo "/usr/lib/systemd/system/${unit#systemd/}"; done
    for d in fortune.service.d fortune@.service.d fortune-qotd.service.d; do
        echo "/usr/lib/systemd/system/$d"
        echo "/usr/lib/systemd/system/$d/fortune-mod.conf"
    done
    for page in packaging/generated/man/man*/*; do echo "/usr/share/man/${page#packaging/generated/man/}.gz"; done
    for f in packaging/generated/completions/bash/*; do echo "/usr/share/bash-completion/completions/${f##*/}"; done
    for f in packaging/generated/completions/zsh/*; do echo "/usr/share/zsh/site-functions/${f##*/}"; done
    for f in packaging/generated/completions/fish/*; do echo "/usr/share/fish/vendor_completions.d/${f##*/}"; done
    version=$(rpm -qp --qf '%{VERSION}' "$rpm")
    echo "/usr/share/doc/fortune-server-$version" "/usr/share/doc/fortune-server-$version/README.md"
    echo "/usr/share/doc/fortune-server-$version/docs"
    for f in docs/*.md; do echo "/usr/share/doc/fortune-server-$version/$f"; done
    echo "/usr/share/licenses/fortune-server-$version"
    echo "/usr/share/licenses/fortune-server-$version/LICENSE-APACHE"
    echo "/usr/share/licenses/fortune-server-$version/LICENSE-MIT"
    echo "/usr/share/licenses/fortune-server-$version/LICENSE.dependencies"
    echo "/usr/share/licenses/fortune-server-$version/cargo-vendor.txt"
} | tr ' ' '\n' | sort >"$work/rpm-expected"
rpm -qlp "$rpm" | grep -v '^/usr/lib/.build-id' | sort >"$work/rpm-files"
diff -u "$work/rpm-expected" "$work/rpm-files" >&2 || fail "rpm -qlp differs from what is expected (- expected, + shipped)"

# --- the container ----------------------------------------------------------
# rpm: Debian's rpm for the .rpm part. fortunes-min: debootstrap leaves its
# .deb in /var/cache/apt/archives, so the test can install it again offline.
root=$(CONTAINER_EXTRA_PACKAGES=rpm,fortunes-min container_rootfs)
container_boot "$root"

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=
for unit in systemd/*.socket; do
    p=$(free_port)
    [ "${unit##*/}" = fortune.socket ] && port=$p
    printf '[Socket]\nListenStream=\nListenDatagram=\nListenStream=127.0.0.1:%s\n' "$p" >"$work/loopback.conf"
    cput "$work/loopback.conf" "/etc/systemd/system/${unit##*/}.d/zz-test-loopback.conf"
done
[ -n "$port" ] || fail "systemd/ has no fortune.socket"
say "fortune.socket on 127.0.0.1:$port"

show_state() {
    cexec systemctl --no-pager status fortune.socket fortune.service >&2 || true
    cexec journalctl --no-pager -n 30 -u fortune.socket -u fortune.service >&2 || true
}
# N fortunes through the real Qt reader, one JSON string per line.
qt_read() {
    /usr/bin/python3 tests/qt_reader.py 127.0.0.1 "$port" --count "$1" --timeout 5 ||
        { show_state; fail "the Qt reader got no fortune from 127.0.0.1:$port (journal above; the packaged \
drop-in sets FORTUNE_FORTUNES=-/usr/share/games/fortunes: a '-' path must be optional)"; }
}
expect_listening() {
    [ "$(cexec systemctl is-active fortune.socket)" = active ] || { show_state; fail "fortune.socket is not active $1"; }
}
expect_nothing_listens() {
    /usr/bin/python3 - "$port" <<'EOF' || fail "something still listens on 127.0.0.1:$port $1"
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
except ConnectionRefusedError:
    sys.exit(0)
sys.exit(1)
EOF
}
# Fails unless every fortune on stdin (JSON lines) is an entry of one of the
# fortune-mod collections (files with a NAME.dat index) in directory $1 inside.
from_collection() {
    # shellcheck disable=SC2016 # expanded by the shell inside
    cexec sh -c 'for dat in "$1"/*.dat; do cat "${dat%.dat}" && printf "\n%%\n"; done' sh "$1" \
        >"$work/collection" || fail "no collection in $1 in the container"
    /usr/bin/python3 -c '
import json, sys
entries = {e.strip() for e in open(sys.argv[1], encoding="utf-8").read().split("\n%\n")}
bad = [f for f in map(json.loads, sys.stdin) if f.strip() not in entries]
if bad:
    sys.exit(f"not from {sys.argv[2]}: {bad!r}")' "$work/collection" "$1"
}

cexec mkdir -p /tmp/pkgs
cput "$deb" "/tmp/pkgs/${deb##*/}"
cput "$rpm" "/tmp/pkgs/${rpm##*/}"

# --- .deb: install, collection, upgrade, remove, purge ----------------------
case $(dpkg-deb -f "$deb" Recommends) in
    *fortunes-min*) ;;
    *) fail "the .deb does not recommend fortunes-min" ;;
esac
# Installed by debootstrap only to leave its .deb (and the package lists) in
# the container, so that apt installs it again below without a network.
cexec dpkg --purge fortunes-min >/dev/null
cexec test ! -e /usr/share/games/fortunes || fail "fortunes-min is still installed"

# Without its recommended collections first: the built-in fortunes.
say "apt install --no-install-recommends ./${deb##*/}"
cexec apt-get install -y -q --no-install-recommends "/tmp/pkgs/${deb##*/}" >"$work/apt.log" 2>&1 ||
    { cat "$work/apt.log" >&2; fail "apt install failed"; }
[ "$(cexec systemctl is-enabled fortune.socket)" = enabled ] || fail "fortune.socket is not enabled after install"
expect_listening "after install"
qt_read 3 >"$work/builtin"
say "built-in fortunes: $(head -c 200 "$work/builtin")"
cexec systemctl is-failed --quiet fortune.service &&
    { show_state; fail "fortune.service failed without a fortune collection"; }

say "apt install fortunes-min (the package's trigger reloads the service)"
cexec apt-get install -y -q fortunes-min >"$work/apt.log" 2>&1 ||
    { cat "$work/apt.log" >&2; fail "apt install fortunes-min failed"; }
collection=/usr/share/games/fortunes
# The reload is asynchronous: allow it 10 s (and at most 50 tries) to take effect.
deadline=$((SECONDS + 10))
for i in $(seq 50); do
    # Three at once: two of the seven built-in fortunes are in fortunes-min too.
    /usr/bin/python3 tests/qt_reader.py 127.0.0.1 "$port" --count 3 --timeout 1 2>/dev/null |
        from_collection "$collection" 2>/dev/null && break
    if [ "$i" = 50 ] || [ "$SECONDS" -ge "$deadline" ]; then
        show_state
        fail "no fortune from $collection within 10 s of installing fortunes-min (the packaged drop-in sets \
FORTUNE_FORTUNES=-/usr/share/games/fortunes: the server must read fortune-mod directories and take a path \
with a leading '-' as optional)"
    fi
    sleep 0.2
done
qt_read 10 | from_collection "$collection" || fail "fortunes-min installed, yet other fortunes were served"
say "fortunes-min is served"

say "upgrade to revision 2"
pid_before=$(cexec systemctl show -P MainPID fortune.service)
packaging/build --release 2 --output "$work/release2" >"$work/build2.log" 2>&1 ||
    { cat "$work/build2.log" >&2; fail "packaging/build --release 2 failed"; }
deb2=$(ls "$work"/release2/fortune-server_*-2_*.deb)
rpm2=$(ls "$work"/release2/fortune-server-[0-9]*-2.*.rpm | grep -v '\.src\.rpm$')
# Revision 2 says so on top of both changelogs (rpmlint: incoherent-version-in-changelog otherwise).
dpkg-deb --fsys-tarfile "$deb2" | tar -xO ./usr/share/doc/fortune-server/changelog.Debian.gz | gzip -dc |
    head -n 1 | grep -q "($(dpkg-deb -f "$deb2" Version))" || fail "${deb2##*/}: the changelog's top entry is not its version"
rpm -qp --changelog "$rpm2" | head -n 1 | grep -q -- "- $(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$rpm2")\$" ||
    fail "${rpm2##*/}: the %changelog's top entry is not its version"
rpmlint_clean "$rpm2"
cput "$rpm2" "/tmp/pkgs/${rpm2##*/}"
cput "$deb2" "/tmp/pkgs/${deb2##*/}"
cexec apt-get install -y -q "/tmp/pkgs/${deb2##*/}" >"$work/apt.log" 2>&1 ||
    { cat "$work/apt.log" >&2; fail "the upgrade failed"; }
# shellcheck disable=SC2016 # dpkg-query's own ${Version}
[ "$(cexec dpkg-query -W -f '${Version}' fortune-server)" = "$(dpkg-deb -f "$deb2" Version)" ] ||
    fail "the upgrade did not install $(dpkg-deb -f "$deb2" Version)"
[ "$(cexec systemctl is-enabled fortune.socket)" = enabled ] || fail "fortune.socket is not enabled after the upgrade"
expect_listening "after the upgrade"
qt_read 10 | from_collection "$collection" || fail "after the upgrade other fortunes were served"
pid_after=$(cexec systemctl show -P MainPID fortune.service)
if [ "$pid_after" = 0 ] || [ "$pid_after" = "$pid_before" ]; then
    fail "fortune.service was not restarted by the upgrade (MainPID $pid_before, then $pid_after)"
fi

say "apt purge fortunes-min (back to the built-in fortunes, reloaded by the trigger)"
cexec apt-get purge -y -q fortunes-min >"$work/apt.log" 2>&1 ||
    { cat "$work/apt.log" >&2; fail "apt purge fortunes-min failed"; }
# $work/collection still holds fortunes-min's entries (from_collection above).
# Two built-in fortunes are among them: wait for one that is not.
deadline=$((SECONDS + 10))
for i in $(seq 50); do
    /usr/bin/python3 tests/qt_reader.py 127.0.0.1 "$port" --count 3 --timeout 1 2>/dev/null |
        /usr/bin/python3 -c '
import json, sys
entries = {e.strip() for e in open(sys.argv[1], encoding="utf-8").read().split("\n%\n")}
sys.exit(0 if any(json.loads(f).strip() not in entries for f in sys.stdin) else 1)' "$work/collection" && break
    if [ "$i" = 50 ] || [ "$SECONDS" -ge "$deadline" ]; then
        show_state
        fail "fortunes-min purged, yet no built-in fortune within 10 s"
    fi
    sleep 0.2
done
cexec systemctl is-failed --quiet fortune.service && { show_state; fail "fortune.service failed once fortunes-min was purged"; }

say "apt remove"
cexec dpkg-query -L fortune-server | sort >"$work/deb-files"
cexec apt-get remove -y -q fortune-server >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; fail "apt remove failed"; }
expect_nothing_listens "after apt remove"
cexec systemctl is-active --quiet fortune.socket fortune.service && fail "a unit is still active after apt remove"

say "apt purge"
cexec apt-get purge -y -q fortune-server >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; fail "apt purge failed"; }
cexec dpkg-query -W fortune-server >/dev/null 2>&1 && fail "dpkg still knows fortune-server after purge"
# shellcheck disable=SC2016 # expanded by the shell inside
left=$(cexec sh -c 'while read -r f; do [ "$f" = /. ] || [ ! -e "$f" ] || [ -d "$f" ] || echo "$f"; done
    ls -d /etc/systemd/system/*.wants/fortune* /etc/systemd/system/fortune*.socket /etc/systemd/system/fortune*.service \
        /var/lib/systemd/deb-systemd-helper-*/*fortune* \
        /var/lib/systemd/deb-systemd-helper-enabled/*/fortune* 2>/dev/null' <"$work/deb-files") || true
[ -z "$left" ] || fail "left after apt purge: $left"

# --- .rpm: install, serve, erase --------------------------------------------
# Fedora's presets enable no network service: the package must enable nothing.
printf 'disable *\n' >"$work/fedora.preset"
cput "$work/fedora.preset" /etc/systemd/system-preset/99-default-disable.preset
say "rpm -i --nodeps ${rpm##*/} (under Fedora's presets)"
# --force-debian: only silences Debian's rpm advice to use alien instead.
cexec rpm -i --nodeps --force-debian "/tmp/pkgs/${rpm##*/}" >"$work/rpm.log" 2>&1 || { cat "$work/rpm.log" >&2; fail "rpm -i failed"; }
[ -s "$work/rpm.log" ] && { cat "$work/rpm.log" >&2; fail "rpm -i printed messages (a scriptlet failed?)"; }
for unit in fortune.socket fortune-qotd.socket; do
    [ "$(cexec systemctl is-enabled "$unit")" = disabled ] || fail "rpm -i enabled $unit: presets are the distribution's"
done
expect_nothing_listens "after rpm -i (nothing enabled)"
cexec systemctl enable --now fortune.socket || { show_state; fail "systemctl enable --now fortune.socket failed"; }
expect_listening "after systemctl enable --now"
qt_read 2 >/dev/null
say "rpm -U ${rpm2##*/}: restarts fortune.service, not the socket"
socket_since=$(cexec systemctl show -P ActiveEnterTimestampMonotonic fortune.socket)
pid_before=$(cexec systemctl show -P MainPID fortune.service)
cexec rpm -U --nodeps --force-debian "/tmp/pkgs/${rpm2##*/}" >"$work/rpm.log" 2>&1 || { cat "$work/rpm.log" >&2; fail "rpm -U failed"; }
[ -s "$work/rpm.log" ] && { cat "$work/rpm.log" >&2; fail "rpm -U printed messages (a scriptlet failed?)"; }
[ "$(cexec systemctl show -P ActiveEnterTimestampMonotonic fortune.socket)" = "$socket_since" ] ||
    fail "the upgrade restarted fortune.socket (connections queued on it are dropped)"
pid_after=$(cexec systemctl show -P MainPID fortune.service)
if [ "$pid_after" != 0 ] && [ "$pid_after" = "$pid_before" ]; then
    fail "the upgrade did not restart fortune.service (MainPID $pid_before still)"
fi
qt_read 2 >/dev/null
say "rpm -e"
cexec rpm -ql fortune-server >"$work/rpm-installed"
cexec rpm -e --force-debian fortune-server >"$work/rpm.log" 2>&1 || { cat "$work/rpm.log" >&2; fail "rpm -e failed"; }
[ -s "$work/rpm.log" ] && { cat "$work/rpm.log" >&2; fail "rpm -e printed messages (a scriptlet failed?)"; }
expect_nothing_listens "after rpm -e"
# shellcheck disable=SC2016 # expanded by the shell inside
left=$(cexec sh -c 'while read -r f; do [ ! -e "$f" ] || echo "$f"; done
    ls -d /etc/systemd/system/*.wants/fortune* /etc/systemd/system/fortune*.socket /etc/systemd/system/fortune*.service 2>/dev/null' \
    <"$work/rpm-installed") || true
[ -z "$left" ] || fail "left after rpm -e: $left"

say "PASS: lintian and rpmlint clean; .deb installed, served built-in and fortunes-min, upgraded, served built-in again, removed, purged; .rpm installed (nothing enabled), enabled, served, upgraded (the service restarted, not the socket), erased"
