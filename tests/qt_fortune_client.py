#!/usr/bin/python3
"""Drives Qt's own Fortune Client example (qtbase5-examples) as a person
would: under Xvfb it types the server's address, presses *Get Fortune*, takes
a screenshot of the window and reads the fortune off it with tesseract.

    qt_fortune_client.py HOST PORT [--client fortuneclient|blockingfortuneclient]
                         [--presses N] [--expect FILE]

FILE holds the fortunes that may appear, one JSON string per line. Prints what
was read each time; exits 1 unless every press shows one of them (OCR is
compared loosely: a similarity of at least 0.85) and consecutive ones differ.
"""
import argparse
import difflib
import json
import os
import subprocess
import sys
import tempfile
import time

EXAMPLES = "/usr/lib/x86_64-linux-gnu/qt5/examples/network"


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def start_xvfb():
    """Starts Xvfb on a display number it picks itself (no race between tests)."""
    r, w = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    if not number:
        xvfb.kill()
        raise RuntimeError("Xvfb did not start")
    return xvfb, f":{number}"


def window_id(name, deadline):
    while time.time() < deadline:
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", f"^{name}$"],
                               capture_output=True, text=True)
        ids = found.stdout.split()
        if ids:
            return ids[0]
        time.sleep(0.1)
    raise RuntimeError(f"no window named {name!r}")


GRAB = """
import sys
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
shot = app.primaryScreen().grabWindow(int(sys.argv[1]))
shot.scaled(shot.width() * 3, shot.height() * 3, Qt.KeepAspectRatio, Qt.SmoothTransformation).save(sys.argv[2])
"""


def read_window(win, workdir):
    png = os.path.join(workdir, "shot.png")
    run("/usr/bin/python3", "-c", GRAB, win, png)
    return run("tesseract", png, "-", "--psm", "6")


def best_match(text, fortunes):
    """The fortune most like some run of words on the screen (labels wrap)."""
    words = text.split()
    best = (0.0, None, None)
    for f in fortunes:
        want = " ".join(f.split())
        k = len(want.split())
        for i in range(max(1, len(words) - k + 1)):
            seen = " ".join(words[i:i + k])
            ratio = difflib.SequenceMatcher(None, seen, want).ratio()
            if ratio > best[0]:
                best = (ratio, f, seen)
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port")
    p.add_argument("--client", default="fortuneclient", choices=["fortuneclient", "blockingfortuneclient"])
    p.add_argument("--presses", type=int, default=3)
    p.add_argument("--expect", required=True)
    args = p.parse_args()
    with open(args.expect, encoding="utf-8") as f:
        fortunes = [json.loads(l) for l in f if l.strip()]

    xvfb, client = None, None
    try:
        xvfb, display = start_xvfb()
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb")
        os.environ.update(env)
        binary = f"{EXAMPLES}/{args.client}/{args.client}"
        client = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        title = "Blocking Fortune Client" if args.client == "blockingfortuneclient" else "Fortune Client"
        win = window_id(title, time.time() + 30)
        previous = None
        with tempfile.TemporaryDirectory() as workdir:
            # The examples prefill a non-loopback address: never press before
            # the window shows ours, so no traffic leaves this machine. A
            # window still mapping may miss keys: type again until it shows.
            for _ in range(10):
                time.sleep(0.5)
                run("xdotool", "windowfocus", "--sync", win)
                # The labels' mnemonics: Alt+S server name, Alt+E server port.
                run("xdotool", "key", "--window", win, "alt+s", "ctrl+a")
                run("xdotool", "type", "--window", win, "--delay", "10", args.host)
                run("xdotool", "key", "--window", win, "alt+e", "ctrl+a")
                run("xdotool", "type", "--window", win, "--delay", "10", args.port)
                filled = read_window(win, workdir)
                if args.host in filled:
                    break
            else:
                print(f"the server name field does not show {args.host}:\n{filled}", file=sys.stderr)
                return 1
            for press in range(args.presses):
                if args.client == "blockingfortuneclient":
                    # Its window is no dialog: Return does not reach the
                    # default button, so focus the port, tab to the button.
                    run("xdotool", "key", "--window", win, "alt+e", "Tab", "space")
                else:
                    run("xdotool", "key", "--window", win, "Return")
                shown, deadline = None, time.time() + 10
                while time.time() < deadline:
                    time.sleep(0.3)
                    ratio, fortune, line = best_match(read_window(win, workdir), fortunes)
                    if ratio >= 0.85 and fortune != previous:
                        shown = fortune
                        break
                if shown is None:
                    print(f"press {press + 1}: no new fortune shown; last read {line!r} ({ratio:.2f})",
                          file=sys.stderr)
                    return 1
                print(f"press {press + 1}: {args.client} shows {shown!r} (OCR {line!r}, {ratio:.2f})")
                previous = shown
        return 0
    finally:
        for proc in (client, xvfb):
            if proc:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())
