"""The diagnose text report stays bounded on a capture with many findings, and --all,
--kind and --conn reach every one of them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def busy(tmp_path_factory) -> Path:
    """A load generator against a busy service (the bench's busy profile, small)."""
    out = tmp_path_factory.mktemp("busy") / "busy.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), "--packets", "150000", "--seed", "3",
                    "--profile", "busy", "--out", str(out)], check=True, capture_output=True)
    return out


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sockscope", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_report_is_bounded_and_says_how_to_see_all(busy):
    rows = json.loads(_run("diagnose", "--json", busy).stdout)
    per_kind: dict[str, set] = {}
    for f in rows:
        per_kind.setdefault(f["kind"], set()).add(f["conn_id"])
    assert len(per_kind.get("client_abort", ())) > 20 and len(per_kind.get("server_idle_close", ())) > 20
    text = _run("diagnose", busy).stdout
    assert len(text.splitlines()) <= 200
    # each kind with many connections: at most 3 examples (timelines), then how to see all
    for kind, conns in per_kind.items():
        if len(conns) > 3 and None not in conns:
            assert f"--kind {kind} --all" in text
    shown = re.findall(r"client_abort: tcp\.stream eq (\d+)", text)
    assert 1 <= len(shown) <= 3
    assert "Timers inferred from idle closes" in text


def test_kind_all_and_conn_reach_every_finding(busy):
    rows = json.loads(_run("diagnose", "--json", "--kind", "client_abort", busy).stdout)
    assert rows and {f["kind"] for f in rows} == {"client_abort"}
    text = _run("diagnose", "--kind", "client_abort", "--all", busy).stdout
    assert set(re.findall(r"client_abort: tcp\.stream eq (\d+)", text)) == {str(f["conn_id"]) for f in rows}
    one = rows[-1]["conn_id"]
    conn = json.loads(_run("diagnose", "--json", "--conn", one, busy).stdout)
    assert conn and {f["conn_id"] for f in conn} == {one}
    bad = _run("diagnose", "--kind", "nonsense", busy)
    assert bad.returncode == 2 and "unknown finding kind" in bad.stderr


def test_the_timers_the_generator_set_are_the_timers_found(busy):
    from sockscope.api import load

    timers = {(k.side, k.outstanding, k.timer_s) for k in load(busy).diagnosis.timers}
    # servers' keep-alive timeouts 3, 2, 1 s, the clients' 5 s request timeout, and the 2 s cap
    # of the generator's client think time (a real limit); nothing else: thousands of client
    # closes after random think times form no timer
    assert timers <= {("server", False, 3.0), ("server", False, 2.0), ("server", False, 1.0),
                      ("client", True, 5.0), ("client", False, 2.0)}
    assert ("server", False, 3.0) in timers
