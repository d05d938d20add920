"""Protocol sniffing from the first bytes of each direction of a connection.

:func:`detect` looks at content, never at ports: HTTP/1.x by a request or status line,
TLS by a handshake record (a ClientHello, whose SNI it extracts).  It is meant for the first
few hundred bytes of each direction; shorter heads give weaker, never wrong-by-exception,
answers.
"""

from __future__ import annotations

from ._grammar import KNOWN_METHODS, parse_request_line, parse_status_line
from .session import fast_start_line

__all__ = ["detect"]

_HANDSHAKE = 0x16
_CLIENT_HELLO = 1
_SERVER_HELLO = 2
_EXT_SERVER_NAME = 0
_HOST_NAME = 0


def detect(client_head: bytes, server_head: bytes) -> tuple[str, str | None]:
    """Classify a connection from the start of its client and server byte streams.

    Returns ``('tls', sni_or_None)`` for a TLS handshake (SNI from the ClientHello's
    server_name extension when present and complete), ``('http', None)`` when the client
    starts with a request line or the server with a status line, else ``('unknown', None)``.
    Never raises for any input.
    """
    try:
        client_head = bytes(client_head or b"")
        server_head = bytes(server_head or b"")
        if _tls_record(client_head, _CLIENT_HELLO):
            return "tls", client_hello_sni(client_head)
        if _looks_like_request(client_head) or _looks_like_status(server_head):
            return "http", None
        if _tls_record(server_head, _SERVER_HELLO):
            return "tls", None
    except Exception:  # noqa: BLE001 - sniffing is best effort by contract
        pass
    return "unknown", None


def _tls_record(head: bytes, handshake_type: int) -> bool:
    # TLSPlaintext: type 22 (handshake), legacy_version 3.x (x <= 4), length; then the
    # handshake header whose first byte is the message type.
    return (
        len(head) >= 6
        and head[0] == _HANDSHAKE
        and head[1] == 3
        and head[2] <= 4
        and head[5] == handshake_type
    )


def _looks_like_request(head: bytes) -> bool:
    head = head.lstrip(b"\r\n")
    nl = head.find(b"\n")
    if nl >= 0:
        # the framer's in-place recogniser settles everyday lines without the grammar's regex
        line = head[:nl]
        return fast_start_line(line, False) is not None or parse_request_line(line) is not None
    # The line is cut off by the size of the head: believe a well-known method followed by
    # something shaped like a target.
    method, sep, rest = head.partition(b" ")
    return bool(sep) and method in KNOWN_METHODS and rest[:1] in (b"/", b"*", b"h", b"H") or (
        bool(sep) and method == b"CONNECT" and bool(rest)
    )


def _looks_like_status(head: bytes) -> bool:
    nl = head.find(b"\n")
    line = head[:nl] if nl >= 0 else head
    if fast_start_line(line, True) is not None or parse_status_line(line) is not None:
        return True
    # "HTTP/1.1 2" cut short still counts if what is there has the right shape.
    return nl < 0 and len(line) >= 10 and parse_status_line(line[:12] + b"0" * (12 - len(line[:12]))) is not None


def client_hello_sni(head: bytes) -> str | None:
    """The host_name of the server_name extension of the ClientHello at the start of
    ``head`` (which may span several TLS records), or None.  Bounds-checked throughout."""
    # Reassemble the handshake bytes carried by consecutive handshake records.
    hs = bytearray()
    i = 0
    while i + 5 <= len(head) and head[i] == _HANDSHAKE:
        length = int.from_bytes(head[i + 3 : i + 5], "big")
        hs += head[i + 5 : i + 5 + length]
        i += 5 + length
    r = _Reader(bytes(hs))
    if r.u8() != _CLIENT_HELLO:
        return None
    body = r.sub(r.u24())
    body.skip(2 + 32)  # legacy_version, random
    body.skip(body.u8())  # legacy_session_id
    body.skip(body.u16())  # cipher_suites
    body.skip(body.u8())  # legacy_compression_methods
    exts = body.sub(body.u16())
    while exts.ok and exts.left() >= 4:
        ext_type = exts.u16()
        ext = exts.sub(exts.u16())
        if ext_type != _EXT_SERVER_NAME:
            continue
        names = ext.sub(ext.u16())
        while names.ok and names.left() >= 3:
            name_type = names.u8()
            name = names.take(names.u16())
            if name_type == _HOST_NAME and names.ok and name:
                return name.decode("ascii", "backslashreplace")
        return None
    return None


class _Reader:
    """Cursor over bytes whose reads past the end yield zeros/empties and clear ``ok``."""

    __slots__ = ("data", "pos", "end", "ok")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        self.ok = True

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            self.ok = False
            self.pos = self.end
            return b""
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def skip(self, n: int) -> None:
        self.take(n)

    def _int(self, n: int) -> int:
        raw = self.take(n)
        return int.from_bytes(raw, "big") if raw else -1

    def u8(self) -> int:
        return self._int(1)

    def u16(self) -> int:
        return self._int(2)

    def u24(self) -> int:
        return self._int(3)

    def sub(self, n: int) -> "_Reader":
        """A reader over the next n bytes; a truncated length yields a reader over what is
        there (so an SNI near the front of a cut-off ClientHello is still found)."""
        if n < 0:
            self.ok = False
            return _Reader(b"", 0, 0)
        end = min(self.pos + n, self.end)
        r = _Reader(self.data, self.pos, end)
        self.pos = end
        return r
