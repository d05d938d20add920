"""Behaviour of HttpSession, each pinned by one test; every script is fed three ways."""

from __future__ import annotations

import gzip
import zlib

import pytest

from httpfeed import c, cgap, kinds, run3, s, sgap, ts_of

from sockscope.http import Exchange, HttpSession

GET = b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\r\n"
OK5 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"


def only(session: HttpSession) -> Exchange:
    assert len(session.exchanges) == 1, session.exchanges
    return session.exchanges[0]


def test_simple_get_200_fills_every_field():
    sess = run3([c(GET), s(OK5)])
    ex = only(sess)
    assert (ex.index, ex.method, ex.uri, ex.version) == (1, "GET", "/a", "1.1")
    assert (ex.host, ex.user_agent) == ("example.com", "t/1")
    assert (ex.status, ex.reason, ex.resp_version) == (200, "OK", "1.1")
    assert ex.resp_content_type == "text/plain"
    assert ex.response_body_len == 5 and ex.request_body_len == 0
    assert ex.request_complete and ex.response_complete and not ex.no_request
    assert (ex.request_start_ns, ex.request_end_ns) == (ts_of(1), ts_of(1))
    assert (ex.response_start_ns, ex.response_end_ns) == (ts_of(2), ts_of(2))
    assert (ex.first_frame, ex.last_frame) == (1, 2)
    assert (ex.request_first_frame, ex.request_last_frame) == (1, 1)
    assert (ex.response_first_frame, ex.response_last_frame) == (2, 2)
    assert sess.pending == 0 and sess.violations == [] and sess.tunnel is None


def test_times_and_frames_follow_the_packets_that_carry_each_byte():
    # Request line split over frames 1-2, body in frame 3; response over frames 4-6.
    sess = run3([
        c(b"POST /u HTTP/1.1\r\nCont"), c(b"ent-Length: 4\r\n\r\n"), c(b"abcd"),
        s(b"HTT"), s(b"P/1.1 200 OK\r\nContent-Length: 3\r\n\r\nx"), s(b"yz"),
    ])
    ex = only(sess)
    assert (ex.request_first_frame, ex.request_last_frame) == (1, 3)
    assert (ex.request_start_ns, ex.request_end_ns) == (ts_of(1), ts_of(3))
    assert (ex.response_first_frame, ex.response_last_frame) == (4, 6)
    assert (ex.response_start_ns, ex.response_end_ns) == (ts_of(4), ts_of(6))
    assert (ex.request_body_len, ex.response_body_len) == (4, 3)


def test_head_response_has_no_body():
    sess = run3([
        c(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\nGET /y HTTP/1.1\r\n\r\n"),
        s(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + OK5),
    ])
    head, get = sess.exchanges
    assert (head.status, head.response_body_len, head.response_complete) == (200, 0, True)
    assert (get.status, get.response_body_len) == (200, 5)


def test_204_and_304_have_no_body():
    sess = run3([
        c(GET + GET + GET),
        s(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"
          b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n" + OK5),
    ])
    assert [(e.status, e.response_body_len) for e in sess.exchanges] == [(204, 0), (304, 0), (200, 5)]
    assert all(e.response_complete for e in sess.exchanges)


def test_three_100_continue_then_200_pairs_with_first_request():
    sess = run3([
        c(b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
        s(b"HTTP/1.1 100 Continue\r\n\r\n"),
        c(b"abc"),
        s(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"),
        c(GET),
        s(OK5),
        s(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    ])
    post, get = sess.exchanges
    assert (post.method, post.status, post.info_code, post.request_body_len) == ("POST", 200, 102, 3)
    # The final response's times, not the 100's; the 1xx frames still widen the span.
    assert post.response_first_frame == 6 and post.first_frame == 1
    assert (get.status, get.info_code) == (404, None)
    assert sess.pending == 0


def test_chunked_with_trailers_and_extensions():
    sess = run3([
        c(b"POST /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
          b"4;name=value;x\r\nwiki\r\n5 ; ext=\"q\"\r\npedia\r\n0;last\r\nExpires: never\r\nX-T: 1\r\n\r\n"),
        s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
          b"A\r\n0123456789\r\n000\r\n\r\n"),
        c(GET),
        s(OK5),
    ])
    post, get = sess.exchanges
    assert (post.request_body_len, post.request_complete) == (9, True)
    assert (post.response_body_len, post.response_complete) == (10, True)
    assert get.response_body_len == 5 and get.response_complete


def test_transfer_encoding_chunked_overrides_content_length():
    sess = run3([
        c(b"POST /p HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
          b"3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"),
    ])
    post, smuggled = sess.exchanges
    assert post.request_body_len == 3 and post.request_complete
    assert smuggled.uri == "/smuggled"
    assert "content_length_with_transfer_encoding" in kinds(sess)


def test_pipelined_requests_pair_in_order():
    reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(5))
    codes = [200, 201, 202, 203, 206]
    resps = b"".join(
        b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (codes[i], i) + b"z" * i for i in range(5)
    )
    sess = run3([c(reqs), s(resps)])
    assert [(e.index, e.uri, e.status, e.response_body_len) for e in sess.exchanges] == [
        (i + 1, f"/{i}", codes[i], i) for i in range(5)
    ]


def test_connect_200_starts_tunnel():
    tls = b"\x16\x03\x01\x00\x05hello GET / HTTP/1.1\r\n\r\n"
    sess = run3([
        c(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + tls),
        s(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03 server bytes"),
        c(tls),
    ])
    ex = only(sess)
    assert (ex.method, ex.uri, ex.status, ex.response_complete) == ("CONNECT", "example.com:443", 200, True)
    assert ex.response_body_len == 0
    assert sess.tunnel == "connect"
    assert sess.violations == []


def test_connect_refused_resumes_parsing_held_bytes():
    sess = run3([
        c(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n" + GET),
        s(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 2\r\n\r\nno" + OK5),
    ])
    connect, get = sess.exchanges
    assert (connect.status, get.status, get.uri) == (407, 200, "/a")
    assert sess.tunnel is None


def test_upgrade_101_starts_tunnel():
    sess = run3([
        c(b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
        s(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"),
    ])
    ex = only(sess)
    assert (ex.status, ex.info_code, ex.response_complete) == (101, None, True)
    assert sess.tunnel == "upgrade" and sess.violations == []


def test_upgrade_refused_continues_as_http():
    sess = run3([c(b"GET /ws HTTP/1.1\r\nUpgrade: h2c\r\n\r\n" + GET), s(OK5 + OK5)])
    assert [e.status for e in sess.exchanges] == [200, 200]
    assert sess.tunnel is None


def test_http09_request_body_until_close():
    sess = run3([c(b"GET /zeek.html\n"), s(b"<html>\n  hi\n</html>\n"), s(b"more")])
    ex = only(sess)
    assert (ex.method, ex.uri, ex.version, ex.resp_version) == ("GET", "/zeek.html", "0.9", "0.9")
    assert (ex.status, ex.response_body_len, ex.response_complete) == (None, 24, True)
    assert (ex.response_first_frame, ex.response_last_frame) == (2, 3)


def test_http09_request_answered_with_status_line_is_parsed_as_http1():
    sess = run3([c(b"GET /\r\n"), s(b"HTTP/1.0 400 Bad Request\r\n\r\nbad")])
    ex = only(sess)
    assert (ex.version, ex.status, ex.resp_version, ex.response_body_len) == ("0.9", 400, "1.0", 3)


def test_versionless_line_needs_a_known_method():
    post = run3([c(b"POST /zeek.html\n")])
    assert [(e.method, e.version) for e in post.exchanges] == [("POST", "0.9")]
    junk = run3([c(b"T /zeek.html\n")])
    assert junk.exchanges == [] and kinds(junk) == ["junk_before_request"]


def test_response_without_request_is_no_request_row():
    sess = run3([s(OK5), c(GET), s(OK5)])
    orphan, ex = sess.exchanges
    assert (orphan.no_request, orphan.method, orphan.status, orphan.index) == (True, None, 200, 1)
    assert orphan.response_complete and orphan.response_body_len == 5
    assert (ex.no_request, ex.index, ex.status) == (False, 2, 200)
    assert kinds(sess) == ["unexpected_response"]
    assert sess.pending == 0


def test_close_delimited_response_ends_at_finish():
    sess = run3([c(GET), s(b"HTTP/1.0 200 OK\r\n\r\nabc"), s(b"defg")])
    ex = only(sess)
    assert (ex.response_body_len, ex.response_complete, ex.response_last_frame) == (7, True, 3)


def test_response_transfer_encoding_not_chunked_is_close_delimited():
    sess = run3([c(GET), s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabcdef")])
    ex = only(sess)
    assert (ex.response_body_len, ex.response_complete) == (6, True)


def test_request_without_length_has_no_body():
    sess = run3([c(b"POST /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n")])
    assert [(e.uri, e.request_body_len, e.request_complete) for e in sess.exchanges] == [
        ("/x", 0, True), ("/y", 0, True)]


def test_unfinished_exchanges_are_returned_by_finish():
    sess = run3([c(GET + b"POST /b HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"),
                 s(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nxy")])
    first, second = sess.exchanges
    assert (first.request_complete, first.response_complete, first.response_body_len) == (True, False, 2)
    assert (second.request_complete, second.request_body_len, second.status) == (False, 3, None)
    assert sess.pending == 2


def test_request_line_cut_by_end_of_data_still_counts():
    sess = run3([c(GET + b"GET /late HTTP/1.1")])
    assert [e.uri for e in sess.exchanges] == ["/a", "/late"]
    assert not sess.exchanges[1].request_complete


def test_gap_in_body_counts_and_continues():
    sess = run3([
        c(GET + GET),
        s(b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"x" * 1000),
        sgap(1000),
        s(b"y" * 1000 + OK5),
    ])
    first, second = sess.exchanges
    assert (first.response_body_len, first.missing_bytes, first.response_complete) == (3000, 1000, True)
    assert not first.damaged
    assert (second.status, second.response_body_len) == (200, 5)
    assert sess.violations == []


def test_gap_in_chunk_data_counts_and_continues():
    sess = run3([
        c(GET),
        s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123"),
        sgap(8),
        s(b"cdef\r\n0\r\n\r\n"),
    ])
    ex = only(sess)
    assert (ex.response_body_len, ex.missing_bytes, ex.response_complete) == (16, 8, True)


def test_gap_in_headers_damages_and_resyncs():
    sess = run3([
        c(b"GET /1 HTTP/1.1\r\nHost: a\r\n"), cgap(50), c(b"xx: y\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
        s(OK5 + OK5),
    ])
    one, two = sess.exchanges
    assert one.damaged and not one.request_complete and one.status == 200
    assert two.uri == "/2" and two.request_complete and two.status == 200
    assert kinds(sess) == ["content_gap"]


def test_gap_past_end_of_body_resyncs_at_next_status_line():
    sess = run3([
        c(GET + GET + GET),
        s(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"),
        sgap(30),  # rest of the body and the start of the second response
        s(b"t: x\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    ])
    first, second, third = sess.exchanges
    assert first.response_complete and first.missing_bytes == 2
    assert second.status == 201  # pairing cannot know a whole response was lost
    assert third.status is None
    assert kinds(sess) == ["content_gap"]


def test_gzip_decoded_len():
    payload = b"The quick brown fox. " * 500
    body = gzip.compress(payload)
    sess = run3([c(GET), s(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                           % len(body) + body)])
    ex = only(sess)
    assert (ex.response_body_len, ex.response_body_decoded_len) == (len(body), len(payload))
    assert ex.resp_content_encoding == "gzip"


def test_gzip_decoded_len_through_chunks_and_members():
    body = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 234)
    chunks = b"".join(b"%x\r\n" % len(body[i:i + 100]) + body[i:i + 100] + b"\r\n" for i in range(0, len(body), 100))
    sess = run3([c(GET), s(b"HTTP/1.1 200 OK\r\nContent-Encoding: x-gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + chunks + b"0\r\n\r\n")])
    assert only(sess).response_body_decoded_len == 1234


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_deflate_decoded_len_zlib_wrapped_or_raw(wbits):
    co = zlib.compressobj(9, zlib.DEFLATED, wbits)
    body = co.compress(b"x" * 5000) + co.flush()
    sess = run3([c(GET), s(b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n" + body)])
    assert only(sess).response_body_decoded_len == 5000


def test_no_encoding_means_no_decoded_len():
    assert only(run3([c(GET), s(OK5)])).response_body_decoded_len is None


def test_corrupt_gzip_is_flagged_and_decoded_len_unknown():
    sess = run3([c(GET), s(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 20\r\n\r\n"
                           + b"\x1f\x8b\x08\x00" + b"\xff" * 16)])
    assert only(sess).response_body_decoded_len is None
    assert kinds(sess) == ["bad_content_encoding"]


def test_zip_bomb_is_capped():
    body = gzip.compress(b"\0" * (8 << 20))
    sess = HttpSession(max_decoded_body=1 << 20)
    sess.client_data(GET, 1, 1)
    sess.server_data(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body, 2, 2)
    ex = sess.finish()[0]
    assert ex.response_body_len == len(body) and ex.response_body_decoded_len is None
    assert kinds(sess) == ["decoded_body_too_large"]


def test_gap_in_gzip_body_leaves_decoded_len_unknown():
    body = gzip.compress(bytes(range(256)) * 40)
    sess = run3([c(GET), s(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                           % len(body) + body[:100]), sgap(50), s(body[150:])])
    ex = only(sess)
    assert ex.response_complete and ex.missing_bytes == 50 and ex.response_body_decoded_len is None


@pytest.mark.parametrize("size", [b"10000000000000000", b"FFFFFFFFFFFFFFFFF", b"8000000000000000"])
def test_chunk_size_2_pow_64_is_flagged_not_crash(size):
    sess = run3([c(GET + GET), s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 + size + b"\r\nabc\r\n0\r\n\r\n" + OK5)])
    first, second = sess.exchanges
    assert first.damaged and not first.response_complete
    assert second.status == 200 and second.response_body_len == 5
    assert kinds(sess) == ["bad_chunk_size"]


def test_chunk_size_with_leading_zeros_is_fine():
    sess = run3([c(GET), s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"000000000000000000003\r\nabc\r\n0\r\n\r\n")])
    assert only(sess).response_body_len == 3 and only(sess).response_complete


def test_non_hex_chunk_size_is_flagged():
    sess = run3([c(GET), s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")])
    assert only(sess).damaged and kinds(sess) == ["bad_chunk_size"]


def test_header_bomb_capped():
    bomb = b"GET /bomb HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 50 + b"\r\n" * 1 
    bomb += b"".join(b"X-%d: %s\r\n" % (i, b"b" * 60) for i in range(6000)) + b"\r\n"
    assert len(bomb) > 300_000
    sess = run3([c(bomb + GET), s(OK5 + OK5)])
    assert kinds(sess) == ["header_too_large"]
    bombed, get = sess.exchanges
    assert bombed.damaged and bombed.status == 200
    assert get.uri == "/a" and get.request_complete and get.status == 200
    assert len(sess._client.buf) == 0


def test_long_header_line_capped():
    sess = run3([c(b"GET /x HTTP/1.1\r\nCookie: " + b"c" * 5000 + b"\r\n\r\n" + GET)],
                max_header_line=1000)
    first, second = sess.exchanges
    assert first.damaged and second.request_complete
    assert kinds(sess) == ["header_line_too_large"]


def test_a_long_header_line_after_a_damaged_message_is_reported_with_its_segment():
    # The first request's header block overflows before its end is seen; the next request's
    # too-long line arrives in segment 2, its section ends in segment 3. Where the line
    # starts must not be remembered from the damaged message: the violation is frame 2's.
    overflow = b"GET /a HTTP/1.1\r\nX: " + b"y" * 30 + b"\r\n" + b"Z: 1\r\n" * 40
    second = b"GET /b HTTP/1.1\r\nLong: " + b"q" * 60 + b"\r\nH"
    sess = HttpSession(max_header_line=40, max_header_block=200)
    for frame, data in enumerate([overflow, b"\r\n\r\n" + second, b"ost: x\r\n\r\n"], 1):
        sess.client_data(data, frame * 1000, frame)
    assert [e.uri for e in sess.finish()] == ["/a", "/b"]
    assert sess.violations == [("header_too_large", 1), ("header_line_too_large", 2)]


def test_endless_request_line_is_bounded():
    sess = HttpSession(max_header_line=1000)
    for i in range(100):
        sess.client_data(b"G" * 997, i, i + 1)
        assert len(sess._client.buf) <= 2000
    sess.client_data(b"\r\n" + GET, 100, 101)
    assert [e.uri for e in sess.finish()] == ["/a"]
    assert kinds(sess) == ["request_line_too_large"]


def test_duplicate_identical_content_length_accepted():
    sess = run3([c(GET + GET), s(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc" + OK5)])
    assert [e.response_body_len for e in sess.exchanges] == [3, 5]
    assert sess.violations == []


def test_conflicting_content_length_damages_and_resyncs():
    sess = run3([c(b"POST /p HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd" + GET),
                 s(b"HTTP/1.1 400 Bad\r\nContent-Length: x\r\n\r\noops\r\n" + OK5)])
    post, get = sess.exchanges
    assert post.damaged and not post.request_complete and post.status == 400 and not post.response_complete
    assert get.uri == "/a" and get.status == 200
    assert kinds(sess) == ["bad_content_length", "bad_content_length"]


def test_bare_lf_line_endings():
    sess = run3([c(b"GET /lf HTTP/1.1\nHost: h\n\nGET /mix HTTP/1.1\r\nHost: m\n\r\n"),
                 s(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nokHTTP/1.1 200 OK\r\nContent-Length: 1\n\nk")])
    assert [(e.uri, e.host, e.response_body_len) for e in sess.exchanges] == [("/lf", "h", 2), ("/mix", "m", 1)]


def test_leading_empty_lines_between_messages():
    sess = run3([c(b"\r\n\r\n" + GET + b"\r\n" + GET), s(b"\r\n" + OK5 + b"\r\n\r\n" + OK5)])
    assert [e.status for e in sess.exchanges] == [200, 200]
    assert sess.violations == []


def test_header_folding():
    sess = run3([c(b"GET / HTTP/1.1\r\nUser-Agent: first\r\n  second\r\n\tthird\r\nHost: h\r\n\r\n")])
    assert (only(sess).user_agent, only(sess).host) == ("first second third", "h")


def test_any_token_is_a_method_and_case_is_kept():
    sess = run3([c(b"CCM_POST /x HTTP/1.1\r\n\r\nget /y HTTP/1.0\r\n\r\nhead /z HTTP/1.1\r\n\r\n"),
                 s(OK5 + OK5 + OK5)])
    assert [(e.method, e.response_body_len) for e in sess.exchanges] == [
        ("CCM_POST", 5), ("get", 5), ("head", 5)]  # "head" is not HEAD: methods are case-sensitive


def test_target_with_spaces_and_status_without_reason():
    sess = run3([c(b"GET /a b c HTTP/1.1\r\n\r\n"), s(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")])
    assert (only(sess).uri, only(sess).status, only(sess).reason) == ("/a b c", 200, "")


def test_junk_before_request_flagged_then_resync():
    sess = run3([c(b"\x16\x03\x01 binary junk\r\nmore junk\r\n" + GET), s(OK5)])
    assert only(sess).uri == "/a" and only(sess).status == 200
    assert kinds(sess) == ["junk_before_request"]


def test_junk_before_response_flagged_then_resync():
    sess = run3([c(GET), s(b"garbage\r\n" + OK5)])
    assert only(sess).status == 200 and kinds(sess) == ["junk_before_response"]


def test_http2_preface_stops_parsing():
    sess = run3([c(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04")])
    assert sess.exchanges == [] and sess.tunnel == "upgrade" and kinds(sess) == ["http2_preface"]


def test_max_pending_counts_but_does_not_store():
    reqs = b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(5))
    resps = b"".join(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % (200 + i) for i in range(5))
    sess = HttpSession(max_pending=3)
    sess.client_data(reqs, 1, 1)
    assert sess.pending == 5 and sess.dropped_requests == 2 and len(sess.exchanges) == 3
    sess.server_data(resps, 2, 2)
    sess.client_data(GET, 3, 3)
    sess.server_data(OK5, 4, 4)
    ex = sess.finish()
    assert [(e.index, e.status) for e in ex] == [(1, 200), (2, 201), (3, 202), (6, 200)]
    assert sess.pending == 0


def test_pending_counts_requests_without_complete_response():
    sess = HttpSession()
    sess.client_data(GET + GET + GET, 1, 1)
    assert sess.pending == 3
    sess.server_data(OK5 + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", 2, 2)
    assert sess.pending == 2
    sess.finish()
    assert sess.pending == 2


def test_violations_are_capped():
    sess = HttpSession(max_violations=5)
    for i in range(20):
        sess.server_data(OK5, i, i + 1)  # each one an unexpected response
    sess.finish()
    assert len(sess.violations) == 5 and sess.violations_dropped == 15


def test_data_after_finish_is_ignored():
    sess = HttpSession()
    sess.client_data(GET, 1, 1)
    ex = sess.finish()
    sess.client_data(GET, 2, 2)
    sess.server_gap(10, 3, 3)
    assert sess.finish() is ex and len(ex) == 1


def test_positional_exchange_construction():
    # HttpSession builds Exchange positionally for speed; this pins the field order it assumes.
    sess = HttpSession()
    sess.client_data(GET, 7, 3)
    ex = sess.exchanges[0]
    want = Exchange(1, method="GET", uri="/a", version="1.1", host="example.com", user_agent="t/1",
                    request_start_ns=7, request_end_ns=7, first_frame=3, last_frame=3,
                    request_first_frame=3, request_last_frame=3, request_complete=True)
    assert ex == want
