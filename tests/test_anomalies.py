"""cap.anomalies names what was odd in the input (Zeek's weird.log is the model)."""

from __future__ import annotations

from pathlib import Path

import sockscope

ROOT = Path(__file__).resolve().parents[1]


def test_cut_off_capture_is_a_damaged_input_row_and_keeps_what_was_read(tmp_path):
    data = (ROOT / "captures/crafted/incident-before-fix.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 30])
    cap = sockscope.load(cut)
    a = cap.anomalies
    assert list(a["kind"].astype(str)) == ["damaged_input"]
    assert "record 57" in a.iloc[0]["detail"] and "cut off" in a.iloc[0]["detail"]
    assert cap.facts["packets"] == 56 and len(cap.connections) == 3


def test_http_violations_are_named_with_frames():
    cap = sockscope.load(ROOT / "captures/crafted/incident-before-fix.pcap")
    assert cap.anomalies.empty
    zeek = Path(__file__).resolve().parents[2] / "shared/conformance/zeek/http-methods/methods.pcap"
    if zeek.exists():
        a = sockscope.load(zeek).anomalies
        row = a[a["kind"] == "junk_before_request"].iloc[0]
        assert row["layer"] == "http" and row["count"] >= 1 and all(isinstance(f, int) for f in row["frames"])
