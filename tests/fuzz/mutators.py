"""Hostile-input toolkit: a mutation engine over real captures, a small fast capture writer,
and builders for adversarial captures.

Used by ``tests/test_fuzz.py`` (bounded run in the normal suite), ``tests/test_adversarial.py``
and ``bench/fuzz.py`` (the long run). Every mutant is a pure function of ``(seed, index)``:
``mutant(corpus, seed, index)`` rebuilds the same bytes on any machine, so a failure is
reproduced from two integers (or from the file the runner writes).

Mutations (``MUTATORS``): truncation (random cut, cut inside a file/record/IP/TCP header),
bit flips, byte runs (overwrite/insert/delete), length fields (pcap caplen/origlen, pcapng
block length and captured length, IPv4 total length / IHL, IPv6 payload length, TCP data
offset) set to 0 / max / 0x80000000 / off-by-one, random link types in the file header or an
IDB, timestamps (backwards, extremes), pcapng ``if_tsresol``/``if_tsoffset`` extremes,
reordered and duplicated records, concatenated files, pcapng blocks whose leading/trailing
lengths disagree, TCP flag/sequence scrambles, hostile HTTP tokens spliced into payloads,
and gzip wrapping (intact, cut or with a bad trailer).

The checks: :func:`analyse_core` (the parsing core, ~1 ms an input), :func:`analyse` (the
whole pipeline) and :func:`check` (core always, full on request, the two compared). This module
never imports sockscope outside them, so the writers are usable from a process that has not
paid for pandas yet.
"""

from __future__ import annotations

import functools
import glob
import gzip
import io
import os
import random
import struct
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

REPO = Path(__file__).resolve().parents[2]
ZEEK_DIR = Path(os.environ.get("SOCKSCOPE_ZEEK_CONFORMANCE", "/work/shared/conformance/zeek"))

# ------------------------------------------------------------------------------------------
# writer: pcap / pcapng framing and Ethernet/IPv4/IPv6/TCP packets (no checksums: the
# reader never verifies them)
# ------------------------------------------------------------------------------------------

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D

KNOWN_LINKTYPES = (0, 1, 12, 14, 101, 108, 113, 228, 229, 239, 276)

_ETH_IP4 = bytes.fromhex("020000000002" "020000000001" "0800")
_ETH_IP6 = bytes.fromhex("020000000002" "020000000001" "86dd")


def pcap_header(linktype: int = 1, snaplen: int = 262144, *, nanos: bool = False, big_endian: bool = False) -> bytes:
    e = ">" if big_endian else "<"
    return struct.pack(e + "IHHiIII", PCAP_MAGIC_NS if nanos else PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(sec: int, frac: int, data: bytes, *, caplen: int | None = None, origlen: int | None = None,
                big_endian: bool = False) -> bytes:
    e = ">" if big_endian else "<"
    return struct.pack(e + "IIII", sec & 0xFFFFFFFF, frac & 0xFFFFFFFF,
                       len(data) if caplen is None else caplen,
                       len(data) if origlen is None else origlen) + data


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def pcapng_block(btype: int, body: bytes, *, be: bool = False, length: int | None = None,
                 trailing: int | None = None) -> bytes:
    e = ">" if be else "<"
    body = _pad4(body)
    n = 12 + len(body)
    return struct.pack(e + "II", btype, n if length is None else length) + body + \
        struct.pack(e + "I", n if trailing is None else trailing)


def pcapng_option(code: int, value: bytes, be: bool = False) -> bytes:
    return struct.pack((">" if be else "<") + "HH", code, len(value)) + _pad4(value)


def pcapng_shb(be: bool = False) -> bytes:
    e = ">" if be else "<"
    return pcapng_block(PCAPNG_SHB, struct.pack(e + "IHHq", PCAPNG_BOM, 1, 0, -1), be=be)


def pcapng_idb(linktype: int = 1, snaplen: int = 262144, *, tsresol: int | None = None,
               tsoffset: int | None = None, be: bool = False) -> bytes:
    e = ">" if be else "<"
    body = struct.pack(e + "HHI", linktype, 0, snaplen)
    opts = b""
    if tsresol is not None:
        opts += pcapng_option(9, bytes([tsresol & 0xFF]), be)
    if tsoffset is not None:
        opts += pcapng_option(14, struct.pack(e + "q", tsoffset), be)
    if opts:
        opts += pcapng_option(0, b"", be)
    return pcapng_block(1, body + opts, be=be)


def pcapng_epb(iface: int, ts: int, data: bytes, *, caplen: int | None = None, be: bool = False) -> bytes:
    e = ">" if be else "<"
    body = struct.pack(e + "IIIII", iface, (ts >> 32) & 0xFFFFFFFF, ts & 0xFFFFFFFF,
                       len(data) if caplen is None else caplen, len(data)) + data
    return pcapng_block(6, body, be=be)


def pcapng_spb(data: bytes, be: bool = False) -> bytes:
    return pcapng_block(3, struct.pack((">" if be else "<") + "I", len(data)) + data, be=be)


def ipv4(src: bytes, dst: bytes, payload: bytes, *, proto: int = 6, total_length: int | None = None,
         ihl: int = 5, frag: int = 0x4000, ident: int = 0) -> bytes:
    opts = b"\0" * max(0, ihl * 4 - 20)
    tl = 20 + len(opts) + len(payload) if total_length is None else total_length
    return struct.pack("!BBHHHBBH4s4s", 0x40 | (ihl & 15), 0, tl & 0xFFFF, ident, frag, 64, proto, 0,
                       src, dst) + opts + payload


def ipv6(src: bytes, dst: bytes, payload: bytes, *, nh: int = 6, plen: int | None = None) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload) if plen is None else plen, nh, 64,
                       src, dst) + payload


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"", *,
        win: int = 65535, doff: int = 5, options: bytes = b"") -> bytes:
    options = _pad4(options)
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                       (doff & 15) << 4 | (flags >> 8 & 1), flags & 0xFF, win, 0, 0) + options + payload


def ip4(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


class PcapWriter:
    """Classic microsecond pcap, Ethernet/IPv4/TCP, written fast (one struct.pack per layer)."""

    _rec = struct.Struct("<IIII")
    _ip = struct.Struct("!BBHHHBBH4s4s")
    _tcp = struct.Struct("!HHIIBBHHH")

    def __init__(self, fh: BinaryIO, linktype: int = 1):
        self.fh = fh
        self.linktype = linktype
        self.frames = 0
        fh.write(pcap_header(linktype))

    def record(self, ts_us: int, data: bytes, caplen: int | None = None, origlen: int | None = None) -> None:
        self.fh.write(self._rec.pack((ts_us // 1_000_000) & 0xFFFFFFFF, ts_us % 1_000_000,
                                     len(data) if caplen is None else caplen,
                                     len(data) if origlen is None else origlen))
        self.fh.write(data)
        self.frames += 1

    def tcp4(self, ts_us: int, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
             flags: int, payload: bytes = b"") -> None:
        n = 40 + len(payload)
        frame = b"".join((_ETH_IP4, self._ip.pack(0x45, 0, n, 0, 0x4000, 64, 6, 0, src, dst),
                          self._tcp.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                                         0x50 | (flags >> 8 & 1), flags & 0xFF, 65535, 0, 0), payload))
        self.record(ts_us, frame)


class Flow:
    """One TCP connection written through a PcapWriter, tracking sequence numbers."""

    def __init__(self, w: PcapWriter, client: str = "10.0.0.5", server: str = "10.0.0.9",
                 cport: int = 40000, sport: int = 80, cisn: int = 1000, sisn: int = 5000):
        self.w = w
        self.c, self.s = ip4(client), ip4(server)
        self.cp, self.sp = cport, sport
        self.cseq, self.sseq = cisn, sisn

    def handshake(self, ts_us: int) -> None:
        self.w.tcp4(ts_us, self.c, self.s, self.cp, self.sp, self.cseq, 0, SYN)
        self.w.tcp4(ts_us + 100, self.s, self.c, self.sp, self.cp, self.sseq, self.cseq + 1, SYN | ACK)
        self.cseq += 1
        self.sseq += 1
        self.w.tcp4(ts_us + 200, self.c, self.s, self.cp, self.sp, self.cseq, self.sseq, ACK)

    def client(self, ts_us: int, data: bytes, mss: int = 1460) -> None:
        for i in range(0, len(data), mss):
            seg = data[i:i + mss]
            self.w.tcp4(ts_us, self.c, self.s, self.cp, self.sp, self.cseq, self.sseq, PSH | ACK, seg)
            self.cseq += len(seg)

    def server(self, ts_us: int, data: bytes, mss: int = 1460) -> None:
        for i in range(0, len(data), mss):
            seg = data[i:i + mss]
            self.w.tcp4(ts_us, self.s, self.c, self.sp, self.cp, self.sseq, self.cseq, PSH | ACK, seg)
            self.sseq += len(seg)

    def client_fin(self, ts_us: int) -> None:
        self.w.tcp4(ts_us, self.c, self.s, self.cp, self.sp, self.cseq, self.sseq, FIN | ACK)
        self.cseq += 1

    def server_fin(self, ts_us: int) -> None:
        self.w.tcp4(ts_us, self.s, self.c, self.sp, self.cp, self.sseq, self.cseq, FIN | ACK)
        self.sseq += 1

    def server_rst(self, ts_us: int) -> None:
        self.w.tcp4(ts_us, self.s, self.c, self.sp, self.cp, self.sseq, self.cseq, RST | ACK)


# ------------------------------------------------------------------------------------------
# layout: where the records, headers and length fields of a capture are
# ------------------------------------------------------------------------------------------

@dataclass
class Record:
    off: int            # start of the record / block
    size: int           # whole record / block length in the file
    data_off: int       # packet bytes start (-1 for a non-packet pcapng block)
    data_len: int
    linktype: int
    btype: int = -1     # pcapng block type


@dataclass
class Layout:
    kind: str                   # "pcap" | "pcapng" | "other"
    be: bool = False
    header_len: int = 0
    records: list[Record] = field(default_factory=list)

    def packets(self) -> list[Record]:
        return [r for r in self.records if r.data_off >= 0]


def parse_layout(data: bytes) -> Layout:
    if len(data) < 4:
        return Layout("other")
    magic = struct.unpack_from("<I", data)[0]
    if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS, 0xA1B2CD34) or \
            struct.unpack_from(">I", data)[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS, 0xA1B2CD34):
        be = magic not in (PCAP_MAGIC_US, PCAP_MAGIC_NS, 0xA1B2CD34)
        e = ">" if be else "<"
        if len(data) < 24:
            return Layout("pcap", be, len(data))
        lt = struct.unpack_from(e + "I", data, 20)[0] & 0xFFFF
        extra = 8 if struct.unpack_from(e + "I", data)[0] == 0xA1B2CD34 else 0
        lay = Layout("pcap", be, 24)
        off = 24
        while off + 16 + extra <= len(data):
            caplen = struct.unpack_from(e + "I", data, off + 8)[0]
            size = 16 + extra + caplen
            if off + size > len(data):
                break
            lay.records.append(Record(off, size, off + 16 + extra, caplen, lt))
            off += size
        return lay
    if magic == PCAPNG_SHB and len(data) >= 12:
        be = struct.unpack_from(">I", data, 8)[0] == PCAPNG_BOM
        e = ">" if be else "<"
        lay = Layout("pcapng", be, 0)
        ifaces: list[int] = []
        off = 0
        while off + 12 <= len(data):
            btype, blen = struct.unpack_from(e + "II", data, off)
            if btype == PCAPNG_SHB:
                ifaces = []
            if blen < 12 or blen % 4 or off + blen > len(data):
                break
            rec = Record(off, blen, -1, 0, -1, btype)
            if btype == 1 and blen >= 20:
                ifaces.append(struct.unpack_from(e + "H", data, off + 8)[0])
            elif btype == 6 and blen >= 32:
                iface, caplen = struct.unpack_from(e + "I", data, off + 8)[0], struct.unpack_from(e + "I", data, off + 20)[0]
                rec.data_off, rec.data_len = off + 28, min(caplen, blen - 32)
                rec.linktype = ifaces[iface] if iface < len(ifaces) else -1
            elif btype == 3 and blen >= 16:
                rec.data_off, rec.data_len = off + 12, min(struct.unpack_from(e + "I", data, off + 8)[0], blen - 16)
                rec.linktype = ifaces[0] if ifaces else -1
            lay.records.append(rec)
            off += blen
        return lay
    return Layout("other")


def ip_offset(data: bytes, off: int, n: int, linktype: int) -> int | None:
    """Offset (absolute) of the IP header inside the packet at data[off:off+n], or None."""
    end = off + n
    if linktype in (101, 12, 14, 228, 229):
        return off if n >= 1 else None
    if linktype in (0, 108):
        return off + 4 if n > 4 else None
    if linktype == 239:
        o = off + 4
        while o + 4 <= end:
            tlen, ttype = struct.unpack_from("<HH", data, o)
            if tlen < 4:
                return None
            if ttype == 9:
                return o + 4
            o += (tlen + 3) & ~3
        return None
    if linktype == 1:
        o, et_at = off + 14, off + 12
    elif linktype == 113:
        o, et_at = off + 16, off + 14
    elif linktype == 276:
        o, et_at = off + 20, off
    else:
        return None
    if o > end:
        return None
    et = struct.unpack_from("!H", data, et_at)[0]
    while et in (0x8100, 0x88A8, 0x9100) and o + 4 <= end:
        et = struct.unpack_from("!H", data, o + 2)[0]
        o += 4
    if et == 0x8864 and o + 8 <= end:
        o += 8
        et = 0x0800
    return o if et in (0x0800, 0x86DD) and o < end else None


def tcp_offset(data: bytes, ip: int, end: int) -> int | None:
    if ip >= end:
        return None
    ver = data[ip] >> 4
    if ver == 4 and ip + 20 <= end and data[ip + 9] == 6:
        return ip + (data[ip] & 15) * 4
    if ver == 6 and ip + 40 <= end and data[ip + 6] == 6:
        return ip + 40
    return None


# ------------------------------------------------------------------------------------------
# mutators: f(rng, data, layout, corpus) -> bytes
# ------------------------------------------------------------------------------------------

def _put(data: bytes, off: int, fmt: str, value: int) -> bytes:
    size = struct.calcsize(fmt)
    if off < 0 or off + size > len(data):
        return data
    b = bytearray(data)
    struct.pack_into(fmt, b, off, value & ((1 << (8 * size)) - 1))
    return bytes(b)


def _pick_record(rng: random.Random, lay: Layout, packets: bool = True) -> Record | None:
    recs = lay.packets() if packets else lay.records
    return rng.choice(recs) if recs else None


def _value(rng: random.Random, bits: int, current: int | None = None) -> int:
    top = (1 << bits) - 1
    choices = [0, top, 1 << (bits - 1), (1 << (bits - 1)) - 1, rng.randrange(top + 1)]
    if bits == 32:
        choices += [0x80000000, 0xFFFFFFF0, 64 * 1024 * 1024, 64 * 1024 * 1024 + 1]
    if current is not None:
        choices += [max(0, current - 1), min(top, current + 1), min(top, current * 2), current // 2]
    return rng.choice(choices)


def m_truncate(rng, data, lay, corpus):
    return data[:rng.randrange(len(data))] if data else data


def m_truncate_header(rng, data, lay, corpus):
    """Cut inside a header: the file header, a record/block header, an IP or TCP header."""
    cuts: list[tuple[int, int]] = [(0, min(len(data), 24))]
    rec = _pick_record(rng, lay, packets=False)
    if rec is not None:
        cuts.append((rec.off, rec.off + (16 if lay.kind == "pcap" else 28)))
        if rec.data_off >= 0:
            ip = ip_offset(data, rec.data_off, rec.data_len, rec.linktype)
            if ip is not None:
                cuts.append((ip, ip + 40))
                t = tcp_offset(data, ip, rec.data_off + rec.data_len)
                if t is not None:
                    cuts.append((t, t + 20))
    a, b = rng.choice(cuts)
    b = min(b, len(data))
    return data[:rng.randrange(a, b)] if b > a else data[:a]


def m_bitflip(rng, data, lay, corpus):
    if not data:
        return data
    b = bytearray(data)
    k = rng.choice((1, 1, 2, 3, 8, 32))
    rec = _pick_record(rng, lay, packets=False)
    for _ in range(k):
        if rec is not None and rng.random() < 0.7:
            # headers and the first bytes of a record are where the parser decides things
            pos = rec.off + rng.randrange(min(rec.size, 96))
        else:
            pos = rng.randrange(len(b))
        if pos < len(b):
            b[pos] ^= 1 << rng.randrange(8)
    return bytes(b)


def m_byte_run(rng, data, lay, corpus):
    n = rng.choice((1, 2, 4, 16, 64, 512, 4096))
    val = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x41, rng.randrange(256)))
    run = bytes([val]) * n if rng.random() < 0.7 else rng.randbytes(n)
    pos = rng.randrange(len(data) + 1)
    op = rng.randrange(3)
    if op == 0:
        return data[:pos] + run + data[pos + n:]
    if op == 1:
        return data[:pos] + run + data[pos:]
    return data[:pos] + data[pos + n:]


def m_length_field(rng, data, lay, corpus):
    """A length field set to 0 / max / 0x80000000 / off by one."""
    e = ">" if lay.be else "<"
    rec = _pick_record(rng, lay, packets=False)
    if rec is None:
        return data
    opts: list[Callable[[], bytes]] = []
    if lay.kind == "pcap":
        cur = struct.unpack_from(e + "I", data, rec.off + 8)[0]
        opts.append(lambda: _put(data, rec.off + 8, e + "I", _value(rng, 32, cur)))        # caplen
        opts.append(lambda: _put(data, rec.off + 12, e + "I", _value(rng, 32, cur)))       # origlen
        opts.append(lambda: _put(data, 16, e + "I", _value(rng, 32)))                      # snaplen
    elif lay.kind == "pcapng":
        at = rng.choice((rec.off + 4, rec.off + rec.size - 4))
        opts.append(lambda: _put(data, at, e + "I", _value(rng, 32, rec.size)))            # block length
        if rec.btype == 6:
            opts.append(lambda: _put(data, rec.off + 20, e + "I", _value(rng, 32, rec.data_len)))
            opts.append(lambda: _put(data, rec.off + 24, e + "I", _value(rng, 32, rec.data_len)))
        if rec.btype == 3:
            opts.append(lambda: _put(data, rec.off + 8, e + "I", _value(rng, 32, rec.data_len)))
    if rec.data_off >= 0:
        ip = ip_offset(data, rec.data_off, rec.data_len, rec.linktype)
        if ip is not None and ip < len(data):
            if data[ip] >> 4 == 4:
                opts.append(lambda: _put(data, ip + 2, "!H", _value(rng, 16)))             # total length
                opts.append(lambda: _put(data, ip, "!B", 0x40 | rng.choice((0, 1, 4, 5, 6, 15))))   # IHL
            else:
                opts.append(lambda: _put(data, ip + 4, "!H", _value(rng, 16)))             # payload length
            t = tcp_offset(data, ip, rec.data_off + rec.data_len)
            if t is not None and t + 13 <= len(data):
                opts.append(lambda: _put(data, t + 12, "!B",
                                         (rng.choice((0, 1, 4, 8, 15)) << 4) | (data[t + 12] & 15)))
    return rng.choice(opts)()


def m_linktype(rng, data, lay, corpus):
    e = ">" if lay.be else "<"
    lt = rng.choice(KNOWN_LINKTYPES + (rng.randrange(1 << 16), 0xFFFF, 2, 147, 192))
    if lay.kind == "pcap":
        if rng.random() < 0.2:
            return _put(data, 20, e + "I", rng.choice((0xFFFFFFFF, 0x10000 | lt, 0x80000000)))
        return _put(data, 20, e + "I", lt)
    idbs = [r for r in lay.records if r.btype == 1]
    if not idbs:
        return data
    return _put(data, rng.choice(idbs).off + 8, e + "H", lt)


def m_timestamp(rng, data, lay, corpus):
    e = ">" if lay.be else "<"
    recs = lay.packets()
    if not recs:
        return data
    b = data
    for _ in range(rng.choice((1, 1, 3, 20))):
        rec = rng.choice(recs)
        if lay.kind == "pcap":
            sec = struct.unpack_from(e + "I", b, rec.off)[0]
            v = rng.choice((0, 0xFFFFFFFF, 0x7FFFFFFF, max(0, sec - rng.choice((1, 3600, 10**6))), sec + 86400))
            b = _put(b, rec.off, e + "I", v)
            if rng.random() < 0.3:
                b = _put(b, rec.off + 4, e + "I", rng.choice((999_999, 1_000_000, 0xFFFFFFFF)))
        elif rec.btype == 6:
            b = _put(b, rec.off + 12, e + "I", rng.choice((0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1)))
            b = _put(b, rec.off + 16, e + "I", rng.choice((0, 0xFFFFFFFF, rng.randrange(1 << 32))))
    return b


def m_idb_options(rng, data, lay, corpus):
    """Replace an IDB with one carrying extreme if_tsresol / if_tsoffset options."""
    idbs = [r for r in lay.records if r.btype == 1]
    if lay.kind != "pcapng" or not idbs:
        return data
    rec = rng.choice(idbs)
    lt = struct.unpack_from((">" if lay.be else "<") + "H", data, rec.off + 8)[0]
    res = rng.choice((0, 6, 9, 10, 18, 19, 30, 31, 62, 63, 0x7F, 0x80, 0x80 | 31, 0x80 | 63, 0xFF))
    off = rng.choice((None, 0, 1, -1, 2**31, 2**62, 2**63 - 1, -(2**63), 10**10))
    idb = pcapng_idb(lt, tsresol=res if rng.random() < 0.8 else None, tsoffset=off, be=lay.be)
    return data[:rec.off] + idb + data[rec.off + rec.size:]


def m_reorder(rng, data, lay, corpus):
    recs = lay.records if lay.kind == "pcapng" else lay.packets()
    if len(recs) < 2:
        return data
    start, end = recs[0].off, recs[-1].off + recs[-1].size
    chunks = [data[r.off:r.off + r.size] for r in recs]
    op = rng.randrange(3)
    if op == 0:
        i, j = rng.randrange(len(chunks)), rng.randrange(len(chunks))
        chunks[i], chunks[j] = chunks[j], chunks[i]
    elif op == 1:
        i = rng.randrange(len(chunks))
        j = rng.randrange(i, len(chunks) + 1)
        chunks[i:j] = chunks[i:j][::-1]
    else:
        rng.shuffle(chunks)
    return data[:start] + b"".join(chunks) + data[end:]


def m_duplicate(rng, data, lay, corpus):
    recs = lay.records if lay.kind == "pcapng" else lay.packets()
    if not recs:
        return data
    r = rng.choice(recs)
    chunk = data[r.off:r.off + r.size] * rng.choice((1, 1, 2, 10, 100))
    at = rng.choice(recs)
    pos = at.off if rng.random() < 0.5 else at.off + at.size
    return data[:pos] + chunk + data[pos:]


def m_concat(rng, data, lay, corpus):
    other = corpus.raw(rng)
    op = rng.randrange(3)
    if op == 0:
        return data + other                      # whole second file, header and all
    olay = parse_layout(other)
    if op == 1 and olay.kind == lay.kind == "pcap":
        return data + other[24:]                 # records of another pcap (maybe other link type)
    return other[:rng.randrange(len(other) + 1)] + data


def m_pcapng_blocklen(rng, data, lay, corpus):
    e = ">" if lay.be else "<"
    if lay.kind != "pcapng" or not lay.records:
        return data
    rec = rng.choice(lay.records)
    v = rng.choice((rec.size + 4, rec.size - 4, rec.size + 1, rec.size + 2, 12, 8, 0, 0xFFFFFFFC,
                    0x80000000, 64 * 1024 * 1024 + 4))
    which = rng.randrange(3)
    b = data
    if which in (0, 2):
        b = _put(b, rec.off + 4, e + "I", v & 0xFFFFFFFF)
    if which in (1, 2):
        b = _put(b, rec.off + rec.size - 4, e + "I", v & 0xFFFFFFFF)
    if rng.random() < 0.2:
        # a block of an unknown or packet type with a wrong length, inserted
        bt = rng.choice((2, 3, 5, 6, 0x0BAD, 0x40000BAD, PCAPNG_SHB))
        blk = pcapng_block(bt, rng.randbytes(rng.choice((0, 4, 20, 40))), be=lay.be,
                           length=rng.choice((None, 16, 13, 0xFFFFFFF0)), trailing=rng.choice((None, 12, 99)))
        pos = rng.choice(lay.records).off
        b = b[:pos] + blk + b[pos:]
    return b


def m_tcp_scramble(rng, data, lay, corpus):
    recs = lay.packets()
    if not recs:
        return data
    b = data
    for _ in range(rng.choice((1, 3, 10))):
        r = rng.choice(recs)
        ip = ip_offset(b, r.data_off, r.data_len, r.linktype)
        if ip is None:
            continue
        t = tcp_offset(b, ip, r.data_off + r.data_len)
        if t is None or t + 20 > len(b):
            continue
        f = rng.randrange(4)
        if f == 0:
            b = _put(b, t + 13, "!B", rng.choice((SYN, SYN | ACK, FIN | ACK, RST, RST | ACK, 0, 0xFF,
                                                   SYN | FIN, FIN | RST | ACK)))
        elif f == 1:
            b = _put(b, t + 4, "!I", rng.choice((0, 0xFFFFFFFF, 0x80000000, rng.randrange(1 << 32))))
        elif f == 2:
            b = _put(b, t + 8, "!I", rng.choice((0, 0xFFFFFFFF, 0x80000000, rng.randrange(1 << 32))))
        else:
            b = _put(b, t + rng.choice((0, 2)), "!H", rng.choice((0, 80, 443, 8000, 65535)))
    return b


HTTP_TOKENS = (
    b"Content-Length: 4294967296\r\n", b"Content-Length: 18446744073709551617\r\n",
    b"Content-Length: -1\r\n", b"Content-Length: 99999999999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\n", b"\r\n10000000000000001\r\nxx\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Content-Encoding: gzip\r\n", b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n", b"GET / HTTP/1.1\r\n", b"CONNECT a:443 HTTP/1.1\r\n\r\n",
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n", b"HTTP/1.1 101 Switching\r\n\r\n",
    b"\r\n\r\n", b"\n", b"\x00" * 8, b"\x16\x03\x01\xff\xff\x01", b"HEAD / HTTP/1.0\r\n\r\n",
    b" \t obs-fold\r\n", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
)


def m_http_token(rng, data, lay, corpus):
    """Overwrite part of a TCP payload with a hostile HTTP token (record lengths unchanged)."""
    recs = lay.packets()
    if not recs:
        return data
    for _ in range(4):
        r = rng.choice(recs)
        ip = ip_offset(data, r.data_off, r.data_len, r.linktype)
        t = tcp_offset(data, ip, r.data_off + r.data_len) if ip is not None else None
        if t is None or t + 13 > len(data):
            continue
        p = t + (data[t + 12] >> 4) * 4
        end = r.data_off + r.data_len
        if p >= end:
            continue
        tok = rng.choice(HTTP_TOKENS)
        pos = rng.randrange(p, end)
        tok = tok[:end - pos]
        return data[:pos] + tok + data[pos + len(tok):]
    return data


MUTATORS: dict[str, tuple[Callable[..., bytes], int]] = {
    # name: (function, weight)
    "truncate": (m_truncate, 6),
    "truncate_header": (m_truncate_header, 6),
    "bitflip": (m_bitflip, 14),
    "byte_run": (m_byte_run, 8),
    "length_field": (m_length_field, 14),
    "linktype": (m_linktype, 5),
    "timestamp": (m_timestamp, 5),
    "idb_options": (m_idb_options, 4),
    "reorder": (m_reorder, 6),
    "duplicate": (m_duplicate, 5),
    "concat": (m_concat, 4),
    "pcapng_blocklen": (m_pcapng_blocklen, 5),
    "tcp_scramble": (m_tcp_scramble, 8),
    "http_token": (m_http_token, 8),
}


def gzip_wrap(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    z = gzip.compress(data, compresslevel=1, mtime=0)
    op = rng.randrange(4)
    if op == 0:
        return z, "gzip"
    if op == 1:
        return z[:rng.randrange(2, len(z) + 1)], "gzip_cut"
    if op == 2:
        return z[:-8] + rng.randbytes(8), "gzip_bad_trailer"
    b = bytearray(z)
    if len(b) > 12:
        b[rng.randrange(10, len(b))] ^= 1 << rng.randrange(8)
    return bytes(b), "gzip_bitflip"


# ------------------------------------------------------------------------------------------
# corpus and mutants
# ------------------------------------------------------------------------------------------

def seed_paths() -> list[Path]:
    pats = [str(REPO / "captures/crafted/*.pcap*"), str(REPO / "captures/lab/*/capture.pcap"),
            str(ZEEK_DIR / "*/*.pcap*")]
    out = []
    for pat in pats:
        out += [Path(p) for p in sorted(glob.glob(pat)) if not p.endswith(".json")]
    return out


class Corpus:
    """Seed captures, held decompressed (gzip seeds keep a flag so mutants are re-wrapped)."""

    def __init__(self, paths: Iterable[Path] | None = None, max_kb: int | None = None):
        self.names: list[str] = []
        self.raws: list[bytes] = []
        self.gz: list[bool] = []
        for p in (seed_paths() if paths is None else paths):
            if max_kb is not None and Path(p).stat().st_size > max_kb * 1024:
                continue
            b = Path(p).read_bytes()
            gz = b[:2] == b"\x1f\x8b"
            if gz:
                b = gzip.decompress(b)
            try:
                self.names.append(str(Path(p).resolve().relative_to(REPO)))
            except ValueError:
                self.names.append(str(p))
            self.raws.append(b)
            self.gz.append(gz)
        if not self.raws:
            raise RuntimeError("no seed captures found")

    def __len__(self) -> int:
        return len(self.raws)

    def raw(self, rng: random.Random) -> bytes:
        return self.raws[rng.randrange(len(self.raws))]


@dataclass
class Mutant:
    seed: int
    index: int
    source: str
    ops: list[str]
    data: bytes

    def describe(self) -> str:
        return f"seed={self.seed} index={self.index} source={self.source} ops={'+'.join(self.ops)}"


_NAMES = list(MUTATORS)
_WEIGHTS = [MUTATORS[n][1] for n in _NAMES]


def mutant(corpus: Corpus, seed: int, index: int) -> Mutant:
    """The index-th mutant of a run with this seed (a pure function of both)."""
    rng = random.Random(f"sockscope-fuzz/{seed}/{index}")
    k = rng.randrange(len(corpus))
    data = corpus.raws[k]
    ops: list[str] = []
    for name in rng.choices(_NAMES, _WEIGHTS, k=rng.choice((1, 1, 1, 2, 2, 3))):
        lay = parse_layout(data)
        data = MUTATORS[name][0](rng, data, lay, corpus)
        ops.append(name)
    if corpus.gz[k] or rng.random() < 0.08:
        data, op = gzip_wrap(rng, data)
        ops.append(op)
    return Mutant(seed, index, corpus.names[k], ops, data)


# ------------------------------------------------------------------------------------------
# the checks: one input through the parsing core (every input) or the whole pipeline
# ------------------------------------------------------------------------------------------

# engine.run() on one source = _run_serial() -> one _Point (sink, row store, tracker wired
# together) -> _Point.read() (reader + tracker + reassembly + HTTP framer + sink) -> result()
# (tracker.finish(), then the pandas tables). analyse_core() uses _Point itself, so the wiring is
# the engine's own, and stops where result() starts building tables.
_CORE_NAMES = ("_Point", "_no_cyclic_gc", "_ip", "_CODE_COLUMNS", "NA")
_RUN_KEYWORDS = ("min_gap_s", "l7", "linger_s", "max_open", "tables")
# What both tiers report and must agree on (check(..., full=True) compares them). The full
# tier's warnings may go on after the core's: result() appends tracker-level ones.
COMPARED = ("outcome", "packets", "tcp_packets", "status_counts", "warnings", "http_violations",
            "connections", "requests", "gaps", "evicted")


class CoreDrift(RuntimeError):
    """sockscope.engine no longer has the internals analyse_core() drives: update the helper."""


def _smoke_capture() -> bytes:
    buf = io.BytesIO()
    f = Flow(PcapWriter(buf))
    f.handshake(T0)
    f.client(T0 + 1000, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    f.server(T0 + 2000, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    f.client_fin(T0 + 3000)
    f.server_fin(T0 + 4000)
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def core_parts() -> dict[str, Any]:
    """The engine internals the core tier drives, looked up by name and tried once on a tiny
    good capture. Raises CoreDrift (never skips) when engine.py renames or removes one, when
    run() loses a keyword the helper copies, or when the wiring no longer works as used here."""
    import inspect

    from sockscope import engine

    missing = [n for n in _CORE_NAMES if not hasattr(engine, n)]
    params = inspect.signature(engine.run).parameters
    lost = [k for k in _RUN_KEYWORDS if k not in params]
    if missing or lost:
        raise CoreDrift(f"sockscope.engine changed (missing names {missing}, run() keywords {lost}): "
                        "update analyse_core() in tests/fuzz/mutators.py to mirror engine.run()")
    parts = {n: getattr(engine, n) for n in _CORE_NAMES}
    parts.update({k: params[k].default for k in _RUN_KEYWORDS})
    try:
        res = _core_with(parts, _smoke_capture())
    except Exception as exc:
        raise CoreDrift(f"analyse_core() no longer drives sockscope.engine._Point as the engine does "
                        f"({type(exc).__name__}: {exc}): update it in tests/fuzz/mutators.py\n"
                        + traceback.format_exc()) from exc
    if (res["outcome"], res["packets"], res["connections"], res["requests"]) != ("ok", 7, 1, 1):
        raise CoreDrift(f"analyse_core() on a one-request capture gave {res}: update it")
    return parts


def _classified(fn: Callable[[bytes], dict[str, Any]], data: bytes) -> dict[str, Any]:
    from sockscope.errors import SockscopeError

    try:
        return fn(data)
    except CoreDrift:
        raise
    except SockscopeError as exc:
        return {"outcome": "error", "error": type(exc).__name__, "detail": str(exc)}
    except MemoryError:
        return {"outcome": "memory", "detail": traceback.format_exc(limit=-8)}
    except Exception as exc:  # noqa: BLE001 - the whole point: anything else is a bug
        return {"outcome": "exception", "error": type(exc).__name__, "detail": traceback.format_exc()}


def _core(data: bytes) -> dict[str, Any]:
    return _core_with(core_parts(), data)


def _core_with(e: dict[str, Any], data: bytes) -> dict[str, Any]:
    # engine.run(io.BytesIO(data)) with its defaults, one source, up to the tables
    point = e["_Point"](e["tables"], None, min_gap_s=e["min_gap_s"], linger_s=e["linger_s"], l7=e["l7"],
                        max_open=e["max_open"])
    with e["_no_cyclic_gc"]():
        point.read(io.BytesIO(data), None)
        point.tracker.finish()
        point.sink.flush()      # exchanges are batched into columns; result() flushes too
    tracker, rows, sink, facts = point.tracker, point.rows, point.sink, point.facts
    n = rows.n
    ids = list(rows.ints["conn_id"])
    addrs = [e["_ip"](a) for a in rows.client_addr] + [e["_ip"](a) for a in rows.server_addr]
    from sockscope.schema import OUTCOMES      # the sink keeps outcomes as positions in it

    ex = [OUTCOMES[o] for o in sink.ex_outcome if OUTCOMES[o] != "no_request"]
    out: dict[str, Any] = {
        "outcome": "ok", "tier": "core",
        "packets": facts.get("packets", 0), "tcp_packets": tracker.tcp_packets,
        "status_counts": dict(facts.get("status_counts", {})),
        "warnings": list(facts.get("warnings", [])),
        "http_violations": dict(sink.violation_counts),
        "connections": n, "requests": len(sink.ex_conn), "gaps": sink.gaps.n,
        "evicted": tracker.evicted,
    }
    problems = []
    if sum(out["status_counts"].values()) != out["packets"]:
        problems.append(f"status_counts sum {sum(out['status_counts'].values())} != packets {out['packets']}")
    if tracker.tcp_packets != out["status_counts"].get("tcp", 0):
        problems.append(f"tcp_packets {tracker.tcp_packets} != status tcp {out['status_counts'].get('tcp', 0)}")
    if tracker.packets != out["packets"]:
        problems.append(f"tracker saw {tracker.packets} packets, reader counted {out['packets']}")
    if n != tracker.next_id:
        problems.append(f"{tracker.next_id} connections opened, {n} rows retired")
    if len(set(ids)) != len(ids):
        problems.append("duplicate conn_id")
    lens = {len(v) for v in rows.ints.values()} | {len(rows.history), len(rows.sni), len(addrs) // 2}
    if lens != {n}:
        problems.append(f"connection columns of lengths {sorted(lens)}, {n} rows")
    pkts = sum(rows.ints["client_pkts"]) + sum(rows.ints["server_pkts"])
    if pkts != tracker.tcp_packets:
        problems.append(f"client_pkts + server_pkts = {pkts} != tcp_packets {tracker.tcp_packets}")
    for name, cats in e["_CODE_COLUMNS"].items():
        bad = [v for v in rows.ints[name] if not -1 <= v < len(cats)]
        if bad:
            problems.append(f"{name} codes {sorted(set(bad))[:5]} outside its {len(cats)} categories")
    na = e["NA"]
    if sum(v for v in rows.ints["requests"] if v != na) != len(ex):
        problems.append(f"connections count {sum(rows.ints['requests'])} requests, sink holds {len(ex)}")
    unans = sum(1 for o in ex if o != "complete")
    if sum(v for v in rows.ints["unanswered"] if v != na) != unans:
        problems.append(f"connections count {sum(rows.ints['unanswered'])} unanswered, sink holds {unans}")
    m = len(sink.ex_conn)
    rlens = {len(c) for c in sink.req_cols} | {len(sink.ex_outcome), len(sink.ex_ended)}
    if rlens - {m}:
        problems.append(f"request columns of lengths {sorted(rlens)}, {m} exchanges")
    known = set(ids)
    if not set(sink.ex_conn) <= known or not set(sink.gaps.cols["conn_id"]) <= known:
        problems.append("a request or gap names a connection that has no row")
    glens = {len(c) for c in sink.gaps.cols.values()}
    if glens - {sink.gaps.n}:
        problems.append(f"gap columns of lengths {sorted(glens)}, {sink.gaps.n} gaps")
    if problems:
        out["outcome"] = "invariant"
        out["detail"] = "; ".join(problems)
    return out


def analyse_core(data: bytes) -> dict[str, Any]:
    """One input through the parsing core only: reader, tracker, reassembly, HTTP framer,
    row store and the engine's sink, exactly as ``engine.run`` wires them, without the pandas
    tables. Checks the invariants that hold there (see ``_core``); classified like
    :func:`analyse`. Raises :class:`CoreDrift` if the engine internals it mirrors are gone."""
    return _classified(_core, data)


def _full(data: bytes) -> dict[str, Any]:
    import sockscope

    cap = sockscope.load(io.BytesIO(data))
    findings = cap.findings
    anomalies = cap.anomalies
    facts = cap.facts
    out: dict[str, Any] = {
        "outcome": "ok", "tier": "full",
        "packets": facts.get("packets", 0), "tcp_packets": facts.get("tcp_packets", 0),
        "status_counts": dict(facts.get("status_counts", {})),
        "warnings": list(facts.get("warnings", [])),
        "http_violations": dict(facts.get("http_violations", {})),
        "connections": len(cap.connections), "requests": len(cap.requests), "gaps": len(cap.gaps),
        "evicted": facts.get("evicted_connections", 0),
        "findings": len(findings), "anomalies": len(anomalies),
    }
    problems = []
    if sum(out["status_counts"].values()) != out["packets"]:
        problems.append(f"status_counts sum {sum(out['status_counts'].values())} != packets {out['packets']}")
    if facts.get("tcp_packets", 0) != out["status_counts"].get("tcp", 0):
        problems.append(f"tcp_packets {facts.get('tcp_packets')} != status tcp {out['status_counts'].get('tcp', 0)}")
    if len(cap.connections) and cap.connections["conn_id"].duplicated().any():
        problems.append("duplicate conn_id")
    if problems:
        out["outcome"] = "invariant"
        out["detail"] = "; ".join(problems)
    return out


def analyse(data: bytes) -> dict[str, Any]:
    """Run ``sockscope.load`` + findings + anomalies on one input; classify what happened.

    outcome: ``ok``, ``error`` (a SockscopeError: the documented refusal), ``exception``
    (anything else: a bug), ``invariant`` (no exception, but facts disagree with themselves).
    MemoryError is reported as ``memory``.
    """
    return _classified(_full, data)


def check(data: bytes, full: bool = False) -> dict[str, Any]:
    """The fuzz check of one input: :func:`analyse_core` always; with ``full`` also
    :func:`analyse`, and the two must agree on every figure in ``COMPARED`` (a disagreement
    is an ``invariant`` outcome: the core tier no longer mirrors the engine, or the tables
    lost or invented something). The result is the full tier's when it ran."""
    import time

    t = time.perf_counter()
    core = analyse_core(data)
    core_dt = time.perf_counter() - t
    core.update(tier="core", core_dt=core_dt)
    if not full or core["outcome"] in ("exception", "invariant", "memory"):
        return core
    res = analyse(data)
    res.update(tier="full", core_dt=core_dt)
    if res["outcome"] in ("ok", "error", "invariant") and core["outcome"] in ("ok", "error"):
        keys = COMPARED if res["outcome"] == core["outcome"] == "ok" else ("outcome",)
        diff = [f"{k}: core {core.get(k)!r} != full {res.get(k)!r}" for k in keys
                if (core.get(k) != res.get(k)[:len(core[k])] if k == "warnings" else core.get(k) != res.get(k))]
        if res["outcome"] == core["outcome"] == "error" and core.get("detail") != res.get("detail"):
            diff.append(f"error: core {core.get('detail')!r} != full {res.get('detail')!r}")
        if diff:
            res["outcome"] = "invariant"
            res["detail"] = "; ".join(["core and full tiers disagree"] + diff + ([res["detail"]] if res.get("detail") else []))
    return res


def warning_kind(msg: str) -> str:
    """A warning message without its numbers: the kind of damage it reports."""
    import re

    m = re.sub(r" \(first bytes [0-9a-f]+\)", "", msg)
    m = re.sub(r"\d+", "N", m)
    m = re.sub(r":.*", "", m) if m.startswith("input stream ended") else m
    return m[:90]


# ------------------------------------------------------------------------------------------
# adversarial captures (shared by tests/test_adversarial.py and bench/fuzz.py --adversarial)
# ------------------------------------------------------------------------------------------

T0 = 1_770_716_842 * 1_000_000     # 2026-02-10T09:47:22Z in microseconds


def write_syn_flood(path: Path, n: int, *, per_second: int = 20_000) -> None:
    """n bare SYNs from n distinct (address, port) pairs to 10.0.0.9:80, never answered."""
    dst = ip4("10.0.0.9")
    step = max(1, 1_000_000 // per_second)
    with open(path, "wb") as fh:
        w = PcapWriter(io.BufferedWriter(fh, 1 << 20))
        for i in range(n):
            src = struct.pack("!I", 0x0A000000 | (1 + i // 50000) << 16 | (i % 50000) // 250 << 8 | (i % 250) + 1)
            w.tcp4(T0 + i * step, src, dst, 1024 + (i * 7919) % 64000, 80, i * 2654435761, 0, SYN)
        w.fh.flush()


def write_pipelined(path: Path, n: int, *, answered: int = 3) -> None:
    """One connection, n pipelined GETs; the server answers only the first `answered`."""
    with open(path, "wb") as fh:
        w = PcapWriter(io.BufferedWriter(fh, 1 << 20))
        f = Flow(w)
        f.handshake(T0)
        batch = b"".join(b"GET /r/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(n))
        f.client(T0 + 1000, batch)
        body = b"ok"
        f.server(T0 + 5000, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body)
        for _ in range(answered - 1):
            f.server(T0 + 6000, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body)
        w.fh.flush()


def write_exchange(path: Path, request: bytes, response: bytes | None, *, close: str = "none",
                   mss: int = 1460) -> None:
    """One connection carrying one request and (maybe) a response, then an optional close."""
    with open(path, "wb") as fh:
        w = PcapWriter(io.BufferedWriter(fh, 1 << 20))
        f = Flow(w)
        f.handshake(T0)
        f.client(T0 + 1000, request, mss)
        if response is not None:
            f.server(T0 + 50_000, response, mss)
        if close == "client_fin":
            f.client_fin(T0 + 2_000_000)
        elif close == "server_rst":
            f.server_rst(T0 + 2_000_000)
        w.fh.flush()


def write_short_connections(path: Path, n: int, *, requests: int = 3, every_us: int = 1000) -> None:
    """n keep-alive connections, one every ``every_us``: handshake, ``requests`` GETs each
    answered, then the client's FIN, the server's FIN and the last ACK (a busy service's
    short connections: with the defaults all of them are closed and lingering at the end)."""
    with open(path, "wb") as fh:
        w = PcapWriter(io.BufferedWriter(fh, 1 << 20))
        for i in range(n):
            t = T0 + i * every_us
            f = Flow(w, client=f"10.1.{i // 250}.{i % 250 + 1}", cport=20000 + i % 40000)
            f.handshake(t)
            for k in range(requests):
                f.client(t + 300 + 200 * k, b"GET /item/%d HTTP/1.1\r\nHost: api.example.test\r\n"
                         b"User-Agent: load/1.0\r\n\r\n" % k)
                f.server(t + 400 + 200 * k, b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"ok\": true}")
            f.client_fin(t + 900)
            f.server_fin(t + 950)
            w.tcp4(t + 990, f.c, f.s, f.cp, f.sp, f.cseq, f.sseq, ACK)
        w.fh.flush()


def write_backwards(path: Path, n_conns: int = 20) -> None:
    """Complete HTTP exchanges in natural packet order whose clock runs backwards: every packet
    is stamped earlier than the one before it (a clock stepped back, again and again)."""
    buf = io.BytesIO()
    w = PcapWriter(buf)
    for k in range(n_conns):
        f = Flow(w, cport=41000 + k)
        t = T0 + (n_conns - k) * 10_000_000
        f.handshake(t)                      # stamps t, t+100, t+200 µs: the only forward steps
        f.client(t - 1_000, b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        f.server(t - 2_000_000, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        f.client_fin(t - 3_000_000)
        f.server_fin(t - 3_600_000_000)
    Path(path).write_bytes(buf.getvalue())


def write_huge_caplen(path: Path) -> None:
    """A few good packets, then a record claiming a 4 GB captured length."""
    buf = io.BytesIO()
    w = PcapWriter(buf)
    f = Flow(w)
    f.handshake(T0)
    f.client(T0 + 1000, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    w.record(T0 + 2000, b"\0" * 60, caplen=0xFFFFFFFF, origlen=0xFFFFFFFF)
    Path(path).write_bytes(buf.getvalue())


def write_many_interfaces(path: Path, n_if: int = 10_000) -> None:
    """A pcapng section with n_if interfaces; packets name interfaces 0, 4095, 4096, n_if-1."""
    frame = _ETH_IP4 + ipv4(ip4("10.0.0.5"), ip4("10.0.0.9"),
                            tcp(40000, 80, 1000, 0, SYN))
    parts = [pcapng_shb()]
    idb = pcapng_idb(1, tsresol=6)
    parts += [idb] * n_if
    ts = T0
    for iface in (0, 1, 4095, 4096, n_if - 1, 0xFFFFFFFF):
        parts.append(pcapng_epb(iface, ts, frame))
        ts += 1000
    Path(path).write_bytes(b"".join(parts))


# ------------------------------------------------------------------------------------------
# measuring one capture in a fresh process: `python tests/fuzz/mutators.py measure PATH [JSON]`
# ------------------------------------------------------------------------------------------

def _measure_main(path: str, opts: dict[str, Any]) -> dict[str, Any]:
    import json  # noqa: F401
    import resource
    import time

    mem_mb = opts.pop("mem_mb", None)
    with_findings = opts.pop("findings", True)
    if "tables" in opts:
        opts["tables"] = tuple(opts["tables"])
    if mem_mb:
        lim = int(mem_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    import sockscope
    from sockscope.errors import SockscopeError

    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    out: dict[str, Any] = {"base_rss_mb": round(base_kb / 1024, 1)}
    try:
        cap = sockscope.load(path, **opts)
        if with_findings:
            findings = cap.findings
        else:
            import pandas as pd
            findings = pd.DataFrame({"kind": []})
    except SockscopeError as exc:
        out.update(outcome="error", detail=str(exc))
    except MemoryError:
        out.update(outcome="memory")
    else:
        facts = cap.facts
        req = cap.requests
        out.update(
            outcome="ok", packets=facts.get("packets"), tcp_packets=facts.get("tcp_packets"),
            status_counts=facts.get("status_counts"), warnings=facts.get("warnings"),
            http_violations=facts.get("http_violations"), evicted=facts.get("evicted_connections"),
            connections=len(cap.connections), requests=len(req), findings=len(findings),
            finding_kinds=sorted(set(findings["kind"])) if len(findings) else [],
            outcomes=req["outcome"].value_counts().to_dict() if len(req) else {},
            conn_requests=[int(x) for x in cap.connections["requests"].head(5)] if len(cap.connections) else [],
            conn_states=cap.connections["state"].astype(str).value_counts().to_dict() if len(cap.connections) else {},
            first_requests=[{k: (None if v is None or (isinstance(v, float) and v != v) else str(v))
                             for k, v in row.items()}
                            for row in req.head(3)[["method", "uri", "status", "outcome", "ended_by",
                                                    "request_body_len", "response_body_len"]]
                            .astype(object).to_dict("records")] if len(req) else [],
            start=str(cap.start), end=str(cap.end),
        )
    out["seconds"] = round(time.perf_counter() - t, 3)
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def measure(path: Path | str, timeout: float = 600, **opts: Any) -> dict[str, Any]:
    """Analyse `path` in a fresh interpreter; its outcome, figures and peak RSS (MiB).

    ``mem_mb=`` sets RLIMIT_AS in the child; other keywords go to ``sockscope.load``.
    Raises AssertionError if the child prints a traceback or dies.
    """
    import json
    import subprocess
    import sys

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               ARROW_DEFAULT_MEMORY_POOL="system")
    proc = subprocess.run([sys.executable, __file__, "measure", str(path), json.dumps(opts)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert proc.returncode == 0, f"measure child exited {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) >= 3 and sys.argv[1] == "measure":
        print(json.dumps(_measure_main(sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}),
                         default=str))
    else:
        print("usage: mutators.py measure PATH [JSON-OPTIONS]", file=sys.stderr)
        sys.exit(2)
