"""``response_after_close``: the server wrote after the client had closed; the answer was lost."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.analysis.text import seconds
from sockscope.filters import stream_filter

KINDS = (Kind("response_after_close", "warning", "Server answered into closed connections",
              advice="the answer came after the client gave up: find why the client closed first"),)


def detect(ctx: Context) -> list[Finding]:
    cl = ctx.closes
    late = (cl.closer == "client") & (ctx.text("data_after_close_by") == "server")
    if not late.any():
        return []
    close_ns, close_fr = ctx.ns("close_ts"), ctx.frames("close_frame")
    late_ns, late_fr = ctx.ns("data_after_close_ts"), ctx.frames("data_after_close_frame")
    late_bytes = ctx.conns["data_after_close_bytes"].to_numpy()
    # the RST that refused the late data, not an RST the client sent before it (a client that
    # closed with RST resets again when the answer arrives)
    rst_fr, rst_ns = ctx.frames("data_after_close_rst_frame"), ctx.ns("data_after_close_rst_ts")
    resp_start, outcome = ctx.req_ns("response_start"), ctx.req_text("outcome")
    idx = ctx.reqs["index"].to_numpy() if len(ctx.reqs) else np.zeros(0, np.int64)
    found = []
    for pos in np.flatnonzero(late).tolist():
        cid = int(ctx.conn_id[pos])
        rst = _cols.frame(rst_fr[pos])
        late_s = (int(late_ns[pos]) - int(close_ns[pos])) / 1e9
        chain = ctx.chain(pos)
        ev = {"close_frame": int(close_fr[pos]), "close_ts": _cols.iso(close_ns[pos]),
              "late_data_frame": int(late_fr[pos]), "late_data_ts": _cols.iso(late_ns[pos]),
              "late_after_close_s": late_s, "late_bytes": int(late_bytes[pos]),
              "client_rst_frame": rst, "client_rst_ts": _cols.iso(rst_ns[pos]), "requests": chain}
        tail = f"; the client's kernel answered RST (frame {rst})" if rst is not None else ""
        lo, hi = ctx.req_bounds(pos)
        answered = None
        hit = np.flatnonzero((resp_start[lo:hi] != _cols.NAT) & (resp_start[lo:hi] >= close_ns[pos])
                             & (outcome[lo:hi] != "no_request"))
        if len(hit):
            answered = int(idx[lo + hit[0]])
            ev["request_index"] = answered
        server = ctx.endpoint(pos, "server")
        found.append(Finding(
            "response_after_close", "warning", cid, answered,
            f"server {server} sent {int(late_bytes[pos])} bytes (frame {int(late_fr[pos])}) {seconds(late_s)} after "
            f"the client closed the connection (frame {int(close_fr[pos])}): the answer was dropped{tail}", ev,
            stream_filter(cid, [close_fr[pos], late_fr[pos], rst])))
    return found


def verdict(kind: str, rows: pd.DataFrame) -> str:
    n = rows["conn_id"].nunique()
    rst = sum(1 for e in rows["evidence"] if e.get("client_rst_frame") is not None)
    return (f"The server sent its late answer on {n} connection(s) after the client had closed them; "
            f"{rst} drew an RST from the client's kernel: the responses were dropped.")
