#!/usr/bin/env bash
# The units in systemd/ under a real, booted systemd (Debian 12 in
# systemd-nspawn): socket activation read through the real Qt reader, STATUS=,
# reload, Accept=yes via the README's drop-in, RFC 865 over TCP and UDP,
# --idle-exit with a restart by the socket, a clean stop, and the sandbox's
# `systemd-analyze security` exposure (at most 0.5) for both services.
# fortune.socket's limits: 200 idle connections from 127.0.0.1 leave a client
# from 127.0.1.1 served (Accept=yes and no), and a flood through an Accept=yes
# copy with an unsandboxed template leaves it active (a copy with systemd's
# default trigger limit, the control, fails under the same flood).
# With the trigger limit off, an Accept=no copy whose service never takes its
# connections is stopped by the service's start limit, not left looping.
# The optional packaging/cheaper-sandbox.conf for fortune@.service: it
# verifies, serves, and keeps the exposure at most 0.5.
# Drop-ins move every Listen*= to 127.0.0.1 high ports: nothing listens
# beyond loopback. With CI=true a missing tool fails the test.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/system/lib/container.sh
. tests/system/lib/steps.sh

MAX_EXPOSURE=0.5
BIN=target/release/fortune-server
UNITS=(fortune.socket fortune.service fortune@.service fortune-qotd.socket fortune-qotd.service)


require_tools systemd-nspawn debootstrap nsenter systemd-analyze
/usr/bin/python3 -c 'import PyQt5.QtNetwork' 2>/dev/null || missing "python3-pyqt5"
[ "$(id -u)" = 0 ] || missing "root (systemd-nspawn needs it)"

step "the three services share one sandbox"
sandbox() { sed -n '/^DynamicUser=/,/^SystemCallErrorNumber=/p' "systemd/$1"; }
for other in fortune@.service fortune-qotd.service; do
    if ! diff <(sandbox fortune.service) <(sandbox "$other"); then
        fail "the sandbox lines of fortune.service and $other differ (diff above)"
    fi
done
echo "identical: $(sandbox fortune.service | wc -l) lines"

step "build the binary"
cargo build --release --quiet
ls -l "$BIN"

# Free loopback ports: QT for fortune.socket, QOTD for fortune-qotd.socket
# (TCP and UDP on the same number, as port 17 is).
read -r QT QOTD < <(/usr/bin/python3 - <<'EOF'
import socket
ports = []
for _ in range(100):
    if len(ports) == 2:
        break
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port)); ports.append(port)
    except OSError:
        pass
    t.close(); u.close()
print(*ports)
EOF
)

step "boot Debian 12 with systemd in a container"
root=$(container_rootfs)
container_boot "$root"
on_exit() {
    local status=$?
    [ -z "$holder_pid" ] || kill "$holder_pid" 2>/dev/null || true
    if [ "$status" != 0 ] && [ -n "$CONTAINER_PID" ]; then
        echo "--- the container's journal (last 60 lines)"
        cexec journalctl --no-pager -n 60 || true
    fi
    _container_exit
    return "$status"
}
trap on_exit EXIT

step "install the binary and the units (by hand, as README.md shows)"
cput "$BIN" /usr/bin/fortune-server
for unit in "${UNITS[@]}"; do
    cput "systemd/$unit" "/etc/systemd/system/$unit"
done
dropin() { # UNIT NAME: the drop-in's text on stdin
    local file
    file=$(mktemp)
    cat >"$file"
    chmod 644 "$file"
    cput "$file" "/etc/systemd/system/$1.d/$2.conf"
    rm -f "$file"
}
# An empty Listen*= resets every Listen*= line of the unit, stream and datagram.
dropin fortune.socket loopback <<EOF
[Socket]
ListenStream=
ListenStream=127.0.0.1:$QT
EOF
dropin fortune-qotd.socket loopback <<EOF
[Socket]
ListenStream=
ListenStream=127.0.0.1:$QOTD
ListenDatagram=127.0.0.1:$QOTD
EOF
cexec systemctl daemon-reload
echo "fortune.socket on 127.0.0.1:$QT, fortune-qotd.socket on 127.0.0.1:$QOTD (tcp and udp)"

step "systemd-analyze verify (no output allowed)"
for unit in "${UNITS[@]}"; do
    # man:fortune-server(8) comes with the package; here only the units are installed.
    out=$(cexec systemd-analyze verify --man=no "/etc/systemd/system/$unit" 2>&1) ||
        fail "systemd-analyze verify $unit: $out"
    [ -z "$out" ] || fail "systemd-analyze verify $unit printed: $out"
    echo "$unit: ok"
done

show() { cexec systemctl show -P "$2" "$1"; }
logged() { # TEXT [JOURNAL MATCH]: prints the line once fortune.service has logged TEXT (10 s at most)
    local text=$1
    shift
    for _ in $(seq 50); do
        cexec journalctl --no-pager -u fortune.service -o cat "$@" | grep -F -- "$text" && return 0
        sleep 0.2
    done
    return 1
}
qt_read() {
    local out
    out=$(QT_QPA_PLATFORM=offscreen PYTHONIOENCODING=utf-8 timeout 60 \
        /usr/bin/python3 tests/qt_reader.py 127.0.0.1 "$QT" --framing qt --count 1) ||
        fail "the Qt reader got no fortune from 127.0.0.1:$QT"
    [ "${#out}" -gt 2 ] || fail "the Qt reader read an empty fortune"
    echo "Qt read: $out"
    fortune=$out
}

# fortune.socket's limits (issue 11): idle holders and floods, loopback only.
CLIENTS=tests/system/lib/clients.py
holder_pid=
free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
fetch_from() { # ADDR PORT: one fortune from 127.0.0.1:PORT, the client bound to ADDR
    local out
    out=$(timeout 30 /usr/bin/python3 "$CLIENTS" fetch "$2" --bind "$1") ||
        fail "a client from $1 got no fortune on port $2"
    echo "client from $1 served: $out"
}
hold_idle() { # PORT N: N connections from 127.0.0.1 that never read or close (60 s at most)
    local ready
    ready=$(mktemp -u)
    /usr/bin/python3 "$CLIENTS" hold "$1" "$2" 60 "$ready" &
    holder_pid=$!
    wait_for 30 "$2 idle connections open" test -s "$ready"
    rm -f "$ready"
    echo "$2 connections from 127.0.0.1 open, never read (pid $holder_pid)"
}
release_idle() {
    kill "$holder_pid" 2>/dev/null || true
    wait "$holder_pid" 2>/dev/null || true
    holder_pid=
}
idle_holders_step() { # MODE: with fortune.socket in MODE, 200 idle from one address, then another address
    local seen
    taken() { echo $(($(show fortune.socket NAccepted) + $(show fortune.socket NRefused))); }
    seen=$(taken)
    hold_idle "$QT" 200
    if [ "$1" = Accept=yes ]; then
        # Every one of the 200 went through systemd (served or refused) before the other client comes.
        all_taken() { [ "$(taken)" -ge $((seen + 200)) ]; }
        wait_for 30 "systemd took the 200 connections" all_taken
        local held refused
        held=$(show fortune.socket NConnections)
        refused=$(show fortune.socket NRefused)
        echo "instances held: $held (MaxConnectionsPerSource=$(show fortune.socket MaxConnectionsPerSource)), refused so far: $refused"
        [ "$held" -le "$(show fortune.socket MaxConnectionsPerSource)" ] ||
            fail "one address holds $held instances, above MaxConnectionsPerSource"
    fi
    fetch_from 127.0.1.1 "$QT"
    [ "$(show fortune.socket ActiveState)" = active ] || fail "fortune.socket is $(show fortune.socket ActiveState)"
    release_idle
}
flood_units() { # NAME PORT SED: a copy of fortune.socket (Accept=yes, SED applied) as NAME.socket, unsandboxed template
    local file
    file=$(mktemp)
    sed -e "s/^ListenStream=.*/ListenStream=127.0.0.1:$2/" -e 's/^Accept=no$/Accept=yes/' -e "$3" \
        systemd/fortune.socket >"$file"
    chmod 644 "$file"
    cput "$file" "/etc/systemd/system/$1.socket"
    printf '[Unit]\nCollectMode=inactive-or-failed\n\n[Service]\nExecStart=/usr/bin/fortune-server\n' >"$file"
    cput "$file" "/etc/systemd/system/$1@.service"
    rm -f "$file"
}
flood() { # NAME PORT: 32 clients looping connect, read, close for 4 s (10000 connections at most)
    local out
    out=$(target/release/fortune-client bench "127.0.0.1:$2" -c 32 -d 4 --connections 10000 --timeout 2 --json -q) || true
    /usr/bin/python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print("flood: %d connections in %.1f s, %d served, %d refused %s" % (r["ok"] + r["failed"], r["seconds"], r["ok"], r["failed"], r["errors"]))' "$out"
    echo "$1.socket: $(show "$1.socket" ActiveState), result $(show "$1.socket" Result), accepted $(show "$1.socket" NAccepted), refused $(show "$1.socket" NRefused)"
}

step "systemctl start fortune.socket; read a fortune through Qt"
cexec systemctl start fortune.socket
[ "$(show fortune.service ActiveState)" = inactive ] || fail "fortune.service started before any client"
qt_read
[ "$(show fortune.service ActiveState)" = active ] || fail "fortune.service is not active after a client"
pid=$(show fortune.service MainPID)
echo "fortune.service active, MainPID $pid, running as uid $(cexec stat -c %u "/proc/$pid") (DynamicUser)"
limit=$(cexec grep 'Max open files' "/proc/$pid/limits")
echo "$limit"
# LimitNOFILE=65536 (capped by this host's hard limit): soft = hard, not 1024.
read -r soft hard < <(echo "$limit" | awk '{ print $4, $5 }')
if [ "$soft" != "$hard" ] || [ "$soft" -le 1024 ]; then fail "LimitNOFILE= not in effect"; fi

step "systemctl status shows the STATUS= text"
status=$(cexec systemctl status --no-pager fortune.service || true)
echo "$status" | head -n 12
echo "$status" | grep -q 'Status: "Serving 7 fortunes (built-in) on tcp 127.0.0.1:'"$QT"' (qt)' ||
    fail "systemctl status lacks the STATUS= line"

step "the watchdog is fed (WatchdogSec=$(show fortune.service WatchdogUSec))"
fed=$(show fortune.service WatchdogTimestampMonotonic)
watchdog_fed() { [ "$(show fortune.service WatchdogTimestampMonotonic)" != "$fed" ]; }
wait_for 10 "a WATCHDOG=1 ping" watchdog_fed
echo "last ping at $(show fortune.service WatchdogTimestamp)"

step "systemctl reload keeps the same process"
cexec systemctl reload fortune.service
[ "$(show fortune.service ActiveState)" = active ] || fail "fortune.service is not active after reload"
[ "$(show fortune.service MainPID)" = "$pid" ] || fail "MainPID changed on reload ($pid -> $(show fortune.service MainPID))"
logged 'reloaded 7 fortunes' || fail "no reload in the journal"
qt_read
echo "still MainPID $pid"

step "systemd-analyze security (booted), at most $MAX_EXPOSURE"
scores=()
for unit in fortune.service fortune@probe.service; do
    report=$(cexec systemd-analyze security --no-pager "$unit") || fail "systemd-analyze security $unit failed"
    echo "$report" | grep -v '^✓' | sed 's/^/  /'
    score=$(echo "$report" | sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    [ -n "$score" ] || fail "no exposure level for $unit"
    scores+=("$unit $score")
    awk -v s="$score" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(s <= max) }' ||
        fail "$unit exposure $score is above $MAX_EXPOSURE"
done

step "switch fortune.socket to Accept=yes with the two-line drop-in"
dropin fortune.socket accept <<EOF
[Socket]
Accept=yes
EOF
# As README.md says, after `systemctl edit` (which reloads the daemon).
cexec systemctl daemon-reload
cexec systemctl stop fortune.service
cexec systemctl restart fortune.socket
[ "$(show fortune.socket Accept)" = yes ] || fail "the drop-in did not set Accept=yes"
qt_read
qt_read
no_instance_left() { [ -z "$(cexec systemctl list-units --plain --no-legend 'fortune@*')" ]; }
wait_for 10 "fortune@ instances finished" no_instance_left
instances=$(cexec journalctl --no-pager -o cat _PID=1 | grep -o '^Started fortune@[0-9][^ ]*\.service' | sort -u)
[ "$(echo "$instances" | grep -c .)" -ge 2 ] || fail "no two fortune@ instances in the journal: $instances"
echo "$instances"
[ "$(show fortune.socket NAccepted)" -ge 2 ] || fail "fortune.socket accepted fewer than 2 connections"
failed=$(cexec systemctl list-units --failed --plain --no-legend 'fortune*')
[ -z "$failed" ] || fail "failed units: $failed"
[ "$(show fortune.service ActiveState)" = inactive ] || fail "fortune.service ran in Accept=yes mode"
echo "served by fortune@ instances, $(show fortune.socket NAccepted) accepted; fortune.service stayed inactive"

step "Accept=yes with a directory: the lists cached in CacheDirectory="
DIR=/usr/share/games/fortune-server-test-dir
for file in fortunes fortunes.dat; do
    cput "tests/system/fortune-dir/$file" "$DIR/$file"
done
dropin fortune@.service dir <<EOF
[Service]
Environment=FORTUNE_FORTUNES=$DIR
EOF
cexec systemctl daemon-reload
# The cache leaves out a directory changed within the last second.
sleep 1.2
qt_read
qt_read
[[ $fortune == '"Alpha fortune."' || $fortune == '"Beta fortune."' ]] || fail "not a fortune from $DIR: $fortune"
cache=$(cexec cat /var/cache/fortune-server/lists-v1) || fail "no list cache in /var/cache/fortune-server"
echo "$cache"
grep -qx "2 fortunes" <<<"$cache" || fail "the list cache does not list $DIR/fortunes"
cexec rm /etc/systemd/system/fortune@.service.d/dir.conf

step "Accept=yes: 200 idle connections from 127.0.0.1 do not lock out 127.0.1.1"
cexec systemctl daemon-reload
idle_holders_step Accept=yes
wait_for 20 "fortune@ instances finished" no_instance_left

step "Accept=yes: a flood through a copy of fortune.socket with a fast template leaves the socket active"
FLOOD=$(free_port)
CONTROL=$(free_port)
flood_units fortune-flood "$FLOOD" ''
# The control: the same copy with systemd's default trigger limit (200 in 2 s).
flood_units fortune-control "$CONTROL" '/^TriggerLimitBurst=/d'
cexec systemctl daemon-reload
cexec systemctl start fortune-control.socket fortune-flood.socket
flood fortune-control "$CONTROL"
[ "$(show fortune-control.socket Result)" = trigger-limit-hit ] ||
    fail "the flood did not trip systemd's default trigger limit: too weak to prove anything"
flood fortune-flood "$FLOOD"
[ "$(show fortune-flood.socket ActiveState)" = active ] || fail "the flood took fortune-flood.socket down"
[ "$(show fortune-flood.socket Result)" = success ] || fail "fortune-flood.socket result: $(show fortune-flood.socket Result)"
[ "$(show fortune-flood.socket NRefused)" -gt 0 ] || fail "nothing refused: the flood never reached the limits"
# From 16 addresses, every other connection reset by the client before systemd
# accepts it (systemd then cannot read its peer: it must drop it, not fail).
/usr/bin/python3 "$CLIENTS" flood "$FLOOD" 16 3 10000 || fail "the flood from 16 addresses did not run"
echo "fortune-flood.socket: $(show fortune-flood.socket ActiveState), result $(show fortune-flood.socket Result), accepted $(show fortune-flood.socket NAccepted), refused $(show fortune-flood.socket NRefused)"
[ "$(show fortune-flood.socket ActiveState)" = active ] || fail "the flood from 16 addresses took fortune-flood.socket down"
[ "$(show fortune-flood.socket Result)" = success ] || fail "fortune-flood.socket result: $(show fortune-flood.socket Result)"
flood_done() { [ -z "$(cexec systemctl list-units --plain --no-legend 'fortune-flood@*')" ]; }
wait_for 20 "fortune-flood@ instances finished" flood_done
fetch_from 127.0.0.1 "$FLOOD"
cexec systemctl stop fortune-flood.socket fortune-control.socket
cexec systemctl reset-failed fortune-control.socket

step "Accept=no without a trigger limit: a service that never takes its connections does not loop"
# A copy of fortune.socket (Accept=no) whose service exits at once: the pending
# client triggers it again and again until the service's start limit stops it.
LOOP=$(free_port)
file=$(mktemp)
sed -e "s/^ListenStream=.*/ListenStream=127.0.0.1:$LOOP/" systemd/fortune.socket >"$file"
chmod 644 "$file"
cput "$file" /etc/systemd/system/fortune-loop.socket
printf '[Service]\nExecStart=/bin/true\n' >"$file"
cput "$file" /etc/systemd/system/fortune-loop.service
rm -f "$file"
cexec systemctl daemon-reload
cexec systemctl start fortune-loop.socket
hold_idle "$LOOP" 1
loop_stopped() { [ "$(show fortune-loop.socket Result)" = service-start-limit-hit ]; }
wait_for 30 "fortune-loop.socket stopped by the service's start limit" loop_stopped
release_idle
starts=$(cexec journalctl --no-pager -o cat -u fortune-loop.service | grep -c '^Started ' || true)
echo "fortune-loop.socket: $(show fortune-loop.socket ActiveState), result $(show fortune-loop.socket Result) after $starts starts"
[ "$starts" -le 6 ] || fail "fortune-loop.service started $starts times"
cexec systemctl reset-failed fortune-loop.socket fortune-loop.service

step "Accept=yes with the optional packaging/cheaper-sandbox.conf (docs/admin.md): verified, serves, exposure at most $MAX_EXPOSURE"
CHEAPER=packaging/cheaper-sandbox.conf
# docs/admin.md's recipe (run by tests/system/admin.sh) writes the same lines.
while IFS= read -r line; do
    grep -qxF -- "$line" docs/admin.md || fail "docs/admin.md's recipe lacks '$line' of $CHEAPER"
done < <(grep -v '^#' "$CHEAPER")
# As its header says (the drop-in directory is made by cput).
cput "$CHEAPER" /etc/systemd/system/fortune@.service.d/cheaper-sandbox.conf
cexec systemctl daemon-reload
out=$(cexec systemd-analyze verify --man=no /etc/systemd/system/fortune@.service 2>&1) ||
    fail "systemd-analyze verify fortune@.service with $CHEAPER: $out"
[ -z "$out" ] || fail "systemd-analyze verify fortune@.service with $CHEAPER printed: $out"
[ "$(show fortune@probe.service ProtectKernelTunables)" = no ] || fail "$CHEAPER is not in effect"
report=$(cexec systemd-analyze security --no-pager fortune@probe.service) || fail "systemd-analyze security failed"
score=$(echo "$report" | sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
echo "fortune@.service with $CHEAPER: exposure $score"
awk -v s="$score" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(s <= max) }' ||
    fail "fortune@.service with $CHEAPER: exposure $score is above $MAX_EXPOSURE"
scores+=("fortune@probe.service+cheaper-sandbox.conf $score")
qt_read
cexec rm /etc/systemd/system/fortune@.service.d/cheaper-sandbox.conf

step "back to Accept=no; start fortune-qotd.socket; RFC 865 over TCP and UDP"
cexec rm /etc/systemd/system/fortune.socket.d/accept.conf
cexec systemctl daemon-reload
cexec systemctl restart fortune.socket
[ "$(show fortune.socket Accept)" = no ] || fail "fortune.socket still has Accept=yes"
cexec systemctl start fortune-qotd.socket
/usr/bin/python3 - "$QOTD" <<'EOF'
import socket, sys
port = int(sys.argv[1])
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    data = b""
    while chunk := s.recv(4096):
        data += chunk
text = data.decode("utf-8")
assert text and text.endswith("\r\n") and "\n" not in text.replace("\r\n", ""), repr(data)
print("TCP text:", repr(text))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
u.sendto(b"\n", ("127.0.0.1", port))
reply, _ = u.recvfrom(65536)
assert 0 < len(reply) <= 512 and reply.endswith(b"\r\n"), repr(reply)
print(f"UDP text ({len(reply)} bytes):", repr(reply.decode("utf-8")))
EOF
qt_read
status=$(show fortune-qotd.service StatusText)
echo "fortune-qotd.service serves both port $QOTD sockets: $status"
for socket in "tcp 127.0.0.1:$QOTD (text)" "udp 127.0.0.1:$QOTD (text)"; do
    [[ $status == *"$socket"* ]] || fail "fortune-qotd.service does not serve $socket"
done
[[ $(show fortune.service StatusText) == *"tcp 127.0.0.1:$QT (qt)"* ]] || fail "fortune.service does not serve $QT"

step "Accept=no: 200 idle connections from 127.0.0.1 do not lock out 127.0.1.1"
idle_holders_step Accept=no

step "fortunes from /usr/share/games/fortunes; --idle-exit: exits 0 when idle, the socket starts it again"
FILE=/usr/share/games/fortunes/fortune-server-test
fortune_file() { # the fortunes, one per argument, in fortune-mod's % format
    local file
    file=$(mktemp)
    printf '%s\n%%\n' "$@" >"$file"
    chmod 644 "$file"
    cput "$file" "$FILE"
    rm -f "$file"
}
fortune_file "Alpha fortune." "Beta fortune."
dropin fortune.service test <<EOF
[Service]
Environment=FORTUNE_FORTUNES=$FILE FORTUNE_IDLE_EXIT=2
EOF
cexec systemctl stop fortune.service
cexec systemctl daemon-reload
qt_read
[[ $fortune == '"Alpha fortune."' || $fortune == '"Beta fortune."' ]] || fail "not a fortune from $FILE: $fortune"
[[ $(show fortune.service StatusText) == "Serving 2 fortunes ($FILE)"* ]] ||
    fail "STATUS= does not name $FILE: $(show fortune.service StatusText)"
first=$(show fortune.service InvocationID)
service_inactive() { [ "$(show fortune.service ActiveState)" = inactive ]; }
wait_for 20 "fortune.service idle exit" service_inactive
[ "$(show fortune.service Result)" = success ] || fail "idle exit result: $(show fortune.service Result)"
[ "$(show fortune.service ExecMainStatus)" = 0 ] || fail "idle exit status: $(show fortune.service ExecMainStatus)"
[ "$(show fortune.socket ActiveState)" = active ] || fail "fortune.socket is not listening after the idle exit"
logged '(--idle-exit): stopping' || fail "no idle exit in the journal"
qt_read
second=$(show fortune.service InvocationID)
if [ -z "$second" ] || [ "$second" = "$first" ]; then
    fail "the client after the idle exit was not served by a new instance"
fi
echo "served again by a new instance (invocation $first -> $second)"
fortune_file "Alpha fortune." "Beta fortune." "Gamma fortune."
cexec systemctl reload fortune.service
logged "reloaded 3 fortunes ($FILE)" || fail "the reload did not read the 3 fortunes of $FILE"

step "systemctl stop ends cleanly"
pid=$(show fortune.service MainPID)
cexec systemctl stop fortune-qotd.socket fortune.socket fortune.service fortune-qotd.service
[ "$(show fortune.service Result)" = success ] || fail "stop result: $(show fortune.service Result)"
[ "$(show fortune.service ExecMainStatus)" = 0 ] || fail "stop status: $(show fortune.service ExecMainStatus)"
logged 'stopped; ' _PID="$pid" || fail "no clean stop in the journal"
failed=$(cexec systemctl list-units --failed --plain --no-legend 'fortune*')
[ -z "$failed" ] || fail "failed units: $failed"
if /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $QT), timeout=2)" 2>/dev/null; then
    fail "127.0.0.1:$QT still accepts connections after stop"
fi
echo "fortune.service exited 0; nothing listens on $QT"

step "exposure (systemd-analyze security, booted, at most $MAX_EXPOSURE)"
printf '%s\n' "${scores[@]}"
