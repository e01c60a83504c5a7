# shellcheck shell=bash
# A booted Debian 12 systemd in a container, for system tests (sourced by bash).
#
#   root=$(container_rootfs)   # a bookworm rootfs: cached in /var/tmp, fresh when CI=true
#   container_boot "$root"     # boots it; sets NSPAWN_PID and CONTAINER_PID; the EXIT trap stops it
#   cexec CMD...               # runs CMD inside (all namespaces of the container's PID 1)
#   cput SRC DEST              # copies a host file to DEST inside (mode kept, parents made)
#   container_stop             # powers it off (by PID), bounded; safe to call twice
#   container_journal_if STATUS  # the container's last 60 journal lines if STATUS is not 0
#
# CONTAINER_EXTRA_PACKAGES (comma-separated) adds packages to debootstrap's
# --include; CONTAINER_MIRROR overrides the Debian mirror. CONTAINER_SUITE
# (bookworm) and CONTAINER_BASE_PACKAGES (systemd,systemd-sysv,dbus: what
# booting needs; empty for a build chroot) make other rootfs the same way. The container shares
# the host's network namespace: a unit on 127.0.0.1:PORT inside is reachable
# from the host; with CONTAINER_PRIVATE_NETWORK=1 it has a network namespace of
# its own (loopback only: units may listen on any port and address; reach them
# with `nsenter -t "$CONTAINER_PID" -n CMD`). Changes inside go to a tmpfs overlay (--volatile=overlay), so
# the rootfs stays clean for the next boot. Sourcing this file (and
# container_boot) sets an EXIT trap that stops the container and removes a CI
# rootfs; a script that needs its own EXIT trap must call _container_exit from it.
# Facts behind the flags: /work/shared/notes/systemd-in-tests.md.

CONTAINER_MIRROR=${CONTAINER_MIRROR:-http://deb.debian.org/debian}
CONTAINER_CACHE=${CONTAINER_CACHE:-/var/tmp/fortune-server-rootfs}
NSPAWN_PID=
CONTAINER_PID=
# A rootfs built for this run only (CI), removed at exit. Named by the script's
# PID ($$ is the same in the $(container_rootfs) subshell).
_container_fresh=/var/tmp/fortune-server-rootfs-ci.$$
_container_log=

_container_say() { printf '[container] %s\n' "$*" >&2; }

# Prints the path of a rootfs of CONTAINER_SUITE with the base and extra packages.
# Locally it is cached per package list (built once, under a lock, then reused);
# with CI=true it is built fresh for this script and removed at exit, unless
# tests/run made CONTAINER_RUN_CACHE: then it is built fresh once for the whole
# run there (the scripts asking for the same packages share it), and tests/run
# removes it.
container_rootfs() {
    local base=${CONTAINER_BASE_PACKAGES-systemd,systemd-sysv,dbus}
    local include="$base${base:+${CONTAINER_EXTRA_PACKAGES:+,}}${CONTAINER_EXTRA_PACKAGES:-}"
    local tool
    for tool in debootstrap systemd-nspawn nsenter; do
        command -v "$tool" >/dev/null || {
            _container_say "$tool is missing: apt-get install debootstrap systemd-container util-linux"
            return 1
        }
    done
    if [ "${CI:-}" = true ] && [ -z "${CONTAINER_RUN_CACHE:-}" ]; then
        rm -rf "$_container_fresh"
        _container_debootstrap "$include" "$_container_fresh" || return 1
        printf '%s\n' "$_container_fresh"
        return 0
    fi
    local key root cache=${CONTAINER_RUN_CACHE:-$CONTAINER_CACHE}
    key=$(printf '%s' "$include" | sha256sum | cut -c1-12)
    root="$cache/${CONTAINER_SUITE:-bookworm}-$key"
    mkdir -p "$cache"
    (
        # Two test scripts may ask at once: one builds, the other waits.
        flock -w 600 9 || { _container_say "timed out waiting for $cache/lock"; exit 1; }
        [ -e "$root/.complete" ] && exit 0
        rm -rf "$root.partial"
        _container_debootstrap "$include" "$root.partial" || exit 1
        touch "$root.partial/.complete"
        rm -rf "$root" && mv "$root.partial" "$root"
    ) 9>"$cache/lock" || return 1
    printf '%s\n' "$root"
}

_container_debootstrap() {
    local include=$1 root=$2 log
    log=$(mktemp) || return 1
    _container_say "debootstrap ${CONTAINER_SUITE:-bookworm} ($include) into $root"
    if ! timeout 900 debootstrap --variant=minbase ${include:+--include="$include"} "${CONTAINER_SUITE:-bookworm}" \
        "$root" "$CONTAINER_MIRROR" \
        >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        _container_say "debootstrap failed (log above)"
        return 1
    fi
    rm -f "$log"
}

_container_install_trap() {
    trap _container_exit EXIT
    # So that the EXIT trap also runs when the script is interrupted.
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

_container_exit() {
    local status=$?
    container_stop
    rm -rf "$_container_fresh"
    return "$status"
}

_container_install_trap

# Boots ROOT with systemd as PID 1, waits until the system is up.
container_boot() {
    local root=$1
    [ -d "$root" ] || { _container_say "no rootfs at $root"; return 1; }
    _container_log=$(mktemp /tmp/fortune-container-console.XXXXXX) || return 1
    _container_install_trap
    # bpf() and CAP_BPF as a host's root has them (nspawn withholds both):
    # fortune-server --hand-over loads an eBPF program (src/migrate.rs).
    systemd-nspawn --register=no --keep-unit --quiet --volatile=overlay -D "$root" --boot \
        --system-call-filter=bpf --capability=CAP_BPF \
        ${CONTAINER_PRIVATE_NETWORK:+--private-network} \
        </dev/null >"$_container_log" 2>&1 &
    NSPAWN_PID=$!
    # The container's systemd is the nspawn process's child.
    for _ in $(seq 100); do
        CONTAINER_PID=$(awk '{print $1}' "/proc/$NSPAWN_PID/task/$NSPAWN_PID/children" 2>/dev/null)
        [ -n "$CONTAINER_PID" ] && [ -e "/proc/$CONTAINER_PID/root/run/systemd/private" ] && break
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$CONTAINER_PID" ] || ! [ -e "/proc/$CONTAINER_PID/root/run/systemd/private" ]; then
        _container_say "the container did not boot; its console:"
        cat "$_container_log" >&2
        return 1
    fi
    local state
    state=$(timeout 60 nsenter -t "$CONTAINER_PID" -a systemctl is-system-running --wait 2>&1) || true
    _container_say "booted (nspawn pid $NSPAWN_PID, systemd pid $CONTAINER_PID): $state"
    case $state in
        running | degraded) ;;
        *)
            _container_say "the system did not come up; its console:"
            cat "$_container_log" >&2
            return 1
            ;;
    esac
}

# Runs CMD inside the container, with a clean environment.
cexec() {
    nsenter -t "$CONTAINER_PID" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 "$@"
}

# Copies host file SRC to DEST inside. Through a shell inside rather than
# /proc/PID/root, so that symlinks in DEST resolve in the container.
cput() {
    local src=$1 dest=$2 mode
    mode=$(stat -c %a "$src") || return 1
    cexec mkdir -p "$(dirname "$dest")" || return 1
    # shellcheck disable=SC2016 # expanded by the shell inside
    cexec sh -c 'cat >"$1" && chmod "$2" "$1"' sh "$dest" "$mode" <"$src"
}

# For an EXIT trap: the container's last journal lines when the test failed.
container_journal_if() {
    if [ "$1" != 0 ] && [ -n "$CONTAINER_PID" ]; then
        echo "--- the container's journal (last 60 lines)"
        cexec journalctl --no-pager -n 60 || true
    fi
}

# Powers the container off, by its nspawn PID; SIGKILL after 30 s.
container_stop() {
    [ -n "$NSPAWN_PID" ] || return 0
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
        # SIGTERM makes nspawn ask the container's systemd to power off.
        kill -TERM "$NSPAWN_PID" 2>/dev/null
        for _ in $(seq 300); do
            kill -0 "$NSPAWN_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            _container_say "nspawn $NSPAWN_PID still running after 30 s: killing it"
            kill -KILL "$NSPAWN_PID" 2>/dev/null
        fi
    fi
    wait "$NSPAWN_PID" 2>/dev/null
    _container_say "stopped (nspawn pid $NSPAWN_PID)"
    NSPAWN_PID=
    CONTAINER_PID=
    [ -n "$_container_log" ] && rm -f "$_container_log"
    _container_log=
    return 0
}
