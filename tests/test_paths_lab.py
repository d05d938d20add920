"""The routed-path lab (lab/record_paths.sh): connections killed by the network, captured on
both sides of a router. diagnose must name what the truth (from the programs' and the
router's logs) says, and must never blame an endpoint for what the router did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sockscope.analysis import KINDS

LAB = Path(__file__).resolve().parents[1] / "captures" / "lab"
SCENARIOS = sorted(p.parent for p in LAB.glob("*/truth.json") if (p.parent / "client.pcap").exists())
# verdicts the truth names that no detector gives yet; for these the test still demands that
# nothing wrong is said
NOT_YET: set[str] = set()
BLAME = {"server_abort", "client_abort", "client_idle_timeout", "stale_reuse"}


def _diagnose(pcap: Path) -> list[dict]:
    if pcap.stat().st_size <= 24:        # a pcap header and no packet: nothing reached that side
        return []
    out = subprocess.run([sys.executable, "-m", "sockscope", "diagnose", "--json", str(pcap)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(not SCENARIOS, reason="no routed-path recordings in captures/lab (sudo lab/record_paths.sh)")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_client_side_verdicts_match_the_logs(scenario: Path):
    truth = json.loads((scenario / "truth.json").read_text())
    found = _diagnose(scenario / "client.pcap")
    for conn in truth["connections"]:
        expected = set(conn["expected_verdicts"])
        assert expected, conn
        kinds = {f["kind"] for f in found
                 if f["evidence"].get("client", "").endswith(f":{conn['client_port']}")}
        for kind in expected - NOT_YET:
            assert kind in KINDS and kind in kinds, (scenario.name, conn["client_port"], kind, found)
        if conn.get("killed_by") == "router":
            assert not kinds & BLAME, f"{scenario.name}: an endpoint blamed for the router's doing: {kinds}"


@pytest.mark.skipif(not SCENARIOS, reason="no routed-path recordings in captures/lab")
def test_a_forged_rst_is_told_by_its_ttl_and_never_reaches_the_server():
    mb = LAB / "middlebox-rst"
    found = _diagnose(mb / "client.pcap")
    (f,) = [x for x in found if x["kind"] == "middlebox_rst"]
    ev = f["evidence"]
    assert ev["claimed_from"] == "server" and ev["rst_ttl"] == ev["sender_ttl_max"] + 1
    assert ev["confidence"] == "high" and "server_abort" not in {x["kind"] for x in found}
    # at the server: neither the request nor any RST, so nothing to say
    assert _diagnose(mb / "server.pcap") == []


@pytest.mark.skipif(not (LAB / "silent-drop" / "client.pcap").exists(), reason="no silent-drop recording")
def test_a_silent_drop_is_named_with_its_retransmissions_and_nobody_blamed():
    found = _diagnose(LAB / "silent-drop" / "client.pcap")
    (f,) = found
    ev = f["evidence"]
    assert f["kind"] == "silent_drop" and ev["sender"] == "client" and ev["retransmits"] == 7
    assert 5.9 < ev["peer_quiet_before_s"] < 6.1 and "no FIN or RST" in ev["ended"]
    # the server never saw the request: its capture shows a healthy first exchange only
    assert _diagnose(LAB / "silent-drop" / "server.pcap") == []


@pytest.mark.skipif(not (LAB / "zero-window" / "client.pcap").exists(), reason="no zero-window recording")
@pytest.mark.parametrize("point", ["client", "server"])
def test_a_zero_window_stall_names_the_receiver_that_stopped_reading(point: str):
    truth = json.loads((LAB / "zero-window" / "truth.json").read_text())
    (conn,) = truth["connections"]
    found = _diagnose(LAB / "zero-window" / f"{point}.pcap")
    (f,) = found
    ev = f["evidence"]
    # the truth: the sink never read (5985 bytes unread at the end), the client gave up after 5 s
    assert conn["server_saw"]["requests"] == [] and conn["server_saw"]["max_unread_bytes"] > 0
    assert f["kind"] == "zero_window_stall" and f["severity"] == "error"
    assert ev["receiver"] == "server" and ev["sender"] == "client" and not ev["reopened"]
    assert ev["first_frame"] == 13 and ev["window_probes"] == 5 and 6.8 < ev["stalled_s"] < 6.82
    assert "POST /upload" in f["summary"] and "no FIN or RST" in ev["ended"]
