"""HTTP/1.x message framing and request/response pairing for one TCP connection.

See the package docstring (:mod:`sockscope.http`) for the theory of operation.  This module
holds :class:`HttpSession` (the state machine), :class:`Exchange` (its output record) and the
caps that keep any input bounded in time and memory.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass

from ._grammar import parse_request_line, parse_status_line

__all__ = [
    "Exchange",
    "HttpSession",
    "MAX_HEADER_LINE",
    "MAX_HEADER_BLOCK",
    "MAX_CHUNK_LINE",
    "MAX_PENDING",
    "MAX_VIOLATIONS",
    "MAX_DECODED_BODY",
]

MAX_HEADER_LINE = 64 * 1024
"""Longest start line or header line (bytes, without the line end) before it is a violation."""
MAX_HEADER_BLOCK = 256 * 1024
"""Longest header (or trailer) section, start line included; also the CONNECT/Upgrade hold buffer."""
MAX_CHUNK_LINE = 16 * 1024
"""Longest chunk-size line, extensions included."""
MAX_PENDING = 10_000
"""Requests stored while waiting for their responses; more are counted, not stored."""
MAX_VIOLATIONS = 1_000
"""Violations kept per session; later ones only bump ``violations_dropped``."""
MAX_DECODED_BODY = 1 << 30
"""Decoded bytes counted per response before giving up (bounds a zip bomb's CPU time)."""

# Largest chunk size believed; anything bigger is garbage or an overflow attack.
_MAX_CHUNK_SIZE = (1 << 63) - 1
_HEX = b"0123456789abcdefABCDEF"
# zlib is driven in bounded steps: at most this much input per call, this much output back.
_INFLATE_IN = 16 * 1024
_INFLATE_OUT = 64 * 1024

# Parser states of one direction.
_START = 0  # expecting a start line (leading empty lines are skipped)
_HEADERS = 1  # start line read, expecting the rest of the header section
_BODY = 2  # Content-Length body: `remaining` bytes to go
_CHUNK_SIZE = 3  # expecting a chunk-size line
_CHUNK_DATA = 4  # inside chunk data: `remaining` bytes to go
_CHUNK_END = 5  # expecting the CRLF that closes chunk data
_TRAILER = 6  # last chunk read, expecting the trailer section
_CLOSE_BODY = 7  # body runs until the connection ends (finish())
_RESYNC = 8  # framing lost: skipping lines until one looks like a start line
_PAUSED = 9  # client only: held after CONNECT/Upgrade until the response decides
_DEAD = 10  # tunnel: bytes are counted, not parsed

# Header fields the exchange record needs; every other field is skipped unparsed.
_WANTED = frozenset(
    {
        b"host", b"user-agent", b"content-length", b"transfer-encoding", b"content-type",
        b"connection", b"keep-alive", b"content-encoding", b"upgrade",
    }
)
# Wanted fields copied verbatim (as text) into the exchange.
_REQ_TEXT = {
    b"host": "host",
    b"user-agent": "user_agent",
    b"content-type": "req_content_type",
    b"connection": "req_connection",
}
_RESP_TEXT = {
    b"content-type": "resp_content_type",
    b"connection": "resp_connection",
    b"keep-alive": "resp_keep_alive",
    b"content-encoding": "resp_content_encoding",
}
_INFLATABLE = {b"gzip": 31, b"x-gzip": 31, b"deflate": 0}


@dataclass(slots=True)
class Exchange:
    """One HTTP request and the final response that answers it (a row of ``requests``).

    Times are capture times in integer nanoseconds of the packets carrying the bytes;
    frames are 1-based capture frame numbers.  For a message that never completed, the
    ``*_end_ns``/``*_last_frame`` fields describe the last byte that was seen.
    """

    index: int
    """1-based position on the connection (Zeek's trans_depth); no_request rows take a number too."""
    method: str | None = None
    """Request method exactly as sent (case preserved); None for a response without request."""
    uri: str | None = None
    """Request target as sent."""
    version: str | None = None
    """Version of the request line: '1.1', '1.0', ... or '0.9' when the line had none."""
    resp_version: str | None = None
    """Version of the final status line ('0.9' for a bare HTTP/0.9 reply)."""
    host: str | None = None
    user_agent: str | None = None
    status: int | None = None
    """Final status code (101 included); None while no final response was seen."""
    reason: str | None = None
    info_code: int | None = None
    """Last informational (1xx other than 101) status seen before the final response."""
    request_start_ns: int | None = None
    """Time of the packet carrying the first byte of the request line."""
    request_end_ns: int | None = None
    """Time of the packet carrying the last byte of the request (body included)."""
    response_start_ns: int | None = None
    """First byte of the *final* response's status line (1xx replies are not the response:
    a 100 Continue precedes the request body, so counting it would make TTFB negative)."""
    response_end_ns: int | None = None
    request_body_len: int = 0
    """Body octets of the request, chunk framing removed, missing (gap) octets included."""
    response_body_len: int = 0
    """Body octets of the final response, chunk framing removed, missing octets included."""
    response_body_decoded_len: int | None = None
    """Octets after undoing a gzip/x-gzip/deflate Content-Encoding; None without such an
    encoding, or when decoding failed, hit a gap or exceeded ``max_decoded_body``."""
    req_content_type: str | None = None
    resp_content_type: str | None = None
    req_connection: str | None = None
    resp_connection: str | None = None
    resp_keep_alive: str | None = None
    request_complete: bool = False
    """The request's framing ended normally (headers, and body if any)."""
    response_complete: bool = False
    """The final response's framing ended normally (a close-delimited body ends at finish())."""
    first_frame: int | None = None
    """Lowest frame carrying bytes of the request, a 1xx reply or the final response."""
    last_frame: int | None = None
    """Highest such frame (exact once finish() has run)."""
    request_first_frame: int | None = None
    request_last_frame: int | None = None
    response_first_frame: int | None = None
    response_last_frame: int | None = None
    no_request: bool = False
    """A response that no request could be paired with (Zeek logs these too)."""
    resp_content_encoding: str | None = None
    """Content-Encoding of the final response, as sent."""
    missing_bytes: int = 0
    """Body octets of this exchange that were lost in capture gaps (counted, never seen)."""
    damaged: bool = False
    """Framing of one of the messages was lost (gap, cap, malformed); fields may be partial."""


class _Inflater:
    """Counts the decoded size of a gzip/deflate body without keeping any of it."""

    __slots__ = ("_d", "_wbits", "_head", "total", "limit", "problem")

    def __init__(self, wbits: int, limit: int) -> None:
        self._wbits = wbits  # 0: deflate, wrapper not yet known
        self._d = zlib.decompressobj(wbits) if wbits else None
        self._head = b""
        self.total = 0
        self.limit = limit
        self.problem: str | None = None  # why the count cannot be trusted

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self.problem is not None or not data:
            return
        if self._d is None:
            # "deflate" is meant to be zlib-wrapped but many servers send raw deflate; the
            # two-byte zlib header (CM=8, FCHECK) tells them apart.
            head = self._head + bytes(data)
            if len(head) < 2:
                self._head = head
                return
            self._head = b""
            zlib_wrapped = head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0
            self._wbits = 15 if zlib_wrapped else -15
            self._d = zlib.decompressobj(self._wbits)
            data = head
        mv = memoryview(data)
        try:
            # Small input slices keep unconsumed_tail (which zlib copies) small.
            for i in range(0, len(mv), _INFLATE_IN):
                if not self._step(mv[i : i + _INFLATE_IN]):
                    return
        except zlib.error:
            self.problem = "bad_content_encoding"

    def _step(self, chunk: memoryview | bytes) -> bool:
        d = self._d
        while chunk:
            out = d.decompress(chunk, _INFLATE_OUT)
            self.total += len(out)
            if self.total > self.limit:
                self.problem = "decoded_body_too_large"
                return False
            if d.eof:
                rest = d.unused_data
                if rest and self._wbits == 31:
                    # gzip allows several members back to back.
                    d = self._d = zlib.decompressobj(31)
                    chunk = rest
                    continue
                return True
            chunk = d.unconsumed_tail
        return True

    def result(self) -> int | None:
        if self.problem is None and self._d is not None:
            try:
                self.total += len(self._d.flush(_INFLATE_OUT))
            except zlib.error:
                self.problem = "bad_content_encoding"
        return None if self.problem is not None else self.total


class _Side:
    """Parser state of one direction (client->server or server->client)."""

    __slots__ = (
        "is_server", "buf", "state", "remaining", "scanned", "line_off", "carry_len",
        "carry_ts", "carry_frame", "wait", "ex", "hdr_bytes", "skip_nl", "interim",
        "from_queue", "inflater", "last_ts", "last_frame", "await_ex", "overflow",
        "tunnel_bytes", "running", "at_end", "handlers", "resume",
    )

    def __init__(self, is_server: bool) -> None:
        self.is_server = is_server
        self.buf = bytearray()  # unconsumed bytes: a partial line or header section, never body
        self.state = _START
        self.remaining = 0
        self.scanned = 0  # bytes at the buffer's start already searched for the current terminator
        self.line_off = 0  # start of the current partial header line, relative to the buffer
        self.carry_len = 0  # how much of the working buffer came from earlier calls
        self.carry_ts = 0  # time/frame of the packet that carried the buffer's first byte
        self.carry_frame = 0
        self.wait = False  # a handler needs more bytes
        self.ex: Exchange | None = None  # message being parsed
        self.hdr_bytes = 0
        self.skip_nl = False  # in RESYNC: the current position is not at a line start
        self.interim = False  # the message being parsed is a 1xx reply
        self.from_queue = False  # the response answers a queued request (counts in pending)
        self.inflater: _Inflater | None = None
        self.last_ts = 0
        self.last_frame = 0
        self.await_ex: Exchange | None = None  # PAUSED: the CONNECT/Upgrade request
        self.overflow = False  # PAUSED: bytes beyond the hold buffer were dropped
        self.tunnel_bytes = 0
        self.running = False  # inside _run (its buffer must not be touched from outside)
        self.at_end = False  # finish() is draining: do not wait for bytes that cannot come
        self.handlers: tuple = ()
        self.resume = 0  # where to go on after a helper returned -1


class HttpSession:
    """HTTP/1.x exchanges of one TCP connection, fed with each direction's in-order bytes.

    Call :meth:`client_data`/:meth:`server_data` with stream bytes as they are reassembled,
    :meth:`client_gap`/:meth:`server_gap` where the capture lost bytes, then :meth:`finish`.
    No input raises; every buffer is bounded by the caps given to the constructor.
    """

    def __init__(
        self,
        *,
        max_header_line: int = MAX_HEADER_LINE,
        max_header_block: int = MAX_HEADER_BLOCK,
        max_chunk_line: int = MAX_CHUNK_LINE,
        max_pending: int = MAX_PENDING,
        max_violations: int = MAX_VIOLATIONS,
        max_decoded_body: int = MAX_DECODED_BODY,
    ) -> None:
        self.max_header_line = max_header_line
        self.max_header_block = max_header_block
        self.max_chunk_line = max_chunk_line
        self.max_pending = max_pending
        self.max_violations = max_violations
        self.max_decoded_body = max_decoded_body

        self.exchanges: list[Exchange] = []
        """Exchanges so far, in request order (responses without request where they occurred)."""
        self.tunnel: str | None = None
        """'connect' after a 2xx answer to CONNECT, 'upgrade' after 101 (or an HTTP/2
        prior-knowledge preface); parsing of both directions stops there."""
        self.violations: list[tuple[str, int]] = []
        """(kind, frame) of protocol anomalies, at most ``max_violations`` of them."""
        self.violations_dropped = 0
        self.pending = 0
        """Requests (stored or not) without a complete final response."""
        self.dropped_requests = 0
        """Requests beyond ``max_pending`` that were counted but not stored."""

        self._queue: deque[Exchange | int] = deque()  # requests awaiting a final response;
        self._stored_waiting = 0  # an int entry stands for that many unstored requests
        self._next_index = 1
        self._finished = False
        self._client = c = _Side(False)
        self._server = s = _Side(True)
        c.handlers = self._handlers(self._start_request, self._request_headers)
        s.handlers = self._handlers(self._start_response, self._response_headers)

    def _handlers(self, start, headers) -> tuple:
        h = [None] * 11
        h[_START] = start
        h[_HEADERS] = headers
        h[_CHUNK_SIZE] = self._chunk_size
        h[_CHUNK_END] = self._chunk_end
        h[_TRAILER] = self._trailer
        h[_RESYNC] = self._resync
        return tuple(h)

    # ------------------------------------------------------------------ public API

    def client_data(self, data: bytes, ts_ns: int, frame: int) -> None:
        """Client->server stream bytes, in order, from the packet at ``ts_ns``/``frame``."""
        self._feed(self._client, data, ts_ns, frame)

    def server_data(self, data: bytes, ts_ns: int, frame: int) -> None:
        """Server->client stream bytes, in order, from the packet at ``ts_ns``/``frame``."""
        self._feed(self._server, data, ts_ns, frame)

    def client_gap(self, nbytes: int, ts_ns: int, frame: int) -> None:
        """``nbytes`` of the client->server stream were not captured."""
        self._guarded_gap(self._client, nbytes, ts_ns, frame)

    def server_gap(self, nbytes: int, ts_ns: int, frame: int) -> None:
        """``nbytes`` of the server->client stream were not captured."""
        self._guarded_gap(self._server, nbytes, ts_ns, frame)

    def finish(self) -> list[Exchange]:
        """No more data in either direction: settle open messages and return all exchanges."""
        if not self._finished:
            self._finished = True
            try:
                self._finish()
            except Exception:  # noqa: BLE001 - a parser bug must not lose the whole capture
                self._violate("internal_error", self._server.last_frame)
        return self.exchanges

    # ------------------------------------------------------------------ plumbing

    def _violate(self, kind: str, frame: int) -> None:
        if len(self.violations) < self.max_violations:
            self.violations.append((kind, frame))
        else:
            self.violations_dropped += 1

    def _feed(self, side: _Side, data: bytes, ts: int, frame: int) -> None:
        st = side.state
        if st == _DEAD or self._finished:
            side.tunnel_bytes += len(data)
            return
        side.last_ts = ts
        side.last_frame = frame
        b = side.buf
        if st == _PAUSED:
            room = self.max_header_block - len(b)
            if len(data) > room:
                side.overflow = True
                data = data[: max(room, 0)]
            if data and not b:
                side.carry_ts, side.carry_frame = ts, frame
            b += data
            return
        if b:
            side.carry_len = len(b)
            b += data
            buf = b
        else:
            side.carry_len = 0
            buf = data
        side.running = True
        try:
            pos = self._run(side, buf, ts, frame)
        except Exception:  # noqa: BLE001 - never let odd bytes escape as an exception
            self._violate("internal_error", frame)
            side.running = False
            b.clear()
            if side.state != _DEAD:
                side.ex = None
                side.inflater = None
                side.state = _RESYNC
                side.skip_nl = True
            return
        side.running = False
        if buf is b:
            if pos >= side.carry_len:
                side.carry_ts, side.carry_frame = ts, frame
            if pos:
                del b[:pos]
        elif pos < len(buf):
            b += buf[pos:]
            side.carry_ts, side.carry_frame = ts, frame

    def _run(self, side: _Side, buf: bytes | bytearray, ts: int, frame: int) -> int:
        pos = 0
        n = len(buf)
        handlers = side.handlers
        while pos < n:
            st = side.state
            if st == _BODY or st == _CHUNK_DATA or st == _CLOSE_BODY:
                # Body bytes are counted and skipped, never kept.
                k = n - pos
                if st != _CLOSE_BODY and side.remaining < k:
                    k = side.remaining
                if side.inflater is not None:
                    side.inflater.feed(buf[pos : pos + k])
                ex = side.ex
                if side.is_server:
                    ex.response_body_len += k
                    ex.response_end_ns = ts
                    ex.response_last_frame = frame
                else:
                    ex.request_body_len += k
                    ex.request_end_ns = ts
                    ex.request_last_frame = frame
                pos += k
                if st != _CLOSE_BODY:
                    side.remaining -= k
                    if not side.remaining:
                        if st == _BODY:
                            self._message_done(side, ts, frame)
                        else:
                            side.state = _CHUNK_END
                continue
            if st == _DEAD:
                side.tunnel_bytes += n - pos
                return n
            if st == _PAUSED:
                break
            side.wait = False
            pos = handlers[st](side, buf, pos, n, ts, frame)
            if side.wait:
                break
            if side.scanned:
                side.scanned = 0
                side.line_off = 0
        return pos

    def _start_ts(self, side: _Side, p: int, ts: int, frame: int) -> tuple[int, int]:
        # The byte at p came either with an earlier call (still buffered) or with this one.
        if p < side.carry_len:
            return side.carry_ts, side.carry_frame
        return ts, frame

    def _read_line(self, side: _Side, buf, pos: int, n: int, limit: int, kind: str, frame: int) -> int:
        """Index of the LF ending the line at pos; -1 if more bytes are needed (side.wait set)
        or the line is over ``limit`` (violation raised, state RESYNC)."""
        nl = buf.find(b"\n", pos + side.scanned)
        if nl >= 0:
            return nl
        if n - pos > limit:
            self._damage(side, kind, frame)
            side.skip_nl = True
            side.resume = n
            return -1
        side.scanned = n - pos
        side.wait = True
        side.resume = pos
        return -1

    def _find_section_end(self, side: _Side, buf, pos: int, n: int, frame: int) -> int:
        """Offset just past the empty line ending the header/trailer section that starts at
        pos (a line start); -1 when incomplete (side.wait) or over a cap (damaged)."""
        c = buf[pos]
        if c == 10:
            return pos + 1
        if c == 13:
            if pos + 1 == n:
                if side.at_end:
                    return n
                side.wait = True
                side.resume = pos
                return -1
            if buf[pos + 1] == 10:
                return pos + 2
        # Bare LF line ends are accepted, so the section ends at "\n\r\n" or "\n\n",
        # whichever comes first.
        s = pos + side.scanned
        e1 = buf.find(b"\n\r\n", s)
        e2 = buf.find(b"\n\n", s, e1 + 2 if e1 >= 0 else n)
        if e2 >= 0:
            end = e2 + 2
        elif e1 >= 0:
            end = e1 + 3
        else:
            j = buf.rfind(b"\n", s, n)
            if j >= 0:
                side.line_off = j + 1 - pos
            if side.hdr_bytes + n - pos > self.max_header_block:
                self._damage(side, "header_too_large", frame)
                side.skip_nl = buf[n - 1] != 10
                side.resume = n
                return -1
            if n - pos - side.line_off > self.max_header_line:
                self._damage(side, "header_line_too_large", frame)
                side.skip_nl = True
                side.resume = n
                return -1
            side.scanned = max(0, n - pos - 2)
            side.wait = True
            side.resume = pos
            return -1
        side.hdr_bytes += end - pos
        if side.hdr_bytes > self.max_header_block:
            self._damage(side, "header_too_large", frame)
            side.resume = end
            return -1
        return end

    def _parse_fields(self, block: bytes, frame: int) -> dict[bytes, bytes] | None:
        """The wanted header fields of a section (lower-case names, repeated fields joined
        with ', ' as RFC 9110 5.3 allows); None if a line is over the cap."""
        lines = block.splitlines()
        if len(block) > self.max_header_line and max(map(len, lines)) > self.max_header_line:
            return None
        fields: dict[bytes, bytes] = {}
        last = None
        wanted = _WANTED
        for line in lines:
            name, sep, value = line.partition(b":")
            if sep and line[0] != 32 and line[0] != 9:
                name = name.lower()
                if name not in wanted:
                    # "Name :" is invalid but seen in the wild; only then pay for rstrip.
                    name = name.rstrip()
                    if name not in wanted:
                        last = None
                        continue
                value = value.strip()
                if name in fields:
                    fields[name] += b", " + value
                else:
                    fields[name] = value
                last = name
            elif not line:
                continue
            elif line[0] == 32 or line[0] == 9:
                # obs-fold (RFC 9112 5.2): a continuation of the previous field's value.
                if last is not None:
                    fields[last] += b" " + line.strip()
            else:
                self._violate("bad_header_line", frame)
                last = None
        return fields

    def _damage(self, side: _Side, kind: str, frame: int) -> None:
        """Framing of the current message is lost: flag it and resynchronise."""
        if kind:
            self._violate(kind, frame)
        ex = side.ex
        if ex is not None:
            ex.damaged = True
            if side.inflater is not None:
                ex.response_body_decoded_len = None
            _span(ex)
            if side.is_server and not side.interim:
                self._settle_client(ex, tunnel=False)
        side.inflater = None
        side.ex = None
        side.interim = False
        side.state = _RESYNC
        side.skip_nl = False

    def _resync(self, side: _Side, buf, pos: int, n: int, ts: int, frame: int) -> int:
        # Line by line until one parses as a start line; rare, so simplicity beats speed.
        while pos < n:
            nl = buf.find(b"\n", pos + side.scanned)
            if side.skip_nl:
                if nl < 0:
                    return n
                side.skip_nl = False
                pos = nl + 1
                side.scanned = 0
                continue
            if nl < 0:
                if n - pos > self.max_header_line:
                    side.skip_nl = True
                    return n
                if side.at_end:
                    nl = n
                else:
                    side.scanned = n - pos
                    side.wait = True
                    return pos
            line = bytes(buf[pos:nl])
            if side.is_server:
                found = parse_status_line(line) is not None
            else:
                found = parse_request_line(line, allow_09=False) is not None
            if found:
                side.state = _START
                return pos
            pos = nl + 1
            side.scanned = 0
        return pos

    # ------------------------------------------------------------------ requests

    def _start_request(self, side: _Side, buf, pos: int, n: int, ts: int, frame: int) -> int:
        # RFC 9112 2.2: empty lines before a request line are ignored.
        while buf[pos] == 13 or buf[pos] == 10:
            pos += 1
            if pos == n:
                return pos
        nl = buf.find(b"\n", pos + side.scanned)
        if nl < 0:
            self._read_line(side, buf, pos, n, self.max_header_line, "request_line_too_large", frame)
            return side.resume
        parsed = parse_request_line(bytes(buf[pos:nl]))
        if parsed is None:
            self._violate("junk_before_request", frame)
            side.state = _RESYNC
            return nl + 1
        method, uri, version = parsed
        if method == "PRI" and uri == "*" and version == "2.0":
            # HTTP/2 with prior knowledge: the rest of the connection is not HTTP/1.
            self._violate("http2_preface", frame)
            self._start_tunnel("upgrade")
            return nl + 1
        if pos < side.carry_len:
            ex = self._new_request(method, uri, version, side.carry_ts, side.carry_frame, ts, frame)
        else:
            ex = self._new_request(method, uri, version, ts, frame, ts, frame)
        side.ex = ex
        if version == "0.9":
            # An HTTP/0.9 request is the one line; no header section, no body.
            self._message_done(side, ts, frame)
            return nl + 1
        # Fast path: the whole header section is already here and within the caps, so
        # parse it now rather than in the HEADERS state (same result, fewer steps).
        end = buf.find(b"\n\r\n", nl)
        if end >= 0 and end + 3 - pos <= self.max_header_block and buf.find(b"\n\n", nl, end) < 0:
            fields = self._parse_fields(bytes(buf[nl + 1 : end + 1]), frame)
            if fields is not None:
                self._request_fields(side, ex, fields, ts, frame)
                return end + 3
        side.hdr_bytes = nl + 1 - pos
        side.state = _HEADERS
        return nl + 1

    def _new_request(self, method, uri, version, t0, f0, ts, frame) -> Exchange:
        index = self._next_index
        self._next_index = index + 1
        self.pending += 1
        # Positional on purpose: keyword arguments make this call four times slower, and it
        # runs once per request (test_positional_exchange_construction guards the order).
        ex = Exchange(
            index, method, uri, version, None, None, None, None, None, None,
            t0, ts, None, None, 0, 0, None, None, None, None, None, None, False, False,
            f0, frame, f0, frame,
        )
        q = self._queue
        if self._stored_waiting < self.max_pending:
            self._stored_waiting += 1
            q.append(ex)
            self.exchanges.append(ex)
        else:
            # Counted in the queue so later responses still pair with the right requests.
            self.dropped_requests += 1
            if q and type(q[-1]) is int:
                q[-1] += 1
            else:
                q.append(1)
        return ex

    def _request_headers(self, side: _Side, buf, pos: int, n: int, ts: int, frame: int) -> int:
        end = self._find_section_end(side, buf, pos, n, frame)
        if end < 0:
            return side.resume
        fields = self._parse_fields(bytes(buf[pos:end]), frame)
        if fields is None:
            self._damage(side, "header_line_too_large", frame)
            return end
        self._request_fields(side, side.ex, fields, ts, frame)
        return end

    def _request_fields(self, side: _Side, ex: Exchange, fields: dict, ts: int, frame: int) -> None:
        """Record the request's header fields and choose how its body is framed."""
        ex.request_end_ns = ts
        ex.request_last_frame = frame
        for name, value in fields.items():
            attr = _REQ_TEXT.get(name)
            if attr is not None:
                setattr(ex, attr, value.decode("utf-8", "backslashreplace"))
        get = fields.get

        # Message body length of a request, RFC 9112 6.3 (rules 1, 2 and 7 are about responses).
        te = get(b"transfer-encoding")
        cl = get(b"content-length")
        if te is not None and te.strip():
            # Rule 3: "If a Transfer-Encoding header field is present and the chunked
            # transfer coding is the final encoding, the message body length is determined
            # by reading and decoding the chunked data until the transfer coding indicates
            # the data is complete."  ... "If a message is received with both a
            # Transfer-Encoding and a Content-Length header field, the Transfer-Encoding
            # overrides the Content-Length."
            if cl is not None:
                self._violate("content_length_with_transfer_encoding", frame)
            if _chunked_last(te):
                side.state = _CHUNK_SIZE
                return
            # Rule 3, request case: "If a Transfer-Encoding header field is present in a
            # request and the chunked transfer coding is not the final encoding, the message
            # body length cannot be determined reliably" -> we lose framing.
            self._damage(side, "bad_transfer_encoding", frame)
            return
        if cl is not None:
            length = _content_length(cl)
            if length is None:
                # Rule 4: an invalid or conflicting Content-Length is "an unrecoverable
                # error".  We cannot know where the body ends, so the request is damaged
                # and we resynchronise at the next request line.
                self._damage(side, "bad_content_length", frame)
                return
            # Rule 5: "If a valid Content-Length header field is present without
            # Transfer-Encoding, its decimal value defines the expected message body length
            # in octets."
            if length:
                side.state = _BODY
                side.remaining = length
                return
        # Rule 6: "If this is a request message and none of the above are true, then the
        # message body length is zero (no message body is present)."
        if ex.method == "CONNECT" or get(b"upgrade") is not None:
            self._message_done(side, ts, frame, hold=True)
        else:
            self._message_done(side, ts, frame)

    # ------------------------------------------------------------------ responses

    def _pop_for_response(self, frame: int) -> tuple[Exchange, bool]:
        """The exchange a final response belongs to, and whether it came from the queue."""
        q = self._queue
        if q:
            head = q[0]
            if type(head) is int:
                if head == 1:
                    q.popleft()
                else:
                    q[0] = head - 1
                return Exchange(0), True  # an unstored request: parse, then forget
            q.popleft()
            self._stored_waiting -= 1
            return head, True
        self._violate("unexpected_response", frame)
        index = self._next_index
        self._next_index = index + 1
        ex = Exchange(index, no_request=True)
        self.exchanges.append(ex)
        return ex, False

    def _start_response(self, side: _Side, buf, pos: int, n: int, ts: int, frame: int) -> int:
        q = self._queue
        head = q[0] if q else None
        if type(head) is int:
            head = None
        if head is not None and head.version == "0.9":
            # An HTTP/0.9 reply has no status line: everything until close is the body.
            # Some servers answer with a status line anyway, so look at the first bytes.
            if n - pos < 5 and b"HTTP/".startswith(bytes(buf[pos:n])) and not side.at_end:
                side.wait = True
                return pos
            if buf[pos : pos + 5] != b"HTTP/":
                ex, side.from_queue = self._pop_for_response(frame)
                t0, f0 = self._start_ts(side, pos, ts, frame)
                ex.resp_version = "0.9"
                ex.response_start_ns = ex.response_end_ns = t0
                ex.response_first_frame = ex.response_last_frame = f0
                side.ex = ex
                side.state = _CLOSE_BODY
                return pos
        while buf[pos] == 13 or buf[pos] == 10:
            pos += 1
            if pos == n:
                return pos
        nl = buf.find(b"\n", pos + side.scanned)
        if nl < 0:
            self._read_line(side, buf, pos, n, self.max_header_line, "status_line_too_large", frame)
            return side.resume
        parsed = parse_status_line(bytes(buf[pos:nl]))
        if parsed is None:
            self._violate("junk_before_response", frame)
            side.state = _RESYNC
            return nl + 1
        version, status, reason = parsed
        if pos < side.carry_len:
            t0, f0 = side.carry_ts, side.carry_frame
        else:
            t0, f0 = ts, frame
        if 100 <= status < 200 and status != 101:
            # Interim replies do not answer the request; remember the code, keep waiting.
            ex = head
            if ex is None:
                if not self._queue:
                    self._violate("unexpected_response", frame)
                ex = Exchange(0)  # unpaired or unstored: parse it, keep nothing
            ex.info_code = status
            if ex.first_frame is None or f0 < ex.first_frame:
                ex.first_frame = f0
            side.interim = True
            side.from_queue = False
        else:
            if q and type(q[0]) is not int:
                ex = q.popleft()
                self._stored_waiting -= 1
                side.from_queue = True
            else:
                ex, side.from_queue = self._pop_for_response(frame)
            ex.resp_version = version
            ex.status = status
            ex.reason = reason
            ex.response_start_ns = t0
            ex.response_first_frame = f0
            if ex.first_frame is None or f0 < ex.first_frame:
                ex.first_frame = f0
            ex.response_end_ns = ts
            ex.response_last_frame = frame
            side.interim = False
        side.ex = ex
        # Fast path, as for requests.
        end = buf.find(b"\n\r\n", nl)
        if end >= 0 and end + 3 - pos <= self.max_header_block and buf.find(b"\n\n", nl, end) < 0:
            fields = self._parse_fields(bytes(buf[nl + 1 : end + 1]), frame)
            if fields is not None:
                self._response_fields(side, ex, fields, ts, frame)
                return end + 3
        side.hdr_bytes = nl + 1 - pos
        side.state = _HEADERS
        return nl + 1

    def _response_headers(self, side: _Side, buf, pos: int, n: int, ts: int, frame: int) -> int:
        end = self._find_section_end(side, buf, pos, n, frame)
        if end < 0:
            return side.resume
        fields = self._parse_fields(bytes(buf[pos:end]), frame)
        if fields is None:
            self._damage(side, "header_line_too_large", frame)
            return end
        self._response_fields(side, side.ex, fields, ts, frame)
        return end

    def _response_fields(self, side: _Side, ex: Exchange, fields: dict, ts: int, frame: int) -> None:
        """Record the response's header fields and frame its body (RFC 9112 6.3)."""
        if side.interim:
            if ex.last_frame is None or frame > ex.last_frame:
                ex.last_frame = frame
            side.interim = False
            side.ex = None
            side.state = _START
            return
        ex.response_end_ns = ts
        ex.response_last_frame = frame
        for name, value in fields.items():
            attr = _RESP_TEXT.get(name)
            if attr is not None:
                setattr(ex, attr, value.decode("utf-8", "backslashreplace"))
        get = fields.get
        ce = get(b"content-encoding")

        status = ex.status
        method = ex.method  # None when unpaired or unstored: framed like a GET
        # Message body length of a response, RFC 9112 6.3.
        if status == 101:
            # Rule 1 (1xx has no body) and the protocol switch that 101 announces.
            self._message_done(side, ts, frame)
            self._start_tunnel("upgrade")
            return
        if method == "CONNECT" and 200 <= status < 300:
            # Rule 2: "Any 2xx (Successful) response to a CONNECT request implies that the
            # connection will become a tunnel immediately after the empty line that
            # concludes the header fields."
            self._message_done(side, ts, frame)
            self._start_tunnel("connect")
            return
        self._settle_client(ex, tunnel=False)
        if method == "HEAD" or status == 204 or status == 304 or 100 <= status < 200:
            # Rule 1: "Any response to a HEAD request and any response with a 1xx
            # (Informational), 204 (No Content), or 304 (Not Modified) status code is always
            # terminated by the first empty line after the header fields ... and thus cannot
            # contain a message body or trailer section."
            self._message_done(side, ts, frame)
            return
        te = get(b"transfer-encoding")
        cl = get(b"content-length")
        if te is not None and te.strip():
            if cl is not None:
                self._violate("content_length_with_transfer_encoding", frame)
            self._start_decoder(side, ce)
            if _chunked_last(te):
                # Rule 3: chunked as the final coding: read chunks until the last one.
                side.state = _CHUNK_SIZE
            else:
                # Rule 3: "If a Transfer-Encoding header field is present in a response and
                # the chunked transfer coding is not the final encoding, the message body
                # length is determined by reading the connection until it is closed."
                side.state = _CLOSE_BODY
            return
        if cl is not None:
            length = _content_length(cl)
            if length is None:
                # Rule 4: invalid/conflicting Content-Length is unrecoverable framing.  A
                # user agent would drop the connection; we flag the response as damaged
                # and look for the next status line, which keeps pairing of a pipelined
                # stream intact more often than reading to the close would.
                self._damage(side, "bad_content_length", frame)
                return
            # Rule 5: a valid Content-Length gives the body length in octets.
            self._start_decoder(side, ce)
            if length:
                side.state = _BODY
                side.remaining = length
            else:
                self._message_done(side, ts, frame)
            return
        # Rule 7: "Otherwise, this is a response message without a declared message body
        # length, so the message body length is determined by the number of octets received
        # by the recipient prior to the server closing the connection."
        self._start_decoder(side, ce)
        side.state = _CLOSE_BODY

    def _start_decoder(self, side: _Side, ce: bytes | None) -> None:
        if ce is None:
            return
        codings = [c.strip().lower() for c in ce.split(b",")]
        codings = [c for c in codings if c and c != b"identity"]
        if len(codings) == 1 and codings[0] in _INFLATABLE:
            side.inflater = _Inflater(_INFLATABLE[codings[0]], self.max_decoded_body)

    def _settle_client(self, ex: Exchange, tunnel: bool) -> None:
        """The final response to a held CONNECT/Upgrade request is known: release the client."""
        c = self._client
        if c.state != _PAUSED or c.await_ex is not ex:
            return
        c.await_ex = None
        if tunnel:
            return
        c.state = _RESYNC if c.overflow else _START
        c.overflow = False
        c.skip_nl = False
        if c.buf and not c.running:
            self._feed(c, b"", c.last_ts, c.last_frame)

    def _start_tunnel(self, kind: str) -> None:
        self.tunnel = kind
        for side in (self._client, self._server):
            if side.state == _PAUSED:
                side.await_ex = None
            side.state = _DEAD
            side.ex = None
            side.inflater = None
            if not side.running:
                side.tunnel_bytes += len(side.buf)
                side.buf.clear()

    # ------------------------------------------------------------------ chunked bodies

    def _chunk_size(self, side: _Side, buf, pos: int, n: int, ts: int, frame: int) -> int:
        nl = self._read_line(side, buf, pos, n, self.max_chunk_line, "bad_chunk_size", frame)
        if nl < 0:
            return side.resume
        # chunk-size [ chunk-ext ] CRLF; whitespace before ';' is tolerated as many servers
        # send it.
        digits = bytes(buf[pos:nl]).split(b";", 1)[0].strip()
        size = -1
        if digits and not digits.translate(None, _HEX):
            digits = digits.lstrip(b"0") or b"0"
            if len(digits) <= 16:
                size = int(digits, 16)
        if size < 0 or size > _MAX_CHUNK_SIZE:
            # Absurd sizes (including values that would wrap a 64-bit counter) are framing
            # garbage or a smuggling attempt, not a body we can skip.
            self._damage(side, "bad_chunk_size", frame)
            return nl + 1
        if size == 0:
            side.state = _TRAILER
            side.hdr_bytes = 0
        else:
            side.state = _CHUNK_DATA
            side.remaining = size
        return nl + 1

    def _chunk_end(self, side: _Side, buf, pos: int, n: int, ts: int, frame: int) -> int:
        c = buf[pos]
        if c == 10:
            side.state = _CHUNK_SIZE
            return pos + 1
        if c == 13:
            if pos + 1 == n:
                side.wait = True
                return pos
            if buf[pos + 1] == 10:
                side.state = _CHUNK_SIZE
                return pos + 2
        self._damage(side, "bad_chunk_terminator", frame)
        return pos

    def _trailer(self, side: _Side, buf, pos: int, n: int, ts: int, frame: int) -> int:
        end = self._find_section_end(side, buf, pos, n, frame)
        if end < 0:
            return side.resume
        self._message_done(side, ts, frame)
        return end

    # ------------------------------------------------------------------ message ends

    def _message_done(self, side: _Side, ts: int, frame: int, hold: bool = False) -> None:
        ex = side.ex
        side.ex = None
        side.state = _START
        if side.is_server:
            ex.response_complete = True
            ex.response_end_ns = ts
            ex.response_last_frame = frame
            if side.inflater is not None:
                ex.response_body_decoded_len = self._decoded(side, frame)
            if side.from_queue:
                self.pending -= 1
                side.from_queue = False
        else:
            ex.request_complete = True
            ex.request_end_ns = ts
            ex.request_last_frame = frame
            if hold and ex.status is None:
                # The bytes after a CONNECT (or an Upgrade request) belong to HTTP only if
                # the server refuses; hold them until the final response says which.
                side.state = _PAUSED
                side.await_ex = ex
        last = ex.last_frame
        if last is None or frame > last:
            ex.last_frame = frame

    def _decoded(self, side: _Side, frame: int) -> int | None:
        inf = side.inflater
        side.inflater = None
        result = inf.result()
        if inf.problem is not None and inf.problem != "gap":
            self._violate(inf.problem, frame)
        return result

    # ------------------------------------------------------------------ gaps and the end

    def _guarded_gap(self, side: _Side, nbytes: int, ts: int, frame: int) -> None:
        try:
            self._gap(side, nbytes, ts, frame)
        except Exception:  # noqa: BLE001
            self._violate("internal_error", frame)
            side.buf.clear()
            if side.state != _DEAD:
                side.ex = None
                side.inflater = None
                side.state = _RESYNC

    def _gap(self, side: _Side, nbytes: int, ts: int, frame: int) -> None:
        if nbytes <= 0 or self._finished:
            return
        st = side.state
        if st == _DEAD:
            side.tunnel_bytes += nbytes
            return
        if st == _PAUSED:
            side.overflow = True
            return
        if st == _BODY or st == _CHUNK_DATA or st == _CLOSE_BODY:
            # A hole inside a body of known extent: count the bytes as missing and go on.
            k = nbytes if st == _CLOSE_BODY else min(nbytes, side.remaining)
            ex = side.ex
            if side.is_server:
                ex.response_body_len += k
            else:
                ex.request_body_len += k
            ex.missing_bytes += k
            if side.inflater is not None:
                side.inflater.problem = side.inflater.problem or "gap"
            nbytes -= k
            if st != _CLOSE_BODY:
                side.remaining -= k
                if not side.remaining:
                    if st == _BODY:
                        self._message_done(side, ts, frame)
                    else:
                        side.state = _CHUNK_END
            if not nbytes:
                return
        # The hole swallowed framing: whatever was being parsed is lost.
        if side.state == _START and not side.buf:
            self._violate("content_gap", frame)
        elif side.state != _RESYNC:
            self._damage(side, "content_gap", frame)
        side.buf.clear()
        side.state = _RESYNC
        side.skip_nl = False
        side.scanned = 0
        side.line_off = 0

    def _finish(self) -> None:
        c, s = self._client, self._server
        for side in (c, s):
            # Let the parsers look at what is buffered without waiting for more.
            if side.state not in (_DEAD, _PAUSED) and side.buf:
                side.at_end = True
                self._finished = False
                try:
                    self._feed(side, b"", side.last_ts, side.last_frame)
                finally:
                    self._finished = True
            if side.state == _START and side.buf:
                # A start line cut off by the end of data still names a message.
                line = bytes(side.buf).strip(b"\r\n")
                if side.is_server:
                    parsed = parse_status_line(line)
                    if parsed is not None and not (100 <= parsed[1] < 200 and parsed[1] != 101):
                        ex, side.from_queue = self._pop_for_response(side.last_frame)
                        ex.resp_version, ex.status, ex.reason = parsed
                        ex.response_start_ns = ex.response_end_ns = side.carry_ts
                        ex.response_first_frame = ex.response_last_frame = side.carry_frame
                else:
                    parsed = parse_request_line(line, allow_09=False)
                    if parsed is not None:
                        self._new_request(*parsed, side.carry_ts, side.carry_frame,
                                          side.carry_ts, side.carry_frame)
        if s.state == _CLOSE_BODY and s.ex is not None:
            # Rule 7 (and HTTP/0.9): the close is what ends this body.
            self._message_done(s, s.last_ts, s.last_frame)
            s.ex = None
        elif s.ex is not None and s.inflater is not None:
            # Cut-off response: report what its received part decodes to.
            s.ex.response_body_decoded_len = self._decoded(s, s.last_frame)
        for ex in self.exchanges:
            _span(ex)


def _span(ex: Exchange) -> None:
    lo = ex.first_frame
    for f in (ex.request_first_frame, ex.response_first_frame):
        if f is not None and (lo is None or f < lo):
            lo = f
    hi = ex.last_frame
    for f in (ex.request_last_frame, ex.response_last_frame):
        if f is not None and (hi is None or f > hi):
            hi = f
    ex.first_frame = lo
    ex.last_frame = hi


def _chunked_last(te: bytes) -> bool:
    codings = [c.strip() for c in te.split(b",")]
    codings = [c for c in codings if c]
    return bool(codings) and codings[-1].lower() == b"chunked"


def _content_length(value: bytes) -> int | None:
    """Content-Length as an int, or None when invalid.

    Tolerance: a list of identical values ("42, 42", or the same field repeated, which the
    header parser joins with commas) is accepted as RFC 9110 8.6 allows; differing values,
    non-digits, an empty value or more than 18 digits are invalid.
    """
    if value.isdigit():
        return int(value) if len(value) <= 18 else None
    first = None
    for part in value.split(b","):
        part = part.strip()
        if not part or not part.isdigit() or len(part) > 18:
            return None
        v = int(part)
        if first is None:
            first = v
        elif v != first:
            return None
    return first
