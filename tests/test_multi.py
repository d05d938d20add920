"""Rotated captures read as one, and flow-sharded parallel runs equal to serial ones."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sockscope

ROOT = Path(__file__).resolve().parents[1]


def split_pcap(path: Path, out_dir: Path, pieces: int) -> list[Path]:
    """Cut a classic little-endian pcap into `pieces` files, as tcpdump -C rotation does."""
    data = path.read_bytes()
    header, pos, records = data[:24], 24, []
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        records.append(data[pos:pos + 16 + caplen])
        pos += 16 + caplen
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


def test_cli_reads_a_directory_of_rotated_files(tmp_path):
    split_pcap(ROOT / "captures/crafted/incident-before-fix.pcap", tmp_path, 2)
    r = subprocess.run([sys.executable, "-m", "sockscope", "summary", "--json", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import json
    rows = json.loads(r.stdout)
    assert [x["close_frame"] for x in rows] == [16, 35, 54]
