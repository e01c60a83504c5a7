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

fetch exits 1 with a one-line reason if no whole frame came.
"""
import argparse
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
    a = p.parse_args()
    try:
        if a.cmd == "fetch":
            print(fetch(a.port, a.bind, a.timeout))
        elif a.cmd == "hold":
            hold(a.port, a.count, a.secs, a.ready)
        else:
            flood(a.port, a.sources, a.secs, a.max)
    except (OSError, RuntimeError) as e:
        print(f"clients.py {a.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
