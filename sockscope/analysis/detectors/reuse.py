"""``connection_reuse``: one socket carried requests from different clients (User-Agents)."""

from __future__ import annotations

import pandas as pd

from sockscope.analysis.model import Context, Finding, Kind
from sockscope.filters import stream_filter

KINDS = (Kind("connection_reuse", "info", "Sockets reused by different clients",
              advice="two HTTP clients share one connection pool (an agent): a timer one sets can fire "
                     "on the other's request"),)


def detect(ctx: Context) -> list[Finding]:
    if not len(ctx.reqs):
        return []
    ua = ctx.req_text("user_agent")
    known = ua != None  # noqa: E711
    if not known.any():
        return []
    per = pd.DataFrame({"pos": ctx.req_pos[known], "ua": ua[known]})
    distinct = per.groupby("pos", sort=True)["ua"].nunique()
    hits = distinct.index.to_numpy()[distinct.to_numpy() >= 2]
    found = []
    for pos in hits.tolist():
        cid = int(ctx.conn_id[pos])
        chain = ctx.chain(pos)
        uas = list(dict.fromkeys(x["user_agent"] for x in chain if x["user_agent"] is not None))
        steps = " → ".join(f"{x['method']} {x['uri']} ({x['user_agent']})" for x in chain if x["method"])
        client = ctx.endpoint(pos, "client")
        found.append(Finding(
            "connection_reuse", "info", cid, None,
            f"{len(chain)} requests from {len(uas)} different clients reused one socket ({client}): {steps}",
            {"client": client, "user_agents": uas, "requests": chain},
            stream_filter(cid, [x["first_frame"] for x in chain])))
    return found


def verdict(kind: str, rows: pd.DataFrame) -> str:
    n = rows["conn_id"].nunique()
    uas = sorted({ua for e in rows["evidence"] for ua in e.get("user_agents", [])})
    shown = ", ".join(uas[:6]) + (f" and {len(uas) - 6} more" if len(uas) > 6 else "")
    return f"{n} socket(s) carried requests from different clients: {shown}."

