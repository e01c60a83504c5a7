#!/usr/bin/env bash
# An admin's first hour, in a booted Debian 12 (systemd-nspawn, a network
# namespace of its own, so the recipes' real ports stay inside): the .deb is
# installed, then every recipe of docs/admin.md runs word for word, in order
# (tests/system/lib/recipes.py extracts them from the doc; a command outside a
# recipe, or a recipe this script does not run, fails the test), each followed
# by checks of what it promises. Between them:
#   - fatal errors: a bad drop-in (FORTUNE_IDLE_EXIT=10m, a missing and an
#     unreadable FORTUNE_FORTUNES) gives one journal line at priority err per
#     start, the sockets keep listening, the client gets its connection closed;
#     clients that keep coming never reach the start limit (each start refuses
#     clients for 3 s before it exits), and the doc's "heal" recipe brings
#     everything back once the drop-in is fixed;
#   - journal fields: MESSAGE_ID of serving, reload, stopping, at the
#     connection cap and out of descriptors found by `journalctl MESSAGE_ID=`,
#     CODE_FILE of an error, PEER at --log-level debug.
# With CI=true a missing tool fails the test.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/system/lib/container.sh
. tests/system/lib/steps.sh

DOC=${ADMIN_DOC:-docs/admin.md}
# The recipes, in the order they run (each starts where the last left off;
# the troubleshooting ones run while QOTD is on, to heal both sockets).
RECIPES=(install port port-back own-fortunes reload accept-yes accept-yes-own-fortunes accept-yes-cheaper accept-no
    qotd-on errors heal reloads qotd-off remove purge)

require_tools systemd-nspawn debootstrap nsenter cargo rpmbuild dpkg-deb /usr/bin/python3
[ "$(id -u)" = 0 ] || missing "root (systemd-nspawn needs it)"

step "the recipes of $DOC"
recipes() { /usr/bin/python3 tests/system/lib/recipes.py "$DOC" "$@"; }
documented=$(recipes --names) || fail "$DOC: the recipes cannot be read (above)"
if [ "$(sort <<<"$documented")" != "$(printf '%s\n' "${RECIPES[@]}" | sort)" ]; then
    diff <(sort <<<"$documented") <(printf '%s\n' "${RECIPES[@]}" | sort) >&2 || true
    fail "$DOC's recipes (<) differ from those this test runs (>)"
fi
echo "${#RECIPES[@]} recipes: ${RECIPES[*]}"

step "packaging/build"
work=$(mktemp -d /tmp/fortune-admin.XXXXXX)
packaging/build --output "$work/packages" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; fail "packaging/build failed"; }
deb=$(ls "$work"/packages/fortune-server_*.deb)
ls -l "$deb"

step "boot Debian 12 (fortunes-min installed, its own network namespace)"
root=$(CONTAINER_EXTRA_PACKAGES=rpm,fortunes-min container_rootfs)
CONTAINER_PRIVATE_NETWORK=1 container_boot "$root"
on_exit() {
    local status=$?
    container_journal_if "$status"
    rm -rf "$work"
    _container_exit
    return "$status"
}
trap on_exit EXIT
cput "$deb" "/root/${deb##*/}"
# What an installed Debian has and debootstrap leaves out: localhost.
cexec sh -c 'test -s /etc/hosts || printf "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n" >/etc/hosts'

# Runs recipe NAME verbatim, as root in /root: `systemctl edit` through a
# terminal (it insists on one) with an "editor" that writes the doc's text;
# every other command with `y` answers on stdin (apt's questions). What the
# commands print is shown, and kept in $work/NAME.out.
run_recipe() {
    local name=$1 command text status=0
    step "recipe $name"
    while IFS= read -r -d '' command && IFS= read -r -d '' text; do
        printf '# %s\n' "$command"
        if [ -n "$text" ]; then
            printf '%s' "$text" >"$work/edit"
            cput "$work/edit" /root/.recipe-edit
            cexec env SYSTEMD_EDITOR="cp /root/.recipe-edit" script -qec "$command" /dev/null </dev/null || status=$?
        else
            cexec sh -c "cd /root && $command" < <(yes) || status=$?
        fi
        [ "$status" = 0 ] || break
    done < <(recipes "$name") >"$work/$name.out" 2>&1
    cat "$work/$name.out"
    [ "$status" = 0 ] || fail "recipe $name: \`$command\` exited with status $status"
}
printed() { # NAME TEXT: recipe NAME printed TEXT
    grep -F -- "$2" "$work/$1.out" >/dev/null || fail "recipe $1 did not print '$2'"
}

show() { cexec systemctl show -P "$2" "$1"; }
# Runs a host program in the container's network namespace.
innet() { nsenter -t "$CONTAINER_PID" -n "$@"; }
fortune() { cexec fortune-client --timeout 10 "$@"; }
refused() { # PORT: nothing listens on TCP PORT in the container
    innet /usr/bin/python3 -c "
import socket, sys
try:
    socket.create_connection(('127.0.0.1', $1), timeout=2).close()
except ConnectionRefusedError:
    sys.exit(0)
sys.exit(1)"
}
# A point in time for logged_since (the container shares the host's clock).
cursor() { date +@%s.%N; }
# The binary's own journal lines since CURSOR, with extra journalctl arguments.
logged_since() {
    local since=$1
    shift
    cexec journalctl -q --no-pager -o cat ${since:+--since="$since"} SYSLOG_IDENTIFIER=fortune-server "$@"
}
has_line() { # CURSOR TEXT [ARGS]: the binary logged TEXT since CURSOR (waits 10 s)
    local since=$1 text=$2
    shift 2
    for _ in $(seq 50); do
        logged_since "$since" "$@" | grep -F -- "$text" >/dev/null && return 0
        sleep 0.2
    done
    fail "no journal line with '$text' ($*)"
}
id_of() { sed -n "s/^ *pub const $1: &str = \"\([0-9a-f]*\)\";/\1/p" src/logging.rs; }
# A drop-in of the test's own (not a recipe), text on stdin. Named zz-NAME.conf
# so that it comes after (and overrides) the recipes' override.conf.
drop_in() { # UNIT NAME
    cat >"$work/dropin"
    chmod 644 "$work/dropin"
    cput "$work/dropin" "/etc/systemd/system/$1.d/zz-$2.conf"
    cexec systemctl daemon-reload
}
drop_out() { # UNIT NAME: removes that drop-in
    cexec rm "/etc/systemd/system/$1.d/zz-$2.conf"
    cexec systemctl daemon-reload
}
ours() { # the fortune (on stdin) is one of /srv/fortunes/ours
    grep -xE 'Our (first|second|third) fortune\.' >/dev/null
}

run_recipe install
[ "$(cexec systemctl is-enabled fortune.socket)" = enabled ] || fail "fortune.socket is not enabled"
[ "$(show fortune.service ActiveState)" = active ] || fail "fortune-client did not start fortune.service"
[ -n "$(logged_since "" MESSAGE_ID="$(id_of SERVING)")" ] || fail "no MESSAGE_ID=SERVING line"
echo "MESSAGE_ID=$(id_of SERVING): $(logged_since "" MESSAGE_ID="$(id_of SERVING)" | tail -n 1)"

run_recipe port
refused 7017 || fail "port 7017 still open after the port recipe"
run_recipe port-back
refused 7018 || fail "port 7018 still open after port-back"

run_recipe own-fortunes
for _ in 1 2 3; do fortune | ours || fail "not a fortune of /srv/fortunes/ours"; done
pid=$(show fortune.service MainPID)

c=$(cursor)
run_recipe reload
has_line "$c" "reloaded 3 fortunes (/srv/fortunes/ours)" MESSAGE_ID="$(id_of RELOADED)"
[ "$(show fortune.service MainPID)" = "$pid" ] || fail "the reload recipe changed the process"
echo "reloaded in process $pid, found by MESSAGE_ID=$(id_of RELOADED)"

c=$(cursor)
[ "$(show fortune.service ActiveState)" = active ] || fail "fortune.service should run before the natural Accept=yes switch"
run_recipe accept-yes
[ "$(show fortune.socket Accept)" = yes ] || fail "fortune.socket has no Accept=yes"
[ "$(show fortune.service ActiveState)" = inactive ] || fail "fortune.service is $(show fortune.service ActiveState) beside Accept=yes"
failed=$(cexec systemctl list-units --failed --plain --no-legend 'fortune*')
[ -z "$failed" ] || fail "failed units after the Accept=yes switch: $failed"
has_line "$c" "stopping" MESSAGE_ID="$(id_of STOPPING)"
echo "the stop logged with MESSAGE_ID=$(id_of STOPPING)"
cexec test -s /var/cache/private/fortune-server/lists-v1 || fail "no list cache from the fortune@ instance"
run_recipe accept-yes-own-fortunes
fortune | ours || fail "fortune@.service does not serve /srv/fortunes/ours"
[ "$(show fortune.socket NAccepted)" -ge 3 ] || fail "fortune.socket accepted fewer than 3 connections"
run_recipe accept-yes-cheaper
[ "$(show fortune@x.service ProtectKernelTunables)" = no ] || fail "the accept-yes-cheaper drop-in is not in effect"
exposure=$(sed -n 's/.*Overall exposure level for fortune@x.service: \([0-9.]*\).*/\1/p' "$work/accept-yes-cheaper.out")
awk -v s="$exposure" 'BEGIN { exit !(s != "" && s <= 0.5) }' || fail "accept-yes-cheaper: exposure '$exposure' above 0.5"
fortune | ours || fail "fortune@.service with the cheaper sandbox does not serve /srv/fortunes/ours"
echo "fortune@.service without ProtectKernelTunables=: exposure $exposure"

step "--log-level debug: each connection's peer is a journal field (PEER)"
drop_in fortune@.service debug <<<$'[Service]\nEnvironment=FORTUNE_LOG_LEVEL=debug'
c=$(cursor)
fortune >/dev/null
peer_logged() { logged_since "$c" -o verbose | grep "^ *PEER=" >/dev/null; }
wait_for 10 "a PEER field" peer_logged
peer=$(logged_since "$c" -o verbose | sed -n 's/^ *PEER=//p' | sed -n 1p)
line=$(logged_since "$c" PEER="$peer")
[[ $line == "$peer: served" ]] || fail "journalctl PEER=$peer gives: $line"
echo "journalctl PEER=$peer: $line"
drop_out fortune@.service debug

run_recipe accept-no
[ "$(show fortune.service ActiveState)" = active ] || fail "fortune.service does not serve after accept-no"
fortune | ours || fail "fortune.service does not serve /srv/fortunes/ours after accept-no"

pid=$(show fortune.service MainPID)
run_recipe qotd-on
[ "$(show fortune.service MainPID)" = "$pid" ] || fail "qotd-on disturbed fortune.service (MainPID $pid, then $(show fortune.service MainPID))"
[ "$(show fortune-qotd.service ActiveState)" = active ] || fail "fortune-qotd.service not running after qotd-on"
innet /usr/bin/python3 - <<'EOF' || fail "no RFC 865 answer on TCP and UDP port 17"
import socket
with socket.create_connection(("127.0.0.1", 17), timeout=10) as s:
    data = b""
    while chunk := s.recv(4096):
        data += chunk
assert data.endswith(b"\r\n"), data
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
u.sendto(b"\n", ("127.0.0.1", 17))
reply = u.recv(65536)
assert 0 < len(reply) <= 512 and reply.endswith(b"\r\n"), reply
print("TCP 17:", data, "UDP 17:", reply)
EOF
fortune | ours || fail "port 7017 stopped serving with QOTD on"

step "a fatal error is one journal line (err) per start; the sockets keep listening"
service_failed() { [ "$(show fortune.service ActiveState)" = failed ]; }
failed_sockets() { cexec systemctl list-units --failed --plain --no-legend 'fortune*.socket'; }
one_error() { # CURSOR TEXT: exactly one err line of the binary since CURSOR, holding TEXT
    has_line "$1" "$2" -p err
    local lines
    lines=$(logged_since "$1" -p err)
    [ "$(echo "$lines" | grep -c .)" = 1 ] || fail "expected one error line, got: $lines"
    echo "journal (err): $lines"
}
for bad in "FORTUNE_IDLE_EXIT=10m|invalid value '10m' for '--idle-exit <SECS>'|" \
    "FORTUNE_FORTUNES=/srv/fortunes/missing|cannot read fortune file /srv/fortunes/missing|src/lib.rs" \
    "FORTUNE_FORTUNES=/root/fortunes|/root/fortunes: Permission denied|src/lib.rs"; do
    IFS='|' read -r setting text code_file <<<"$bad"
    cexec sh -c 'echo "Root fortune." >/root/fortunes'
    drop_in fortune.service bad <<<"[Service]
Environment=$setting"
    cexec systemctl stop fortune.service
    c=$(cursor)
    out=$(fortune 2>&1) && fail "served with $setting: $out"
    echo "fortune-client: $out"
    [[ $out == *"closed without a byte"* ]] || fail "the client was not closed at once: $out"
    # It refuses clients for 3 s (REFUSE_FOR), then exits.
    wait_for 10 "fortune.service to exit with $setting" service_failed
    one_error "$c" "$text"
    at=$(logged_since "$c" -p err -o json | /usr/bin/python3 -c 'import json, sys; print(json.loads(sys.stdin.readline()).get("CODE_FILE", ""))')
    [ "$at" = "$code_file" ] || fail "CODE_FILE is '$at', expected '$code_file'"
    [ "$(show fortune.service ExecMainStatus)" != 0 ] || fail "fortune.service exited 0 with $setting"
    [ "$(show fortune.service NRestarts)" = 0 ] || fail "fortune.service restarted with $setting"
    [ -z "$(failed_sockets)" ] || fail "sockets failed after one client: $(failed_sockets)"
    echo "status $(show fortune.service ExecMainStatus), not restarted; fortune.socket $(show fortune.socket SubState), fortune-qotd.socket $(show fortune-qotd.socket SubState)"
done

step "clients that keep coming while broken: the start limit is never hit, the sockets keep listening"
c=$(cursor)
started=$SECONDS
for _ in $(seq 60); do
    out=$(fortune 2>&1) && fail "served while broken: $out"
    [[ $out == *"closed without a byte"* ]] || fail "a client was not closed at once: $out"
    sleep 0.2
done
wait_for 10 "fortune.service to exit" service_failed
starts=$(logged_since "$c" -p err | grep -c .)
echo "60 clients in $((SECONDS - started)) s: $starts starts, one error line each"
[ "$starts" -ge 2 ] || fail "expected a start every 3 s or so, saw $starts"
[ -z "$(failed_sockets)" ] || fail "sockets failed while broken: $(failed_sockets)"
for s in fortune.socket fortune-qotd.socket; do
    [ "$(show $s Result)" = success ] || fail "$s: result $(show $s Result)"
done

step "the admin fixes the drop-in"
drop_out fortune.service bad
run_recipe errors
printed errors "fortune-server["
printed errors "error: cannot read fortune file /root/fortunes: Permission denied"
run_recipe heal
[ -z "$(failed_sockets)" ] || fail "failed after heal: $(failed_sockets)"
for s in fortune.socket fortune-qotd.socket; do
    [ "$(show $s SubState)" = running ] || [ "$(show $s SubState)" = listening ] || fail "$s is $(show $s SubState) after heal"
done
fortune --protocol text localhost:17 >/dev/null || fail "port 17 not back after heal"
fortune | ours || fail "7017 does not serve /srv/fortunes/ours after heal"
run_recipe reloads
printed reloads "reloaded 3 fortunes (/srv/fortunes/ours)"

# Restarts the service with drop-in TEXT, runs `fortune-client bench ARGS`,
# and expects a line holding LINE with EVENT's MESSAGE_ID.
provoke() { # EVENT LINE TEXT ARGS...
    local event=$1 line=$2 text=$3 c
    shift 3
    step "$event: logged with its MESSAGE_ID"
    drop_in fortune.service "$event" <<<"$text"
    cexec systemctl restart fortune.service
    c=$(cursor)
    cexec fortune-client bench --quiet "$@" >/dev/null 2>&1 || true
    has_line "$c" "$line" MESSAGE_ID="$(id_of "$event")"
    logged_since "$c" MESSAGE_ID="$(id_of "$event")" | sed -n 1p
    drop_out fortune.service "$event"
}
# Clients that never close each hold a descriptor while the service waits for
# them (--timeout); 100 of them exceed 64 descriptors (all from one source: no
# --max-per-source cap, which would otherwise hold them to 64/8).
provoke OUT_OF_FDS "pausing until descriptors free up" $'[Service]\nLimitNOFILE=64\nEnvironment=FORTUNE_MAX_PER_SOURCE=0' \
    --idle 100 --clients 1 --duration 2 --connections 20
# One fortune far larger than a socket buffer: a client that never reads
# keeps a connection busy; with 2 allowed, a few such clients reach the cap
# (all from one source: no --max-per-source, whose writer share would hold
# them to one of the two).
cexec sh -c 'head -c 3000000 /dev/zero | tr "\0" x >/srv/fortunes/big && echo >>/srv/fortunes/big'
provoke AT_CAP "connections (--max-connections) busy" \
    $'[Service]\nEnvironment=FORTUNE_FORTUNES=/srv/fortunes/big FORTUNE_MAX_ENTRY=4000000 FORTUNE_MAX_CONNECTIONS=2 FORTUNE_MAX_PER_SOURCE=0' \
    --idle 4 --clients 1 --duration 2 --connections 1
cexec systemctl restart fortune.service

run_recipe qotd-off
refused 17 || fail "port 17 still open after qotd-off"
[ "$(show fortune-qotd.service ActiveState)" = inactive ] || fail "fortune-qotd.service still runs after qotd-off"
fortune | ours || fail "7017 stopped serving after qotd-off"

run_recipe remove
refused 7017 || fail "port 7017 still open after apt remove"
cexec systemctl is-active --quiet fortune.socket fortune.service && fail "a unit is still active after apt remove"
cexec test -d /etc/systemd/system/fortune@.service.d || fail "apt remove took the admin's drop-ins"

run_recipe purge
cexec dpkg-query -W fortune-server >/dev/null 2>&1 && fail "dpkg still knows fortune-server after purge"
# shellcheck disable=SC2016 # expanded inside
left=$(cexec sh -c 'ls -d /etc/systemd/system/fortune* /etc/systemd/system/*.wants/fortune* \
    /var/cache/fortune-server /var/cache/private/fortune-server /usr/bin/fortune-* 2>/dev/null' || true)
[ -z "$left" ] || fail "left after purge: $left"

step "PASS: ${#RECIPES[@]} recipes of $DOC ran verbatim; errors one line each, sockets healed"
