#!/usr/bin/env python3
"""Build the crafted captures in this folder, and a ``<name>.truth.json`` next to each.

    python captures/crafted/make_crafted.py [--out DIR]      (default: this folder)

Everything is deterministic: fixed timestamps (from 2026-02-10T09:47:22Z), ISNs derived
from CRC-32 of the capture name and port, fixed IP ids, no wall clock, no unseeded RNG.
Running it twice gives byte-identical files; tests/test_crafted_captures.py checks that
the committed files are up to date and that every truth file agrees with its packets.

How the packets are made
------------------------
A :class:`Conv` plays both ends of one TCP connection as a real stack would, seen from a
capture point on the client host: SYN and FIN consume one sequence number, data is cut
into MSS-sized (1460) segments with PSH on the last one of a write, the receiver ACKs
(immediately, every second segment, or after a 40 ms delayed-ACK), and frames received
from the network are padded to Ethernet's 60-byte minimum.  scapy builds IP/TCP and fills
in lengths and checksums; link-layer headers are packed here with ``struct``.

The truth is derived from how the packets were built (which segment is new data, which
a retransmission, a keep-alive probe, or never captured), never by reading the capture.
Zeek ``history``/``conn_state`` are computed by :func:`zeek_summary`, a small re-statement
of Zeek's rules (see shared/conformance/zeek/README.md); where those rules depend on Zeek
internals we are not sure of (gaps, reordering, flips, probes) the truth says ``null``.

File formats written here (all little-endian unless said otherwise)
------------------------------------------------------------------
* classic pcap: 24-byte header (magic 0xa1b2c3d4 = microseconds, 0xa1b23c4d =
  nanoseconds; version 2.4; thiszone 0; sigfigs 0; snaplen; link type), then per packet
  ts_sec, ts_frac, caplen, wirelen (4 x u32) and the bytes.  Little-endian microsecond
  files go through scapy's RawPcapWriter; nanosecond and big-endian ones through
  :func:`pcap_bytes` (the test checks both writers agree byte for byte).
* pcapng: blocks of (type u32, total length u32, body padded to 4, total length u32).
  SHB (0x0A0D0D0A, byte-order magic 0x1A2B3C4D, version 1.0, section length -1),
  one IDB (type 1: link type u16, reserved u16, snaplen u32, options) per interface,
  EPBs (type 6: interface id, timestamp high/low u32 in the interface's if_tsresol
  units, caplen, original length, data) and SPBs (type 3: original length, data; no
  interface id - it is interface 0 - and no timestamp).  Option if_tsresol (code 9) = 9
  means 10^-9 s units; without it units are microseconds.
* gzip (RFC 1952), written by hand so no file name and no mtime end up in it: header
  1f 8b 08 00 00000000 02 ff, raw deflate stream, CRC-32, length mod 2^32.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import sys
import zlib
from datetime import datetime, timezone
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw
from scapy.utils import RawPcapWriter

US = 1_000
MS = 1_000_000
S = 1_000_000_000
T0 = int(datetime(2026, 2, 10, 9, 47, 22, tzinfo=timezone.utc).timestamp()) * S
MSS = 1460
SNAPLEN = 262144

CLIENT, SERVER = "10.0.0.5", "10.0.0.9"
MAC = {"c": bytes.fromhex("020000000005"), "s": bytes.fromhex("020000000009")}

LT_NULL, LT_ETHER, LT_RAW, LT_SLL, LT_SLL2 = 0, 1, 101, 113, 276

UA_AXIOS = "axios/1.7.9"
UA_FETCH = "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"
SID = "sess_8f3a1c2e9d"


def other(side):
    return "s" if side == "c" else "c"


# --------------------------------------------------------------------------- HTTP bytes


class Req:
    """One HTTP request: its bytes and the fields the truth file reports."""

    def __init__(self, method, uri, ua=None, headers=(), body=b"", host=f"{SERVER}:8000",
                 version="HTTP/1.1", content_length=True):
        lines = [f"{method} {uri} {version}"]
        hdrs = list(headers)
        if ua:
            hdrs.append(("User-Agent", ua))
        if body and content_length:
            hdrs.append(("Content-Length", str(len(body))))
        if host:
            hdrs.append(("Host", host))
        lines += [f"{k}: {v}" for k, v in hdrs]
        self.head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.body = body
        self.bytes = self.head + body
        self.info = {"method": method, "uri": uri, "host": host, "user_agent": ua,
                     "request_body_len": len(body)}


def http_date(t_ns):
    return datetime.fromtimestamp(t_ns // S, timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


def resp(status, reason, body=b"", headers=(), t_ns=T0, version="HTTP/1.1", length=True,
         ctype="application/json"):
    # Lower-case header names, as uvicorn/h11 write them.
    hdrs = [("date", http_date(t_ns)), ("server", "uvicorn")]
    if length:
        hdrs.append(("content-length", str(len(body))))
    if ctype:
        hdrs.append(("content-type", ctype))
    hdrs += list(headers)
    head = f"{version} {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs)
    return head.encode() + b"\r\n" + body


def files_json(n, detail=False):
    items = []
    for i in range(n):
        it = {"name": f"input_{i:02d}.csv", "id": f"f_{i:04x}", "session_id": SID}
        if detail:
            it.update({"size": 2048 + 37 * i, "etag": f"{zlib.crc32(bytes([i])):08x}",
                       "lastModified": "2026-02-10T09:40:00Z",
                       "metadata": {"content-type": "text/csv", "original-filename": f"input_{i:02d}.csv"}})
        items.append(it)
    return json.dumps(items, separators=(",", ":")).encode()


def exec_body():
    files = [{"id": f"f_{i:04x}", "session_id": SID, "name": f"input_{i:02d}.csv"} for i in range(24)]
    doc = {"lang": "py", "code": 'import time\ntime.sleep(10)\nprint("done")', "files": files,
           "user_id": "u_5a1d"}
    return json.dumps(doc, separators=(",", ":")).encode()


def gzip_bytes(data):
    """RFC 1952 member with mtime 0, no name, OS 255: identical bytes on every run."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = co.compress(data) + co.flush()
    return (b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff" + raw
            + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF))


# --------------------------------------------------------------------------- TCP model


class Seg:
    """One TCP segment as built; ``captured`` False means lost before the capture point."""

    __slots__ = ("conv", "side", "ts", "flags", "seq", "ack", "payload", "tag", "captured",
                 "order", "opts", "ipid", "frame", "win")

    def __init__(self, **kw):
        self.frame = None
        self.win = None         # the TCP window field (None: each side's usual one)
        for k, v in kw.items():
            setattr(self, k, v)


class Conv:
    """Both ends of one TCP connection.  ``nxt`` is each side's next sequence number
    (kept unbounded; reduced mod 2**32 only when the packet is built)."""

    def __init__(self, cap, cport, sport=8000, t=0, cip=CLIENT, sip=SERVER, isn=None,
                 iface=0, v6=False):
        self.cap, self.t, self.iface, self.v6 = cap, t, iface, v6
        self.ip = {"c": cip, "s": sip}
        self.port = {"c": cport, "s": sport}
        epoch = sum(1 for c in cap.convs if c.port == self.port)
        if isn is None:
            isn = {side: zlib.crc32(f"{cap.name}:{cport}:{sport}:{side}:{epoch}".encode())
                   for side in "cs"}
        self.nxt = dict(isn)
        self.ipid = {side: zlib.crc32(f"id{cport}{side}{epoch}".encode()) & 0xFFFF for side in "cs"}
        self.roles_from = "syn"
        self.requests = []
        self.protocol = "http"
        self.sni = None
        self.history_sure = True
        self.data_sent = {"c": 0, "s": 0}
        cap.convs.append(self)

    # -- low level
    def seg(self, side, flags, payload=b"", dt=0, at=None, seq=None, ack=None, tag=None,
            captured=True, opts=(), win=None):
        if at is not None:
            assert at >= self.t, "time must not go backwards within a connection"
            self.t = at
        self.t += dt
        new = seq is None
        if new:
            seq = self.nxt[side]
        if ack is None:
            ack = self.nxt[other(side)] if "A" in flags else 0
        s = Seg(conv=self, side=side, ts=self.t, flags=flags, seq=seq, ack=ack,
                payload=payload, tag=tag, captured=captured, opts=opts,
                ipid=self.ipid[side], win=win)
        self.ipid[side] = (self.ipid[side] + 1) & 0xFFFF
        if new:
            self.nxt[side] += len(payload) + ("S" in flags) + ("F" in flags)
            self.data_sent[side] += len(payload)
        self.cap.add(s)
        return s

    def open(self, dt=0, at=None, rtt=180 * US):
        self.seg("c", "S", dt=dt, at=at, opts=(("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)))
        self.seg("s", "SA", dt=rtt, opts=(("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 7)))
        self.seg("c", "A", dt=35 * US)

    def send(self, side, data, dt=0, at=None, gap=12 * US, acks="quick", lost=()):
        """Write ``data`` from ``side``: MSS segments, PSH on the last.  ``acks``: how the
        peer acknowledges - 'quick' (every 2nd full segment and the end, ~40 us later),
        'delayed' (one ACK 40 ms after the end), None (the peer's next packet carries it).
        ``lost`` lists segment indexes that never reach the capture point."""
        chunks = [data[i:i + MSS] for i in range(0, len(data), MSS)] or [b""]
        segs = []
        for i, chunk in enumerate(chunks):
            flags = "PA" if i == len(chunks) - 1 else "A"
            s = self.seg(side, flags, chunk, dt=dt if i == 0 else gap, at=at if i == 0 else None,
                         captured=i not in lost)
            segs.append(s)
            if acks == "quick" and i % 2 == 1 and i != len(chunks) - 1:
                self.seg(other(side), "A", dt=30 * US)
        if acks == "quick":
            self.seg(other(side), "A", dt=40 * US)
        elif acks == "delayed":
            self.seg(other(side), "A", dt=40 * MS)
        return segs

    def ack(self, side, dt=40 * US, **kw):
        return self.seg(side, "A", dt=dt, **kw)

    def fin(self, side, dt=0, at=None, **kw):
        return self.seg(side, "FA", dt=dt, at=at, **kw)

    def rst(self, side, dt=0, at=None, ack=True, **kw):
        return self.seg(side, "RA" if ack else "R", dt=dt, at=at, **kw)

    def last_payload_ts(self):
        return max(s.ts for s in self.cap.segs if s.conv is self and s.payload
                   and s.captured and s.tag != "keepalive")

    def note(self, req, **kw):
        """Record the expected requests-table row for ``req`` (None: response without request)."""
        row = {"index": len(self.requests) + 1}
        row.update(req.info if req else {"method": None, "uri": None, "host": None,
                                         "user_agent": None, "request_body_len": None})
        row.update({"status": None, "outcome": None, "ended_by": None})
        row.update(kw)
        self.requests.append(row)


# --------------------------------------------------------------------------- link layers


def frame_bytes(seg, link):
    c = seg.conv
    src, dst = seg.side, other(seg.side)
    tcp = TCP(sport=c.port[src], dport=c.port[dst], seq=seg.seq % 2**32, ack=seg.ack % 2**32,
              flags=seg.flags, window=seg.win if seg.win is not None else 502 if src == "c" else 509,
              options=list(seg.opts))
    if c.v6:
        l3 = IPv6(src=c.ip[src], dst=c.ip[dst], hlim=64) / tcp
    else:
        l3 = IP(src=c.ip[src], dst=c.ip[dst], id=seg.ipid, flags="DF", ttl=64) / tcp
    if seg.payload:
        l3 = l3 / Raw(seg.payload)
    raw = bytes(l3)
    etype = 0x86DD if c.v6 else 0x0800
    incoming = src == "s"  # the capture point is the client host
    if link == "ether":
        f = MAC[dst] + MAC[src] + struct.pack(">H", etype) + raw
    elif link == "vlan":
        f = MAC[dst] + MAC[src] + struct.pack(">HHH", 0x8100, 100, etype) + raw
    elif link == "qinq":
        f = MAC[dst] + MAC[src] + struct.pack(">HHHHH", 0x88A8, 200, 0x8100, 100, etype) + raw
    elif link == "sll":
        # pkttype 0 = to us, 4 = sent by us; ARPHRD_ETHER; address = sender's MAC
        f = struct.pack(">HHH8sH", 0 if incoming else 4, 1, 6, MAC[src], etype) + raw
        return f
    elif link == "sll2":
        f = struct.pack(">HHIHBB8s", etype, 0, 2, 1, 0 if incoming else 4, 6, MAC[src]) + raw
        return f
    elif link == "null":
        return struct.pack("<I", 2) + raw  # AF_INET in the writer's (little-endian) order
    elif link == "raw":
        return raw
    elif link.startswith("tun-"):
        inner_eth = MAC[dst] + MAC[src] + struct.pack(">H", etype) + raw
        f = tunnel_frame(link[4:], raw, inner_eth, src, seg.ipid)
    else:
        raise ValueError(link)
    # Frames that came in over the wire are padded to the 60-byte minimum (FCS stripped).
    if incoming and len(f) < 60:
        f += b"\x00" * (60 - len(f))
    return f


# Tunnel endpoints (VTEPs, a mirror session's switch and collector): a documentation range.
VTEP = {"c": "192.0.2.1", "s": "192.0.2.2"}
VTEP6 = {"c": "2001:db8::1", "s": "2001:db8::2"}
MAC_VTEP = {"c": bytes.fromhex("0200000000a1"), "s": bytes.fromhex("0200000000a2")}


def tunnel_frame(kind, inner_ip, inner_eth, src, ipid):
    """An Ethernet frame carrying ``inner_ip`` (or ``inner_eth``) in tunnel ``kind``.

    Mirror sessions (vxlan*, geneve, erspan*) always run from the switch (192.0.2.1) to the
    collector (192.0.2.2), whichever way the inner packet goes; routed tunnels (gre*, ipip,
    6in4, 4in6) carry each direction from its own end. Header layouts, by their RFCs:
    VXLAN (RFC 7348) flags 0x08 + VNI; Geneve (RFC 8926) with one 8-byte option; GRE (RFC
    2784/2890) with key and sequence bits; ERSPAN type II (GRE 0x88BE, 8-byte header) and
    type III (GRE 0x22EB, 12-byte header); IP-in-IP (protocol 4), 6in4 (41), 4in6 (next 4).
    """
    from scapy.layers.inet import UDP

    mirror = kind.startswith(("vxlan", "geneve", "erspan"))
    a, b = ("c", "s") if mirror or src == "c" else ("s", "c")

    def outer4(proto, payload):
        return bytes(IP(src=VTEP[a], dst=VTEP[b], id=ipid, flags="DF", ttl=64, proto=proto) / Raw(payload))

    def udp(dport, payload):
        return outer4(17, bytes(UDP(sport=49152 + ipid % 4096, dport=dport) / Raw(payload)))

    vxlan = struct.pack(">B3sI", 0x08, b"\0\0\0", 100 << 8)          # flags I, VNI 100
    if kind == "vxlan":
        l3, et = udp(4789, vxlan + inner_eth), 0x0800
    elif kind == "vxlan-8472":
        l3, et = udp(8472, vxlan + inner_eth), 0x0800
    elif kind == "vxlan-vlan":
        tagged = inner_eth[:12] + struct.pack(">HH", 0x8100, 300) + inner_eth[12:]
        l3, et = udp(4789, vxlan + tagged), 0x0800
    elif kind == "geneve":
        opt = struct.pack(">HBB", 0x0102, 0x80, 1) + b"\x00\x00\x00\x2a"    # class, type, 1 word
        l3, et = udp(6081, struct.pack(">BBHI", len(opt) // 4, 0, 0x6558, 200 << 8) + opt + inner_eth), 0x0800
    elif kind == "gre":
        l3, et = outer4(47, struct.pack(">HH", 0, 0x0800) + inner_ip), 0x0800
    elif kind == "gre-key":
        l3, et = outer4(47, struct.pack(">HHII", 0x3000, 0x0800, 0x64, ipid) + inner_ip), 0x0800
    elif kind == "gre-teb":
        l3, et = outer4(47, struct.pack(">HHI", 0x2000, 0x6558, 0x65) + inner_eth), 0x0800
    elif kind == "erspan2":
        hdr = struct.pack(">HHI", 0x1000, 7, 0)                            # ver 1, VLAN 0 / session 7 / index 0
        l3, et = outer4(47, struct.pack(">HHI", 0x1000, 0x88BE, ipid) + hdr + inner_eth), 0x0800
    elif kind == "erspan3":
        hdr = struct.pack(">HHIHH", 0x2000, 9, 0, 0, 0)                    # ver 2, session 9, no subheader
        l3, et = outer4(47, struct.pack(">HHI", 0x1000, 0x22EB, ipid) + hdr + inner_eth), 0x0800
    elif kind == "ipip":
        l3, et = outer4(4, inner_ip), 0x0800
    elif kind == "6in4":
        l3, et = outer4(41, inner_ip), 0x0800
    elif kind == "4in6":
        l3, et = bytes(IPv6(src=VTEP6[a], dst=VTEP6[b], nh=4, hlim=64) / Raw(inner_ip)), 0x86DD
    elif kind == "vxlan-in-gre":
        l3, et = outer4(47, struct.pack(">HH", 0, 0x0800) + udp(4789, vxlan + inner_eth)), 0x0800
    else:
        raise ValueError(kind)
    return MAC_VTEP[b] + MAC_VTEP[a] + struct.pack(">H", et) + l3


def arp_request():
    # who-has 10.0.0.9 tell 10.0.0.5 (Ethernet, broadcast)
    body = struct.pack(">HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MAC["c"], bytes([10, 0, 0, 5]),
                       b"\x00" * 6, bytes([10, 0, 0, 9]))
    return b"\xff" * 6 + MAC["c"] + struct.pack(">H", 0x0806) + body


# --------------------------------------------------------------------------- writers


def pcap_bytes(frames, linktype, endian="<", nano=False):
    """frames: [(ts_ns, bytes)]."""
    out = [struct.pack(endian + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0,
                       SNAPLEN, linktype)]
    for ts, data in frames:
        sec, frac = divmod(ts, S)
        if not nano:
            assert frac % US == 0, "microsecond file needs microsecond timestamps"
            frac //= US
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), len(data)) + data)
    return b"".join(out)


def write_pcap_scapy(path, frames, linktype):
    w = RawPcapWriter(str(path), linktype=linktype, endianness="<", snaplen=SNAPLEN)
    w.linktype = linktype  # the constructor ignores a falsy link type (0 = NULL)
    w.write_header(None)
    for ts, data in frames:
        sec, frac = divmod(ts, S)
        assert frac % US == 0
        w.write_packet(data, sec=sec, usec=frac // US)
    w.close()


def _block(btype, body):
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _opt(code, value):
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def pcapng_bytes(ifaces, records):
    """ifaces: [(linktype, tsresol_exp, name)]; records: [(kind, iface, ts_ns, bytes)]."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
                  + _opt(4, b"sockscope make_crafted.py") + _opt(0, b""))]
    for lt, exp, name in ifaces:
        opts = _opt(2, name.encode())
        if exp != 6:
            opts += _opt(9, bytes([exp]))
        out.append(_block(1, struct.pack("<HHI", lt, 0, SNAPLEN) + opts + _opt(0, b"")))
    for kind, iface, ts, data in records:
        if kind == "spb":
            out.append(_block(3, struct.pack("<I", len(data)) + data))
            continue
        unit = 10 ** (9 - ifaces[iface][1])
        assert ts % unit == 0
        t = ts // unit
        out.append(_block(6, struct.pack("<IIIII", iface, t >> 32, t & 0xFFFFFFFF, len(data),
                                         len(data)) + data))
    return b"".join(out)


# --------------------------------------------------------------------------- captures


class Capture:
    """A capture file being built: its connections, their segments, and expectations."""

    def __init__(self, name, what, key_result, fmt="pcap", link="ether", ifaces=None):
        self.name, self.what, self.key_result = name, what, key_result
        self.fmt, self.link = fmt, link
        self.ifaces = ifaces  # pcapng only: [(linktype, tsresol_exp, name, link)]
        self.convs, self.segs, self.findings, self.extra = [], [], [], []
        self.inferred_timeout_s = None

    def add(self, seg):
        seg.order = len(self.segs)
        self.segs.append(seg)

    def finding(self, kind, conv, request_index=None):
        # conn ids are only known once every connection exists: resolved in make_truth
        self.findings.append((kind, conv, request_index))

    def frames(self):
        """Captured segments (and extra non-TCP records) in file order, frame numbers set."""
        items = [(s.ts, s.order, s) for s in self.segs if s.captured]
        items += [(ts, order, rec) for ts, order, rec in self.extra]
        items.sort(key=lambda x: (x[0], x[1]))
        out = []
        for n, (_, _, s) in enumerate(items, 1):
            if isinstance(s, Seg):
                s.frame = n
            out.append(s)
        return out

    def conv_ids(self):
        first = {}
        for s in sorted((s for s in self.segs if s.captured), key=lambda s: (s.ts, s.order)):
            first.setdefault(id(s.conv), s)
        order = sorted(first.values(), key=lambda s: (s.ts, s.order))
        return {id(s.conv): i for i, s in enumerate(order)}


LINKTYPE = {"ether": LT_ETHER, "vlan": LT_ETHER, "qinq": LT_ETHER, "sll": LT_SLL,
            "sll2": LT_SLL2, "null": LT_NULL, "raw": LT_RAW}


def linktype(link):
    """The pcap link type of a link name (every tunnel is carried in Ethernet frames)."""
    return LT_ETHER if link.startswith("tun-") else LINKTYPE[link]


def write_capture(cap, out_dir):
    frames = cap.frames()
    path = Path(out_dir) / cap.name
    if cap.fmt == "pcapng":
        recs = []
        for f in frames:
            if isinstance(f, Seg):
                recs.append(("epb", f.conv.iface, f.ts, frame_bytes(f, cap.ifaces[f.conv.iface][3])))
            else:
                recs.append(f)
        data = pcapng_bytes([i[:3] for i in cap.ifaces], recs)
        path.write_bytes(data)
    else:
        lt = linktype(cap.link)
        pairs = [(f.ts, frame_bytes(f, cap.link)) for f in frames]
        if cap.fmt == "pcap":
            write_pcap_scapy(path, pairs, lt)
        elif cap.fmt == "pcap-nanosecond":
            path.write_bytes(pcap_bytes(pairs, lt, nano=True))
        elif cap.fmt == "pcap-big-endian":
            path.write_bytes(pcap_bytes(pairs, lt, endian=">"))
        elif cap.fmt == "pcap-gzip":
            path.write_bytes(gzip_bytes(pcap_bytes(pairs, lt)))
        else:
            raise ValueError(cap.fmt)
    truth = make_truth(cap, frames)
    (Path(out_dir) / (cap.name + ".truth.json")).write_text(json.dumps(truth, indent=1) + "\n")
    return truth


# --------------------------------------------------------------------------- truth


def iso(ts):
    sec, frac = divmod(ts, S)
    base = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac // US:06d}Z" if frac % US == 0 else f"{base}.{frac:09d}Z"


def secs(ns):
    return round(ns / S, 9)


def zeek_summary(conv, segs):
    """(history, conn_state) by Zeek's rules, for connections that start with a SYN.

    Letters: A/D/I/Q once per direction; S/H/F/R again only when the sequence number
    differs from the last one of that kind (FIN's is its end); T when a payload segment
    ends at or below the highest sequence already seen from that side (1, 10, 100...); W
    when a side advertises a zero window (1, 10, 100...).
    """
    hist, seen, last_kind, last_seq, rx = [], set(), {}, {}, {"c": 0, "s": 0}
    zw = {"c": 0, "s": 0}
    state = {"c": "INACTIVE", "s": "INACTIVE"}
    bytes_sent = {"c": 0, "s": 0}

    def add(side, ch):
        hist.append(ch if side == "c" else ch.lower())

    def once(side, ch):
        if (side, ch) not in seen:
            seen.add((side, ch))
            add(side, ch)
            return False
        return True

    for s in segs:
        f, n, side = s.flags, len(s.payload), s.side
        syn, fin, rst = "S" in f, "F" in f, "R" in f
        if syn + fin + rst > 1:
            once(side, "I" if fin and rst else "Q")
        elif syn or fin or rst:
            ch = ("H" if "A" in f else "S") if syn else ("F" if fin else "R")
            mark = s.seq + n if fin else s.seq
            if once(side, ch) and last_kind.get((side, ch)) != mark:
                add(side, ch)
            last_kind[(side, ch)] = mark
        elif n:
            once(side, "D")
        elif "A" in f:
            once(side, "A")
        if s.win == 0 and not rst and state[other(side)] != "CLOSED" and state[side] != "RESET":
            zw[side] += 1
            if zw[side] in (1, 10, 100):
                add(side, "W")
        end = s.seq + n + syn + fin
        if side not in last_seq or end > last_seq[side]:
            last_seq[side] = end
        elif n:
            rx[side] += 1
            if rx[side] in (1, 10, 100):
                add(side, "T")
        bytes_sent[side] += n
        # endpoint states, as far as conn_state needs them
        st = state[side]
        if rst:
            if not (st == "CLOSED" and state[other(side)] == "CLOSED"):
                state[side] = "RESET"
        elif fin:
            if st != "RESET":
                state[side] = "CLOSED"
        elif syn:
            if st == "INACTIVE":
                state[side] = "SYN_ACK_SENT" if "A" in f else "SYN_SENT"
        elif st in ("SYN_SENT", "SYN_ACK_SENT"):
            state[side] = "ESTABLISHED"
        elif st == "INACTIVE":
            state[side] = "PARTIAL"
        if side == "c" and not syn and state["s"] == "SYN_ACK_SENT" and "A" in f:
            state["s"] = "ESTABLISHED"
    # A connection whose first packet is the server's SYN-ACK from a likely server port
    # (8000 is one of HTTP's): Zeek flips the roles and says so with '^'.
    history = ("^" if segs and segs[0].side == "s" else "") + "".join(hist)
    os_, rs = state["c"], state["s"]
    o_in, r_in = os_ in ("INACTIVE", "PARTIAL"), rs in ("INACTIVE", "PARTIAL")
    if rs == "RESET":
        if os_ in ("SYN_SENT", "SYN_ACK_SENT") or (os_ == "RESET" and not any(bytes_sent.values())):
            cs = "REJ"
        else:
            cs = "RSTRH" if o_in else "RSTR"
    elif os_ == "RESET":
        if r_in:
            cs = "RSTOS0" if re.fullmatch(r"\^?[sS]+[rR]", history) else "OTH"
        else:
            cs = "RSTO"
    elif os_ == "CLOSED" and rs == "CLOSED":
        cs = "SF"
    elif os_ == "CLOSED":
        cs = "SH" if r_in else "S2"
    elif rs == "CLOSED":
        cs = "SHR" if o_in else "S3"
    elif os_ == "SYN_SENT" and rs == "INACTIVE":
        cs = "S0"
    elif os_ == "ESTABLISHED" and rs == "ESTABLISHED":
        cs = "S1"
    else:
        cs = "OTH"
    return history, cs


def make_truth(cap, frames):
    ids = cap.conv_ids()
    convs = sorted(cap.convs, key=lambda c: ids[id(c)])
    conns = []
    for c in convs:
        segs = [f for f in frames if isinstance(f, Seg) and f.conv is c]
        closes = [s for s in segs if "F" in s.flags or "R" in s.flags]
        close = closes[0] if closes else None
        # a side never captured: the other side's ACK of its FIN is all the capture holds of
        # it, and makes it the closer when it comes before any captured FIN/RST
        unseen = [side for side in "cs" if not any(s.side == side for s in segs)]
        by_ack = False
        if len(unseen) == 1:
            fins = [s for s in c.cap.segs if s.conv is c and s.side == unseen[0] and "F" in s.flags]
            if fins:
                fin_end = fins[0].seq + len(fins[0].payload) + 1
                acks = [s for s in segs if s.side != unseen[0] and "A" in s.flags and s.ack == fin_end]
                if acks and (close is None or acks[0].frame <= close.frame):
                    close, by_ack = acks[0], True
        pay = [s for s in segs if s.payload and s.tag != "keepalive"
               and (close is None or s.frame < close.frame)]
        last = pay[-1] if pay else None
        lost = [s for s in c.cap.segs if s.conv is c and not s.captured]
        # a lost segment whose bytes were never captured in any copy is capture loss
        missed = {"c": 0, "s": 0}
        for s in lost:
            if s.tag == "precapture":
                continue        # sent before the capture began: not a hole in it
            covered = any(o.captured and o.side == s.side and o.payload and o.seq <= s.seq
                          and o.seq + len(o.payload) >= s.seq + len(s.payload) for o in segs)
            if not covered:
                missed[s.side] += len(s.payload)
        # a side never seen sending: Zeek gives it no bytes, and reports no gap at all
        seen = {side: any(s.side == side for s in segs) for side in "cs"}
        if not all(seen.values()):
            missed = {"c": 0, "s": 0}
        history = state = None
        if c.roles_from == "syn" or not all(seen.values()):
            history, state = zeek_summary(c, segs)
        elif all(s.captured for s in c.cap.segs if s.conv is c):
            _, state = zeek_summary(c, segs)
        if not c.history_sure:
            history = None
        row = {
            "conn_id": ids[id(c)],
            "client_ip": c.ip["c"], "client_port": c.port["c"],
            "server_ip": c.ip["s"], "server_port": c.port["s"],
            "roles_from": c.roles_from,
            "first_frame": segs[0].frame, "last_frame": segs[-1].frame,
            "start": iso(segs[0].ts), "end": iso(segs[-1].ts),
            "client_pkts": sum(s.side == "c" for s in segs),
            "server_pkts": sum(s.side == "s" for s in segs),
            "client_bytes": c.data_sent["c"] if seen["c"] else 0,
            "server_bytes": c.data_sent["s"] if seen["s"] else 0,
            "missed_bytes": missed["c"] + missed["s"],
            "gaps": sum(1 for v in missed.values() if v),
            "retransmits": sum(1 for s in segs if s.tag == "retrans"),
            "keepalive_probe_frames": [s.frame for s in segs if s.tag == "keepalive"],
            "state": state, "history": history,
            "closed_by": None if close is None else ("client" if (close.side == "c") != by_ack else "server"),
            "close_kind": None if close is None else ("RST" if "R" in close.flags and not by_ack else "FIN"),
            "close_frame": None if close is None else close.frame,
            "close_ts": None if close is None else iso(close.ts),
            "last_payload_frame": None if last is None else last.frame,
            "last_payload_ts": None if last is None else iso(last.ts),
            "idle_before_close_s": None if close is None or last is None else secs(close.ts - last.ts),
            "protocol": c.protocol,
            "sni": c.sni,
            "requests": c.requests,
            "unanswered": sum(1 for r in c.requests if r["outcome"] in ("no_response", "partial_response")),
        }
        conns.append(row)
    tss = [f.ts if isinstance(f, Seg) else None for f in frames]
    real = [t for t in tss if t is not None]
    link_types = sorted({i[0] for i in cap.ifaces}) if cap.fmt == "pcapng" else [linktype(cap.link)]
    return {
        "capture": cap.name,
        "what": cap.what,
        "key_result": cap.key_result,
        "file_format": cap.fmt,
        "link_types": link_types,
        "frames": len(frames),
        "non_tcp_frames": [i + 1 for i, f in enumerate(frames) if not isinstance(f, Seg)],
        "start": iso(min(real)), "end": iso(max(real)),
        "connections": conns,
        "findings": sorted(({"kind": k, "conn_id": ids[id(c)], "request_index": i}
                            for k, c, i in cap.findings), key=lambda f: (f["conn_id"], f["kind"])),
        "finding_kinds": sorted({k for k, _, _ in cap.findings}),
        "inferred_timeout_s": cap.inferred_timeout_s,
        "conventions": "conn_id = order of first packet (tshark tcp.stream); frames 1-based; "
                       "bytes = payload by sequence span (retransmissions once, capture loss "
                       "included, see missed_bytes); idle_before_close_s = first FIN/RST minus "
                       "last payload packet in either direction (keep-alive probes excluded); "
                       "history/state null where not certain of Zeek's exact output",
    }


# --------------------------------------------------------------------------- scenarios

AXIOS_HDRS = [("Accept", "application/json, text/plain, */*")]
AXIOS_TAIL = [("Accept-Encoding", "gzip, compress, deflate, br"), ("Connection", "keep-alive")]
FETCH_HDRS = [("Accept", "*/*"), ("Accept-Encoding", "gzip,deflate"), ("Connection", "keep-alive")]


def axios_get(uri):
    # axios writes User-Agent between Accept and Accept-Encoding
    r = Req("GET", uri, None, headers=AXIOS_HDRS + [("User-Agent", UA_AXIOS)] + AXIOS_TAIL)
    r.info["user_agent"] = UA_AXIOS
    return r


def fetch_req(method, uri, body=b"", extra=()):
    hdrs = list(extra) + FETCH_HDRS
    return Req(method, uri, UA_FETCH, headers=hdrs, body=body)


def poisoned_session(cap, cport, t, timeout=5 * S, pause=4302 * MS, end="fin", isn=None):
    """axios GET, node-fetch GET, POST /exec on one socket; the client's inherited
    socket timer fires ``timeout`` after the last payload byte.  ``end``: 'fin' (server
    FIN shortly after) or 'late-rst' (server writes its 200 after 10 s, client RSTs)."""
    c = Conv(cap, cport, t=t, isn=isn)
    c.open()
    r1 = axios_get(f"/files/{SID}")
    c.send("c", r1.bytes, dt=140 * US, acks=None)
    c.ack("s", dt=30 * US)
    b1 = files_json(1)
    c.send("s", resp(200, "OK", b1, t_ns=c.t), dt=4700 * US, acks=None)
    c.ack("c", dt=40 * MS)  # client's delayed ACK
    c.note(r1, status=200, outcome="complete", response_body_len=len(b1))
    r2 = fetch_req("GET", f"/files/{SID}?detail=full")
    c.send("c", r2.bytes, at=t + pause, acks=None)
    c.ack("s", dt=30 * US)
    b2 = files_json(12, detail=True)
    c.send("s", resp(200, "OK", b2, t_ns=c.t), dt=1900 * US, acks="quick")
    c.note(r2, status=200, outcome="complete", response_body_len=len(b2))
    body = exec_body()
    r3 = fetch_req("POST", "/exec", body, extra=[("Content-Type", "application/json")])
    c.send("c", r3.bytes, dt=5 * MS, acks="delayed")
    t_post = c.t
    last = c.last_payload_ts()
    if end == "rst-crossing":
        # the client aborts (RST) at its timer; the server's answer, already on its way,
        # crosses the RST on the wire, and the client's kernel resets a second time
        c.rst("c", at=last + timeout, ack=False)
        b3 = json.dumps({"run_id": "r_77", "stdout": "done\n", "stderr": "", "exit_code": 0}).encode()
        c.send("s", resp(200, "OK", b3, t_ns=c.t), dt=35 * US, acks=None)
        c.rst("c", dt=38 * US, ack=False)
        c.note(r3, status=200, outcome="complete", response_body_len=len(b3))
        cap.finding("connection_reuse", c)
        cap.finding("client_idle_timeout", c, 3)
        cap.finding("response_after_close", c, 3)
        return c
    c.fin("c", at=last + timeout)  # socket.setTimeout fires -> destroy()
    c.ack("s", dt=45 * US)
    if end == "fin":
        c.fin("s", dt=850 * US)  # uvicorn sees EOF and closes its side
        c.ack("c", dt=40 * US)
        c.note(r3, status=None, outcome="no_response", ended_by="client_fin")
    else:
        b3 = json.dumps({"run_id": "r_77", "stdout": "done\n", "stderr": "", "exit_code": 0}).encode()
        c.send("s", resp(200, "OK", b3, t_ns=c.t), at=t_post - 40 * MS + 10049 * MS, acks=None)
        c.rst("c", dt=38 * US, ack=False)  # FIN_WAIT2 socket already destroyed: kernel resets
        c.note(r3, status=200, outcome="complete", response_body_len=len(b3))
    cap.finding("connection_reuse", c)
    cap.finding("client_idle_timeout", c, 3)
    if end != "fin":
        cap.finding("response_after_close", c, 3)
    return c


def small_exchange(cap, cport, t, sport=8000, **kw):
    """GET /health answered at once; the client closes.  Used by the format variants."""
    c = Conv(cap, cport, sport=sport, t=t, **kw)
    c.open(rtt=123_457)
    host = kw.get("sip", SERVER)
    r = Req("GET", "/health", "curl/8.5.0", headers=[("Accept", "*/*")],
            host=f"[{host}]:{sport}" if ":" in host else f"{host}:{sport}")
    c.send("c", r.bytes, dt=61_003, acks=None)
    b = b'{"status":"ok"}'
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=1_234_567, acks=None)
    c.ack("c", dt=40_111)
    c.fin("c", dt=301_001)
    c.fin("s", dt=52_019)
    c.ack("c", dt=33_333)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    return c


def us_round(c):
    """Format variants that are microsecond files need microsecond timestamps."""
    for s in c.cap.segs:
        s.ts -= s.ts % US


def files_with_close(c, req, body):
    """A GET /files answered with Connection: close: the server closes after its answer."""
    c.ack("s", dt=30 * US)
    c.send("s", resp(200, "OK", body, [("connection", "close")], t_ns=c.t), dt=4 * MS,
           acks="quick" if len(body) > 1000 else None)
    c.fin("s", dt=25 * US)  # server honours its own Connection: close
    c.ack("c", dt=40 * US)
    c.fin("c", dt=210 * US)
    c.ack("s", dt=40 * US)
    c.note(req, status=200, outcome="complete", response_body_len=len(body))


def slow_exec(c):
    """POST /exec on ``c`` answered after 10 s (the fixed client waits for it)."""
    body = exec_body()
    r3 = fetch_req("POST", "/exec", body, extra=[("Content-Type", "application/json")])
    c.send("c", r3.bytes, dt=140 * US, acks="delayed")
    b3 = json.dumps({"run_id": "r_77", "stdout": "done\n", "stderr": "", "exit_code": 0}).encode()
    c.send("s", resp(200, "OK", b3, t_ns=c.t), dt=10009 * MS, acks=None)
    c.ack("c", dt=40 * US)
    c.note(r3, status=200, outcome="complete", response_body_len=len(b3))


def build_incident(out):
    caps = []
    cap = Capture("incident-before-fix.pcap",
                  "3 sessions: axios GET, node-fetch GET, POST /exec on one socket each; client FIN 5.000 s after the last payload, server FIN back",
                  "3x client_idle_timeout (inferred 5.0 s) + connection_reuse")
    poisoned_session(cap, 34228, T0 + 879 * MS)
    # second session: server ISN near 2^32 so its sequence numbers wrap mid-connection
    poisoned_session(cap, 34230, T0 + 31_402 * MS, isn={"c": 1_234_567, "s": 0xFFFFF800})
    poisoned_session(cap, 34236, T0 + 63_118 * MS)
    cap.inferred_timeout_s = 5.0
    caps.append(cap)

    cap = Capture("incident-after-fix.pcap",
                  "same calls with Connection: close on GET /files; POST /exec on a fresh socket answered after 10 s",
                  "9 healthy connections, no findings")
    for k, t in enumerate((T0 + 879 * MS, T0 + 31_402 * MS, T0 + 63_118 * MS)):
        base = 34300 + 10 * k
        for j, (req, body) in enumerate(((axios_get(f"/files/{SID}"), files_json(1)),
                                         (fetch_req("GET", f"/files/{SID}?detail=full"), files_json(12, True)))):
            c = Conv(cap, base + j, t=t + j * 4302 * MS)
            c.open()
            c.send("c", req.bytes, dt=140 * US, acks=None)
            files_with_close(c, req, body)
        c = Conv(cap, base + 2, t=c.t + 5 * MS)
        c.open()
        slow_exec(c)
        c.fin("c", dt=300 * US)
        c.fin("s", dt=60 * US)
        c.ack("c", dt=40 * US)
    caps.append(cap)

    cap = Capture("incident-after-fix-reuse.pcap",
                  "after the fix, 2 sessions: GET /files with Connection: close, POST /exec answered after 10 s on a "
                  "keep-alive socket; the next session's GET /files reuses that POST's socket",
                  "no error findings; connection_reuse on the POST's socket; check --never-after 'GET /files' "
                  "'POST /exec' passes, --separate fails")
    post_conv = None
    for k, t in enumerate((T0 + 879 * MS, T0 + 31_402 * MS)):
        base = 34400 + 10 * k
        for j, (req, body) in enumerate(((axios_get(f"/files/{SID}"), files_json(1)),
                                         (fetch_req("GET", f"/files/{SID}?detail=full"), files_json(12, True)))):
            reuse = j == 0 and post_conv is not None     # the pool hands out the idle POST socket
            c = post_conv if reuse else Conv(cap, base + j, t=t + j * 4302 * MS)
            if reuse:
                c.send("c", req.bytes, at=t, acks=None)
            else:
                c.open()
                c.send("c", req.bytes, dt=140 * US, acks=None)
            files_with_close(c, req, body)
            if reuse:
                cap.finding("connection_reuse", c)
        c = Conv(cap, base + 2, t=c.t + 5 * MS)
        c.open()
        slow_exec(c)
        post_conv = c       # kept alive in the client's pool
    c.fin("c", dt=300 * MS)     # the process exits: its pool closes the last idle socket
    c.fin("s", dt=60 * US)
    c.ack("c", dt=40 * US)
    caps.append(cap)

    cap = Capture("incident-late-rst.pcap",
                  "2 poisoned sessions; the server writes its 200 ~5 s after the client's FIN and the client kernel answers RST",
                  "2x client_idle_timeout (5.0 s) + response_after_close + connection_reuse")
    poisoned_session(cap, 34228, T0 + 879 * MS, end="late-rst")
    poisoned_session(cap, 34230, T0 + 31_402 * MS, end="late-rst")
    cap.inferred_timeout_s = 5.0
    caps.append(cap)

    cap = Capture("incident-rst-crossing.pcap",
                  "2 poisoned sessions; the client resets at its 5 s timer, the server's answer crosses the RST "
                  "on the wire and the client's kernel resets again",
                  "2x client_idle_timeout (5.0 s) + response_after_close citing the second RST + connection_reuse")
    poisoned_session(cap, 34250, T0 + 879 * MS, end="rst-crossing")
    poisoned_session(cap, 34252, T0 + 31_402 * MS, end="rst-crossing")
    cap.inferred_timeout_s = 5.0
    caps.append(cap)

    cap = Capture("incident-3s.pcap", "2 poisoned sessions with a 3.000 s client socket timer",
                  "2x client_idle_timeout, inferred_timeout_s 3.0")
    poisoned_session(cap, 41002, T0 + 879 * MS, timeout=3 * S, pause=1804 * MS)
    poisoned_session(cap, 41010, T0 + 20_311 * MS, timeout=3 * S, pause=1804 * MS)
    cap.inferred_timeout_s = 3.0
    caps.append(cap)
    return caps


def build_mixed(out):
    cap = Capture("mixed.pcap",
                  "2 sockets killed at 5 s next to look-alikes: server idle close at 15 s, 12 s request on a fresh socket, client close 5 s after a complete response, Connection: close, TCP keep-alive probes during a long answered wait",
                  "client_idle_timeout only on conns 0 and 3 (inferred 5.0 s); server_idle_close on conn 1; the rest healthy")
    poisoned_session(cap, 50001, T0 + 1 * S)
    # server closes an idle keep-alive socket after 15 s with nothing outstanding
    c = Conv(cap, 50003, t=T0 + 1500 * MS)
    c.open()
    r = fetch_req("GET", f"/files/{SID}")
    c.send("c", r.bytes, dt=150 * US, acks=None)
    b = files_json(2)
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=3 * MS, acks=None)
    c.ack("c", dt=40 * MS)
    c.fin("s", at=c.last_payload_ts() + 15 * S)
    c.ack("c", dt=40 * US)
    c.fin("c", dt=400 * US)
    c.ack("s", dt=40 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    cap.finding("server_idle_close", c)
    # a 12 s request on a fresh socket, answered in time
    c = Conv(cap, 50005, t=T0 + 2200 * MS)
    c.open()
    body = exec_body()
    r = fetch_req("POST", "/exec", body, extra=[("Content-Type", "application/json")])
    c.send("c", r.bytes, dt=140 * US, acks="delayed")
    b = json.dumps({"run_id": "r_80", "stdout": "ok\n", "exit_code": 0}).encode()
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=11_960 * MS, acks=None)
    c.ack("c", dt=40 * US)
    c.fin("c", dt=250 * US)
    c.fin("s", dt=60 * US)
    c.ack("c", dt=40 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    poisoned_session(cap, 50007, T0 + 3 * S)
    # client closes exactly 5 s after a complete response: nothing outstanding
    c = Conv(cap, 50009, t=T0 + 3500 * MS)
    c.open()
    r = axios_get(f"/files/{SID}")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    b = files_json(1)
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=2 * MS, acks=None)
    c.ack("c", dt=40 * MS)
    c.fin("c", at=c.last_payload_ts() + 5 * S)
    c.ack("s", dt=40 * US)
    c.fin("s", dt=700 * US)
    c.ack("c", dt=40 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    cap.finding("client_idle_close", c)     # its pool retired the idle socket: information
    # Connection: close exchange
    c = Conv(cap, 50011, t=T0 + 4 * S)
    c.open()
    r = Req("GET", "/version", UA_FETCH, headers=[("Accept", "*/*"), ("Connection", "close")])
    c.send("c", r.bytes, dt=140 * US, acks=None)
    b = b'{"version":"2.1.3.dev4"}'
    c.send("s", resp(200, "OK", b, [("connection", "close")], t_ns=c.t), dt=1 * MS, acks=None)
    c.fin("s", dt=20 * US)
    c.ack("c", dt=40 * US)
    c.fin("c", dt=150 * US)
    c.ack("s", dt=40 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    # keep-alive probes (Linux: 0 bytes at seq-1; Windows-style: 1 byte at seq-1) during
    # an 11 s wait; each answered by a pure ACK.  They are not activity.
    c = Conv(cap, 50013, t=T0 + 4500 * MS)
    c.open()
    body = exec_body()
    r = fetch_req("POST", "/exec", body, extra=[("Content-Type", "application/json")])
    c.send("c", r.bytes, dt=140 * US, acks="delayed")
    for k in range(3):
        nxt = c.nxt["c"]
        probe = body[-1:] if k == 1 else b""
        c.seg("c", "A", probe, dt=3 * S if k else 3 * S - 40 * MS, seq=nxt - 1, tag="keepalive")
        c.ack("s", dt=90 * US)
    b = json.dumps({"run_id": "r_81", "stdout": "ok\n", "exit_code": 0}).encode()
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=2 * S, acks=None)
    c.ack("c", dt=40 * US)
    c.fin("c", dt=250 * US)
    c.fin("s", dt=60 * US)
    c.ack("c", dt=40 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    c.history_sure = False  # whether Zeek marks a 1-byte probe as retransmission: unsure
    cap.inferred_timeout_s = 5.0
    # findings were recorded per conv at build time; conn ids follow first-packet order
    return [cap]


def build_edges(out):
    caps = []
    # ---- missing-syn: starts with a response whose request is not in the capture
    cap = Capture("missing-syn.pcap",
                  "mid-stream start: first frame is the server's response to an unseen request, then 2 keep-alive exchanges, FINs",
                  "roles_from heuristic, client 10.0.0.5:41234; 3 requests, the first no_request")
    c = Conv(cap, 41234, t=T0 + 5 * S)
    c.roles_from = "heuristic"
    c.history_sure = False
    b = files_json(1)
    c.send("s", resp(200, "OK", b, t_ns=c.t), acks=None)
    c.ack("c", dt=40 * MS)
    c.note(None, status=200, outcome="no_request", response_body_len=len(b))
    for k, uri in enumerate((f"/files/{SID}?detail=full", "/health")):
        r = fetch_req("GET", uri)
        c.send("c", r.bytes, dt=900 * MS, acks=None)
        b = files_json(3, True) if k == 0 else b'{"status":"ok"}'
        c.send("s", resp(200, "OK", b, t_ns=c.t), dt=2 * MS, acks=None)
        c.ack("c", dt=40 * MS)
        c.note(r, status=200, outcome="complete", response_body_len=len(b))
    c.fin("c", dt=1 * S)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    cap.finding("client_idle_close", c)     # 1 s after the last answer, nothing outstanding
    caps.append(cap)

    # ---- port reuse: same 4-tuple, a second SYN after the first connection closed
    cap = Capture("port-reuse.pcap", "two connections on the same 4-tuple, the second SYN 2 s after the first closed",
                  "2 connections (2 rows), each 1 complete GET")
    for k in range(2):
        c = Conv(cap, 40100, t=T0 + (2 * S if k else 0), isn={"c": 1_000_000 + 5_000_000 * k, "s": 70_000_000 + 3 * k})
        c.open()
        r = fetch_req("GET", f"/files/{SID}" + ("?round=2" if k else ""))
        c.send("c", r.bytes, dt=140 * US, acks=None)
        b = files_json(1 + k)
        c.send("s", resp(200, "OK", b, t_ns=c.t), dt=2 * MS, acks=None)
        c.ack("c", dt=40 * US)
        c.fin("c", dt=200 * MS)
        c.fin("s", dt=300 * US)
        c.ack("c", dt=40 * US)
        c.note(r, status=200, outcome="complete", response_body_len=len(b))
    caps.append(cap)

    # ---- retransmission and reordering
    cap = Capture("retrans-reorder.pcap",
                  "POST whose 2nd segment is lost downstream and retransmitted after RTO; response segments arrive out of order (3rd before 2nd)",
                  "client_bytes counted once (retransmits 1); 1 complete POST; no findings")
    c = Conv(cap, 40200, t=T0)
    c.history_sure = False
    c.open()
    body = bytes((i * 7) % 26 + 97 for i in range(3600))
    r = Req("POST", "/upload", UA_FETCH, headers=[("Content-Type", "text/plain")], body=body)
    segs = c.send("c", r.bytes, dt=140 * US, acks=None)
    s1, s2 = segs[0], segs[1]
    c.seg("s", "A", dt=80 * US, ack=s1.seq + len(s1.payload))
    c.seg("s", "A", dt=15 * US, ack=s1.seq + len(s1.payload))  # dup ACK for segment 3
    c.seg("c", "A", s2.payload, dt=210 * MS, seq=s2.seq, tag="retrans")
    c.ack("s", dt=80 * US)
    big = bytes((i * 13) % 26 + 65 for i in range(5000))
    data = resp(201, "Created", big, t_ns=c.t, ctype="text/plain")
    chunks = [data[i:i + MSS] for i in range(0, len(data), MSS)]
    base = c.nxt["s"]
    offs = [sum(len(x) for x in chunks[:i]) for i in range(len(chunks))]
    t = c.t + 3 * MS
    order = [0, 2, 1, 3]
    for k, i in enumerate(order):
        flags = "PA" if i == len(chunks) - 1 else "A"
        s = c.seg("s", flags, chunks[i], at=t + k * 20 * US, seq=base + offs[i])
        c.data_sent["s"] += len(chunks[i])
        if k == 1:
            c.seg("c", "A", dt=5 * US, ack=base + offs[1])  # dup ACK: hole at chunk 1
        if k == 2:
            c.seg("c", "A", dt=5 * US, ack=base + offs[3])
    c.nxt["s"] = base + len(data)
    c.ack("c", dt=40 * US)
    c.note(r, status=201, outcome="complete", response_body_len=len(big))
    c.fin("c", dt=50 * MS)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    caps.append(cap)

    # ---- overlapping retransmission
    cap = Capture("overlap.pcap",
                  "request sent as 2 segments (1000 + 900 bytes); the RTO retransmission re-sends bytes 0..1460 as one segment, partially overlapping the second",
                  "request parsed once, client_bytes counted once; 1 complete GET")
    c = Conv(cap, 40250, t=T0)
    c.history_sure = False
    c.open()
    cookie = "".join(f"{k:03d}abcdefgh" for k in range(150))
    r = Req("GET", "/files/big", UA_FETCH, headers=[("Accept", "*/*"), ("Cookie", "sid=" + cookie)])
    start = c.nxt["c"]
    # two writes -> two segments; the server's ACK is lost on the way back, so after the
    # RTO Linux re-sends from the first unacked byte, collapsed into one MSS segment that
    # covers segment 1 and the first 460 bytes of segment 2
    c.seg("c", "PA", r.bytes[:1000], dt=140 * US)
    c.seg("c", "PA", r.bytes[1000:], dt=10 * US)
    c.ack("s", dt=60 * US, captured=False)
    c.seg("c", "PA", r.bytes[:MSS], dt=205 * MS, seq=start, tag="retrans")
    c.ack("s", dt=60 * US)
    b = files_json(2)
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=2 * MS, acks=None)
    c.ack("c", dt=40 * US)
    c.fin("c", dt=10 * MS)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    caps.append(cap)

    # ---- hole: capture loss of one server segment that the client did receive
    cap = Capture("hole.pcap",
                  "response body of 4000 bytes in 3 segments; the middle one is missing from the capture (the client ACKs it)",
                  "gaps 1, missed_bytes 1460; server_bytes include the hole; request complete (Content-Length framing)")
    c = Conv(cap, 40280, t=T0)
    c.history_sure = False
    c.open()
    r = fetch_req("GET", "/files/blob")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    blob = bytes((i * 31) % 256 for i in range(4000))
    c.send("s", resp(200, "OK", blob, t_ns=c.t, ctype="application/octet-stream"), dt=2 * MS,
           acks="quick", lost=(1,))
    c.note(r, status=200, outcome="complete", response_body_len=len(blob))
    c.fin("c", dt=20 * MS)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    caps.append(cap)

    # ---- RST variants
    cap = Capture("rst-vs-fin.pcap", "REJ (SYN answered by RST), RSTO (client aborts after a complete response), RSTR (server resets an outstanding request)",
                  "states REJ, RSTO, RSTR; refused on conn 0, server_abort on conn 2")
    c = Conv(cap, 40300, sport=8001, t=T0)
    c.protocol = "unknown"
    c.seg("c", "S", opts=(("MSS", 1460),))
    c.seg("s", "RA", dt=70 * US, seq=0, ack=c.nxt["c"])
    cap.finding("refused", c)
    c = Conv(cap, 40302, t=T0 + 1 * S)
    c.open()
    r = fetch_req("GET", "/health")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    b = b'{"status":"ok"}'
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=1 * MS, acks=None)
    c.rst("c", dt=2 * MS)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    c = Conv(cap, 40304, t=T0 + 2 * S)
    c.open()
    r = fetch_req("GET", "/files/missing")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    c.ack("s", dt=30 * US)
    c.rst("s", dt=1 * MS)
    c.note(r, status=None, outcome="no_response", ended_by="server_rst")
    cap.finding("server_abort", c, 1)
    caps.append(cap)

    # ---- simultaneous close
    cap = Capture("simultaneous-close.pcap", "both sides send FIN before seeing the other's; each then ACKs the other",
                  "SF, closed_by client (first FIN in the capture, 20 us before the server's)")
    c = Conv(cap, 40350, t=T0)
    c.open()
    r = fetch_req("GET", "/health")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    b = b'{"status":"ok"}'
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=1 * MS, acks=None)
    c.ack("c", dt=40 * US)
    srv_ack = c.nxt["c"]
    c.fin("c", dt=1 * S)
    c.fin("s", dt=20 * US, ack=srv_ack)  # crossed in flight: does not ACK the client's FIN
    c.ack("c", dt=40 * US)
    c.ack("s", dt=5 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    cap.finding("client_idle_close", c)     # the first FIN is the client's, 1 s after the answer
    caps.append(cap)

    # ---- pipelining
    cap = Capture("pipelining.pcap", "3 GETs sent back to back before any response; responses 1+2 share a segment",
                  "3 complete requests, index 1..3, in order")
    c = Conv(cap, 40400, t=T0)
    c.open()
    reqs = [Req("GET", f"/files/{SID}/part{k}", "pipeline-test/1.0", headers=[("Accept", "*/*")]) for k in range(1, 4)]
    for k, rq in enumerate(reqs):
        c.send("c", rq.bytes, dt=140 * US if k == 0 else 15 * US, acks=None)
    c.ack("s", dt=30 * US)
    bodies = [f'{{"part":{k},"data":"{"x" * (40 * k)}"}}'.encode() for k in range(1, 4)]
    rs = [resp(200, "OK", bb, t_ns=c.t) for bb in bodies]
    c.send("s", rs[0] + rs[1], dt=2 * MS, acks=None)
    c.send("s", rs[2], dt=300 * US, acks=None)
    c.ack("c", dt=40 * US)
    for rq, bb in zip(reqs, bodies):
        c.note(rq, status=200, outcome="complete", response_body_len=len(bb))
    c.fin("c", dt=5 * MS)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    caps.append(cap)

    # ---- 100-continue
    cap = Capture("100-continue.pcap", "POST with Expect: 100-continue; two interim 100 responses, then the body, then 200",
                  "1 request, status 200 (info_code 100), request_body_len 2000")
    c = Conv(cap, 40450, t=T0)
    c.open()
    body = bytes((i * 3) % 26 + 97 for i in range(2000))
    r = Req("POST", "/upload", "curl/8.5.0", headers=[("Accept", "*/*"), ("Content-Type", "text/plain"),
                                                      ("Content-Length", "2000"), ("Expect", "100-continue")])
    r.info["request_body_len"] = len(body)
    c.send("c", r.bytes, dt=140 * US, acks=None)
    c.send("s", b"HTTP/1.1 100 Continue\r\n\r\n", dt=300 * US, acks=None)
    c.send("s", b"HTTP/1.1 100 Continue\r\n\r\n", dt=50 * US, acks=None)
    c.send("c", body, dt=60 * US, acks="quick")
    ok = b'{"stored":2000}'
    c.send("s", resp(200, "OK", ok, t_ns=c.t), dt=2 * MS, acks=None)
    c.ack("c", dt=40 * US)
    c.note(r, status=200, info_code=100, outcome="complete", response_body_len=len(ok))
    c.fin("c", dt=5 * MS)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    caps.append(cap)

    # ---- chunked with trailers
    cap = Capture("chunked-trailers.pcap", "chunked response (3 chunks + trailer X-Checksum) whose chunk boundaries do not match segments",
                  "1 complete GET, response_body_len 2500 (de-chunked)")
    c = Conv(cap, 40500, t=T0)
    c.open()
    r = fetch_req("GET", "/stream", extra=[("TE", "trailers")])
    c.send("c", r.bytes, dt=140 * US, acks=None)
    parts = [bytes((i * 5 + k) % 26 + 97 for i in n) for k, n in enumerate((range(420), range(2048), range(32)))]
    chunked = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in parts)
    chunked += b"0\r\nX-Checksum: 9f2c1e\r\n\r\n"
    head = resp(200, "OK", b"", [("transfer-encoding", "chunked"), ("trailer", "X-Checksum")],
                t_ns=c.t, length=False, ctype="text/plain")
    c.send("s", head + chunked, dt=2 * MS, acks="quick")
    c.note(r, status=200, outcome="complete", response_body_len=sum(map(len, parts)))
    c.fin("c", dt=5 * MS)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    caps.append(cap)

    # ---- HEAD
    cap = Capture("head.pcap", "HEAD answered with content-length 4096 and no body, then a GET on the same connection",
                  "2 complete requests; HEAD response_body_len 0")
    c = Conv(cap, 40550, t=T0)
    c.open()
    r = fetch_req("HEAD", f"/files/{SID}/input_00.csv")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    h = resp(200, "OK", b"", t_ns=c.t, ctype="text/csv", length=False)
    h = h.replace(b"server: uvicorn\r\n", b"server: uvicorn\r\ncontent-length: 4096\r\n")
    c.send("s", h, dt=1 * MS, acks=None)
    c.ack("c", dt=40 * MS)
    c.note(r, status=200, outcome="complete", response_body_len=0)
    r = fetch_req("GET", "/health")
    c.send("c", r.bytes, dt=3 * MS, acks=None)
    b = b'{"status":"ok"}'
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=1 * MS, acks=None)
    c.ack("c", dt=40 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    c.fin("c", dt=5 * MS)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    caps.append(cap)

    # ---- close-delimited body
    cap = Capture("close-delimited.pcap", "HTTP/1.0 response without Content-Length; the body ends with the server's FIN",
                  "1 complete request, response_body_len 3000, closed_by server")
    c = Conv(cap, 40600, t=T0)
    c.open()
    r = Req("GET", "/legacy", "Wget/1.21", headers=[("Accept", "*/*")], version="HTTP/1.0")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    body = bytes((i * 11) % 26 + 97 for i in range(3000))
    c.send("s", resp(200, "OK", body, t_ns=c.t, version="HTTP/1.0", length=False, ctype="text/plain"),
           dt=2 * MS, acks="quick")
    c.fin("s", dt=10 * US)
    c.ack("c", dt=40 * US)
    c.fin("c", dt=200 * US)
    c.ack("s", dt=40 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(body))
    caps.append(cap)

    # ---- gzip-encoded response
    cap = Capture("gzip.pcap", "response with Content-Encoding: gzip", "1 complete GET; response_body_len = compressed size, response_body_decoded_len = decoded size")
    c = Conv(cap, 40650, t=T0)
    c.open()
    r = fetch_req("GET", f"/files/{SID}?detail=full")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    plain = files_json(30, True)
    z = gzip_bytes(plain)
    c.send("s", resp(200, "OK", z, [("content-encoding", "gzip")], t_ns=c.t), dt=2 * MS, acks="quick")
    c.note(r, status=200, outcome="complete", response_body_len=len(z), response_body_decoded_len=len(plain))
    c.fin("c", dt=5 * MS)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    caps.append(cap)

    # ---- HTTP on port 22
    cap = Capture("http-on-port-22.pcap", "HTTP spoken to port 22", "protocol http (by content, not port); 1 complete GET")
    c = Conv(cap, 40700, sport=22, t=T0)
    c.open()
    r = Req("GET", "/", "curl/8.5.0", headers=[("Accept", "*/*")], host=f"{SERVER}:22")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    b = b"<html>hello</html>\n"
    c.send("s", resp(200, "OK", b, t_ns=c.t, ctype="text/html"), dt=1 * MS, acks=None)
    c.ack("c", dt=40 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    c.fin("c", dt=2 * MS)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    caps.append(cap)

    # ---- TLS: ClientHello with SNI, server flight, client data unanswered, FIN at 5 s
    cap = Capture("tls-clienthello.pcap",
                  "TLS to :8443: ClientHello (SNI exec.example.test), server flight, client application data unanswered, client FIN after 5.000 s idle",
                  "protocol tls, sni exec.example.test; no HTTP rows; client_idle_timeout (5.0 s)")
    c = Conv(cap, 40800, sport=8443, t=T0)
    c.protocol, c.sni = "tls", "exec.example.test"
    c.open()
    c.send("c", client_hello("exec.example.test"), dt=150 * US, acks=None)
    c.ack("s", dt=30 * US)
    flight = (tls_record(22, pseudo(90, 1)) + tls_record(20, b"\x01") + tls_record(23, pseudo(2100, 2)))
    c.send("s", flight, dt=1500 * US, acks="quick")
    c.send("c", tls_record(20, b"\x01") + tls_record(23, pseudo(53, 3)) + tls_record(23, pseudo(480, 4)),
           dt=400 * US, acks="delayed")
    c.fin("c", at=c.last_payload_ts() + 5 * S)
    c.ack("s", dt=45 * US)
    c.fin("s", dt=900 * US)
    c.ack("c", dt=40 * US)
    cap.finding("client_idle_timeout", c)
    cap.inferred_timeout_s = 5.0
    caps.append(cap)
    return caps


def pseudo(n, seed):
    # deterministic stand-in for ciphertext
    out, x = bytearray(), seed * 2654435761 & 0xFFFFFFFF
    while len(out) < n:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out.append(x >> 16 & 0xFF)
    return bytes(out)


def tls_record(ctype, body, version=0x0303):
    return struct.pack(">BHH", ctype, version, len(body)) + body


def client_hello(sni):
    name = sni.encode()
    ext_sni = struct.pack(">HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    ext_versions = struct.pack(">HHB", 43, 3, 2) + b"\x03\x04"
    ext_groups = struct.pack(">HHH", 10, 4, 2) + b"\x00\x1d"
    ext_sigalgs = struct.pack(">HHH", 13, 4, 2) + b"\x08\x04"
    key = pseudo(32, 9)
    ext_keyshare = struct.pack(">HHHHH", 51, 38, 36, 0x001D, 32) + key
    ext_alpn = struct.pack(">HHHB", 16, 11, 9, 8) + b"http/1.1"
    exts = ext_sni + ext_versions + ext_groups + ext_sigalgs + ext_keyshare + ext_alpn
    body = (b"\x03\x03" + pseudo(32, 7) + b"\x20" + pseudo(32, 8)
            + struct.pack(">H", 4) + b"\x13\x01\x13\x02" + b"\x01\x00"
            + struct.pack(">H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return tls_record(22, hs, version=0x0301)


def build_formats(out):
    caps = []
    t = T0 + 123_456_789  # nanosecond fractions on purpose (the ns file keeps them)
    simple = [
        ("fmt-nanosecond.pcap", "pcap-nanosecond", "ether", {}, "nanosecond pcap (magic a1b23c4d)"),
        ("fmt-bigendian.pcap", "pcap-big-endian", "ether", {}, "big-endian microsecond pcap"),
        ("fmt-gzip-noext.pcap", "pcap-gzip", "ether", {}, "classic pcap, gzip-compressed, name without .gz"),
        ("fmt-ipv6.pcap", "pcap", "ether", {"cip": "fd00::5", "sip": "fd00::9", "v6": True}, "IPv6 over Ethernet"),
        ("fmt-vlan.pcap", "pcap", "vlan", {}, "802.1Q VLAN 100 tagged Ethernet"),
        ("fmt-qinq.pcap", "pcap", "qinq", {}, "QinQ: 802.1ad S-tag 200 + 802.1Q C-tag 100"),
        ("fmt-sll.pcap", "pcap", "sll", {}, "Linux cooked v1 (link type 113), tcpdump -i any"),
        ("fmt-sll2.pcap", "pcap", "sll2", {}, "Linux cooked v2 (link type 276), tcpdump -i any"),
        ("fmt-null.pcap", "pcap", "null", {"cip": "127.0.0.1", "sip": "127.0.0.1"}, "BSD loopback NULL (link type 0), 127.0.0.1 both ends"),
        # tunnels: the inner connection is the row (see tunnel_frame for each header)
        ("tun-vxlan.pcap", "pcap", "tun-vxlan", {}, "VXLAN (UDP 4789, VNI 100), one-way mirror session"),
        ("tun-vxlan-8472.pcap", "pcap", "tun-vxlan-8472", {}, "VXLAN on Linux's old port 8472 (VNI 100)"),
        ("tun-vxlan-vlan.pcap", "pcap", "tun-vxlan-vlan", {}, "802.1Q VLAN 300 inside VXLAN (VNI 100)"),
        ("tun-geneve.pcap", "pcap", "tun-geneve", {}, "Geneve (UDP 6081, VNI 200) with an 8-byte option"),
        ("tun-gre.pcap", "pcap", "tun-gre", {}, "GRE carrying IPv4, no options, both directions"),
        ("tun-gre-key.pcap", "pcap", "tun-gre-key", {}, "GRE with key 100 and sequence numbers"),
        ("tun-gre-teb.pcap", "pcap", "tun-gre-teb", {}, "GRE transparent Ethernet bridging (0x6558), key 101"),
        ("tun-erspan2.pcap", "pcap", "tun-erspan2", {}, "ERSPAN type II (GRE 0x88BE), session 7"),
        ("tun-erspan3.pcap", "pcap", "tun-erspan3", {}, "ERSPAN type III (GRE 0x22EB), session 9"),
        ("tun-ipip.pcap", "pcap", "tun-ipip", {}, "IPv4 in IPv4 (IP protocol 4)"),
        ("tun-6in4.pcap", "pcap", "tun-6in4", {"cip": "fd00::5", "sip": "fd00::9", "v6": True}, "IPv6 in IPv4 (protocol 41, 6in4)"),
        ("tun-4in6.pcap", "pcap", "tun-4in6", {}, "IPv4 in IPv6 (next header 4, 4in6)"),
        ("tun-vxlan-in-gre.pcap", "pcap", "tun-vxlan-in-gre", {}, "VXLAN inside GRE: two tunnels, the outer one named"),
    ]
    for name, fmt, link, kw, what in simple:
        cap = Capture(name, what + ": one GET /health exchange", "1 connection, 1 complete GET, SF, no findings", fmt=fmt, link=link)
        c = small_exchange(cap, 45000, t, **kw)
        if fmt != "pcap-nanosecond":
            us_round(c)
        caps.append(cap)
    # pcapng: interface 0 Ethernet (microseconds), interface 1 raw IPv4 (nanoseconds),
    # EPBs interleaved in time, and one SPB (interface 0, no timestamp) holding an ARP.
    cap = Capture("fmt-pcapng-2if.pcapng",
                  "pcapng, IDB 0 Ethernet (us), IDB 1 raw IPv4 (if_tsresol 9); two GET exchanges with interleaved EPBs and one SPB (ARP)",
                  "2 connections, 2 complete GETs; the SPB frame is not TCP", fmt="pcapng",
                  ifaces=[(LT_ETHER, 6, "eth0", "ether"), (LT_RAW, 9, "tun0", "raw")])
    a = small_exchange(cap, 45100, t)
    us_round(a)
    small_exchange(cap, 45102, t + 150_001, iface=1)
    spb_after = sorted(s.ts for s in cap.segs)[3]
    cap.extra.append((spb_after, 10**9, ("spb", 0, None, arp_request())))
    caps.append(cap)
    return caps


def build_failures(out):
    """Connections that never got going: a refused port, SYNs nobody answers."""
    caps = []
    cap = Capture("refused.pcap",
                  "GET /health on port 8000 answered; two connection attempts to port 8001, one second apart, "
                  "each SYN answered by RST (nothing listens there)",
                  "refused on conns 1 and 2; conn 0 healthy")
    small_exchange(cap, 35100, T0 + 879 * MS)
    for k in range(2):
        c = Conv(cap, 35102 + 2 * k, sport=8001, t=T0 + 2 * S + k * S)
        c.seg("c", "S", opts=(("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)))
        c.seg("s", "RA", dt=61 * US, seq=0)
        c.protocol = "unknown"
        cap.finding("refused", c)
    us_round(c)     # a microsecond pcap
    caps.append(cap)

    cap = Capture("syn-unanswered.pcap",
                  "a SYN to port 8002 retransmitted after 1, 3 and 7 s with no answer, while GET /health to port "
                  "8000 of the same server is answered",
                  "syn_unanswered on conn 1; conn 0 healthy")
    c = Conv(cap, 35200, sport=8002, t=T0 + 879 * MS)
    syn = c.seg("c", "S", opts=(("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)))
    for at in (1, 3, 7):    # Linux: the SYN's RTO doubles from 1 s
        c.seg("c", "S", at=syn.ts + at * S, seq=syn.seq, opts=syn.opts)
    c.protocol = "unknown"
    cap.finding("syn_unanswered", c)
    small_exchange(cap, 35202, T0 + 2 * S)
    us_round(c)
    caps.append(cap)

    cap = Capture("stale-reuse.pcap",
                  "keep-alive race: the server closes an idle connection after its 2 s keep-alive timeout; the "
                  "client, not yet aware, sends its next request 300 us later and the server answers RST",
                  "stale_reuse (request 2) and server_idle_close on conn 0")
    c = Conv(cap, 35300, t=T0 + 879 * MS)
    c.open()
    r1 = fetch_req("GET", "/health")
    c.send("c", r1.bytes, dt=140 * US, acks=None)
    b = b'{"status":"ok"}'
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=1 * MS, acks="quick")
    c.note(r1, status=200, outcome="complete", response_body_len=len(b))
    c.fin("s", dt=2 * S)                     # the server's keep-alive timer
    r2 = fetch_req("GET", "/health")
    c.send("c", r2.bytes, dt=300 * US, acks=None)   # the pool hands out the socket it still thinks open
    c.rst("s", dt=40 * US, ack=False)
    c.note(r2, status=None, outcome="no_response", ended_by="server_rst")
    cap.finding("server_idle_close", c)
    cap.finding("stale_reuse", c, 2)
    us_round(c)
    caps.append(cap)

    cap = Capture("crossing-fin.pcap",
                  "the keep-alive race seen beside the client (50 ms from the server): the request leaves, the "
                  "server's FIN arrives 45 ms later without acknowledging it (the two crossed), then the server's "
                  "RST; next to it two real aborts: a FIN that acknowledges the request, and a FIN in the middle "
                  "of an upload whose first segment was acknowledged; the race again with a request of three "
                  "segments, with two pipelined requests, and on a connection opened before the capture began",
                  "stale_reuse (request 2) and server_idle_close (2 s) on conns 0 and 3; server_abort on conns 1 "
                  "and 2; stale_reuse (requests 2 and 3, one finding) and server_idle_close on conn 4; stale_reuse on conn 5, "
                  "a pooled connection opened before the capture")
    keepalive_race(cap, 35310, T0, [fetch_req("GET", "/health")])
    b = b'{"status":"ok"}'

    c = Conv(cap, 35311, t=T0 + 3 * S)
    c.open(rtt=100 * MS)
    r1 = fetch_req("GET", "/health")
    c.send("c", r1.bytes, dt=140 * US, acks=None)
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=100 * MS, acks="quick")
    c.note(r1, status=200, outcome="complete", response_body_len=len(b))
    r2 = fetch_req("GET", "/health")
    c.send("c", r2.bytes, dt=1955 * MS, acks=None)
    c.fin("s", dt=145 * MS)                  # acknowledges the request: the server had it
    c.fin("c", dt=1 * MS)
    c.ack("s", dt=50 * MS)
    c.note(r2, status=None, outcome="no_response", ended_by="server_fin")
    cap.finding("server_abort", c, 2)
    us_round(c)

    c = Conv(cap, 35312, t=T0 + 6 * S)
    c.open(rtt=100 * MS)
    body = pseudo(3 * MSS, 7)
    r1 = fetch_req("POST", "/upload", body)
    start = c.nxt["c"]
    segs = c.send("c", r1.bytes, dt=140 * US, acks=None)
    c.fin("s", dt=100 * MS, ack=start + len(segs[0].payload))   # the server had the first segment
    c.fin("c", dt=1 * MS)
    c.rst("s", dt=50 * MS, ack=False)
    c.note(r1, status=None, outcome="no_response", ended_by="server_fin")
    cap.finding("server_abort", c, 1)
    us_round(c)

    # the race with a request of three segments: the FIN acknowledges none of them
    keepalive_race(cap, 35313, T0 + 9 * S, [fetch_req("POST", "/upload", pseudo(2 * MSS + 100, 11))])
    # two pipelined requests, neither acknowledged by the FIN: the server had neither
    keepalive_race(cap, 35314, T0 + 12 * S, [fetch_req("GET", "/health"), fetch_req("GET", f"/files/{SID}")],
                   gap=200 * US)
    # the race on a pooled connection opened before the capture began: the request is the
    # first packet of it the capture holds (so its sequence space starts one below it)
    keepalive_race(cap, 35315, T0 + 15 * S, [fetch_req("GET", "/health")], opened_before=True)
    caps.append(cap)
    return caps


def keepalive_race(cap, cport, t, requests, gap=0, opened_before=False):
    """A pooled connection: one answered GET, then ``requests`` sent 1.955 s later (each
    ``gap`` after the one before) while the server's 2 s keep-alive close crosses them: its
    FIN, 45 ms after the first, acknowledges none of them; the client closes, the server's
    kernel resets. With ``opened_before`` the capture starts after the answered GET."""
    c = Conv(cap, cport, t=t)
    c.open(rtt=100 * MS)
    r1 = fetch_req("GET", "/health")
    c.send("c", r1.bytes, dt=140 * US, acks=None)
    b = b'{"status":"ok"}'
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=100 * MS, acks="quick")
    if opened_before:
        before_capture(c)
    else:
        c.note(r1, status=200, outcome="complete", response_body_len=len(b))
    before = c.nxt["c"]
    for k, r in enumerate(requests):
        c.send("c", r.bytes, dt=1955 * MS if k == 0 else gap, acks=None)
    c.fin("s", dt=45 * MS, ack=before)       # sent before the requests reached the server
    c.fin("c", dt=1 * MS)
    c.rst("s", dt=54 * MS, ack=False)        # the requests arrive at a closed socket
    for r in requests:
        c.note(r, status=None, outcome="no_response", ended_by="server_fin")
    if not opened_before:
        cap.finding("server_idle_close", c)
    # one finding per connection, at its first such request
    cap.finding("stale_reuse", c, 1 if opened_before else 2)
    us_round(c)
    return c


def build_stalls(out):
    """Connections that stop without closing: a receiver that stops reading, a peer that
    vanishes under keep-alive probes; and their look-alikes."""
    cap = Capture("stalls.pcap",
                  "a POST upload stalls 2.5 s on the server's zero window (3 window probes) and resumes; a 0.3 s "
                  "zero window (no finding); a GET answered, then the client's 3 keep-alive probes go unanswered "
                  "and its kernel resets; a GET answered, keep-alive probes answered, the client closes idle",
                  "zero_window_stall (warning) on conn 0, dead_peer on conn 2, client_idle_close on conn 3")
    # conn 0: the server's window closes mid-upload and reopens 2.5 s later
    c = Conv(cap, 36100, t=T0 + 879 * MS)
    c.open()
    body = pseudo(8 * MSS, 7)
    r = fetch_req("POST", "/upload", body, extra=[("Content-Type", "application/octet-stream")])
    head, rest = r.bytes[:-4 * MSS], r.bytes[-4 * MSS:]
    c.send("c", head, dt=140 * US, acks=None)
    c.seg("s", "A", dt=40 * US, win=0)                  # buffer full: window 0
    t0 = c.t
    for at in (200, 600, 1400):                          # Linux probes: empty at snd.nxt - 1
        c.seg("c", "A", at=t0 + at * MS, seq=c.nxt["c"] - 1, tag="keepalive")
        c.seg("s", "A", dt=60 * US, win=0)
    c.seg("s", "A", at=t0 + 2500 * MS)                    # the application read: window update
    c.send("c", rest, dt=80 * US, acks="quick")
    b = b'{"stored":true}'
    c.send("s", resp(201, "Created", b, t_ns=c.t), dt=3 * MS, acks=None)
    c.ack("c", dt=40 * US)
    c.fin("c", dt=200 * US)
    c.fin("s", dt=60 * US)
    c.ack("c", dt=40 * US)
    c.note(r, status=201, outcome="complete", response_body_len=len(b))
    cap.finding("zero_window_stall", c, 1)
    # conn 1: a 0.3 s zero window is a busy receiver, not a stall worth a finding
    c = Conv(cap, 36102, t=T0 + 5 * S)
    c.open()
    r = fetch_req("POST", "/upload", body[:4 * MSS], extra=[("Content-Type", "application/octet-stream")])
    c.send("c", r.bytes[:-MSS], dt=140 * US, acks=None)
    c.seg("s", "A", dt=40 * US, win=0)
    c.seg("s", "A", dt=300 * MS)
    c.send("c", r.bytes[-MSS:], dt=80 * US, acks=None)
    b = b'{"stored":true}'
    c.send("s", resp(201, "Created", b, t_ns=c.t), dt=3 * MS, acks=None)
    c.ack("c", dt=40 * US)
    c.fin("c", dt=200 * US)
    c.fin("s", dt=60 * US)
    c.ack("c", dt=40 * US)
    c.note(r, status=201, outcome="complete", response_body_len=len(b))
    # conn 2: keep-alive probes (TCP_KEEPIDLE 2 s, TCP_KEEPINTVL 1 s, TCP_KEEPCNT 3) never answered
    c = Conv(cap, 36104, t=T0 + 7 * S)
    c.open()
    r = fetch_req("GET", "/health")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    b = b'{"status":"ok"}'
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=1 * MS, acks=None)
    c.ack("c", dt=40 * US)
    t0 = c.t
    for k in range(3):
        c.seg("c", "A", at=t0 + (2000 + 1000 * k) * MS, seq=c.nxt["c"] - 1, tag="keepalive")
    c.rst("c", at=t0 + 5000 * MS)                       # the kernel gives up (ETIMEDOUT)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    cap.finding("dead_peer", c)
    # conn 3: the same probes answered; the client's pool later closes the idle socket
    c = Conv(cap, 36106, t=T0 + 13 * S)
    c.open()
    r = fetch_req("GET", "/health")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    c.send("s", resp(200, "OK", b, t_ns=c.t), dt=1 * MS, acks=None)
    c.ack("c", dt=40 * US)
    t0 = c.t
    for k in range(2):
        c.seg("c", "A", at=t0 + (2000 + 1000 * k) * MS, seq=c.nxt["c"] - 1, tag="keepalive")
        c.ack("s", dt=90 * US)
    c.fin("c", at=t0 + 4000 * MS)
    c.fin("s", dt=300 * US)
    c.ack("c", dt=40 * US)
    c.note(r, status=200, outcome="complete", response_body_len=len(b))
    cap.finding("client_idle_close", c)
    return [cap]


def before_capture(c):
    """Everything ``c`` sent so far happened before the capture began: the capture starts
    in the middle of the connection (no SYN; bytes count from the first captured one)."""
    for s in c.cap.segs:
        if s.conv is c:
            s.captured = False
            s.tag = "precapture"
    c.data_sent = {"c": 0, "s": 0}
    c.roles_from = "heuristic"
    c.history_sure = False


def one_direction(c, side):
    """Only the other side's packets reach the capture point (a SPAN port or mirror that
    sees one direction): every segment ``side`` sent is lost before it."""
    for s in c.cap.segs:
        if s.conv is c and s.side == side:
            s.captured = False


def build_one_sided(out):
    """Captures that see one direction only. Zeek's rules for an endpoint never seen sending
    (analyzer/protocol/tcp: while an endpoint is inactive every ACK of the peer re-bases its
    sequence space, and a content gap is reported only while both endpoints are established):
    it has no bytes, and nobody has missed bytes, however far the seen side's ACKs go."""
    caps = []
    b = json.dumps({"items": list(range(40))}).encode()
    cap = Capture("one-sided-client.pcap",
                  "only the client's direction is captured: its SYN, a GET, its ACKs of a 3-segment answer "
                  "the capture never shows, its FIN and last ACK; then a GET the server gives up on after 30 s, "
                  "its FIN seen only through the client's ACK",
                  "1 connection, state SH, history SADF, server_bytes 0 and missed_bytes 0 (Zeek's values); "
                  "the request has no response in the capture; conn 1: server_abort, the server's FIN known "
                  "only from the client's ACK of it")
    c = Conv(cap, 36200, t=T0)
    c.open()
    r = fetch_req("GET", "/items")
    c.send("c", r.bytes, dt=140 * US, acks=None)
    c.send("s", resp(200, "OK", b * 60, t_ns=c.t), dt=2 * MS, acks="quick")
    c.fin("c", dt=30 * MS)
    c.fin("s", dt=200 * US)
    c.ack("c", dt=40 * US)
    one_direction(c, "s")
    c.note(r, status=None, outcome="no_response", ended_by="client_fin")
    # the server gives up on a request 30 s on and closes; its FIN is not captured, the
    # client's ACK of it is (then the client's own FIN)
    c = Conv(cap, 36204, t=T0 + 1 * S)
    c.open()
    r = fetch_req("GET", "/slow")
    c.send("c", r.bytes, dt=140 * US, acks="quick")
    c.fin("s", dt=30 * S)
    c.ack("c", dt=40 * US)
    c.fin("c", dt=1 * MS)
    c.ack("s", dt=40 * US)
    one_direction(c, "s")
    c.note(r, status=None, outcome="no_response", ended_by="server_fin")
    cap.finding("server_abort", c, 1)
    caps.append(cap)

    cap = Capture("one-sided-server.pcap",
                  "only the server's direction is captured: its SYN-ACK, its ACK of a request the capture never "
                  "shows, a 3-segment answer, its FIN and last ACK",
                  "1 connection, state SHR, history ^hadf, client_bytes 0 and missed_bytes 0 (Zeek's values); "
                  "the response is a row without a request")
    c = Conv(cap, 36202, t=T0)
    c.open()
    r = fetch_req("POST", "/items", pseudo(2 * MSS, 5))
    c.send("c", r.bytes, dt=140 * US, acks="quick")
    c.send("s", resp(201, "Created", b * 60, t_ns=c.t), dt=2 * MS, acks="quick")
    c.fin("s", dt=30 * MS)
    c.fin("c", dt=200 * US)
    c.ack("s", dt=40 * US)
    one_direction(c, "c")
    c.note(None, status=201, outcome="no_request", response_body_len=len(b * 60))
    caps.append(cap)
    return caps


def build_all(out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    caps = (build_incident(out_dir) + build_mixed(out_dir) + build_edges(out_dir) + build_formats(out_dir)
            + build_failures(out_dir) + build_stalls(out_dir) + build_one_sided(out_dir))
    names = []
    for cap in caps:
        write_capture(cap, out_dir)
        names += [cap.name, cap.name + ".truth.json"]
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args(argv)
    for n in build_all(args.out):
        print(n)


if __name__ == "__main__":
    sys.exit(main())
