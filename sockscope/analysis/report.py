"""A bounded account of a diagnosis, for text faces and reports.

A capture with thousands of findings cannot be read finding by finding. This module groups
findings by kind (registry order, counts), picks a few telling examples per kind and lists
a connection's story as timed events. The faces only lay these out.

Examples are chosen for coverage: findings of a kind are grouped by *pattern* (the request
type that was waiting and how the connection was closed); patterns are visited largest
first, one example each, round after round, the earliest connection of a pattern first. So
three examples of 700 client aborts show the three commonest ways they happened, not three
copies of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.detectors import KINDS
from sockscope.analysis.model import Context
from sockscope.analysis.text import request_type, seconds

@dataclass(frozen=True, slots=True)
class KindGroup:
    """All findings of one kind: how many, on how many connections, and the examples."""

    kind: str
    severity: str
    title: str
    advice: str
    findings: int
    connections: int
    rows: pd.DataFrame            # the findings of this kind (table rows)
    examples: list[int]           # conn_ids, most telling first
    patterns: dict[str, int]      # pattern -> findings, largest first
    deaths: int = 0               # connections, one seen at two capture points counted once


def pattern(ev: dict[str, Any], request_index: Any) -> str:
    """What a finding's connection was doing: the waiting request's type and the close."""
    what = "-"
    if not _cols.na(request_index):
        for r in ev.get("requests", ()):
            if r.get("index") == request_index:
                what = request_type(r.get("method"), r.get("uri"))
                break
    elif ev.get("level") == "tcp":
        what = "TCP payload"
    close = " ".join(str(x) for x in (ev.get("closer"), ev.get("close_kind")) if x)
    return f"{what}, {close}" if close else what


def _pick(conn_ids: list[int], keys: list[str], n: int) -> tuple[list[int], dict[str, int]]:
    by: dict[str, list[int]] = {}
    for cid, k in zip(conn_ids, keys):
        by.setdefault(k, []).append(cid)
    order = sorted(by, key=lambda k: (-len(by[k]), k))
    picked: list[int] = []
    seen: set[int] = set()
    depth = 0
    while len(picked) < n and any(depth < len(by[k]) for k in order):
        for k in order:
            if depth < len(by[k]) and len(picked) < n and by[k][depth] not in seen:
                picked.append(by[k][depth])
                seen.add(by[k][depth])
        depth += 1
    return picked, {k: len(by[k]) for k in order}


def twins_of(connections: pd.DataFrame) -> dict[int, int]:
    """conn_id -> the same connection's conn_id at the other capture point (none: empty)."""
    if "twin_conn_id" not in connections.columns:
        return {}
    t = connections[["conn_id", "twin_conn_id"]].dropna()
    return dict(zip(t["conn_id"].astype(int).tolist(), t["twin_conn_id"].astype(int).tolist()))


def deaths(conn_ids: Any, twins: dict[int, int]) -> int:
    """How many connections ``conn_ids`` are, one seen at two capture points counted once."""
    return len({min(c, twins.get(c, c)) for c in (int(x) for x in conn_ids)})


def group(findings: pd.DataFrame, examples: int = 3, twins: dict[int, int] | None = None) -> list[KindGroup]:
    """Findings grouped by kind in registry order (unknown kinds last), with examples;
    ``twins`` (:func:`twins_of`) counts a connection seen at two capture points once."""
    if findings.empty:
        return []
    kinds = findings["kind"].astype(str).to_numpy()
    order = {k: i for i, k in enumerate(KINDS)}
    out = []
    for kind in sorted(set(kinds.tolist()), key=lambda k: (order.get(k, len(order)), k)):
        rows = findings[kinds == kind]
        meta = KINDS.get(kind)
        with_conn = rows[rows["conn_id"].notna()]
        cids = [int(c) for c in with_conn["conn_id"]]
        keys = [pattern(e, i) for e, i in zip(with_conn["evidence"], with_conn["request_index"])]
        picked, pats = _pick(cids, keys, examples)
        out.append(KindGroup(kind, meta.severity if meta else str(rows["severity"].iloc[0]),
                             meta.title if meta else kind, meta.advice if meta else "", len(rows),
                             len(set(cids)), rows, picked, pats, deaths(cids, twins or {})))
    return out


@dataclass(frozen=True, slots=True)
class Event:
    ts_ns: int
    text: str


def connection_events(ctx: Context, conn_id: int) -> list[Event]:
    """The timed story of one connection: requests, answers, the silence, closes, late data."""
    hit = np.flatnonzero(ctx.conn_id == conn_id)
    if not len(hit):
        return []
    pos = int(hit[0])
    ev: list[Event] = []
    state = ctx.text("state")[pos]
    if state in ("S0", "REJ") and ctx.text("roles_from")[pos] == "syn":
        # a connection that never got going: its SYNs are the story
        syns = int(ctx.conns["client_pkts"].iat[pos])
        ev.append(Event(int(ctx.ns("start")[pos]), f"→ SYN (frame {int(ctx.frames('first_frame')[pos])})"))
        if syns > 1:
            ev.append(Event(int(ctx.ns("end")[pos]), f"→ SYN again: {syns} in all, the last in frame "
                                                     f"{int(ctx.frames('last_frame')[pos])}; no answer"))
    lo, hi = ctx.req_bounds(pos)
    if hi > lo:
        idx = ctx.reqs["index"].to_numpy()
        method, uri, ua = ctx.req_text("method"), ctx.req_text("uri"), ctx.req_text("user_agent")
        start, rstart = ctx.req_ns("request_start"), ctx.req_ns("response_start")
        status, reason = ctx.req_frames("status"), ctx.req_text("reason")
        first = ctx.req_frames("first_frame")
        ttfb = ctx.reqs["ttfb_s"].to_numpy(dtype=np.float64, na_value=np.nan)
        for i in range(lo, hi):
            agent = "" if ua[i] is None else f" [{ua[i]}]"
            if start[i] != _cols.NAT:
                ev.append(Event(int(start[i]), f"→ request {idx[i]}: {method[i]} {uri[i]}{agent} "
                                               f"(frame {_cols.frame(first[i])})"))
            if rstart[i] != _cols.NAT:
                t = "-" if np.isnan(ttfb[i]) else seconds(float(ttfb[i]))
                code = "" if status[i] == _cols.NO_FRAME else str(int(status[i]))
                ev.append(Event(int(rstart[i]), f"← {code} {reason[i] or ''} for request {idx[i]} (ttfb {t})"))
    lp = ctx.ns("last_payload_ts")[pos]
    if lp != _cols.NAT:
        ev.append(Event(int(lp), f"  last byte on the socket (frame {_cols.frame(ctx.frames('last_payload_frame')[pos])}, "
                                 f"{ctx.text('last_payload_by')[pos]}) — silence begins"))
    close_ns, close_fr = ctx.ns("close_ts")[pos], ctx.frames("close_frame")[pos]
    if close_ns != _cols.NAT:
        idle = ctx.closes.idle_s[pos]
        silence = "" if np.isnan(idle) else f" after {seconds(float(idle))} of silence"
        closer = ctx.text("closed_by")[pos]
        crossed = np.flatnonzero(ctx.closes.req_crossed[lo:hi]) if hi > lo else ()
        if len(crossed):
            # the server's silence ended at the exchange before the request it never had
            nums = [str(ctx.reqs['index'].iat[lo + int(k)]) for k in crossed]
            which = (f"request {nums[0]}, which" if len(nums) == 1
                     else f"requests {', '.join(nums[:-1])} and {nums[-1]}, which")
            silence = f" after {seconds(float(idle))} idle: it does not acknowledge {which} crossed it on the wire"
        if ctx.closes.forged[pos]:
            lo, hi = int(ctx.frames(f"{closer}_ttl_min")[pos]), int(ctx.frames(f"{closer}_ttl_max")[pos])
            own = f"{lo}" if lo == hi else f"{lo}–{hi}"
            ev.append(Event(int(close_ns), f"✖ RST in the {closer}'s name (frame {_cols.frame(close_fr)}){silence}, "
                                           f"NOT sent by the {closer}: TTL {int(ctx.frames(f'{closer}_rst_ttl')[pos])}, "
                                           f"the {closer}'s own packets TTL {own}"))
        elif ctx.flag("close_by_ack")[pos]:
            other = "client" if closer == "server" else "server"
            ev.append(Event(int(close_ns), f"✖ {closer} sent a FIN this capture does not hold: the {other}'s ACK "
                                           f"(frame {_cols.frame(close_fr)}) acknowledges it{silence}"))
        else:
            ev.append(Event(int(close_ns), f"✖ {closer} sends {ctx.text('close_kind')[pos]} "
                                           f"(frame {_cols.frame(close_fr)}){silence}"))
    for side in ("client", "server"):
        for kind in ("fin", "rst"):
            fr = ctx.frames(f"{side}_{kind}_frame")[pos]
            if fr != _cols.NO_FRAME and fr != close_fr:
                ev.append(Event(int(ctx.ns(f"{side}_{kind}_ts")[pos]), f"  {side} {kind.upper()} (frame {fr})"))
    late = ctx.frames("data_after_close_frame")[pos]
    if late != _cols.NO_FRAME:
        ev.append(Event(int(ctx.ns("data_after_close_ts")[pos]),
                        f"  {ctx.text('data_after_close_by')[pos]} sends "
                        f"{int(ctx.conns['data_after_close_bytes'].iat[pos])} bytes after the close (frame {late})"))
    ev.sort(key=lambda e: e.ts_ns)
    return ev


_SEVERITY_RANK = {"error": 3, "warning": 2, "info": 1}
_IDLE_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, slots=True)
class ConnGroup:
    """Connections that went the same way: what they did, how they ended, how many."""

    title: str                    # "GET → 200, server FIN after the 2 s timer"
    lead_kind: str | None         # the error/warning finding kind they share, if any
    severity: str                 # the worst severity among their findings ('' for none)
    count: int


@dataclass(frozen=True, slots=True)
class ConnPatterns:
    """Every connection (``ctx`` table order) placed in a :class:`ConnGroup`."""

    group: np.ndarray             # int per connection: index into groups
    groups: list[ConnGroup]       # worst severity first, then largest first
    severity: np.ndarray          # int per connection: 3 error, 2 warning, 1 info, 0 none


def _idle_phrase(idle: float) -> str:
    if idle != idle:
        return ""
    if idle < _IDLE_BUCKETS[0]:
        return " at once"
    for lo, hi in zip(_IDLE_BUCKETS, _IDLE_BUCKETS[1:]):
        if idle < hi:
            return f" after {lo:g}–{hi:g} s idle"
    return f" after ≥ {_IDLE_BUCKETS[-1]:g} s idle"


def rank_in_groups(group: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each row's position within its group, counted along ``order`` (a permutation that
    sorts by group first, e.g. ``np.lexsort((..., group))``)."""
    n = len(group)
    rank = np.zeros(n, dtype=np.int64)
    if n:
        g_sorted = group[order]
        first = np.r_[0, np.flatnonzero(np.diff(g_sorted)) + 1]
        rank[order] = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
    return rank


def connection_patterns(ctx: Context, findings: pd.DataFrame) -> ConnPatterns:
    """Group the connections of ``ctx`` by what they did and how they ended.

    A connection's pattern is the error/warning finding kind it carries (the worst, in
    registry order), the method and answer of its last request (``GET → 200``; paths would
    split a load test into hundreds of groups, and the findings name them anyway) or
    its TCP fate (no answer to the SYN, refused), and its close: who, FIN or RST, after how
    much silence -- the timer's value when the close belongs to an inferred timer, else a
    coarse bucket. Decided per distinct value, never per row: 34k connections of a load
    test fall into a few dozen groups a person can read.
    """
    n = ctx.n
    sev = np.zeros(n, dtype=np.int64)
    lead = np.full(n, None, dtype=object)
    if n and not findings.empty:
        f = findings[findings["conn_id"].notna()]
        order = {k: i for i, k in enumerate(KINDS)}
        pos = pd.Index(ctx.conn_id).drop_duplicates().get_indexer(f["conn_id"].astype("int64").to_numpy())
        fs = f["severity"].astype(str).map(_SEVERITY_RANK).fillna(0).to_numpy(dtype=np.int64)
        kinds = f["kind"].astype(str)
        fk = kinds.to_numpy()
        rank = kinds.map(order).fillna(len(order)).to_numpy(dtype=np.int64)
        ok = pos >= 0
        pos, fs, fk, rank = pos[ok], fs[ok], fk[ok], rank[ok]
        np.maximum.at(sev, pos, fs)
        # the lead kind: worst severity first, then registry order; last write wins, so sort
        # so that the winner of each connection comes last
        o = np.lexsort((-rank, fs))
        warn = fs[o] >= 2
        lead[pos[o][warn]] = fk[o][warn]
    what = np.full(n, "no HTTP request", dtype=object)
    if len(ctx.reqs):
        last = ctx._req_hi - 1
        has = ctx.req_count > 0
        li = last[has]
        method = ctx.req_text("method")
        status, outcome = ctx.req_frames("status"), ctx.req_text("outcome")
        pairs = pd.DataFrame({"m": method[li], "s": status[li], "o": outcome[li]})
        codes, uniq = pd.factorize(pd.MultiIndex.from_frame(pairs.astype(object).fillna("")))
        names = []
        for m, s_, o in uniq:
            t = m or "-"
            answer = f"→ {int(s_)}" if s_ not in ("", _cols.NO_FRAME) and o == "complete" else "→ " + (str(o) or "no response").replace("_", " ")
            names.append(f"{t} {answer}")
        what[has] = np.array(names, dtype=object)[codes]
    state = ctx.text("state")
    proto = ctx.text("protocol")
    tcp = ctx.req_count == 0
    what[tcp & (proto == "tls")] = "TLS"
    what[tcp & (state == "S0")] = "SYN with no answer"
    what[tcp & (state == "REJ")] = "SYN refused (RST)"
    cl = ctx.closes
    # per cluster its timer phrase ('' for none), the last slot for "no cluster" (index -1)
    timer_of = np.array([f" after the {seconds(c.timer_s) if c.timer_s < 1 else f'{c.timer_s:g} s'} timer"
                         if c.is_timer else "" for c in cl.clusters] + [""], dtype=object)
    # per idle bucket its phrase: below the first bound, between two, above the last; NaN: ''
    idle_of = np.array([_idle_phrase(b) for b in (0.0, *_IDLE_BUCKETS)] + [""], dtype=object)
    idle = np.round(cl.idle_s, 1) if n else np.zeros(0)
    bucket = np.where(np.isnan(idle), len(idle_of) - 1, np.searchsorted(_IDLE_BUCKETS, idle, side="right"))
    how = np.full(n, "open at capture end", dtype=object)
    keys = pd.DataFrame({"closer": cl.closer, "kind": cl.kind, "forged": cl.forged, "idle": idle_of[bucket],
                         "timer": timer_of[cl.cluster]}).astype(object)
    closed = cl.closer != None  # noqa: E711
    for (closer, kind, forged, idle, timer), rows in keys[closed].groupby(list(keys.columns), sort=False).groups.items():
        who = f"RST in the {closer}'s name (forged)" if forged else f"{closer} {kind}"
        how[np.asarray(rows)] = who + (timer or idle)
    key = pd.DataFrame({"lead": lead, "what": what, "how": how}).astype(object).fillna("")
    codes, uniq = pd.factorize(pd.MultiIndex.from_frame(key))
    count = np.bincount(codes, minlength=len(uniq)) if n else np.zeros(0, np.int64)
    gsev = np.zeros(len(uniq), dtype=np.int64)
    if n:
        np.maximum.at(gsev, codes, sev)
    order = sorted(range(len(uniq)), key=lambda g: (-gsev[g], -count[g], uniq[g]))
    remap = np.empty(len(uniq), dtype=np.int64)
    remap[order] = np.arange(len(uniq))
    names = {v: k for k, v in _SEVERITY_RANK.items()}
    groups = [ConnGroup(f"{uniq[g][1]}, {uniq[g][2]}", uniq[g][0] or None, names.get(int(gsev[g]), ""),
                        int(count[g])) for g in order]
    return ConnPatterns(remap[codes] if n else np.zeros(0, np.int64), groups, sev)


__all__ = ["ConnGroup", "ConnPatterns", "Event", "KindGroup", "connection_events", "connection_patterns", "group",
           "pattern", "rank_in_groups"]
