#!/usr/bin/python3
"""Writes the spec's inputs for packaging/build, so that the RPM takes its
metadata from the same places as the .deb: Cargo.toml (through `cargo
metadata`, read on stdin) and packaging/debian/changelog.

    cargo metadata --no-deps --format-version 1 | rpm-inputs.py SOURCES RELEASE CHECKOUT
"""
import email.utils
import json
import subprocess
import sys
import textwrap

sources, release, checkout = sys.argv[1:4]
meta = json.load(sys.stdin)
package = next(p for p in meta["packages"] if p["manifest_path"] == f"{checkout}/Cargo.toml")
deb = package["metadata"]["deb"]

defines = {
    "crate_name": package["name"],
    "crate_version": package["version"],
    "crate_license": package["license"],
    "crate_summary": package["description"],
    "crate_packager": package["authors"][0],
    "crate_binaries": " ".join(t["name"] for t in package["targets"] if "bin" in t["kind"]),
    "pkg_release": release,
    "checkout": checkout,
    "cargo_target_dir": meta["target_directory"],
}
with open(f"{sources}/metadata.inc", "w") as f:
    for name, value in defines.items():
        f.write(f"%global {name} {value}\n")

with open(f"{sources}/description.inc", "w") as f:
    f.write(textwrap.fill(" ".join(deb["extended-description"].split()), width=79) + "\n")

# Every Debian changelog entry, newest first, as rpm's %changelog wants it.
entries = subprocess.run(
    ["dpkg-parsechangelog", "-l", f"{checkout}/packaging/debian/changelog", "--all", "--format", "rfc822"],
    check=True, capture_output=True, text=True).stdout.strip().split("\n\n")
with open(f"{sources}/changelog.inc", "w") as f:
    for entry in entries:
        fields, key = {}, None
        for line in entry.splitlines():
            if line.startswith(" "):
                fields[key] += "\n" + line[1:]
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        date = email.utils.parsedate_to_datetime(fields["Date"]).strftime("%a %b %d %Y")
        f.write(f"* {date} {fields['Maintainer']} - {fields['Version']}\n")
        # Changes: the header line, a blank line ("."), then the "  * ..." items.
        for line in fields["Changes"].splitlines()[2:]:
            line = line.strip()
            if line.startswith("* "):
                f.write(f"- {line[2:]}\n")
            elif line and line != ".":
                f.write(f"  {line}\n")
        f.write("\n")
