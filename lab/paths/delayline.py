"""A delay line in the lab's router: every packet queued to it (NFQUEUE) is held for
--delay-ms, then accepted, so the router forwards it late and unchanged (the kernel does
the forwarding, TTL decrement and all; only the moment changes). It stands in for
`tc qdisc add dev rX root netem delay 50ms`, for kernels built without sch_netem (this
lab's is one: CONFIG_NET_SCH_NETEM is not set).

The router sends the flow to the queue with (iptables-nft, in ssc-router only)
    iptables -A FORWARD -p tcp --dport P -j NFQUEUE --queue-num Q
    iptables -A FORWARD -p tcp --sport P -j NFQUEUE --queue-num Q
Both directions share the queue; a constant delay keeps each direction in order.

nfnetlink_queue spoken directly over an AF_NETLINK socket (stdlib only). One log line
per packet released, in the lab's format:
    <ISO-8601 UTC, µs> router delayed id=N src=IP:PORT dst=IP:PORT flags=SA len=L
                         queued_at=ISO held_ms=50.1

usage: python lab/paths/delayline.py --queue 0 --delay-ms 50 [--max-seconds 120]
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from lablog import log as _log, utc_now  # noqa: E402

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_PACKET = 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD = 1, 2, 10
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
FLAGS = "FSRPAUEC"


def log(event: str, **fields) -> None:
    _log(event, "router", **fields)


def attr(kind: int, data: bytes) -> bytes:
    a = struct.pack("=HH", 4 + len(data), kind) + data
    return a + b"\0" * (-len(a) % 4)


def message(msg: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def attrs_of(buf: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i + 4 <= len(buf):
        ln, kind = struct.unpack_from("=HH", buf, i)
        if ln < 4:
            break
        out[kind & 0x3FFF] = buf[i + 4:i + ln]
        i += (ln + 3) & ~3
    return out


def describe(pkt: bytes) -> dict:
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return {}
    ihl = (pkt[0] & 15) * 4
    total = struct.unpack_from("!H", pkt, 2)[0]
    src, dst = socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
    if pkt[9] != 6 or len(pkt) < ihl + 14:
        return {"src": src, "dst": dst, "proto": pkt[9]}
    sport, dport = struct.unpack_from("!HH", pkt, ihl)
    off = pkt[ihl + 12] >> 4
    fl = pkt[ihl + 13]
    flags = "".join(c for b, c in zip(range(8), FLAGS) if fl & (1 << b)) or "-"
    return {"src": f"{src}:{sport}", "dst": f"{dst}:{dport}", "flags": flags, "len": total - ihl - off * 4}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queue", type=int, default=0)
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--max-seconds", type=float, default=120.0, help="exit after this long in any case")
    args = p.parse_args(argv)
    delay = args.delay_ms / 1000

    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((0, 0))
    seq = 1
    for a in (attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET)),
              attr(NFQA_CFG_PARAMS, struct.pack("!IB", 128, NFQNL_COPY_PACKET))):
        s.send(message(NFQNL_MSG_CONFIG, args.queue, a, seq, NLM_F_REQUEST | NLM_F_ACK))
        ack = s.recv(65536)
        ln, kind = struct.unpack_from("=IH", ack)
        if kind == NLMSG_ERROR and struct.unpack_from("=i", ack, 16)[0] != 0:
            err = -struct.unpack_from("=i", ack, 16)[0]
            print(f"delayline: nfqueue config failed: {os.strerror(err)}", file=sys.stderr)
            return 1
        seq += 1
    log("delay_line_start", queue=args.queue, delay_ms=args.delay_ms, pid=os.getpid(),
        note="NFQUEUE holder: each packet accepted delay_ms after it was queued")

    held: collections.deque = collections.deque()   # (release_at, packet id, queued_at iso, t_in, info)
    ended = time.monotonic() + args.max_seconds
    n = 0
    while not stop and time.monotonic() < ended:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, pid, qiso, t_in, info = held.popleft()
            s.send(message(NFQNL_MSG_VERDICT, args.queue,
                           attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid)), seq))
            seq += 1
            log("delayed", id=pid, **info, queued_at=qiso, held_ms=round((time.monotonic() - t_in) * 1000, 2))
            now = time.monotonic()
        s.settimeout(max(0.0005, held[0][0] - now) if held else 0.2)
        try:
            data = s.recv(1 << 16)
        except (socket.timeout, InterruptedError):
            continue
        t_in = time.monotonic()
        qiso = utc_now()
        i = 0
        while i + 16 <= len(data):
            ln, kind = struct.unpack_from("=IH", data, i)
            if ln < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                at = attrs_of(data[i + 20:i + ln])
                if NFQA_PACKET_HDR in at:
                    (pid,) = struct.unpack_from("!I", at[NFQA_PACKET_HDR])
                    held.append((t_in + delay, pid, qiso, t_in, describe(at.get(NFQA_PAYLOAD, b""))))
                    n += 1
            i += (ln + 3) & ~3
    # whatever is still held goes on at once (an orderly end never drops a packet)
    for _, pid, qiso, t_in, info in held:
        s.send(message(NFQNL_MSG_VERDICT, args.queue, attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid)), seq))
        seq += 1
    log("delay_line_end", packets=n, released_early=len(held))
    return 0


if __name__ == "__main__":
    sys.exit(main())
