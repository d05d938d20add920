"""Start-line recognition shared by the session parser and the protocol sniffer.

Both functions take one line *without* its LF (a trailing CR is tolerated) and return
``None`` for anything that does not look like the start of an HTTP/1.x message; they never
raise for any bytes.
"""

from __future__ import annotations

# RFC 9110 tchar: the characters a method (a token) may consist of.
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# A request line without a version is only believed to be HTTP/0.9 when its method is one
# people actually send; otherwise every two-word line of some other text protocol
# ("EHLO host", "USER bob") would become a request.  Zeek draws the line in the same place.
KNOWN_METHODS = frozenset(
    {
        b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT",
        b"PATCH", b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK",
        b"SEARCH", b"REPORT", b"MKCALENDAR", b"SUBSCRIBE", b"UNSUBSCRIBE", b"NOTIFY",
        b"PURGE", b"LINK", b"UNLINK",
    }
)

# Decoding the few common methods/versions once keeps the per-message cost down.
_METHOD_STR = {m: m.decode("ascii") for m in KNOWN_METHODS}
_VERSION_STR = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}


def text(raw: bytes) -> str:
    """Bytes from the wire as a str that never fails to encode later (CSV, Parquet)."""
    return raw.decode("utf-8", "backslashreplace")


def _version(v: bytes) -> str | None:
    known = _VERSION_STR.get(v)
    if known is not None:
        return known
    # HTTP-version = "HTTP/" DIGIT "." DIGIT (case-sensitive).
    if len(v) == 8 and v[:5] == b"HTTP/" and v[6] == 46 and 48 <= v[5] <= 57 and 48 <= v[7] <= 57:
        return v[5:].decode("ascii")
    return None


def parse_request_line(line: bytes, allow_09: bool = True) -> tuple[str, str, str] | None:
    """``(method, target, version)`` of a request line, or None.

    Accepted shapes: ``TOKEN SP target SP HTTP/x.y`` with any token as method and runs of
    spaces/tabs as separators; a target containing unescaped spaces (the middle words are
    joined back with single spaces); and, when ``allow_09``, ``METHOD SP target`` with a
    well-known method, reported as version ``'0.9'``.
    """
    parts = line.split()
    n = len(parts)
    if n >= 3:
        version = _version(parts[-1])
        if version is None:
            return None
        target = parts[1] if n == 3 else b" ".join(parts[1:-1])
    elif n == 2 and allow_09 and parts[0] in KNOWN_METHODS:
        version = "0.9"
        target = parts[1]
    else:
        return None
    method = parts[0]
    if method.translate(None, _TCHAR):
        return None
    m = _METHOD_STR.get(method)
    return (m if m is not None else method.decode("ascii")), text(target), version


def parse_status_line(line: bytes) -> tuple[str, int, str] | None:
    """``(version, status, reason)`` of a status line ``HTTP/x.y SP ddd [SP reason]``, or None."""
    if line[:5] != b"HTTP/":
        return None
    parts = line.split(None, 2)
    if len(parts) < 2:
        return None
    version = _version(parts[0])
    code = parts[1]
    if version is None or len(code) != 3 or not code.isdigit():
        return None
    reason = text(parts[2].strip()) if len(parts) == 3 else ""
    return version, int(code), reason
