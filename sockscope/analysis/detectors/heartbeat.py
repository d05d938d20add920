"""``heartbeat``: a response kept alive by small periodic writes (a defence against idle timers)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.filters import stream_filter

KINDS = (Kind("heartbeat", "info", "Responses kept alive by heartbeat writes",
              advice="nothing to fix: these writes keep client idle timers from firing"),)

REGULARITY = 0.25      # the silences between writes differ by at most this share of their median


def detect(ctx: Context) -> list[Finding]:
    gaps = ctx.gaps
    if gaps is None or gaps.empty or not len(ctx.reqs):
        return []
    start, end = ctx.req_ns("response_start"), ctx.req_ns("response_end")
    known = (start != _cols.NAT) & (end != _cols.NAT)
    long = np.flatnonzero(known & ((end - np.where(known, start, 0)) >= 2 * ctx.min_gap_s * 1e9))
    if not len(long):
        return []
    # Gaps in connection order, so one connection's gaps are one slice.
    ids = pd.Index(ctx.conn_id).drop_duplicates()
    gpos = ids.get_indexer(gaps["conn_id"].to_numpy(dtype=np.int64))
    order = np.argsort(gpos, kind="stable")
    gpos = gpos[order]
    g_start = _cols.ns(gaps["start"])[order]
    g_end = _cols.ns(gaps["end"])[order]
    g_dur = gaps["duration_s"].to_numpy(dtype=np.float64)[order]
    g_by = _cols.texts(gaps["ended_by"])[order]
    g_frame = _cols.frames(gaps["end_frame"])[order]
    idx = ctx.reqs["index"].to_numpy()
    method, uri = ctx.req_text("method"), ctx.req_text("uri")
    found = []
    for i in long.tolist():
        pos = int(ctx.req_pos[i])
        lo, hi = np.searchsorted(gpos, pos, "left"), np.searchsorted(gpos, pos, "right")
        sel = lo + np.flatnonzero((g_start[lo:hi] >= start[i]) & (g_end[lo:hi] <= end[i])
                                  & (g_by[lo:hi] == "server_data"))
        if len(sel) < 2:
            continue
        d = g_dur[sel]
        med = float(np.median(d))
        if d.max() - d.min() > REGULARITY * med:
            continue
        span = (int(end[i]) - int(start[i])) / 1e9
        cid = int(ctx.conn_id[pos])
        fr = [int(f) for f in g_frame[sel] if f != _cols.NO_FRAME]
        found.append(Finding(
            "heartbeat", "info", cid, int(idx[i]),
            f"the server kept {method[i]} {uri[i]} alive with {len(sel)} small writes about every {med:.2f} s over "
            f"{span:.1f} s: client idle timers longer than {med:.2f} s cannot fire during it",
            {"interval_s": med, "writes": int(len(sel)), "response_span_s": span, "gap_frames": fr},
            stream_filter(cid, fr)))
    return found


def verdict(kind: str, rows: pd.DataFrame) -> str:
    return " ".join(rows["summary"].astype(str).tolist()[:3])
