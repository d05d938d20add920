"""Light tests of the incident lab (lab/): the FastAPI server app through TestClient,
the stdlib server over a real loopback socket, and the recorded captures' truth.json.

The lab's Python deps (lab/requirements.txt) are optional for the package itself, so
the app tests skip when fastapi/httpx are missing.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "lab"
CAPTURES = ROOT / "captures" / "lab"
ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z server \w+")
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a"}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lab_app():
    try:
        import fastapi  # noqa: F401
        import httpx  # noqa: F401  (TestClient needs it)
    except ImportError as exc:
        pytest.skip(f"lab server deps not installed ({exc.name}); "
                    "run: .venv/bin/pip install -r lab/requirements.txt")
    return _load("lab_server_app", LAB / "server" / "app.py")


def _client(lab_app, **kwargs):
    from fastapi.testclient import TestClient
    return TestClient(lab_app.create_app(**kwargs))


def test_files_without_fix_keeps_connection_open(lab_app):
    with _client(lab_app) as c:
        r = c.get("/files/abc")
    assert r.status_code == 200
    assert r.json()["session_id"] == "abc"
    assert "close" not in r.headers.get("connection", "").lower()


def test_files_with_fix_sends_connection_close(lab_app):
    with _client(lab_app, fix=True) as c:
        r = c.get("/files/abc", params={"detail": "full"})
    assert r.status_code == 200
    assert r.headers["connection"].lower() == "close"
    assert r.json()["files"][0]["path"].endswith("/abc/input.txt")


def test_exec_answers_after_its_duration(lab_app):
    with _client(lab_app, exec_seconds=0.05) as c:
        r = c.post("/exec", json={"code": "print(1)"})
        r2 = c.post("/exec", params={"seconds": 0})
    assert r.status_code == 200
    body = r.json()
    assert body["exit_code"] == 0 and body["elapsed_s"] >= 0.05
    assert r2.json()["elapsed_s"] < 0.05


def test_exec_heartbeat_streams_whitespace_before_json(lab_app):
    with _client(lab_app, heartbeat=True, exec_seconds=0.3, heartbeat_interval=0.05) as c:
        r = c.post("/exec", json={})
    assert r.status_code == 200
    text = r.text
    lead = len(text) - len(text.lstrip(" "))
    assert lead >= 3, f"expected several heartbeat spaces, got {text!r}"
    assert json.loads(text)["exit_code"] == 0  # leading whitespace is still valid JSON


def test_server_log_lines_start_with_utc_timestamp(lab_app, capsys):
    with _client(lab_app) as c:
        c.get("/files/x", headers={"x-lab-req": "t-1"})
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " server " in ln]
    assert lines, "no log lines"
    for ln in lines:
        assert ISO_LINE.match(ln), ln
    request = next(ln for ln in lines if " request " in ln)
    assert "client_port=" in request and "method=GET" in request and "lab_id=t-1" in request


def test_plain_server_fix_header_over_loopback():
    plain = _load("lab_server_plain", LAB / "server" / "plain.py")
    plain.Handler.cfg = {"fix": True, "exec_seconds": 0.0}
    plain.Handler.timeout = 2.0
    server = plain.Server(("127.0.0.1", 0), plain.Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        conn.request("GET", "/files/s1")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 200 and body["session_id"] == "s1"
        assert resp.getheader("Connection") == "close"
        conn.close()
    finally:
        server.shutdown()
        server.server_close()


# the loopback scenarios (capture.pcap); the routed-path ones are tests/test_paths_lab.py's
TRUTHS = sorted(p for p in CAPTURES.glob("*/truth.json") if (p.parent / "capture.pcap").exists())


@pytest.mark.skipif(not TRUTHS, reason="no captures/lab/*/truth.json recorded (run lab/record_all.sh as root)")
@pytest.mark.parametrize("truth_path", TRUTHS, ids=[p.parent.name for p in TRUTHS])
def test_truth_json_parses_and_names_existing_capture(truth_path):
    truth = json.loads(truth_path.read_text())
    assert truth["scenario"] == truth_path.parent.name
    capture = truth_path.parent / truth["capture"]
    assert capture.is_file(), f"{capture} missing"
    assert capture.read_bytes()[:4] in PCAP_MAGICS
    assert truth["connections"], "no connections"
    ports = set()
    for conn in truth["connections"]:
        assert isinstance(conn["client_port"], int) and conn["client_port"] not in ports
        ports.add(conn["client_port"])
        assert conn["closer"] in ("client", "server")
        assert isinstance(conn["killed"], bool)
        assert conn["requests"] and all(r["method"] and r["uri"].startswith("/") for r in conn["requests"])
        if conn["killed"]:
            assert "client_idle_timeout" in conn["expected_finding_kinds"]
            assert conn["closer"] == "client"
            assert any(r["error"] for r in conn["requests"])
        else:
            assert "client_idle_timeout" not in conn["expected_finding_kinds"]
    assert set(truth["summary"]["killed_client_ports"]) == {c["client_port"] for c in truth["connections"] if c["killed"]}
