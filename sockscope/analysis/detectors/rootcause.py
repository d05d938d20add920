"""``root_cause_hint``: what the sockets a client timer killed have in common.

Compares the sockets of ``client_idle_timeout`` findings with long requests that survived
(answered after waiting at least as long as the timer). A feature shared by every killed
socket and by no survivor is the likely cause (in the incident: an earlier axios GET /files
on the same socket left a timer behind).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.analysis.text import request_type, ua_family
from sockscope.filters import streams_filter

KINDS = (Kind("root_cause_hint", "info", "What the killed sockets have in common",
              advice="look at the client code that sent the common earlier request: it left a timer behind"),)

_PREFERENCE = ("first request", "earlier ", "reused", "fresh", "socket age")


def _socket_features(ctx: Context, i: int) -> dict[str, str]:
    """What the socket of request row ``i`` had been through before that request."""
    pos = int(ctx.req_pos[i])
    lo, hi = ctx.req_bounds(pos)
    idx = ctx.reqs["index"].to_numpy()
    method, uri, ua = ctx.req_text("method"), ctx.req_text("uri"), ctx.req_text("user_agent")
    feats: dict[str, str] = {}
    earlier = [j for j in range(lo, hi) if idx[j] < idx[i]]
    if earlier:
        j = earlier[0]
        fam = ua_family(ua[j])
        feats["first request"] = request_type(method[j], uri[j]) + (f" from {fam}" if fam else "")
        for j in earlier:
            fam = ua_family(ua[j])
            feats[f"earlier {request_type(method[j], uri[j])}" + (f" from {fam}" if fam else "")] = "yes"
        feats["reused socket"] = "yes"
    else:
        feats["fresh socket"] = "yes"
    at = ctx.req_ns("request_start")[i]
    if at != _cols.NAT:
        age = (int(at) - int(ctx.ns("start")[pos])) / 1e9
        feats["socket age"] = ">= 1 s" if age >= 1 else "< 1 s"
    return feats


def hints(ctx: Context, findings: list[Finding]) -> list[Finding]:
    killed = [f for f in findings if f.kind == "client_idle_timeout" and f.request_index is not None]
    pts = ctx.points
    if pts is not None:     # a socket seen at two capture points was killed once
        pos_of = pd.Index(ctx.conn_id).drop_duplicates()
        killed = [f for f in killed if not pts.copies[pos_of.get_loc(f.conn_id)]]
    if not killed or not len(ctx.reqs):
        return []
    timer = min(f.evidence.get("inferred_timeout_s") or f.evidence["idle_s"] for f in killed)
    idx = ctx.reqs["index"].to_numpy()
    row_of = {}
    pos_of = {int(c): p for p, c in enumerate(ctx.conn_id.tolist())}
    for f in killed:
        lo, hi = ctx.req_bounds(pos_of[int(f.conn_id)])
        row_of[f.conn_id] = lo + int(np.flatnonzero(idx[lo:hi] == f.request_index)[0])
    k_feats = [_socket_features(ctx, row_of[f.conn_id]) for f in killed]
    ttfb = ctx.reqs["ttfb_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    survivors = np.flatnonzero((ctx.req_text("outcome") == "complete") & (ttfb >= timer))
    s_feats = [_socket_features(ctx, int(i)) for i in survivors]
    scores = []
    for k, v in {(k, v) for fs in k_feats for k, v in fs.items()}:
        nk = sum(1 for fs in k_feats if fs.get(k) == v)
        ns = sum(1 for fs in s_feats if fs.get(k) == v)
        scores.append((nk / len(k_feats) - (ns / len(s_feats) if s_feats else 0), nk, ns, k, v))

    def specificity(key: str) -> int:
        # among equally good features, name the request that poisoned the socket first
        return next((i for i, p in enumerate(_PREFERENCE) if key.startswith(p)), 9)

    scores.sort(key=lambda x: (-x[0], -x[1], specificity(x[3]), x[3], x[4]))
    if not scores or scores[0][0] <= 0:
        return []
    _, nk, ns, k, v = scores[0]
    if k == "first request":
        label = f"first carried {v}"
    elif k.startswith("earlier "):
        label = "carried " + k[len("earlier "):]
    elif k == "reused socket":
        label = "been reused"
    elif k == "socket age":
        label = f"been open {v}"
    else:
        label = k
    nkill, nsurv = len(k_feats), len(s_feats)
    if nsurv:
        tail = (f"none of the {nsurv} request(s) that waited {timer:g} s or longer and survived ran on such a socket"
                if ns == 0 else f"{ns} of the {nsurv} surviving long request(s) did")
    else:
        tail = "no request in this capture waited that long and survived, so there is nothing to contrast with"
    summary = (f"{'all' if nk == nkill else nk} of {nkill} killed socket(s) had {label} before the request "
               f"that died; {tail}")
    ranked = [{"feature": (kk if vv == "yes" else f"{kk} {vv}"), "killed": a, "survivors": b, "score": round(sc, 3)}
              for sc, a, b, kk, vv in scores[:6]]
    ev = {"killed_conn_ids": [f.conn_id for f in killed], "survivor_requests": int(nsurv),
          "timer_s": timer, "ranked_features": ranked}
    return [Finding("root_cause_hint", "info", None, None, summary, ev, streams_filter(f.conn_id for f in killed))]


def verdict(kind: str, rows: pd.DataFrame) -> str:
    return " ".join(rows["summary"].astype(str).tolist()[:3])
