"""Every Wireshark filter sockscope emits is accepted by the installed tshark and selects
exactly the packets the finding's evidence names."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sockscope.filters import MATCH_NOTHING, frame_set, stream_filter, streams_filter
from tests.e2e_helpers import CRAFTED, LAB, json_rows

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (make test installs it as root)")


def test_sets_are_comma_separated_and_skip_missing():
    assert stream_filter(0, [26, 16, None, 27, float("nan"), 16]) == "tcp.stream eq 0 && frame.number in {16,26,27}"
    assert stream_filter(4) == "tcp.stream eq 4"
    assert streams_filter([2, 0]) == "tcp.stream in {0,2}"
    assert streams_filter([]) == MATCH_NOTHING
    assert frame_set([]) == "{}"


def _captures() -> list[Path]:
    caps = sorted(CRAFTED.glob("*.pcap")) + sorted(CRAFTED.glob("*.pcapng")) + sorted(LAB.glob("*/*.pcap"))
    return [c for c in caps if c.exists() and c.stat().st_size > 24]     # > a bare pcap header


def _tshark_frames(capture: Path, display_filter: str) -> set[int]:
    out = subprocess.run([TSHARK, "-n", "-r", str(capture), "-Y", display_filter, "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"tshark rejected {display_filter!r}: {out.stderr.strip()}"
    return {int(x) for x in out.stdout.split()}


def _evidence_frames(ev: dict) -> set[int]:
    """Every frame number the evidence names outside the request chain."""
    found: set[int] = set()
    for key, value in ev.items():
        if key.endswith("_frame") and isinstance(value, int):
            found.add(value)
        elif key == "reaction":
            found |= _evidence_frames(value)
        elif key == "gap_frames":
            found |= set(value)
    return found


def _stream_frames(capture: Path) -> dict[int, set[int]]:
    out = subprocess.run([TSHARK, "-n", "-r", str(capture), "-Y", "tcp", "-T", "fields",
                          "-e", "frame.number", "-e", "tcp.stream"], capture_output=True, text=True, timeout=120)
    streams: dict[int, set[int]] = {}
    for line in out.stdout.splitlines():
        fr, _, st = line.partition("\t")
        if st:
            streams.setdefault(int(st), set()).add(int(fr))
    return streams


@needs_tshark
@pytest.mark.parametrize("capture", _captures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_finding_filter_selects_its_evidence(capture: Path):
    rows = json_rows("diagnose", capture)
    if not rows:
        pytest.skip("no findings in this capture")
    streams = None
    for f in rows:
        flt = f["display_filter"]
        got = _tshark_frames(capture, flt)
        m = re.search(r"frame\.number in \{([\d,]+)\}", flt)
        if m:
            named = {int(x) for x in m.group(1).split(",")}
            # exactly the named frames: each one exists and lies on the finding's tcp.stream
            assert got == named, f"{f['kind']} conn {f['conn_id']}: {flt} selected {sorted(got)}"
            assert _evidence_frames(f["evidence"]) <= named, (f["kind"], f["evidence"], flt)
            if f["kind"] == "response_after_close" and f["evidence"]["client_rst_frame"] is not None:
                # the RST that refused the late answer, never one the client sent before it
                assert f["evidence"]["client_rst_frame"] > f["evidence"]["late_data_frame"], f["evidence"]
        else:
            streams = streams if streams is not None else _stream_frames(capture)
            ids = [int(x) for x in re.findall(r"\d+", flt.split("tcp.stream", 1)[1])]
            want = set().union(*(streams.get(i, set()) for i in ids))
            assert got and got == want, f"{f['kind']}: {flt}"
