"""The in-place start-line recognisers agree with the general grammar wherever they answer."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sockscope.http._grammar import parse_request_line, parse_status_line
from sockscope.http.session import fast_start_line

_PIECES = [b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"PRI", b"get", b"GETX",
           b" ", b"  ", b"\t", b"\x0b", b"\r", b"/", b"/a?b=1", b"*", b"\xc3\xa9", b"\xff", b"HTTP/1.1",
           b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.", b"200", b"2000", b"20", b"404", b"OK", b"Not Found",
           b"x", b"\x00", b"\"", b"\\"]
lines = st.lists(st.sampled_from(_PIECES), max_size=9).map(b"".join) | st.binary(max_size=40)


@settings(max_examples=3000)
@given(lines)
def test_fast_request_line_equals_the_grammar(line):
    fast = fast_start_line(line, False)
    if fast is not None:
        assert fast == parse_request_line(line, True)


@settings(max_examples=3000)
@given(lines)
def test_fast_status_line_equals_the_grammar(line):
    fast = fast_start_line(line, True)
    if fast is not None:
        assert fast == parse_status_line(line)


def test_everyday_lines_take_the_fast_path():
    assert fast_start_line(b"GET /files?detail=full HTTP/1.1\r", False) == ("GET", "/files?detail=full", "1.1")
    assert fast_start_line(b"POST /exec HTTP/1.0", False) == ("POST", "/exec", "1.0")
    assert fast_start_line(b"HTTP/1.1 200 OK\r", True) == ("1.1", 200, "OK")
    assert fast_start_line(b"HTTP/1.1 204", True) == ("1.1", 204, "")
    assert fast_start_line(b"HTTP/1.0 404 Not  Found \r", True) == ("1.0", 404, "Not  Found")
    assert fast_start_line(b"BREW /pot HTTP/1.1", False) is None      # unusual: the grammar decides
