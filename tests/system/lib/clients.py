#!/usr/bin/python3
"""Loopback clients for the system tests (bounded in count and time).

    clients.py fetch PORT [--bind ADDR]   one Qt frame from 127.0.0.1:PORT, the
                                          client socket bound to ADDR; prints it
    clients.py hold PORT N SECS READY     N connections from 127.0.0.1 that never
                                          read or close; writes READY once all are
                                          connected, exits after SECS (or when killed)
    clients.py flood PORT SOURCES SECS MAX  2 threads per source address 127.0.0.2,
                                          127.0.0.3, ...; each in turn reads a fortune
                                          and resets a connection at once (RST); MAX
                                          connections or SECS seconds at most; prints
                                          the counts
    clients.py loop PORT N SECS PROGRESS [--protocol qt|text]
                                          N clients from 127.0.0.1, each in turn
                                          connects and reads one whole answer,
                                          until SIGTERM or SECS; the good count goes
                                          to the file PROGRESS as it grows; prints
                                          connections made and lost, by kind

fetch exits 1 with a one-line reason if no whole frame came.
"""
import argparse
import errno
import os
import signal
import socket
import struct
import sys
import threading
import time


def fetch(port, bind, timeout):
    with socket.socket() as s:
        s.settimeout(timeout)
        if bind:
            s.bind((bind, 0))
        s.connect(("127.0.0.1", port))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if len(data) < 4 or struct.unpack(">I", data[:4])[0] != len(data) - 4 or len(data) == 4:
        raise RuntimeError(f"not one whole Qt frame: {data!r}")
    return data[4:].decode("utf-16-be")


def hold(port, count, secs, ready):
    held = []
    for _ in range(count):
        s = socket.socket()
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        held.append(s)
    with open(ready, "w") as f:
        f.write(f"{len(held)}\n")
    time.sleep(secs)


def flood(port, sources, secs, most):
    counts = {"served": 0, "reset by us": 0, "refused or cut": 0}
    lock = threading.Lock()
    left = [most]
    deadline = time.monotonic() + secs

    def one(source, reset):
        with socket.socket() as s:
            s.settimeout(2)
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return "reset by us"
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return "served" if len(data) > 4 else "refused or cut"

    def loop(source):
        reset = False
        while time.monotonic() < deadline:
            reset = not reset
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            try:
                kind = one(source, reset)
            except OSError:
                kind = "refused or cut"
            with lock:
                counts[kind] += 1

    threads = [threading.Thread(target=loop, args=(f"127.0.0.{2 + i // 2}",)) for i in range(2 * sources)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    total = sum(counts.values())
    print(f"{total} connections from {sources} addresses in {took:.1f} s: "
          + ", ".join(f"{v} {k}" for k, v in counts.items()))


def loop(port, count, secs, progress, protocol):
    """Connections made and lost while something happens to the server."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = threading.Lock()
    counts = {"good": 0, "refused": 0, "reset": 0, "timed out": 0, "bad answer": 0}
    examples = []
    deadline = time.monotonic() + secs

    def whole(data):
        if protocol == "text":
            return data.endswith(b"\r\n") and len(data) > 2
        return len(data) > 4 and struct.unpack(">I", data[:4])[0] == len(data) - 4

    def one():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            return "good" if whole(data) else "bad answer", repr(data[:40])
        except socket.timeout as e:
            return "timed out", str(e)
        except ConnectionRefusedError as e:
            return "refused", str(e)
        except OSError as e:
            kind = "refused" if e.errno == errno.ECONNREFUSED else "reset"
            return kind, str(e)

    def client():
        while not stop.is_set() and time.monotonic() < deadline:
            kind, what = one()
            with lock:
                counts[kind] += 1
                if kind != "good" and len(examples) < 5:
                    examples.append(f"{kind}: {what}")
                if kind == "good" and counts["good"] % 10 == 0:
                    with open(progress + ".tmp", "w") as f:
                        f.write(f"{counts['good']}\n")
                    os.replace(progress + ".tmp", progress)

    threads = [threading.Thread(target=client) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lost = sum(v for k, v in counts.items() if k != "good")
    made = counts["good"] + lost
    print(f"made {made} lost {lost} ("
          + ", ".join(f"{v} {k}" for k, v in counts.items() if k != "good") + ")"
          + "".join(f"\n  {e}" for e in examples))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch")
    f.add_argument("port", type=int)
    f.add_argument("--bind", default="")
    f.add_argument("--timeout", type=float, default=10)
    h = sub.add_parser("hold")
    h.add_argument("port", type=int)
    h.add_argument("count", type=int)
    h.add_argument("secs", type=float)
    h.add_argument("ready")
    fl = sub.add_parser("flood")
    fl.add_argument("port", type=int)
    fl.add_argument("sources", type=int)
    fl.add_argument("secs", type=float)
    fl.add_argument("max", type=int)
    lp = sub.add_parser("loop")
    lp.add_argument("port", type=int)
    lp.add_argument("count", type=int)
    lp.add_argument("secs", type=float)
    lp.add_argument("progress")
    lp.add_argument("--protocol", default="qt", choices=["qt", "text"])
    a = p.parse_args()
    try:
        if a.cmd == "fetch":
            print(fetch(a.port, a.bind, a.timeout))
        elif a.cmd == "hold":
            hold(a.port, a.count, a.secs, a.ready)
        elif a.cmd == "loop":
            loop(a.port, a.count, a.secs, a.progress, a.protocol)
        else:
            flood(a.port, a.sources, a.secs, a.max)
    except (OSError, RuntimeError) as e:
        print(f"clients.py {a.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
