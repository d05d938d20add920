"""The extended columns (what the analysis reads beyond the published contract) are declared
once, in ``sockscope.schema``: both engines produce exactly the contract's columns and the
declared ones, with the declared dtypes, and every column the analysis layer names is one
of them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import sockscope
from sockscope import schema

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = [ROOT / "captures/crafted/mixed.pcap", ROOT / "captures/crafted/tun-vxlan.pcap",
            ROOT / "captures/crafted/one-sided-client.pcap", ROOT / "captures/crafted/stalls.pcap"]
PAIR = [ROOT / "captures/lab/middlebox-rst/client.pcap", ROOT / "captures/lab/middlebox-rst/server.pcap"]


def _check(frame: pd.DataFrame, table: str, native: bool) -> None:
    public, extra = schema.TABLES[table], schema.extended_pandas(table)
    assert list(frame.columns[:len(public)]) == list(public)
    unknown = [c for c in frame.columns if c not in public and c not in extra]
    assert not unknown, f"{table}: columns declared nowhere: {unknown}"
    for c in frame.columns[len(public):]:
        assert str(frame[c].dtype) == str(extra[c]), (table, c, frame[c].dtype, extra[c])


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_native_columns_are_the_declared_ones_with_their_dtypes(path):
    cap = sockscope.load(path)
    _check(cap.connections, "connections", True)
    _check(cap.requests, "requests", True)


def test_two_capture_points_add_only_declared_columns():
    if not PAIR[1].exists():
        pytest.skip("no lab recordings")
    cap = sockscope.load(PAIR)
    _check(cap.connections, "connections", True)
    _check(cap.requests, "requests", True)
    assert {"capture", "twin_conn_id"} <= set(cap.connections.columns)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("path", CAPTURES[:1] + CAPTURES[2:], ids=lambda p: p.name)
def test_tshark_columns_are_the_declared_ones_with_their_dtypes(path):
    cap = sockscope.load(path, engine="tshark")
    _check(cap.connections, "connections", False)
    _check(cap.requests, "requests", False)


_READ = re.compile(r"""(?:ctx\.(?:ns|frames|text|req_ns|req_frames|req_text)\(|ctx\.(?:conns|reqs)\[)f?["']([a-z_{}]+)["']""")


def test_every_column_the_analysis_reads_is_declared():
    """Column names in ``ctx.ns("...")`` & co. across sockscope/analysis (an f-string's
    ``{side}``-style parts stand for any name part)."""
    known = {**schema.spec("connections"), **schema.extended("connections"), **schema.spec("requests"),
             **schema.extended("requests"), **schema.spec("gaps"), **schema.spec("stalls")}
    seen, unknown = set(), []
    for py in sorted((ROOT / "sockscope" / "analysis").rglob("*.py")):
        for name in _READ.findall(py.read_text()):
            seen.add(name)
            pattern = re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[a-z_]+", re.escape(name)))
            if not any(pattern.fullmatch(k) for k in known):
                unknown.append(f"{py.relative_to(ROOT)}: {name}")
    assert len(seen) > 30, "the pattern no longer finds the analysis layer's reads"
    assert not unknown, "\n".join(unknown)


def test_each_extended_column_says_what_it_means():
    for table in ("connections", "requests"):
        docs = schema.extended_doc(table)
        assert docs and all(len(d) >= 5 and "{" not in d for d in docs.values()), table


def test_the_engines_enumerations_are_the_schemas():
    from sockscope.capture._source import TUNNEL_NAMES
    from sockscope.tcp._tracker import _STATE_NAMES

    assert list(_STATE_NAMES) == schema.ENDPOINT_STATES
    assert [t for t in TUNNEL_NAMES if t] == schema.TUNNELS
