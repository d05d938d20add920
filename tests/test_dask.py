"""The dask backend returns the tables of a serial run (LocalCluster in the suite)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import sockscope

ROOT = Path(__file__).resolve().parents[1]


def test_dask_local_cluster_equals_serial_run():
    distributed = pytest.importorskip("dask.distributed")
    import sockscope.dask as sdask

    path = ROOT / "captures" / "lab" / "mixed" / "capture.pcap"
    serial = sockscope.load(path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        cap = sdask.analyze([path], client=client)
    assert cap.facts["dask_shards"] == 2
    for table in ("connections", "requests", "gaps"):
        pd.testing.assert_frame_equal(getattr(cap, table), getattr(serial, table))
    assert list(cap.findings["kind"].astype(str)) == list(serial.findings["kind"].astype(str))
