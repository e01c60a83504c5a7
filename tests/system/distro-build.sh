#!/usr/bin/env bash
# Builds as a distribution would, and checks that builds agree:
# - Debian 13's own rustc and cargo (from its packages; Cargo.toml's
#   rust-version is theirs) build every target offline from the vendored
#   crates, in a trixie chroot this test makes (debootstrap: cached in
#   /var/tmp, fresh when CI=true), with no network (systemd-nspawn
#   --private-network);
# - packaging/build twice: the second from a copy of the checkout with other
#   mtimes, another $CARGO_HOME and nothing compiled before, its binary RPM
#   being `rpmbuild --rebuild` of the source RPM with no network and nothing
#   of the checkout. The .src.rpm, the .rpm, its -debuginfo and the .deb of
#   both builds must have the same sha256.
# The first build is the one tests/system/packages.sh made when it ran before
# (packaging/build keeps its compiled crates for the same sources); the
# chroot is made while the second build compiles.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '[distro-build] %s\n' "$*" >&2; }
. tests/system/lib/steps.sh
require_tools cargo rpm rpmbuild rpm2cpio cpio debootstrap systemd-nspawn unshare git /usr/bin/python3
. tests/system/lib/container.sh

work=$(mktemp -d /tmp/fortune-distro-build.XXXXXX)
chroot_pid=
cleanup() {
    [ -z "$chroot_pid" ] || { kill "$chroot_pid" 2>/dev/null; wait "$chroot_pid" 2>/dev/null; }
    rm -rf "$work"
    _container_exit
}
trap cleanup EXIT
start=$SECONDS
lap() { say "$1: $((SECONDS - lap_start)) s"; lap_start=$SECONDS; }
lap_start=$SECONDS

# Debian 13 with its cargo and rustc, made in the background meanwhile
# (libc6-dev named: rustc depends on the virtual libc-dev, which debootstrap
# does not resolve).
(CONTAINER_SUITE=trixie CONTAINER_BASE_PACKAGES='' CONTAINER_EXTRA_PACKAGES=cargo,rustc,libc6-dev container_rootfs \
    >"$work/trixie-root" 2>"$work/trixie.log") &
chroot_pid=$!

step "packaging/build (the first build)"
packaging/build --output "$work/one" >"$work/one.log" 2>&1 || { cat "$work/one.log" >&2; fail "packaging/build failed"; }
lap "first build"

step "packaging/build again: a copy with other mtimes, another CARGO_HOME, nothing compiled"
copy=$work/copy/fortune-server
mkdir -p "$copy"
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar -cf - --null -T - | tar -xf - -C "$copy"
# packaging/build takes the files git knows: the same in the copy.
(cd "$copy" && git init -q && git add -A)
find "$copy" -path "$copy/.git" -prune -o -exec touch -h -d '2031-01-02 03:04:05' {} +
target_dir=$(cargo metadata --no-deps --format-version 1 --locked |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p "$work/target2"
[ -d "$target_dir/tools" ] && cp -a "$target_dir/tools" "$work/target2/" # cargo-deb, not built again
(cd "$copy" && CARGO_HOME="$work/cargo-home" CARGO_TARGET_DIR="$work/target2" \
    packaging/build --no-checks --output "$work/two") >"$work/two.log" 2>&1 ||
    { cat "$work/two.log" >&2; fail "the second packaging/build failed"; }
grep -q 'rpmbuild --rebuild .* (no network)' "$work/two.log" || { cat "$work/two.log" >&2; fail "the rebuild had the network"; }
lap "second build (compiled from scratch)"

step "sha256 of both builds"
(cd "$work/one" && sha256sum -- *) | sort -k2 >"$work/one.sha256"
(cd "$work/two" && sha256sum -- *) | sort -k2 >"$work/two.sha256"
cat "$work/one.sha256"
[ "$(wc -l <"$work/one.sha256")" -ge 4 ] || fail "expected a .src.rpm, an .rpm, its -debuginfo and a .deb"
if ! diff -u "$work/one.sha256" "$work/two.sha256"; then
    command -v diffoscope >/dev/null && say "diffoscope shows the differences"
    fail "the two builds differ (- first, + second)"
fi
say "the second build is byte for byte the first ($(wc -l <"$work/one.sha256") packages)"

step "Debian 13's rustc and cargo build every target offline"
wait "$chroot_pid" || { cat "$work/trixie.log" >&2; chroot_pid=; fail "debootstrap trixie failed"; }
chroot_pid=
root=$(cat "$work/trixie-root")
lap "trixie chroot (made meanwhile; waited for)"
version=$(rpm -qp --qf '%{VERSION}' "$work"/one/*.src.rpm)
mkdir -p "$work/trixie"
rpm2cpio "$work"/one/*.src.rpm | (cd "$work/trixie" && cpio -id --quiet '*.tar.gz')
tar -xzf "$work/trixie/fortune-server-$version.tar.gz" -C "$work/trixie"
tar -xzf "$work/trixie/fortune-server-$version-vendor.tar.gz" -C "$work/trixie/fortune-server-$version"
mkdir -p "$work/trixie/fortune-server-$version/.cargo"
printf '[source.crates-io]\nreplace-with = "vendored-sources"\n[source.vendored-sources]\ndirectory = "vendor"\n' \
    >"$work/trixie/fortune-server-$version/.cargo/config.toml"
# --volatile=overlay: the cached rootfs stays as it is.
systemd-nspawn --quiet --register=no --keep-unit --volatile=overlay --private-network -D "$root" \
    --bind="$work/trixie:/build" --chdir="/build/fortune-server-$version" \
    -E HOME=/build -E CARGO_HOME=/build/cargo-home -E CARGO_TERM_COLOR=never -E PATH=/usr/bin:/bin \
    sh -c 'rustc --version && cargo --version && cargo build --offline --locked --all-targets' \
    >"$work/trixie-build.log" 2>&1 || { tail -n 60 "$work/trixie-build.log" >&2; fail "Debian 13's cargo could not build it"; }
grep -E '^(rustc|cargo) ' "$work/trixie-build.log"
rust_version=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
grep -q "^rustc $rust_version" "$work/trixie-build.log" ||
    fail "Debian 13's rustc is not $rust_version, the rust-version of Cargo.toml: change one"
lap "trixie build"

say "PASS: two builds byte for byte the same (the second an offline rpmbuild --rebuild); Debian 13's rustc $rust_version built every target offline; $((SECONDS - start)) s"
