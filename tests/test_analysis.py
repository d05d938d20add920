"""Diagnosis on the crafted captures: exact figures, inferred timers, no false positives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sockscope
from sockscope.analysis import CloseInfo, infer_timeouts, path_template

CRAFTED = Path(__file__).resolve().parents[1] / "captures" / "crafted"


def _findings(name):
    cap = sockscope.load(CRAFTED / name)
    return cap, cap.findings


def test_incident_before_fix_names_client_5s_timer_with_exact_evidence():
    cap, f = _findings("incident-before-fix.pcap")
    killed = f[f["kind"] == "client_idle_timeout"]
    assert sorted(killed["conn_id"]) == [0, 1, 2]
    ev = killed.iloc[0]["evidence"]
    assert ev["closer"] == "client" and ev["close_kind"] == "FIN" and ev["close_frame"] == 16
    assert ev["idle_s"] == pytest.approx(5.0, abs=1e-6)
    assert ev["inferred_timeout_s"] == pytest.approx(5.0, abs=1e-6)
    assert ev["timeout_cluster_size"] == 3 and ev["timeout_round_ms"]
    assert ev["last_payload_frame"] == 14
    assert killed.iloc[0]["request_index"] == 3
    assert "POST /exec" in killed.iloc[0]["summary"] and "5 s inactivity timeout" in killed.iloc[0]["summary"]
    assert killed.iloc[0]["display_filter"] == "tcp.stream eq 0 && frame.number in {13,14,16,18}"


def test_three_second_timer_is_inferred_not_assumed():
    _, f = _findings("incident-3s.pcap")
    ev = f[f["kind"] == "client_idle_timeout"].iloc[0]["evidence"]
    assert ev["inferred_timeout_s"] == pytest.approx(3.0, abs=1e-6)
    assert "3 s inactivity timeout" in f[f["kind"] == "client_idle_timeout"].iloc[0]["summary"]


def test_after_fix_has_no_findings():
    _, f = _findings("incident-after-fix.pcap")
    assert f.empty


def test_look_alikes_in_mixed_capture_are_not_killed_requests():
    cap, f = _findings("mixed.pcap")
    killed = set(f[f["kind"] == "client_idle_timeout"]["conn_id"])
    assert killed == {0, 3}
    assert set(f[f["kind"] == "server_idle_close"]["conn_id"]) == {1}
    # a client closing 5 s after a COMPLETE response is its pool's idle close: information only
    (idle,) = f[f["kind"] == "client_idle_close"].itertuples()
    assert idle.conn_id == 4 and idle.severity == "info" and "nothing failed" in idle.summary
    assert 4.9 < idle.evidence["idle_s"] < 5.1
    # keep-alive probes in a long answered wait, Connection: close: nothing at all
    assert set(f["conn_id"].dropna()) <= {0, 1, 3, 4}
    assert set(f[f["severity"] != "info"]["conn_id"]) <= {0, 3}


def test_late_response_meets_client_rst():
    _, f = _findings("incident-late-rst.pcap")
    late = f[f["kind"] == "response_after_close"].iloc[0]["evidence"]
    assert late["late_data_frame"] == 18 and late["client_rst_frame"] == 19
    assert late["late_after_close_s"] == pytest.approx(5.049, abs=1e-6)


def test_tls_verdict_is_tcp_level():
    _, f = _findings("tls-clienthello.pcap")
    row = f[f["kind"] == "client_idle_timeout"].iloc[0]
    assert row["evidence"]["level"] == "tcp" and "TCP-level" in row["summary"]
    assert row["evidence"]["timeout_confidence"] == "low"


def test_timeout_clusters_split_distinct_timers():
    closes = [CloseInfo(i, "client", "FIN", t, [3], "http")
              for i, t in enumerate([5.0004, 5.0011, 4.9999, 30.0, 30.002, 0.2])]
    ks = infer_timeouts(closes)
    assert [(k.count, round(k.timeout_s, 4)) for k in ks] == [(3, 4.9999), (2, 30.0)]


@pytest.mark.parametrize("uri,tpl", [
    ("/files/sess_8f3a1c2e9d?detail=full", "/files/{id}"),
    ("/users/12345/orders/3f2b8c1e-1111-2222-3333-444455556666", "/users/{id}/orders/{id}"),
    ("/exec", "/exec"), ("/static/app.js", "/static/app.js"),
])
def test_path_template_collapses_ids(uri, tpl):
    assert path_template(uri) == tpl


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sockscope", *args], capture_output=True, text=True)


def test_check_fails_before_fix_and_passes_after():
    rules = ["--no", "client_idle_timeout", "--header", "GET /files: Connection: close",
             "--separate", "GET /files", "POST /exec", "--json"]
    before = _cli("check", str(CRAFTED / "incident-before-fix.pcap"), *rules)
    after = _cli("check", str(CRAFTED / "incident-after-fix.pcap"), *rules)
    assert before.returncode == 1 and after.returncode == 0, (before.stderr, after.stderr)
    assert [r["ok"] for r in json.loads(before.stdout)["rules"]] == [False, False, False]
    assert json.loads(after.stdout)["ok"] is True


def test_compare_says_fixed():
    r = _cli("compare", str(CRAFTED / "incident-before-fix.pcap"), str(CRAFTED / "incident-after-fix.pcap"), "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["verdict"] == "fixed"


def test_check_without_rules_is_a_usage_error():
    r = _cli("check", str(CRAFTED / "incident-before-fix.pcap"))
    assert r.returncode == 2


LAB = Path(__file__).resolve().parents[1] / "captures" / "lab"


def test_root_cause_hint_names_the_axios_get_files_that_poisoned_the_socket():
    cap = sockscope.load(LAB / "mixed" / "capture.pcap")
    hint = cap.findings[cap.findings["kind"] == "root_cause_hint"].iloc[0]
    assert hint["summary"].startswith("all of 2 killed socket(s) had first carried GET /files/{id} from axios/1.x")
    assert "none of the 1 request(s) that waited 5 s or longer and survived" in hint["summary"]
    top = hint["evidence"]["ranked_features"][0]
    assert (top["killed"], top["survivors"]) == (2, 0)


def test_heartbeat_writes_are_reported_and_no_timeout_fires():
    cap = sockscope.load(LAB / "heartbeat" / "capture.pcap")
    kinds = set(cap.findings["kind"].astype(str))
    assert "client_idle_timeout" not in kinds
    hb = cap.findings[cap.findings["kind"] == "heartbeat"]
    assert len(hb) == 2
    assert all(abs(e["interval_s"] - 2.0) < 0.05 for e in hb["evidence"])


def test_lab_3s_agent_timer_is_inferred_as_3s():
    cap = sockscope.load(LAB / "agent-timeout-3s" / "capture.pcap")
    ev = cap.findings[cap.findings["kind"] == "client_idle_timeout"].iloc[0]["evidence"]
    assert ev["inferred_timeout_s"] == 3.0 and 3.0 <= ev["measured_timeout_s"] < 3.02
