"""In-process fuzz targets: one function of bytes per layer, for a coverage-guided fuzzer.

Each target takes the fuzzer's bytes and returns normally when sockscope behaved: it read the
input, or refused it with a :class:`~sockscope.errors.SockscopeError` (the documented
refusal). Anything else escapes: an exception of another family, a broken invariant
(:class:`Invariant`), an ``internal_error`` the HTTP framer swallowed, or a compiled kernel
that disagrees with the plain-Python run of its own source. Used by ``bench/fuzzcov.py``
(``make fuzz``: atheris/libFuzzer, a million inputs) and ``tests/test_fuzzcov.py`` (a short run).

``TARGETS`` (name -> target, what the bytes are):

* ``capture``: a capture file (pcap, pcapng, gzip, any link type) through the parsing core as
  ``engine.run`` wires it (reader, tracker, reassembly, HTTP framer, row store, sink), with
  the core's invariants (``mutators.analyse_core``).
* ``segments``: a program of TCP segments (:func:`segments_capture` turns it into a capture of
  up to four IPv4/IPv6 connections: flags, sequence and acknowledgement offsets around each
  side's next number, windows, payloads, time steps), through the same core. Reaches the
  tracker's and reassembly's state machines without spending the fuzzer's effort on file
  framing.
* ``http``: a program of stream events (:func:`http_events`: client/server bytes, gaps) fed to
  the compiled :class:`~sockscope.http.session.HttpSession` and to the same source run as plain
  Python; both must produce the same exchanges, violations and counters.
* ``logs``: an application log file through :func:`sockscope.logs.read_log` and, when it
  reads, :func:`~sockscope.logs.align_logs` against a small capture.
* ``load``: a capture file through ``sockscope.load`` end to end (tables, findings,
  anomalies), and the parsing core must agree with it (``mutators.check(full=True)``).

The tunnel decapsulation has no target yet: it does not exist (issue 20); its decoder will be
reached through ``capture`` and ``segments`` when it does.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import sys
import types
from pathlib import Path
from typing import Any, Callable

from . import mutators as M

REPO = Path(__file__).resolve().parents[2]


class Invariant(AssertionError):
    """sockscope returned, but what it returned contradicts itself (or its other build)."""


def _bad(res: dict[str, Any]) -> None:
    if res["outcome"] in ("exception", "invariant", "memory"):
        raise Invariant(f"{res['outcome']}: {res.get('error', '')} {res.get('detail', '')}".strip())


# ------------------------------------------------------------------------------------------
# capture and load
# ------------------------------------------------------------------------------------------

def capture(data: bytes) -> None:
    _bad(M.analyse_core(data))


def load(data: bytes) -> None:
    _bad(M.check(data, full=True))


# ------------------------------------------------------------------------------------------
# segments: a byte program -> a capture of a few TCP connections
# ------------------------------------------------------------------------------------------

class Bytes:
    """Reads integers off the front of the fuzzer's bytes; zeros once they run out."""

    __slots__ = ("b", "i")

    def __init__(self, b: bytes) -> None:
        self.b, self.i = b, 0

    def left(self) -> int:
        return len(self.b) - self.i

    def take(self, n: int) -> bytes:
        out = self.b[self.i:self.i + n]
        self.i += len(out)
        return out

    def u(self, n: int) -> int:
        return int.from_bytes(self.take(n).ljust(n, b"\0"), "big")


_PAYLOADS = (
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /exec HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\r\n",
    b"HTTP/1.0 500 x\r\n\r\n",
)
_SEG = struct.Struct("!BBhhHBB")   # who, flags, seq offset, ack offset, window, time step, payload
_ETH4 = bytes.fromhex("020000000002" "020000000001" "0800")
_ETH6 = bytes.fromhex("020000000002" "020000000001" "86dd")


def segments_capture(data: bytes) -> bytes:
    """The capture a segment program stands for (classic pcap, Ethernet).

    Header: 1 byte (flows 1-4 in bits 0-1, IPv6 in bit 2), then per flow 2-byte ports and
    4-byte initial sequence numbers for each side. Then 9-byte segments: who (flow in bits
    0-1, server in bit 2, payload kind in bits 3-4: none / a stock HTTP or TLS fragment /
    bytes taken from the program / the fragment cut at a length), TCP flags, signed offsets of
    seq and ack from the sender's and its peer's next sequence numbers, window, a time step
    (0-255 ms, 255 = 30 s), and the payload's index or length. Whatever the program leaves
    out reads as zeros, so every byte string is a capture.
    """
    r = Bytes(data)
    head = r.u(1)
    nflows, v6 = (head & 3) + 1, bool(head & 4)
    flows = []
    for k in range(nflows):
        cport, sport = r.u(2) or 40000 + k, 80 if k % 2 == 0 else 443
        cisn, sisn = r.u(4), r.u(4)
        flows.append([cport, sport, cisn, sisn])    # next seq of client, server
    buf = io.BytesIO()
    buf.write(M.pcap_header(1))
    t_us = 1_700_000_000_000_000
    c4, s4 = M.ip4("192.0.2.10"), M.ip4("198.51.100.20")
    c6, s6 = bytes.fromhex("20010db8000000000000000000000010"), bytes.fromhex("20010db8000000000000000000000020")
    n = 0
    while r.left() >= 1 and n < 2000:
        who, flags, dseq, dack, win, step, plen = _SEG.unpack(r.take(_SEG.size).ljust(_SEG.size, b"\0"))
        fl = flows[(who & 3) % nflows]
        server = bool(who & 4)
        kind = (who >> 3) & 3
        if kind == 0:
            payload = b""
        elif kind == 1:
            payload = _PAYLOADS[plen % len(_PAYLOADS)]
        elif kind == 2:
            payload = r.take(plen)
        else:
            payload = _PAYLOADS[plen % len(_PAYLOADS)][: plen >> 4]
        me, peer = (3, 2) if server else (2, 3)
        seq = (fl[me] + dseq) & 0xFFFFFFFF
        ack = (fl[peer] + dack) & 0xFFFFFFFF
        adv = len(payload) + (1 if flags & (M.SYN | M.FIN) else 0)
        if dseq >= 0:
            fl[me] = (seq + adv) & 0xFFFFFFFF
        t_us += 30_000_000 if step == 255 else step * 1000
        sp, dp = (fl[1], fl[0]) if server else (fl[0], fl[1])
        th = struct.pack("!HHIIBBHHH", sp, dp, seq, ack, 0x50, flags, win, 0, 0) + payload
        if v6:
            src, dst = (s6, c6) if server else (c6, s6)
            frame = _ETH6 + struct.pack("!IHBB", 0x60000000, len(th), 6, 64) + src + dst + th
        else:
            src, dst = (s4, c4) if server else (c4, s4)
            frame = _ETH4 + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(th), n & 0xFFFF, 0x4000,
                                        63 if server else 64, 6, 0, src, dst) + th
        buf.write(struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, len(frame), len(frame)))
        buf.write(frame)
        n += 1
    return buf.getvalue()


def segments(data: bytes) -> None:
    _bad(M.analyse_core(segments_capture(data)))


def encode_segments(flows: list[tuple[int, int, int]], segs: list[tuple[int, bool, int, int, int, int, int, int, bytes]],
                    v6: bool = False) -> bytes:
    """A segment program from flows (client port, client ISN, server ISN) and segments
    (flow, server?, payload kind, flags, seq offset, ack offset, time step, payload index or
    length, taken bytes): the seeds' writer, and the inverse of :func:`segments_capture`."""
    out = bytearray([(len(flows) - 1) | (4 if v6 else 0)])
    for cport, cisn, sisn in flows:
        out += struct.pack("!HII", cport, cisn, sisn)
    for flow, server, kind, flags, dseq, dack, step, plen, raw in segs:
        who = flow | (4 if server else 0) | kind << 3
        out += _SEG.pack(who, flags, dseq, dack, 65535, step, len(raw) if kind == 2 else plen) + raw
    return bytes(out)


def segment_seeds() -> dict[str, bytes]:
    """Small segment programs for the corpus: the conversations the detectors are about."""
    S, A, F, R, P = M.SYN, M.ACK, M.FIN, M.RST, M.PSH
    hs = [(0, False, 0, S, 0, 0, 1, 0, b""), (0, True, 0, S | A, 0, 1, 1, 0, b""), (0, False, 0, A, 1, 0, 1, 0, b"")]
    get = (0, False, 1, P | A, 1, 0, 5, 0, b"")
    ok = (0, True, 1, P | A, 0, 0, 5, 2, b"")
    fin_c, fin_s = (0, False, 0, F | A, 0, 0, 5, 0, b""), (0, True, 0, F | A, 0, 1, 1, 0, b"")
    last_ack = (0, False, 0, A, 0, 1, 1, 0, b"")
    post = (0, False, 1, P | A, 1, 0, 5, 1, b"")
    return {
        "get-ok-close": encode_segments([(40001, 1000, 5000)], hs + [get, ok, fin_c, fin_s, last_ack]),
        "client-timer": encode_segments([(40002, 1000, 5000)], hs + [post, (0, True, 0, A, 0, 0, 5, 0, b""),
                                                                     (0, False, 0, F | A, 0, 0, 255, 0, b""),
                                                                     (0, True, 1, P | A, 0, 0, 255, 2, b""),
                                                                     (0, False, 0, R, 0, 0, 1, 0, b"")]),
        "refused": encode_segments([(40003, 1000, 0)], [(0, False, 0, S, 0, 0, 1, 0, b""), (0, True, 0, R | A, 0, 1, 1, 0, b"")]),
        "retransmit": encode_segments([(40004, 1000, 5000)], hs + [post, post, post, (0, False, 0, R, 0, 0, 255, 0, b"")]),
        "chunked-v6": encode_segments([(40005, 7, 9)], hs + [get, (0, True, 1, P | A, 0, 0, 1, 3, b""),
                                                             (0, True, 1, P | A, 0, 0, 1, 4, b""), fin_s, fin_c], v6=True),
        "two-flows": encode_segments([(40006, 1, 2), (40007, 3, 4)],
                                     hs + [(1, f, k, fl, ds, da, st, pl, raw) for (_, f, k, fl, ds, da, st, pl, raw) in hs]
                                     + [get, (1, False, 2, P | A, 1, 0, 1, 0, b"GET /x HTTP/1.1\r\n\r\n"), ok]),
    }


# ------------------------------------------------------------------------------------------
# http: compiled framer against the plain-Python run of the same source
# ------------------------------------------------------------------------------------------

_PURE_PKG = "_sockscope_pure_http"


@functools.lru_cache(maxsize=1)
def pure_session() -> types.ModuleType:
    """``sockscope/http/session.py`` (and the ``_grammar`` it imports) run as plain Python,
    beside the compiled modules built from the same files. The two sources are copied to a
    directory of their own and imported from there by the normal import system (so a
    coverage tool's import hook sees them; next to the compiled modules, those would win)."""
    import hashlib
    import importlib
    import tempfile

    import sockscope.http

    root = Path(sockscope.http.__file__).parent
    srcs = {name: (root / f"{name}.py").read_bytes() for name in ("_grammar", "session")}
    digest = hashlib.sha1(b"".join(srcs.values())).hexdigest()[:12]
    # one directory per version of the sources (fuzz workers end without running atexit)
    where = Path(tempfile.gettempdir()) / f"sockscope-pure-http-{os.getuid()}-{digest}"
    where.mkdir(exist_ok=True)
    for name, text in srcs.items():
        if not (where / f"{name}.py").exists():
            tmp = where / f"{name}.{os.getpid()}.tmp"
            tmp.write_bytes(text)
            os.replace(tmp, where / f"{name}.py")
    pkg = types.ModuleType(_PURE_PKG)
    pkg.__path__ = [str(where)]
    sys.modules[_PURE_PKG] = pkg
    return importlib.import_module(f"{_PURE_PKG}.session")


def http_events(data: bytes) -> list[tuple[int, bytes | int]]:
    """A stream-event program: 3-byte events (op in bits 0-1 of the first byte: client bytes,
    server bytes, client gap, server gap; a length in the next two, the byte count taken from
    the program or the gap's size). What a program leaves out reads as zeros."""
    r = Bytes(data)
    out: list[tuple[int, bytes | int]] = []
    while r.left() >= 1 and len(out) < 4000:
        op, n = r.u(1) & 3, r.u(2)
        out.append((op, r.take(n) if op < 2 else n))
    return out


def encode_http(events: list[tuple[int, bytes | int]]) -> bytes:
    """The inverse of :func:`http_events` (the seeds' writer)."""
    out = bytearray()
    for op, v in events:
        out += struct.pack("!BH", op, len(v) if op < 2 else v)
        if op < 2:
            out += v
    return bytes(out)


def _run_session(cls: type, events: list[tuple[int, bytes | int]]) -> tuple:
    s = cls()
    for k, (op, v) in enumerate(events):
        ts, frame = 1_000_000 * (k + 1), k + 1
        if op == 0:
            s.client_data(v, ts, frame)
        elif op == 1:
            s.server_data(v, ts, frame)
        elif op == 2:
            s.client_gap(v, ts, frame)
        else:
            s.server_gap(v, ts, frame)
    exchanges = s.finish()
    return ([e.as_tuple() for e in exchanges], list(s.violations), s.violations_dropped, s.tunnel,
            s.pending, s.dropped_requests)


def http(data: bytes) -> None:
    from sockscope.http.session import HttpSession

    events = http_events(data)
    compiled = _run_session(HttpSession, events)
    if any(kind == "internal_error" for kind, _ in compiled[1]):
        raise Invariant(f"HTTP framer swallowed an internal error: {compiled[1]}")
    plain = _run_session(pure_session().HttpSession, events)
    if compiled != plain:
        diff = [name for name, a, b in zip(("exchanges", "violations", "violations_dropped", "tunnel",
                                            "pending", "dropped_requests"), compiled, plain) if a != b]
        raise Invariant(f"compiled and plain-Python HTTP framers disagree on {diff}")


def http_seeds() -> dict[str, bytes]:
    """Stream-event programs for the corpus: the message shapes the framer distinguishes."""
    get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    return {
        "get-ok": encode_http([(0, get), (1, ok)]),
        "pipelined": encode_http([(0, get * 3), (1, ok[:20]), (1, ok[20:] + ok), (1, ok)]),
        "chunked": encode_http([(0, get), (1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                              b"5;x=y\r\nhello\r\n0\r\nTrailer: 1\r\n\r\n")]),
        "gzip": encode_http([(0, get), (1, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 25\r\n\r\n"
                                           + __import__("gzip").compress(b"hello", mtime=0))]),
        "gap": encode_http([(0, b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\n"), (2, 100), (1, ok), (3, 7)]),
        "continue-head-304": encode_http([(0, b"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"),
                                          (1, b"HTTP/1.1 100 Continue\r\n\r\n"), (0, b"x"), (1, ok),
                                          (0, b"HEAD / HTTP/1.1\r\n\r\n"), (1, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
                                          (0, get), (1, b"HTTP/1.1 304 Not Modified\r\n\r\n")]),
        "connect": encode_http([(0, b"CONNECT a:443 HTTP/1.1\r\n\r\n"), (1, b"HTTP/1.1 200 OK\r\n\r\n"), (0, b"\x16\x03\x01")]),
        "upgrade": encode_http([(0, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
                                (1, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00")]),
        "close-delimited-1.0": encode_http([(0, b"GET / HTTP/1.0\r\n\r\n"), (1, b"HTTP/1.0 200 OK\r\n\r\nbody until close")]),
        "h2-preface": encode_http([(0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")]),
        "garbage-resync": encode_http([(0, b"\x00\xffnot http\r\n" + get), (1, b"junk\r\n" + ok)]),
    }


# ------------------------------------------------------------------------------------------
# logs
# ------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _log_capture() -> Any:
    import sockscope

    return sockscope.load(REPO / "captures/crafted/incident-before-fix.pcap")


def _log_path() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
    return base / f"sockscope-fuzz-{os.getpid()}.log"


_REGEXES = (None, r"(?P<ts>\S+) (?P<msg>.*)", r"^\[(?P<ts>[^\]]+)\] port=(?P<port>\d+) (?P<method>\w+) (?P<path>\S+)",
            r"(", r"(?P<ts>.*)")


def logs(data: bytes) -> None:
    """The first byte picks a regex (none, a few good ones, an invalid one); the rest is the file."""
    from sockscope.errors import SockscopeError
    from sockscope.logs import align_logs, read_log

    regex = _REGEXES[data[0] % len(_REGEXES)] if data else None
    path = _log_path()
    path.write_bytes(data[1:])
    try:
        try:
            df = read_log(path, regex)
        except SockscopeError:
            return
        if len(df) > 0 and data and data[0] & 0x80:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    align_logs(_log_capture(), df)
                except SockscopeError:
                    pass
    finally:
        path.unlink(missing_ok=True)


def log_seeds() -> dict[str, bytes]:
    out = {}
    for p in sorted(REPO.glob("captures/lab/*/*.log"))[:12]:
        b = p.read_bytes()[:6000]
        out[f"{p.parent.name}-{p.stem}"] = bytes([0x80]) + b
        out[f"{p.parent.name}-{p.stem}-plain"] = bytes([0]) + b[:1500]
    return out


# ------------------------------------------------------------------------------------------

TARGETS: dict[str, Callable[[bytes], None]] = {
    "capture": capture, "segments": segments, "http": http, "logs": logs, "load": load,
}
"""Target name -> function of the fuzzer's bytes (returns, or raises what is a bug)."""

MAX_LEN = {"capture": 65536, "segments": 4096, "http": 8192, "logs": 8192, "load": 65536}
"""Largest input per target (libFuzzer's ``-max_len``)."""


def capture_seeds(max_kb: int = 64) -> dict[str, bytes]:
    out = {}
    for p in M.seed_paths():
        if p.stat().st_size <= max_kb * 1024:
            out[p.name] = p.read_bytes()
    return out


def seeds(target: str) -> dict[str, bytes]:
    """The starting corpus of a target (name -> input)."""
    if target in ("capture", "load"):
        return capture_seeds()
    return {"segments": segment_seeds, "http": http_seeds, "logs": log_seeds}[target]()
