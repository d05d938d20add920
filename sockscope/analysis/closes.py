"""Close attribution: who closed each connection, how, after what silence, with what waiting.

Column-wise over the ``connections`` and ``requests`` tables. A request is *outstanding* at
the close when it was fully sent at or before the first FIN/RST and its response had not
finished by then (HTTP level). A connection with no request rows whose payload is not
readable HTTP (TLS, unknown) is judged at TCP level: the client spoke last and then nothing
for at least ``MIN_TIMER_S`` -- something was awaited. Without the silence it is no evidence:
TLS peers trade encrypted close_notify alerts just before the FIN, and an alert cannot be
told from data.

:func:`close_kinds` is the one rule that names a close (``client_idle_timeout``,
``client_abort``, ``server_abort``, ``server_idle_close``); ``diagnose`` applies it to every
connection at once, ``watch`` (:func:`classify_close`) to each close as it passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.timers import MIN_TIMER_S, TimeoutCluster

if TYPE_CHECKING:
    from sockscope.analysis.model import Context


@dataclass(slots=True)
class CloseInfo:
    """One connection's close, as :func:`close_attribution` returns it."""

    conn_id: int
    closer: str | None
    kind: str | None
    idle_s: float | None
    outstanding: list[int]          # request indexes waiting at the close (0: TCP level)
    level: str                      # 'http' | 'tcp'


def _outside(rst_ttl: np.ndarray, ttl_min: np.ndarray, ttl_max: np.ndarray) -> np.ndarray:
    """The forged-RST rule over arrays (NaN or negative: unknown, never evidence)."""
    with np.errstate(invalid="ignore"):
        known = (rst_ttl >= 0) & (ttl_min >= 0) & (ttl_max >= 0)
        return known & ((rst_ttl < ttl_min) | (rst_ttl > ttl_max))


def forged_rst(rst_ttl: float | None, ttl_min: float | None, ttl_max: float | None) -> bool:
    """An RST whose IP TTL (hop limit) lies outside the range of every other packet the side
    it claims to come from sent on the connection: another device sent it in that side's
    name (a firewall, a load balancer, an IPS). A host's own RSTs leave with the same
    initial TTL over the same path as its data, so they arrive with the same TTL. Unknown
    values (the side sent nothing else, or the engine does not record TTLs) never count as
    evidence."""
    vals = [np.array([np.nan if v is None else v], dtype=np.float64) for v in (rst_ttl, ttl_min, ttl_max)]
    return bool(_outside(*vals)[0])


def close_kinds(closer: np.ndarray, waiting: np.ndarray, idle_s: np.ndarray, timer: np.ndarray,
                forged: np.ndarray) -> np.ndarray:
    """The one rule that names a close, over arrays (object array; None: an ordinary close).

    - the client closed with something outstanding after >= MIN_TIMER_S of silence, and the
      close belongs to a timer cluster (two or more alike that stand out, or a round value):
      ``client_idle_timeout``; otherwise a client close with something outstanding is a
      ``client_abort``;
    - the server closed with something outstanding: ``server_abort``;
    - the server closed with nothing outstanding after >= MIN_TIMER_S: ``server_idle_close``;
    - the client closed with nothing outstanding after >= MIN_TIMER_S: ``client_idle_close``
      (a pool retiring an idle socket: information, never a failure).

    A close by an RST the closer did not send (``forged``) is no side's doing: it is the
    ``middlebox_rst`` detector's finding, and none of the kinds above.
    """
    out = np.full(len(closer), None, dtype=object)
    has = (closer != None) & ~forged  # noqa: E711
    with np.errstate(invalid="ignore"):
        idle_ok = ~np.isnan(idle_s) & (idle_s >= MIN_TIMER_S)
    client, server = has & (closer == "client"), has & (closer == "server")
    out[client & waiting] = "client_abort"
    out[client & waiting & idle_ok & timer] = "client_idle_timeout"
    out[server & waiting] = "server_abort"
    out[server & ~waiting & idle_ok] = "server_idle_close"
    out[client & ~waiting & idle_ok] = "client_idle_close"
    return out


def classify_close(closer: str | None, outstanding: bool, idle_s: float | None,
                   cluster: TimeoutCluster | None, forged: bool = False) -> str | None:
    """:func:`close_kinds` for one close (``watch`` names each close as it passes)."""
    return close_kinds(np.array([closer], dtype=object), np.array([bool(outstanding)]),
                       np.array([np.nan if idle_s is None else idle_s], dtype=np.float64),
                       np.array([cluster is not None and cluster.is_timer]), np.array([bool(forged)]))[0]


def crossed_requests(ctx: "Context") -> np.ndarray:
    """Per request row (``ctx.reqs`` order): did the server's closing FIN cross it on the wire?

    The request began before the FIN at this capture point, yet no packet of the server
    (the FIN included: every segment acknowledges all the data its sender has received)
    ever acknowledged it, and it was never answered. So the server's TCP had not received
    it when it closed: the server closed an idle connection (its keep-alive timer) while the
    request was on its way, and did not abort it. A capture beside the client sees the two
    in this order whenever the request left less than one path round trip before the FIN
    arrived; beside the server the FIN comes first.

    Judged from the client's flight, the data it had sent that the server had not
    acknowledged when the connection ended: the request began in it (no earlier than the
    flight's first segment), and the server acknowledged none of the flight (its partial
    ACKs are counted), so it had none of the request, however many segments it took and
    whatever other requests waited with it. A server that closes in the middle of a long
    upload has acknowledged part of the flight: that stays an abort, as does a capture
    without the server's ACKs (no flight is known).
    """
    r = ctx.reqs
    if not len(r):
        return np.zeros(0, dtype=bool)
    pos = ctx.req_pos
    fin = ctx.ns("server_fin_ts")[pos]
    close = ctx.ns("close_ts")[pos]
    flight = ctx.ns("client_unacked_since_ts")[pos]
    start = _cols.ns(r["request_start"])
    resp = _cols.ns(r["response_start"])
    outcome = _cols.texts(r["outcome"])
    acked = ctx.frames("client_unacked_acked_bytes")[pos]     # NO_FRAME where not known
    server_fin_close = (ctx.text("closed_by")[pos] == "server") & (ctx.text("close_kind")[pos] == "FIN") \
        & (fin != _cols.NAT) & (fin == close)
    unanswered = (outcome != "no_request") & (start != _cols.NAT) & (resp == _cols.NAT) & (start < fin)
    return server_fin_close & unanswered & (acked == 0) & (flight != _cols.NAT) & (flight <= start)


def _idle_before_crossed(ctx: "Context", crossed: np.ndarray, idle: np.ndarray) -> np.ndarray:
    """The server's silence before a close that crossed a request: from the end of the
    exchange before that request (the server never saw the request, so it does not count)."""
    out = idle.copy()
    if not crossed.any():
        return out
    r = ctx.reqs
    start = _cols.ns(r["request_start"])
    last = np.maximum(_cols.ns(r["request_end"]), _cols.ns(r["response_end"]))    # NaT is the minimum
    close = ctx.ns("close_ts")
    conn_start = ctx.ns("start")
    # the few connections with a crossed request: each one's first crossed request
    rows = np.flatnonzero(crossed)
    _, first = np.unique(ctx.req_pos[rows], return_index=True)
    for i in rows[first].tolist():
        pos = int(ctx.req_pos[i])
        lo, _ = ctx.req_bounds(pos)
        before = last[lo:i]
        before = before[(before != _cols.NAT) & (before <= start[i])]
        since = int(before.max()) if len(before) else int(conn_start[pos])
        if since != _cols.NAT and close[pos] != _cols.NAT:
            out[pos] = (int(close[pos]) - since) / 1e9
    return out


def outstanding_requests(ctx: "Context", crossed: np.ndarray | None = None) -> np.ndarray:
    """Per request row (in ``ctx.reqs`` order): was it waiting when its connection closed?
    A request the server's FIN crossed (:func:`crossed_requests`) was not: the server
    never had it."""
    r = ctx.reqs
    if not len(r):
        return np.zeros(0, dtype=bool)
    pos = ctx.req_pos
    cts = ctx.ns("close_ts")[pos]
    closer = ctx.text("closed_by")[pos]
    req_end = _cols.ns(r["request_end"])
    resp_end = _cols.ns(r["response_end"])
    outcome = _cols.texts(r["outcome"])
    out = ((outcome != "no_request") & (req_end != _cols.NAT) & (closer != None)  # noqa: E711
           & (cts != _cols.NAT) & (req_end <= cts) & ((resp_end == _cols.NAT) | (resp_end > cts)))
    # A capture that never shows the server's answer (one direction only, or capture loss)
    # cannot tell an unanswered request from one whose answer went uncaptured, but the
    # client's ACKs can: if they acknowledged server bytes the capture never showed (more
    # than a FIN's one) after the request began, the server was answering. (With requests
    # pipelined the ACKs cannot say which one: all after the answered one are let off.)
    unseen = ctx.ns("server_unseen_acked_ts")[pos]
    out &= ~((unseen != _cols.NAT) & (unseen > _cols.ns(r["request_start"])))
    return out & ~(crossed_requests(ctx) if crossed is None else crossed)


@dataclass(slots=True)
class Closes:
    """Per connection (table order): the close and what was waiting; plus timer clusters."""

    closer: np.ndarray            # object: 'client' | 'server' | None
    kind: np.ndarray              # object: 'FIN' | 'RST' | None
    idle_s: np.ndarray            # float, NaN when unknown
    n_outstanding: np.ndarray     # int: outstanding requests (1 for a TCP-level verdict)
    tcp_level: np.ndarray         # bool
    forged: np.ndarray            # bool: closed by an RST its claimed sender did not send, or by a
                                  # prober's kernel giving up on a dead peer (no side's choice)
    req_outstanding: np.ndarray   # bool per request row (ctx.reqs order)
    req_crossed: np.ndarray       # bool per request row: the server's FIN crossed it (never had it)
    clusters: list[TimeoutCluster]
    cluster: np.ndarray           # int: index into clusters, -1 for none

    def cluster_of(self, pos: int) -> TimeoutCluster | None:
        k = int(self.cluster[pos])
        return None if k < 0 else self.clusters[k]

    def kinds(self) -> np.ndarray:
        """:func:`close_kinds` for every connection (object array, None: none)."""
        timer = np.zeros(len(self.closer), dtype=bool)
        member = self.cluster >= 0
        if member.any():
            is_timer = np.array([k.is_timer for k in self.clusters], dtype=bool)
            timer[member] = is_timer[self.cluster[member]]
        return close_kinds(self.closer, self.n_outstanding > 0, self.idle_s, timer, self.forged)


def attribute(ctx: "Context") -> Closes:
    """Close attribution and timer clusters for every connection of ``ctx``."""
    from sockscope.analysis.timers import cluster_closes

    n = ctx.n
    closer = ctx.text("closed_by")
    kind = ctx.text("close_kind")
    idle = _cols.floats(ctx.conns["idle_before_close_s"]) if n else np.zeros(0)
    # closes that are no side's choice: an RST a device forged, a kernel's keep-alive giving up.
    # They are other detectors' findings, and never samples of anyone's idle timer.
    forced = forged_closes(ctx, closer, kind) | keepalive_giveups(ctx, closer, kind)
    crossed = crossed_requests(ctx)
    req_out = outstanding_requests(ctx, crossed)
    idle = _idle_before_crossed(ctx, crossed, idle)
    n_out = np.bincount(ctx.req_pos[req_out], minlength=n) if n else np.zeros(0, np.int64)
    has_reqs = ctx.req_count > 0
    tcp = (closer != None) & ~has_reqs & (ctx.text("protocol") != "http")  # noqa: E711
    tcp_waiting = tcp & (ctx.text("last_payload_by") == "client") & ~np.isnan(idle) & (idle >= MIN_TIMER_S)
    # the server's answer not captured, but the client's ACKs show it sent data after the last byte
    unseen = ctx.ns("server_unseen_acked_ts")
    tcp_waiting &= ~((unseen != _cols.NAT) & (unseen > ctx.ns("last_payload_ts")))
    n_out = np.where(tcp_waiting, 1, n_out)
    timed = np.where(forced, None, closer)
    # one connection seen at two capture points closed once: its second copy is no second
    # sample of a timer (it takes the first one's cluster below)
    pts = ctx.points
    copy = np.zeros(n, dtype=bool) if pts is None else pts.copies
    if copy.any():
        timed = np.where(copy, None, timed)
    if ctx.history is None:
        clusters, member = cluster_closes(timed, n_out > 0, idle, ctx.conn_id)
    else:       # live: this batch's closes cluster together with every earlier one
        h = ctx.history
        clusters, member = cluster_closes(np.concatenate([h.side, timed]), np.concatenate([h.outstanding, n_out > 0]),
                                          np.concatenate([h.idle_s, idle]), np.concatenate([h.conn_id, ctx.conn_id]))
        member = member[len(h.idle_s):]
    if copy.any():
        member = member.copy()
        member[copy] = member[pts.twin[copy]]
    return Closes(closer, kind, idle, n_out, tcp, forced, req_out, crossed, clusters, member)


def forged_rsts(ctx: "Context", side: str) -> np.ndarray:
    """Per connection: was ``side``'s first RST sent by someone else (:func:`forged_rst`)?"""
    return _outside(*(ctx.frames(f"{side}_{name}").astype(np.float64) for name in ("rst_ttl", "ttl_min", "ttl_max")))


DEAD_PEER_MIN_PROBES = 2


def dead_peer_runs(ctx: "Context") -> tuple["pd.DataFrame", np.ndarray]:
    """The keep-alive runs that prove a dead peer, and each one's connection position: two
    or more probes with no packet of any kind from the peer after the first, on a connection
    where the peer had been seen before (a one-direction capture makes no claim)."""
    st, pos = ctx.stall_rows("keepalive")
    if not len(st):
        return st, pos
    ok = (st["probes"].to_numpy(dtype=np.int64) >= DEAD_PEER_MIN_PROBES) \
        & ~np.isnan(st["peer_quiet_before_s"].to_numpy(dtype=np.float64))
    return st[ok].reset_index(drop=True), pos[ok]


def keepalive_giveups(ctx: "Context", closer: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Per connection: was the close the prober's RST after its keep-alive probes went
    unanswered (its kernel giving up on a dead peer)?"""
    out = np.zeros(ctx.n, dtype=bool)
    st, pos = dead_peer_runs(ctx)
    if not len(st):
        return out
    sides = _cols.texts(st["side"])
    last = st["end_frame"].to_numpy(dtype=np.int64)
    close_frame = ctx.frames("close_frame")[pos]
    out[pos] = (kind[pos] == "RST") & (closer[pos] == sides) & (close_frame > last)
    return out


def forged_closes(ctx: "Context", closer: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Per connection: was the close an RST that the closer did not send?"""
    rst = kind == "RST"
    return (rst & (closer == "client") & forged_rsts(ctx, "client")) | \
        (rst & (closer == "server") & forged_rsts(ctx, "server"))


def close_attribution(connections: pd.DataFrame, requests: pd.DataFrame) -> dict[int, CloseInfo]:
    """Per conn_id, a :class:`CloseInfo` (the Python API's view of :func:`attribute`)."""
    from sockscope.analysis.model import Context

    ctx = Context(connections, requests, None)
    cl = ctx.closes
    idx = ctx.reqs["index"].to_numpy() if len(ctx.reqs) else np.zeros(0, np.int64)
    out: dict[int, CloseInfo] = {}
    for pos, cid in enumerate(ctx.conn_id.tolist()):
        closer = cl.closer[pos]
        if cl.tcp_level[pos]:
            waiting = [0] if cl.n_outstanding[pos] else []
        else:
            lo, hi = ctx.req_bounds(pos)
            waiting = [int(i) for i in idx[lo:hi][cl.req_outstanding[lo:hi]]]
        idle = float(cl.idle_s[pos])
        out[int(cid)] = CloseInfo(int(cid), closer, cl.kind[pos], None if idle != idle else idle, waiting,
                                  "tcp" if cl.tcp_level[pos] else "http")
    return out


__all__ = ["CloseInfo", "Closes", "attribute", "classify_close", "close_attribution", "close_kinds", "forged_rst",
           "forged_rsts", "outstanding_requests"]
