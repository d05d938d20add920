"""``dead_peer``: TCP keep-alive probes that the peer never answered.

A socket with keep-alive on probes an idle connection (Linux: after ``tcp_keepalive_time``
or ``TCP_KEEPIDLE`` of silence, an empty segment at snd.nxt - 1 every ``TCP_KEEPINTVL``); a
live peer's kernel answers each with an ACK, whatever its application is doing. Probes
answered by nothing mean the peer's host is gone (powered off, crashed, unplugged, its
address moved) or the path to it drops the flow; after ``TCP_KEEPCNT`` probes the prober's
kernel gives up, resets the connection (Linux sends an RST) and the application gets
ETIMEDOUT. The capture cannot tell a dead host from a path that drops everything: the
finding names both.

The rule (:func:`sockscope.analysis.closes.dead_peer_runs`) reads the ``stalls`` table's
keepalive rows: a run of two or more probes with no packet of any kind from the peer after
the first, on a connection where the peer had been seen before (a one-direction capture,
which never shows the peer, makes no claim). The prober's RST that follows is its kernel
giving up, not a close of its application: no close kind is said of it.
"""

from __future__ import annotations

import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.closes import dead_peer_runs
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.analysis.text import seconds
from sockscope.filters import stream_filter

KINDS = (Kind("dead_peer", "error", "Keep-alive probes unanswered: the peer's host or the path to it is gone",
              advice="check whether the peer host went down or moved (uptime, failover) and whether a firewall "
                     "on the path dropped the idle flow; a capture at the peer shows which"),)

def detect(ctx: Context) -> list[Finding]:
    st, pos = dead_peer_runs(ctx)
    return [_finding(ctx, st, i, int(pos[i])) for i in range(len(st))]


def _finding(ctx: Context, st: pd.DataFrame, i: int, pos: int) -> Finding:
    cid = int(ctx.conn_id[pos])
    prober = str(st["side"].iat[i])
    peer = "client" if prober == "server" else "server"
    start_ns = int(_cols.ns(st["start"])[i])
    last_ns = int(_cols.ns(st["end"])[i])
    first = int(st["start_frame"].iat[i])
    last = int(st["end_frame"].iat[i])
    n = int(st["probes"].iat[i])
    quiet = float(st["peer_quiet_before_s"].iat[i])
    interval = (last_ns - start_ns) / 1e9 / (n - 1)
    rst_frame = _cols.frame(ctx.frames(f"{prober}_rst_frame")[pos])
    rst_ns = ctx.ns(f"{prober}_rst_ts")[pos]
    frames = [first, last]
    if rst_frame is not None and rst_frame > last:
        ending = (f"the {prober}'s kernel gave up and reset the connection (RST, frame {rst_frame}, "
                  f"{seconds((int(rst_ns) - last_ns) / 1e9)} after the last probe); its application got a timeout")
        frames.append(rst_frame)
    else:
        ending = "the capture ends with the probes unanswered"
    ev = {"prober": prober, "probes": n, "first_probe_frame": first, "last_probe_frame": last,
          "first_probe_ts": _cols.iso(start_ns), "interval_s": interval, "peer_quiet_before_s": quiet,
          "prober_rst_frame": rst_frame if rst_frame is not None and rst_frame > last else None, "ended": ending,
          "client": ctx.endpoint(pos, "client"), "server": ctx.endpoint(pos, "server"), "requests": ctx.chain(pos)}
    summary = (f"the {prober} {ev[prober]} sent {n} TCP keep-alive probes (frames {first}–{last}, every "
               f"{seconds(interval)}) after {seconds(quiet)} in which the {peer} {ev[peer]} had sent nothing, and "
               f"none was answered: a live host's kernel acks every probe, so the {peer}'s host is gone (down, "
               f"crashed, unplugged) or the path to it drops the flow; {ending}")
    return Finding("dead_peer", "error", cid, None, summary, ev, stream_filter(cid, frames))


def verdict(kind: str, rows: pd.DataFrame) -> str:
    n = rows["conn_id"].nunique()
    probers = pd.Series([e["prober"] for e in rows["evidence"]]).value_counts()
    return (f"{n} connection(s) lost their peer: keep-alive probes from the "
            + " and ".join(f"{s} ({c})" for s, c in probers.items())
            + " were never answered. The peer's host went away or the path to it dropped the flow; a capture "
              "at the peer tells which.")
