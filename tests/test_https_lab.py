"""The HTTPS lab captures: the incident over TLS, seen with and without the TLS key log.

captures/lab/https-before-fix was recorded by ``lab/record.sh https-before-fix``: the
before-fix client over https (https.globalAgent, keepAlive + 5000 ms timeout in Node 20)
against uvicorn with a throwaway self-signed certificate; ``node --tls-keylog`` wrote
``sslkeys.log``. truth.json comes from the client's and server's logs only.

* With the key log (tshark engine) every request is visible: the three killed sockets
  are named with their HTTP chain (axios GET /files, node-fetch GET ?detail=full,
  node-fetch POST /exec outstanding).
* Without it (native engine) only TCP and the TLS handshake are visible: the verdict is
  TCP-level (``level='tcp'``, protocol ``tls``, SNI from the ClientHello).

Figures are compared with truth.json (ports, closer, requests, idle within 20 ms of the
client's log) and, where the truth has no field for it, with the packets (frames).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sockscope

ROOT = Path(__file__).resolve().parents[1]
BEFORE = ROOT / "captures" / "lab" / "https-before-fix"
AFTER = ROOT / "captures" / "lab" / "https-after-fix"
SNI = "lab.sockscope.test"
IDLE_TOL_S = 0.020
AXIOS_UA = "axios/1.13.2"
FETCH_UA = "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"
SOCKSCOPE = str(Path(sys.executable).parent / "sockscope")

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
pytestmark = pytest.mark.skipif(not (BEFORE / "capture.pcap").exists(),
                                reason="captures/lab/https-before-fix not recorded")


def _truth(d: Path) -> dict:
    return json.loads((d / "truth.json").read_text())


def _by_port(truth: dict) -> dict[int, dict]:
    return {c["client_port"]: c for c in truth["connections"]}


@pytest.fixture(scope="module")
def truth() -> dict:
    return _truth(BEFORE)


@pytest.fixture(scope="module")
def with_keys():
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    return sockscope.load(BEFORE / "capture.pcap", engine="tshark", tls_keylog=str(BEFORE / "sslkeys.log"))


@pytest.fixture(scope="module")
def without_keys():
    return sockscope.load(BEFORE / "capture.pcap")


# --------------------------------------------------------------------------- the truth itself


def test_truth_is_the_incident_over_tls(truth):
    assert truth["scenario"] == "https-before-fix"
    assert truth["server"]["port"] == 8314
    assert truth["client"]["agent"] == "global" and truth["client"]["agent_timeout_ms"] == 5000
    assert truth["timeout_configured_ms"]["fired"] == 5000
    ports = [c["client_port"] for c in truth["connections"]]
    assert len(ports) == 3 and truth["summary"]["killed_client_ports"] == ports
    assert truth["summary"]["errors"] == [
        "request to https://127.0.0.1:8314/exec failed, reason: socket hang up"]
    assert (BEFORE / "sslkeys.log").read_text().count("CLIENT_TRAFFIC_SECRET_0") == 3


# --------------------------------------------------------------------------- with the key log


@needs_tshark
def test_keys_connections(with_keys, truth):
    conns = with_keys.connections.set_index("client_port")
    want = _by_port(truth)
    assert sorted(conns.index) == sorted(want)
    for port, t in want.items():
        c = conns.loc[port]
        assert (c.server_ip, c.server_port) == ("127.0.0.1", 8314)
        assert c.closed_by == t["closer"] == "client"
        assert c.close_kind == "FIN"
        assert abs(c.idle_before_close_s - t["idle_before_close_s"]) <= IDLE_TOL_S
        assert c.protocol == "http" and c.sni == SNI   # HTTP inside TLS
        assert c.requests == 3 and c.unanswered == 1
        assert c.last_payload_by == "client"
        assert c.client_fin_frame == c.close_frame and c.server_fin_frame == c.close_frame + 1
        assert pd.isna(c.client_rst_frame) and pd.isna(c.server_rst_frame)
        assert c.data_after_close_pkts == 0 and pd.isna(c.data_after_close_frame)


@needs_tshark
def test_keys_requests_match_the_logs(with_keys, truth):
    reqs = with_keys.requests
    conns = with_keys.connections.set_index("conn_id")
    for cid, grp in reqs.groupby("conn_id"):
        t = _by_port(truth)[int(conns.loc[cid, "client_port"])]
        grp = grp.sort_values("index")
        assert [(r.method, r.uri) for r in grp.itertuples()] == [(r["method"], r["uri"]) for r in t["requests"]]
        assert list(grp["user_agent"]) == [AXIOS_UA, FETCH_UA, FETCH_UA]
        assert list(grp["user_agent"]) == [r["user_agent"] for r in t["requests"]]
        assert list(grp["outcome"].astype(str)) == ["complete", "complete", "no_response"]
        assert list(grp["status"].astype(object).where(grp["status"].notna(), None)) == [200, 200, None]
        last = grp.iloc[-1]
        assert (last.method, last.uri, last.ended_by) == ("POST", "/exec", "client_fin")
        assert last.request_last_frame == conns.loc[cid, "last_payload_frame"]


@needs_tshark
def test_keys_findings_name_the_killed_request(with_keys, truth):
    f = with_keys.findings
    conns = with_keys.connections.set_index("conn_id")
    kills = f[f["kind"] == "client_idle_timeout"]
    assert sorted(kills["conn_id"]) == sorted(conns.index)
    for k in kills.itertuples():
        t = _by_port(truth)[int(conns.loc[k.conn_id, "client_port"])]
        assert "client_idle_timeout" in t["expected_finding_kinds"]
        assert k.request_index == 3
        ev = k.evidence
        assert ev["level"] == "http" and ev["closer"] == "client" and ev["last_payload_by"] == "client"
        assert ev["inferred_timeout_s"] == 5.0
        assert abs(ev["idle_s"] - t["idle_before_close_s"]) <= IDLE_TOL_S
        chain = [(r["method"], r["uri"], r["user_agent"], r["outcome"]) for r in ev["requests"]]
        assert chain[0][0:3] == ("GET", t["requests"][0]["uri"], AXIOS_UA)
        assert chain[1][0:3] == ("GET", t["requests"][1]["uri"], FETCH_UA)
        assert chain[2] == ("POST", "/exec", FETCH_UA, "no_response")
        assert "POST /exec (request 3" in k.summary
    per_conn = {cid: set(g["kind"]) for cid, g in f[f["conn_id"].notna()].groupby("conn_id")}
    for cid, kinds in per_conn.items():
        t = _by_port(truth)[int(conns.loc[cid, "client_port"])]
        assert set(t["expected_finding_kinds"]) <= kinds <= set(t["expected_finding_kinds"]) | set(
            t["informational_finding_kinds"])
        assert kinds == {"client_idle_timeout", "connection_reuse"}
    hint = f[f["kind"] == "root_cause_hint"]
    assert len(hint) == 1 and "GET /files/{id} from axios/1.x" in hint.iloc[0]["summary"]


@needs_tshark
def test_keys_cli_diagnose():
    out = subprocess.run([SOCKSCOPE, "diagnose", "--engine", "tshark", "--tls-keylog",
                          str(BEFORE / "sslkeys.log"), str(BEFORE / "capture.pcap")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "client_idle_timeout, 3 connection(s)" in text
    assert "never got the chance to answer POST /exec" in text
    assert text.count("request 3: POST /exec [node-fetch/1.0") == 3
    assert text.count("request 1: GET /files/sess") == 3 and "[axios/1.13.2]" in text


# --------------------------------------------------------------------------- without it


def test_no_keys_tcp_level_verdict(without_keys, truth):
    cap = without_keys
    assert len(cap.requests) == 0
    conns = cap.connections.set_index("conn_id")
    assert sorted(conns["client_port"]) == sorted(_by_port(truth))
    f = cap.findings
    assert sorted(f["kind"].astype(str)) == ["client_idle_timeout"] * 3
    for k in f.itertuples():
        c = conns.loc[k.conn_id]
        t = _by_port(truth)[int(c.client_port)]
        assert c.protocol == "tls" and c.sni == SNI
        assert c.closed_by == "client" and c.close_kind == "FIN" and c.last_payload_by == "client"
        ev = k.evidence
        assert ev["level"] == "tcp" and ev["closer"] == "client" and ev["requests"] == []
        assert pd.isna(k.request_index)
        assert ev["inferred_timeout_s"] == 5.0
        assert abs(ev["idle_s"] - t["idle_before_close_s"]) <= IDLE_TOL_S
        assert "TCP-level verdict" in k.summary


def test_no_keys_cli_diagnose():
    out = subprocess.run([SOCKSCOPE, "diagnose", str(BEFORE / "capture.pcap")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "client_idle_timeout, 3 connection(s)" in text
    assert "TCP-level: payload not readable as HTTP" in text
    summ = subprocess.run([SOCKSCOPE, "summary", "--json", str(BEFORE / "capture.pcap")],
                          capture_output=True, text=True, timeout=120)
    rows = json.loads(summ.stdout)
    assert {(r["protocol"], r["sni"]) for r in rows} == {("tls", SNI)}


@needs_tshark
def test_tshark_without_keys_agrees_with_native(without_keys):
    other = sockscope.load(BEFORE / "capture.pcap", engine="tshark")
    cols = ["conn_id", "client_port", "closed_by", "close_frame", "protocol", "sni", "last_payload_by",
            "last_payload_frame", "client_fin_frame", "server_fin_frame", "data_after_close_pkts"]
    a = without_keys.connections[cols].astype(object)
    b = other.connections[cols].astype(object)
    assert a.equals(b)
    fa = [(r.kind, r.conn_id, r.evidence["level"]) for r in without_keys.findings.itertuples()]
    fb = [(r.kind, r.conn_id, r.evidence["level"]) for r in other.findings.itertuples()]
    assert fa == fb


# --------------------------------------------------------------------------- after the fix


@needs_tshark
@pytest.mark.skipif(not (AFTER / "capture.pcap").exists(), reason="https-after-fix not recorded")
def test_after_fix_with_keys_is_healthy():
    truth = _truth(AFTER)
    cap = sockscope.load(AFTER / "capture.pcap", engine="tshark", tls_keylog=str(AFTER / "sslkeys.log"))
    assert sorted(cap.connections["client_port"]) == sorted(_by_port(truth))
    assert not truth["summary"]["killed_client_ports"]
    reqs = cap.requests
    assert len(reqs) == truth["summary"]["requests"]
    assert set(reqs["outcome"].astype(str)) == {"complete"} and set(reqs["status"]) == {200}
    exec_ttfb = reqs[reqs["uri"] == "/exec"]["ttfb_s"]
    assert len(exec_ttfb) == 2 and (exec_ttfb > 10).all()
    assert set(cap.findings["kind"].astype(str)) <= {"connection_reuse"}


@pytest.mark.skipif(not (AFTER / "capture.pcap").exists(), reason="https-after-fix not recorded")
def test_after_fix_without_keys_reports_nothing_wrong():
    # uvicorn's close_notify, the client's close_notify (24 bytes, the last payload), then the
    # server FIN 0.36 ms later: no silence, so no evidence of an unanswered request
    cap = sockscope.load(AFTER / "capture.pcap")
    assert "server_abort" not in set(cap.findings["kind"].astype(str))
