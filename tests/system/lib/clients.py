#!/usr/bin/python3
"""Loopback clients for the system tests (bounded in count and time).

    clients.py fetch PORT [--bind ADDR]   one Qt frame from 127.0.0.1:PORT, the
                                          client socket bound to ADDR; prints it
    clients.py hold PORT N SECS READY     N connections from 127.0.0.1 that never
                                          read or close; writes READY once all are
                                          connected, exits after SECS (or when killed)

fetch exits 1 with a one-line reason if no whole frame came.
"""
import argparse
import socket
import struct
import sys
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
    a = p.parse_args()
    try:
        if a.cmd == "fetch":
            print(fetch(a.port, a.bind, a.timeout))
        else:
            hold(a.port, a.count, a.secs, a.ready)
    except (OSError, RuntimeError) as e:
        print(f"clients.py {a.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
