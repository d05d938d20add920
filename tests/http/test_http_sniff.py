"""detect(): HTTP vs TLS vs unknown by content, SNI extraction, never raising."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from sockscope.http import detect


def client_hello(sni: bytes | None, record_split: int | None = None) -> bytes:
    exts = b"\x00\x17\x00\x00"  # extended_master_secret, empty
    if sni is not None:
        entry = b"\x00" + struct.pack("!H", len(sni)) + sni
        data = struct.pack("!H", len(entry)) + entry
        exts += struct.pack("!HH", 0, len(data)) + data
    body = (b"\x03\x03" + b"r" * 32 + b"\x20" + b"s" * 32 + b"\x00\x04\x13\x01\x13\x02"
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    if record_split is None:
        return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs
    a, b = hs[:record_split], hs[record_split:]
    return (b"\x16\x03\x01" + struct.pack("!H", len(a)) + a
            + b"\x16\x03\x01" + struct.pack("!H", len(b)) + b)


def test_request_line_is_http_on_any_port():
    assert detect(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", b"") == ("http", None)
    assert detect(b"CCM_POST /x HTTP/1.0\r\n", b"") == ("http", None)


def test_status_line_alone_is_http():
    assert detect(b"", b"HTTP/1.1 200 OK\r\n") == ("http", None)
    assert detect(b"\x00\x01", b"HTTP/1.0 404 Not Found\r\n") == ("http", None)


def test_request_line_cut_short_is_still_http():
    assert detect(b"GET /" + b"a" * 300, b"") == ("http", None)


def test_tls_client_hello_gives_sni():
    assert detect(client_hello(b"example.org"), b"") == ("tls", "example.org")


def test_tls_client_hello_spanning_two_records_gives_sni():
    assert detect(client_hello(b"split.example", record_split=20), b"") == ("tls", "split.example")


def test_tls_without_sni():
    assert detect(client_hello(None), b"\x16\x03\x03\x00\x10\x02") == ("tls", None)


def test_truncated_client_hello_is_tls_without_crash():
    hello = client_hello(b"example.org")
    for cut in range(6, len(hello)):
        kind, sni = detect(hello[:cut], b"")
        assert kind == "tls" and sni in (None, "example.org")


def test_server_hello_only_is_tls():
    assert detect(b"", b"\x16\x03\x03\x00\x4a\x02\x00\x00\x46") == ("tls", None)


def test_other_protocols_are_unknown():
    assert detect(b"SSH-2.0-OpenSSH_9.0\r\n", b"SSH-2.0-OpenSSH_9.0\r\n") == ("unknown", None)
    assert detect(b"EHLO mail.example\r\n", b"220 mx ESMTP\r\n") == ("unknown", None)
    assert detect(b"", b"") == ("unknown", None)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=64))
def test_garbage_never_raises(client, server):
    kind, sni = detect(client, server)
    assert kind in ("http", "tls", "unknown") and (sni is None or isinstance(sni, str))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 400))
def test_mangled_client_hello_never_raises(noise, at):
    hello = bytearray(client_hello(b"host.example"))
    at = min(at, len(hello))
    hello[at : at + len(noise)] = noise
    kind, _ = detect(bytes(hello), b"")
    assert kind in ("http", "tls", "unknown")
