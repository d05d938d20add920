"""A capture rotated by tcpdump -G gives the tables of the same traffic captured in one file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import sockscope

DIR = Path(__file__).resolve().parents[1] / "captures" / "lab" / "rotated"


@pytest.mark.skipif(not (DIR / "whole.pcap").exists(), reason="captures/lab/rotated not recorded")
def test_tcpdump_rotated_pieces_equal_the_whole_capture():
    whole = sockscope.load(DIR / "whole.pcap")
    pieces = sorted(DIR.glob("dump-*.pcap"))
    assert len(pieces) >= 3
    rotated = sockscope.load(pieces)
    assert rotated.facts["packets"] == whole.facts["packets"] == 54
    for table in ("connections", "requests", "gaps"):
        a, b = getattr(whole, table), getattr(rotated, table)
        assert list(a.columns) == list(b.columns) and len(a) == len(b)
        for col in a.columns:
            if isinstance(a[col].dtype, pd.DatetimeTZDtype):
                diff = (a[col] - b[col]).dt.total_seconds().abs()
                assert (diff.fillna(0) <= 2e-6).all(), col   # two tcpdumps, two clocks reads
            elif col.endswith("_s"):
                assert ((a[col] - b[col]).abs().fillna(0) <= 2e-6).all(), col
            else:
                pd.testing.assert_series_equal(a[col], b[col], check_names=False)
    kinds = rotated.findings["kind"].astype(str).tolist()
    assert kinds.count("client_idle_timeout") == 2
