"""`sockscope watch` reports a killed request while the capture is still being written."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pcaprec import pcap_records

ROOT = Path(__file__).resolve().parents[1]


class _Lines:
    """Lines of a child's stdout as they arrive, read from its pipe directly: select() on a
    buffered reader misses lines already sitting in its buffer (two lines in one read)."""

    def __init__(self, pipe) -> None:
        self.fd, self.buf = pipe.fileno(), b""

    def next(self, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            assert ready, f"no line within {timeout} s"
            chunk = os.read(self.fd, 65536)
            assert chunk, "the child closed its output"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line


def test_watch_reports_the_client_fin_within_a_second_of_it_arriving():
    header, recs = pcap_records(ROOT / "captures/crafted/incident-before-fix.pcap")
    proc = subprocess.Popen([sys.executable, "-m", "sockscope", "watch", "--json", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(header + b"".join(recs[:16]))   # up to and including frame 16: the client FIN
        proc.stdin.flush()
        sent = time.monotonic()
        out = _Lines(proc.stdout)
        line = out.next(10.0)       # while the stream is still open
        latency = time.monotonic() - sent
        ev = json.loads(line)
        assert ev["kind"] == "client_idle_timeout" and ev["close_frame"] == 16 and ev["conn_id"] == 0
        assert abs(ev["idle_s"] - 5.0) < 1e-6
        # the first report includes interpreter start-up; the FIN itself is handled at once
        assert latency < 5.0
        t = time.monotonic()
        proc.stdin.write(b"".join(recs[16:35]))           # the second session's FIN is frame 35
        proc.stdin.flush()
        ev2 = {}
        while ev2.get("event") != "close":      # findings of retired connections may come first
            ev2 = json.loads(out.next(5.0))
        assert ev2["close_frame"] == 35 and time.monotonic() - t < 1.0
        assert ev2["inferred_timeout_s"] == 5.0 and ev2["timeout_cluster_size"] == 2
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert proc.returncode == 0


# -- one definition per finding: watch (live) and diagnose (whole capture) agree ----------------

def _watch_kinds(lines: list[dict]) -> set[tuple[int, str]]:
    """Per connection, the kinds watch ends with: its findings, revised where it said so."""
    kinds: dict[int, dict[str, None]] = {}
    for ev in lines:
        if ev.get("event") == "finding" and ev.get("conn_id") is not None:
            kinds.setdefault(ev["conn_id"], {})[ev["kind"]] = None
        elif ev.get("event") == "revision":
            k = kinds.setdefault(ev["conn_id"], {})
            k.pop(ev["was"], None)
            k[ev["kind"]] = None
    return {(c, k) for c, ks in kinds.items() for k in ks}


def _bundled() -> list[Path]:
    caps = sorted((ROOT / "captures/crafted").glob("*.pcap")) + sorted((ROOT / "captures/crafted").glob("*.pcapng"))
    return caps + sorted((ROOT / "captures/lab").glob("*/*.pcap"))


@pytest.mark.parametrize("capture", _bundled(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_watch_and_diagnose_label_every_connection_alike(capture):
    if capture.stat().st_size <= 24:
        pytest.skip("a pcap header and no packet (nothing reached that capture point)")
    run = lambda *a: subprocess.run([sys.executable, "-m", "sockscope", *a, str(capture)],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    w, d = run("watch", "--json"), run("diagnose", "--json")
    assert w.returncode == 0 and d.returncode == 0, w.stderr + d.stderr
    watched = _watch_kinds([json.loads(line) for line in w.stdout.splitlines()])
    diagnosed = {(f["conn_id"], f["kind"]) for f in json.loads(d.stdout) if f["conn_id"] is not None}
    assert watched == diagnosed


def test_a_fin_that_crossed_the_request_is_no_abort_at_the_moment_it_passes():
    """The close events (printed as the FIN passes, before any finding) follow the batch's
    crossing rule: the race is no ABORT; a FIN acknowledging the request, or one mid-upload
    after part of it was acknowledged, is."""
    w = subprocess.run([sys.executable, "-m", "sockscope", "watch", "--json", "--all",
                        str(ROOT / "captures/crafted/crossing-fin.pcap")], capture_output=True, text=True, timeout=120)
    assert w.returncode == 0, w.stderr
    closes = {e["conn_id"]: e for e in map(json.loads, w.stdout.splitlines()) if e["event"] == "close"}
    assert closes[0]["kind"] == "close" and closes[0]["outstanding"] is False
    # the race with a request of three segments, and with two pipelined requests
    # and on a connection opened before the capture (its sequence space starts at the request)
    assert all(closes[c]["kind"] == "close" and closes[c]["outstanding"] is False for c in (3, 4, 5))
    assert closes[1]["kind"] == closes[2]["kind"] == "server_abort"
    assert closes[1]["outstanding"] and closes[2]["outstanding"]


def _ints_zero(row: dict, columns: dict) -> dict:
    """A row with 0 in every non-nullable integer column it does not name."""
    return {**{c: 0 for c, t in columns.items() if t in ("int64", "int32")}, **row}


def test_a_second_close_at_the_same_idle_time_revises_an_abort_into_a_timer():
    from sockscope.analysis.live import LiveDiagnosis
    from sockscope.schema import frame_from_records, CONNECTION_COLUMNS, REQUEST_COLUMNS, GAP_COLUMNS

    def batch(cid: int, t0: int, idle_s: float):
        close = t0 + int(idle_s * 1e9)
        conn = {"conn_id": cid, "client_ip": "192.0.2.1", "client_port": 40000 + cid, "server_ip": "192.0.2.2",
                "server_port": 80, "roles_from": "syn", "start": t0 - 10**6, "end": close, "closed_by": "client",
                "close_kind": "FIN", "close_ts": close, "close_frame": 10 * cid + 5, "idle_before_close_s": idle_s,
                "protocol": "http", "last_payload_ts": t0, "last_payload_frame": 10 * cid + 4,
                "last_payload_by": "client", "requests": 1, "unanswered": 1}
        req = {"conn_id": cid, "index": 1, "method": "POST", "uri": "/exec", "request_start": t0, "request_end": t0,
               "outcome": "no_response", "first_frame": 10 * cid + 4}
        return (frame_from_records([_ints_zero(conn, CONNECTION_COLUMNS)], CONNECTION_COLUMNS),
                frame_from_records([_ints_zero(req, REQUEST_COLUMNS)], REQUEST_COLUMNS),
                frame_from_records([], GAP_COLUMNS))

    live = LiveDiagnosis()
    f1, r1 = live.feed(*batch(1, 10**18, 1.2345))    # alone, not a round value: an abort
    assert [f.kind for f in f1] == ["client_abort"] and r1 == []
    f2, r2 = live.feed(*batch(2, 10**18 + 60 * 10**9, 1.2351))   # a second one agrees: a timer
    assert [f.kind for f in f2] == ["client_idle_timeout"]
    assert [(r.conn_id, r.was, r.now) for r in r2] == [(1, "client_abort", "client_idle_timeout")]


def test_live_history_is_bounded(monkeypatch) -> None:
    """A watch that runs for days keeps the most recent timer-eligible closes only: the
    history (and the work per batch) stops growing, and kinds of closes that left it go."""
    import numpy as np

    from sockscope.analysis import live

    monkeypatch.setattr(live, "HISTORY_MAX", 100)
    h = live.CloseHistory()
    for k in range(5):
        ids = np.arange(k * 60, k * 60 + 60, dtype=np.int64)
        h.extend(np.full(60, "client", dtype=object), np.ones(60, dtype=bool), np.full(60, 5.0), ids)
    assert len(h.idle_s) == 100 and h.conn_id[0] == 200 and h.conn_id[-1] == 299
