"""Two capture points of the same connections: which is which, their clocks, and what one
saw that the other did not.

Files that overlap in time are capture points, analysed apart (the ``capture`` column of
``connections``). When two points saw the same connection (same 4-tuple, starting at the
same moment once the points' usual lead is taken out), the pair tells what no single
capture can: an RST the client got that never passed the point beside the server was made
in between (a router, a firewall); a request beside the client that never reached the
point beside the server was dropped in between.

Clocks. For one request seen at both points A and B, let ``d1`` = its first byte's time at
B minus at A and ``d2`` = its answer's first byte at A minus at B. With the same delay each
way between the points, ``d1 = delay + offset`` and ``d2 = delay - offset``, so the one-way
delay is ``(d1 + d2) / 2`` and B's clock runs ``(d1 - d2) / 2`` ahead of A's. The medians
over every request answered at both points are reported. Which point is nearer the
clients is told by the hops (a router between them lowers the client's IP TTL at the far
point, the server's at the near one) and by the delay's sign when every sample agrees; when
they disagree, or neither tells, no point is called nearer and no finding claims what a
point did not see.

Column-wise: the matching is one as-of merge on the 4-tuple and the start time; only
findings that a second point can confirm are looked at one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sockscope.analysis import _cols
from sockscope.analysis.model import Context, Finding

_KEY = ["client_ip", "client_port", "server_ip", "server_port"]


@dataclass
class Points:
    """Two capture points matched connection by connection (positions in ``ctx`` order)."""

    names: tuple[str, str]              # (nearer the clients, nearer the servers) when known
    twin: np.ndarray                    # per connection: the position of the same connection at the other point, -1
    matched: int                        # connections seen at both points
    only: tuple[int, int]               # connections seen at one point only, per point
    offset_s: float | None              # the second point's clock minus the first's
    delay_s: float | None               # one-way delay between the points
    samples: int                        # requests answered at both points (what the clocks rest on)
    oriented: bool                      # names[0] is known to be the point nearer the clients
    point_of: np.ndarray = field(repr=False)   # per connection: 0 or 1 (index into names)
    # per matched connection and direction, packets that passed the sender's point but not
    # the other (lost in between) or the other way round (made in between): see between()
    between: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def copies(self) -> np.ndarray:
        """Per connection: the second copy of one seen at both points (its twin, at the
        first point, stands for the one death: one timer sample, one killed socket)."""
        return (self.twin >= 0) & (self.point_of == 1)

    def describe(self) -> str:
        """One line for the text faces."""
        a, b = self.names
        seen = f"{self.matched:,} connection(s) seen at both {a} and {b}"
        if self.only[0] or self.only[1]:
            seen += f" ({self.only[0]:,} only at {a}, {self.only[1]:,} only at {b})"
        where = f"{a} is nearer the clients" if self.oriented else "which point is nearer the clients is not known"
        if self.delay_s is None:
            return seen + f"; no request answered at both points, so nothing is said of their clocks; {where}"
        return (f"{seen}; {b}'s clock {_signed_ms(self.offset_s)} against {a}'s, one-way delay "
                f"{self.delay_s * 1e3:.3f} ms between them (from {self.samples} request(s) answered at both); "
                f"{where}" + self.describe_between())

    def describe_between(self) -> str:
        """What the path between the points did to packets, for the text faces ('' when nothing)."""
        b = self.between
        if b.empty:
            return ""
        out = []
        for col, verb in (("lost", "left the sender's point and never reached the other"),
                          ("made", "reached a point without passing the sender's")):
            for sure in (True, False):
                rows = b[(b[col] > 0) & (b["certain"] == sure)]
                if not len(rows):
                    continue
                dirs = ", ".join(f"{int(g[col].sum()):,} {d}" for d, g in rows.groupby("direction", sort=True))
                ids = ", ".join(str(int(i)) for i in rows["conn_id"].drop_duplicates().head(5))
                more = "" if rows["conn_id"].nunique() <= 5 else ", …"
                out.append(f"{dirs} packet(s) {verb} (conn {ids}{more})"
                           + ("" if sure else ", unless that capture had stopped (its last packet came "
                              "before them)"))
        return ("; between them: " + "; ".join(out)) if out else ""

    def as_facts(self) -> dict[str, Any]:
        b = self.between
        moved = b[(b["lost"] > 0) | (b["made"] > 0)] if not b.empty else b
        return {"points": list(self.names), "matched": self.matched, "only": list(self.only),
                "clock_offset_s": self.offset_s, "one_way_delay_s": self.delay_s, "samples": self.samples,
                "nearer_clients": self.names[0] if self.oriented else None,
                "lost_between": int(moved["lost"].sum()) if len(moved) else 0,
                "made_between": int(moved["made"].sum()) if len(moved) else 0,
                # rows: conn_id (nearer the clients), twin_conn_id, direction, sent_past (the
                # sender's point), at_sender, at_receiver, lost, made, certain
                "between": [{k: (bool(v) if isinstance(v, (bool, np.bool_)) else int(v)
                                 if isinstance(v, (int, np.integer)) else v) for k, v in r.items()}
                            for r in moved.head(50).to_dict("records")]}


def _signed_ms(v: float | None) -> str:
    return "?" if v is None else f"{v * 1e3:+.3f} ms"


def match(ctx: Context) -> Points | None:
    """The two capture points of ``ctx`` matched, or None (one point, or more than two)."""
    if not ctx.n or "capture" not in ctx.conns.columns:
        return None
    cap = ctx.text("capture")
    names = list(dict.fromkeys(cap.tolist()))
    if len(names) != 2 or any(n is None for n in names):
        return None
    conns = ctx.conns
    point = (cap == names[1]).astype(np.int64)
    key = pd.DataFrame({k: conns[k].astype(str).to_numpy() for k in _KEY})
    key["point"] = point
    key["start"] = ctx.ns("start")
    key["pos"] = np.arange(ctx.n)
    pairs = _pairs(key)
    twin = np.full(ctx.n, -1, dtype=np.int64)
    pa_, pb = pairs["pos_a"].to_numpy(dtype=np.int64), pairs["pos_b"].to_numpy(dtype=np.int64)
    twin[pa_], twin[pb] = pb, pa_
    offset, delay, samples, agree = _clocks(ctx, pa_, pb)
    # Which point is nearer the clients: told by the hops (a router between the points
    # lowers the client's TTL at the far point and the server's at the near one) and by the
    # delay's sign when every sample agrees; when the two disagree, or neither says, no
    # point is called nearer (and no finding claims what a point did not see).
    votes = [v for v in (_ttl_vote(ctx, pa_, pb), (1 if delay > 0 else -1) if delay and agree else 0) if v]
    oriented = bool(votes) and len(set(votes)) == 1
    if oriented and votes[0] < 0:       # the second point is the one nearer the clients
        names = names[::-1]
        point = 1 - point
        if delay is not None:
            offset, delay = -offset, -delay
    only = (int(((twin < 0) & (point == 0)).sum()), int(((twin < 0) & (point == 1)).sum()))
    near = pa_ if not oriented or votes[0] > 0 else pb      # positions at the point nearer the clients
    far = pb if near is pa_ else pa_
    moved = _between(ctx, near, far, point, (names[0], names[1]), offset) if oriented else pd.DataFrame()
    return Points((names[0], names[1]), twin, len(pairs), only, offset, delay, samples, oriented, point, moved)


def _between(ctx: Context, near: np.ndarray, far: np.ndarray, point: np.ndarray, names: tuple[str, str],
             offset_s: float | None) -> pd.DataFrame:
    """Per connection seen at both points, per direction: packets the sender's point saw
    that the other did not (``lost``: dropped in between), and the reverse (``made``: sent
    by something in between in the sender's name). The client's packets are counted at the
    point nearer the clients first, the server's at the other. A connection whose first
    packets one point lacks (its SYN at one point only) is not judged: that point started late. One whose last packet came
    after the other point's last packet of any connection is judged with ``certain`` False:
    the other point may have stopped capturing, which the files cannot tell (its silence is
    then no proof)."""
    if not len(near):
        return pd.DataFrame()
    start, end = ctx.ns("start"), ctx.ns("end")
    shift = int(round((offset_s or 0.0) * 1e9))
    span = []
    for k in (0, 1):
        m = point == k
        span.append((int(start[m].min()), int(end[m].max())))
    # the twin's times on the other point's clock (the second point runs `offset` ahead)
    # both points saw the connection begin the same way (its SYN at both, or neither): a
    # point that started capturing in its middle would lack its first packets
    roles = ctx.text("roles_from")
    inside = roles[near] == roles[far]
    near, far = near[inside], far[inside]
    certain = (end[near] + shift <= span[1][1]) & (end[far] - shift <= span[0][1])
    cp, sp = ctx.frames("client_pkts"), ctx.frames("server_pkts")
    out = pd.DataFrame({
        "conn_id": np.concatenate([ctx.conn_id[near], ctx.conn_id[near]]),
        "twin_conn_id": np.concatenate([ctx.conn_id[far], ctx.conn_id[far]]),
        "direction": np.array(["client→server"] * len(near) + ["server→client"] * len(near), dtype=object),
        "sent_past": np.array([names[0]] * len(near) + [names[1]] * len(near), dtype=object),
        "at_sender": np.concatenate([cp[near], sp[far]]),
        "at_receiver": np.concatenate([cp[far], sp[near]]),
    })
    diff = out["at_sender"] - out["at_receiver"]
    out["lost"] = diff.clip(lower=0)
    out["made"] = (-diff).clip(lower=0)
    out["certain"] = np.concatenate([certain, certain])
    return out


MATCH_WINDOW_NS = 1_000_000_000   # one connection's first packets at two points: this close, clocks aligned


def _pairs(key: pd.DataFrame) -> pd.DataFrame:
    """The same connections at the two points: on one 4-tuple, the connection whose start
    is nearest after the points' usual start difference (the median over the tuples with one
    connection at each point), within MATCH_WINDOW_NS; each connection in one pair at most.
    A point that began or ended later simply has fewer pairs (port reuse is not mistaken
    for a twin)."""
    a = key[key["point"] == 0]
    b = key[key["point"] == 1]
    if a.empty or b.empty:
        return pd.DataFrame(columns=["pos_a", "pos_b"])
    single = a.groupby(_KEY).size().eq(1).pipe(lambda m: m[m]).index.intersection(
        b.groupby(_KEY).size().eq(1).pipe(lambda m: m[m]).index)
    lead = 0
    if len(single):
        sa = a.set_index(_KEY).loc[single, "start"]
        sb = b.set_index(_KEY).loc[single, "start"]
        lead = int(np.median(sb.to_numpy(np.int64) - sa.to_numpy(np.int64)))
    b = b.assign(at=b["start"] - lead).sort_values("at", kind="stable")
    a = a.assign(at=a["start"]).sort_values("at", kind="stable")
    got = pd.merge_asof(a, b[[*_KEY, "at", "pos"]], on="at", by=_KEY, tolerance=MATCH_WINDOW_NS,
                        direction="nearest", suffixes=("_a", "_b"))
    got = got.dropna(subset=["pos_b"])
    got = got.assign(pos_b=got["pos_b"].astype(np.int64))
    # a connection of the second point claimed twice keeps its nearest
    got = got.merge(b[["pos", "at"]].rename(columns={"pos": "pos_b", "at": "at_b"}), on="pos_b")
    got = got.assign(gap=(got["at"] - got["at_b"]).abs()).sort_values(["gap", "pos_a"], kind="stable")
    got = got.drop_duplicates("pos_b")
    return got[["pos_a", "pos_b"]].sort_values("pos_a").reset_index(drop=True)


def _ttl_vote(ctx: Context, pa_: np.ndarray, pb: np.ndarray) -> int:
    """+1 when the first point is nearer the clients by the IP TTLs of the matched
    connections (the client's higher there, or the server's lower), -1 when the second is,
    0 when the TTLs do not tell (the same hop count, or no TTLs)."""
    if not len(pa_):
        return 0
    out = []
    for side, sign in (("client", 1), ("server", -1)):
        a = ctx.frames(f"{side}_ttl_max")[pa_].astype(np.float64)
        b = ctx.frames(f"{side}_ttl_max")[pb].astype(np.float64)
        ok = (a >= 0) & (b >= 0)
        if ok.any():
            d = float(np.median(a[ok] - b[ok]))
            if d:
                out.append(sign * (1 if d > 0 else -1))
    return out[0] if out and len(set(out)) == 1 else 0


def _clocks(ctx: Context, pa_: np.ndarray, pb: np.ndarray) -> tuple[float | None, float | None, int, bool]:
    """Offset and one-way delay from the requests answered at both points (medians), and
    whether every sample's delay has the median's sign."""
    if not len(pa_) or not len(ctx.reqs):
        return None, None, 0, False
    r = pd.DataFrame({"pos": ctx.req_pos, "index": ctx.reqs["index"].to_numpy(dtype=np.int64),
                      "req": ctx.req_ns("request_start"), "resp": ctx.req_ns("response_start")})
    r = r[(r["req"] != _cols.NAT) & (r["resp"] != _cols.NAT)]
    pair = pd.DataFrame({"pos_a": pa_, "pos_b": pb})
    ra = r.rename(columns={"pos": "pos_a"}).merge(pair, on="pos_a")
    both = ra.merge(r.rename(columns={"pos": "pos_b"}), on=["pos_b", "index"], suffixes=("_a", "_b"))
    if both.empty:
        return None, None, 0, False
    d1 = (both["req_b"].to_numpy(np.int64) - both["req_a"].to_numpy(np.int64)) / 1e9
    d2 = (both["resp_a"].to_numpy(np.int64) - both["resp_b"].to_numpy(np.int64)) / 1e9
    delays = (d1 + d2) / 2
    delay = float(np.median(delays))
    agree = bool(delay) and bool(np.all(np.sign(delays) == np.sign(delay)))
    return float(np.median((d1 - d2) / 2)), delay, len(both), agree


def _first_ids(ctx: Context) -> pd.Series:
    """Per capture point (by name): its first conn_id, where its file's ``tcp.stream`` 0 is."""
    return pd.Series(ctx.conn_id).groupby(pd.Series(ctx.text("capture"), dtype=object).astype(str)).min()


def stream_in_file(ctx: Context, conn_id: int) -> tuple[int, str | None]:
    """Connection ``conn_id``'s ``tcp.stream`` number in its own file, and that file's
    capture point (None for a single point: the number is the conn_id)."""
    if "capture" not in ctx.conns.columns:
        return int(conn_id), None
    name = str(ctx.text("capture")[int(np.flatnonzero(ctx.conn_id == conn_id)[0])])
    return int(conn_id) - int(_first_ids(ctx)[name]), name


def localize_filters(ctx: Context, found: list[Finding]) -> None:
    """Several capture points analysed apart: conn_ids run on from one point to the next,
    while Wireshark numbers ``tcp.stream`` in each file from 0. A finding on a connection of
    a later point gets its point's own stream number in its filter, and names the file the
    filter is for (``evidence.capture``)."""
    if not ctx.n or "capture" not in ctx.conns.columns or not found:
        return
    cap = ctx.text("capture")
    first = _first_ids(ctx)
    if len(first) < 2:
        return
    pos_of = pd.Index(ctx.conn_id).drop_duplicates()
    for f in found:
        if f.conn_id is None:
            continue
        name = str(cap[pos_of.get_loc(f.conn_id)])
        f.evidence.setdefault("capture", name)
        base = int(first[name])
        prefix = f"tcp.stream eq {int(f.conn_id)}"
        if base and f.display_filter.startswith(prefix) and (len(f.display_filter) == len(prefix)
                                                               or not f.display_filter[len(prefix)].isdigit()):
            f.display_filter = f"tcp.stream eq {int(f.conn_id) - base}" + f.display_filter[len(prefix):]


def annotate(ctx: Context, found: list[Finding]) -> Points | None:
    """Add what the other capture point saw to the findings it can confirm (in place):
    ``middlebox_rst`` (did the RST pass the point nearer its claimed sender?) and
    ``silent_drop`` (did the lost data reach the point nearer its receiver?). Both carry
    ``evidence.absent_from`` (the point that never saw it) and say so in their summary.
    Every finding of a connection seen at both points names its twin (``evidence.also_at``)."""
    pts = ctx.points
    if pts is None:
        return None
    pos_of = pd.Index(ctx.conn_id).drop_duplicates()
    # each point's last packet (of any connection): a point that saw nothing after an event
    # may have stopped capturing before it, and then its silence proves nothing
    seen = ctx.ns("end")
    last_at = [int(seen[pts.point_of == k].max()) if (pts.point_of == k).any() else _cols.NAT for k in (0, 1)]

    def unless_stopped(k: int, when_ns: int) -> str:
        """The proviso when point ``k``'s last packet came before ``when_ns`` (in the other
        point's clock; the offset between them applied when it is known)."""
        shift = int(round((pts.offset_s or 0.0) * 1e9)) * (1 if k == 1 else -1)
        if last_at[k] == _cols.NAT or when_ns == _cols.NAT or last_at[k] >= when_ns + shift:
            return ""
        return (f" (its last packet of any connection came {(when_ns + shift - last_at[k]) / 1e9:.3f} s before: "
                f"unless that capture had stopped, which the files cannot tell)")

    for f in found:
        if f.conn_id is None:
            continue
        pos = int(pos_of.get_loc(f.conn_id))
        twin = int(pts.twin[pos])
        if twin < 0:
            continue
        tk = int(pts.point_of[twin])
        there = pts.names[tk]
        f.evidence["also_at"] = {"capture": there, "conn_id": int(ctx.conn_id[twin]),
                                 "first_frame": _cols.frame(ctx.frames("first_frame")[twin]),
                                 "last_frame": _cols.frame(ctx.frames("last_frame")[twin]),
                                 "points": pts.as_facts()}
        if not pts.oriented:
            continue
        nearer_server = tk == 1
        if f.kind == "middlebox_rst":
            sender = f.evidence.get("claimed_from")
            toward_sender = nearer_server if sender == "server" else not nearer_server
            if toward_sender and _cols.frame(ctx.frames(f"{sender}_rst_frame")[twin]) is None:
                last = _cols.frame(ctx.frames("last_frame")[twin])
                f.evidence["absent_from"] = [there]
                proviso = unless_stopped(tk, int(ctx.ns("close_ts")[pos]))
                f.evidence["absence_certain"] = not proviso
                f.summary += (f"; {there}, nearer the {sender}, has this connection (conn {int(ctx.conn_id[twin])}, "
                              f"frames {_cols.frame(ctx.frames('first_frame')[twin])}–{last}) and no RST from the "
                              f"{sender} at all: the {sender} never sent it{proviso}")
        elif f.kind == "silent_drop":
            sender = f.evidence.get("sender")
            toward_receiver = nearer_server if sender == "client" else not nearer_server
            sent_here = int(ctx.conns[f"{sender}_bytes"].iat[pos])
            sent_there = int(ctx.conns[f"{sender}_bytes"].iat[twin])
            if toward_receiver and sent_there < sent_here:
                receiver = "server" if sender == "client" else "client"
                f.evidence["absent_from"] = [there]
                f.evidence["bytes_seen_there"] = sent_there
                proviso = unless_stopped(tk, int(ctx.ns(f"{sender}_unacked_since_ts")[pos]))
                f.evidence["absence_certain"] = not proviso
                f.summary += (f"; {there}, nearer the {receiver}, saw {sent_there:,} of the {sent_here:,} bytes the "
                              f"{sender} sent (conn {int(ctx.conn_id[twin])}, last frame "
                              f"{_cols.frame(ctx.frames('last_frame')[twin])}): the data never reached the "
                              f"{receiver}{proviso}")
    return pts
