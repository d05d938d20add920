"""Rotated captures read as one, and flow-sharded parallel runs equal to serial ones."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sockscope
from tests.pcaprec import pcap_records

ROOT = Path(__file__).resolve().parents[1]


def split_pcap(path: Path, out_dir: Path, pieces: int) -> list[Path]:
    """Cut a classic little-endian pcap into `pieces` files, as tcpdump -C rotation does."""
    header, records = pcap_records(path)
    per = -(-len(records) // pieces)
    files = []
    for i in range(pieces):
        f = out_dir / f"dump.pcap{i if i else ''}"
        f.write_bytes(header + b"".join(records[i * per:(i + 1) * per]))
        files.append(f)
    return files


@pytest.mark.parametrize("name", ["captures/lab/mixed/capture.pcap", "captures/crafted/incident-before-fix.pcap"])
def test_rotated_pieces_give_the_tables_of_the_whole_file(tmp_path, name):
    whole = sockscope.load(ROOT / name)
    files = split_pcap(ROOT / name, tmp_path, 3)
    pieces = sockscope.load(list(reversed(files)))      # order on the command line must not matter
    assert pieces.facts["packets"] == whole.facts["packets"]
    for table in ("connections", "requests", "gaps"):
        pd.testing.assert_frame_equal(getattr(pieces, table), getattr(whole, table))
    pd.testing.assert_frame_equal(pieces.findings.drop(columns="evidence"), whole.findings.drop(columns="evidence"))


def test_jobs_two_is_identical_to_serial():
    path = ROOT / "captures" / "lab" / "mixed" / "capture.pcap"
    serial = sockscope.load(path)
    parallel = sockscope.load(path, jobs=2)
    assert parallel.facts["jobs"] == 2
    for table in ("connections", "requests", "gaps"):
        pd.testing.assert_frame_equal(getattr(parallel, table), getattr(serial, table))


@pytest.fixture(scope="module")
def many_flows(tmp_path_factory) -> Path:
    """A capture of some 570 connections (the bench's own generator): enough that every
    -j shard gets flows of its own."""
    out = tmp_path_factory.mktemp("gen") / "many.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), "--packets", "20000", "--seed", "2",
                    "--out", str(out)], check=True, capture_output=True)
    return out


@pytest.mark.parametrize("jobs", [2, 3])
def test_jobs_split_every_flow_once_and_match_serial(jobs, many_flows):
    from sockscope import engine

    shares = engine._job_buckets(jobs)
    assert shares[0][0] == 0 and shares[-1][1] == engine.SHARD_BUCKETS
    assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))          # contiguous, no overlap
    sizes = [hi - lo for lo, hi in shares]
    assert sizes[0] < min(sizes[1:])        # this process also merges: it gets less
    serial, parallel = engine.run(many_flows), engine.run(many_flows, jobs=jobs)
    assert parallel.facts["jobs"] == jobs
    for table in ("connections", "requests", "gaps"):
        assert getattr(parallel, table).equals(getattr(serial, table)), table
    per_shard = [engine.run(many_flows, shard=(k, jobs)).connections.num_rows for k in range(jobs)]
    assert min(per_shard) > 50 and sum(per_shard) == serial.connections.num_rows


def test_a_workers_exception_is_raised_in_the_parent(monkeypatch):
    from sockscope import engine
    from sockscope.errors import CaptureError

    real = engine._run_serial

    def failing(sources, *, buckets, **kw):
        if buckets[0] > 0:          # only the forked worker's shard fails
            raise CaptureError("worker: disk went away")
        return real(sources, buckets=buckets, **kw)

    monkeypatch.setattr(engine, "_run_serial", failing)
    with pytest.raises(CaptureError, match="worker: disk went away"):
        engine.run(ROOT / "captures" / "lab" / "mixed" / "capture.pcap", jobs=2)


def test_a_worker_that_dies_is_an_error_not_a_hang(monkeypatch):
    import os

    from sockscope import engine

    real = engine._run_serial

    def dying(sources, *, buckets, **kw):
        if buckets[0] > 0:
            os._exit(7)
        return real(sources, buckets=buckets, **kw)

    monkeypatch.setattr(engine, "_run_serial", dying)
    with pytest.raises(RuntimeError, match="ended without a result"):
        engine.run(ROOT / "captures" / "lab" / "mixed" / "capture.pcap", jobs=2)


def test_cli_reads_a_directory_of_rotated_files(tmp_path):
    split_pcap(ROOT / "captures/crafted/incident-before-fix.pcap", tmp_path, 2)
    r = subprocess.run([sys.executable, "-m", "sockscope", "summary", "--json", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import json
    rows = json.loads(r.stdout)
    assert [x["close_frame"] for x in rows] == [16, 35, 54]


def split_by_flow(path: Path, out_dir: Path) -> list[Path]:
    """Two captures of one period, as two interfaces would record it: TCP flows alternate
    between the files (by order of first appearance), so the files overlap in time."""
    header, records = pcap_records(path)
    assert struct.unpack_from("<I", header, 20)[0] == 1, "Ethernet captures only"
    flows: dict[frozenset, int] = {}
    out: list[list[bytes]] = [[], []]
    for rec in records:
        pkt = rec[16:]
        ihl = (pkt[14] & 15) * 4
        ports = struct.unpack_from("!HH", pkt, 14 + ihl)
        key = frozenset([(pkt[26:30], ports[0]), (pkt[30:34], ports[1])])
        out[flows.setdefault(key, len(flows)) % 2].append(rec)
    files = []
    for i, recs in enumerate(out):
        f = out_dir / f"if{i}.pcap"
        f.write_bytes(header + b"".join(recs))
        files.append(f)
    return files


MIXED = ROOT / "captures/lab/mixed/capture.pcap"


def test_overlapping_files_are_capture_points_analysed_apart(tmp_path):
    whole = sockscope.load(MIXED)
    a, b = split_by_flow(MIXED, tmp_path)
    alone = [sockscope.load(a), sockscope.load(b)]
    apart = sockscope.load([b, a])
    conns = apart.connections
    # each point is analysed as if read alone; ids continue from one point to the next
    assert list(conns["capture"].astype(str)) == [str(a)] * len(alone[0].connections) + [str(b)] * len(alone[1].connections)
    assert list(conns["conn_id"]) == list(range(len(conns)))
    assert apart.facts["capture_points"] == [[str(a)], [str(b)]]
    assert any("capture points" in w for w in apart.facts["warnings"])
    # split by flow, the points share no connection: no twins
    assert conns["twin_conn_id"].isna().all() and apart.points.matched == 0
    for k, one in enumerate(alone):
        mine = conns[conns["capture"] == str((a, b)[k])].drop(columns=["capture", "conn_id", "twin_conn_id"]) \
            .reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, one.connections.drop(columns="conn_id"))
    # nothing lost: the same connections as the single capture, by 4-tuple and start
    key = ["client_ip", "client_port", "server_ip", "server_port", "start"]
    assert sorted(map(tuple, conns[key].astype(str).values)) == sorted(map(tuple, whole.connections[key].astype(str).values))
    assert len(apart.requests) == len(whole.requests)
    assert set(apart.requests["conn_id"]) <= set(conns["conn_id"])


def test_merge_interleaves_capture_points_into_the_original_capture(tmp_path):
    whole = sockscope.load(MIXED)
    files = split_by_flow(MIXED, tmp_path)
    ts = whole.connections["start"]
    merged = sockscope.load(files, merge=True)
    assert merged.facts["merged"] and merged.facts["packets"] == whole.facts["packets"]
    # timestamps are distinct in this capture, so interleaving restores its packet order
    # and every table, frame numbers included, equals the single file's
    assert ts.is_unique
    for table in ("connections", "requests", "gaps"):
        pd.testing.assert_frame_equal(getattr(merged, table), getattr(whole, table))


def test_jobs_two_keeps_capture_points_apart_like_serial(tmp_path):
    files = split_by_flow(MIXED, tmp_path)
    serial = sockscope.load(files)
    parallel = sockscope.load(files, jobs=2)
    for table in ("connections", "requests", "gaps"):
        pd.testing.assert_frame_equal(getattr(parallel, table), getattr(serial, table))


def test_cli_merge_flag(tmp_path):
    import json

    files = [str(f) for f in split_by_flow(MIXED, tmp_path)]
    apart = subprocess.run([sys.executable, "-m", "sockscope", "summary", "--json", *files],
                           capture_output=True, text=True)
    merged = subprocess.run([sys.executable, "-m", "sockscope", "summary", "--json", "--merge", *files],
                            capture_output=True, text=True)
    assert apart.returncode == 0 and merged.returncode == 0, apart.stderr + merged.stderr
    assert "capture points" in apart.stderr and "capture points" not in merged.stderr
    rows_apart, rows_merged = json.loads(apart.stdout), json.loads(merged.stdout)
    assert {r["capture"] for r in rows_apart} == set(files)
    assert "capture" not in rows_merged[0] and len(rows_merged) == len(rows_apart)


def test_a_later_point_is_not_paired_with_an_earlier_connection_on_the_same_tuple(tmp_path):
    """Port reuse: two connections on one 4-tuple 10 s apart, the second capture point
    began between them. The twin is the one at the same moment, not the first on the tuple."""
    header, recs = pcap_records(ROOT / "captures/crafted/port-reuse.pcap")
    a = tmp_path / "a.pcap"
    a.write_bytes(header + b"".join(recs))
    cap0 = sockscope.load(a)
    second = int(cap0.connections["first_frame"].iloc[1])
    b = tmp_path / "b.pcap"
    b.write_bytes(header + b"".join(recs[second - 1:]))
    cap = sockscope.load([a, b])
    c = cap.connections
    at_b = c[c["capture"] == str(b)]
    assert len(at_b) == 1
    twin = int(at_b["twin_conn_id"].iloc[0])
    first_a, second_a = c[c["capture"] == str(a)]["conn_id"].tolist()
    assert twin == second_a and pd.isna(c.set_index("conn_id").loc[first_a, "twin_conn_id"])
    assert cap.points.matched == 1 and abs(cap.points.offset_s or 0.0) < 0.001
