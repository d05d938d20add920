"""The watch soak (bench/soak_watch.py) in small: a looped capture piped into ``watch --json -``
must give back every finding of every loop, connection by connection, and watch must end cleanly.

The real soak (``make soak``) writes 10M+ packets over 10 minutes and also judges RSS; here a
20k-packet busy capture is looped three times as fast as watch reads (a few seconds), so the RSS
verdict of so short a run is not asserted, and nothing is timed (the machine is shared).
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench/soak_watch.py"


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak_watch", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def small_capture(soak, tmp_path_factory):
    return soak.loop_capture(tmp_path_factory.mktemp("soakcap"), 20_000, 1)


def test_a_small_soak_gets_every_finding_of_every_loop(small_capture, tmp_path):
    pcap, _ = small_capture
    out = tmp_path / "summary.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--capture-packets", "20000", "--loops", "3", "--rate", "0",
                        "--data", str(pcap.parent), "--out", str(out), "--min-packets", "0", "--no-progress"],
                       capture_output=True, text=True, timeout=180)
    assert out.exists(), p.stdout + p.stderr
    s = json.loads(out.read_text())
    f = s["findings"]
    assert s["loops"] == 3 and s["packets_written"] == 3 * s["capture"]["packets"]
    # every kind the capture has, a client timeout among them, so the comparison means something
    assert {"client_idle_timeout", "client_abort", "server_idle_close"} <= set(f["expected_by_kind"])
    assert f["lost"] == 0 and f["extra"] == 0, (f["lost_examples"], f["extra_examples"])
    assert f["seen_by_kind"] == f["expected_by_kind"]
    assert f["unattributed"] == 0 and f["bad_lines"] == []
    assert s["watch"]["exit_code"] == 0 and not s["watch"]["killed_by_watchdog"], s["watch"]["stderr_tail"]
    assert s["checks"]["findings_exact"] and s["checks"]["watch_exit_zero"] and s["checks"]["loops_independent"]
    # every connection closes, so nothing is held over from one loop into the next
    assert s["capture"]["held_open_connections"] == 0
    assert s["capture"]["generator_agrees_with_diagnose"] is True


def test_the_comparison_names_a_lost_and_an_extra_finding(soak):
    truth = {(3, "client_abort"), (7, "client_idle_timeout")}
    # two loops of 10 connections: loop 1 lost its timeout and gained an abort on connection 14
    seen = {3: {"client_abort": None}, 7: {"client_idle_timeout": None},
            13: {"client_abort": None}, 14: {"client_abort": None}}
    c = soak.compare(truth, 10, 2, seen)
    assert (c["lost"], c["extra"]) == (1, 1)
    assert c["lost_examples"] == [{"loop": 1, "conn_id": 17, "kind": "client_idle_timeout"}]
    assert c["extra_examples"] == [{"loop": 1, "conn_id": 14, "kind": "client_abort"}]
    assert c["expected_by_kind"] == {"client_abort": 2, "client_idle_timeout": 2}
    # a finding on a connection beyond the loops written is extra too
    assert soak.compare(truth, 10, 1, {3: {"client_abort": None}, 7: {"client_idle_timeout": None},
                                       12: {"client_abort": None}})["extra"] == 1


def _ones(b: bytes) -> int:
    if len(b) & 1:
        b += b"\0"
    s = sum(struct.unpack(f">{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_a_later_loop_is_the_same_traffic_later_on_other_client_ports(soak, small_capture):
    pcap, _ = small_capture
    st = soak.LoopStream(pcap)
    k = 5
    base = b"".join(bytes(c) for c in st.chunks(0, 1000))
    later = b"".join(bytes(c) for c in st.chunks(k, 1000))
    assert base == pcap.read_bytes()[24:]          # loop 0 is the capture itself
    assert len(later) == len(base)
    for i in range(0, st.packets, 97):
        a, b = int(st.off[i]), int(st.end[i + 1])
        r0, rk = base[a:b], later[a:b]
        sec0, seck = struct.unpack_from("<I", r0)[0], struct.unpack_from("<I", rk)[0]
        assert seck - sec0 == k * st.period_s and r0[4:8] == rk[4:8]
        ip, ip_len = rk[30:50], struct.unpack_from(">H", rk, 32)[0]
        tcp = rk[50:30 + ip_len]
        assert _ones(ip) == 0xFFFF                                         # IPv4 header checksum
        assert _ones(ip[12:20] + b"\0\x06" + struct.pack(">H", len(tcp)) + tcp) == 0xFFFF   # TCP checksum
        sp0, dp0 = struct.unpack_from(">HH", r0, 50)
        spk, dpk = struct.unpack_from(">HH", rk, 50)
        client_src = sp0 >= 32768
        old, new = (sp0, spk) if client_src else (dp0, dpk)
        assert new == 32768 + (old - 32768 + k) % (61000 - 32768)
        assert (dpk == dp0) if client_src else (spk == sp0)                # the server's port is kept
        # everything else (addresses, sequence numbers, payload) is untouched
        assert r0[8:50] == rk[8:50] and r0[54:66] == rk[54:66] and r0[68:] == rk[68:]


def test_the_incremental_checksum_equals_a_full_recomputation(soak):
    rng = np.random.default_rng(7)
    words = rng.integers(0, 1 << 16, size=(200, 10))
    full = lambda w: (~np.array([_ones(struct.pack(">10H", *row)) for row in w])) & 0xFFFF  # noqa: E731
    before = full(words)
    changed = words.copy()
    changed[:, 3] = rng.integers(0, 1 << 16, size=200)
    assert (soak.csum_adjust(before, words[:, 3], changed[:, 3]) == full(changed)).all()


def test_watch_keeps_only_the_closes_that_could_be_timers_and_names_each_close_as_before():
    """The soak found watch's per-close re-clustering growing with every abort ever seen;
    it now keeps only closes of MIN_TIMER_S or more, which must name every close exactly as
    clustering over all of them did."""
    import ipaddress
    import random

    from sockscope.analysis import classify_close
    from sockscope.analysis.timers import MIN_TIMER_S, cluster_closes
    from sockscope.cli_watch import _Watcher

    rng = random.Random(3)
    w = _Watcher(as_json=True, all_closes=True, min_gap_s=1.0)
    idles: list[float] = []
    named: set[str] = set()
    for cid in range(400):
        u = rng.random()
        idle = (rng.uniform(0.005, 0.45) if u < 0.7 else 5.0 + rng.uniform(0, 0.003) if u < 0.8
                else 1.2345 + rng.uniform(0, 0.004) if u < 0.85 else rng.uniform(0.5, 3.0))
        ev = {"conn_id": cid, "client_addr": ipaddress.ip_address("10.0.0.1").packed, "client_port": 40000 + cid,
              "server_addr": ipaddress.ip_address("192.0.2.1").packed, "server_port": 80, "close_ts": 10**18 + cid,
              "idle_s": idle, "closed_by": "client", "outstanding": 1, "close_kind": "FIN", "close_frame": cid}
        w.on_close(ev)
        # the rule as it was: every client close with a request waiting, clustered together
        idles.append(idle)
        n = len(idles)
        clusters, member = cluster_closes(np.full(n, "client", dtype=object), np.ones(n, dtype=bool),
                                          np.array(idles), np.arange(n))
        k = clusters[member[-1]] if member[-1] >= 0 else None
        want = classify_close("client", True, idle, k)
        assert ev["kind"] == want, (cid, idle)
        named.add(want)
        if want == "client_idle_timeout":
            assert (ev["inferred_timeout_s"], ev["timeout_cluster_size"]) == (k.timer_s, k.count)
    assert named == {"client_abort", "client_idle_timeout"}
    assert len(w.killer_idle) == sum(i >= MIN_TIMER_S for i in idles) < len(idles) / 2
