#!/usr/bin/python3
"""Reads fortunes the way Qt's Fortune Client does, through the real Qt:
PyQt5's QTcpSocket and QDataStream (Debian's python3-pyqt5).

    qt_reader.py HOST PORT [--framing qt|qt4] [--count N] [--timeout SECS]

Prints each fortune as one JSON string per line. Exits 1 on any error
(connection, timeout, malformed or trailing bytes, a peer that never closes).

qt:  Qt >= 5.7 client: startTransaction(); in >> QString; commitTransaction().
qt4: Qt 4 client: in >> quint16 blockSize; wait for blockSize bytes; in >> QString.
"""
import argparse
import json
import sys

from PyQt5.QtCore import QByteArray, QCoreApplication, QDataStream, QIODevice
from PyQt5.QtNetwork import QAbstractSocket, QTcpSocket


def read_one(host, port, framing, timeout_ms):
    sock = QTcpSocket()
    sock.connectToHost(host, port)
    if not sock.waitForConnected(timeout_ms):
        raise RuntimeError(f"connect: {sock.errorString()}")
    stream = QDataStream(sock)
    stream.setVersion(QDataStream.Qt_4_0)
    fortune = None
    block_size = 0
    while fortune is None:
        if framing == "qt":
            stream.startTransaction()
            text = stream.readQString()
            if stream.commitTransaction():
                fortune = text
                break
        else:
            if block_size == 0 and sock.bytesAvailable() >= 2:
                block_size = stream.readUInt16()
            if block_size and sock.bytesAvailable() >= block_size:
                fortune = stream.readQString()
                break
        if sock.state() != QAbstractSocket.ConnectedState:
            raise RuntimeError(f"server closed before a whole frame arrived ({sock.bytesAvailable()} bytes left)")
        if not sock.waitForReadyRead(timeout_ms) and sock.state() == QAbstractSocket.ConnectedState:
            raise RuntimeError(f"waiting for the frame: {sock.errorString()}")
    if stream.status() != QDataStream.Ok:
        raise RuntimeError(f"QDataStream status {stream.status()}")
    # The server closes after one frame: nothing else may follow.
    if sock.state() == QAbstractSocket.ConnectedState:
        sock.waitForDisconnected(timeout_ms)
    extra = bytes(sock.readAll())
    if extra:
        raise RuntimeError(f"{len(extra)} bytes after the frame")
    if sock.state() != QAbstractSocket.UnconnectedState:
        raise RuntimeError("server did not close the connection")
    return fortune


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--framing", choices=["qt", "qt4"], default="qt")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args()
    QCoreApplication(sys.argv[:1])
    for _ in range(args.count):
        try:
            fortune = read_one(args.host, args.port, args.framing, int(args.timeout * 1000))
        except RuntimeError as e:
            print(f"qt_reader: {e}", file=sys.stderr)
            return 1
        if not fortune:
            print("qt_reader: empty fortune", file=sys.stderr)
            return 1
        print(json.dumps(fortune, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
