"""Path-lab server that accepts TCP connections and never reads from them.

The kernel keeps receiving until the socket's receive buffer is full, then advertises a
zero window; the sender's kernel falls back to zero-window probes. Every --report
seconds the server logs how many bytes sit unread in each connection's receive queue
(ioctl FIONREAD); after --hold seconds it stops logging and keeps the sockets open until
it is terminated (record_paths.sh stops the captures first), at most 120 s more.

A small SO_RCVBUF (--rcvbuf, set on the listening socket and inherited by accepted
ones) keeps the amount of data on the wire, and the capture, small.

Log lines: <ISO-8601 UTC, microseconds> server <event> key=value ...
usage: python lab/paths/sink.py --host 198.18.2.2 --port 8405 [--rcvbuf 4096] [--hold 20] [--report 1]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from lablog import log  # noqa: E402


def unread(sock: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rcvbuf", type=int, default=4096)
    p.add_argument("--hold", type=float, default=20.0)
    p.add_argument("--report", type=float, default=1.0)
    args = p.parse_args(argv)

    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    ls.bind((args.host, args.port))
    ls.listen(8)
    log("server_start", host=args.host, port=args.port, impl="sink (accepts, never reads)",
        rcvbuf_requested=args.rcvbuf, rcvbuf_effective=ls.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        hold_s=args.hold)
    conns: list[tuple[socket.socket, int, int]] = []  # socket, port, last unread count
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.hold:
            r, _, _ = select.select([ls], [], [], args.report)
            if r:
                c, (ip, port) = ls.accept()
                conns.append([c, port, -1])
                log("accept", client_ip=ip, client_port=port, note="never reading from this socket")
            for item in conns:
                c, port, last = item
                n = unread(c)
                if n != last:
                    log("recv_queue", client_port=port, unread_bytes=n)
                    item[2] = n
        log("hold_end", connections=len(conns),
            unread=",".join(f"{port}:{unread(c)}" for c, port, _ in conns) or None)
        for _ in range(120):  # keep the sockets open until terminated (at most 2 more minutes)
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for c, port, _ in conns:
            log("close", client_port=port, unread_bytes=unread(c))
            c.close()
        ls.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
