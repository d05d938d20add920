"""HTTP/1.x over reassembled TCP streams: framing, pairing and timing (sans-I/O).

Theory of operation
===================

Consumes
    For one TCP connection, the in-order bytes of each direction as the TCP layer
    reassembles them: ``client_data(data, ts_ns, frame)`` / ``server_data(...)``, where
    ``ts_ns``/``frame`` identify the packet that carried ``data``; ``client_gap(n, ...)`` /
    ``server_gap(...)`` where the capture lost ``n`` bytes; and ``finish()`` when the TCP
    layer decides the connection is over (FIN, RST, end of capture: its business, not ours).
    Nothing here knows about sockets, files, pandas or TCP.

Produces
    :class:`Exchange` records, one per request (plus one per response that no request can
    explain, ``no_request=True``), in request order: method, target, versions, headers that
    matter for diagnosis, final status and last 1xx code, body lengths (chunk framing
    removed; gzip/deflate decoded size counted by streaming zlib with bounded output), the
    capture time and frame of the first and last byte of each message, and completeness
    flags.  Also ``violations`` (named anomalies with the frame where they were seen, never
    exceptions), ``tunnel`` and ``pending``.

How
    Each direction is a small state machine over one bytearray that only ever holds an
    unconsumed line or header section (bounded by caps): ``START`` (skip empty lines, read a
    start line) -> ``HEADERS`` (find the empty line, parse the few wanted fields) -> one of
    ``BODY`` (Content-Length: count down), ``CHUNK_SIZE``/``CHUNK_DATA``/``CHUNK_END``/
    ``TRAILER`` (chunked), ``CLOSE_BODY`` (until ``finish()``) -> ``START``.  Body bytes are
    counted and skipped without copying.  ``RESYNC`` is entered when framing is lost (a gap
    outside a body of known size, a malformed or oversize line, an absurd chunk size): lines
    are skipped until one parses as a request line (client) or status line (server), and
    the interrupted message is flagged ``damaged``.  ``PAUSED`` holds the client's bytes
    after a CONNECT or Upgrade request until the server's final answer says whether they
    are HTTP; ``DEAD`` means the connection became a tunnel and bytes are only counted.

    Pairing follows HTTP/1.1's ordering rule: requests queue up as their request lines are
    seen; the n-th final response answers the n-th request (pipelining works unchanged);
    1xx replies other than 101 only set ``info_code``.  The server side peeks at the queued
    request to frame its reply (HEAD, CONNECT, HTTP/0.9), per RFC 9112 section 6.3, whose
    numbered rules are quoted next to the code in :mod:`sockscope.http.session`.

Tolerance (decisions)
    Any RFC 9110 token is a method, with its case kept (so ``get`` is recorded as sent but,
    methods being case-sensitive, only ``HEAD``/``CONNECT`` change framing); a request line
    without version is HTTP/0.9 only for well-known methods; bare LF line ends, empty lines
    between messages, obs-fold header continuations, repeated identical Content-Length
    values and unescaped spaces in the target are accepted.  Conflicting or invalid
    Content-Length and a request Transfer-Encoding without final ``chunked`` lose framing
    (``damaged`` + resync) rather than guessing.

:func:`detect` (module :mod:`sockscope.http.sniff`) tells HTTP from TLS from anything else by
content and extracts the TLS SNI.
"""

from .session import EXCHANGE_FIELDS, Exchange, HttpSession
from .sniff import detect

__all__ = ["EXCHANGE_FIELDS", "Exchange", "HttpSession", "detect"]
