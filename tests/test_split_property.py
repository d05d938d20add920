"""Property: the summary of a capture equals the merge of the summaries of its time-ordered
pieces, wherever the capture is cut between connections (no connection spans a cut).

Each piece is analysed on its own (as a separate capture). Merging means renumbering: a
piece's conn_ids continue after the previous pieces' connections, and its frame numbers after
their packets; every other value (times, bytes, states, histories, request counts, idle
times) must come out identical.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sockscope
from tests.pcaprec import pcap_records

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ["captures/crafted/incident-after-fix.pcap", "captures/lab/after-fix/capture.pcap",
            "captures/crafted/rst-vs-fin.pcap", "captures/lab/ipv6/capture.pcap"]


def valid_cuts(conns: pd.DataFrame) -> list[int]:
    """Frames after which the capture can be cut: every connection lies wholly on one side,
    and those before the cut were closed (so the end of a piece is not their capture end)."""
    first, last = conns["first_frame"].tolist(), conns["last_frame"].tolist()
    closed = conns["close_kind"].notna().tolist()
    cuts = []
    for x in sorted(set(last)):
        if all(l <= x or f > x for f, l in zip(first, last)) and all(c for c, l in zip(closed, last) if l <= x) \
                and any(f > x for f in first):
            cuts.append(x)
    return cuts


_WHOLE: dict[str, pd.DataFrame] = {}


def whole(name: str) -> pd.DataFrame:
    if name not in _WHOLE:
        _WHOLE[name] = sockscope.load(ROOT / name, tables=("connections",)).connections
    return _WHOLE[name]


@pytest.mark.parametrize("name", CAPTURES)
def test_every_capture_here_has_cuts(name):
    assert len(valid_cuts(whole(name))) >= 2, "the property needs captures with sequential connections"


@settings(max_examples=25, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("name", CAPTURES)
def test_summary_equals_merged_summaries_of_pieces(tmp_path_factory, name, data):
    want = whole(name)
    cuts = sorted(data.draw(st.sets(st.sampled_from(valid_cuts(want)), min_size=1, max_size=3)))
    header, recs = pcap_records(ROOT / name)
    tmp = tmp_path_factory.mktemp("pieces")
    bounds = [0, *cuts, len(recs)]
    parts, frames, conns = [], 0, 0
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        piece = tmp / f"piece{k}.pcap"
        piece.write_bytes(header + b"".join(recs[a:b]))
        c = sockscope.load(piece, tables=("connections",)).connections.copy()
        c["conn_id"] += conns
        for col in [x for x in c.columns if x.endswith("frame")]:
            c[col] = c[col] + frames
        parts.append(c)
        conns += len(c)
        frames += b - a
    got = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
