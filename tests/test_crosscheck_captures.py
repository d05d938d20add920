"""Native engine vs tshark (Wireshark's dissectors) on every bundled capture and Zeek trace.

Each capture asserts its exact set of unexplained disagreements (table, field); the ones
that exist are listed with the reason, so a new disagreement and a vanished one both fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import sockscope
from sockscope.crosscheck import crosscheck
from tests.zeekref import cases, traces

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = sorted(p for p in (ROOT / "captures" / "crafted").glob("*.pcap*") if p.suffix != ".json") + \
    sorted((ROOT / "captures" / "lab").glob("*/capture.pcap"))
ZEEK = [t for _, d in cases() for t in traces(d)]

_NO_DISSECT = ("tshark does not dissect this HTTP message (its reassembly gives up on the hole or "
               "retransmission), so it has no status; sockscope frames it (Zeek agrees with sockscope)")
_SYN_RETRY = ("the client retries its SYN with the same ISN after the server's RST: tshark keeps one "
              "tcp.stream, sockscope (like Zeek's conn.log, 11 rows) starts a new connection per attempt, "
              "so conn_ids shift after it")
EXPECTED: dict[str, dict[tuple[str, str], str]] = {
    "hole.pcap": dict.fromkeys([("requests", "outcome"), ("requests", "status")], _NO_DISSECT),
    "late-rst": {("requests", "status"): "the late response arrives after the client's FIN; tshark does "
                 "not dissect it as HTTP, sockscope does (its frames are the evidence of response_after_close)"},
    "concurrent-range-requests.pcap": dict.fromkeys([("requests", "outcome"), ("requests", "status")], _NO_DISSECT),
    "connect-with-smtp.pcap": {("requests", "uri"): "request line 'CONNECT host:25 / HTTP/1.0' has two "
                               "spaces; tshark takes the first word as the URI, sockscope (and Zeek) the whole target"},
    "tcp-http-with-padding.pcap": dict.fromkeys(
        [("connections", "requests"), ("requests", "method"), ("requests", "outcome"), ("requests", "uri")],
        "HTTP on port 27272 with the request sent one byte per segment: tshark's heuristics miss the "
        "request (it logs only a response); sockscope recognises HTTP by content (Zeek agrees)"),
    "methods.pcap": dict.fromkeys(
        [("connections", "requests"), ("requests", "method"), ("requests", "outcome"), ("requests", "uri")],
        "malformed request lines: tshark skips them, sockscope records the server's reply as a no_request "
        "row (Zeek logs a row too)"),
    "pop3.pcap": dict.fromkeys(
        [("connections", "client_pkts"), ("connections", "connection"), ("connections", "server_pkts")],
        _SYN_RETRY),
    "bigtransfer.pcap": {("connections", "idle_before_close_s"): "5.4 GB transfer with 2 GiB sequence "
                         "jumps between captured segments: sockscope cannot tell new data from old "
                         "(see tests/test_zeek_conn.py), so its last-payload time is earlier"},
}


def _key(path: Path) -> str:
    return path.parent.name if path.name == "capture.pcap" else path.name


ALL = CAPTURES + ZEEK


@pytest.mark.parametrize("path", ALL, ids=[f"{p.parent.name}/{p.name}" for p in ALL])
def test_native_and_tshark_agree(path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (make test installs it when run as root)")
    native = sockscope.load(path)
    other = sockscope.load(path, engine="tshark")
    d = crosscheck({"connections": native.connections, "requests": native.requests},
                   {"connections": other.connections, "requests": other.requests})
    bad = d[~d["explained"]]
    got = {(r.table, r.field) for r in bad.itertuples()}
    assert got == set(EXPECTED.get(_key(path), {})), bad.to_string()
