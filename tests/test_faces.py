"""What a user sees: row selection, bounded and fitted tables, typed CSV, JSON Lines, one
duration style, directories, the TLS key log."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sockscope
from sockscope.analysis.text import seconds
from sockscope.selection import Selection, SelectionError, parse_time

ROOT = Path(__file__).resolve().parents[1]
BEFORE = ROOT / "captures" / "crafted" / "incident-before-fix.pcap"
MIXED = ROOT / "captures" / "crafted" / "mixed.pcap"


def _cli(*args, columns: int | None = None) -> subprocess.CompletedProcess:
    env = None
    if columns:
        import os

        env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "sockscope", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.fixture(scope="module")
def cap():
    return sockscope.load(MIXED)


def test_selection_by_conn_host_port_time_where_sort_limit(cap):
    c = cap.connections
    one = Selection(conn=(1,)).apply(c, "connections")[0]
    assert one["conn_id"].tolist() == [1]
    port = int(c["client_port"].iloc[2])
    assert Selection(port=(port,)).apply(c, "connections")[0]["conn_id"].tolist() == [int(c["conn_id"].iloc[2])]
    host = str(c["server_ip"].iloc[0])
    assert len(Selection(host=(host,)).apply(c, "connections")[0]) == int((c["server_ip"] == host).sum())
    # requests and findings are matched through their connection
    reqs, _ = Selection(port=(port,)).apply(cap.requests, "requests", c, cap.start)
    assert set(reqs["conn_id"]) <= {int(c["conn_id"].iloc[2])}
    # time: seconds from the capture's start, a time of day, ISO
    half = (c["start"].max() - cap.start).total_seconds() / 2     # half way through the connections' starts
    later = Selection(since=f"+{half:.3f}").apply(c, "connections", None, cap.start)[0]
    assert 0 < len(later) < len(c) and (later["start"] >= cap.start + pd.Timedelta(seconds=half - 0.001)).all()
    tod = cap.start.strftime("%H:%M:%S.%f")
    assert len(Selection(since=tod).apply(c, "connections", None, cap.start)[0]) == len(c)
    assert parse_time("2024-03-14T12:00:05", None) == pd.Timestamp("2024-03-14T12:00:05Z")
    w, n = Selection(where="closed_by == 'client'", sort="-idle_before_close_s", limit=1).apply(c, "connections")
    assert n == int((c["closed_by"] == "client").sum()) and len(w) == 1
    assert w["idle_before_close_s"].iloc[0] == c.loc[c["closed_by"] == "client", "idle_before_close_s"].max()


def test_bad_selections_are_errors_not_empty_answers(cap):
    with pytest.raises(SelectionError):
        Selection(where="no_such_column > 3").apply(cap.connections, "connections")
    with pytest.raises(SelectionError):
        Selection(sort="nope").apply(cap.connections, "connections")
    with pytest.raises(SelectionError):
        parse_time("yesterday-ish")
    r = _cli("summary", MIXED, "--where", "nope >")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = _cli("summary", MIXED, "--since", "soon")
    assert r.returncode == 2


def test_text_tables_fit_the_terminal_and_never_lose_the_id():
    out = _cli("summary", BEFORE, columns=120).stdout
    table = [line for line in out.splitlines() if line.startswith(("┃", "│"))]
    assert table and all(len(line) <= 120 for line in table)
    assert "id" in table[0] and "client → server" in table[0]
    narrow = _cli("requests", BEFORE, "--conn", "0", columns=100).stdout
    assert "method uri" in narrow and "POST /exec" in narrow
    assert all(len(line) <= 100 for line in narrow.splitlines() if line.startswith(("┃", "│")))
    assert "not shown for the terminal's width" in _cli("summary", BEFORE, columns=80).stdout
    # the roles legend only when a row's roles were guessed
    assert "(?) roles guessed" not in out


def test_text_output_is_bounded_with_a_way_to_see_more(tmp_path):
    big = tmp_path / "big.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), "--packets", "30000", "--seed", "5",
                    "--out", str(big)], check=True, capture_output=True)
    out = _cli("summary", big).stdout
    assert "more connection(s); --limit N" in out
    assert len(out.splitlines()) < 230
    limited = _cli("summary", big, "--limit", "5", "--sort", "-duration_s").stdout
    assert sum(1 for line in limited.splitlines() if line.startswith("│")) == 5
    req = _cli("requests", big).stdout
    assert req.count("\nconnection ") == 30 and "more connection(s) with" in req


def test_csv_is_typed_and_jsonl_is_one_object_per_line():
    text = _cli("requests", BEFORE, "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["conn_id"] == "0" and rows[0]["status"] == "200" and rows[0]["index"] == "1"
    missing = [r for r in rows if r["outcome"] == "no_response"][0]
    assert missing["status"] == ""
    js = json.loads(_cli("requests", BEFORE, "--json").stdout)
    # timestamps exactly as JSON writes them: nine fractional digits and Z
    assert rows[0]["request_start"] == js[0]["request_start"] and rows[0]["request_start"].endswith("Z")
    lines = _cli("requests", BEFORE, "--jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == js
    sel = _cli("requests", BEFORE, "--jsonl", "--conn", "1").stdout.splitlines()
    assert len(sel) == 3 and {json.loads(line)["conn_id"] for line in sel} == {1}


def test_one_duration_style():
    assert [seconds(x) for x in (5.0, 5.0123, 0.0125, 0.000290)] == ["5.000 s", "5.012 s", "12.5 ms", "290 µs"]
    from sockscope.plot._timeline import _dur

    assert _dur(0.000023) == seconds(0.000023) == "23 µs"


def test_directories_are_captures_everywhere():
    rotated = ROOT / "captures" / "lab" / "rotated"
    files = sorted(str(p) for p in rotated.glob("*.pcap"))
    assert len(files) > 1
    by_dir, by_files = sockscope.load(rotated), sockscope.load(files)
    assert by_dir.connections.drop(columns="capture").equals(by_files.connections.drop(columns="capture"))
    r = _cli("diagnose", "--json", ROOT / "captures" / "lab" / "before-fix")
    assert r.returncode == 0 and json.loads(r.stdout)


def test_tls_keylog_is_never_ignored(tmp_path):
    keylog = tmp_path / "keys.log"
    keylog.write_text("")
    r = _cli("summary", "--json", BEFORE, "--tls-keylog", keylog)
    if shutil.which("tshark"):
        assert r.returncode == 0 and "--engine tshark" in r.stderr
    else:
        assert r.returncode == 2 and "--engine tshark" in r.stderr


def test_times_carry_their_date_when_a_capture_crosses_midnight(tmp_path):
    import struct

    data = bytearray(BEFORE.read_bytes())
    pos, n = 24, 0
    while pos + 16 <= len(data):           # classic pcap: 16-byte record headers after a 24-byte one
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        if n >= 20:                        # the later connections a day later
            struct.pack_into("<I", data, pos, sec + 86400)
        pos += 16 + incl
        n += 1
    shifted = tmp_path / "two-days.pcap"
    shifted.write_bytes(bytes(data))
    out = _cli("summary", shifted).stdout
    assert "2026-02-10 09:47:22" in out and "2026-02-11" in out
    plain = _cli("summary", BEFORE).stdout
    assert "2026-02-10 09:47:22.879000 " not in plain.split("span", 1)[1].split("\n", 1)[1]
