"""Run sockscope on a dask.distributed cluster: the same shard-then-merge plan as ``--jobs``.

How it scales: the capture files sit on storage every worker can read (a shared file system
or an object store mounted locally). Each task reads all the files but keeps only the flows
whose symmetric 4-tuple hash falls in its shard, so both directions of a connection are in
one task; what moves over the network is the tables each task returns (a few hundred bytes
per connection and request), never packets. Decoding is repeated per task (it is the cheap
part); tracking, reassembly and HTTP, the expensive parts, are split. The merge numbers
connections by their first frame, so the tables equal a single serial run's.

    from dask.distributed import Client
    import sockscope.dask
    cap = sockscope.dask.analyze(["dump.pcap0", "dump.pcap1"], client=Client("tcp://scheduler:8786"))
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from sockscope import engine
from sockscope.api import Capture


def _task(paths: list[str], k: int, n: int, kw: dict[str, Any]) -> engine.EngineResult:
    return engine.run(paths, shard=(k, n), **kw)


def analyze(paths: Sequence[str | os.PathLike] | str, *, client: Any = None, shards: int | None = None,
            min_gap_s: float = 1.0) -> Capture:
    """Analyse capture file(s) on a dask.distributed ``client`` and return a :class:`Capture`.

    ``shards`` defaults to the number of worker threads the cluster has.
    """
    from dask.distributed import default_client

    files = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    client = client or default_client()
    if shards is None:
        shards = max(1, sum(client.nthreads().values()))
    kw = {"min_gap_s": min_gap_s}
    futures = [client.submit(_task, files, k, shards, kw, pure=False) for k in range(shards)]
    parts = client.gather(futures)
    res = engine._merge_shards(parts)
    res.facts["engine"] = "native"
    res.facts["dask_shards"] = shards
    name = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} files)"
    return Capture(name, *res.frames(), res.facts, min_gap_s)
