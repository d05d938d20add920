"""Tests of the tshark engine (sockscope.engines.tshark) and of sockscope.crosscheck.

Captures are generated with scapy in tmp_path, with exact (Decimal) timestamps so that
durations can be asserted exactly. Tests that run tshark skip when it is not installed.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import struct
from decimal import Decimal

import pandas as pd
import pytest

from sockscope.crosscheck import crosscheck, ok
from sockscope.engines.tshark import TsharkMissing, load_tables, tshark_command
from sockscope.schema import CONNECTION_COLUMNS, REQUEST_COLUMNS

scapy_all = pytest.importorskip("scapy.all", reason="scapy is needed to build test captures")
Ether, IP, TCP, Raw, wrpcap = (
    scapy_all.Ether, scapy_all.IP, scapy_all.TCP, scapy_all.Raw, scapy_all.wrpcap,
)

needs_tshark = pytest.mark.skipif(
    shutil.which("tshark") is None,
    reason="tshark is not installed (apt-get install tshark): the tshark engine cannot run",
)

T0 = Decimal("1700000000.000000")
ZEEK = "/work/shared/conformance/zeek"


class Conv:
    """A scripted TCP conversation with consistent sequence/ack numbers."""

    def __init__(self, cip: str, cport: int, sip: str, sport: int, isn_c: int = 1000, isn_s: int = 5000):
        self.ep = {"c": (cip, cport), "s": (sip, sport)}
        self.seq = {"c": isn_c, "s": isn_s}
        self.packets: list = []

    def _pkt(self, who: str, t: str, flags: str, payload: bytes = b"", consume: int = 0):
        other = "s" if who == "c" else "c"
        (src, sport), (dst, dport) = self.ep[who], self.ep[other]
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=self.seq[who],
                  ack=self.seq[other] if "A" in flags else 0, window=65535)
        p = Ether() / IP(src=src, dst=dst) / tcp
        if payload:
            p = p / Raw(payload)
        p.time = T0 + Decimal(t)
        self.seq[who] = (self.seq[who] + len(payload) + consume) % (1 << 32)
        self.packets.append(p)
        return len(self.packets)  # frame number within this conversation

    def syn(self, t: str) -> int:
        return self._pkt("c", t, "S", consume=1)

    def synack(self, t: str) -> int:
        return self._pkt("s", t, "SA", consume=1)

    def ack(self, who: str, t: str) -> int:
        return self._pkt(who, t, "A")

    def data(self, who: str, t: str, payload: bytes) -> int:
        return self._pkt(who, t, "PA", payload)

    def fin(self, who: str, t: str) -> int:
        return self._pkt(who, t, "FA", consume=1)

    def rst(self, who: str, t: str) -> int:
        return self._pkt(who, t, "R")


def _resp(body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: keep-alive\r\n{extra}\r\n"
    ).encode() + body


def keepalive_conv() -> tuple[Conv, dict[str, int]]:
    """Two keep-alive GETs, then a POST left unanswered; client FIN 5.000 s after it."""
    c = Conv("10.0.0.1", 40000, "10.0.0.2", 80)
    f: dict[str, int] = {}
    c.syn("0.000")
    c.synack("0.001")
    c.ack("c", "0.002")
    f["req1"] = c.data("c", "0.010", b"GET /a HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t/1\r\n\r\n")
    f["resp1"] = c.data("s", "0.020", _resp(b"hello"))
    c.ack("c", "0.021")
    f["req2"] = c.data("c", "1.000", b"GET /b HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t/1\r\n\r\n")
    body = b"x" * 40
    full = _resp(body)
    f["resp2_head"] = c.data("s", "1.010", full[:-40])
    f["resp2_body"] = c.data("s", "1.011", full[-40:])
    c.ack("c", "1.012")
    f["req3"] = c.data(
        "c", "2.000",
        b"POST /c HTTP/1.1\r\nHost: example.test\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 3\r\n\r\nabc",
    )
    c.ack("s", "2.001")
    f["fin"] = c.fin("c", "7.000")
    c.fin("s", "7.001")
    c.ack("c", "7.002")
    return c, f


def rst_conv() -> Conv:
    """A GET answered by a server RST (state RSTR)."""
    c = Conv("10.0.0.3", 40001, "10.0.0.4", 80)
    c.syn("0.100")
    c.synack("0.101")
    c.ack("c", "0.102")
    c.data("c", "0.200", b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    c.rst("s", "0.250")
    return c


def write(tmp_path, name: str, *convs: Conv) -> str:
    pkts = sorted((p for c in convs for p in c.packets), key=lambda p: p.time)
    path = os.fspath(tmp_path / name)
    wrpcap(path, pkts)
    return path


def assert_schema(tables: dict[str, pd.DataFrame]) -> None:
    for name, cols in (("connections", CONNECTION_COLUMNS), ("requests", REQUEST_COLUMNS)):
        df = tables[name]
        assert list(df.columns[: len(cols)]) == list(cols), name
        for col, dtype in cols.items():
            assert df[col].dtype == pd.api.types.pandas_dtype(dtype), (name, col, df[col].dtype)


# ---------------------------------------------------------------------------- engine


@needs_tshark
def test_keepalive_then_unanswered_post(tmp_path):
    conv, f = keepalive_conv()
    t = load_tables(write(tmp_path, "ka.pcap", conv))
    assert_schema(t)
    conns, reqs = t["connections"], t["requests"]
    assert len(conns) == 1
    c = conns.iloc[0]
    assert (c.client_ip, c.client_port, c.server_ip, c.server_port) == ("10.0.0.1", 40000, "10.0.0.2", 80)
    assert c.roles_from == "syn"
    assert c.closed_by == "client" and c.close_kind == "FIN"
    assert c.close_frame == f["fin"]
    assert c.idle_before_close_s == 5.0
    assert c.last_payload_frame == f["req3"]
    assert c.close_ts - c.last_payload_ts == pd.Timedelta(seconds=5)
    assert (c.client_pkts, c.server_pkts) == (9, 6)
    client_payload = sum(len(p[TCP].payload) for p in conv.packets if p[IP].src == "10.0.0.1")
    assert c.client_bytes == client_payload
    assert c.state == "SF" and c.history == "ShADdaFf"
    assert c.protocol == "http"
    assert (c.requests, c.unanswered) == (3, 1)
    assert (c.first_frame, c.last_frame) == (1, len(conv.packets))
    assert c.start == pd.Timestamp("2023-11-14 22:13:20", tz="UTC")

    assert list(reqs["index"]) == [1, 2, 3]
    assert list(reqs["method"]) == ["GET", "GET", "POST"]
    assert list(reqs["uri"]) == ["/a", "/b", "/c"]
    assert list(reqs["outcome"].astype(str)) == ["complete", "complete", "no_response"]
    r2, r3 = reqs.iloc[1], reqs.iloc[2]
    assert (r2.status, r2.reason, r2.version, r2.host, r2.user_agent) == (200, "OK", "1.1", "example.test", "t/1")
    # The response spans two segments: start at the first, end at the one completing it.
    assert r2.response_start == conns.start[0] + pd.Timedelta("1.010s")
    assert r2.response_end == conns.start[0] + pd.Timedelta("1.011s")
    assert r2.ttfb_s == pytest.approx(0.010, abs=1e-9)
    assert r2.response_body_len == 40 and r2.resp_connection == "keep-alive"
    assert (r2.first_frame, r2.last_frame) == (f["req2"], f["resp2_body"])
    assert r3.ended_by == "client_fin" and pd.isna(r3.status)
    assert r3.request_body_len == 3 and r3.req_content_type == "text/plain"
    assert pd.isna(reqs.ended_by[0])


@needs_tshark
def test_rst_close(tmp_path):
    t = load_tables(write(tmp_path, "rst.pcap", rst_conv()))
    assert_schema(t)
    c = t["connections"].iloc[0]
    assert (c.closed_by, c.close_kind, c.close_frame, c.state) == ("server", "RST", 5, "RSTR")
    assert c.idle_before_close_s == pytest.approx(0.05, abs=1e-12)
    r = t["requests"].iloc[0]
    assert (r.outcome, r.ended_by) == ("no_response", "server_rst")


@needs_tshark
def test_response_cut_short_is_partial(tmp_path):
    c = Conv("10.0.0.11", 40002, "10.0.0.12", 80)
    c.syn("0")
    c.synack("0.001")
    c.ack("c", "0.002")
    c.data("c", "0.010", b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
    c.data("s", "0.020", _resp(b"one"))
    c.data("c", "0.030", b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    head = _resp(b"y" * 100)[:-90]  # headers promise 100 bytes, only 10 arrive
    cut = c.data("s", "0.045", head)
    c.fin("s", "0.050")
    t = load_tables(write(tmp_path, "cut.pcap", c))
    r = t["requests"]
    assert list(r.outcome.astype(str)) == ["complete", "partial_response"]
    assert r.response_start[1] == t["connections"].start[0] + pd.Timedelta("0.045s")
    assert r.ended_by[1] == "server_fin" and cut == 7


@needs_tshark
def test_no_syn_heuristic_roles(tmp_path):
    # HTTP mid-stream: the server's reply is the first packet seen.
    h = Conv("10.0.0.5", 51000, "10.0.0.6", 80)
    h.data("s", "0.000", _resp(b"late"))
    h.data("c", "0.500", b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n")
    h.data("s", "0.510", _resp(b"ok"))
    # Not HTTP, and the server talks first: the client is the side sending to the lower port.
    p = Conv("10.0.0.7", 60001, "10.0.0.8", 5432)
    p.data("s", "0.600", b"\x00\x01")
    p.data("c", "0.700", b"\x02\x03\x04")
    t = load_tables(write(tmp_path, "nosyn.pcap", h, p))
    assert_schema(t)
    conns = t["connections"].set_index("conn_id")
    assert list(conns.roles_from.astype(str)) == ["heuristic", "heuristic"]
    assert (conns.client_port[0], conns.server_port[0]) == (51000, 80)
    assert (conns.client_port[1], conns.server_port[1]) == (60001, 5432)
    assert conns.state[1] == "OTH" and conns.protocol[1] == "unknown"
    assert (conns.client_bytes[1], conns.server_bytes[1]) == (3, 2)
    reqs = t["requests"]
    assert list(reqs.outcome.astype(str)) == ["no_request", "complete"]
    assert list(reqs["index"]) == [1, 2]
    assert reqs.uri[1] == "/x" and reqs.status[1] == 200


def _h2_frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def _hpack_literal(name_index: int, value: str) -> bytes:
    # "Literal header field without indexing" with a static-table name, no Huffman.
    v = value.encode()
    return bytes([name_index, len(v)]) + v


@needs_tshark
def test_http2_cleartext_streams_become_requests(tmp_path):
    c = Conv("10.0.0.9", 41000, "10.0.0.10", 80)
    c.syn("0")
    c.synack("0.001")
    c.ack("c", "0.002")
    get = b"\x82\x86"  # :method GET, :scheme http (static table)
    req = (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + _h2_frame(4, 0, 0, b"")
        + _h2_frame(1, 0x5, 1, get + _hpack_literal(4, "/h2/one") + _hpack_literal(1, "example.test"))
        + _h2_frame(1, 0x5, 3, get + _hpack_literal(4, "/h2/two") + _hpack_literal(1, "example.test"))
    )
    c.data("c", "0.010", req)
    resp = (
        _h2_frame(4, 0, 0, b"") + _h2_frame(4, 1, 0, b"")
        + _h2_frame(1, 0x4, 1, b"\x88")  # :status 200
        + _h2_frame(0, 1, 1, b"hi")
        + _h2_frame(1, 0x5, 3, b"\x8d")  # :status 404
    )
    c.data("s", "0.020", resp)
    t = load_tables(write(tmp_path, "h2.pcap", c))
    assert_schema(t)
    r = t["requests"]
    assert list(r.uri) == ["/h2/one", "/h2/two"]
    assert list(r.status) == [200, 404] and set(r.version) == {"2"} and set(r.host) == {"example.test"}
    assert list(r.outcome.astype(str)) == ["complete", "complete"]
    assert t["connections"].protocol[0] == "http" and t["connections"].requests[0] == 2


@needs_tshark
def test_works_inside_running_event_loop(tmp_path):
    path = write(tmp_path, "loop.pcap", rst_conv())

    async def main() -> int:
        # A plain synchronous call, as a notebook cell would make while its loop runs.
        return len(load_tables(path)["connections"])

    assert asyncio.run(main()) == 1


def test_missing_tshark_is_a_clear_error(tmp_path):
    path = tmp_path / "x.pcap"
    path.write_bytes(b"")
    with pytest.raises(TsharkMissing, match="apt-get install tshark"):
        load_tables(os.fspath(path), tshark="/nonexistent/tshark")


@needs_tshark
def test_command_passes_keylog():
    cmd = tshark_command("cap.pcap", tls_keylog="/tmp/keys.log")
    assert "tls.keylog_file:/tmp/keys.log" in cmd
    assert cmd.count("-r") == 1 and "-2" not in cmd


@needs_tshark
def test_empty_capture_gives_typed_empty_tables(tmp_path):
    path = os.fspath(tmp_path / "empty.pcap")
    wrpcap(path, [Ether() / IP(src="1.1.1.1", dst="2.2.2.2") / scapy_all.UDP(sport=1, dport=2)])
    t = load_tables(path)
    assert len(t["connections"]) == 0 and len(t["requests"]) == 0
    assert_schema(t)


# ---------------------------------------------------------------------------- crosscheck


@pytest.fixture
def two_conn_tables(tmp_path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    conv, _ = keepalive_conv()
    return load_tables(write(tmp_path, "two.pcap", conv, rst_conv()))


def test_crosscheck_self_is_empty(two_conn_tables):
    d = crosscheck(two_conn_tables, two_conn_tables)
    assert len(d) == 0 and ok(d)
    assert list(d.columns) == ["table", "conn_id", "request_index", "field", "native", "other", "explained", "reason"]


def test_crosscheck_reports_exactly_the_modified_rows(two_conn_tables):
    other = {k: v.copy() for k, v in two_conn_tables.items()}
    conns, reqs = other["connections"], other["requests"]
    conns.loc[conns.conn_id == 0, "closed_by"] = "server"
    conns.loc[conns.conn_id == 0, "idle_before_close_s"] = 5.000002
    reqs.loc[(reqs.conn_id == 0) & (reqs["index"] == 2), "status"] = 404
    reqs.loc[(reqs.conn_id == 0) & (reqs["index"] == 3), "outcome"] = "partial_response"
    d = crosscheck(two_conn_tables, other)
    got = {(r.table, r.conn_id, None if pd.isna(r.request_index) else r.request_index, r.field,
            r.native, r.other, r.explained) for r in d.itertuples()}
    assert got == {
        ("connections", 0, None, "closed_by", "client", "server", False),
        ("connections", 0, None, "idle_before_close_s", 5.0, 5.000002, False),
        ("requests", 0, 2, "status", 200, 404, False),
        # documented: tshark cannot see a response cut short
        ("requests", 0, 3, "outcome", "no_response", "partial_response", True),
    }
    assert not ok(d)
    # Within tolerance is not a disagreement.
    conns.loc[conns.conn_id == 0, "idle_before_close_s"] = 5.0000004
    assert "idle_before_close_s" not in set(crosscheck(two_conn_tables, other).field)


def test_crosscheck_missing_and_swapped(two_conn_tables):
    other = {k: v.copy() for k, v in two_conn_tables.items()}
    conns = other["connections"]
    other["connections"] = conns[conns.conn_id != 1].reset_index(drop=True)
    # Swap roles of connection 0 consistently: only the swap is reported.
    c = other["connections"]
    c[["client_ip", "server_ip"]] = c[["server_ip", "client_ip"]].to_numpy()
    c[["client_port", "server_port"]] = c[["server_port", "client_port"]].to_numpy()
    c[["client_pkts", "server_pkts"]] = c[["server_pkts", "client_pkts"]].to_numpy()
    c["closed_by"] = c["closed_by"].map({"client": "server", "server": "client"}).astype(c["closed_by"].dtype)
    d = crosscheck(two_conn_tables, other)
    assert [(r.conn_id, r.field, r.reason) for r in d.itertuples()] == [
        (0, "roles", "client/server swapped"),
        (1, "connection", "missing in tshark"),
    ]
    assert not d.explained.any()
    d2 = crosscheck(other, two_conn_tables)
    assert set(d2.reason) == {"client/server swapped", "missing in native"}


# ---------------------------------------------------------------------------- Zeek traces


def _zeek_traces() -> list[str]:
    return sorted(glob.glob(os.path.join(ZEEK, "*", "*.pcap")) + glob.glob(os.path.join(ZEEK, "*", "*.pcapng")))


@needs_tshark
@pytest.mark.skipif(not os.path.isdir(ZEEK), reason=f"Zeek conformance set not present at {ZEEK}")
@pytest.mark.parametrize("trace", _zeek_traces() or ["<none>"], ids=lambda p: os.path.relpath(p, ZEEK))
def test_zeek_traces_load(trace):
    if trace == "<none>":
        pytest.skip("no Zeek traces found")
    t = load_tables(trace)
    assert_schema(t)
    assert len(t["connections"]) >= 1
    assert ok(crosscheck(t, t))


def _repo_path(rel: str) -> str:
    return os.path.join(os.path.dirname(__file__), "..", rel)


def _bundled(*rels: str) -> list[str]:
    """The captures among ``rels`` this checkout has (lab recordings may be absent)."""
    return [p for p in rels if os.path.exists(_repo_path(p))]


STALL_CAPTURES = _bundled("captures/crafted/stalls.pcap", "captures/lab/zero-window/client.pcap",
                          "captures/lab/zero-window/server.pcap", "captures/lab/dead-peer/client.pcap",
                          "captures/lab/keepalive-race/client.pcap")


@needs_tshark
@pytest.mark.parametrize("rel", STALL_CAPTURES)
def test_both_engines_find_the_same_stalls(rel):
    """tshark's keep-alive flag and window field give the stalls table the native tracker's
    sequence arithmetic gives: same rows, frames, probes and durations."""
    import sockscope

    path = _repo_path(rel)
    native = sockscope.load(path).stalls
    tshark = sockscope.load(path, engine="tshark").stalls
    assert list(tshark.columns) == list(native.columns)
    assert tshark.dtypes.astype(str).tolist() == native.dtypes.astype(str).tolist()
    pd.testing.assert_frame_equal(tshark.reset_index(drop=True), native.reset_index(drop=True),
                                  check_exact=False, atol=1e-6)
    if "stalls" in rel or "zero-window" in rel or "dead-peer" in rel:
        assert len(native), "each of these captures holds a stall"


FLIGHT_CAPTURES = _bundled("captures/crafted/crossing-fin.pcap", "captures/lab/keepalive-race/client.pcap",
                           "captures/lab/keepalive-race/server.pcap", "captures/lab/silent-drop/client.pcap")


@needs_tshark
@pytest.mark.parametrize("rel", FLIGHT_CAPTURES)
def test_both_engines_see_the_same_unacknowledged_flights_and_races(rel):
    """The flight columns the keep-alive race and the silent drop are judged from (when it
    began, its bytes, how much of it the peer acknowledged) agree, and so do the findings."""
    import sockscope

    path = _repo_path(rel)
    native, tshark = sockscope.load(path), sockscope.load(path, engine="tshark")
    cols = [f"{s}_unacked_{c}" for s in ("client", "server") for c in ("since_ts", "since_frame", "acked_bytes")]
    a = native.connections[cols].astype(object).where(native.connections[cols].notna(), None)
    b = tshark.connections[cols].astype(object).where(tshark.connections[cols].notna(), None)
    assert a.values.tolist() == b.values.tolist()
    kinds = lambda c: c.findings[["kind", "conn_id", "request_index"]].astype(str).values.tolist()  # noqa: E731
    assert kinds(native) == kinds(tshark) and kinds(native)
    if "crossing" in rel:
        # conn 2: the server acknowledged the upload's first segment; conns 3 to 5: none of the flight
        assert native.connections["client_unacked_acked_bytes"].tolist()[2:] == [1460, 0, 0, 0]
