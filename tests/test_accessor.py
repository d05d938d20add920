"""``df.sockscope``: filtering by connection, Wireshark filters, request types."""

from __future__ import annotations

from pathlib import Path

import pytest

import sockscope
import sockscope.accessor  # noqa: F401  (registers .sockscope)

CRAFTED = Path(__file__).resolve().parents[1] / "captures" / "crafted"


@pytest.fixture(scope="module")
def cap():
    return sockscope.load(CRAFTED / "mixed.pcap")


@pytest.mark.parametrize("table", ["connections", "requests", "gaps", "findings"])
def test_on_filters_every_table(cap, table):
    df = getattr(cap, table)
    part = df.sockscope.on(3)
    assert len(part) and set(part["conn_id"]) == {3}
    assert len(df.sockscope.on(0, 3)) == len(df.sockscope.on([0, 3])) == int(df["conn_id"].isin([0, 3]).sum())


def test_filter(cap):
    # 0 and 3: killed requests, 1: the server's idle close, 4: the client pool's idle close
    assert cap.findings.sockscope.filter() == "tcp.stream in {0,1,3,4}"
    assert cap.requests.sockscope.on(6).sockscope.filter() == "tcp.stream in {6}"
    assert cap.gaps.iloc[:0].sockscope.filter() == sockscope.accessor.MATCH_NOTHING


def test_by_type(cap):
    sizes = cap.requests.sockscope.by_type().size()
    assert sizes.to_dict() == {"GET /files/{id}": 6, "GET /version": 1, "POST /exec": 4}


def test_not_a_sockscope_table():
    import pandas as pd

    with pytest.raises(AttributeError):
        pd.DataFrame({"x": [1]}).sockscope.on(1)
    with pytest.raises(AttributeError):
        pd.DataFrame({"conn_id": [1]}).sockscope.by_type()
