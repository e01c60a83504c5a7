#!/usr/bin/env bash
# Lifecycle without loss, in a booted Debian 12 (systemd-nspawn, a network
# namespace of its own, the packages' real ports): every event an admin or a
# package causes runs while 4 clients loop on port 7017 (and 2 more on port 17
# while Quote of the Day is on), and the test prints, per event, the
# connections made and lost (refused, reset, timed out, bad answer):
#   .deb: upgrade to a higher release (packaging/build --release 2), reinstall;
#   systemctl restart, reload and daemon-reload of the service; Quote of the
#   Day enabled and disabled in the natural order (enable --now while
#   fortune.service runs, disable --now); restarting both sockets (QOTD on);
#   Accept=yes on and off (drop-in + restart fortune.socket, service running,
#   then not); .rpm: rpm -U to the
#   higher release (Debian's rpm); systemctl kill -s KILL, whose loss is
#   reported (at most the connections the killed process held, one per client).
# Every event must leave no failed unit, and every one but the kill must
# lose 0 (a socket restart too: fortune-server --hand-over holds the port and
# the waiting connections move to the new socket). Also: a failed reload makes `systemctl reload` fail and shows in the status line
# until a good one; under Accept=yes starting fortune.service is skipped, not
# failed; a unit started with no socket names the cause and the fix (not
# --listen). With CI=true a missing tool fails the test.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/system/lib/container.sh
. tests/system/lib/steps.sh

CLIENTS=4
require_tools systemd-nspawn debootstrap nsenter cargo rpmbuild dpkg-deb /usr/bin/python3
[ "$(id -u)" = 0 ] || missing "root (systemd-nspawn needs it)"

step "packaging/build, release 1 and 2"
work=$(mktemp -d /tmp/fortune-lifecycle.XXXXXX)
for release in 1 2; do
    packaging/build --release "$release" --output "$work/r$release" >"$work/build.log" 2>&1 ||
        { cat "$work/build.log" >&2; fail "packaging/build --release $release failed"; }
done
ls -l "$work"/r1 "$work"/r2

step "boot Debian 12 (its own network namespace)"
root=$(CONTAINER_EXTRA_PACKAGES=rpm,fortunes-min container_rootfs)
CONTAINER_PRIVATE_NETWORK=1 container_boot "$root"
loads=()
on_exit() {
    local status=$? pid
    for pid in "${loads[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    container_journal_if "$status"
    rm -rf "$work"
    _container_exit
    return "$status"
}
trap on_exit EXIT
for f in "$work"/r1/* "$work"/r2/*; do cput "$f" "/root/${f##*/}"; done
deb1=$(cd "$work/r1" && ls fortune-server_*.deb)
deb2=$(cd "$work/r2" && ls fortune-server_*.deb)
# The binary rpm: not the .src.rpm, nor -debuginfo.
rpm1=$(cd "$work/r1" && ls fortune-server-[0-9]*.rpm | grep -v '\.src\.rpm$')
rpm2=$(cd "$work/r2" && ls fortune-server-[0-9]*.rpm | grep -v '\.src\.rpm$')

show() { cexec systemctl show -P "$2" "$1"; }
innet() { nsenter -t "$CONTAINER_PID" -n "$@"; }
no_failed_unit() {
    local failed
    failed=$(cexec systemctl list-units --failed --plain --no-legend 'fortune*')
    [ -z "$failed" ] || fail "failed units after $1: $failed"
}

# Load: CLIENTS looping clients on 7017 (and 2 on 17 while QOTD is on).
qotd=no
start_load() { # NAME PORT N PROTOCOL
    # nsenter itself (not a function: its PID is $!), which execs python.
    nsenter -t "$CONTAINER_PID" -n /usr/bin/python3 tests/system/lib/clients.py loop "$2" "$3" 600 \
        "$work/$1.progress" --protocol "$4" >"$work/$1.out" 2>&1 &
    loads+=($!)
    eval "load_$1=$!"
}
good() { cat "$work/$1.progress" 2>/dev/null || echo 0; }
more_good() { [ "$(good "$1")" -ge "$2" ]; }
stop_load() { # NAME: stops it (not in a subshell: it waits for its child); $work/NAME.out has the counts
    local pid
    pid=$(eval echo "\$load_$1")
    kill -TERM "$pid"
    wait "$pid" || true
}
results=()
# Runs CMD inside while the clients loop: at least 20 answers before, 50
# after; then the clients stop and their counts are the event's.
event() { # NAME MAX_LOST CMD... (MAX_LOST "any": only reported)
    local name=$1 max=$2 before line lost
    shift 2
    step "$name, under load"
    start_load qt 7017 "$CLIENTS" qt
    [ "$qotd" = yes ] && start_load qotd 17 2 text
    wait_for 30 "answers before $name" more_good qt 20
    printf '# %s\n' "$*"
    cexec "$@" || fail "$name: \`$*\` failed"
    before=$(good qt)
    wait_for 60 "50 answers after $name" more_good qt $((before + 50))
    stop_load qt
    line=$(cat "$work/qt.out")
    echo "port 7017: $line"
    lost=$(sed -n '1s/^made [0-9]* lost \([0-9]*\) .*/\1/p' <<<"$line")
    results+=("$(printf '%-36s port 7017 %s' "$name" "$(head -n 1 <<<"$line")")")
    [ "$max" = any ] || [ "$lost" -le "$max" ] || fail "$name lost $lost connections on port 7017 (at most $max)"
    if [ "$qotd" = yes ]; then
        stop_load qotd
        line=$(cat "$work/qotd.out")
        echo "port 17: $line"
        results+=("$(printf '%-36s port 17   %s' "$name" "$(head -n 1 <<<"$line")")")
        lost=$(sed -n '1s/^made [0-9]* lost \([0-9]*\) .*/\1/p' <<<"$line")
        [ "$lost" = 0 ] || fail "$name lost $lost connections on port 17"
    fi
    no_failed_unit "$name"
}

step "apt install release 1 (fortunes-min too)"
cexec apt-get install -y -q "/root/$deb1" fortunes-min >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt install failed"; }
cexec fortune-client >/dev/null || fail "release 1 does not serve"

event "systemctl restart fortune.service" 0 systemctl restart fortune.service
event "systemctl reload fortune.service" 0 systemctl reload fortune.service
event "systemctl daemon-reload" 0 systemctl daemon-reload

event "enable --now fortune-qotd.socket" 0 systemctl enable --now fortune-qotd.socket
cexec fortune-client --protocol text 127.0.0.1:17 >/dev/null || fail "no Quote of the Day on port 17"
[ "$(show fortune.service ActiveState)" = active ] || fail "fortune.service stopped by enabling QOTD"
qotd=yes

pid=$(show fortune.service MainPID)
event "apt install release 2 (upgrade)" 0 apt-get install -y -q "/root/$deb2"
[ "$(show fortune.service MainPID)" != "$pid" ] || fail "the upgrade did not restart fortune.service"
# shellcheck disable=SC2016 # dpkg-query's own ${Version}
[ "$(cexec dpkg-query -W -f '${Version}' fortune-server)" = "$(dpkg-deb -f "$work/r2/$deb2" Version)" ] ||
    fail "the upgrade did not install release 2"
event "apt install --reinstall release 2" 0 apt-get install -y -q --reinstall "/root/$deb2"
event "systemctl restart fortune.service (QOTD on)" 0 systemctl restart fortune.service
event "systemctl restart both sockets (QOTD on)" 0 systemctl restart fortune.socket fortune-qotd.socket
for s in fortune.socket fortune-qotd.socket; do
    [ "$(show $s ActiveState)" = active ] || fail "$s is $(show $s ActiveState) after the upgrades"
done
qotd=no
event "disable --now fortune-qotd.socket" 0 systemctl disable --now fortune-qotd.socket
[ "$(show fortune-qotd.service ActiveState)" = inactive ] || fail "fortune-qotd.service still runs"

step "a failed reload: systemctl reload fails, the status line says so until a good one"
cexec mkdir -p /srv/fortunes /etc/systemd/system/fortune.service.d
cexec sh -c 'printf "One.\n%%\nTwo.\n" >/srv/fortunes/ours'
cexec sh -c 'printf "[Service]\nEnvironment=FORTUNE_FORTUNES=/srv/fortunes/ours\n" >/etc/systemd/system/fortune.service.d/zz-ours.conf'
cexec systemctl daemon-reload
cexec systemctl restart fortune.service
cexec sh -c ': >/srv/fortunes/ours'
cexec systemctl reload fortune.service 2>"$work/reload.err" && fail "systemctl reload exited 0 after a failed reload"
echo "systemctl reload: $(cat "$work/reload.err")"
status=$(show fortune.service StatusText)
echo "Status: $status"
[[ $status == *"RELOAD FAILED"*"/srv/fortunes/ours"* ]] || fail "the status line does not show the failed reload"
[[ $status == *" served, "* ]] || fail "the status line lost its counters after the reload"
cexec sh -c 'printf "One.\n%%\nTwo.\n%%\nThree.\n" >/srv/fortunes/ours'
cexec systemctl reload fortune.service || fail "systemctl reload failed with good fortunes"
status=$(show fortune.service StatusText)
echo "Status: $status"
[[ $status == "Serving 3 fortunes (/srv/fortunes/ours)"*" served, "* && $status != *"RELOAD FAILED"* ]] ||
    fail "the status line after a good reload: $status"
cexec rm /etc/systemd/system/fortune.service.d/zz-ours.conf
cexec systemctl daemon-reload
cexec systemctl restart fortune.service

accept_yes='mkdir -p /etc/systemd/system/fortune.socket.d &&
printf "[Socket]\nAccept=yes\n" >/etc/systemd/system/fortune.socket.d/zz-accept.conf &&
systemctl daemon-reload && systemctl restart fortune.socket'
accept_no='rm /etc/systemd/system/fortune.socket.d/zz-accept.conf && systemctl daemon-reload && systemctl restart fortune.socket'
[ "$(show fortune.service ActiveState)" = active ] || fail "fortune.service should run before the switch"
# Restarting a socket closes it (systemd has no other way to change Accept=):
# the socket's ExecStopPre= (fortune-server --hand-over) keeps every
# connection, those waiting in it and those arriving meanwhile.
event "Accept=yes on (service running)" 0 sh -c "$accept_yes"
[ "$(show fortune.socket Accept)" = yes ] || fail "no Accept=yes"
[ "$(show fortune.service ActiveState)" = inactive ] || fail "fortune.service is $(show fortune.service ActiveState) under Accept=yes"

step "fortune.service under Accept=yes: its start is skipped, not failed; a unit with no socket names the cause"
cexec systemctl start fortune.service || fail "systemctl start fortune.service failed under Accept=yes"
[ "$(show fortune.service ActiveState)" = inactive ] || fail "fortune.service is $(show fortune.service ActiveState) under Accept=yes"
no_failed_unit "systemctl start fortune.service under Accept=yes"
c=$(date +@%s.%N)
status=0
cexec systemd-run --quiet --wait --collect --unit=fortune-probe /usr/bin/fortune-server >/dev/null 2>&1 || status=$?
[ "$status" = 3 ] || fail "a unit with no socket exited with status $status, expected 3"
err=$(cexec journalctl -q --no-pager -o cat --since="$c" SYSLOG_IDENTIFIER=fortune-server -p err)
echo "journal: $err"
[[ $err == *"without a socket to serve"*"systemctl start fortune-probe.socket"* ]] || fail "the error does not name the cause"
[[ $err != *"--listen"* ]] || fail "the error suggests --listen"

event "Accept=yes off (service not running)" 0 sh -c "$accept_no"
[ "$(show fortune.socket Accept)" = no ] || fail "Accept=yes still on"
[ "$(show fortune.service ActiveState)" = active ] || fail "fortune.service does not serve after Accept=no"
# The socket restarts above (both sockets once, fortune.socket twice) were
# each bridged by a hand-over that saw the new socket, and none warned.
handed=$(cexec journalctl -q --no-pager -o cat -u fortune-hand-over.service -u fortune-qotd-hand-over.service)
echo "$handed"
[ "$(grep -c 'handed over after' <<<"$handed")" -ge 3 ] || fail "fewer than 3 hand-overs in the journal"
warned=$(cexec journalctl -q --no-pager -o cat -p warning -u fortune-hand-over.service -u fortune-qotd-hand-over.service)
[ -z "$warned" ] || fail "a hand-over warned: $warned"

event "systemctl kill -s KILL fortune.service" "$CLIENTS" systemctl kill -s KILL fortune.service

step ".rpm: rpm -i release 1, then rpm -U release 2 under load"
cexec apt-get purge -y -q fortune-server >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt purge failed"; }
cexec rpm -i --nodeps --force-debian "/root/$rpm1" || fail "rpm -i failed"
cexec systemctl start fortune.socket
cexec fortune-client >/dev/null || fail "the .rpm does not serve"
pid=$(show fortune.service MainPID)
event "rpm -U release 2 (upgrade)" 0 rpm -U --nodeps --force-debian "/root/$rpm2"
[ "$(show fortune.service MainPID)" != "$pid" ] || fail "rpm -U did not restart fortune.service"
cexec rpm -e --force-debian fortune-server

step "PASS: connections made and lost, per event"
printf '%s\n' "${results[@]}"
