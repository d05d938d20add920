# cython: nonecheck=True
"""HTTP/1.x message framing and request/response pairing for one TCP connection.

See the package docstring (:mod:`sockscope.http`) for the theory of operation.  This module
holds :class:`HttpSession` (the state machine), :class:`Exchange` (its output record) and the
caps that keep any input bounded in time and memory.
"""

from __future__ import annotations

import zlib
from collections import deque

try:
    import cython
except ImportError:  # the plain .py without Cython installed: the annotations are no-ops

    class cython:  # type: ignore[no-redef]  # noqa: N801 - stands in for the module
        compiled = False
        int = bint = Py_ssize_t = longlong = p_uchar = p_char = void = object

        @staticmethod
        def cclass(obj):
            return obj

        cfunc = final = inline = cclass

        @staticmethod
        def declare(t=None, value=None, **kwds):
            return value

        @staticmethod
        def cast(t, value):
            return value


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
_START = cython.declare(cython.int, 0)  # expecting a start line (leading empty lines are skipped)
_HEADERS = cython.declare(cython.int, 1)  # start line read, expecting the rest of the header section
_BODY = cython.declare(cython.int, 2)  # Content-Length body: `remaining` bytes to go
_CHUNK_SIZE = cython.declare(cython.int, 3)  # expecting a chunk-size line
_CHUNK_DATA = cython.declare(cython.int, 4)  # inside chunk data: `remaining` bytes to go
_CHUNK_END = cython.declare(cython.int, 5)  # expecting the CRLF that closes chunk data
_TRAILER = cython.declare(cython.int, 6)  # last chunk read, expecting the trailer section
_CLOSE_BODY = cython.declare(cython.int, 7)  # body runs until the connection ends (finish())
_RESYNC = cython.declare(cython.int, 8)  # framing lost: skipping lines until one looks like a start line
_PAUSED = cython.declare(cython.int, 9)  # client only: held after CONNECT/Upgrade until the response decides
_DEAD = cython.declare(cython.int, 10)  # tunnel: bytes are counted, not parsed

# Header fields the exchange record needs; every other field is skipped unparsed.  A header
# section is scanned line by line in place (no dict, no per-line objects); the value of each
# wanted field lands in slot _F_* of the side's `fields` list.
_F_HOST = cython.declare(cython.int, 0)
_F_UA = cython.declare(cython.int, 1)
_F_CL = cython.declare(cython.int, 2)
_F_TE = cython.declare(cython.int, 3)
_F_CT = cython.declare(cython.int, 4)
_F_CONN = cython.declare(cython.int, 5)
_F_KA = cython.declare(cython.int, 6)
_F_CE = cython.declare(cython.int, 7)
_F_UPG = cython.declare(cython.int, 8)
_N_FIELDS = cython.declare(cython.int, 9)
# Lower-case names, indexed by slot.
_NAMES = (
    b"host", b"user-agent", b"content-length", b"transfer-encoding", b"content-type",
    b"connection", b"keep-alive", b"content-encoding", b"upgrade",
)
_INFLATABLE = {b"gzip": 31, b"x-gzip": 31, b"deflate": 0}


@cython.cclass
class Exchange:
    """One HTTP request and the final response that answers it (a row of ``requests``).

    Times are capture times in integer nanoseconds of the packets carrying the bytes;
    frames are 1-based capture frame numbers.  For a message that never completed, the
    ``*_end_ns``/``*_last_frame`` fields describe the last byte that was seen.

    A compiled class rather than a dataclass: one is built per request, and a compiled
    constructor costs a tenth of an interpreted one.

    Fields (constructor order):

    - ``index`` (int): 1-based position on the connection (Zeek's trans_depth); no_request rows take a number too.
    - ``method`` (str | None): Request method exactly as sent (case preserved); None for a response without request.
    - ``uri`` (str | None): Request target as sent.
    - ``version`` (str | None): Version of the request line: '1.1', '1.0', ... or '0.9' when the line had none.
    - ``resp_version`` (str | None): Version of the final status line ('0.9' for a bare HTTP/0.9 reply).
    - ``host`` (str | None)
    - ``user_agent`` (str | None)
    - ``status`` (int | None): Final status code (101 included); None while no final response was seen.
    - ``reason`` (str | None)
    - ``info_code`` (int | None): Last informational (1xx other than 101) status seen before the final response.
    - ``request_start_ns`` (int | None): Time of the packet carrying the first byte of the request line.
    - ``request_end_ns`` (int | None): Time of the packet carrying the last byte of the request (body included).
    - ``response_start_ns`` (int | None): First byte of the *final* response's status line (1xx replies are not the response: a 100 Continue precedes the request body, so counting it would make TTFB negative).
    - ``response_end_ns`` (int | None)
    - ``request_body_len`` (int): Body octets of the request, chunk framing removed, missing (gap) octets included.
    - ``response_body_len`` (int): Body octets of the final response, chunk framing removed, missing octets included.
    - ``response_body_decoded_len`` (int | None): Octets after undoing a gzip/x-gzip/deflate Content-Encoding; None without such an encoding, or when decoding failed, hit a gap or exceeded ``max_decoded_body``.
    - ``req_content_type`` (str | None)
    - ``resp_content_type`` (str | None)
    - ``req_connection`` (str | None)
    - ``resp_connection`` (str | None)
    - ``resp_keep_alive`` (str | None)
    - ``request_complete`` (bool): The request's framing ended normally (headers, and body if any).
    - ``response_complete`` (bool): The final response's framing ended normally (a close-delimited body ends at finish()).
    - ``first_frame`` (int | None): Lowest frame carrying bytes of the request, a 1xx reply or the final response.
    - ``last_frame`` (int | None): Highest such frame (exact once finish() has run).
    - ``request_first_frame`` (int | None)
    - ``request_last_frame`` (int | None)
    - ``response_first_frame`` (int | None)
    - ``response_last_frame`` (int | None)
    - ``no_request`` (bool): A response that no request could be paired with (Zeek logs these too).
    - ``resp_content_encoding`` (str | None): Content-Encoding of the final response, as sent.
    - ``missing_bytes`` (int): Body octets of this exchange that were lost in capture gaps (counted, never seen).
    - ``damaged`` (bool): Framing of one of the messages was lost (gap, cap, malformed); fields may be partial.
    """

    index = cython.declare(object, visibility="public")
    method = cython.declare(object, visibility="public")
    uri = cython.declare(object, visibility="public")
    version = cython.declare(object, visibility="public")
    resp_version = cython.declare(object, visibility="public")
    host = cython.declare(object, visibility="public")
    user_agent = cython.declare(object, visibility="public")
    status = cython.declare(object, visibility="public")
    reason = cython.declare(object, visibility="public")
    info_code = cython.declare(object, visibility="public")
    request_start_ns = cython.declare(object, visibility="public")
    request_end_ns = cython.declare(object, visibility="public")
    response_start_ns = cython.declare(object, visibility="public")
    response_end_ns = cython.declare(object, visibility="public")
    request_body_len = cython.declare(object, visibility="public")
    response_body_len = cython.declare(object, visibility="public")
    response_body_decoded_len = cython.declare(object, visibility="public")
    req_content_type = cython.declare(object, visibility="public")
    resp_content_type = cython.declare(object, visibility="public")
    req_connection = cython.declare(object, visibility="public")
    resp_connection = cython.declare(object, visibility="public")
    resp_keep_alive = cython.declare(object, visibility="public")
    request_complete = cython.declare(object, visibility="public")
    response_complete = cython.declare(object, visibility="public")
    first_frame = cython.declare(object, visibility="public")
    last_frame = cython.declare(object, visibility="public")
    request_first_frame = cython.declare(object, visibility="public")
    request_last_frame = cython.declare(object, visibility="public")
    response_first_frame = cython.declare(object, visibility="public")
    response_last_frame = cython.declare(object, visibility="public")
    no_request = cython.declare(object, visibility="public")
    resp_content_encoding = cython.declare(object, visibility="public")
    missing_bytes = cython.declare(object, visibility="public")
    damaged = cython.declare(object, visibility="public")

    # Untyped on purpose: callers pass what the wire gave (None, ints, strs), checked elsewhere.
    def __init__(
        self,
        index,
        method=None,
        uri=None,
        version=None,
        resp_version=None,
        host=None,
        user_agent=None,
        status=None,
        reason=None,
        info_code=None,
        request_start_ns=None,
        request_end_ns=None,
        response_start_ns=None,
        response_end_ns=None,
        request_body_len=0,
        response_body_len=0,
        response_body_decoded_len=None,
        req_content_type=None,
        resp_content_type=None,
        req_connection=None,
        resp_connection=None,
        resp_keep_alive=None,
        request_complete=False,
        response_complete=False,
        first_frame=None,
        last_frame=None,
        request_first_frame=None,
        request_last_frame=None,
        response_first_frame=None,
        response_last_frame=None,
        no_request=False,
        resp_content_encoding=None,
        missing_bytes=0,
        damaged=False,
    ) -> None:
        self.index = index
        self.method = method
        self.uri = uri
        self.version = version
        self.resp_version = resp_version
        self.host = host
        self.user_agent = user_agent
        self.status = status
        self.reason = reason
        self.info_code = info_code
        self.request_start_ns = request_start_ns
        self.request_end_ns = request_end_ns
        self.response_start_ns = response_start_ns
        self.response_end_ns = response_end_ns
        self.request_body_len = request_body_len
        self.response_body_len = response_body_len
        self.response_body_decoded_len = response_body_decoded_len
        self.req_content_type = req_content_type
        self.resp_content_type = resp_content_type
        self.req_connection = req_connection
        self.resp_connection = resp_connection
        self.resp_keep_alive = resp_keep_alive
        self.request_complete = request_complete
        self.response_complete = response_complete
        self.first_frame = first_frame
        self.last_frame = last_frame
        self.request_first_frame = request_first_frame
        self.request_last_frame = request_last_frame
        self.response_first_frame = response_first_frame
        self.response_last_frame = response_last_frame
        self.no_request = no_request
        self.resp_content_encoding = resp_content_encoding
        self.missing_bytes = missing_bytes
        self.damaged = damaged

    def as_tuple(self) -> tuple:
        """The fields in :data:`EXCHANGE_FIELDS` order (one call for a columnar consumer)."""
        return (self.index, self.method, self.uri, self.version, self.resp_version, self.host, self.user_agent, self.status, self.reason, self.info_code, self.request_start_ns, self.request_end_ns, self.response_start_ns, self.response_end_ns, self.request_body_len, self.response_body_len, self.response_body_decoded_len, self.req_content_type, self.resp_content_type, self.req_connection, self.resp_connection, self.resp_keep_alive, self.request_complete, self.response_complete, self.first_frame, self.last_frame, self.request_first_frame, self.request_last_frame, self.response_first_frame, self.response_last_frame, self.no_request, self.resp_content_encoding, self.missing_bytes, self.damaged,)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Exchange):
            return NotImplemented
        return self.as_tuple() == other.as_tuple()

    def __repr__(self) -> str:
        return "Exchange(" + ", ".join(f"{k}={v!r}" for k, v in zip(EXCHANGE_FIELDS, self.as_tuple())) + ")"


EXCHANGE_FIELDS = ("index", "method", "uri", "version", "resp_version", "host", "user_agent", "status", "reason", "info_code", "request_start_ns", "request_end_ns", "response_start_ns", "response_end_ns", "request_body_len", "response_body_len", "response_body_decoded_len", "req_content_type", "resp_content_type", "req_connection", "resp_connection", "resp_keep_alive", "request_complete", "response_complete", "first_frame", "last_frame", "request_first_frame", "request_last_frame", "response_first_frame", "response_last_frame", "no_request", "resp_content_encoding", "missing_bytes", "damaged",)
"""Names of :class:`Exchange` fields, in constructor order."""


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


@cython.final
@cython.cclass
class _Side:
    """Parser state of one direction (client->server or server->client)."""

    buf = cython.declare(bytearray, visibility="public")
    fields = cython.declare(list)
    ex = cython.declare(Exchange)
    inflater = cython.declare(object)
    await_ex = cython.declare(Exchange)
    carry_ts = cython.declare(object)
    carry_frame = cython.declare(object)
    last_ts = cython.declare(object)
    last_frame = cython.declare(object)
    remaining = cython.declare(cython.longlong)
    scanned = cython.declare(cython.Py_ssize_t)
    line_off = cython.declare(cython.Py_ssize_t)
    carry_len = cython.declare(cython.Py_ssize_t)
    hdr_bytes = cython.declare(cython.Py_ssize_t)
    tunnel_bytes = cython.declare(cython.Py_ssize_t)
    resume = cython.declare(cython.Py_ssize_t)
    state = cython.declare(cython.int)
    is_server = cython.declare(cython.bint)
    wait = cython.declare(cython.bint)
    skip_nl = cython.declare(cython.bint)
    interim = cython.declare(cython.bint)
    from_queue = cython.declare(cython.bint)
    overflow = cython.declare(cython.bint)
    running = cython.declare(cython.bint)
    at_end = cython.declare(cython.bint)

    def __init__(self, is_server: bool) -> None:
        self.is_server = is_server
        self.buf = bytearray()  # unconsumed bytes: a partial line or header section, never body
        self.fields = [None] * _N_FIELDS  # wanted header values of the section just parsed
        self.state = _START
        self.remaining = 0
        self.scanned = 0  # bytes at the buffer's start already searched for the current terminator
        self.line_off = 0  # start of the current partial header line, relative to the buffer
        self.carry_len = 0  # how much of the working buffer came from earlier calls
        self.carry_ts = 0  # time/frame of the packet that carried the buffer's first byte
        self.carry_frame = 0
        self.wait = False  # a handler needs more bytes
        self.ex = None  # Exchange being parsed
        self.hdr_bytes = 0
        self.skip_nl = False  # in RESYNC: the current position is not at a line start
        self.interim = False  # the message being parsed is a 1xx reply
        self.from_queue = False  # the response answers a queued request (counts in pending)
        self.inflater = None  # _Inflater of the response body, if it is counted
        self.last_ts = 0
        self.last_frame = 0
        self.await_ex = None  # PAUSED: the CONNECT/Upgrade request
        self.overflow = False  # PAUSED: bytes beyond the hold buffer were dropped
        self.tunnel_bytes = 0
        self.running = False  # inside _run (its buffer must not be touched from outside)
        self.at_end = False  # finish() is draining: do not wait for bytes that cannot come
        self.resume = 0  # where to go on after a helper returned -1


@cython.cclass
class HttpSession:
    """HTTP/1.x exchanges of one TCP connection, fed with each direction's in-order bytes.

    Call :meth:`client_data`/:meth:`server_data` with stream bytes as they are reassembled,
    :meth:`client_gap`/:meth:`server_gap` where the capture lost bytes, then :meth:`finish`.
    No input raises; every buffer is bounded by the caps given to the constructor.
    """

    max_header_line = cython.declare(cython.Py_ssize_t, visibility="public")
    max_header_block = cython.declare(cython.Py_ssize_t, visibility="public")
    max_chunk_line = cython.declare(cython.Py_ssize_t, visibility="public")
    max_pending = cython.declare(cython.Py_ssize_t, visibility="public")
    max_violations = cython.declare(cython.Py_ssize_t, visibility="public")
    max_decoded_body = cython.declare(object, visibility="public")
    framing_only = cython.declare(cython.bint, visibility="public")
    exchanges = cython.declare(list, visibility="public")
    tunnel = cython.declare(object, visibility="public")
    violations = cython.declare(list, visibility="public")
    violations_dropped = cython.declare(cython.Py_ssize_t, visibility="public")
    pending = cython.declare(cython.Py_ssize_t, visibility="public")
    dropped_requests = cython.declare(cython.Py_ssize_t, visibility="public")
    _queue = cython.declare(object, visibility="readonly")
    _stored_waiting = cython.declare(cython.Py_ssize_t, visibility="readonly")
    _next_index = cython.declare(cython.Py_ssize_t, visibility="readonly")
    _finished = cython.declare(cython.bint, visibility="readonly")
    _client = cython.declare(_Side, visibility="readonly")
    _server = cython.declare(_Side, visibility="readonly")

    def __init__(
        self,
        *,
        max_header_line: int = MAX_HEADER_LINE,
        max_header_block: int = MAX_HEADER_BLOCK,
        max_chunk_line: int = MAX_CHUNK_LINE,
        max_pending: int = MAX_PENDING,
        max_violations: int = MAX_VIOLATIONS,
        max_decoded_body: int = MAX_DECODED_BODY,
        framing_only: bool = False,
    ) -> None:
        self.max_header_line = max_header_line
        self.max_header_block = max_header_block
        self.max_chunk_line = max_chunk_line
        self.max_pending = max_pending
        self.max_violations = max_violations
        self.max_decoded_body = max_decoded_body
        self.framing_only = framing_only
        """Only what message framing and pairing need: the exchanges' header text fields
        (host, user_agent, content types, connection, keep-alive, content encoding) and
        response_body_decoded_len stay empty. For callers that only count requests."""

        self.exchanges = []
        """Exchanges so far, in request order (responses without request where they occurred)."""
        self.tunnel = None
        """'connect' after a 2xx answer to CONNECT, 'upgrade' after 101 (or an HTTP/2
        prior-knowledge preface); parsing of both directions stops there."""
        self.violations = []
        """(kind, frame) of protocol anomalies, at most ``max_violations`` of them."""
        self.violations_dropped = 0
        self.pending = 0
        """Requests (stored or not) without a complete final response."""
        self.dropped_requests = 0
        """Requests beyond ``max_pending`` that were counted but not stored."""

        self._queue = deque()  # requests awaiting a final response (Exchange or int);
        self._stored_waiting = 0  # an int entry stands for that many unstored requests
        self._next_index = 1
        self._finished = False
        # Handlers are picked by state in _run (no bound methods stored on the sides, so a
        # session holds no reference cycle and is freed as soon as it is dropped).
        self._client = _Side(False)
        self._server = _Side(True)

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

    @cython.cfunc
    def _violate(self, kind: str, frame) -> cython.void:
        if len(self.violations) < self.max_violations:
            self.violations.append((kind, frame))
        else:
            self.violations_dropped += 1

    @cython.cfunc
    def _feed(self, side: _Side, data, ts, frame) -> cython.void:
        st: cython.int = side.state
        if st == _DEAD or self._finished:
            side.tunnel_bytes += len(data)
            return
        side.last_ts = ts
        side.last_frame = frame
        b: bytearray = side.buf
        room: cython.Py_ssize_t
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
        pos: cython.Py_ssize_t
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

    @cython.cfunc
    def _run(self, side: _Side, buf, ts, frame) -> cython.Py_ssize_t:
        pos: cython.Py_ssize_t = 0
        n: cython.Py_ssize_t = len(buf)
        k: cython.Py_ssize_t
        st: cython.int
        while pos < n:
            st = side.state
            if st == _BODY or st == _CHUNK_DATA or st == _CLOSE_BODY:
                # Body bytes are counted and skipped, never kept.
                k = n - pos
                if st != _CLOSE_BODY and side.remaining < k:
                    k = side.remaining
                if side.inflater is not None:
                    side.inflater.feed(buf[pos : pos + k])
                ex: Exchange = side.ex
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
                            self._message_done(side, ts, frame, False)
                        else:
                            side.state = _CHUNK_END
                continue
            if st == _DEAD:
                side.tunnel_bytes += n - pos
                return n
            if st == _PAUSED:
                break
            side.wait = False
            if st == _START:
                if side.is_server:
                    pos = self._start_response(side, buf, pos, n, ts, frame)
                else:
                    pos = self._start_request(side, buf, pos, n, ts, frame)
            elif st == _HEADERS:
                if side.is_server:
                    pos = self._response_headers(side, buf, pos, n, ts, frame)
                else:
                    pos = self._request_headers(side, buf, pos, n, ts, frame)
            elif st == _CHUNK_SIZE:
                pos = self._chunk_size(side, buf, pos, n, ts, frame)
            elif st == _CHUNK_END:
                pos = self._chunk_end(side, buf, pos, n, ts, frame)
            elif st == _TRAILER:
                pos = self._trailer(side, buf, pos, n, ts, frame)
            else:
                pos = self._resync(side, buf, pos, n, ts, frame)
            if side.wait:
                break
            if side.scanned:
                side.scanned = 0
                side.line_off = 0
        return pos

    @cython.cfunc
    def _start_ts(self, side: _Side, p: cython.Py_ssize_t, ts, frame) -> tuple:
        # The byte at p came either with an earlier call (still buffered) or with this one.
        if p < side.carry_len:
            return side.carry_ts, side.carry_frame
        return ts, frame

    @cython.cfunc
    def _read_line(self, side: _Side, buf, pos: cython.Py_ssize_t, n: cython.Py_ssize_t,
                   limit: cython.Py_ssize_t, kind: str, frame) -> cython.Py_ssize_t:
        """Index of the LF ending the line at pos; -1 if more bytes are needed (side.wait set)
        or the line is over ``limit`` (violation raised, state RESYNC).

        The length is what precedes the line end (LF or CRLF) and is judged the same way
        whether the LF is already here or not, so how the bytes were segmented never
        changes the verdict."""
        p: cython.p_uchar = buf
        nl: cython.Py_ssize_t = _find_lf(buf, p, pos + side.scanned, n)
        if nl >= 0:
            if _line_len(p, pos, nl) > limit:
                self._damage(side, kind, frame)
                side.resume = nl + 1
                return -1
            return nl
        if _line_len(p, pos, n) > limit:
            self._damage(side, kind, frame)
            side.skip_nl = True
            side.resume = n
            return -1
        side.scanned = n - pos
        side.wait = True
        side.resume = pos
        return -1

    @cython.cfunc
    def _find_section_end(self, side: _Side, buf, pos: cython.Py_ssize_t, n: cython.Py_ssize_t,
                          frame) -> cython.Py_ssize_t:
        """Offset just past the empty line ending the header/trailer section that starts at
        pos (a line start); -1 when incomplete (side.wait) or over a cap (damaged)."""
        p: cython.p_uchar = buf
        c: cython.int = p[pos]
        if c == 10:
            return pos + 1
        if c == 13:
            if pos + 1 == n:
                if side.at_end:
                    return n
                side.wait = True
                side.resume = pos
                return -1
            if p[pos + 1] == 10:
                return pos + 2
        # Bare LF line ends are accepted, so the section ends at "\n\r\n" or "\n\n",
        # whichever comes first.
        s: cython.Py_ssize_t = pos + side.scanned
        end: cython.Py_ssize_t = _section_end(buf, p, s, n)
        if end < 0:
            # Lines completed since the last call are judged now, as they would have been had
            # their bytes come one at a time: a line over the cap counts from its (cap + 1)th
            # byte before its line end, unless the block cap was crossed first.
            a: cython.Py_ssize_t = pos + side.line_off
            e: cython.Py_ssize_t = _find_lf(buf, p, a, n)
            t: cython.Py_ssize_t
            judge: cython.bint = True
            while e >= 0:
                if judge and _line_len(p, a, e) > self.max_header_line:
                    t = a + self.max_header_line + (2 if p[a + self.max_header_line] == 13 else 1)
                    if t <= pos + self.max_header_block - side.hdr_bytes:
                        self._damage(side, "header_line_too_large", frame)
                        side.skip_nl = True
                        side.resume = t
                        return -1
                    judge = False       # the block cap comes first (below)
                a = e + 1
                e = _find_lf(buf, p, a, n)
            side.line_off = a - pos     # the line still open starts after the last LF
            if side.hdr_bytes + n - pos > self.max_header_block:
                self._damage(side, "header_too_large", frame)
                side.skip_nl = p[n - 1] != 10
                side.resume = n
                return -1
            if _line_len(p, pos + side.line_off, n) > self.max_header_line:
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

    @cython.cfunc
    def _parse_fields(self, side: _Side, buf, a: cython.Py_ssize_t, b: cython.Py_ssize_t,
                      frame) -> cython.bint:
        """Put the wanted header fields of the section buf[a:b] in ``side.fields`` (repeated
        fields joined with ', ' as RFC 9110 5.3 allows); False if a line is over the cap.

        Lines end at CRLF, LF or a lone CR (as bytes.splitlines() splits them).  Only the
        names are looked at (in place) and only wanted values are copied out.
        """
        p: cython.p_uchar = buf
        fields: list = side.fields
        f: cython.int
        for f in range(_N_FIELDS):
            fields[f] = None
        last: cython.int = -1
        bad: cython.Py_ssize_t = 0
        longest: cython.Py_ssize_t = 0
        i: cython.Py_ssize_t = a
        j: cython.Py_ssize_t
        k: cython.Py_ssize_t
        ne: cython.Py_ssize_t
        vs: cython.Py_ssize_t
        ve: cython.Py_ssize_t
        c: cython.int
        while i < b:
            j = _line_end(buf, p, i, b)
            # The line is buf[i:j].
            if j - i > longest:
                longest = j - i
            if j > i:
                c = p[i]
                if c == 32 or c == 9:
                    # obs-fold (RFC 9112 5.2): a continuation of the previous field's value.
                    if last >= 0:
                        vs = i
                        ve = j
                        while vs < ve and _is_space(p[vs]):
                            vs += 1
                        while ve > vs and _is_space(p[ve - 1]):
                            ve -= 1
                        fields[last] = fields[last] + b" " + _bytes(buf, p, vs, ve)
                else:
                    k = i
                    while k < j and p[k] != 58:  # ':'
                        k += 1
                    if k == j:
                        bad += 1
                        last = -1
                    else:
                        f = _wanted(p, i, k)
                        if f < 0:
                            # "Name :" is invalid but seen in the wild.
                            ne = k
                            while ne > i and _is_space(p[ne - 1]):
                                ne -= 1
                            if ne != k:
                                f = _wanted(p, i, ne)
                        if f >= 0 and self.framing_only and f != _F_CL and f != _F_TE and f != _F_UPG:
                            f = -1      # a field no table will show: not copied out
                        if f >= 0:
                            vs = k + 1
                            ve = j
                            while vs < ve and _is_space(p[vs]):
                                vs += 1
                            while ve > vs and _is_space(p[ve - 1]):
                                ve -= 1
                            value = _bytes(buf, p, vs, ve)
                            if fields[f] is None:
                                fields[f] = value
                            else:
                                fields[f] = fields[f] + b", " + value
                        last = f
            # Next line: after CRLF, LF or a lone CR.
            if j < b and p[j] == 13 and j + 1 < b and p[j + 1] == 10:
                i = j + 2
            else:
                i = j + 1
        if b - a > self.max_header_line and longest > self.max_header_line:
            return False
        while bad:
            self._violate("bad_header_line", frame)
            bad -= 1
        return True

    @cython.cfunc
    def _damage(self, side: _Side, kind: str, frame) -> cython.void:
        ex: Exchange
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
                self._settle_client(ex, False)
        side.inflater = None
        side.ex = None
        side.interim = False
        side.state = _RESYNC
        side.skip_nl = False
        # where the open header line starts belongs to the header section given up
        side.line_off = 0

    @cython.cfunc
    def _resync(self, side: _Side, buf, pos: cython.Py_ssize_t, n: cython.Py_ssize_t, ts, frame) -> cython.Py_ssize_t:
        # Line by line until one parses as a start line; rare, so simplicity beats speed.
        p: cython.p_uchar = buf
        while pos < n:
            nl = _find_lf(buf, p, pos + side.scanned, n)
            if side.skip_nl:
                if nl < 0:
                    return n
                side.skip_nl = False
                pos = nl + 1
                side.scanned = 0
                continue
            if nl >= 0 and _line_len(p, pos, nl) > self.max_header_line:
                pos = nl + 1        # too long to be a start line, as when it arrives in pieces
                side.scanned = 0
                continue
            if nl < 0:
                if _line_len(p, pos, n) > self.max_header_line:
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

    @cython.cfunc
    def _start_request(self, side: _Side, buf, pos: cython.Py_ssize_t, n: cython.Py_ssize_t, ts, frame) -> cython.Py_ssize_t:
        ex: Exchange
        p: cython.p_uchar = buf
        # RFC 9112 2.2: empty lines before a request line are ignored.
        while p[pos] == 13 or p[pos] == 10:
            pos += 1
            if pos == n:
                return pos
        nl: cython.Py_ssize_t = self._read_line(side, buf, pos, n, self.max_header_line,
                                                "request_line_too_large", frame)
        if nl < 0:
            return side.resume
        parsed = _fast_request_line(buf, p, pos, nl)
        if parsed is None:
            parsed = parse_request_line(_bytes(buf, p, pos, nl), True)
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
            self._message_done(side, ts, frame, False)
            return nl + 1
        # Fast path: the whole header section is already here (ended by a CRLF empty line)
        # and within the caps, so parse it now rather than in the HEADERS state (same
        # result, fewer steps).
        end: cython.Py_ssize_t = _section_end(buf, p, nl, n) - 3
        if end >= nl and p[end + 1] == 13 and end + 3 - pos <= self.max_header_block:
            if self._parse_fields(side, buf, nl + 1, end + 1, frame):
                self._request_fields(side, ex, ts, frame)
                return end + 3
        side.hdr_bytes = nl + 1 - pos
        side.state = _HEADERS
        return nl + 1

    @cython.cfunc
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

    @cython.cfunc
    def _request_headers(self, side: _Side, buf, pos: cython.Py_ssize_t, n: cython.Py_ssize_t, ts, frame) -> cython.Py_ssize_t:
        end: cython.Py_ssize_t = self._find_section_end(side, buf, pos, n, frame)
        if end < 0:
            return side.resume
        if not self._parse_fields(side, buf, pos, end, frame):
            self._damage(side, "header_line_too_large", frame)
            return end
        self._request_fields(side, side.ex, ts, frame)
        return end

    @cython.cfunc
    def _request_fields(self, side: _Side, ex: Exchange, ts, frame) -> cython.void:
        """Record the request's header fields and choose how its body is framed."""
        ex.request_end_ns = ts
        ex.request_last_frame = frame
        fields: list = side.fields
        # each request's fields are recorded once, on a fresh exchange
        if not self.framing_only:
            ex.host = _opt_text(fields[_F_HOST])
            ex.user_agent = _opt_text(fields[_F_UA])
            ex.req_content_type = _opt_text(fields[_F_CT])
            ex.req_connection = _opt_text(fields[_F_CONN])

        # Message body length of a request, RFC 9112 6.3 (rules 1, 2 and 7 are about responses).
        te = fields[_F_TE]
        cl = fields[_F_CL]
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
        if ex.method == "CONNECT" or fields[_F_UPG] is not None:
            self._message_done(side, ts, frame, True)
        else:
            self._message_done(side, ts, frame, False)

    # ------------------------------------------------------------------ responses

    @cython.cfunc
    def _pop_for_response(self, frame) -> tuple:
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

    @cython.cfunc
    def _start_response(self, side: _Side, buf, pos: cython.Py_ssize_t, n: cython.Py_ssize_t, ts, frame) -> cython.Py_ssize_t:
        ex: Exchange
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
        p: cython.p_uchar = buf
        while p[pos] == 13 or p[pos] == 10:
            pos += 1
            if pos == n:
                return pos
        nl: cython.Py_ssize_t = self._read_line(side, buf, pos, n, self.max_header_line,
                                                "status_line_too_large", frame)
        if nl < 0:
            return side.resume
        parsed = _fast_status_line(buf, p, pos, nl)
        if parsed is None:
            parsed = parse_status_line(_bytes(buf, p, pos, nl))
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
        end: cython.Py_ssize_t = _section_end(buf, p, nl, n) - 3
        if end >= nl and p[end + 1] == 13 and end + 3 - pos <= self.max_header_block:
            if self._parse_fields(side, buf, nl + 1, end + 1, frame):
                self._response_fields(side, ex, ts, frame)
                return end + 3
        side.hdr_bytes = nl + 1 - pos
        side.state = _HEADERS
        return nl + 1

    @cython.cfunc
    def _response_headers(self, side: _Side, buf, pos: cython.Py_ssize_t, n: cython.Py_ssize_t, ts, frame) -> cython.Py_ssize_t:
        end: cython.Py_ssize_t = self._find_section_end(side, buf, pos, n, frame)
        if end < 0:
            return side.resume
        if not self._parse_fields(side, buf, pos, end, frame):
            self._damage(side, "header_line_too_large", frame)
            return end
        self._response_fields(side, side.ex, ts, frame)
        return end

    @cython.cfunc
    def _response_fields(self, side: _Side, ex: Exchange, ts, frame) -> cython.void:
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
        fields: list = side.fields
        # ... and the final response's (1xx replies returned above); framing_only leaves
        # Content-Encoding out too, so no body is inflated to count its decoded size
        ce = fields[_F_CE]
        if not self.framing_only:
            ex.resp_content_type = _opt_text(fields[_F_CT])
            ex.resp_connection = _opt_text(fields[_F_CONN])
            ex.resp_keep_alive = _opt_text(fields[_F_KA])
            ex.resp_content_encoding = _opt_text(ce)

        status = ex.status
        method = ex.method  # None when unpaired or unstored: framed like a GET
        # Message body length of a response, RFC 9112 6.3.
        if status == 101:
            # Rule 1 (1xx has no body) and the protocol switch that 101 announces.
            self._message_done(side, ts, frame, False)
            self._start_tunnel("upgrade")
            return
        if method == "CONNECT" and 200 <= status < 300:
            # Rule 2: "Any 2xx (Successful) response to a CONNECT request implies that the
            # connection will become a tunnel immediately after the empty line that
            # concludes the header fields."
            self._message_done(side, ts, frame, False)
            self._start_tunnel("connect")
            return
        self._settle_client(ex, False)
        if method == "HEAD" or status == 204 or status == 304 or 100 <= status < 200:
            # Rule 1: "Any response to a HEAD request and any response with a 1xx
            # (Informational), 204 (No Content), or 304 (Not Modified) status code is always
            # terminated by the first empty line after the header fields ... and thus cannot
            # contain a message body or trailer section."
            self._message_done(side, ts, frame, False)
            return
        te = fields[_F_TE]
        cl = fields[_F_CL]
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
                self._message_done(side, ts, frame, False)
            return
        # Rule 7: "Otherwise, this is a response message without a declared message body
        # length, so the message body length is determined by the number of octets received
        # by the recipient prior to the server closing the connection."
        self._start_decoder(side, ce)
        side.state = _CLOSE_BODY

    @cython.cfunc
    def _start_decoder(self, side: _Side, ce) -> cython.void:
        if ce is None:
            return
        codings = [c.strip().lower() for c in ce.split(b",")]
        codings = [c for c in codings if c and c != b"identity"]
        if len(codings) == 1 and codings[0] in _INFLATABLE:
            side.inflater = _Inflater(_INFLATABLE[codings[0]], self.max_decoded_body)

    @cython.cfunc
    def _settle_client(self, ex: Exchange, tunnel: cython.bint) -> cython.void:
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

    @cython.cfunc
    def _start_tunnel(self, kind: str) -> cython.void:
        self.tunnel = kind
        side: _Side
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

    @cython.cfunc
    def _chunk_size(self, side: _Side, buf, pos: cython.Py_ssize_t, n: cython.Py_ssize_t, ts, frame) -> cython.Py_ssize_t:
        nl: cython.Py_ssize_t = self._read_line(side, buf, pos, n, self.max_chunk_line, "bad_chunk_size", frame)
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

    @cython.cfunc
    def _chunk_end(self, side: _Side, buf, pos: cython.Py_ssize_t, n: cython.Py_ssize_t, ts, frame) -> cython.Py_ssize_t:
        p: cython.p_uchar = buf
        c: cython.int = p[pos]
        if c == 10:
            side.state = _CHUNK_SIZE
            return pos + 1
        if c == 13:
            if pos + 1 == n:
                side.wait = True
                return pos
            if p[pos + 1] == 10:
                side.state = _CHUNK_SIZE
                return pos + 2
        self._damage(side, "bad_chunk_terminator", frame)
        return pos

    @cython.cfunc
    def _trailer(self, side: _Side, buf, pos: cython.Py_ssize_t, n: cython.Py_ssize_t, ts, frame) -> cython.Py_ssize_t:
        end: cython.Py_ssize_t = self._find_section_end(side, buf, pos, n, frame)
        if end < 0:
            return side.resume
        self._message_done(side, ts, frame, False)
        return end

    # ------------------------------------------------------------------ message ends

    @cython.cfunc
    def _message_done(self, side: _Side, ts, frame, hold: cython.bint) -> cython.void:
        ex: Exchange
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

    @cython.cfunc
    def _decoded(self, side: _Side, frame) -> object:
        inf = side.inflater
        side.inflater = None
        result = inf.result()
        if inf.problem is not None and inf.problem != "gap":
            self._violate(inf.problem, frame)
        return result

    # ------------------------------------------------------------------ gaps and the end

    @cython.cfunc
    def _guarded_gap(self, side: _Side, nbytes, ts, frame) -> cython.void:
        try:
            self._gap(side, nbytes, ts, frame)
        except Exception:  # noqa: BLE001
            self._violate("internal_error", frame)
            side.buf.clear()
            if side.state != _DEAD:
                side.ex = None
                side.inflater = None
                side.state = _RESYNC

    @cython.cfunc
    def _gap(self, side: _Side, nbytes, ts, frame) -> cython.void:
        ex: Exchange
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
                        self._message_done(side, ts, frame, False)
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

    @cython.cfunc
    def _finish(self) -> cython.void:
        ex: Exchange
        c: _Side = self._client
        s: _Side = self._server
        side: _Side
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
                        method, uri, version = parsed
                        self._new_request(method, uri, version, side.carry_ts, side.carry_frame,
                                          side.carry_ts, side.carry_frame)
        if s.state == _CLOSE_BODY and s.ex is not None:
            # Rule 7 (and HTTP/0.9): the close is what ends this body.
            self._message_done(s, s.last_ts, s.last_frame, False)
            s.ex = None
        elif s.ex is not None and s.inflater is not None:
            # Cut-off response: report what its received part decodes to.
            s.ex.response_body_decoded_len = self._decoded(s, s.last_frame)
        for ex in self.exchanges:
            _span(ex)


@cython.cfunc
@cython.inline
def _is_space(c: cython.int) -> cython.bint:
    # What bytes.strip() strips (a line never holds CR or LF).
    return c == 32 or c == 9 or c == 11 or c == 12


# The everyday start lines, recognised in place without splitting the line into objects.
# Anything else returns None and goes through the general grammar (_grammar), whose answers
# these must equal (tests/http/test_fast_lines.py checks that on arbitrary lines).
_FAST_METHODS = tuple((m.encode("ascii"), m) for m in ("GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS"))


@cython.cfunc
@cython.inline
def _is_ws(c: cython.int) -> cython.bint:
    # What bytes.split() splits on.
    return c == 32 or (9 <= c <= 13)


@cython.cfunc
def _fast_request_line(buf, p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> object:
    """(method, target, version) of 'METHOD SP target SP HTTP/1.x' with a common method."""
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    k: cython.Py_ssize_t
    n: cython.Py_ssize_t
    q: cython.p_uchar
    if b > a and p[b - 1] == 13:
        b -= 1
    i = a
    while i < b and 65 <= p[i] <= 90:
        i += 1
    if i == a or i >= b or p[i] != 32:
        return None
    method = None
    for mb, ms in _FAST_METHODS:
        n = len(mb)
        if n != i - a:
            continue
        q = mb
        j = 0
        while j < n and p[a + j] == q[j]:
            j += 1
        if j == n:
            method = ms
            break
    if method is None:
        return None
    # ... SP HTTP/1.0 or HTTP/1.1 at the end, a non-empty target without whitespace between
    if b - i < 11 or p[b - 9] != 32 or p[b - 8] != 72 or p[b - 7] != 84 or p[b - 6] != 84 \
            or p[b - 5] != 80 or p[b - 4] != 47 or p[b - 3] != 49 or p[b - 2] != 46 \
            or (p[b - 1] != 48 and p[b - 1] != 49):
        return None
    for k in range(i + 1, b - 9):
        if _is_ws(p[k]):
            return None
    return method, _text(_bytes(buf, p, i + 1, b - 9)), ("1.1" if p[b - 1] == 49 else "1.0")


@cython.cfunc
def _fast_status_line(buf, p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> object:
    """(version, status, reason) of 'HTTP/1.x SP ddd [SP reason]'."""
    if b > a and p[b - 1] == 13:
        b -= 1
    if b - a < 12 or p[a] != 72 or p[a + 1] != 84 or p[a + 2] != 84 or p[a + 3] != 80 or p[a + 4] != 47 \
            or p[a + 5] != 49 or p[a + 6] != 46 or (p[a + 7] != 48 and p[a + 7] != 49) or p[a + 8] != 32:
        return None
    d0: cython.int = p[a + 9] - 48
    d1: cython.int = p[a + 10] - 48
    d2: cython.int = p[a + 11] - 48
    if not (0 <= d0 <= 9 and 0 <= d1 <= 9 and 0 <= d2 <= 9):
        return None
    r: cython.Py_ssize_t = a + 12
    if r < b and p[r] != 32:
        return None
    while r < b and _is_ws(p[r]):
        r += 1
    e: cython.Py_ssize_t = b
    while e > r and _is_ws(p[e - 1]):
        e -= 1
    return ("1.1" if p[a + 7] == 49 else "1.0"), d0 * 100 + d1 * 10 + d2, (_text(_bytes(buf, p, r, e)) if e > r else "")


def fast_start_line(line: bytes, response: bool) -> object:
    """The in-place start-line recognisers, callable from Python (for tests)."""
    q: cython.p_uchar = line
    return _fast_status_line(line, q, 0, len(line)) if response else _fast_request_line(line, q, 0, len(line))


@cython.cfunc
@cython.inline
def _find_lf(buf, p: cython.p_uchar, a: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """Index of the first LF in buf[a:n], or -1 (memchr once compiled: bytes.find costs
    more in argument parsing than in searching a header line)."""
    if cython.compiled:
        if a >= n:
            return -1
        r: cython.p_void = memchr(p + a, 10, n - a)  # noqa: F821 - cimported in session.pxd
        if r == cython.NULL:
            return -1
        return cython.cast(cython.p_uchar, r) - p
    return buf.find(b"\n", a, n)


@cython.cfunc
@cython.inline
def _line_end(buf, p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """Index of the first CR or LF in buf[a:b], or b: two memchr scans (LF, then a CR
    before it) cost less than a test of every byte of a header line."""
    e: cython.Py_ssize_t = _find_lf(buf, p, a, b)
    if e < 0:
        e = b
    if cython.compiled:
        if e > a:
            r: cython.p_void = memchr(p + a, 13, e - a)  # noqa: F821 - cimported in session.pxd
            if r != cython.NULL:
                return cython.cast(cython.p_uchar, r) - p
        return e
    cr = buf.find(b"\r", a, e)
    return e if cr < 0 else cr


@cython.cfunc
def _section_end(buf, p: cython.p_uchar, s: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """Offset just past the first empty line after a LF at or after s: the first LF at
    i >= s followed by LF (end i + 2) or by CR LF (end i + 3); -1 if none is complete in
    buf[:n]. Bare LF line ends are accepted, so an LF LF ends a section too."""
    i: cython.Py_ssize_t = _find_lf(buf, p, s, n)
    while i >= 0:
        if i + 1 < n and p[i + 1] == 10:
            return i + 2
        if i + 2 < n and p[i + 1] == 13 and p[i + 2] == 10:
            return i + 3
        i = _find_lf(buf, p, i + 1, n)
    return -1


@cython.cfunc
@cython.inline
def _line_len(p: cython.p_uchar, a: cython.Py_ssize_t, e: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """Length of the line p[a:e] without a CR that ends it (the line end is not the line)."""
    return e - a - (1 if e > a and p[e - 1] == 13 else 0)


@cython.cfunc
@cython.inline
def _opt_text(raw) -> object:
    """A header value as text, None when the header was absent."""
    return None if raw is None else _text(raw)


@cython.cfunc
def _bytes(buf, p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> bytes:
    """buf[a:b] as bytes (p points at buf's first byte when compiled)."""
    if cython.compiled:
        return cython.cast(cython.p_char, p)[a:b]
    return bytes(buf[a:b])


@cython.cfunc
def _wanted(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.int:
    """Slot of the field named by the bytes at [a, b) (any case), or -1 if not wanted."""
    n: cython.Py_ssize_t = b - a
    f: cython.int
    c: cython.int
    if n == 4:
        f = _F_HOST
    elif n == 7:
        f = _F_UPG
    elif n == 10:
        c = p[a] | 0x20
        if c == 117:  # u
            f = _F_UA
        elif c == 99:  # c
            f = _F_CONN
        elif c == 107:  # k
            f = _F_KA
        else:
            return -1
    elif n == 12:
        f = _F_CT
    elif n == 14:
        f = _F_CL
    elif n == 16:
        f = _F_CE
    elif n == 17:
        f = _F_TE
    else:
        return -1
    name: bytes = _NAMES[f]
    i: cython.Py_ssize_t
    for i in range(n):
        c = p[a + i]
        if 65 <= c <= 90:  # ASCII upper case only, as bytes.lower()
            c += 32
        if c != name[i]:
            return -1
    return f


@cython.cfunc
@cython.inline
def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


@cython.cfunc
def _span(ex: Exchange) -> cython.void:
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
