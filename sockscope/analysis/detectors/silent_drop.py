"""``silent_drop``: data retransmitted again and again, never acknowledged, no answer at all.

What a firewall or NAT that forgot a flow does when it DROPs instead of rejecting (or a
broken path): the sender's segments vanish. On the wire: a flight of new data (often after an
idle period), retransmitted with the RTO's backoff, and from the peer nothing of any kind --
no ACK, no RST -- from the moment the flight began. The sender's application gives up on its
own timer; its FIN, queued behind the unacknowledged data, never reaches the wire, so the
connection often ends with no FIN or RST at all.

A slow server is not this: its kernel acknowledges the request at once. A peer that is merely
far away is not this either: two or more retransmissions of the same flight are required, and
a single RST or ACK from the peer after the flight began rules it out. The tracker records,
per side, the flight that was still unacknowledged when the connection ended
(``*_unacked_since_*``, ``*_unacked_retransmits``, ``*_unacked_bytes``) and, when the peer had
sent packets before it and none after, how long the peer had then been quiet
(``*_unacked_peer_quiet_s``). A capture that never shows the peer (one direction only)
makes no claim: without the peer's ACKs every flight would look unacknowledged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.analysis.text import seconds
from sockscope.filters import stream_filter

KINDS = (Kind("silent_drop", "error", "Data dropped on the way: retransmitted, never acknowledged, no answer",
              advice="a device on the path drops this flow (a firewall or NAT whose state expired, a broken "
                     "route): keep idle connections shorter than its timeout or enable TCP keep-alive; a "
                     "capture at the other end shows the data never arrived"),)

MIN_RETRANSMITS = 2


def detect(ctx: Context) -> list[Finding]:
    if not ctx.n:
        return []
    found = []
    for side, peer in (("client", "server"), ("server", "client")):
        since = ctx.ns(f"{side}_unacked_since_ts")
        rexmit = ctx.frames(f"{side}_unacked_retransmits")
        # known only when the peer sent packets before the flight and none after it
        quiet = _cols.floats(ctx.conns[f"{side}_unacked_peer_quiet_s"]) if f"{side}_unacked_peer_quiet_s" in \
            ctx.conns else np.full(ctx.n, np.nan)
        silent = (since != _cols.NAT) & (rexmit >= MIN_RETRANSMITS) & ~np.isnan(quiet)
        for pos in np.flatnonzero(silent).tolist():
            found.append(_finding(ctx, pos, side, peer))
    return found


def _finding(ctx: Context, pos: int, side: str, peer: str) -> Finding:
    cid = int(ctx.conn_id[pos])
    since = int(ctx.ns(f"{side}_unacked_since_ts")[pos])
    first = int(ctx.frames(f"{side}_unacked_since_frame")[pos])
    rexmit = int(ctx.frames(f"{side}_unacked_retransmits")[pos])
    nbytes = int(ctx.frames(f"{side}_unacked_bytes")[pos])
    quiet = float(ctx.conns[f"{side}_unacked_peer_quiet_s"].iat[pos])
    last_frame = int(ctx.frames("last_frame")[pos])
    end = int(ctx.ns("end")[pos]) if ctx.ns("end")[pos] != _cols.NAT else since
    tried = (end - since) / 1e9
    fin, rst = _cols.frame(ctx.frames(f"{side}_fin_frame")[pos]), _cols.frame(ctx.frames(f"{side}_rst_frame")[pos])
    after = [f for f in (fin, rst) if f is not None and f > first]
    if rst is not None and rst > first:
        ending = f"the {side} finally reset the connection (RST, frame {rst})"
    elif fin is not None and fin > first:
        ending = f"the {side}'s FIN (frame {fin}) followed"
    else:
        ending = (f"no FIN or RST ever reached the wire: the {side}'s application gave up on its own timer (a FIN "
                  f"waits behind unacknowledged data) or the capture ended")
    ev = {"sender": side, "first_frame": first, "since_ts": _cols.iso(since), "retransmits": rexmit,
          "unacked_bytes": nbytes, "retrying_s": tried, "peer_quiet_before_s": quiet, "ended": ending,
          "client": ctx.endpoint(pos, "client"),
          "server": ctx.endpoint(pos, "server"), "requests": ctx.chain(pos)}
    waiting = None
    for r in ev["requests"]:
        if r["first_frame"] is not None and r["first_frame"] >= first and r["outcome"] != "complete":
            waiting = r
            break
    where = (f" carrying {waiting['method']} {waiting['uri']} (request {waiting['index']})" if waiting else "")
    idle = f" after {seconds(quiet)} in which the {peer} had sent nothing"
    summary = (f"the {side} {ev[side]} sent {nbytes} bytes{where} (frame {first}){idle}; they were retransmitted "
               f"{rexmit} times over {seconds(tried)} and never acknowledged, and the {peer} {ev[peer]} sent nothing "
               f"at all from then on -- dropped on the way (a firewall or NAT that forgot the flow, a broken path); "
               f"{ending}")
    return Finding("silent_drop", "error", cid, None if waiting is None else waiting["index"], summary, ev,
                   stream_filter(cid, [first, last_frame, *after]))


def verdict(kind: str, rows: pd.DataFrame) -> str:
    n = rows["conn_id"].nunique()
    rex = [e["retransmits"] for e in rows["evidence"]]
    quiet = [e["peer_quiet_before_s"] for e in rows["evidence"] if e.get("peer_quiet_before_s") is not None]
    q = f", after the peer had been quiet {seconds(min(quiet))}–{seconds(max(quiet))}" if quiet else ""
    absent = sorted({p for e in rows["evidence"] for p in (e.get("absent_from") or [])})
    where = (f"; the capture at the other end ({', '.join(absent)}) shows it never arrived" if absent
             else "; a capture at the other end will show the data never arrived")
    return (f"{n} connection(s) lost their data on the way: retransmitted {min(rex)}–{max(rex)} times, never "
            f"acknowledged, no answer of any kind{q}. Nothing on the wire says who dropped it{where}.")
