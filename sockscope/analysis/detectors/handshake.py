"""Connections that never got going: ``refused`` and ``syn_unanswered``.

``refused``: the SYN was answered by RST (Zeek's conn_state REJ). From the server's address:
nothing listens on that port, or a firewall rejects in the server's name (the capture alone
cannot always tell the two apart; the summary says so).

``syn_unanswered``: the client retransmitted its SYN and never saw a SYN-ACK or anything
else (conn_state S0 with two or more SYNs). A retransmitted SYN is the client's own proof it
got no answer, whatever direction the capture sees; a single SYN at the end of a capture is
too early to call and is not reported. The evidence adds whether other connections to the
same server were answered meanwhile (a port-specific block or backlog vs. a host that is down
or unreachable).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.analysis.text import seconds
from sockscope.filters import stream_filter

KINDS = (
    Kind("refused", "error", "Connection attempts refused (SYN answered by RST)",
         advice="nothing listens on that port (is the server up, on that port?) or a firewall rejects it"),
    Kind("syn_unanswered", "error", "Connection attempts never answered (SYNs retransmitted)",
         advice="a firewall dropping, a full accept backlog or an unreachable host: check the path and the "
                "server's listen queue (ss -lnt, nstat ListenDrops)"),
)


def _answered_meanwhile(ctx: Context, pos: int) -> tuple[int, int]:
    """Connections to the same server address that got an answer while this one waited:
    (same port, other ports)."""
    sip, sport = ctx.text("server_ip"), ctx.frames("server_port")
    start, end = ctx.ns("start"), ctx.ns("end")
    answered = ctx.conns["server_pkts"].to_numpy() > 0
    overlap = (start <= end[pos]) & (end >= start[pos])
    same_host = (sip == sip[pos]) & answered & overlap
    same_host[pos] = False
    same_port = same_host & (sport == sport[pos])
    return int(same_port.sum()), int((same_host & ~same_port).sum())


def detect(ctx: Context) -> list[Finding]:
    if not ctx.n:
        return []
    state = ctx.text("state")
    syns = ctx.conns["client_pkts"].to_numpy()
    srv_pkts = ctx.conns["server_pkts"].to_numpy()
    roles = ctx.text("roles_from")
    # A connection that carried data got past its handshake, whatever the states say: a
    # capture of the client's direction only never shows the SYN-ACK (the client stays
    # SYN_SENT to Zeek's rules), but a client sends no request, and acknowledges no server
    # bytes, before one.
    carried = (ctx.frames("client_bytes") > 0) | (ctx.req_count > 0) | (ctx.frames("server_unseen_acked_bytes") > 0)
    refused = (state == "REJ") & (roles == "syn") & ~carried
    unanswered = (state == "S0") & (roles == "syn") & (syns >= 2) & (srv_pkts == 0) & ~carried
    found: list[Finding] = []
    first, last = ctx.frames("first_frame"), ctx.frames("last_frame")
    start, end = ctx.ns("start"), ctx.ns("end")
    rst_fr, rst_ns = ctx.frames("server_rst_frame"), ctx.ns("server_rst_ts")
    for pos in np.flatnonzero(refused | unanswered).tolist():
        cid = int(ctx.conn_id[pos])
        client, server = ctx.endpoint(pos, "client"), ctx.endpoint(pos, "server")
        same_port, other_ports = _answered_meanwhile(ctx, pos)
        meanwhile = (f"{same_port} other connection(s) to {server} and {other_ports} to other ports of that "
                     f"host were answered meanwhile")
        ev = {"client": client, "server": server, "syn_frame": int(first[pos]), "syns": int(syns[pos]),
              "first_syn_ts": _cols.iso(start[pos]), "answered_same_port": same_port,
              "answered_other_ports": other_ports}
        if refused[pos]:
            rst = _cols.frame(rst_fr[pos])
            after = (int(rst_ns[pos]) - int(start[pos])) / 1e9 if rst is not None else None
            ev.update(rst_frame=rst, rst_after_s=after)
            found.append(Finding(
                "refused", "error", cid, None,
                f"client {client} could not connect to {server}: its SYN (frame {int(first[pos])}) was answered by RST"
                + (f" (frame {rst}) after {seconds(after)}" if after is not None else "")
                + f" from the server's address: nothing listens on that port, or a firewall rejects in the server's "
                  f"name; {meanwhile}",
                ev, stream_filter(cid, [first[pos], rst])))
        else:
            span = (int(end[pos]) - int(start[pos])) / 1e9
            ev.update(last_syn_frame=int(last[pos]), retry_span_s=span)
            found.append(Finding(
                "syn_unanswered", "error", cid, None,
                f"client {client} sent {int(syns[pos])} SYNs to {server} over {seconds(span)} (frames "
                f"{int(first[pos])}–{int(last[pos])}) and got no answer of any kind: a firewall dropping them, a "
                f"full accept backlog, or an unreachable host; {meanwhile}",
                ev, stream_filter(cid, [first[pos], last[pos]])))
    return found


def verdict(kind: str, rows: pd.DataFrame) -> str:
    n = rows["conn_id"].nunique()
    servers = pd.Series([e["server"] for e in rows["evidence"]]).value_counts()
    where = ", ".join(f"{s} ({c})" for s, c in servers.head(5).items()) + (
        f" and {len(servers) - 5} more" if len(servers) > 5 else "")
    if kind == "refused":
        return (f"{n} connection attempt(s) were refused: the SYN came back as an RST from {where}. Nothing "
                f"listened on the port, or a firewall rejected the attempt in the server's name.")
    syns = sum(e["syns"] for e in rows["evidence"])
    return (f"{n} connection attempt(s) got no answer at all ({syns} SYNs sent) to {where}: the packets were "
            f"dropped on the way, the server's accept backlog was full, or the host was unreachable.")
