"""``zero_window_stall``: a receiver advertised a zero window while its peer had more to send.

A receiving application that stops reading (blocked, overloaded, deadlocked, or a server
that accepts and never reads) lets its kernel's receive buffer fill; the kernel then
advertises a window of 0 and the sender may send nothing but window probes (Linux: an empty
segment at snd.nxt - 1, backed off like a retransmission). Nothing is lost and nobody closes:
the transfer just stops, until the receiver reads again (the window reopens) or one side's
timer gives up. A client timer firing during a stall reports a timeout against a server that
never answered -- the packets show the server never read the request.

The rule reads the ``stalls`` table (the tracker keeps each zero-window run of at least
0.2 s, and any still open when the connection ended). A stall of at least ``min_gap_s`` is a
finding: **warning** when the window reopened (the transfer resumed), **error** when the
connection ended with the window still closed (it died in the stall). A capture that shows
only the receiver's direction still shows the stall (the windows are the receiver's own).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.analysis.text import seconds
from sockscope.filters import stream_filter

KINDS = (Kind("zero_window_stall", "error", "A receiver stopped reading: zero window while the peer had more to send",
              advice="find what the receiving application was doing at the stall's start (blocked on a lock, a "
                     "slow disk, a full queue, a handler that never reads the body): its socket's Recv-Q "
                     "(ss -tn) is full meanwhile"),)


def detect(ctx: Context) -> list[Finding]:
    st, pos = ctx.stall_rows("zero_window")
    if not len(st):
        return []
    dur = st["duration_s"].to_numpy(dtype=np.float64)
    found = []
    for i in np.flatnonzero(dur >= ctx.min_gap_s).tolist():
        found.append(_finding(ctx, st, i, int(pos[i])))
    return found


def _finding(ctx: Context, st: pd.DataFrame, i: int, pos: int) -> Finding:
    cid = int(ctx.conn_id[pos])
    receiver = str(st["side"].iat[i])
    sender = "client" if receiver == "server" else "server"
    start_ns = int(_cols.ns(st["start"])[i])
    end_ns = int(_cols.ns(st["end"])[i])
    first = int(st["start_frame"].iat[i])
    end_frame = int(st["end_frame"].iat[i])
    probes = int(st["probes"].iat[i])
    resolved = bool(st["resolved"].iat[i])
    dur = float(st["duration_s"].iat[i])
    ev = {"receiver": receiver, "sender": sender, "first_frame": first, "since_ts": _cols.iso(start_ns),
          "stalled_s": dur, "window_probes": probes, "reopened": resolved,
          "reopened_frame": end_frame if resolved else None,
          "client": ctx.endpoint(pos, "client"), "server": ctx.endpoint(pos, "server"), "requests": ctx.chain(pos)}
    # what was in progress: the last request that began before the stall
    waiting = next((r for r in reversed(ev["requests"]) if r["first_frame"] is not None
                    and r["first_frame"] <= first), None)
    if waiting is not None:
        ev["request_index"] = waiting["index"]
    what = f" (during {waiting['method']} {waiting['uri']}, request {waiting['index']})" if waiting else ""
    close_ns = ctx.ns("close_ts")[pos]
    closer = ctx.text("closed_by")[pos]
    close_kind = ctx.text("close_kind")[pos]
    close_frame = _cols.frame(ctx.frames("close_frame")[pos])
    frames = [first, end_frame]
    if resolved:
        ending = f"the window reopened at frame {end_frame}"
        severity = "warning"
    else:
        severity = "error"
        if close_ns != _cols.NAT and close_ns >= start_ns and closer is not None:
            ending = (f"the window never reopened: the {closer} closed the connection ({close_kind}, frame "
                      f"{close_frame}) {seconds((int(close_ns) - start_ns) / 1e9)} into the stall")
            frames.append(close_frame)
        else:
            ending = (f"the window never reopened; no FIN or RST reached the wire (a close waits behind the "
                      f"{sender}'s unsent data) or the capture ended, {seconds(dur)} into the stall")
    ev["ended"] = ending
    probe_text = (f"the {sender} probed the closed window {probes} time(s)" if probes else
                  f"the {sender} sent nothing more")
    summary = (f"the {receiver} {ev[receiver]} advertised a zero window from frame {first} for {seconds(dur)}: its "
               f"application stopped reading while the {sender} {ev[sender]} had more to send{what}; "
               f"{probe_text}; {ending}")
    return Finding("zero_window_stall", severity, cid, ev.get("request_index"), summary, ev,
                   stream_filter(cid, frames))


def verdict(kind: str, rows: pd.DataFrame) -> str:
    n = rows["conn_id"].nunique()
    recv = pd.Series([e["receiver"] for e in rows["evidence"]]).value_counts()
    dur = [e["stalled_s"] for e in rows["evidence"]]
    died = sum(1 for e in rows["evidence"] if not e["reopened"])
    return (f"{n} connection(s) stalled on a zero window advertised by the "
            + " and ".join(f"{s} ({c})" for s, c in recv.items())
            + f", for {seconds(min(dur))}–{seconds(max(dur))}; {died} ended with the window still closed. "
              "Nothing was lost: the receiving application did not read.")
