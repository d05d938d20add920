"""Close attribution: who closed each connection, how, after what silence, with what waiting.

Column-wise over the ``connections`` and ``requests`` tables. A request is *outstanding* at
the close when it was fully sent at or before the first FIN/RST and its response had not
finished by then (HTTP level). A connection with no request rows whose payload is not
readable HTTP (TLS, unknown) is judged at TCP level: the client spoke last and then nothing
for at least ``MIN_TIMER_S`` -- something was awaited. Without the silence it is no evidence:
TLS peers trade encrypted close_notify alerts just before the FIN, and an alert cannot be
told from data.

:func:`classify_close` is the one rule that names a close (``client_idle_timeout``,
``client_abort``, ``server_abort``, ``server_idle_close``); ``diagnose`` and ``watch`` both
call it.
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


def forged_rst(rst_ttl: float | None, ttl_min: float | None, ttl_max: float | None) -> bool:
    """An RST whose IP TTL (hop limit) lies outside the range of every other packet the side
    it claims to come from sent on the connection: another device sent it in that side's
    name (a firewall, a load balancer, an IPS). A host's own RSTs leave with the same
    initial TTL over the same path as its data, so they arrive with the same TTL. Unknown
    values (the side sent nothing else, or the engine does not record TTLs) never count as
    evidence."""
    def known(v: float | None) -> bool:
        return v is not None and v == v and v >= 0

    if not (known(rst_ttl) and known(ttl_min) and known(ttl_max)):
        return False
    return bool(rst_ttl < ttl_min or rst_ttl > ttl_max)   # type: ignore[operator]


def classify_close(closer: str | None, outstanding: bool, idle_s: float | None,
                   cluster: TimeoutCluster | None, forged: bool = False) -> str | None:
    """The finding kind a close is, or None for an ordinary close.

    A close by an RST the closer did not send (``forged``) is no side's doing: it is the
    ``middlebox_rst`` detector's finding, and none of the kinds below.

    - the client closed with something outstanding after >= MIN_TIMER_S of silence, and the
      close belongs to a timer cluster (two or more alike, or a round value):
      ``client_idle_timeout``; otherwise a client close with something outstanding is a
      ``client_abort``;
    - the server closed with something outstanding: ``server_abort``;
    - the server closed with nothing outstanding after >= MIN_TIMER_S: ``server_idle_close``.
    """
    if closer is None or forged:
        return None
    if outstanding:
        if closer == "client":
            idle_ok = idle_s is not None and idle_s == idle_s and idle_s >= MIN_TIMER_S
            return "client_idle_timeout" if idle_ok and cluster is not None and cluster.is_timer else "client_abort"
        return "server_abort"
    if closer == "server" and idle_s is not None and idle_s == idle_s and idle_s >= MIN_TIMER_S:
        return "server_idle_close"
    return None


def outstanding_requests(ctx: "Context") -> np.ndarray:
    """Per request row (in ``ctx.reqs`` order): was it waiting when its connection closed?"""
    r = ctx.reqs
    if not len(r):
        return np.zeros(0, dtype=bool)
    pos = ctx.req_pos
    cts = ctx.ns("close_ts")[pos]
    closer = ctx.text("closed_by")[pos]
    req_end = _cols.ns(r["request_end"])
    resp_end = _cols.ns(r["response_end"])
    outcome = _cols.texts(r["outcome"])
    return ((outcome != "no_request") & (req_end != _cols.NAT) & (closer != None)  # noqa: E711
            & (cts != _cols.NAT) & (req_end <= cts) & ((resp_end == _cols.NAT) | (resp_end > cts)))


@dataclass(slots=True)
class Closes:
    """Per connection (table order): the close and what was waiting; plus timer clusters."""

    closer: np.ndarray            # object: 'client' | 'server' | None
    kind: np.ndarray              # object: 'FIN' | 'RST' | None
    idle_s: np.ndarray            # float, NaN when unknown
    n_outstanding: np.ndarray     # int: outstanding requests (1 for a TCP-level verdict)
    tcp_level: np.ndarray         # bool
    forged: np.ndarray            # bool: closed by an RST its claimed sender did not send
    req_outstanding: np.ndarray   # bool per request row (ctx.reqs order)
    clusters: list[TimeoutCluster]
    cluster: np.ndarray           # int: index into clusters, -1 for none

    def cluster_of(self, pos: int) -> TimeoutCluster | None:
        k = int(self.cluster[pos])
        return None if k < 0 else self.clusters[k]

    def kinds(self) -> np.ndarray:
        """:func:`classify_close` for every connection, column-wise (object array, None: none)."""
        n = len(self.closer)
        out = np.full(n, None, dtype=object)
        has = self.closer != None  # noqa: E711
        waiting = self.n_outstanding > 0
        idle_ok = ~np.isnan(self.idle_s) & (self.idle_s >= MIN_TIMER_S)
        timer = np.zeros(n, dtype=bool)
        member = self.cluster >= 0
        if member.any():
            is_timer = np.array([k.is_timer for k in self.clusters], dtype=bool)
            timer[member] = is_timer[self.cluster[member]]
        has &= ~self.forged          # a forged RST is no side's close (see forged_rst)
        client, server = has & (self.closer == "client"), has & (self.closer == "server")
        out[client & waiting] = "client_abort"
        out[client & waiting & idle_ok & timer] = "client_idle_timeout"
        out[server & waiting] = "server_abort"
        out[server & ~waiting & idle_ok] = "server_idle_close"
        return out


def attribute(ctx: "Context") -> Closes:
    """Close attribution and timer clusters for every connection of ``ctx``."""
    from sockscope.analysis.timers import cluster_closes

    n = ctx.n
    closer = ctx.text("closed_by")
    kind = ctx.text("close_kind")
    idle = _cols.floats(ctx.conns["idle_before_close_s"]) if n else np.zeros(0)
    req_out = outstanding_requests(ctx)
    n_out = np.bincount(ctx.req_pos[req_out], minlength=n) if n else np.zeros(0, np.int64)
    has_reqs = ctx.req_count > 0
    tcp = (closer != None) & ~has_reqs & (ctx.text("protocol") != "http")  # noqa: E711
    tcp_waiting = tcp & (ctx.text("last_payload_by") == "client") & ~np.isnan(idle) & (idle >= MIN_TIMER_S)
    n_out = np.where(tcp_waiting, 1, n_out)
    if ctx.history is None:
        clusters, member = cluster_closes(closer, n_out > 0, idle, ctx.conn_id)
    else:       # live: this batch's closes cluster together with every earlier one
        h = ctx.history
        clusters, member = cluster_closes(np.concatenate([h.side, closer]), np.concatenate([h.outstanding, n_out > 0]),
                                          np.concatenate([h.idle_s, idle]), np.concatenate([h.conn_id, ctx.conn_id]))
        member = member[len(h.idle_s):]
    return Closes(closer, kind, idle, n_out, tcp, forged_closes(ctx, closer, kind), req_out, clusters, member)


def forged_rsts(ctx: "Context", side: str) -> np.ndarray:
    """Per connection: was ``side``'s first RST sent by someone else (:func:`forged_rst`)?"""
    rst = ctx.frames(f"{side}_rst_ttl").astype(np.float64)
    lo = ctx.frames(f"{side}_ttl_min").astype(np.float64)
    hi = ctx.frames(f"{side}_ttl_max").astype(np.float64)
    ok = (rst >= 0) & (lo >= 0) & (hi >= 0)
    return ok & ((rst < lo) | (rst > hi))


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


def closes_frame(ctx: "Context") -> pd.DataFrame:
    """The close attribution as a table: one row per connection, the finding kind of its close."""
    cl = ctx.closes
    return pd.DataFrame({
        "conn_id": ctx.conn_id,
        "closed_by": pd.Categorical(cl.closer, categories=["client", "server"]),
        "close_kind": pd.Categorical(cl.kind, categories=["FIN", "RST"]),
        "idle_s": cl.idle_s,
        "outstanding": cl.n_outstanding.astype(np.int64),
        "level": pd.Categorical(np.where(cl.tcp_level, "tcp", "http"), categories=["http", "tcp"]),
        "kind": pd.Series(cl.kinds(), dtype="string"),
    })


__all__ = ["CloseInfo", "Closes", "attribute", "classify_close", "close_attribution", "closes_frame",
           "outstanding_requests"]
