#!/usr/bin/python3
"""Writes what packaging/build needs from the checkout's metadata, so that
both packages take it from the same places: Cargo.toml (through `cargo
metadata`, read on stdin), packaging/debian/changelog and
packaging/licenses/LICENSE.dependencies.

    cargo metadata --no-deps --format-version 1 | rpm-inputs.py CHECKOUT RELEASE SPEC CHANGELOG

SPEC: the RPM spec, from packaging/rpm/fortune-server.spec.in. CHANGELOG: the
Debian changelog of this build: the checkout's, with an entry for revision
RELEASE on top when its latest entry is an older revision of the same
version (a rebuild as an upgrade), dated as that entry so that
SOURCE_DATE_EPOCH stays the same. The spec's %changelog is made from it, so
both packages say the same. Prints SOURCE_DATE_EPOCH (the top entry's date).
"""
import email.utils
import json
import re
import subprocess
import sys
import textwrap

checkout, release, spec_out, changelog_out = sys.argv[1:5]
meta = json.load(sys.stdin)
package = next(p for p in meta["packages"] if p["manifest_path"] == f"{checkout}/Cargo.toml")
deb = package["metadata"]["deb"]


def parsed(path):
    """Every entry of a Debian changelog, newest first, as dicts."""
    out = subprocess.run(["dpkg-parsechangelog", "-l", path, "--all", "--format", "rfc822"],
                         check=True, capture_output=True, text=True).stdout.strip()
    entries = []
    for block in out.split("\n\n"):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith(" "):
                fields[key] += "\n" + line[1:]
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        entries.append(fields)
    return entries


source = f"{checkout}/packaging/debian/changelog"
with open(source, encoding="utf-8") as f:
    text = f.read()
top = parsed(source)[0]
version, _, revision = top["Version"].rpartition("-")
if version != package["version"]:
    sys.exit(f"Cargo.toml says version {package['version']} but packaging/debian/changelog's latest "
             f"entry is {top['Version']}: add an entry for {package['version']}-1 (dch -v {package['version']}-1)")
if int(release) < int(revision):
    sys.exit(f"--release {release} is older than the changelog's latest entry {top['Version']}")
if int(release) > int(revision):
    text = (f"{package['name']} ({version}-{release}) {top['Distribution']}; urgency={top['Urgency']}\n\n"
            f"  * Rebuild of {version}-{revision} as revision {release} (packaging/build --release {release}).\n\n"
            f" -- {top['Maintainer']}  {top['Date']}\n\n") + text
with open(changelog_out, "w", encoding="utf-8") as f:
    f.write(text)
entries = parsed(changelog_out)

# The rpm %changelog: the same entries, newest first.
changelog = []
for entry in entries:
    date = email.utils.parsedate_to_datetime(entry["Date"]).strftime("%a %b %d %Y")
    changelog.append(f"* {date} {entry['Maintainer']} - {entry['Version']}")
    # Changes: the header line, a blank line ("."), then the "  * ..." items.
    for line in entry["Changes"].splitlines()[2:]:
        line = line.strip()
        if line.startswith("* "):
            changelog.append(f"- {line[2:]}")
        elif line and line != ".":
            changelog.append(f"  {line}")
    changelog.append("")

# The licence of the whole, as LICENSE.dependencies gives it.
with open(f"{checkout}/packaging/licenses/LICENSE.dependencies", encoding="utf-8") as f:
    whole = re.search(r"^# The whole: (.+)$", f.read(), re.M).group(1)

fields = {
    "VERSION": package["version"],
    "RELEASE": release,
    "SUMMARY": package["description"],
    "LICENSE": whole,
    "URL": package["homepage"],
    "RUST_VERSION": package["rust_version"],
    "DESCRIPTION": textwrap.fill(" ".join(deb["extended-description"].split()), width=79),
    # rpm reads % in %changelog as a macro.
    "CHANGELOG": "\n".join(changelog).rstrip("\n").replace("%", "%%"),
}
with open(f"{checkout}/packaging/rpm/fortune-server.spec.in", encoding="utf-8") as f:
    spec = f.read()
for name, value in fields.items():
    spec = spec.replace(f"@{name}@", value)
leftover = re.findall(r"@[A-Z_]+@", spec)
if leftover:
    sys.exit(f"packaging/rpm/fortune-server.spec.in: no value for {', '.join(leftover)}")
with open(spec_out, "w", encoding="utf-8") as f:
    f.write(spec)
print(int(email.utils.parsedate_to_datetime(entries[0]["Date"]).timestamp()))
