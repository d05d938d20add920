"""``stale_reuse``: a request sent on a connection the server had already closed (or was closing)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.analysis.text import seconds
from sockscope.filters import stream_filter

KINDS = (Kind("stale_reuse", "error", "Requests sent on connections the server had closed",
              advice="the client reused a pooled socket after the server's keep-alive timeout: keep the "
                     "client's idle-socket timeout below the server's, or retry idempotent requests"),)

RACE_NS = 1_000_000     # a request this close before the server's FIN crossed it on the wire


def detect(ctx: Context) -> list[Finding]:
    if not len(ctx.reqs):
        return []
    fin = ctx.ns("server_fin_ts")[ctx.req_pos]
    start = ctx.req_ns("request_start")
    resp = ctx.req_ns("response_start")
    outcome = ctx.req_text("outcome")
    failed = (outcome != "complete") & (outcome != "no_request") & (start != _cols.NAT) & (fin != _cols.NAT)
    # Sent after the server's FIN, or before it but crossing it on the wire: the FIN does not
    # acknowledge the request (closes.crossed_requests), or came so shortly after it that
    # the two crossed (a capture without the server's acknowledgements to tell).
    crossed = ctx.closes.req_crossed
    stale = failed & ((start >= fin) | crossed | ((fin - start < RACE_NS) & (resp == _cols.NAT)))
    rows = np.flatnonzero(stale)
    if not len(rows):
        return []
    _, first = np.unique(ctx.req_pos[rows], return_index=True)     # the first such request per connection
    idx = ctx.reqs["index"].to_numpy()
    method, uri, first_fr = ctx.req_text("method"), ctx.req_text("uri"), ctx.req_frames("first_frame")
    fin_fr, fin_ns = ctx.frames("server_fin_frame"), ctx.ns("server_fin_ts")
    found = []
    for i in rows[first].tolist():
        pos = int(ctx.req_pos[i])
        cid = int(ctx.conn_id[pos])
        ev = {"request_index": int(idx[i]), "request_frame": int(first_fr[i]), "request_ts": _cols.iso(start[i]),
              "server_fin_frame": int(fin_fr[pos]), "server_fin_ts": _cols.iso(fin_ns[pos]),
              "client": ctx.endpoint(pos, "client"), "server": ctx.endpoint(pos, "server"),
              "crossed": bool(crossed[i]), "requests": ctx.chain(pos)}
        if crossed[i]:
            ahead = (int(fin_ns[pos]) - int(start[i])) / 1e9
            idle = float(ctx.closes.idle_s[pos])
            ev["fin_after_request_s"] = ahead
            how = (f"a connection the server was closing: its FIN (frame {int(fin_fr[pos])}) came "
                   f"{seconds(ahead)} after the request without acknowledging it, so the two crossed on "
                   f"the wire and the server never had the request"
                   + (f" (the server had been idle {idle:.3f} s: its keep-alive timer)" if idle == idle else ""))
        else:
            how = f"a connection the server had already closed (server FIN, frame {int(fin_fr[pos])})"
        found.append(Finding(
            "stale_reuse", "error", cid, int(idx[i]),
            f"client {ctx.endpoint(pos, 'client')} sent {method[i]} {uri[i]} (frame {int(first_fr[i])}) on "
            f"{how}: the request failed",
            ev, stream_filter(cid, [first_fr[i], fin_fr[pos]])))
    return found


def verdict(kind: str, rows: pd.DataFrame) -> str:
    n = rows["conn_id"].nunique()
    return (f"The client sent {n} request(s) on connections the server had already closed: each failed "
            f"without reaching the application (a keep-alive race).")
