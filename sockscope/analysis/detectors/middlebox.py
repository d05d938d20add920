"""``middlebox_rst``: an RST that the side it claims to come from did not send.

A firewall whose state for a flow expired, a load balancer or an IPS resets connections in
the name of one end. Python's requests reports it exactly as a server close
("Connection reset by peer"); only the packets tell them apart. Signals, strongest first:

* **IP TTL / hop limit** (decisive): a host's own RSTs leave with its initial TTL over the
  same path as its data, so they arrive with the same TTL as its other packets. An RST whose
  TTL lies outside the range of every other packet of that side on the connection came from
  another hop (a TTL one higher: a device one hop closer to the capture point).
* **IP-ID** (supporting only): the RST's identification beside the side's own sequence. A
  middlebox often sends 0, but Linux sends its own RSTs with IP-ID 0 too, so it never decides.

Confidence: high when the side's own TTLs were constant over three or more packets, medium
otherwise. The finding takes the place of the close kinds (``server_abort`` and friends):
the side named by the addresses never closed the connection (see
:func:`sockscope.analysis.closes.forged_rst`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.closes import forged_rsts
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.analysis.text import seconds
from sockscope.filters import stream_filter

KINDS = (Kind("middlebox_rst", "error", "Connections reset by a device on the path, in an endpoint's name",
              advice="find the firewall, NAT or load balancer on the path (its idle timeout is often the "
                     "cause): keep-alive probes or a pool idle timeout below it; a capture at the other end "
                     "shows no RST at all"),)


def detect(ctx: Context) -> list[Finding]:
    if not ctx.n:
        return []
    found = []
    for side in ("server", "client"):
        forged = forged_rsts(ctx, side)
        other = "client" if side == "server" else "server"
        for pos in np.flatnonzero(forged).tolist():
            found.append(_finding(ctx, pos, side, other))
    return found


def _finding(ctx: Context, pos: int, side: str, other: str) -> Finding:
    cid = int(ctx.conn_id[pos])
    rst_fr = int(ctx.frames(f"{side}_rst_frame")[pos])
    rst_ns = int(ctx.ns(f"{side}_rst_ts")[pos])
    rst_ttl = int(ctx.frames(f"{side}_rst_ttl")[pos])
    lo, hi = int(ctx.frames(f"{side}_ttl_min")[pos]), int(ctx.frames(f"{side}_ttl_max")[pos])
    rst_id = _cols.frame(ctx.frames(f"{side}_rst_ip_id")[pos])
    id_before = _cols.frame(ctx.frames(f"{side}_ip_id_before_rst")[pos])
    pkts = int(ctx.conns[f"{side}_pkts"].iat[pos]) - 1
    delta = rst_ttl - hi if rst_ttl > hi else rst_ttl - lo
    ttl_text = f"TTL {lo}" if lo == hi else f"TTL {lo}–{hi}"
    signals = [{"signal": "ip_ttl", "rst": rst_ttl, "sender_min": lo, "sender_max": hi, "delta": delta,
                "verdict": "disagrees"}]
    if rst_id is not None and id_before is not None:
        signals.append({"signal": "ip_id", "rst": rst_id, "sender_last": id_before,
                        "verdict": "consistent with a forgery, not proof (Linux sends its own RSTs with IP-ID 0)"
                        if rst_id == 0 and id_before != 0 else "no evidence either way"})
    confidence = "high" if lo == hi and pkts >= 3 else "medium"
    ev = {"claimed_from": side, "rst_frame": rst_fr, "rst_ts": _cols.iso(rst_ns), "rst_ttl": rst_ttl,
          "sender_ttl_min": lo, "sender_ttl_max": hi, "sender_packets": pkts, "rst_ip_id": rst_id,
          "sender_ip_id_before": id_before, "signals": signals, "confidence": confidence,
          "client": ctx.endpoint(pos, "client"), "server": ctx.endpoint(pos, "server"),
          "requests": ctx.chain(pos)}
    frames: list = [rst_fr]
    # what was waiting: the requests sent before the RST and not answered by then
    waiting = ""
    lo_r, _ = ctx.req_bounds(pos)
    for i, r in enumerate(ev["requests"]):
        resp = ctx.req_ns("response_start")[lo_r + i]
        sent = ctx.req_ns("request_start")[lo_r + i]
        if sent != _cols.NAT and sent <= rst_ns and (resp == _cols.NAT or resp > rst_ns):
            idle = (rst_ns - int(sent)) / 1e9
            waiting = (f" {r['method']} {r['uri']} (request {r['index']}, frame {r['first_frame']}) had been sent "
                       f"{seconds(idle)} before it.")
            frames.append(r["first_frame"])
            ev["request_index"] = r["index"]
            break
    last_pay = _cols.frame(ctx.frames("last_payload_frame")[pos])
    if last_pay is not None:
        frames.append(last_pay)
    hops = f"{abs(delta)} hop{'s' if abs(delta) != 1 else ''} {'closer to' if delta > 0 else 'farther from'}"
    summary = (f"the RST in frame {rst_fr} claims to come from the {side} {ev[side]} but was not sent by it: it "
               f"arrived with TTL {rst_ttl} while all {pkts} other packet(s) of the {side} on this connection "
               f"arrived with {ttl_text} -- a device {hops} the capture point reset the connection in the "
               f"{side}'s name ({confidence} confidence).{waiting} The {other} was told the {side} reset it.")
    return Finding("middlebox_rst", "error", cid, ev.get("request_index"), summary, ev, stream_filter(cid, frames))


def verdict(kind: str, rows: pd.DataFrame) -> str:
    n = rows["conn_id"].nunique()
    sides = pd.Series([e["claimed_from"] for e in rows["evidence"]]).value_counts()
    ttl = pd.Series([f"{e['rst_ttl']} vs {e['sender_ttl_min']}" for e in rows["evidence"]]).value_counts()
    return (f"{n} connection(s) were reset by a device between the endpoints, in the name of the "
            + " and ".join(f"{s} ({c})" for s, c in sides.items())
            + f": the RSTs' IP TTL differs from every packet that endpoint really sent (RST vs its own: "
            + ", ".join(f"{t} ×{c}" for t, c in ttl.head(3).items())
            + "). The endpoint named by the addresses never closed these connections.")
