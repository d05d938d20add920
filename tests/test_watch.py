"""`sockscope watch` reports a killed request while the capture is still being written."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.pcaprec import pcap_records

ROOT = Path(__file__).resolve().parents[1]


def test_watch_reports_the_client_fin_within_a_second_of_it_arriving():
    header, recs = pcap_records(ROOT / "captures/crafted/incident-before-fix.pcap")
    proc = subprocess.Popen([sys.executable, "-m", "sockscope", "watch", "--json", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(header + b"".join(recs[:16]))   # up to and including frame 16: the client FIN
        proc.stdin.flush()
        sent = time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], 10.0)
        assert ready, "no report while the stream is still open"
        line = proc.stdout.readline()
        latency = time.monotonic() - sent
        ev = json.loads(line)
        assert ev["kind"] == "client_idle_timeout" and ev["close_frame"] == 16 and ev["conn_id"] == 0
        assert abs(ev["idle_s"] - 5.0) < 1e-6
        # the first report includes interpreter start-up; the FIN itself is handled at once
        assert latency < 5.0
        t = time.monotonic()
        proc.stdin.write(b"".join(recs[16:35]))           # the second session's FIN is frame 35
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 5.0)
        assert ready
        ev2 = json.loads(proc.stdout.readline())
        assert ev2["close_frame"] == 35 and time.monotonic() - t < 1.0
        assert ev2["inferred_timeout_s"] == 5.0 and ev2["timeout_cluster_size"] == 2
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert proc.returncode == 0
