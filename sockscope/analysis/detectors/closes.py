"""Closes with something waiting, and idle keep-alive closes by the server.

Kinds: ``client_idle_timeout`` (the client's timer killed a waiting request: a close after
silence that belongs to a timer cluster), ``client_abort`` (the client closed with a request
waiting, no timer pattern), ``server_abort`` (the server closed with a request waiting),
``server_idle_close`` (the server closed an idle keep-alive connection), ``client_idle_close``
(the client's pool closed an idle keep-alive connection). The rule is
:func:`sockscope.analysis.closes.classify_close`, applied column-wise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.analysis.text import request_type
from sockscope.filters import stream_filter

KINDS = (
    Kind("client_idle_timeout", "error", "Client idle timeout killed requests",
         advice="raise the client's timeout above the slowest answer, or make the server answer (or "
                "send headers) sooner"),
    Kind("server_abort", "error", "Server closed connections with a request outstanding",
         advice="read the server's log at the close time: a crash, a restart or a request limit"),
    Kind("client_abort", "warning", "Client aborted connections with a request outstanding",
         advice="a client that cancels (deadline, user, load generator) is often by design; check its log"),
    Kind("server_idle_close", "info", "Server closed idle keep-alive connections",
         advice="a client that reuses sockets must close idle ones before the server's keep-alive timeout"),
    Kind("client_idle_close", "info", "Client closed idle keep-alive connections (its pool's idle timer)",
         advice="nothing failed: the client retired idle sockets; keep its idle timer below the server's "
                "keep-alive timeout"),
)


def _reaction(ctx: Context, pos: int, closer: str, close_kind: str | None) -> dict[str, Any]:
    """What the other side did after the close (its FIN/RST, data after the close)."""
    other = "server" if closer == "client" else "client"
    close_ns = ctx.ns("close_ts")[pos]
    out: dict[str, Any] = {"frames": []}
    for kind in ("fin", "rst"):
        fr = ctx.frames(f"{other}_{kind}_frame")[pos]
        if fr != _cols.NO_FRAME:
            ts = ctx.ns(f"{other}_{kind}_ts")[pos]
            out[f"{other}_{kind}_frame"] = int(fr)
            out[f"{other}_{kind}_after_s"] = (int(ts) - int(close_ns)) / 1e9
            out["frames"].append(int(fr))
    late = ctx.frames("data_after_close_frame")[pos]
    if late != _cols.NO_FRAME:
        out["data_after_close_frame"] = int(late)
        out["data_after_close_by"] = ctx.text("data_after_close_by")[pos]
        out["frames"].append(int(late))
    closer_rst = ctx.frames(f"{closer}_rst_frame")[pos]
    if close_kind == "FIN" and closer_rst != _cols.NO_FRAME:
        out[f"{closer}_rst_frame"] = int(closer_rst)
        out["frames"].append(int(closer_rst))
    return out


def _idle_text(idle: float | None) -> str:
    return "with no payload before it" if idle is None else f"{idle:.3f} s after the last byte"


def _waiting_text(waiting: list[dict[str, Any]], tcp_level: bool) -> str:
    if tcp_level:
        return "the client's last data had no answer"
    if not waiting:
        return "a request was outstanding"
    w = waiting[0]
    more = f" (and {len(waiting) - 1} more)" if len(waiting) > 1 else ""
    sent = "-" if w["sent"] is None else pd.Timestamp(w["sent"]).strftime("%H:%M:%S.%f")[:-3]
    return (f"{w['method']} {w['uri']} (request {w['index']}, sent {sent}) had no "
            f"{'complete ' if w['outcome'] == 'partial_response' else ''}response{more}")


def base_evidence(ctx: Context, pos: int) -> tuple[dict[str, Any], list[Any]]:
    """The evidence every close finding carries, and the frames that show it."""
    cl = ctx.closes
    closer, kind = cl.closer[pos], cl.kind[pos]
    idle = float(cl.idle_s[pos])
    close_frame = int(ctx.frames("close_frame")[pos])
    lp_frame = _cols.frame(ctx.frames("last_payload_frame")[pos])
    reaction = _reaction(ctx, pos, closer, kind)
    ev = {
        "closer": closer, "close_kind": kind, "close_frame": close_frame,
        "close_by_ack": bool(ctx.flag("close_by_ack")[pos]),
        "close_ts": _cols.iso(ctx.ns("close_ts")[pos]), "idle_s": None if idle != idle else idle,
        "last_payload_frame": lp_frame, "last_payload_ts": _cols.iso(ctx.ns("last_payload_ts")[pos]),
        "last_payload_by": ctx.text("last_payload_by")[pos],
        "level": "tcp" if cl.tcp_level[pos] else "http",
        "client": ctx.endpoint(pos, "client"), "server": ctx.endpoint(pos, "server"),
        "requests": ctx.chain(pos), "reaction": reaction,
    }
    return ev, [close_frame, lp_frame, *reaction["frames"]]


GROUP_WINDOW_S = 0.001     # one server's closes this close together are one event
GROUP_P = 1e-3             # ... when chance (that server's close rate) explains them this rarely


def _poisson_tail(mu: float, k: int) -> float:
    """P(X >= k) for X ~ Poisson(mu)."""
    term, below = math.exp(-mu), 0.0
    for i in range(k):
        below += term
        term *= mu / (i + 1)
    return max(0.0, 1.0 - below)


class _ServerCloses:
    """Every server-side close, grouped by server endpoint and sorted by time: finds the
    closes of one server that happened together (a process that died or restarted: its
    kernel closes every socket at once)."""

    def __init__(self, ctx: Context) -> None:
        cl = ctx.closes
        self.ctx = ctx
        mine = np.flatnonzero((cl.closer == "server") & ~cl.forged & (ctx.ns("close_ts") != _cols.NAT))
        server = (pd.Series(ctx.text("server_ip")[mine], dtype=object).astype(str) + ":" +
                  pd.Series(ctx.frames("server_port")[mine]).astype(str)).to_numpy()
        # per capture point: two points see one death twice, not twice as many closes
        point = ctx.text("capture")[mine] if "capture" in ctx.conns.columns else np.full(len(mine), "")
        codes, _ = pd.factorize(pd.Series(point, dtype=object).astype(str) + "|" + pd.Series(server, dtype=object))
        self.names = server[np.unique(codes, return_index=True)[1]]     # each group's server
        ts = ctx.ns("close_ts")[mine]
        order = np.lexsort((ts, codes))
        self.pos, self.code, self.ts = mine[order], codes[order], ts[order]
        self.code_of = dict(zip(self.pos.tolist(), self.code.tolist()))
        # each server's close rate over the capture's span, for the chance of a coincidence
        start, end = ctx.ns("start"), ctx.ns("end")
        span = max((int(end.max()) - int(start.min())) / 1e9, 1.0) if ctx.n else 1.0
        self.rate = np.bincount(codes, minlength=len(self.names)) / span if len(codes) else np.zeros(0)

    def together(self, pos: int) -> dict[str, Any] | None:
        """The other closes of ``pos``'s server within GROUP_WINDOW_S of its own, when chance
        does not explain them."""
        code = self.code_of.get(pos)
        if code is None:
            return None
        lo_c, hi_c = np.searchsorted(self.code, code, "left"), np.searchsorted(self.code, code, "right")
        ts = self.ts[lo_c:hi_c]
        t = int(self.ctx.ns("close_ts")[pos])
        w = int(GROUP_WINDOW_S * 1e9)
        lo, hi = np.searchsorted(ts, t - w, "left"), np.searchsorted(ts, t + w, "right")
        k = int(hi - lo) - 1
        if k < 1 or _poisson_tail(float(self.rate[code]) * 2 * GROUP_WINDOW_S, k) >= GROUP_P:
            return None
        members = self.pos[lo_c + lo:lo_c + hi]
        cids = sorted(int(c) for c in self.ctx.conn_id[members])
        return {"count": k + 1, "conn_ids": cids, "span_ms": (int(ts[hi - 1]) - int(ts[lo])) / 1e6,
                "server": str(self.names[code]), "first_ts": _cols.iso(int(ts[lo]))}


def _rst_cause(ev: dict[str, Any]) -> str:
    return ("an RST rather than a FIN: the server's application closed the socket with received data still "
            "unread (a kernel then resets instead of closing), set SO_LINGER 0, or its process died with the "
            "data unread")


def detect(ctx: Context) -> list[Finding]:
    cl = ctx.closes
    kinds = cl.kinds()
    found: list[Finding] = []
    groups: _ServerCloses | None = None
    for pos in np.flatnonzero(kinds != None).tolist():  # noqa: E711
        kind = kinds[pos]
        cid = int(ctx.conn_id[pos])
        ev, frames = base_evidence(ctx, pos)
        lo, _ = ctx.req_bounds(pos)
        waiting = [x for i, x in enumerate(ev["requests"]) if cl.req_outstanding[lo + i]]
        for w in waiting:
            frames += [w["first_frame"], w["request_last_frame"]]
        k = cl.cluster_of(pos)
        idle = ev["idle_s"]
        tcp = bool(cl.tcp_level[pos])
        client, server = ev["client"], ev["server"]
        head = (f"(a FIN the capture does not hold: the {'client' if ev['closer'] == 'server' else 'server'}'s "
                f"ACK of it is frame {ev['close_frame']})" if ev.get("close_by_ack")
                else f"({ev['close_kind']}, frame {ev['close_frame']})")
        req_index = waiting[0]["index"] if waiting else None
        if kind == "client_idle_timeout":
            assert k is not None
            ev.update(inferred_timeout_s=k.timer_s, measured_timeout_s=k.timeout_s, timeout_cluster_size=k.count,
                      timeout_cluster_min_s=k.min_s, timeout_cluster_max_s=k.max_s,
                      timeout_confidence=k.confidence, timeout_round_ms=k.round_ms,
                      same_pattern_conn_ids=list(k.conn_ids))
            same = (f"{k.count} connection{'s' if k.count != 1 else ''} closed the same way after "
                    f"{k.min_s:.3f}–{k.max_s:.3f} s: {k.describe()}") if k.count > 1 else \
                f"a single occurrence, consistent with {k.describe()} (low confidence)"
            summary = (f"client {client} closed the connection {head} {idle:.3f} s after the last byte while "
                       f"{_waiting_text(waiting, tcp)}; {same}")
            if tcp:
                summary += " (TCP-level verdict: the payload is not readable HTTP)"
        elif kind == "client_abort":
            summary = (f"client {client} closed the connection {head} {_idle_text(idle)} while "
                       f"{_waiting_text(waiting, tcp)}, with no timer pattern")
        elif kind == "server_abort":
            if k is not None:
                ev.update(inferred_timeout_s=k.timer_s, timeout_cluster_size=k.count)
            summary = (f"server {server} closed the connection {head} {_idle_text(idle)} while "
                       f"{_waiting_text(waiting, tcp)}")
            if groups is None:
                groups = _ServerCloses(ctx)
            grp = groups.together(pos)
            if grp is not None:
                # closed at one moment, not after one idle time: no timer to infer
                ev.pop("inferred_timeout_s", None)
                ev.pop("timeout_cluster_size", None)
                ev["closed_together"] = grp
                summary += (f"; {grp['count']} connections of this server were closed within "
                            f"{grp['span_ms']:.3f} ms of each other (conn {', '.join(map(str, grp['conn_ids'][:8]))}"
                            f"{' …' if grp['count'] > 8 else ''}): its process died or restarted, and the kernel "
                            f"closed every socket at once")
            if ev["close_kind"] == "RST":
                ev["cause"] = _rst_cause(ev)
                summary += f"; {ev['cause']}"
        elif kind == "client_idle_close":
            extra = ""
            if k is not None:
                ev.update(inferred_timeout_s=k.timer_s, measured_timeout_s=k.timeout_s, timeout_cluster_size=k.count,
                          timeout_cluster_min_s=k.min_s, timeout_cluster_max_s=k.max_s)
                if k.count > 1:
                    extra = (f"; {k.count} idle connections closed by the client after {k.min_s:.3f}–{k.max_s:.3f} s"
                             + (f" ({k.describe()})" if k.is_timer else ""))
                elif k.is_timer:
                    extra = f"; a round value, consistent with {k.describe()} (one close: low confidence)"
            what = "an idle connection" if tcp else "an idle keep-alive connection"
            summary = (f"client {client} closed {what} to {server} {head} after {idle:.3f} s with nothing "
                       f"outstanding: its pool retired the socket, nothing failed{extra}")
            req_index = None
        else:   # server_idle_close
            extra = ""
            if k is not None:
                ev.update(inferred_timeout_s=k.timer_s, timeout_cluster_size=k.count)
                if k.count > 1:
                    extra = (f"; {k.count} idle connections closed by the server after "
                             f"{k.min_s:.3f}–{k.max_s:.3f} s ({k.describe()})")
            summary = (f"server {server} closed an idle keep-alive connection from {client} {head} after "
                       f"{idle:.3f} s with nothing outstanding{extra}")
            req_index = None
        found.append(Finding(kind, _SEVERITY[kind], cid, req_index, summary, ev, stream_filter(cid, frames)))
    return found


_SEVERITY = {k.name: k.severity for k in KINDS}


def verdict(kind: str, rows: pd.DataFrame) -> str:
    """One paragraph on all findings of ``kind`` (rows of the findings table)."""
    n = rows["conn_id"].nunique()
    evs = rows["evidence"].tolist()
    ev = evs[0]
    if kind == "client_idle_timeout":
        first_index = rows.iloc[0]["request_index"]
        reqs = sorted({request_type(r["method"], r["uri"]) for e in evs for r in e.get("requests", [])
                       if r["index"] == first_index} - {"- ?"})
        lo = min(e["idle_s"] for e in evs)
        hi = max(e["idle_s"] for e in evs)
        level = " (TCP-level: payload not readable as HTTP)" if ev.get("level") == "tcp" else ""
        t = ev.get("inferred_timeout_s")
        return (f"The CLIENT destroyed {n} connection(s) after {lo:.3f}–{hi:.3f} s without a byte in either "
                f"direction while a request was waiting for its answer{level}. Inferred timer: "
                f"{t:g} s, measured {ev.get('measured_timeout_s'):.4f} s ({ev.get('timeout_confidence')} confidence, "
                f"{ev.get('timeout_cluster_size')} close(s)"
                f"{', a round number: a configured timeout' if ev.get('timeout_round_ms') else ''}). "
                f"The server never got the chance to answer" + (f" {', '.join(reqs)}" if reqs else "") + ".")
    if kind == "server_idle_close":
        # one keep-alive timeout per server: the timer of each server's commonest cluster
        per: dict[str, dict[float, int]] = {}
        for e in evs:
            if e.get("inferred_timeout_s") is not None and e.get("timeout_cluster_size", 0) > 1:
                t = per.setdefault(e["server"], {})
                t[e["inferred_timeout_s"]] = t.get(e["inferred_timeout_s"], 0) + 1
        timers = sorted(((srv, max(ts, key=ts.get), sum(ts.values())) for srv, ts in per.items()),
                        key=lambda x: -x[2])
        shown = "; ".join(f"{srv} after ≈ {t:g} s ({c})" for srv, t, c in timers[:5])
        more = f"; {len(timers) - 5} more server(s)" if len(timers) > 5 else ""
        return (f"The server closed {n} idle keep-alive connection(s) with nothing outstanding"
                + (f". Keep-alive timeouts: {shown}{more}." if timers else "."))
    if kind == "client_idle_close":
        timers = pd.Series([e["inferred_timeout_s"] for e in evs if e.get("inferred_timeout_s") is not None
                            and e.get("timeout_cluster_size", 0) > 1]).value_counts()
        shown = ", ".join(f"≈ {t:g} s ({c})" for t, c in timers.head(3).items())
        return (f"The client closed {n} idle keep-alive connection(s) with nothing outstanding: its pool retired "
                f"sockets it no longer needed" + (f"; idle timers: {shown}" if shown else "") + ". Nothing failed.")
    if kind == "client_abort":
        idle = np.array([np.nan if e.get("idle_s") is None else e["idle_s"] for e in evs], dtype=float)
        rst = sum(1 for e in evs if e.get("close_kind") == "RST")
        span = f" {np.nanmin(idle):.3f}–{np.nanmax(idle):.3f} s after the last byte" if (~np.isnan(idle)).any() else ""
        return (f"The client closed {n} connection(s){span} while a request was waiting ({rst} by RST), at "
                f"times that form no timer pattern: cancellations, not a timeout.")
    if kind == "server_abort":
        rst = sum(1 for e in evs if e.get("close_kind") == "RST")
        events = {(e["closed_together"]["server"], e["closed_together"]["first_ts"]): e["closed_together"]
                  for e in evs if e.get("closed_together")}
        died = "".join(f" {g['server']} closed {g['count']} connections within {g['span_ms']:.3f} ms at "
                       f"{pd.Timestamp(g['first_ts']).strftime('%H:%M:%S.%f')[:-3]}: its process died or restarted."
                       for g in list(events.values())[:3])
        return (f"The SERVER closed {n} connection(s) while a request was waiting for its answer ({rst} by RST): "
                f"the server (or something speaking for it) gave up on the request." + died)
    return f"{n} connection(s): see below."
