#!/usr/bin/python3
"""Writes the licence files both packages ship from cargo-about's findings
(its JSON output on stdin; packaging/licenses/generate runs it):

    render.py LICENSE.dependencies debian/copyright < about.json

LICENSE.dependencies (the RPM's %license): the SPDX expression of the whole,
every crate linked into the binaries with its licence, then every licence
text the crates carry (with their copyright lines), naming its crates.
debian/copyright (DEP-5): copyright.in (fortune-server, the Qt fortunes), a
vendor/NAME/* stanza per crate, then one paragraph per licence named.
"""
import json
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
dependencies_out, copyright_out = sys.argv[1:3]
about = json.load(sys.stdin)

# fortune-server's own terms, and the built-in fortunes' (copyright.in).
OWN = ["MIT OR Apache-2.0", "BSD-3-Clause"]
crates = sorted(about["crates"], key=lambda c: (c["package"]["name"], c["package"]["version"]))


def wrapped(part):
    """Whether PART is one parenthesised expression: "(A OR B)", not "(A) AND (B)"."""
    depth = 0
    for i, char in enumerate(part):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and i < len(part) - 1:
            return False
    return part.startswith("(") and part.endswith(")")


def top_level(expression, operator):
    """EXPRESSION split at OPERATOR outside parentheses, each part unwrapped."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(expression):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and expression.startswith(f" {operator} ", i):
            parts.append(expression[start:i])
            start = i + len(operator) + 2
    parts.append(expression[start:])
    out = []
    for part in (p.strip() for p in parts):
        while wrapped(part):
            part = part[1:-1].strip()
        out.append(part)
    return out


# The whole: every AND term of every expression once, an OR's choices sorted
# ("MIT OR Apache-2.0" and "Apache-2.0 OR MIT" are one term).
terms = []
for expression in OWN + [c["license"] for c in crates]:
    for term in top_level(expression, "AND"):
        choices = top_level(term, "OR")
        term = " OR ".join(sorted(choices)) if len(choices) > 1 else term
        if term not in terms:
            terms.append(term)
whole = " AND ".join(f"({t})" if " OR " in t else t for t in terms)

lines = [
    "# The crates linked into fortune-server's binaries and their licences,",
    "# found by cargo-about in Cargo.lock's crates (packaging/licenses/generate;",
    "# packaging/licenses/check fails when this file is stale).",
    "#",
    "# fortune-server: MIT OR Apache-2.0; its seven built-in fortunes (Qt's",
    "# Threaded Fortune Server example): BSD-3-Clause.",
    f"# The whole: {whole}",
    "",
]
lines += [f"{c['package']['name']} {c['package']['version']}: {c['license']}" for c in crates]
for licence in sorted(about["licenses"], key=lambda l: (l["id"], l["text"])):
    users = sorted({f"{u['crate']['name']} {u['crate']['version']}" for u in licence["used_by"]})
    lines += ["", "=" * 79, f"{licence['name']} ({licence['id']}), for: {', '.join(users)}", "=" * 79, ""]
    lines += [line.rstrip() for line in licence["text"].strip("\n").splitlines()]
with open(dependencies_out, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def dep5(expression):
    """SPDX to DEP-5 syntax: lower-case operators, exceptions spelled out,
    "(A OR B) AND C" as "A or B, and C" (DEP-5 has no parentheses)."""
    expression = re.sub(r"^\((.+)\) AND (.+)$", r"\1, AND \2", expression)
    expression = re.sub(r" WITH ([A-Za-z0-9.]+)-exception", r" with \1 exception", expression)
    return expression.replace(" OR ", " or ").replace(" AND ", " and ")


def crate_file_text(crate, licence):
    """The text of LICENCE in the crate's own files (cargo-about gives the
    texts of the licences it chose, not of every alternative)."""
    folder = os.path.dirname(crate["package"]["manifest_path"])
    for name in sorted(os.listdir(folder)):
        if licence.lower() in name.lower() and os.path.isfile(os.path.join(folder, name)):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                return f.read()
    return None


def paragraph(text):
    """A licence text as a DEP-5 paragraph body: indented, blank lines as '.'."""
    body = [line.rstrip() for line in text.strip("\n").splitlines()]
    return "\n".join(f" {line}" if line.strip() else " ." for line in body)


with open(os.path.join(here, "copyright.in"), encoding="utf-8") as f:
    out = [f.read().rstrip("\n")]
named = {"MIT", "Apache-2.0"}
# A crate's copyright holders: the copyright lines of its licence files, else
# its authors.
notices = {}
for licence in about["licenses"]:
    lines = [line.strip() for line in licence["text"].splitlines() if re.match(r"\s*Copyright\b", line)]
    for user in licence["used_by"]:
        notices.setdefault(user["crate"]["name"], []).extend(lines)
for c in crates:
    authors = [re.sub(r"\s+", " ", a) for a in c["package"].get("authors") or []]
    holders = list(dict.fromkeys(re.sub(r"^Copyright\s*(\([cC]\)|©)?\s*", "", line)
                                 for line in notices.get(c["package"]["name"], [])))
    holders = holders or authors or [f"the {c['package']['name']} developers"]
    holders = "\n ".join(holders)
    out.append(f"Files: vendor/{c['package']['name']}/*\n"
               f"Copyright: {holders}\n"
               f"License: {dep5(c['license'])}\n"
               f"Comment: {c['package']['name']} {c['package']['version']}")
    named.update(re.findall(r"[A-Za-z0-9.-]+", re.sub(r" WITH [A-Za-z0-9.-]+", "", c["license"])))
named -= {"OR", "AND"}
# The texts of the licences named, as the crates carry them.
texts = {}
for licence in sorted(about["licenses"], key=lambda l: (l["id"], l["text"])):
    texts.setdefault(licence["id"], licence["text"])
with open(os.path.join(here, "qt-bsd.txt"), encoding="utf-8") as f:
    out.append("License: BSD-3-clause-Qt\n" + paragraph(f.read()))
with open(os.path.join(here, "..", "..", "LICENSE-MIT"), encoding="utf-8") as f:
    mit = f.read().split("\n\n", 2)[2]  # less its title and copyright line
out.append("License: MIT\n" + paragraph(mit))
out.append("License: Apache-2.0\n" + paragraph(
    "Licensed under the Apache License, Version 2.0 (the \"License\"); you may not use\n"
    "this file except in compliance with the License. You may obtain a copy of the\n"
    "License at http://www.apache.org/licenses/LICENSE-2.0\n\n"
    "On Debian systems, the complete text of the Apache License, Version 2.0 can be\n"
    "found in \"/usr/share/common-licenses/Apache-2.0\"."))
for licence in sorted(named - {"MIT", "Apache-2.0"}):
    text = texts.get(licence) or next(
        (t for c in crates if licence in c["license"] for t in [crate_file_text(c, licence)] if t), None)
    if text is None:
        sys.exit(f"no text of {licence}: neither cargo-about nor the crates' files have one")
    out.append(f"License: {licence}\n" + paragraph(text))
with open(copyright_out, "w", encoding="utf-8") as f:
    f.write("\n\n".join(out) + "\n")
