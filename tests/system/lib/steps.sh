# shellcheck shell=bash
# How every system test prints its steps and gives up (sourced by bash).
#
#   step TEXT           a heading for what comes next
#   fail TEXT           one FAIL line on stderr, then exit 1
#   missing WHAT        WHAT is not there: fails with CI=true, else skips the test (exit 0)
#   require_tools T...  `missing` for each T not on PATH (a T with a / must exist)
#   wait_for SECS WHAT CMD...  until CMD succeeds (checked every 0.1 s), else fail

step() { printf '\n--- %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
missing() {
    if [ "${CI:-}" = true ]; then fail "$1 is missing and CI=true: install it (.ci/packages)"; fi
    echo "SKIPPED: $1 is not installed"
    exit 0
}
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || missing "$tool"
    done
}

wait_for() { # SECS DESCRIPTION CMD...: until CMD succeeds
    local secs=$1 what=$2
    shift 2
    for _ in $(seq $((secs * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "$what: not within $secs s"
}
