#!/usr/bin/env python3
"""The admin recipes of a Markdown file, for tests/system/admin.sh to run verbatim.

A recipe runs from `<!-- recipe: NAME -->` to `<!-- end recipe -->`. In it,
each line of a ```console block that starts with "# " is a command run as
root (a command ending in a here-document takes the lines up to its end
word); other lines there are sample output. An ```ini block right after a
`systemctl edit UNIT` command is what the admin types into the editor.

  recipes.py FILE --names        the recipes' names, one a line
  recipes.py FILE NAME           NAME's steps: command NUL editor-text NUL, ...

Fails when a ```console block with commands lies outside every recipe (a
command the test would not run), or a recipe is unterminated or named twice.
"""
import re
import sys


def parse(path):
    recipes = {}
    current = None
    block = None  # the fence's info string while inside a fenced block
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if block is None:
            start = re.fullmatch(r"<!-- recipe: ([a-z0-9-]+) -->", line.strip())
            if start:
                if current is not None:
                    sys.exit(f"{path}:{i}: recipe {start[1]} starts inside recipe {current}")
                current = start[1]
                if current in recipes:
                    sys.exit(f"{path}:{i}: recipe {current} is defined twice")
                recipes[current] = []
            elif line.strip() == "<!-- end recipe -->":
                if current is None:
                    sys.exit(f"{path}:{i}: end of a recipe that did not start")
                current = None
            elif line.startswith("```"):
                block = line[3:].strip()
                if block == "ini" and current is not None:
                    steps = recipes[current]
                    if not steps or not re.match(r"systemctl edit ", steps[-1][0]) or steps[-1][1] is not None:
                        sys.exit(f"{path}:{i}: an ini block in recipe {current} follows no `systemctl edit`")
                    steps[-1][1] = ""
            continue
        if line.startswith("```"):
            block = None
            continue
        if block == "ini" and current is not None:
            recipes[current][-1][1] += line + "\n"
        elif block == "console" and line.startswith("# "):
            if current is None:
                sys.exit(f"{path}:{i}: command outside every recipe (the test would not run it): {line}")
            command = line[2:]
            heredoc = re.search(r"<<-?\s*'?([A-Za-z_]+)'?", command)
            if heredoc:
                while i < len(lines) and lines[i] != heredoc[1]:
                    command += "\n" + lines[i]
                    i += 1
                command += "\n" + heredoc[1]
                i += 1
            recipes[current].append([command, None])
    if current is not None:
        sys.exit(f"{path}: recipe {current} has no <!-- end recipe -->")
    return recipes


def main():
    path, what = sys.argv[1], sys.argv[2]
    recipes = parse(path)
    if what == "--names":
        print("\n".join(recipes))
        return
    if what not in recipes:
        sys.exit(f"{path} has no recipe {what}")
    out = sys.stdout.buffer
    for command, text in recipes[what]:
        out.write(command.encode() + b"\0" + (text or "").encode() + b"\0")


main()
