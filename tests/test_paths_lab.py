"""The routed-path lab (lab/record_paths.sh): connections killed by the network, captured on
both sides of a router. diagnose must name what the truth (from the programs' and the
router's logs) says, and must never blame an endpoint for what the router did."""

from __future__ import annotations

import json
import shutil
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
        if conn.get("lookalike"):
            loud = {f["kind"] for f in found if f["severity"] in ("error", "warning")
                    and f["evidence"].get("client", "").endswith(f":{conn['client_port']}")}
            assert not loud, f"{scenario.name}: a look-alike reported as a failure: {loud}"


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


def _kinds(found: list[dict]) -> list[str]:
    return sorted(f["kind"] for f in found)


@pytest.mark.skipif(not (LAB / "dead-peer" / "client.pcap").exists(), reason="no dead-peer recording")
def test_a_dead_peer_is_named_from_the_unanswered_keepalive_probes():
    truth = json.loads((LAB / "dead-peer" / "truth.json").read_text())
    (conn,) = truth["connections"]
    found = _diagnose(LAB / "dead-peer" / "client.pcap")
    (f,) = found
    ev = f["evidence"]
    # the truth: TCP_KEEPIDLE 2 s, TCP_KEEPINTVL 1 s, TCP_KEEPCNT 3; errno 110 on the idle socket
    assert conn["killed_by"] == "server_host_gone" and "TCP_KEEPCNT 3" in conn["why"][0]
    assert f["kind"] == "dead_peer" and f["severity"] == "error" and f["request_index"] is None
    assert ev["prober"] == "client" and ev["probes"] == 3
    assert (ev["first_probe_frame"], ev["last_probe_frame"], ev["prober_rst_frame"]) == (10, 12, 13)
    assert 1.9 < ev["peer_quiet_before_s"] < 2.1 and 0.95 < ev["interval_s"] < 1.1
    # the prober's RST is its kernel giving up: neither a close kind nor a timer sample
    assert "client_abort" not in _kinds(found) and "gave up" in ev["ended"]
    # the server's host left the network: its capture has the healthy exchange only
    assert _diagnose(LAB / "dead-peer" / "server.pcap") == []


@pytest.mark.skipif(not (LAB / "server-killed" / "client.pcap").exists(), reason="no server-killed recording")
@pytest.mark.parametrize("point", ["client", "server"])
def test_a_killed_server_is_one_event_with_its_rst_for_unread_data(point: str):
    truth = json.loads((LAB / "server-killed" / "truth.json").read_text())
    ports = set(truth["summary"]["killed_client_ports"])
    found = _diagnose(LAB / "server-killed" / f"{point}.pcap")
    assert _kinds(found) == ["server_abort"] * 4
    assert {int(f["evidence"]["client"].rsplit(":", 1)[1]) for f in found} == ports
    for f in found:
        grp = f["evidence"]["closed_together"]
        assert grp["count"] == 4 and grp["span_ms"] < 1.0 and "process died" in f["summary"]
        assert "inferred_timeout_s" not in f["evidence"]       # one moment, not one idle time
    # the connection whose socket held unread data (ss: Recv-Q 4096) was reset, the others closed
    unread = [c["client_port"] for c in truth["connections"] if "Recv-Q 4096" in c["why"][0]]
    rst = [f for f in found if f["evidence"]["close_kind"] == "RST"]
    assert [int(f["evidence"]["client"].rsplit(":", 1)[1]) for f in rst] == unread
    assert "unread" in rst[0]["evidence"]["cause"]


@pytest.mark.skipif(not (LAB / "keepalive-race" / "client.pcap").exists(), reason="no keepalive-race recording")
@pytest.mark.parametrize("point", ["client", "server"])
def test_the_keepalive_race_is_the_same_story_at_both_points(point: str):
    """Beside the client the request goes out 46.7 ms before nginx's FIN arrives; beside the
    server the FIN leaves before the request comes. Both: nginx's 2 s timer, no abort."""
    truth = json.loads((LAB / "keepalive-race" / "truth.json").read_text())
    (conn,) = truth["connections"]
    found = _diagnose(LAB / "keepalive-race" / f"{point}.pcap")
    assert _kinds(found) == ["server_idle_close", "stale_reuse"]
    close = next(f for f in found if f["kind"] == "server_idle_close")
    assert abs(close["evidence"]["idle_s"] - conn["server_keepalive_timeout_s"]) < 0.01
    stale = next(f for f in found if f["kind"] == "stale_reuse")
    assert stale["request_index"] == 2
    assert stale["evidence"]["crossed"] is (point == "client")
    if point == "client":
        assert 0.040 < stale["evidence"]["fin_after_request_s"] < conn["path_delay_each_way_ms"] / 1000
        assert "crossed on the wire" in stale["summary"]


@pytest.mark.skipif(not (LAB / "undici-idle-close" / "client.pcap").exists(), reason="no undici recording")
@pytest.mark.parametrize("point", ["client", "server"])
def test_undicis_idle_close_is_information_and_never_a_failure(point: str):
    found = _diagnose(LAB / "undici-idle-close" / f"{point}.pcap")
    (f,) = found
    assert f["kind"] == "client_idle_close" and f["severity"] == "info" and f["request_index"] is None
    assert f["evidence"]["inferred_timeout_s"] == 4.0 and 4.0 < f["evidence"]["idle_s"] < 4.01
    assert "nothing failed" in f["summary"]


@pytest.mark.skipif(not (LAB / "node-http-timeout" / "client.pcap").exists(), reason="no node:http recording")
def test_node_http_request_timeout_is_a_client_timer():
    found = [f for f in _diagnose(LAB / "node-http-timeout" / "client.pcap") if f["kind"] != "root_cause_hint"]
    assert _kinds(found) == ["client_idle_timeout"] * 2
    assert {f["evidence"]["inferred_timeout_s"] for f in found} == {3.0}


POINTS = [(s, p) for s in SCENARIOS for p in ("client", "server") if (s / f"{p}.pcap").stat().st_size > 24]


@pytest.mark.skipif(not POINTS or shutil.which("tshark") is None, reason="no recordings, or no tshark")
@pytest.mark.parametrize("scenario,point", POINTS, ids=lambda x: getattr(x, "name", x))
def test_the_tshark_engine_gives_the_same_verdicts(scenario: Path, point: str):
    """TTLs, IP-IDs, the unacknowledged flight and the stalls come from tshark's fields too:
    the same findings on the same connections, so no engine accuses the server of a router's RST."""
    pcap = scenario / f"{point}.pcap"
    out = subprocess.run([sys.executable, "-m", "sockscope", "diagnose", "--engine", "tshark", "--json", str(pcap)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    tshark = sorted((f["kind"], f["conn_id"]) for f in json.loads(out.stdout))
    native = sorted((f["kind"], f["conn_id"]) for f in _diagnose(pcap))
    assert tshark == native


def _diagnose_points(scenario: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sockscope", "diagnose", *args, str(LAB / scenario / "client.pcap"),
                           str(LAB / scenario / "server.pcap")], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not (LAB / "middlebox-rst" / "server.pcap").exists(), reason="no middlebox-rst recording")
def test_two_points_prove_the_server_never_sent_the_rst():
    out = _diagnose_points("middlebox-rst", "--json")
    assert out.returncode == 0, out.stderr
    (f,) = json.loads(out.stdout)
    ev = f["evidence"]
    server_pcap = str(LAB / "middlebox-rst" / "server.pcap")
    assert f["kind"] == "middlebox_rst" and ev["absent_from"] == [server_pcap]
    # the same connection beside the server: frames 1-9 there, and no RST in them
    assert ev["also_at"]["capture"] == server_pcap and ev["also_at"]["last_frame"] == 9
    assert "the server never sent it" in f["summary"]
    # the server-side file has no packet after the first exchange: its silence is proof only
    # if it was still capturing, which a pcap cannot tell, and the finding says so
    assert ev["absence_certain"] is False and "unless that capture had stopped" in f["summary"]
    pts = ev["also_at"]["points"]
    assert pts["nearer_clients"] == str(LAB / "middlebox-rst" / "client.pcap") and pts["matched"] == 1
    assert 0 < pts["one_way_delay_s"] < 0.001          # the router's namespaces, no delay added
    text = _diagnose_points("middlebox-rst").stdout
    assert "Capture points: 1 connection(s) seen at both" in text and "never seen at" in text
    assert "tcp.stream eq 0 in client.pcap" in " ".join(text.split())     # the terminal may wrap it


@pytest.mark.skipif(not (LAB / "silent-drop" / "server.pcap").exists(), reason="no silent-drop recording")
def test_two_points_prove_the_request_never_reached_the_server():
    out = _diagnose_points("silent-drop", "--json")
    assert out.returncode == 0, out.stderr
    (f,) = json.loads(out.stdout)
    ev = f["evidence"]
    assert f["kind"] == "silent_drop" and ev["absent_from"] == [str(LAB / "silent-drop" / "server.pcap")]
    # beside the server: the first exchange's 167 bytes, not the lost request's
    assert ev["bytes_seen_there"] == 167 and "never reached the server" in f["summary"]


@pytest.mark.skipif(not (LAB / "keepalive-race" / "server.pcap").exists(), reason="no keepalive-race recording")
def test_two_points_measure_the_delay_line_and_count_each_death_once():
    truth = json.loads((LAB / "keepalive-race" / "truth.json").read_text())
    out = _diagnose_points("keepalive-race", "--json")
    found = json.loads(out.stdout)
    assert sorted(f["kind"] for f in found) == ["server_idle_close"] * 2 + ["stale_reuse"] * 2
    pts = found[0]["evidence"]["also_at"]["points"]
    # the router holds each packet 50 ms (its log: held_ms 50.2-51.9) and the clocks are one
    delay = truth["connections"][0]["path_delay_each_way_ms"] / 1000
    assert delay < pts["one_way_delay_s"] < delay + 0.005 and abs(pts["clock_offset_s"]) < 0.005
    # one close seen twice is one sample of nginx's timer, not two
    close = next(f for f in found if f["kind"] == "server_idle_close")
    assert close["evidence"]["timeout_cluster_size"] == 1
    # each finding's filter is for its own file, where Wireshark numbers streams from 0
    for f in found:
        cap = f["evidence"]["capture"]
        assert f["display_filter"].startswith("tcp.stream eq 0 ")
        if shutil.which("tshark"):
            frames = subprocess.run(["tshark", "-r", cap, "-Y", f["display_filter"], "-T", "fields", "-e",
                                     "frame.number"], capture_output=True, text=True, timeout=60).stdout.split()
            assert frames and f["display_filter"].endswith("{" + ",".join(frames) + "}")


@pytest.mark.skipif(not (LAB / "zero-window" / "server.pcap").exists(), reason="no recordings")
@pytest.mark.parametrize("scenario", ["middlebox-rst", "zero-window", "server-killed"])
def test_the_point_nearer_the_clients_is_found_whatever_the_order_of_the_files(scenario: str):
    """By the router's hop (the client's TTL is 64 beside it, 63 beside the server), also
    where no request was answered at both points to give the clocks (zero-window,
    server-killed)."""
    import sockscope

    cap = sockscope.load([LAB / scenario / "server.pcap", LAB / scenario / "client.pcap"])
    pts = cap.points
    assert pts.oriented and pts.names[0] == str(LAB / scenario / "client.pcap")
    assert cap.connections["twin_conn_id"].notna().all()


@pytest.mark.skipif(not (LAB / "silent-drop" / "server.pcap").exists(), reason="no recordings")
@pytest.mark.parametrize("scenario,lost,made", [
    # the request and its 7 retransmissions dropped by the router
    ("silent-drop", {"client→server": 8}, {}),
    # the request the router answered with its forged RST never went on; the RST was made there
    ("middlebox-rst", {"client→server": 1}, {"server→client": 1}),
    # the client's 3 keep-alive probes and its kernel's RST, after the server's link went down
    ("dead-peer", {"client→server": 4}, {}),
    # every packet went through
    ("keepalive-race", {}, {}), ("zero-window", {}, {}), ("server-killed", {}, {}),
])
def test_two_points_count_the_packets_lost_or_made_between_them(scenario: str, lost: dict, made: dict):
    """Per connection and direction: packets the sender's point saw that the other did not
    (dropped in between), and the reverse (made in between: a forged RST). The far point's
    last packet came before the lost ones in these recordings, so none is certain."""
    import sockscope

    cap = sockscope.load([LAB / scenario / "client.pcap", LAB / scenario / "server.pcap"])
    b = cap.points.between
    assert len(b) == 2 * cap.points.matched
    got_lost = {d: int(n) for d, n in b.groupby("direction")["lost"].sum().items() if n}
    got_made = {d: int(n) for d, n in b.groupby("direction")["made"].sum().items() if n}
    assert (got_lost, got_made) == (lost, made)
    facts = cap.points.as_facts()
    assert facts["lost_between"] == sum(lost.values()) and facts["made_between"] == sum(made.values())
    text = cap.points.describe()
    assert ("; between them: " in text) == bool(lost or made)


@pytest.mark.skipif(not (LAB / "server-killed" / "server.pcap").exists(), reason="no recordings")
def test_two_points_count_each_death_once_in_the_headline():
    """The killed server's 4 connections, each seen beside the client and beside the server:
    8 findings on 8 rows, 4 deaths; and the silent drop's verdict names the capture that
    shows the data never arrived instead of asking for one."""
    out = _diagnose_points("server-killed")
    assert out.returncode == 0, out.stderr
    head = " ".join(out.stdout.split())
    assert "on 8 of 8 connection(s) (4 once a connection seen at both capture points counts once)" in head
    assert "4 connection(s), 4 seen at both points" in head
    text = " ".join(_diagnose_points("silent-drop").stdout.split())        # the report wraps long lines
    assert "the capture at the other end (" in text and "will show the data" not in text
