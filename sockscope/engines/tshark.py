"""The tshark engine: sockscope's tables rebuilt from Wireshark's dissectors.

This is the second, independent engine next to sockscope's native one. It runs
``tshark`` once over the capture, reads its field output line by line and folds every
packet into a small per-connection state (``tcp.stream``), so memory grows with the
number of connections and HTTP requests, never with the number of packets. The result is
the ``connections`` and ``requests`` tables of :mod:`sockscope.schema`.

Why a subprocess and not pyshark
--------------------------------
pyshark drives tshark through asyncio and runs its own event loop; inside Jupyter (which
already runs a loop) that fails or needs ``nest_asyncio`` hacks. A plain
``subprocess.Popen`` reading ``stdout`` works the same in scripts, notebooks and inside
``asyncio.run(...)``, and lets us stream instead of building one object per packet.

Semantics (and where they may differ from the native engine)
------------------------------------------------------------
Roles
    The client is the sender of the first bare SYN (``roles_from='syn'``); failing that,
    the receiver of a SYN-ACK (also ``'syn'``: it is handshake evidence). Without either,
    ``roles_from='heuristic'``: the sender of the first HTTP request is the client; else
    the side sending *to* the lower port (well-known/server ports are low); on a tie the
    side of the first packet.
Payload bytes
    ``client_bytes``/``server_bytes`` are the span of (unwrapped) relative TCP sequence
    numbers covered by payload, like Zeek: a retransmission never adds bytes, whatever
    tshark's retransmission heuristic calls it (it also flags out-of-order segments,
    so skipping flagged frames would undercount), and bytes missing from the capture
    still count. ``missed_bytes`` is that span minus the payload actually seen in frames
    tshark did not flag as retransmissions (an approximation of sequence holes);
    ``gaps`` counts frames flagged ``tcp.analysis.lost_segment``.
Packets
    ``client_pkts``/``server_pkts`` count every frame (pure ACKs and retransmissions
    included), ``*_ip_bytes`` sum the innermost IP total length (IPv6: payload + 40).
Close
    ``closed_by``/``close_kind``/``close_ts``/``close_frame`` describe the first FIN or RST
    of the connection. ``idle_before_close_s`` is the close time minus the last frame with
    payload (``tcp.len > 0``, either direction, TCP keep-alive probes excluded because they
    are not activity) seen before that close; null when no payload preceded the close.
    ``last_payload_ts``/``last_payload_frame``/``last_payload_by`` are that frame (the
    last payload up to and including the close frame, as in the native engine; on a
    connection that never closed, the last payload of all). Unlike the native engine a
    retransmission counts as payload here (tshark also flags out-of-order segments that
    carry new data, so its flag cannot be trusted to mean "nothing new"): after a
    retransmitted segment the two engines may name different frames. ``end`` is the last packet,
    except that, as in Zeek's ``duration``, packets after both sides sent a FIN do not
    extend it (``last_frame`` is still the very last packet).
Extra close columns (the native engine's, same meanings)
    ``client_fin_ts``/``client_fin_frame``, ``server_fin_*``, ``client_rst_*``,
    ``server_rst_*``: each side's first FIN and first RST. ``data_after_close_pkts`` /
    ``_bytes`` count payload frames (keep-alives, RSTs and retransmissions excluded: a
    frame counts when it carries sequence space that side had not sent before) after the
    close frame, from either side; ``data_after_close_frame``/``_ts``/``_by`` describe
    the first of them, ``data_after_close_rst_frame``/``_ts`` the first RST the other side
    sent after it (its kernel refusing the late data). ``protocol`` is ``http`` when tshark dissected HTTP (with a key
    log: inside TLS), else ``tls`` when it saw a TLS handshake; ``sni`` the ClientHello's
    server name.
    The requests table likewise carries ``resp_version`` and ``request_first_frame`` /
    ``request_last_frame`` / ``response_first_frame`` / ``response_last_frame``.
State and history
    A simplified Zeek derivation from flags: letters S H A D F R (repeats only on a new
    sequence number for S/H/F/R), Q (SYN with FIN/RST), and the logarithmic T (tshark
    retransmission), G (lost segment), W (zero window). No ``^`` (roles are decided once,
    after the capture), no C/I/X. ``state`` follows the decision order in the
    conformance README, where an RST after the same side's FIN keeps that side closed.
HTTP
    Requests are paired with responses first-in first-out per connection (HTTP/1.x
    answers in order; ``http.response_in`` is only filled in two-pass mode, which would
    double the run time). A 1xx other than 101 goes to ``info_code`` and the request keeps
    waiting. tshark reports a message on the frame that completes it, so ``request_end`` /
    ``response_end`` are the time of that frame; ``*_start`` is the time of the first frame
    listed in ``tcp.segment`` (the reassembled segments), else the same frame.
    ``ttfb_s = response_start - request_end``. Body lengths come from
    ``http.content_length`` (the Content-Length header), else the sum of chunk sizes for
    chunked bodies, else 0 (a body delimited by the connection's close is not measured);
    ``response_body_decoded_len`` is null. A request without response is
    ``partial_response`` when the server sent payload after it that tshark never completed
    into a response, otherwise ``no_response``; ``ended_by`` is the first FIN/RST of the
    connection (``client_fin`` ...) or ``capture_end``. Responses with no request give rows
    with ``outcome='no_request'``; every row (those included) gets the next ``index`` on
    its connection in the order the messages started. When one frame carries several HTTP
    messages (pipelining), request-line fields are matched by position; optional headers
    (Host, User-Agent, ...) are matched by position only when every message has them,
    otherwise they go to the first message.
    HTTP/2 (cleartext, or TLS with ``tls_keylog``) HEADERS blocks become request rows:
    ``:method``/``:path``/``:authority`` and ``:status`` per ``http2.streamid``; the
    ``index`` follows the order streams were opened.
    tshark dissects HTTP only on its registered ports (80, 8080, 3128, ...) and with the
    ``http_tcp`` heuristic, which this engine enables; the native engine may find HTTP
    on other ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import pandas as pd

from sockscope import schema
from sockscope.schema import CONNECTION_COLUMNS, REQUEST_COLUMNS, STALL_COLUMNS, TS, frame_from_records

__all__ = ["TsharkMissing", "TsharkFailed", "load_tables", "tshark_command", "FIELDS",
           "EXTRA_CONNECTION_COLUMNS", "EXTRA_REQUEST_COLUMNS"]


class TsharkMissing(RuntimeError):
    """tshark is not installed (or not where the caller said)."""


def _inner_ipv6(protocols: str) -> bool:
    """Is the IP layer that carries TCP IPv6? (4in6 and 6in4 tunnels carry both families.)"""
    layers = protocols.split(":")
    end = layers.index("tcp") if "tcp" in layers else len(layers)
    for name in reversed(layers[:end]):
        if name in ("ip", "ipv6"):
            return name == "ipv6"
    return True


class TsharkFailed(RuntimeError):
    """tshark ran but could not read the capture."""


# The fields we ask tshark for, in output order. Indices below refer to this list.
FIELDS: tuple[str, ...] = (
    "frame.number",  # 0
    "frame.time_epoch",  # 1
    "tcp.stream",  # 2
    "ip.src",  # 3
    "ip.dst",  # 4
    "ipv6.src",  # 5
    "ipv6.dst",  # 6
    "tcp.srcport",  # 7
    "tcp.dstport",  # 8
    "tcp.flags",  # 9
    "tcp.seq",  # 10
    "tcp.len",  # 11
    "tcp.window_size_value",  # 12
    "ip.len",  # 13
    "ipv6.plen",  # 14
    "tcp.analysis.retransmission",  # 15
    "tcp.analysis.fast_retransmission",  # 16
    "tcp.analysis.keep_alive",  # 17
    "tcp.analysis.lost_segment",  # 18
    "tcp.segment",  # 19
    "http.request.method",  # 20
    "http.request.uri",  # 21
    "http.request.version",  # 22
    "http.host",  # 23
    "http.user_agent",  # 24
    "http.response.code",  # 25
    "http.response.phrase",  # 26
    "http.response.version",  # 27
    "http.content_length",  # 28
    "http.chunk_size",  # 29
    "http.content_type",  # 30
    "http.connection",  # 31
    "http.transfer_encoding",  # 32
    "tls.handshake.type",  # 33
    "tls.handshake.extensions_server_name",  # 34
    "http2.type",  # 35
    "http2.streamid",  # 36
    "http2.header.name",  # 37
    "http2.header.value",  # 38
    "http.request",  # 39
    "http.response",  # 40
    "frame.protocols",  # 41: eth:ethertype:ip:gre:ip:tcp -- which IP layer is the innermost
    "tcp.ack",  # 42: what the sender has received of the peer's data (relative)
    "ip.ttl",  # 43: what a forged RST gives away (the innermost IP layer's, like the addresses)
    "ip.id",  # 44
    "ipv6.hlim",  # 45
)
_NF = len(FIELDS)
# Separates several occurrences of one field in a frame. A control character that
# tshark's field output never contains in the values we read.
_AGG = "\x1f"

# Preferences pinned so that a user's Wireshark profile cannot change the semantics.
_PREFS: tuple[str, ...] = (
    "tcp.desegment_tcp_streams:TRUE",
    "tcp.analyze_sequence_numbers:TRUE",
    "tcp.relative_sequence_numbers:TRUE",
    "tcp.calculate_timestamps:TRUE",
    "http.desegment_headers:TRUE",
    "http.desegment_body:TRUE",
    "http.dechunk_body:TRUE",
)

# Columns after the contract's, as the native engine adds them (the analysis layer reads
# them): declared once, in sockscope.schema; this engine has no endpoint states, tunnels
# or capture points of its own.
_NATIVE_ONLY = ("client_state", "server_state", "tunnel", "tunnel_id", "capture", "twin_conn_id")
EXTRA_CONNECTION_COLUMNS: dict[str, Any] = {k: v for k, v in schema.extended_pandas("connections").items()
                                            if k not in _NATIVE_ONLY}
EXTRA_REQUEST_COLUMNS: dict[str, Any] = {k: v for k, v in schema.extended_pandas("requests").items()
                                         if k not in _NATIVE_ONLY}

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_TWO32 = 1 << 32


def _epoch_ns(text: str) -> int:
    """``'1258577884.822720000'`` -> integer nanoseconds, exactly (no float)."""
    sec, _, frac = text.partition(".")
    neg = sec.startswith("-")
    ns = abs(int(sec or "0")) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if neg else ns


def _find_tshark(tshark: str | None) -> str:
    exe = shutil.which(tshark or "tshark")
    if exe is None:
        raise TsharkMissing(
            f"tshark not found ({tshark or 'tshark'} is not on PATH): "
            "install it with `apt-get install tshark` (or pass tshark=/path/to/tshark)"
        )
    return exe


def tshark_command(
    path: str,
    *,
    tls_keylog: str | None = None,
    tshark: str | None = None,
    fields: Sequence[str] = FIELDS,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The exact tshark command line :func:`load_tables` runs (useful for debugging)."""
    cmd = [_find_tshark(tshark), "-r", os.fspath(path), "-n"]
    for p in _PREFS:
        cmd += ["-o", p]
    if tls_keylog:
        cmd += ["-o", f"tls.keylog_file:{os.fspath(tls_keylog)}"]
    # HTTP on ports tshark does not associate with HTTP (the native engine frames HTTP by
    # content, so this keeps the two closer).
    cmd += ["--enable-heuristic", "http_tcp"]
    # VXLAN on Linux's old default port too, as the native reader decodes it
    cmd += ["-d", "udp.port==8472,vxlan"]
    cmd += list(extra_args)
    cmd += ["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", f"aggregator={_AGG}"]
    cmd += ["-E", "header=n", "-E", "quote=n"]
    for f in fields:
        cmd += ["-e", f]
    # ICMP errors quote a TCP header; those frames are not part of the connection.
    cmd += ["-Y", "tcp and not icmp and not icmpv6"]
    return cmd


# --------------------------------------------------------------------------- state


@dataclass
class _Side:
    """Per-direction counters of one connection (the sender is this side)."""

    ip: str
    port: int
    pkts: int = 0
    ip_bytes: int = 0
    unique_payload: int = 0
    seq_ref: int | None = None  # last unwrapped sequence number seen
    seq_lo: int | None = None
    seq_hi: int | None = None
    syn_seq: int | None = None
    sent_syn: bool = False
    sent_synack: bool = False
    sent_ack: bool = False  # an ACK-flagged packet other than its RST
    fin_frame: int | None = None
    rst_frame: int | None = None
    fin_ns: int | None = None
    rst_ns: int | None = None
    data: bool = False
    gap: bool = False
    last_letter_seq: dict[str, int] = field(default_factory=dict)
    log_counts: dict[str, int] = field(default_factory=dict)
    # Payload frames since the last HTTP message this side sent: frame -> ns. Only the
    # first few are kept: a message's first segment is always among the earliest.
    pending: dict[int, int] = field(default_factory=dict)
    last_msg_frame: int = 0
    last_pkt_ns: int | None = None
    ttl_min: int | None = None
    ttl_max: int | None = None
    ip_id_last: int | None = None       # None: none yet or IPv6
    rst_ttl: int | None = None
    rst_ip_id: int | None = None
    ip_id_before_rst: int | None = None
    # this side's data as the peer acknowledged it: the end of its sequence space (a FIN
    # counts one), the peer's highest ACK, and the flight not yet acknowledged
    last_end: int | None = None
    ack_hi: int | None = None
    flight_ns: int | None = None
    flight_frame: int = 0
    flight_rexmit: int = 0
    flight_ack0: int | None = None      # the peer's highest ACK when the flight began
    unseen_acked: int = 0               # bytes the peer acknowledged that no captured packet carried,
    unseen_ns: int | None = None        # and when the last of them (beyond a FIN's one) was acknowledged
    # a zero-window stall this side advertises, and the peer's probes in it; a run of this
    # side's keep-alive probes the peer has not answered (the native tracker's rules)
    zw_ns: int | None = None
    zw_frame: int = 0
    zw_probes: int = 0
    ka_ns: int | None = None
    ka_frame: int = 0
    ka_n: int = 0
    ka_last_ns: int = 0
    ka_last_frame: int = 0
    ka_quiet_ns: int | None = None

    def unwrap(self, seq: int) -> int:
        if self.seq_ref is None:
            u = seq
        else:
            diff = (seq - self.seq_ref) % _TWO32
            if diff >= _TWO32 // 2:
                diff -= _TWO32
            u = self.seq_ref + diff
        self.seq_ref = u
        return u

    def span(self) -> int:
        if self.seq_hi is None or self.seq_lo is None:
            return 0
        lo = self.seq_lo
        if self.syn_seq is not None and self.syn_seq + 1 < lo:
            lo = self.syn_seq + 1
        return max(0, self.seq_hi - lo)


_PENDING_CAP = 64
_STALL_FLOOR_NS = 200_000_000   # zero-window stalls that ended sooner are not kept (as native)
_MAX_STALLS = 64                # per connection
_LOG_LETTERS = {"T", "G", "W"}


@dataclass
class _Msg:
    """One HTTP message (request or response) as tshark reported it."""

    is_request: bool
    start_ns: int
    start_frame: int
    end_ns: int
    end_frame: int
    side: int
    method: str | None = None
    uri: str | None = None
    version: str | None = None
    host: str | None = None
    user_agent: str | None = None
    status: int | None = None
    reason: str | None = None
    body_len: int = 0
    content_type: str | None = None
    connection: str | None = None
    http2_stream: int | None = None


@dataclass
class _Stream:
    conn_id: int
    first_frame: int
    start_ns: int
    sides: list[_Side] = field(default_factory=list)
    last_frame: int = 0
    end_ns: int = 0
    seen_ns: int = 0                     # the truly last packet (end_ns stops at the second FIN)
    close_side: int | None = None
    close_by_ack: bool = False      # the close is a FIN never captured, known from the peer's ACK
    close_kind: str | None = None
    close_ns: int | None = None
    close_frame: int | None = None
    idle_ns: int | None = None
    last_payload_ns: int | None = None
    last_payload_frame: int | None = None
    last_payload_side: int | None = None
    late_pkts: int = 0
    late_bytes: int = 0
    late_ns: int | None = None
    late_frame: int | None = None
    late_side: int | None = None
    late_rst_ns: int | None = None       # the first RST answering that late data
    late_rst_frame: int | None = None
    retransmits: int = 0
    gaps: int = 0
    is_http: bool = False
    is_tls: bool = False
    sni: str | None = None
    syn_side: int | None = None
    synack_side: int | None = None
    first_request_side: int | None = None
    history: list[tuple[int, str]] = field(default_factory=list)
    # HTTP/1.x: requests waiting for their response (FIFO), finished exchanges in order.
    waiting: deque = field(default_factory=deque)
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    # HTTP/2: stream id -> exchange under construction (bounded by open h2 streams).
    h2_open: dict[int, dict[str, Any]] = field(default_factory=dict)
    # (kind, side index, start ns, start frame, end ns, end frame, probes, resolved, quiet ns)
    stalls: list[tuple[Any, ...]] = field(default_factory=list)

    def side_of(self, ip: str, port: int) -> int:
        for i, s in enumerate(self.sides):
            if s.port == port and s.ip == ip:
                return i
        self.sides.append(_Side(ip, port))
        return len(self.sides) - 1


def _vals(text: str) -> list[str]:
    return text.split(_AGG) if text else []


def _last(text: str) -> str:
    return text.rsplit(_AGG, 1)[-1] if text else ""


def _int(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(text, 0) if text.startswith("0x") else int(text)
    except ValueError:
        return None


def _add_letter(st: _Stream, side_i: int, side: _Side, letter: str, seq: int | None = None) -> None:
    """Zeek's history rules: A/D/Q once, S/H/F/R again only on a new sequence number,
    T/G/W logarithmically (1st, 10th, 100th ...)."""
    if letter in _LOG_LETTERS:
        n = side.log_counts.get(letter, 0) + 1
        side.log_counts[letter] = n
        if n in (1, 10, 100, 1000, 10000, 100000):
            st.history.append((side_i, letter))
        return
    if letter in ("A", "D", "Q"):
        if letter in side.last_letter_seq:
            return
        side.last_letter_seq[letter] = 0
        st.history.append((side_i, letter))
        return
    if side.last_letter_seq.get(letter, None) == seq and letter in side.last_letter_seq:
        return
    side.last_letter_seq[letter] = seq if seq is not None else -1
    st.history.append((side_i, letter))


def _version(v: str | None) -> str | None:
    if not v:
        return None
    return v[5:] if v.upper().startswith("HTTP/") else v


def _per_message(values: list[str], n: int) -> list[str | None]:
    """Attribute occurrences of an optional header to ``n`` messages of one frame."""
    if n <= 0:
        return []
    if len(values) == n:
        return list(values)
    out: list[str | None] = [None] * n
    if values:
        out[0] = values[0]
    return out


def _body_len(content_length: str | None, chunks: list[str]) -> int:
    cl = _int(content_length)
    if cl is not None:
        return cl
    if chunks:
        return sum(_int(c) or 0 for c in chunks)
    return 0


class _Builder:
    """Folds tshark's lines into per-stream state and emits the two tables."""

    def __init__(self) -> None:
        self.streams: dict[int, _Stream] = {}
        self.capture_end_ns: int | None = None
        self.capture_start_ns: int | None = None
        self.max_frame = 0
        self.lines = 0
        self.bad_lines = 0

    # ---------------------------------------------------------------- per packet
    def feed(self, line: str) -> None:
        parts = line.rstrip("\n").split("\t")
        if len(parts) != _NF:
            self.bad_lines += 1
            return
        try:
            frame = int(parts[0])
            ts = _epoch_ns(parts[1])
            conn_id = int(_vals(parts[2])[0])
        except (ValueError, IndexError):
            self.bad_lines += 1
            return
        self.lines += 1
        self.capture_end_ns = ts if self.capture_end_ns is None else max(self.capture_end_ns, ts)
        self.capture_start_ns = ts if self.capture_start_ns is None else min(self.capture_start_ns, ts)
        self.max_frame = max(self.max_frame, frame)
        if parts[5] and _inner_ipv6(parts[41]):
            src, dst = _last(parts[5]), _last(parts[6])
            ipb = (_int(_last(parts[14])) or 0) + 40
            ttl, ip_id = _int(_last(parts[45])), None
        else:
            src, dst = _last(parts[3]), _last(parts[4])
            ipb = _int(_last(parts[13])) or 0
            ttl, ip_id = _int(_last(parts[43])), _int(_last(parts[44]))
        sport = _int(_vals(parts[7])[0]) if parts[7] else 0
        dport = _int(_vals(parts[8])[0]) if parts[8] else 0
        flags = (_int(_vals(parts[9])[0]) or 0) if parts[9] else 0
        seq = _int(_vals(parts[10])[0]) if parts[10] else None
        tlen = (_int(_vals(parts[11])[0]) or 0) if parts[11] else 0
        win = _int(_vals(parts[12])[0]) if parts[12] else None
        retx = bool(parts[15]) or bool(parts[16])
        keepalive = bool(parts[17])
        lost = bool(parts[18])

        st = self.streams.get(conn_id)
        if st is None:
            st = _Stream(conn_id, frame, ts)
            self.streams[conn_id] = st
        si = st.side_of(src, sport or 0)
        st.side_of(dst, dport or 0)  # both sides exist from the first packet on
        side = st.sides[si]
        st.last_frame = frame
        st.seen_ns = max(st.seen_ns, ts)
        # Like Zeek's duration: once both sides have sent a FIN, later packets (final
        # ACK, late RST, retransmitted FIN) no longer extend the connection.
        if not (len(st.sides) == 2 and st.sides[0].fin_frame and st.sides[1].fin_frame):
            st.end_ns = max(st.end_ns, ts)
        side.pkts += 1
        side.ip_bytes += ipb

        syn, fin, rst, ack = flags & _SYN, flags & _FIN, flags & _RST, flags & _ACK
        if rst:
            if side.rst_ttl is None and ttl is not None:
                side.rst_ttl, side.rst_ip_id, side.ip_id_before_rst = ttl, ip_id, side.ip_id_last
        elif ttl is not None:
            side.ttl_min = ttl if side.ttl_min is None else min(side.ttl_min, ttl)
            side.ttl_max = ttl if side.ttl_max is None else max(side.ttl_max, ttl)
            side.ip_id_last = ip_id
        useq = side.unwrap(seq) if seq is not None else None

        # --- history letters and handshake facts
        if syn:
            if fin or rst:
                _add_letter(st, si, side, "Q")
            if ack:
                side.sent_synack = True
                if st.synack_side is None:
                    st.synack_side = si
                _add_letter(st, si, side, "H", useq)
            else:
                side.sent_syn = True
                if st.syn_side is None:
                    st.syn_side = si
                _add_letter(st, si, side, "S", useq)
            if useq is not None and (side.syn_seq is None or not ack):
                side.syn_seq = useq
        if ack and not rst:
            side.sent_ack = True
        if tlen > 0 and not keepalive:
            side.data = True
            _add_letter(st, si, side, "D")
        elif ack and not (syn or fin or rst) and tlen == 0:
            _add_letter(st, si, side, "A")
        if retx:
            st.retransmits += 1
            if tlen > 0:
                _add_letter(st, si, side, "T")
        if lost:
            st.gaps += 1
            side.gap = True
            _add_letter(st, si, side, "G")
        if win == 0 and not rst and not syn:
            _add_letter(st, si, side, "W")
        self._stalls(st, si, side, frame, ts, syn, fin, rst, keepalive, win)
        if fin:
            if side.fin_frame is None:
                side.fin_frame, side.fin_ns = frame, ts
            _add_letter(st, si, side, "F", None if useq is None else useq + tlen)
        if rst:
            if side.rst_frame is None:
                side.rst_frame, side.rst_ns = frame, ts
            if st.late_frame is not None and st.late_rst_frame is None and si != st.late_side:
                st.late_rst_ns, st.late_rst_frame = ts, frame   # the kernel refusing the late data
            _add_letter(st, si, side, "R", useq)

        # --- payload accounting
        # New sequence space (for data after the close; retransmissions never count).
        advances = (
            tlen > 0 and not keepalive and useq is not None
            and (side.seq_hi is None or useq + tlen > side.seq_hi)
        )
        self._flight(st, si, side, frame, ts, useq, tlen, fin, rst, ack, advances, retx,
                     _int(_vals(parts[42])[0]) if parts[42] else None)
        if tlen > 0 and useq is not None and not keepalive:
            end = useq + tlen
            side.seq_lo = useq if side.seq_lo is None else min(side.seq_lo, useq)
            side.seq_hi = end if side.seq_hi is None else max(side.seq_hi, end)
        if tlen > 0 and not retx and not keepalive:
            side.unique_payload += tlen
        if tlen > 0 and not keepalive:
            if st.close_frame is None or st.close_frame == frame:
                # Up to and including the close frame (data on a FIN is activity).
                st.last_payload_ns, st.last_payload_frame, st.last_payload_side = ts, frame, si
            elif advances and not rst:
                st.late_pkts += 1
                st.late_bytes += tlen
                if st.late_frame is None:
                    st.late_ns, st.late_frame, st.late_side = ts, frame, si
            if not retx and len(side.pending) < _PENDING_CAP:
                side.pending[frame] = ts

        # --- the first FIN or RST closes the connection
        if (fin or rst) and st.close_side is None:
            st.close_side = si
            st.close_kind = "RST" if rst else "FIN"
            st.close_ns, st.close_frame = ts, frame
            if st.last_payload_ns is not None:
                st.idle_ns = ts - st.last_payload_ns

        # --- application layer
        if parts[33]:
            st.is_tls = True
        if parts[34] and st.sni is None:
            st.sni = _vals(parts[34])[0]
        if parts[20] or parts[25] or parts[39] or parts[40]:
            st.is_http = True
            self._http1(st, si, side, frame, ts, parts)
        if parts[37]:
            self._http2(st, si, frame, ts, parts)

    @staticmethod
    def _stalls(st: _Stream, si: int, side: _Side, frame: int, ts: int, syn: int, fin: int, rst: int,
                keepalive: bool, win: int | None) -> None:
        """Zero-window stalls and unanswered keep-alive runs, by the native tracker's rules;
        a probe is what tshark flags ``tcp.analysis.keep_alive`` (Linux's window probes are
        such segments too; a probe carrying one new byte past the window is not counted)."""
        peer = st.sides[1 - si] if len(st.sides) == 2 else None
        if peer is not None:
            peer.ka_ns = None               # any packet answers the peer's keep-alive run
        if not rst and not syn:
            if keepalive and not fin:
                if peer is not None and peer.zw_ns is not None:
                    peer.zw_probes += 1
                else:
                    if side.ka_ns is None:
                        side.ka_ns, side.ka_frame, side.ka_n = ts, frame, 0
                        quiet = None if peer is None or peer.last_pkt_ns is None else ts - peer.last_pkt_ns
                        side.ka_quiet_ns = quiet
                    side.ka_n += 1
                    side.ka_last_ns, side.ka_last_frame = ts, frame
            if win == 0:
                if side.zw_ns is None:
                    side.zw_ns, side.zw_frame, side.zw_probes = ts, frame, 0
            elif side.zw_ns is not None:
                if ts - side.zw_ns >= _STALL_FLOOR_NS and len(st.stalls) < _MAX_STALLS:
                    st.stalls.append(("zero_window", si, side.zw_ns, side.zw_frame, ts, frame,
                                      side.zw_probes, True, None))
                side.zw_ns = None
        side.last_pkt_ns = ts

    @staticmethod
    def _flight(st: _Stream, si: int, side: _Side, frame: int, ts: int, useq: int | None, tlen: int,
                fin: int, rst: int, ack: int, advances: bool, retx: bool, ack_no: int | None) -> None:
        """The unacknowledged flight, by the native tracker's rule: it begins with new data
        when none is outstanding and ends when the peer's ACK covers all this side sent."""
        peer = st.sides[1 - si] if len(st.sides) == 2 else None
        if peer is not None and ack and not rst and ack_no is not None:
            if peer.ack_hi is None:
                peer.ack_hi = ack_no
            else:
                diff = (ack_no - peer.ack_hi) % _TWO32
                if diff < _TWO32 // 2 and not peer.pkts and not rst:
                    # a peer never captured: an ACK one past all it sent is its FIN (the
                    # native tracker's unseen_fin); withdrawn if the ACKs go further
                    if st.close_by_ack:
                        if diff and st.close_side == 1 - si:
                            st.close_side = st.close_kind = st.close_ns = st.close_frame = st.idle_ns = None
                            st.close_by_ack = False
                    elif diff == 1 and st.close_side is None:
                        st.close_side, st.close_kind, st.close_ns, st.close_frame = 1 - si, "FIN", ts, frame
                        st.close_by_ack = True
                        if st.last_payload_ns is not None:
                            st.idle_ns = ts - st.last_payload_ns
                if diff < _TWO32 // 2:
                    # beyond what the peer was seen sending: bytes only its ACKs tell of
                    seen = peer.ack_hi if peer.last_end is None else max(peer.ack_hi, peer.last_end)
                    peer.ack_hi += diff
                    beyond = peer.ack_hi - seen
                    if beyond > 0:
                        peer.unseen_acked += beyond
                        if beyond >= 2:
                            peer.unseen_ns = ts
            if peer.flight_ns is not None and peer.last_end is not None and peer.ack_hi >= peer.last_end:
                peer.flight_ns = None
        if useq is not None and not rst:
            end = useq + tlen + (1 if fin else 0)
            if side.last_end is None or end > side.last_end:
                side.last_end = end
        if advances and side.flight_ns is None:
            side.flight_ns, side.flight_frame, side.flight_rexmit = ts, frame, 0
            side.flight_ack0 = side.ack_hi if side.ack_hi is not None else useq
        elif tlen > 0 and retx and side.flight_ns is not None:
            side.flight_rexmit += 1

    @staticmethod
    def _unacked(side: _Side, peer: _Side, prefix: str) -> dict[str, Any]:
        """The ``*_unacked_*`` columns of one side."""
        open_ = side.flight_ns is not None and side.last_end is not None and (
            side.ack_hi is None or side.ack_hi < side.last_end)
        if not open_:
            return {}
        base = side.ack_hi if side.ack_hi is not None else (side.seq_lo or 0)
        quiet = None
        if peer.last_pkt_ns is not None and peer.last_pkt_ns < side.flight_ns:
            quiet = (side.flight_ns - peer.last_pkt_ns) / 1e9
        return {f"{prefix}_unacked_since_ts": side.flight_ns, f"{prefix}_unacked_since_frame": side.flight_frame,
                f"{prefix}_unacked_retransmits": side.flight_rexmit,
                f"{prefix}_unacked_bytes": max(0, side.last_end - base - (1 if side.fin_frame else 0)),
                f"{prefix}_unacked_peer_quiet_s": quiet,
                f"{prefix}_unacked_acked_bytes": max(0, side.ack_hi - side.flight_ack0)
                if side.ack_hi is not None and side.flight_ack0 is not None else 0}

    @staticmethod
    def _unseen(side: _Side, prefix: str) -> dict[str, Any]:
        """Bytes a side sent that no captured packet carried (its peer's ACKs tell), and when."""
        if not side.unseen_acked:
            return {}
        return {f"{prefix}_unseen_acked_bytes": side.unseen_acked, f"{prefix}_unseen_acked_ts": side.unseen_ns}

    @staticmethod
    def _open_stalls(st: _Stream) -> list[tuple[Any, ...]]:
        """The stalls of a stream, with those still open at its end: the window never
        reopened, the probes were never answered."""
        out = list(st.stalls)
        for si, side in enumerate(st.sides):
            if len(out) >= _MAX_STALLS:
                break
            if side.zw_ns is not None:
                out.append(("zero_window", si, side.zw_ns, side.zw_frame, st.seen_ns,
                            st.last_frame, side.zw_probes, False, None))
            if side.ka_ns is not None:
                out.append(("keepalive", si, side.ka_ns, side.ka_frame, side.ka_last_ns, side.ka_last_frame,
                            side.ka_n, False, side.ka_quiet_ns))
        return sorted(out[:_MAX_STALLS], key=lambda t: t[2])

    def _http1(self, st: _Stream, si: int, side: _Side, frame: int, ts: int, parts: list[str]) -> None:
        methods = _vals(parts[20])
        codes = _vals(parts[25])
        n_req, n_resp = len(methods), len(codes)
        n = n_req + n_resp
        if n == 0:
            return
        segs = [int(x) for x in _vals(parts[19]) if x.isdigit()]
        first = min(segs) if segs else frame
        # Fall back to this frame's time when the first segment was not kept.
        first_ns = side.pending.get(first, ts)
        if first not in side.pending:
            first = frame
        # Optional headers cover all messages of the frame.
        hosts = _per_message(_vals(parts[23]), n_req)
        uas = _per_message(_vals(parts[24]), n_req)
        uris = _vals(parts[21])
        rvers = _vals(parts[22])
        phrases = _vals(parts[26])
        svers = _vals(parts[27])
        cls = _per_message(_vals(parts[28]), n)
        cts = _per_message(_vals(parts[30]), n)
        conns = _per_message(_vals(parts[31]), n)
        chunks = _vals(parts[29])
        msgs: list[_Msg] = []
        for k in range(n_req):
            m = _Msg(True, first_ns if k == 0 else ts, first if k == 0 else frame, ts, frame, si)
            m.method = methods[k]
            m.uri = uris[k] if k < len(uris) else None
            m.version = _version(rvers[k] if k < len(rvers) else None)
            m.host, m.user_agent = hosts[k], uas[k]
            m.body_len = _body_len(cls[k], chunks if n == 1 else [])
            m.content_type, m.connection = cts[k], conns[k]
            msgs.append(m)
        for k in range(n_resp):
            j = n_req + k
            m = _Msg(False, first_ns if j == 0 else ts, first if j == 0 else frame, ts, frame, si)
            m.status = _int(codes[k])
            m.reason = phrases[k] if k < len(phrases) else None
            m.version = _version(svers[k] if k < len(svers) else None)
            m.body_len = _body_len(cls[j], chunks if n == 1 else [])
            m.content_type, m.connection = cts[j], conns[j]
            msgs.append(m)
        # This frame may already hold the start of the next message.
        side.pending = {frame: ts}
        side.last_msg_frame = frame
        for m in msgs:
            if m.is_request:
                if st.first_request_side is None:
                    st.first_request_side = si
                ex = {"req": m, "resp": None, "info_code": None}
                st.waiting.append(ex)
                st.exchanges.append(ex)
            else:
                if m.status is not None and 100 <= m.status < 200 and m.status != 101:
                    if st.waiting:
                        st.waiting[0]["info_code"] = m.status
                    continue
                if st.waiting:
                    ex = st.waiting.popleft()
                    ex["resp"] = m
                else:
                    st.exchanges.append({"req": None, "resp": m, "info_code": None})

    def _http2(self, st: _Stream, si: int, frame: int, ts: int, parts: list[str]) -> None:
        # HEADERS frames (type 1) are listed in order; split the flat header list into
        # blocks, one per HEADERS frame, where a pseudo-header follows a regular header
        # or repeats one already in the block. A trailer block (no pseudo-header) makes
        # the counts disagree and the frame is skipped rather than guessed.
        types = _vals(parts[35])
        sids = _vals(parts[36])
        hdr_sids = [_int(s) for t, s in zip(types, sids) if t == "1"]
        names, values = _vals(parts[37]), _vals(parts[38])
        blocks: list[dict[str, str]] = []
        prev_pseudo = False
        for name, value in zip(names, values):
            pseudo = name.startswith(":")
            if not blocks or (pseudo and (not prev_pseudo or name in blocks[-1])):
                blocks.append({})
            blocks[-1].setdefault(name, value)
            prev_pseudo = pseudo
        if len(blocks) != len(hdr_sids):
            return  # cannot tell which block belongs to which stream: skip
        st.is_http = True
        for sid, blk in zip(hdr_sids, blocks):
            if sid is None:
                continue
            if ":method" in blk:
                m = _Msg(True, ts, frame, ts, frame, si, method=blk.get(":method"),
                         uri=blk.get(":path"), version="2", host=blk.get(":authority"),
                         user_agent=blk.get("user-agent"), content_type=blk.get("content-type"),
                         http2_stream=sid)
                m.body_len = _int(blk.get("content-length")) or 0
                if st.first_request_side is None:
                    st.first_request_side = si
                ex = {"req": m, "resp": None, "info_code": None}
                st.h2_open[sid] = ex
                st.exchanges.append(ex)
            elif ":status" in blk:
                status = _int(blk.get(":status"))
                m = _Msg(False, ts, frame, ts, frame, si, status=status, version="2",
                         content_type=blk.get("content-type"), http2_stream=sid)
                m.body_len = _int(blk.get("content-length")) or 0
                ex = st.h2_open.get(sid)
                if status is not None and 100 <= status < 200:
                    if ex is not None:
                        ex["info_code"] = status
                    continue
                if ex is None:
                    st.exchanges.append({"req": None, "resp": m, "info_code": None})
                else:
                    ex["resp"] = m
                    del st.h2_open[sid]

    # ---------------------------------------------------------------- tables
    def _client_index(self, st: _Stream) -> tuple[int, str]:
        if st.syn_side is not None:
            return st.syn_side, "syn"
        if st.synack_side is not None:
            return 1 - st.synack_side, "syn"
        if st.first_request_side is not None:
            return st.first_request_side, "heuristic"
        a, b = st.sides[0], st.sides[1]
        # The client sends to the lower (well-known) port.
        if a.port != b.port:
            return (0 if b.port < a.port else 1), "heuristic"
        return 0, "heuristic"

    @staticmethod
    def _state(o: _Side, r: _Side, hist_o: str) -> str:
        # On an established connection an RST after the same side's FIN leaves that side
        # closed (Zeek: FIN, RST, peer FIN is SF in tcp-irc-starttls); before the
        # handshake completed it counts as a reset ('SaFR' is OTH, not SH).
        established = o.sent_syn and r.sent_synack

        def final(s: _Side) -> str:
            if s.rst_frame is not None and not (
                established and s.fin_frame is not None and s.fin_frame < s.rst_frame
            ):
                return "reset"
            return "closed" if s.fin_frame is not None else "open"

        def active(s: _Side) -> bool:
            # A bare ACK alone does not make a side active (Zeek: 'SaR' is RSTOS0).
            return bool(s.sent_syn or s.sent_synack or s.data or s.fin_frame or s.rst_frame)

        fo, fr = final(o), final(r)
        r_active, o_active = active(r), active(o)
        if fr == "reset":
            if (o.sent_syn and not r.sent_synack) or (fo == "reset" and not o.data and not r.data):
                return "REJ"
            if not o.sent_syn:
                return "RSTRH"
            return "RSTR"
        if fo == "reset":
            if not r_active:
                if hist_o.startswith("S") and not (o.sent_synack or o.sent_ack or o.fin_frame or o.gap):
                    return "RSTOS0"
                return "OTH"
            return "RSTO"
        if fo == "closed" and fr == "closed":
            return "SF"
        if fo == "closed":
            return "SH" if not r_active else "S2"
        if fr == "closed":
            return "SHR" if not o_active else "S3"
        if o.sent_syn and not r_active:
            return "S0"
        if o.sent_syn and r.sent_synack:
            return "S1"
        return "OTH"

    def tables(self) -> dict[str, pd.DataFrame]:
        conns: list[dict[str, Any]] = []
        reqs: list[dict[str, Any]] = []
        stalls: list[dict[str, Any]] = []
        for conn_id in sorted(self.streams):
            st = self.streams[conn_id]
            if len(st.sides) < 2:
                st.side_of("", 0)
            ci, roles_from = self._client_index(st)
            c, s = st.sides[ci], st.sides[1 - ci]
            role = {ci: "client", 1 - ci: "server"}
            history = "".join(
                letter if side_i == ci else letter.lower() for side_i, letter in st.history
            )
            hist_o = "".join(letter for side_i, letter in st.history if side_i == ci)
            cspan, sspan = c.span(), s.span()
            ended_by = "capture_end"
            if st.close_side is not None:
                ended_by = f"{role[st.close_side]}_{st.close_kind.lower()}"
            rows = self._request_rows(st, ci, ended_by)
            reqs.extend(rows)
            for kind, si, t0, f0, t1, f1, probes, resolved, quiet in self._open_stalls(st):
                stalls.append({"conn_id": conn_id, "kind": kind, "side": role[si], "start": t0, "end": t1,
                               "duration_s": (t1 - t0) / 1e9, "start_frame": f0, "end_frame": f1,
                               "probes": probes, "resolved": resolved,
                               "peer_quiet_before_s": None if quiet is None else quiet / 1e9})
            n_req = sum(1 for r in rows if r["outcome"] != "no_request")
            n_unans = sum(1 for r in rows if r["outcome"] in ("no_response", "partial_response"))
            conns.append(
                {
                    "conn_id": conn_id,
                    "client_ip": c.ip,
                    "client_port": c.port,
                    "server_ip": s.ip,
                    "server_port": s.port,
                    "roles_from": roles_from,
                    "start": st.start_ns,
                    "end": st.end_ns,
                    "duration_s": (st.end_ns - st.start_ns) / 1e9,
                    "client_pkts": c.pkts,
                    "server_pkts": s.pkts,
                    "client_bytes": cspan,
                    "server_bytes": sspan,
                    "client_ip_bytes": c.ip_bytes,
                    "server_ip_bytes": s.ip_bytes,
                    "state": self._state(c, s, hist_o),
                    "history": history,
                    "closed_by": None if st.close_side is None else role[st.close_side],
                    "close_kind": st.close_kind,
                    "close_ts": st.close_ns,
                    "close_frame": st.close_frame,
                    "close_by_ack": st.close_by_ack,
                    "idle_before_close_s": None if st.idle_ns is None else st.idle_ns / 1e9,
                    "requests": n_req,
                    "unanswered": n_unans,
                    "protocol": "http" if st.is_http else ("tls" if st.is_tls else "unknown"),
                    "sni": st.sni,
                    "retransmits": st.retransmits,
                    "gaps": st.gaps,
                    "missed_bytes": max(0, cspan - c.unique_payload) + max(0, sspan - s.unique_payload),
                    "last_payload_ts": st.last_payload_ns,
                    "last_payload_frame": st.last_payload_frame,
                    "first_frame": st.first_frame,
                    "last_frame": st.last_frame,
                    # the native engine's extra columns, same meanings
                    "last_payload_by": None if st.last_payload_side is None else role[st.last_payload_side],
                    "client_fin_ts": c.fin_ns,
                    "client_fin_frame": c.fin_frame,
                    "server_fin_ts": s.fin_ns,
                    "server_fin_frame": s.fin_frame,
                    "client_rst_ts": c.rst_ns,
                    "client_rst_frame": c.rst_frame,
                    "server_rst_ts": s.rst_ns,
                    "server_rst_frame": s.rst_frame,
                    "data_after_close_pkts": st.late_pkts,
                    "data_after_close_bytes": st.late_bytes,
                    "data_after_close_frame": st.late_frame,
                    "data_after_close_ts": st.late_ns,
                    "data_after_close_by": None if st.late_side is None else role[st.late_side],
                    "data_after_close_rst_ts": st.late_rst_ns,
                    "data_after_close_rst_frame": st.late_rst_frame,
                    **{f"{who}_{k}": getattr(x, k) for who, x in (("client", c), ("server", s))
                       for k in ("ttl_min", "ttl_max", "rst_ttl", "rst_ip_id", "ip_id_before_rst")},
                    **self._unacked(c, s, "client"),
                    **self._unacked(s, c, "server"),
                    **self._unseen(c, "client"),
                    **self._unseen(s, "server"),
                }
            )
        connections = _typed(conns, {**CONNECTION_COLUMNS, **EXTRA_CONNECTION_COLUMNS})
        requests = _typed(reqs, {**REQUEST_COLUMNS, **EXTRA_REQUEST_COLUMNS})
        # float64 holds NaN for "no payload before the close".
        for col in ("idle_before_close_s", "client_unacked_peer_quiet_s", "server_unacked_peer_quiet_s"):
            connections[col] = connections[col].astype("float64")
        requests["ttfb_s"] = requests["ttfb_s"].astype("float64")
        stall_table = _typed(stalls, STALL_COLUMNS)
        for col in ("duration_s", "peer_quiet_before_s"):
            stall_table[col] = stall_table[col].astype("float64")
        return {"connections": connections, "requests": requests, "stalls": stall_table}

    @staticmethod
    def _request_rows(st: _Stream, ci: int, ended_by: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        exchanges = sorted(
            st.exchanges,
            key=lambda ex: (ex["req"] or ex["resp"]).start_frame,
        )
        server = st.sides[1 - ci]
        # Server payload never completed into a response (tshark only reports whole messages).
        leftover = None
        after = [f for f in server.pending if f > server.last_msg_frame]
        if after:
            f = min(after)
            leftover = (f, server.pending[f])
        for index, ex in enumerate(exchanges, start=1):
            q: _Msg | None = ex["req"]
            p: _Msg | None = ex["resp"]
            row: dict[str, Any] = {"conn_id": st.conn_id, "index": index, "info_code": ex["info_code"]}
            if q is not None:
                row.update(
                    method=q.method, uri=q.uri, host=q.host, user_agent=q.user_agent,
                    version=q.version, request_start=q.start_ns, request_end=q.end_ns,
                    request_body_len=q.body_len, req_content_type=q.content_type,
                    req_connection=q.connection, first_frame=q.start_frame, last_frame=q.end_frame,
                    request_first_frame=q.start_frame, request_last_frame=q.end_frame,
                )
            else:
                row.update(request_body_len=0, version=p.version if p else None)
            if p is not None:
                row.update(
                    status=p.status, reason=p.reason, response_start=p.start_ns,
                    response_end=p.end_ns, response_body_len=p.body_len,
                    resp_content_type=p.content_type, resp_connection=p.connection,
                    last_frame=p.end_frame, resp_version=p.version,
                    response_first_frame=p.start_frame, response_last_frame=p.end_frame,
                )
                if q is None:
                    row["first_frame"] = p.start_frame
                    row["outcome"] = "no_request"
                else:
                    row["outcome"] = "complete"
                    row["ttfb_s"] = (p.start_ns - q.end_ns) / 1e9
            else:
                row["response_body_len"] = 0
                if (
                    leftover is not None
                    and q is not None
                    and q.http2_stream is None
                    and leftover[0] > q.end_frame
                    and st.waiting
                    and st.waiting[0] is ex
                ):
                    row["outcome"] = "partial_response"
                    row["response_start"] = leftover[1]
                    row["ttfb_s"] = (leftover[1] - q.end_ns) / 1e9
                else:
                    row["outcome"] = "no_response"
                row["ended_by"] = ended_by
            # the answer began after the client's first FIN/RST: sent to a closed socket
            cl = st.sides[ci]
            client_close = min((t for t in (cl.fin_ns, cl.rst_ns) if t is not None), default=None)
            start = row.get("response_start")
            row["response_after_close"] = bool(client_close is not None and start is not None and start > client_close)
            rows.append(row)
        return rows


def _typed(records: list[dict[str, Any]], columns: dict[str, Any]) -> pd.DataFrame:
    """Records (timestamps as integer ns) -> the contract's typed table, exactly.

    Timestamp columns are converted here from Python ints: building a DataFrame from
    records first would turn an int column with a missing value into float64 and lose
    the nanoseconds (1.7e18 is beyond float's 2**53 exact integers).
    """
    data: dict[str, pd.Series] = {}
    for name, dtype in columns.items():
        values = [r.get(name) for r in records]
        if dtype == TS:
            ints = pd.array(values, dtype="Int64")
            data[name] = pd.Series(pd.to_datetime(ints, unit="ns", utc=True))
        else:
            data[name] = pd.Series(values, dtype=object)
    return frame_from_records(pd.DataFrame(data), columns)


def _run_lines(cmd: list[str]) -> Iterator[str]:
    """Yield tshark's stdout lines; raise TsharkFailed if it produced nothing and failed."""
    with tempfile.TemporaryFile() as err:
        # stderr goes to a file so a chatty tshark can never block on a full pipe.
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1 << 20,
        )
        produced = False
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                produced = True
                yield line
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
            rc = proc.wait()
        err.seek(0)
        msg = err.read().decode("utf-8", "replace")
        msg = "\n".join(
            l for l in msg.splitlines() if l.strip() and "Running as user" not in l
        )
        if rc != 0:
            if not produced:
                raise TsharkFailed(f"tshark exited with status {rc}: {msg.strip() or '(no message)'}")
            # A capture cut short (tcpdump killed) still yields every packet before the cut.
            warnings.warn(f"tshark exited with status {rc} (tables may be partial): {msg.strip()}",
                          RuntimeWarning, stacklevel=3)


def load_tables(
    path: str,
    *,
    tls_keylog: str | None = None,
    tshark: str | None = None,
    extra_args: Sequence[str] = (),
) -> dict[str, pd.DataFrame]:
    """Rebuild sockscope's ``connections`` and ``requests`` tables with tshark.

    Parameters
    ----------
    path:
        A capture tshark can read (pcap, pcapng, compressed).
    tls_keylog:
        An SSLKEYLOGFILE; passed as ``-o tls.keylog_file:PATH`` so decrypted HTTP/1.1 and
        HTTP/2 exchanges appear in ``requests``.
    tshark:
        The tshark executable (default: ``tshark`` on PATH).
    extra_args:
        More tshark options placed before the output options, e.g.
        ``["-d", "tcp.port==6667,http"]`` to decode a port as HTTP.

    Returns
    -------
    ``{"connections": DataFrame, "requests": DataFrame, "facts": dict}``: the tables have
    the columns and dtypes of :data:`sockscope.schema.CONNECTION_COLUMNS` /
    ``REQUEST_COLUMNS`` followed by :data:`EXTRA_CONNECTION_COLUMNS` /
    :data:`EXTRA_REQUEST_COLUMNS`. ``facts`` holds what tshark's TCP output tells about
    the file: ``tcp_packets``, ``packets`` (the highest frame number with TCP, a lower
    bound), ``first_ts_ns``/``last_ts_ns`` (of TCP frames), ``format`` (from the magic
    bytes) and the command that ran.

    Raises
    ------
    TsharkMissing
        tshark is not installed.
    TsharkFailed
        tshark could not read the file at all.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    cmd = tshark_command(path, tls_keylog=tls_keylog, tshark=tshark, extra_args=extra_args)
    builder = _Builder()
    for line in _run_lines(cmd):
        builder.feed(line)
    if builder.bad_lines:
        warnings.warn(
            f"{builder.bad_lines} tshark output line(s) could not be parsed and were skipped",
            RuntimeWarning,
            stacklevel=2,
        )
    tables = builder.tables()
    tables["facts"] = {
        "name": os.fspath(path),
        "engine": "tshark",
        "format": _file_format(path),
        "packets": builder.max_frame,
        "tcp_packets": builder.lines,
        "first_ts_ns": builder.capture_start_ns,
        "last_ts_ns": builder.capture_end_ns,
        "tls_keylog": os.fspath(tls_keylog) if tls_keylog else None,
        "tshark_command": cmd,
        "warnings": [],
    }
    return tables


def _file_format(path: str) -> str | None:
    """``pcap`` / ``pcapng`` / ``gzip`` from the first bytes (None if unknown)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError:
        return None
    if magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        return "pcap"
    if magic == b"\x0a\x0d\x0d\x0a":
        return "pcapng"
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    return None
