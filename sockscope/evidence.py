"""The proof as a capture: the packets behind findings, written as pcapng with comments.

Consumes an analysed :class:`~sockscope.api.Capture` (its source file(s), its ``connections``
and ``requests`` tables, its ``facts``) and rows of its ``findings`` table (all of them, or a
selection such as ``diagnose --kind``). Produces one pcapng file that a Wireshark user opens
to see exactly the packets a verdict rests on:

* a Section Header Block whose ``shb_comment`` holds the verdict: the findings by kind with
  counts, the timers inferred from the closes, per kind its verdict and what to do (the prose
  of :mod:`sockscope.analysis.report` and of the detectors, laid out, not rewritten), the
  findings' own summaries, and how to read the file;
* an Interface Description Block per source interface a written packet came from (link
  type, snap length, timestamp resolution and offset, name);
* an Enhanced Packet Block per packet with its original timestamp (in its interface's own
  resolution: nanoseconds stay nanoseconds) and original bytes, carrying one ``opt_comment``
  per finding it is evidence of -- the kind, the connection, what this packet is in the
  proof, and ``(frame N of FILE)`` to find it in the original.

Which packets. Every frame a finding's evidence names (any ``*_frame`` key, the request
chain's frames, heartbeat writes) and every frame its display filter selects; for a silent
drop the sender's segments of the unacknowledged flight (the retransmissions), for
unanswered SYNs the SYNs in between; for the root-cause hint the earlier requests on the
killed sockets. Around them, each evidenced connection's first packets (its handshake), with
a comment that starts with ``context`` and claims nothing. A finding keeps at most
``max_per_finding`` packets, its most telling first; the section comment says which
findings were cut.

How. The capture is read a second time, once, streaming, through one reused buffer: a tight
loop frames the records and stops only at wanted frame numbers (a sorted list) and, inside a
scan window (a connection's handshake, a dropped flight), at records whose bytes hold that
connection's TCP port pair -- found by one ``bytes.find`` over the buffer, not by a look at
every record. Memory follows the packets kept, never the capture; on the 1M-packet bench
capture the walk is about a third of a second. Frame numbers are the analysis'
own: files of one rotated chain continue each other (``mergecap -a``), files of separate
capture points each count from 1 (a comment names the file), files read with
``merge=True`` are interleaved by timestamp as the engine interleaves them. Before writing,
the timestamps of connections' first frames and closes are checked against the analysis:
a capture that changed since it was analysed is refused rather than mis-commented.

Why a record walker of its own. The compiled reader (:mod:`sockscope.capture`) decodes
headers into a C struct and hands Python neither a record's bytes, its original length,
nor its interface's timestamp resolution, which an evidence file must copy. The walker here
only frames records (pcap, pcapng, gzip-compressed either) and follows the reader's
numbering rules: every packet block counts (also one on an undescribed interface), damage
ends a file where the reader ends it, gzip is read in the same steps, absurd timestamps wrap
as in its C arithmetic (``tests/test_evidence.py`` holds the two to the same numbers and
times on every bundled capture and on the fuzz suite's hostile mutants). To recognise a connection's packets inside a scan
window it borrows the reader itself (:class:`_Decoder`), so link layers, VLAN tags, IPv6
extension headers are decoded by the same code that built the tables.

Layering: a face. It imports :mod:`sockscope.analysis` and the capture layer; nothing
imports it but :mod:`sockscope.api` and the CLI.
"""

from __future__ import annotations

import functools
import gzip
import heapq
import io
import ipaddress
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator

from sockscope.errors import CaptureError

if TYPE_CHECKING:
    import pandas as pd

    from sockscope.api import Capture

__all__ = ["MAX_PER_FINDING", "EvidenceResult", "write_evidence"]

MAX_PER_FINDING = 64          # packets of one finding's evidence (the most telling first)
HANDSHAKE_PACKETS = 3         # a connection's first packets shown as context
HANDSHAKE_SCAN = 10_000       # frames after a connection's first one searched for its next packets
FLIGHT_SCAN = 200_000         # frames searched for a dropped flight's retransmissions / SYN retries

# The reader's limits (sockscope/capture/_source.pyx): the walker must stop where it stops.
_MAX_RECORD = 64 * 1024 * 1024
_MAX_INTERFACES = 4096
_MAX_TS_NS = 1 << 62
_CHUNK = 4 * 1024 * 1024
_MAX_OPTION = 65535           # an option's length is 16 bits
_SHB = 0x0A0D0D0A
_BOM = 0x1A2B3C4D


@dataclass(frozen=True, slots=True)
class EvidenceResult:
    """What :func:`write_evidence` wrote."""

    path: str
    packets: int                 # packets written
    evidence_packets: int        # of them, packets with a finding's comment (the rest: context)
    findings: int                # findings given
    findings_with_packets: int   # findings with at least one packet in the file
    capped: int                  # findings whose evidence was cut at the per-finding cap
    max_per_finding: int

    def __str__(self) -> str:
        if not self.findings:
            return f"no findings: {self.path} holds only the section comment saying so"
        cut = (f"; {self.capped} finding(s) cut at {self.max_per_finding} packets each (the section comment "
               f"says which)") if self.capped else ""
        return (f"{self.packets:,} packet(s) ({self.evidence_packets:,} evidence, "
                f"{self.packets - self.evidence_packets:,} handshake context) for {self.findings:,} finding(s) "
                f"written to {self.path}{cut}")


def write_evidence(cap: "Capture", path: str | os.PathLike, findings: "pd.DataFrame | None" = None, *,
                   max_per_finding: int = MAX_PER_FINDING) -> EvidenceResult:
    """Write the packets behind ``findings`` (default: every finding of ``cap``) to ``path``
    as pcapng, each commented with what it proves (see the module docstring).

    Raises :class:`ValueError` when the capture cannot be read again (standard input, a file
    object) or ``path`` is one of its files, :class:`~sockscope.errors.CaptureError` when its files are gone or changed since
    they were analysed, :class:`OSError` when ``path`` cannot be written. The file is written
    beside ``path`` and renamed into place, so a failure never leaves half a file.
    """
    if max_per_finding < 1:
        raise ValueError("max_per_finding must be at least 1")
    f = cap.findings if findings is None else findings
    points, merged = _points(cap)
    target = os.fspath(path)
    if os.path.exists(target) and any(os.path.samefile(target, src) for p in points for src in p):
        raise ValueError(f"{target} is one of the capture's own files: the evidence would replace it")
    plan = _Plan(cap, points, max_per_finding)
    plan.add_findings(f)
    packets, counted = plan.collect(merged)
    notes = []
    expected = cap.facts.get("packets")
    if cap.facts.get("engine") == "native" and isinstance(expected, int) and counted != expected:
        notes.append(f"note: reading the files again counted {counted:,} packets where the analysis counted "
                     f"{expected:,}")
    text = _section_comment(cap, f, plan, packets, notes)
    _write_file(os.fspath(path), text, packets, plan)
    return EvidenceResult(os.fspath(path), len(packets), sum(1 for p in packets if p.evidence), len(f),
                          len(plan.written(packets)), len(plan.capped), max_per_finding)


# ----------------------------------------------------------------------------------------
# Which files, numbered how


def _points(cap: "Capture") -> tuple[list[list[str]], bool]:
    """The capture points (each a chain of files, in reading order) and whether the files
    were interleaved by timestamp (``merge=True``)."""
    facts = cap.facts
    if facts.get("capture_points"):
        points = [list(p) for p in facts["capture_points"]]
    else:
        files = facts.get("files") or [facts.get("name") or cap.source]
        points = [list(files)]
    for name in (f for p in points for f in p):
        if not isinstance(name, str) or name in _STREAM_NAMES:
            raise ValueError("the evidence needs the capture read again, and standard input (or a file "
                             "object) can be read only once: save the capture to a file first")
        if not os.path.exists(name):
            raise CaptureError(f"{name}: no such file any more: the evidence needs the capture read again")
    return points, bool(facts.get("merged"))


_STREAM_NAMES = ("-", "<stdin>", "<stream>")     # what the reader calls a source without a path


def _display_names(points: list[list[str]]) -> dict[str, str]:
    """How comments name each file: its base name, or its path where two base names clash."""
    files = [f for p in points for f in p]
    base = [os.path.basename(f) for f in files]
    return {f: (b if base.count(b) == 1 else f) for f, b in zip(files, base)}


# ----------------------------------------------------------------------------------------
# Reading: a record walker that frames pcap / pcapng records as sockscope.capture does


class _Input:
    """A capture file's bytes through one reused buffer; gzip is recognised by content, as
    the reader does. ``buf[pos:end]`` is what is available; a refill moves it to the front
    and reads after it (a record found in the buffer is valid until the next refill)."""

    def __init__(self, path: str) -> None:
        try:
            raw: BinaryIO = open(path, "rb", buffering=0)
        except OSError as exc:
            raise CaptureError(f"{path}: cannot open it again ({exc.strerror})") from None
        head = raw.read(2)
        raw.seek(0)
        self.raw = raw
        self.fh: BinaryIO = gzip.GzipFile(fileobj=io.BufferedReader(raw, 1 << 20), mode="rb") \
            if head == b"\x1f\x8b" else raw  # type: ignore[assignment]
        self.buf = bytearray(_CHUNK)
        self.pos = self.end = 0
        self.eof = False

    def need(self, n: int) -> bool:
        """Make ``n`` bytes available at ``pos`` (``pos`` and ``end`` move: callers reload
        them); False at the end of the input.

        The reader's own refill (``PacketSource._fill``), step for step: the same calls of
        the same sizes (``readinto1`` where the stream has it, the buffer grown only when
        full), so a gzip stream that breaks part-way yields exactly the bytes the reader saw
        before the break -- a bigger read would lose the last decoded stretch with the error.
        """
        have = self.end - self.pos
        if have >= n:
            return True
        if self.eof:
            return False
        buf = self.buf
        if self.pos:
            buf[:have] = buf[self.pos:self.end]
        self.pos, self.end = 0, have
        read = getattr(self.fh, "readinto1", None) or self.fh.readinto
        while self.end < n:
            if self.end == len(buf):
                grown = bytearray(min(n + _CHUNK, 2 * len(buf) + _CHUNK))
                grown[:self.end] = buf[:self.end]
                self.buf = buf = grown
            with memoryview(buf) as mv:
                try:
                    got = read(mv[self.end:])
                except (OSError, EOFError, ValueError, zlib.error):
                    got = 0     # a cut or corrupt gzip stream: keep what was decoded, as the reader does
            if not got:
                self.eof = True
                break
            self.end += got
        return self.end >= n

    def close(self) -> None:
        self.fh.close()
        self.raw.close()


@dataclass(frozen=True, slots=True)
class _SrcIface:
    """A source interface: what the output IDB copies, and the reader's timestamp rule."""

    linktype: int
    snaplen: int
    tsresol: int | None       # the if_tsresol byte; None: absent (microseconds)
    tsoffset: int             # if_tsoffset, seconds
    name: str | None

    def ts_ns(self, ts: int) -> int:
        """The reader's nanoseconds for a raw timestamp, with its C arithmetic (64-bit
        wrap-around, then clamping): a hostile file's absurd timestamps come out as the
        analysis saw them."""
        r = 6 if self.tsresol is None else self.tsresol & 0x7F
        if self.tsresol is not None and self.tsresol & 0x80:
            shift = min(r, 62)
            if shift <= 30:
                ns = _s64(((ts >> shift) * 1_000_000_000 + (((ts & ((1 << shift) - 1)) * 1_000_000_000) >> shift))
                          & _U64)
            else:
                v = ts / float(1 << shift) * 1e9
                ns = int(v) if -2.0 ** 63 <= v < 2.0 ** 63 else -(1 << 63)    # x86's answer to an overflow
        else:
            mul = 10 ** (9 - r) if r <= 9 else 1
            div = 1 if r <= 9 else 10 ** (r - 9) if r <= 18 else 10 ** 9
            ns = _s64(((ts * mul) & _U64) // div)
        ns = _s64(ns + _s64(self.tsoffset * 1_000_000_000))
        return 0 if ns < 0 else _MAX_TS_NS if ns > _MAX_TS_NS else ns


_U64 = (1 << 64) - 1


def _s64(v: int) -> int:
    """``v`` as C's int64_t holds it (two's complement wrap-around)."""
    v &= _U64
    return v - (1 << 64) if v >> 63 else v


@dataclass(slots=True)
class _Raw:
    """One packet record as found: enough to decode it and to write it again."""

    ts_ns: int                # the reader's timestamp (ordering, checks)
    ts_units: int             # the timestamp in its interface's units (written as is)
    iface: _SrcIface
    data: bytes
    orig_len: int
    flags: int | None = None  # epb_flags (direction, reception type)
    comments: tuple[str, ...] = ()   # the packet's own comments in the source


class _Gate:
    """What the walker must stop at (the caller moves it): frames from ``next`` on, and any
    record whose bytes hold one of ``pats`` (a connection's TCP port pair, searched for
    over the whole buffer at C speed, so a scan window costs no more than the records
    around it)."""

    __slots__ = ("next", "pats")

    def __init__(self, first: int, pats: tuple[bytes, ...] = ()) -> None:
        self.next = first
        self.pats = pats


_NO_HIT = 1 << 62


_HORIZON = 256 * 1024    # bytes searched ahead per pattern at a time


def _hits(buf: bytearray, start: int, end: int, pats: tuple[bytes, ...], known: dict[bytes, int]) \
        -> dict[bytes, int]:
    """Where each of ``pats`` next occurs in ``buf[start:end]``: offsets already known to lie
    ahead (``known``, for the same buffer contents) are kept, so each stretch of bytes is
    searched once per pattern. The search looks ``_HORIZON`` bytes ahead at a time (a record
    there is then looked at, and the search goes on from it): a pattern whose scan ends
    before its next occurrence is not searched for far beyond it."""
    out = {}
    for p in pats:
        i = known.get(p, -1)
        if i < start:
            stop = min(end, start + _HORIZON)
            i = buf.find(p, start, stop)
            if i < 0:
                i = stop - len(p) + 1 if stop < end else _NO_HIT
        out[p] = i
    return out


def _keep(last: tuple | None) -> tuple | None:
    """A reference to the last packet block, made independent of the buffer (before a refill
    overwrites it): its first 32 bytes are all a simple packet block's timestamp needs."""
    if last is None or isinstance(last[0], bytes):
        return last
    buf, pos, btype, ifaces, big = last
    return bytes(buf[pos:pos + 32]), 0, btype, ifaces, big


class _Walker:
    """The packet records of one capture file, numbered 1.. as the reader numbers them.

    ``records(gate)`` yields ``(frame, rec)`` for the frames the gate lets through; ``raw(rec)``
    turns one into a :class:`_Raw` (``None``: a packet on an interface the file never
    described, which the reader counts but cannot decode), ``data_span(rec)`` gives where
    its bytes lie without copying them. ``packets`` is the file's count once walked.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.inp = _Input(path)
        self.packets = 0
        if not self.inp.need(4):
            self.inp.close()
            raise CaptureError(f"{path}: empty input: not a pcap or pcapng file")
        magic = struct.unpack_from("<I", self.inp.buf, self.inp.pos)[0]
        self.ng = magic == _SHB
        if not self.ng:
            if magic in (0xA1B2C3D4, 0xA1B23C4D, 0xA1B2CD34):
                e = "<"
            elif magic in (0xD4C3B2A1, 0x4D3CB2A1, 0x34CDB2A1):
                e = ">"
            else:
                self.inp.close()
                raise CaptureError(f"{path}: not a pcap or pcapng file any more")
            if not self.inp.need(24):
                self.inp.close()
                raise CaptureError(f"{path}: truncated pcap file header")
            magic = struct.unpack_from(e + "I", self.inp.buf, 0)[0]
            snaplen, linktype = struct.unpack_from(e + "II", self.inp.buf, 16)
            ns = magic == 0xA1B23C4D
            self._hdr = 16 + (8 if magic == 0xA1B2CD34 else 0)
            self._rec = struct.Struct(e + "IIII")
            self._mult = 1 if ns else 1000
            self._units = 10 ** 9 if ns else 10 ** 6
            self._iface = _SrcIface(linktype & 0xFFFF, snaplen, 9 if ns else None, 0, None)
            self.inp.pos = 24

    def records(self, gate: _Gate) -> Iterator[tuple[int, tuple]]:
        try:
            yield from (self._pcapng(gate) if self.ng else self._pcap(gate))
        finally:
            self.inp.close()

    # -- pcap ----------------------------------------------------------------------------
    def _pcap(self, gate: _Gate) -> Iterator[tuple[int, tuple]]:
        inp, hdr = self.inp, self._hdr
        caplen_at = struct.Struct(self._rec.format[0] + "8xI").unpack_from
        buf, pos, end = inp.buf, inp.pos, inp.end
        frame, nxt, pats = 0, gate.next, gate.pats
        hits = _hits(buf, pos, end, pats, {})
        hit = min(hits.values(), default=_NO_HIT)
        while True:
            if pos + hdr > end:
                inp.pos = pos
                if not inp.need(hdr):
                    break           # end, or a truncated record header: the reader stops here too
                buf, pos, end = inp.buf, inp.pos, inp.end
                hits = _hits(buf, pos, end, pats, {})
                hit = min(hits.values(), default=_NO_HIT)
            caplen = caplen_at(buf, pos)[0]
            if caplen > _MAX_RECORD:
                break
            stop = pos + hdr + caplen
            if stop > end:
                inp.pos = pos
                if not inp.need(hdr + caplen):
                    break           # a record cut off: not counted, as by the reader
                buf, pos, end = inp.buf, inp.pos, inp.end
                stop = pos + hdr + caplen
                hits = _hits(buf, pos, end, pats, {})
                hit = min(hits.values(), default=_NO_HIT)
            frame += 1
            if frame >= nxt or hit < stop:
                self.packets = frame
                yield frame, (buf, pos, caplen)
                nxt, pats = gate.next, gate.pats
                hits = _hits(buf, stop, end, pats, hits)
                hit = min(hits.values(), default=_NO_HIT)
            pos = stop
        self.packets = frame

    def _pcap_raw(self, rec: tuple) -> _Raw:
        buf, pos, caplen = rec
        sec, frac, _, orig = self._rec.unpack_from(buf, pos)
        start = pos + self._hdr
        return _Raw(sec * 1_000_000_000 + frac * self._mult, sec * self._units + frac, self._iface,
                    bytes(buf[start:start + caplen]), orig)

    # -- pcapng --------------------------------------------------------------------------
    def _pcapng(self, gate: _Gate) -> Iterator[tuple[int, tuple]]:
        inp = self.inp
        le, be = struct.Struct("<II").unpack_from, struct.Struct(">II").unpack_from
        le1, be1 = struct.Struct("<I").unpack_from, struct.Struct(">I").unpack_from
        two, one, big = le, le1, False
        ifaces: list[_SrcIface | None] = []
        buf, pos, end = inp.buf, inp.pos, inp.end
        frame, nxt, pats = 0, gate.next, gate.pats
        hits = _hits(buf, pos, end, pats, {})
        hit = min(hits.values(), default=_NO_HIT)
        last: tuple | None = None         # the last EPB/PB: a simple packet block reuses its timestamp
        while True:
            if pos + 12 > end:
                last = _keep(last)
                inp.pos = pos
                if not inp.need(12):
                    break
                buf, pos, end = inp.buf, inp.pos, inp.end
                hits = _hits(buf, pos, end, pats, {})
                hit = min(hits.values(), default=_NO_HIT)
            btype, blen = two(buf, pos)
            if btype == _SHB:     # reads the same in both byte orders; its magic decides the rest
                if be1(buf, pos + 8)[0] == _BOM:
                    two, one, big = be, be1, True
                elif le1(buf, pos + 8)[0] == _BOM:
                    two, one, big = le, le1, False
                else:
                    break
                blen = one(buf, pos + 4)[0]
            if blen < 12 or blen & 3 or blen > _MAX_RECORD:
                break
            if pos + blen > end:
                last = _keep(last)
                inp.pos = pos
                if not inp.need(blen):
                    break
                buf, pos, end = inp.buf, inp.pos, inp.end
                hits = _hits(buf, pos, end, pats, {})
                hit = min(hits.values(), default=_NO_HIT)
            if one(buf, pos + blen - 4)[0] != blen:
                break
            if btype == 6 or btype == 2 or btype == 3:
                # a packet block (enhanced, obsolete or simple) of at least its fixed size
                if blen >= (16 if btype == 3 else 32):
                    frame += 1
                    if frame >= nxt or hit < pos + blen:
                        self.packets = frame
                        yield frame, (buf, pos, btype, blen, ifaces, big, last)
                        nxt, pats = gate.next, gate.pats
                        hits = _hits(buf, pos + blen, end, pats, hits)
                        hit = min(hits.values(), default=_NO_HIT)
                    if btype != 3:      # a simple block takes the time of the last timed one
                        last = (buf, pos, btype, ifaces, big)
            elif btype == _SHB:
                ifaces = []         # interface ids are per section
            elif btype == 1:
                if blen >= 20 and len(ifaces) < _MAX_INTERFACES:
                    ifaces.append(self._idb(buf, pos, blen, big))
            pos += blen
        self.packets = frame

    @staticmethod
    def _options(buf: bytes, start: int, stop: int, big: bool) -> Iterator[tuple[int, bytes]]:
        u16 = struct.Struct(">HH" if big else "<HH").unpack_from
        o = start
        while o + 4 <= stop:
            code, olen = u16(buf, o)
            if code == 0 or o + 4 + olen > stop:
                return
            yield code, bytes(buf[o + 4:o + 4 + olen])
            o += 4 + ((olen + 3) & ~3)

    def _idb(self, buf: bytes, pos: int, blen: int, big: bool) -> _SrcIface:
        e = ">" if big else "<"
        linktype, = struct.unpack_from(e + "H", buf, pos + 8)
        snaplen, = struct.unpack_from(e + "I", buf, pos + 12)
        tsresol, tsoffset, name = None, 0, None
        for code, value in self._options(buf, pos + 16, pos + blen - 4, big):
            if code == 9 and value:
                tsresol = value[0]
            elif code == 14 and len(value) >= 8:
                tsoffset = struct.unpack_from(e + "q", value)[0]
            elif code == 2:
                name = value.decode("utf-8", "replace").rstrip("\0") or None
        return _SrcIface(linktype, snaplen, tsresol, tsoffset, name)

    def _ng_raw(self, rec: tuple) -> _Raw | None:
        buf, pos, btype, blen, ifaces, big, last = rec
        e = ">" if big else "<"
        if btype == 3:
            if not ifaces or ifaces[0] is None:
                return None
            iface = ifaces[0]
            orig, = struct.unpack_from(e + "I", buf, pos + 8)
            caplen = min(orig, blen - 16, iface.snaplen or orig)
            # no timestamp of its own: the reader gives it the previous packet's
            ts_ns = 0
            if last is not None:
                prev = self._ng_raw((last[0], last[1], last[2], 32, last[3], last[4], None))
                ts_ns = prev.ts_ns if prev is not None else 0
            as_ns = _SrcIface(iface.linktype, iface.snaplen, 9, 0, iface.name)
            return _Raw(ts_ns, ts_ns, as_ns, bytes(buf[pos + 12:pos + 12 + caplen]), orig)
        if btype == 6:
            idx, hi, lo, caplen, orig = struct.unpack_from(e + "5I", buf, pos + 8)
        else:
            idx, _, hi, lo, caplen, orig = struct.unpack_from(e + "HH4I", buf, pos + 8)
        if idx >= len(ifaces):
            return None
        iface = ifaces[idx]
        caplen = min(caplen, blen - 32)
        units = (hi << 32) | lo
        flags, comments = None, []
        for code, value in self._options(buf, pos + 28 + ((caplen + 3) & ~3), pos + blen - 4, big):
            if code == 1:
                comments.append(value.decode("utf-8", "replace"))
            elif code == 2 and len(value) == 4:
                flags = struct.unpack(e + "I", value)[0]
        return _Raw(iface.ts_ns(units), units, iface, bytes(buf[pos + 28:pos + 28 + caplen]), orig, flags,
                    tuple(comments))

    def raw(self, rec: tuple) -> _Raw | None:
        return self._ng_raw(rec) if self.ng else self._pcap_raw(rec)

    def data_span(self, rec: tuple) -> tuple[bytes, int, int]:
        """(buffer, start, stop) of the record's packet bytes, without a copy."""
        if not self.ng:
            buf, pos, caplen = rec
            return buf, pos + self._hdr, pos + self._hdr + caplen
        buf, pos, btype, blen = rec[:4]
        if btype == 3:
            return buf, pos + 12, pos + blen - 4
        caplen = struct.unpack_from((">" if rec[5] else "<") + "I", buf, pos + 20)[0]
        return buf, pos + 28, pos + 28 + min(caplen, blen - 32)


class _Feed(io.RawIOBase):
    """A stream that hands the reader exactly what was put in it: one record at a time."""

    def __init__(self, head: bytes) -> None:
        self.pending = head

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:  # type: ignore[override]
        n = min(len(b), len(self.pending))
        b[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


class _Decoder:
    """Decodes single packets with sockscope's own reader (one per link type): each packet
    goes in as a one-record pcap stream and comes out as the reader's dict (addresses,
    ports, flags, sequence number, payload length). The reader asks its stream for bytes
    only when it needs the next record, so one reader serves every packet of a link type."""

    def __init__(self) -> None:
        self._by_lt: dict[int, tuple[_Feed, Iterator[dict]]] = {}

    def decode(self, linktype: int, data: bytes) -> dict:
        from sockscope.capture import PacketSource

        got = self._by_lt.get(linktype)
        if got is None:
            feed = _Feed(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, _MAX_RECORD, linktype))
            got = (feed, PacketSource(feed, "evidence").packets())
            self._by_lt[linktype] = got
        feed, it = got
        feed.pending = struct.pack("<IIII", 0, 0, len(data), len(data)) + data
        try:
            return next(it)
        except StopIteration:       # the reader gave up on its stream: start a fresh one next time
            del self._by_lt[linktype]
            return {"status": "undecoded"}


# ----------------------------------------------------------------------------------------
# The plan: which frames, and what each one proves

Found = list[tuple[int, dict, bool]]         # (frame, decoded packet, sent by the client?)


@dataclass(slots=True)
class _Scan:
    """A window of frames in which one connection's packets are searched for."""

    lo: int
    hi: int
    pats: tuple[bytes, bytes]      # the TCP port pair as it starts the TCP header, both directions
    client: tuple[bytes, int]      # (address, port)
    server: tuple[bytes, int]
    match: Callable[[dict, bool], bool]    # (decoded packet, sent by the client?) -> wanted
    limit: int
    on_done: Callable[[Found], None]
    # which direction's port pair the walker searches for: "client", "server", or "turns" (the
    # side that did not send the last packet found: a handshake answers, so searching one
    # direction at a time scans half the bytes; the first packet is a target, looked at anyway)
    search: str = "turns"
    found: Found = field(default_factory=list)

    def wanted(self) -> tuple[bytes, ...]:
        if self.search == "client":
            return self.pats[:1]
        if self.search == "server":
            return self.pats[1:]
        if not self.found:
            return self.pats
        return self.pats[1:] if self.found[-1][2] else self.pats[:1]


@dataclass(slots=True)
class _Note:
    """What one packet is for one finding (or, ``context``, for one connection)."""

    who: str                       # "client_idle_timeout, connection 0" / "context, connection 0"
    roles: list[str]               # joined with "; " -- what the packet is first, what it shows next


@dataclass(slots=True)
class _Packet:
    """A packet to write: where it came from and its comments (ordered)."""

    point: int
    frame: int                     # the analysis' frame number (the point's numbering)
    file: str                      # the file it is in (as comments name it)
    local: int                     # its frame number within that file
    raw: _Raw
    chain: bool = False            # its point has several files: say both numbers
    comments: list[str] = field(default_factory=list)
    evidence: bool = False


_FLAG_NAMES = ((0x02, "SYN"), (0x10, "ACK"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x20, "URG"))


def _int(v: Any) -> int | None:
    """A frame number cell as int, or None when missing (None, NaN, pandas NA)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        if v != v:
            return None
        i = int(v)
    except (TypeError, ValueError):
        return None
    return i if i > 0 else None


def _cid(v: Any) -> int | None:
    """A conn_id cell (0 is a connection)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        return None if v != v else int(v)
    except (TypeError, ValueError):
        return None


def _seconds(x: Any) -> str:
    from sockscope.analysis.text import seconds

    return "?" if x is None or x != x else seconds(float(x))


def _flags_text(p: dict) -> str:
    flags = p.get("flags", 0)
    if flags & 0x12 == 0x12 and not flags & 0x05:
        text = "SYN-ACK"
    else:
        text = "-".join(n for bit, n in _FLAG_NAMES if flags & bit) or "no flags"
    n = p.get("tcp_len", 0)
    return f"{text} with {n} bytes of data" if n else text


def _request_label(r: dict, ua: bool = True) -> str:
    agent = f" [{r['user_agent']}]" if ua and r.get("user_agent") else ""
    return f"request {r.get('index')}: {r.get('method') or '?'} {r.get('uri') or '?'}{agent}"


_FILTER_FRAMES = re.compile(r"frame\.number in \{([\d,\s]+)\}")


def _filter_frames(display_filter: str) -> list[int]:
    m = _FILTER_FRAMES.search(display_filter or "")
    return [int(x) for x in m.group(1).replace(" ", "").split(",") if x] if m else []


# what the plan reads of a connection (its addresses, the frames and times it checks)
_CONN_COLUMNS = ("conn_id", "client_ip", "client_port", "server_ip", "server_port", "roles_from", "start",
                 "first_frame", "last_frame", "close_frame", "close_ts", "close_kind", "last_payload_frame",
                 "capture")


@functools.lru_cache(maxsize=4096)
def _packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


class _Plan:
    """The frames wanted per capture point, with their comments, and the scans to run."""

    def __init__(self, cap: "Capture", points: list[list[str]], max_per_finding: int) -> None:
        self.cap = cap
        self.points = points
        self.max = max_per_finding
        self.names = _display_names(points)
        self.first_file = {p[0]: i for i, p in enumerate(points)}
        # (point, frame) -> {order: note}; order (0, finding) for evidence, (1, conn_id) for context
        self.notes: dict[tuple[int, int], dict[tuple[int, int], _Note]] = {}
        self.scans: list[tuple[int, _Scan]] = []
        self.capped: dict[int, tuple[str, int | None, int]] = {}   # finding -> (kind, conn_id, frames left out)
        self.budget: dict[int, int] = {}                           # finding -> packets it may still add
        self.first_key: dict[int, tuple[int, int]] = {}            # finding -> its most telling packet
        self.expect_ts: dict[tuple[int, int], tuple[int, str]] = {}
        self.conns: dict[int, dict[str, Any]] = {}
        self._context_done: set[int] = set()

    def label(self, point: int) -> str:
        files = self.points[point]
        return self.names[files[0]] + (f" (+{len(files) - 1} files)" if len(files) > 1 else "")

    # -- connections ---------------------------------------------------------------------
    def _load_conns(self, ids: Iterable[int]) -> None:
        want = sorted(set(ids) - set(self.conns))
        if want:
            c = self.cap.connections
            rows = c.loc[c["conn_id"].isin(want), [k for k in _CONN_COLUMNS if k in c.columns]]
            for r in rows.to_dict("records"):
                self.conns[int(r["conn_id"])] = r

    def point_of(self, cid: int | None) -> int:
        """The capture point of a connection: its ``capture`` cell names the point's first file."""
        name = self.conns.get(cid, {}).get("capture") if cid is not None else None
        return self.first_file.get(str(name), 0) if isinstance(name, str) else 0

    # -- findings ------------------------------------------------------------------------
    def add_findings(self, f: "pd.DataFrame") -> None:
        if f is None or not len(f):
            return
        ids = [c for c in (_cid(v) for v in f["conn_id"]) if c is not None]
        for kind, ev in zip(f["kind"].astype(str), f["evidence"]):
            if kind == "root_cause_hint" and isinstance(ev, dict):
                ids += [c for c in (_cid(v) for v in ev.get("killed_conn_ids", ())) if c is not None]
            if isinstance(ev, dict) and isinstance(ev.get("also_at"), dict):
                ids += [c for c in (_cid(ev["also_at"].get("conn_id")),) if c is not None]
        self._load_conns(ids)
        for i, row in enumerate(f.itertuples(index=False)):
            kind = str(row.kind)
            ev = row.evidence if isinstance(row.evidence, dict) else {}
            cid = _cid(row.conn_id)
            if kind == "root_cause_hint":
                self._add(i, kind, None, self._root_cause_frames(ev))
                for c in ev.get("killed_conn_ids", ()):
                    if _cid(c) is not None:
                        self._context(int(c))
                continue
            conn = self.conns.get(cid) if cid is not None else None
            point = self.point_of(cid)
            named = _named_frames(kind, ev, row.request_index, str(row.display_filter or ""), conn)
            items = [(point, fr, prio, text) for fr, prio, text in named]
            twin = self._twin_items(ev)
            self._add(i, kind, cid, items + twin)
            if twin:
                tcid = _cid(ev["also_at"]["conn_id"])
                self._expect(twin[0][0], self.conns[tcid])
                self._context(tcid)
            if conn is not None:
                self._expect(point, conn)
                self._context(cid)
                scan = _flight_scan(kind, ev, conn)
                if scan is not None:
                    self._flight(i, kind, cid, point, conn, *scan)

    def _twin_items(self, ev: dict[str, Any]) -> list[tuple[int, int, int, str]]:
        """What the other capture point proves of a finding (``evidence.absent_from``): the
        same connection there, its first and its last packet, after which what one point saw
        never comes."""
        at = ev.get("also_at")
        if not isinstance(at, dict) or not ev.get("absent_from"):
            return []
        tcid = _cid(at.get("conn_id"))
        if tcid is None or tcid not in self.conns:
            return []
        tp = self.point_of(tcid)
        name = self.label(tp)
        out = []
        first, last = _int(at.get("first_frame")), _int(at.get("last_frame"))
        if first is not None:
            out.append((tp, first, 1, f"the same connection at {name} (connection {tcid}): its first packet"))
        if last is not None:
            out.append((tp, last, 1, f"the same connection at {name}: its last packet; what the other point "
                                     f"saw after it never passed {name}"))
        return out

    def _add(self, i: int, kind: str, cid: int | None, items: list[tuple[int, int, int, str]]) -> None:
        """A finding's frames ``(point, frame, priority, role)``, most telling first, within its cap."""
        roles: dict[tuple[int, int], list[tuple[int, str]]] = {}
        for point, frame, prio, text in items:
            got = roles.setdefault((point, frame), [])
            if all(t != text for _, t in got):
                got.append((prio, text))
        keys = list(roles)
        if len(keys) > self.max:
            self.capped[i] = (kind, cid, len(keys) - self.max)
            keys = keys[:self.max]
        self.budget[i] = self.max - len(keys)
        if keys:
            self.first_key[i] = keys[0]
        who = f"{kind}, connection {cid}" if cid is not None else kind
        for key in keys:
            ordered = [t for _, t in sorted(roles[key], key=lambda x: x[0])]
            self.notes.setdefault(key, {})[(0, i)] = _Note(who, ordered)

    def _flight(self, i: int, kind: str, cid: int | None, point: int, conn: dict[str, Any], lo: int, hi: int,
                match: Callable[[dict, bool], bool], label: Callable[[Found], list[str | None]],
                search: str) -> None:
        """Packets between a finding's named frames that belong to its proof (a scan)."""
        who = f"{kind}, connection {cid}"

        def done(found: Found) -> None:
            for (fr, _, _), text in zip(found, label(found)):
                if text is None:
                    continue
                note = self.notes.get((point, fr), {}).get((0, i))
                if note is not None:            # named already: say what else it is, first
                    note.roles.insert(0, text)
                elif self.budget[i] > 0:
                    self.budget[i] -= 1
                    self.notes.setdefault((point, fr), {})[(0, i)] = _Note(who, [text])
                else:
                    k, c, n = self.capped.get(i, (kind, cid, 0))
                    self.capped[i] = (k, c, n + 1)

        self._scan(point, conn, lo, min(hi, lo + FLIGHT_SCAN), match, self.max + 2, done, search)

    def _root_cause_frames(self, ev: dict[str, Any]) -> list[tuple[int, int, int, str]]:
        """The root-cause hint's proof: on each killed socket the requests before the one
        that died (what the sockets have in common), and the one that died."""
        killed = [c for c in (_cid(v) for v in ev.get("killed_conn_ids", ())) if c is not None]
        if not killed:
            return []
        allf = self.cap.findings
        rows = allf[(allf["kind"].astype(str) == "client_idle_timeout") & allf["conn_id"].isin(killed)]
        died = {int(c): int(r) for c, r in zip(rows["conn_id"], rows["request_index"]) if _cid(r) is not None}
        reqs = self.cap.requests
        reqs = reqs[reqs["conn_id"].isin(killed)]
        by: dict[int, list[dict]] = {}
        for r in reqs[["conn_id", "index", "method", "uri", "user_agent", "first_frame"]].to_dict("records"):
            by.setdefault(int(r["conn_id"]), []).append(r)
        items = []
        for cid in killed:
            idx = died.get(cid)
            for r in sorted(by.get(cid, []), key=lambda r: int(r["index"])):
                fr = _int(r["first_frame"])
                if fr is None or (idx is not None and int(r["index"]) > idx):
                    continue
                text = (f"on socket {cid}, {_request_label(r)}: the request the timer killed" if r["index"] == idx
                        else f"on socket {cid}, later killed by the timer, {_request_label(r)}: before the request "
                             f"that died")
                items.append((self.point_of(cid), fr, 0, text))
        return items

    # -- context: a connection's first packets ---------------------------------------------
    def _context(self, cid: int) -> None:
        if cid in self._context_done or cid not in self.conns:
            return
        self._context_done.add(cid)
        conn = self.conns[cid]
        first, last = _int(conn.get("first_frame")), _int(conn.get("last_frame"))
        if first is None:
            return
        point = self.point_of(cid)
        self._expect(point, conn)
        handshake = str(conn.get("roles_from")) == "syn"

        def done(found: Found) -> None:
            for k, (fr, p, by_client) in enumerate(found[:HANDSHAKE_PACKETS]):
                side = "client" if by_client else "server"
                if handshake:
                    what = f"the handshake's {_flags_text(p)} from the {side}" if p["flags"] & 0x02 else \
                        f"after the handshake: {_flags_text(p)} from the {side}"
                elif k == 0:
                    what = f"its first packet in the capture ({_flags_text(p)} from the {side}); its handshake " \
                           f"was not captured"
                else:
                    what = f"an early packet: {_flags_text(p)} from the {side}"
                self.notes.setdefault((point, fr), {})[(1, cid)] = _Note(f"context, connection {cid}", [what])

        hi = first + HANDSHAKE_SCAN if last is None else min(last, first + HANDSHAKE_SCAN)
        self._scan(point, conn, first, hi, lambda p, by_client: True, HANDSHAKE_PACKETS, done)

    # -- bookkeeping ---------------------------------------------------------------------
    def _expect(self, point: int, conn: dict[str, Any]) -> None:
        """Timestamps the analysis saw on frames it names: checked when they are read again."""
        for fcol, tcol in (("first_frame", "start"), ("close_frame", "close_ts")):
            fr, ts = _int(conn.get(fcol)), conn.get(tcol)
            value = getattr(ts, "value", None)
            if fr is not None and isinstance(value, int) and ts == ts:
                self.expect_ts[(point, fr)] = (value, fcol)

    def _scan(self, point: int, conn: dict[str, Any], lo: int, hi: int, match: Callable[[dict, bool], bool],
              limit: int, done: Callable[[Found], None], search: str = "turns") -> None:
        try:
            c = (_packed(str(conn["client_ip"])), int(conn["client_port"]))
            s = (_packed(str(conn["server_ip"])), int(conn["server_port"]))
        except (ValueError, TypeError, KeyError):
            return          # no addresses to recognise it by: its named frames are all there is
        pats = (struct.pack(">HH", c[1], s[1]), struct.pack(">HH", s[1], c[1]))
        self.scans.append((point, _Scan(lo, hi, pats, c, s, match, limit, done, search)))

    # -- reading -------------------------------------------------------------------------
    def collect(self, merged: bool) -> tuple[list[_Packet], int]:
        """Read every point's files once: the packets to write, in writing order, and how
        many packets the files hold."""
        decoder = _Decoder()
        per_point: list[list[_Packet]] = []
        counted = 0
        for k, files in enumerate(self.points):
            targets = sorted({fr for (p, fr) in self.notes if p == k})
            scans = sorted((s for p, s in self.scans if p == k), key=lambda s: s.lo)
            got, n = _read_point(k, files, targets, scans, merged, decoder, self.names)
            counted += n
            for s in scans:
                s.on_done(s.found)
            per_point.append(got)
        for i, (_, _, n) in self.capped.items():      # a cut finding says so on its most telling packet
            note = self.notes.get(self.first_key.get(i, (-1, -1)), {}).get((0, i))
            if note is not None:
                note.roles.append(f"{n:,} more frame(s) of this finding are left out (at most {self.max} packets "
                                  f"per finding; sockscope diagnose --json lists them all)")
        out: list[list[_Packet]] = []
        for k, got in enumerate(per_point):
            keep = []
            for pk in got:
                notes = self.notes.get((k, pk.frame))
                if not notes:
                    continue        # found by a scan beyond what its finding may show
                want = self.expect_ts.get((k, pk.frame))
                if want is not None and abs(want[0] - pk.raw.ts_ns) > 1000:
                    raise CaptureError(
                        f"{pk.file}: frame {pk.local} does not have the timestamp the analysis saw on it "
                        f"({want[1]}): the file changed since it was analysed; evidence not written")
                ev = [n for o, n in sorted(notes.items()) if o[0] == 0]
                # a packet that is evidence needs no context note; context notes claim nothing
                shown = ev or [n for o, n in sorted(notes.items()) if o[0] == 1][:1]
                pk.comments = [f"{n.who}: {'; '.join(n.roles)}" for n in shown]
                pk.evidence = bool(ev)
                keep.append(pk)
            out.append(keep)
        have = {(pk.point, pk.frame) for pts in out for pk in pts}
        missing = sorted(key for key, notes in self.notes.items()
                         if key not in have and any(o[0] == 0 for o in notes))
        if missing:
            k, fr = missing[0]
            raise CaptureError(f"{self.label(k)}: frame {fr}, named by a finding, was not found when the capture "
                               f"was read again (the file changed since it was analysed, or the frame is not a "
                               f"packet that can be copied); evidence not written")
        if len(out) == 1:
            return out[0], counted
        # several capture points: one time line, each point's packets in their own order
        return list(heapq.merge(*out, key=lambda pk: pk.raw.ts_ns)), counted

    def written(self, packets: list[_Packet]) -> dict[int, int]:
        """Per finding, the packets of the file that carry its comment."""
        have = {(pk.point, pk.frame) for pk in packets if pk.evidence}
        out: dict[int, int] = {}
        for key, notes in self.notes.items():
            if key in have:
                for o in notes:
                    if o[0] == 0:
                        out[o[1]] = out.get(o[1], 0) + 1
        return out


def _read_point(point: int, files: list[str], targets: list[int], scans: list[_Scan], merged: bool,
                decoder: _Decoder, names: dict[str, str]) -> tuple[list[_Packet], int]:
    """One read of a capture point's files: the target frames and the scans' matches, and
    how many packets the files hold."""
    kept: dict[int, _Packet] = {}
    ti = si = 0
    active: list[_Scan] = []
    chain = len(files) > 1
    none_left = 1 << 62

    def next_event(g: int) -> int:
        """The next frame to look at after ``g`` whatever its bytes: a target, a scan's
        start, the frame after an open scan's end (records holding an open scan's port pair
        are stopped at by the walker, see ``pats``)."""
        a = targets[ti] if ti < len(targets) else none_left
        b = scans[si].lo if si < len(scans) else none_left
        c = min((s.hi + 1 for s in active), default=none_left)
        return min(a, b, c)

    def pats() -> tuple[bytes, ...]:
        if not active:
            return ()
        if len(active) == 1:
            return active[0].wanted()
        return tuple({p for s in active for p in s.wanted()})

    def visit(g: int, w: _Walker, rec: tuple, local: int) -> None:
        nonlocal ti, si
        while si < len(scans) and scans[si].lo <= g:
            active.append(scans[si])
            si += 1
        while ti < len(targets) and targets[ti] < g:
            ti += 1
        hit = ti < len(targets) and targets[ti] == g
        if hit:
            ti += 1
        raw: _Raw | None = None
        if active:
            active[:] = [s for s in active if g <= s.hi and len(s.found) < s.limit]
        if active:
            buf, a, b = w.data_span(rec)
            pkt = None
            for s in active:
                if buf.find(s.pats[0], a, b) < 0 and buf.find(s.pats[1], a, b) < 0:
                    continue        # the cheap test first, on the raw bytes: the port pair
                if raw is None:
                    raw = w.raw(rec)
                if raw is None:
                    break
                if pkt is None:
                    pkt = decoder.decode(raw.iface.linktype, raw.data)
                if pkt.get("status") != "tcp":
                    break
                ends = ((pkt["src"], pkt["sport"]), (pkt["dst"], pkt["dport"]))
                if ends == (s.client, s.server) or ends == (s.server, s.client):
                    by_client = ends[0] == s.client
                    if s.match(pkt, by_client):
                        s.found.append((g, pkt, by_client))
                        hit = True
            active[:] = [s for s in active if len(s.found) < s.limit]
        if hit:
            if raw is None:
                raw = w.raw(rec)
            if raw is not None:     # None: on an interface the file never described (never TCP)
                kept[g] = _Packet(point, g, names.get(w.path, w.path), local, raw, chain)

    if not merged:
        base = 0
        for path in files:
            w = _Walker(path)
            gate = _Gate(next_event(base) - base, pats())
            for local, rec in w.records(gate):
                g = base + local
                visit(g, w, rec, local)
                gate.next, gate.pats = next_event(g) - base, pats()
            base += w.packets
        return [kept[g] for g in sorted(kept)], base

    # merge=True: the engine's interleaving -- the smallest timestamp next, ties to the earlier
    # file (sockscope.tcp's run_merged); a packet the reader cannot place in time (on an
    # undescribed interface) takes its file's previous timestamp, as there
    walkers = [_Walker(p) for p in files]

    def stream(k: int, w: _Walker) -> Iterator[tuple[int, int, int, tuple]]:
        last = 0
        for local, rec in w.records(_Gate(0)):
            raw = w.raw(rec)
            if raw is not None:
                last = raw.ts_ns
            yield last, k, local, rec

    g = 0
    for _, k, local, rec in heapq.merge(*(stream(k, w) for k, w in enumerate(walkers)), key=lambda t: t[0]):
        g += 1
        if active or g >= next_event(g - 1):
            visit(g, walkers[k], rec, local)
    return [kept[g] for g in sorted(kept)], g


def _flight_scan(kind: str, ev: dict[str, Any], conn: dict[str, Any]) \
        -> tuple[int, int, Callable[[dict, bool], bool], Callable[[Found], list[str | None]], str] | None:
    """The frames between a finding's named ones that belong to its proof: a silent drop's
    segments of the dropped flight (its retransmissions), an unanswered connection's SYN
    retries. ``(lo, hi, match, label, side searched)`` or None."""
    if kind == "silent_drop":
        first, last = _int(ev.get("first_frame")), _int(conn.get("last_frame"))
        if first is None or last is None:
            return None
        sender = ev.get("sender")
        peer = "server" if sender == "client" else "client"
        n = ev.get("retransmits")

        def data_from_sender(p: dict, by_client: bool) -> bool:
            return by_client == (sender == "client") and p.get("tcp_len", 0) > 0

        def label(found: Found) -> list[str | None]:
            out: list[str | None] = []
            start = end = None
            k = 0
            for fr, p, _ in found:
                if fr == first or start is None:
                    start, end = p["seq"], (p["seq"] + p["tcp_len"]) & 0xFFFFFFFF
                    out.append(None)    # the flight's first segment: named by the evidence already
                    continue
                rel, top = (p["seq"] - start) & 0xFFFFFFFF, (end - start) & 0xFFFFFFFF
                if rel < top:
                    k += 1
                    out.append(f"retransmission {k}{f' of {n}' if n else ''} of the unacknowledged data, "
                               f"still no ACK from the {peer}")
                else:
                    end = (p["seq"] + p["tcp_len"]) & 0xFFFFFFFF
                    out.append(f"more data from the {sender}, never acknowledged")
            return out

        return first, last, data_from_sender, label, "client" if sender == "client" else "server"
    if kind == "syn_unanswered":
        first, last = _int(ev.get("syn_frame")), _int(ev.get("last_syn_frame"))
        if first is None or last is None or last - first < 2:
            return None
        syns = ev.get("syns")

        def syn_from_client(p: dict, by_client: bool) -> bool:
            return by_client and bool(p.get("flags", 0) & 0x02)

        def label(found: Found) -> list[str | None]:
            return [None if fr in (first, last) else f"SYN {k + 1}{f' of {syns}' if syns else ''}: sent again, "
                    f"still no answer" for k, (fr, _, _) in enumerate(found)]

        return first, last, syn_from_client, label, "client"
    return None


# -- what each frame of the evidence is -----------------------------------------------------

def _close_roles(kind: str, ev: dict[str, Any], waiting: dict | None) -> dict[str, str]:
    closer, close_kind, idle = ev.get("closer"), ev.get("close_kind"), ev.get("idle_s")
    other = "server" if closer == "client" else "client"
    if waiting is not None:
        what = f"{waiting.get('method') or '?'} {waiting.get('uri') or '?'} outstanding"
    elif ev.get("level") == "tcp":
        what = "the client's last data unanswered"
    else:
        what = "nothing outstanding" if kind == "server_idle_close" else "a request outstanding"
    silence = f" after {_seconds(idle)} of silence" if idle is not None else ""
    close = f"{closer} {close_kind}{silence}; {what}"
    if kind == "client_idle_timeout" and ev.get("inferred_timeout_s") is not None:
        from sockscope.analysis.timers import fmt_timer

        n = ev.get("timeout_cluster_size")
        close += f": the client's {fmt_timer(float(ev['inferred_timeout_s']))} timer" + (
            f" ({n} closes alike)" if n and n > 1 else "")
    elif kind in ("server_idle_close", "server_abort") and ev.get("inferred_timeout_s") is not None:
        from sockscope.analysis.timers import fmt_timer

        close += f" (the server's ≈ {fmt_timer(float(ev['inferred_timeout_s']))} timer)"
    reaction = ev.get("reaction") or {}
    roles = {
        "close_frame": close,
        "last_payload_frame": f"the last payload before the close, from the {ev.get('last_payload_by')}; then "
                              f"{_seconds(idle)} of silence",
        f"{other}_fin_frame": f"the {other}'s FIN, {_seconds(reaction.get(f'{other}_fin_after_s'))} after the "
                              f"{closer}'s close",
        f"{other}_rst_frame": f"the {other}'s RST, {_seconds(reaction.get(f'{other}_rst_after_s'))} after the "
                              f"{closer}'s close",
        "data_after_close_frame": f"data from the {reaction.get('data_after_close_by')} after the close: it comes "
                                  f"too late",
        f"{closer}_rst_frame": f"the {closer}'s RST after its own FIN: its kernel refusing what arrived after the "
                               f"close",
    }
    return roles


def _key_roles(kind: str, ev: dict[str, Any], waiting: dict | None, conn: dict[str, Any] | None) -> dict[str, str]:
    """What the packet named by each ``*_frame`` key of a finding's evidence is in its proof."""
    if kind in ("client_idle_timeout", "client_abort", "server_abort", "server_idle_close"):
        return _close_roles(kind, ev, waiting)
    if kind == "response_after_close":
        close_kind = (conn or {}).get("close_kind")
        return {
            "close_frame": f"the client's {close_kind if isinstance(close_kind, str) else 'close'}: it closes "
                           f"before the answer comes",
            "late_data_frame": f"the late answer: {ev.get('late_bytes')} bytes from the server "
                               f"{_seconds(ev.get('late_after_close_s'))} after the client closed",
            "client_rst_frame": "the client's kernel answers the late data with RST: the answer is refused",
        }
    if kind == "middlebox_rst":
        side = ev.get("claimed_from")
        lo, hi = ev.get("sender_ttl_min"), ev.get("sender_ttl_max")
        own = f"TTL {lo}" if lo == hi else f"TTL {lo}–{hi}"
        delta = next((s.get("delta") for s in ev.get("signals", ()) if s.get("signal") == "ip_ttl"), None)
        where = ""
        if isinstance(delta, int) and delta:
            where = f" {abs(delta)} hop{'s' if abs(delta) != 1 else ''} {'closer to' if delta > 0 else 'farther from'} " \
                    f"the capture point"
        ip_id = ""
        if ev.get("rst_ip_id") is not None and ev.get("sender_ip_id_before") is not None:
            ip_id = f"; IP-ID {ev['rst_ip_id']} after the {side}'s {ev['sender_ip_id_before']}"
        return {"rst_frame": f"the forged RST: TTL {ev.get('rst_ttl')}, while the {side}'s "
                             f"{ev.get('sender_packets')} other packet(s) arrived with {own}: sent in the {side}'s "
                             f"name by a device{where}{ip_id}"}
    if kind == "silent_drop":
        sender = ev.get("sender")
        peer = "server" if sender == "client" else "client"
        return {"first_frame": f"the first of {ev.get('unacked_bytes')} bytes from the {sender} that were never "
                               f"acknowledged; the {peer} had been quiet {_seconds(ev.get('peer_quiet_before_s'))} "
                               f"and sends nothing from here on"}
    if kind == "refused":
        after = ev.get("rst_after_s")
        return {"syn_frame": "the client's SYN",
                "rst_frame": f"the RST answering the SYN{f' {_seconds(after)} later' if after is not None else ''}: "
                             f"the connection is refused"}
    if kind == "syn_unanswered":
        return {"syn_frame": f"the first of {ev.get('syns')} SYNs",
                "last_syn_frame": f"the last of {ev.get('syns')} SYNs, {_seconds(ev.get('retry_span_s'))} after the "
                                  f"first: no answer of any kind"}
    if kind == "stale_reuse":
        return {"request_frame": "sent after the server's FIN: the server had already closed the connection",
                "server_fin_frame": "the server's FIN: it closes the connection before the request"}
    return {}


def _flat(d: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(key, value) of a nested evidence dict, the request chain left out."""
    for key, value in d.items():
        if key == "also_at":            # another connection, at another capture point
            continue
        if isinstance(value, dict):
            yield from _flat(value)
        elif key != "requests":
            yield key, value


_OUTCOME = {"complete": "answered", "no_response": "never answered", "partial_response": "answered in part",
            "no_request": "a response with no request"}
_WAITING = {"middlebox_rst": "outstanding when the forged RST came", "silent_drop": "the data that was dropped",
            "response_after_close": "its answer came after the close", "stale_reuse": "it failed"}


def _named_frames(kind: str, ev: dict[str, Any], request_index: Any, display_filter: str,
                  conn: dict[str, Any] | None) -> list[tuple[int, int, str]]:
    """Every frame a finding names, with what it is in its proof: ``(frame, priority, role)``,
    most telling first (a cap keeps the first ones). Priority orders the roles of one packet:
    0 what the packet is (a request), 1 what it shows (the last payload, the close)."""
    out: list[tuple[int, int, str]] = []
    chain = [r for r in ev.get("requests", ()) if isinstance(r, dict)]
    index = _cid(request_index)
    flt = _filter_frames(display_filter)
    in_filter = set(flt)
    # the requests that were waiting: the finding's own, and others its filter names for
    # themselves (not as a key's frame: a request sent after the close is late data, not waiting)
    keyed = {fr for fr in (_int(v) for k, v in _flat(ev) if k.endswith("_frame")) if fr is not None}
    waiting_rows = [] if kind in ("connection_reuse", "server_idle_close") else [
        r for r in chain if r.get("index") == index
        or (_int(r.get("first_frame")) in in_filter and _int(r.get("first_frame")) not in keyed)]
    waiting = next((r for r in waiting_rows if r.get("index") == index), waiting_rows[0] if waiting_rows else None)
    roles = _key_roles(kind, ev, waiting, conn)

    def walk(d: dict[str, Any]) -> None:
        for key, value in d.items():
            if key in ("requests", "also_at"):      # also_at: the same connection at another point
                continue
            if isinstance(value, dict):
                walk(value)
            elif key.endswith("_frame") and _int(value) is not None:
                out.append((int(value), 1, roles.get(key, f"the evidence's {key}")))
            elif key.endswith("_frames") and isinstance(value, (list, tuple)):
                n = len(value)
                for j, v in enumerate(value):
                    if _int(v) is None:
                        continue
                    if kind == "heartbeat" and key == "gap_frames":
                        text = (f"heartbeat write {j + 1} of {n}: a small write by the server after "
                                f"≈ {float(ev.get('interval_s', 0)):.2f} s of silence")
                    else:
                        text = f"the evidence's {key} ({j + 1} of {n})"
                    out.append((int(v), 1, text))

    walk(ev)
    # the request chain: the requests waiting first, then each change of client, then the rest
    first_of_ua = {k for k, r in enumerate(chain) if k == 0 or r.get("user_agent") != chain[k - 1].get("user_agent")}
    is_waiting = [any(r is w for w in waiting_rows) for r in chain]
    order = ([k for k in range(len(chain)) if is_waiting[k]] + [k for k in first_of_ua if not is_waiting[k]]
             + [k for k in range(len(chain)) if not is_waiting[k] and k not in first_of_ua])
    urgent, rest = [], []
    for k in order:
        r = chain[k]
        fr, last = _int(r.get("first_frame")), _int(r.get("request_last_frame"))
        if kind == "connection_reuse":
            ua = r.get("user_agent")
            text = f"{_request_label(r, ua=False)} from {ua or 'a client without User-Agent'}"
            if k and k in first_of_ua:
                text += ": another client on the same socket"
        elif is_waiting[k]:
            text = f"{_request_label(r)}: {_WAITING.get(kind, 'outstanding when the connection closed')}"
        else:
            outcome = r.get("outcome")
            answered = (f"answered {r['status']}" if r.get("status") is not None and outcome == "complete"
                        else _OUTCOME.get(str(outcome), str(outcome or "")))
            before = _int(waiting.get("first_frame")) if waiting is not None else _int(ev.get("close_frame"))
            text = f"{_request_label(r)}, {answered}" + (" (earlier on this socket)" if before is not None and fr
                                                        is not None and fr < before else "")
        into = urgent if is_waiting[k] or kind == "connection_reuse" else rest
        if fr is not None:
            into.append((fr, 0, text))
        if last is not None and last != fr:
            into.append((last, 0, f"request {r.get('index')}'s last byte"
                                  + (": from here the client waits for the answer" if is_waiting[k] else "")))
    # frames the display filter selects that nothing above names
    named = {fr for fr, _, _ in out + urgent + rest}
    names = {"last_payload_frame": "the connection's last payload", "last_frame": "the connection's last packet "
             "in the capture", "first_frame": "the connection's first packet", "close_frame": "the connection's close"}
    unnamed = []
    for fr in flt:
        if fr not in named:
            col = next((c for c in names if conn is not None and _int(conn.get(c)) == fr), None)
            unnamed.append((fr, 1, names[col] if col else "selected by the finding's display filter"))
    return out + urgent + unnamed + rest


# ----------------------------------------------------------------------------------------
# The verdict

_MAX_SUMMARIES = 20


def _section_comment(cap: "Capture", f: "pd.DataFrame", plan: _Plan, packets: list[_Packet],
                     extra: list[str]) -> str:
    """The section comment: the diagnose summary (the analysis' own words), then how to read
    this file."""
    from sockscope import __version__
    from sockscope.analysis import verdict
    from sockscope.analysis.report import group

    lines = [f"sockscope {__version__} diagnose: the evidence behind the findings in {cap.source}"]
    total = len(cap.findings)
    if f is None or not len(f):
        lines.append("")
        lines.append(f"No findings match the selection (the capture has {total:,}): no packets are written."
                     if total else "No findings in this capture: no packets are written.")
    groups = group(f, examples=0) if f is not None and len(f) else []
    if groups:
        n_conn = int(f["conn_id"].dropna().nunique())
        sel = f" (selected from the capture's {total:,})" if len(f) != total else ""
        lines.append("")
        lines.append(f"{len(f):,} finding(s){sel} on {n_conn:,} of {len(cap.connections):,} connection(s):")
        for g in groups:
            on = f"{g.connections:,} connection(s)" if g.connections else f"{g.findings:,} finding(s)"
            lines.append(f"  {g.severity:<7} {g.kind:<21} {on:>20}   {g.title}")
    timers = cap.diagnosis.timers
    if timers:
        lines.append("")
        lines.append("Timers inferred from idle closes:")
        lines += ["  " + k.headline() for k in timers[:6]]
    for g in groups:
        on = f", {g.connections:,} connection(s)" if g.connections else ""
        lines.append("")
        lines.append(f"{g.title} ({g.kind}{on})")
        lines.append("  " + verdict(g.kind, g.rows))
        if g.advice:
            lines.append(f"  What to do: {g.advice}")
        lines.append(f'  Its packets here: frame.comment contains "{g.kind}"')
    if groups:
        lines.append("")
        lines.append("The findings:")
        for r in f.head(_MAX_SUMMARIES).itertuples(index=False):
            cid = _cid(r.conn_id)
            lines.append(f"  {r.kind}{f', connection {cid}' if cid is not None else ''}: {r.summary}")
        if len(f) > _MAX_SUMMARIES:
            lines.append(f"  … {len(f) - _MAX_SUMMARIES:,} more (sockscope diagnose --json has them all)")
        lines.append("")
        ctx = sum(1 for p in packets if not p.evidence)
        lines.append(f"This file: {len(packets) - ctx:,} packet(s) of evidence and {ctx:,} of context, with their "
                     f"original timestamps and bytes. Each evidence packet's comment names the finding (kind, "
                     f"connection), what the packet is in the proof, and where it is in the original: \"(frame N "
                     f"of FILE)\" -- the frame numbers the findings and their display filters use. Comments "
                     f"starting \"context\" mark a connection's first packets (its handshake), shown to "
                     f"orient, not as evidence. Frame numbers in this file are its own, and Wireshark's TCP "
                     f"analysis sees holes where packets were left out (\"previous segment not captured\", "
                     f"\"ACKed unseen segment\"): the original has those packets.")
        if plan.capped:
            lines.append(f"At most {plan.max} packets per finding, the most telling first; cut: "
                         + "; ".join(f"{k}{f', connection {c}' if c is not None else ''} ({n:,} more)"
                                     for k, c, n in list(plan.capped.values())[:10])
                         + (f"; and {len(plan.capped) - 10:,} more finding(s)" if len(plan.capped) > 10 else ""))
    lines.append("")
    if len(plan.points) > 1:
        lines.append(f"Read from {len(plan.points)} capture points (files overlapping in time, analysed apart; "
                     f"each counts its own frames): " + "; ".join(plan.label(k) for k in range(len(plan.points))))
    else:
        files = plan.points[0]
        how = ("interleaved by time (merge)" if cap.facts.get("merged") else "as one rotated capture, frames "
               "continuing from file to file as in mergecap -a") if len(files) > 1 else ""
        lines.append(f"Read from {', '.join(plan.names[x] for x in files)}" + (f", {how}" if how else ""))
    lines += extra
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# pcapng writing (little-endian; block layout from the pcapng specification)

def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _text_option(code: int, text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > _MAX_OPTION:
        data = data[:_MAX_OPTION - 3].decode("utf-8", "ignore").encode("utf-8") + "…".encode("utf-8")
    return _option(code, data)


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


_END_OF_OPTIONS = b"\0\0\0\0"


def _shb(text: str) -> bytes:
    from sockscope import __version__

    # one comment option holds at most 64 KiB: a longer verdict continues in the next
    data = text.encode("utf-8")
    parts, cut = [], _MAX_OPTION
    while data:
        head = data[:cut].decode("utf-8", "ignore").encode("utf-8")
        parts.append(head)
        data = data[len(head):]
    opts = b"".join(_option(1, p) for p in parts) + _text_option(4, f"sockscope {__version__}")
    return _block(_SHB, struct.pack("<IHHq", _BOM, 1, 0, -1) + opts + _END_OF_OPTIONS)


def _idb(iface: _SrcIface, name: str, description: str) -> bytes:
    opts = _text_option(2, name) + _text_option(3, description)
    if iface.tsresol is not None and iface.tsresol != 6:
        opts += _option(9, bytes([iface.tsresol]))
    if iface.tsoffset:
        opts += _option(14, struct.pack("<q", iface.tsoffset))
    return _block(1, struct.pack("<HHI", iface.linktype, 0, iface.snaplen) + opts + _END_OF_OPTIONS)


def _epb(iface_id: int, pk: _Packet) -> bytes:
    raw = pk.raw
    # the analysis' number (what the display filters use) and, for a chain of files, the
    # number in the file a person opens
    where = f"(frame {pk.frame} = frame {pk.local} of {pk.file})" if pk.chain else f"(frame {pk.frame} of {pk.file})"
    opts = b"".join(_text_option(1, f"{c} {where}") for c in pk.comments)
    opts += b"".join(_text_option(1, f"(in the original) {c}") for c in raw.comments)
    if raw.flags is not None:
        opts += _option(2, struct.pack("<I", raw.flags))
    n = len(raw.data)
    body = (struct.pack("<IIIII", iface_id, raw.ts_units >> 32 & 0xFFFFFFFF, raw.ts_units & 0xFFFFFFFF, n,
                        max(raw.orig_len, n)) + raw.data + b"\0" * (-n % 4) + opts + _END_OF_OPTIONS)
    return _block(6, body)


def _write_file(path: str, text: str, packets: list[_Packet], plan: _Plan) -> None:
    """Write the file beside ``path`` and rename it into place: a failure leaves no half file."""
    ifaces: dict[tuple[int, _SrcIface], int] = {}
    idbs = []
    for pk in packets:
        key = (pk.point, pk.raw.iface)
        if key not in ifaces:
            ifaces[key] = len(ifaces)
            src = plan.label(pk.point)
            idbs.append(_idb(pk.raw.iface, pk.raw.iface.name or src, f"sockscope evidence from {src}"))
    special = os.path.exists(path) and not os.path.isfile(path)     # /dev/stdout, a pipe: write in place
    target = path if special else os.path.join(os.path.dirname(path) or ".",
                                               f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(target, "wb") as fh:
            fh.write(_shb(text))
            fh.write(b"".join(idbs))
            batch: list[bytes] = []
            for pk in packets:
                batch.append(_epb(ifaces[(pk.point, pk.raw.iface)], pk))
                if len(batch) >= 4096:
                    fh.write(b"".join(batch))
                    batch.clear()
            fh.write(b"".join(batch))
        if not special:
            os.replace(target, path)
    except BaseException:
        if not special:
            try:
                os.unlink(target)
            except OSError:
                pass
        raise
