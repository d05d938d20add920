"""Diagnosis: who closed each connection, after how much silence, with what outstanding.

Consumes the ``connections``, ``requests`` and ``gaps`` tables (nothing below them).
Produces :class:`Finding` objects and the ``findings`` table, plus inferred timeouts.

Theory of operation
-------------------
1. *Close attribution* (per connection): the first FIN/RST's side and kind, the silence
   before it (``idle_before_close_s``, from the tracker), and whether a request was
   outstanding: an HTTP request fully sent before the close whose response had not
   finished; for TLS/unknown payloads (no framing visible) the last payload came from the
   client -- a TCP-level verdict, said so in the evidence.
2. *Timeout inference*: closes by the same side, after >= ``MIN_TIMER_S`` of silence, with
   a request outstanding, are clustered by idle time (single linkage, gap <= max(20 ms,
   0.4 %)). A cluster is a timer: its value is the cluster's minimum (a timer fires at T
   after the last activity; scheduling only adds delay), with count, spread, min/max, and
   whether it is a round number of milliseconds. Nothing assumes 5 s.
3. *Findings*: the vocabulary of DESIGN.md; every finding carries frames and times and a
   Wireshark display filter that shows exactly the packets behind it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import pandas as pd

from sockscope import schema

MIN_TIMER_S = 0.5          # closes quicker than this after the last byte are not idle timers
CLUSTER_ABS_S = 0.020     # timers fire late by up to tens of ms on a busy host
CLUSTER_REL = 0.004


@dataclass(frozen=True, slots=True)
class TimeoutCluster:
    """A tight group of closes by one side after the same silence: a configured timer."""

    side: str                 # 'client' | 'server'
    outstanding: bool         # closes with a request waiting (a killer) or idle keep-alive closes
    timeout_s: float          # the inferred timer (cluster minimum)
    count: int
    min_s: float
    max_s: float
    spread_s: float
    round_ms: bool            # the value is a round number of milliseconds (e.g. 5000 ms)
    conn_ids: tuple[int, ...]
    configured_s: float | None = None   # the round value the timer was most likely set to

    @property
    def timer_s(self) -> float:
        """The configured value when one is evident, else the measured minimum."""
        return self.configured_s if self.configured_s is not None else self.timeout_s

    @property
    def confidence(self) -> str:
        return "high" if self.count >= 3 else ("medium" if self.count == 2 else "low")

    def describe(self) -> str:
        t = _fmt_timer(self.timer_s)
        what = "inactivity timeout" if self.outstanding else "keep-alive idle timeout"
        return f"a {self.side}-side {t} {what}"


@dataclass(slots=True)
class Finding:
    """One diagnosis with the evidence behind it."""

    kind: str
    severity: str
    conn_id: int | None
    request_index: int | None
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    display_filter: str = ""

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def _fmt_timer(t: float) -> str:
    ms = round(t * 1000)
    if ms % 1000 == 0:
        return f"{ms // 1000} s"
    if ms >= 1000:
        return f"{t:.3f} s"
    return f"{ms} ms"


def _round_timer(t: float) -> float | None:
    """The round setting (s) a timer measured at ``t`` most likely has, or None.

    Timers fire late, never early (event-loop and scheduler latency add a few ms), so the
    setting is at most the measured minimum, and close below it.
    """
    ms = t * 1000
    for unit in (1000, 500, 250, 100):
        r = (ms + 1.0) // unit * unit
        if r > 0 and ms - r <= max(20.0, 0.005 * r):
            return r / 1000
    return None


def _is_round(t: float) -> bool:
    return _round_timer(t) is not None


_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-fA-F-]{8,}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?!v\d+$)(?=[^/]*\d)[A-Za-z0-9_.~-]{4,})$")


def path_template(uri: str | None) -> str:
    """``/files/sess_8f3a1c2e9d?detail=full`` -> ``/files/{id}``: ids, numbers, uuids collapsed."""
    if uri is None or (isinstance(uri, float)) or uri is pd.NA:
        return "?"
    path = str(uri).split("?", 1)[0].split("#", 1)[0]
    if path.startswith("http://") or path.startswith("https://"):
        path = "/" + path.split("/", 3)[-1] if path.count("/") >= 3 else "/"
    segs = [("{id}" if seg and _ID_SEGMENT.match(seg) else seg) for seg in path.split("/")]
    return "/".join(segs) or "/"


def request_type(method: Any, uri: Any) -> str:
    m = "-" if method is None or method is pd.NA or (isinstance(method, float)) else str(method)
    return f"{m} {path_template(uri)}"


# -- close attribution --------------------------------------------------------------------

@dataclass(slots=True)
class CloseInfo:
    conn_id: int
    closer: str | None
    kind: str | None
    idle_s: float | None
    outstanding: list[int]          # request indexes waiting at the close
    level: str                      # 'http' | 'tcp'


def _na(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def close_attribution(connections: pd.DataFrame, requests: pd.DataFrame) -> dict[int, CloseInfo]:
    by_conn = {cid: grp for cid, grp in requests.groupby("conn_id", sort=False)} if len(requests) else {}
    out: dict[int, CloseInfo] = {}
    for c in connections.itertuples(index=False):
        closer = None if _na(c.closed_by) else str(c.closed_by)
        kind = None if _na(c.close_kind) else str(c.close_kind)
        idle = None if _na(c.idle_before_close_s) else float(c.idle_before_close_s)
        outstanding: list[int] = []
        level = "http"
        reqs = by_conn.get(c.conn_id)
        if closer is not None and reqs is not None and len(reqs):
            for r in reqs.itertuples(index=False):
                if r.outcome == "no_request" or _na(r.request_end):
                    continue
                if r.request_end <= c.close_ts and (_na(r.response_end) or r.response_end > c.close_ts):
                    outstanding.append(int(r.index))
        elif closer is not None and str(c.protocol) != "http":
            level = "tcp"
            # The client spoke last and then silence: something is awaited (TCP-level). Without
            # the silence it is no evidence: TLS peers trade encrypted close_notify alerts just
            # before the FIN, and an alert cannot be told from data.
            if not _na(c.last_payload_by) and str(c.last_payload_by) == "client" \
                    and idle is not None and idle >= MIN_TIMER_S:
                outstanding.append(0)
        out[int(c.conn_id)] = CloseInfo(int(c.conn_id), closer, kind, idle, outstanding, level)
    return out


def infer_timeouts(closes: Iterable[CloseInfo]) -> list[TimeoutCluster]:
    """Cluster idle-before-close values per (closer side, outstanding)."""
    groups: dict[tuple[str, bool], list[tuple[float, int]]] = {}
    for ci in closes:
        if ci.closer is None or ci.idle_s is None or ci.idle_s < MIN_TIMER_S:
            continue
        groups.setdefault((ci.closer, bool(ci.outstanding)), []).append((ci.idle_s, ci.conn_id))
    clusters: list[TimeoutCluster] = []
    for (side, outst), vals in groups.items():
        vals.sort()
        cur = [vals[0]]
        runs = []
        for v in vals[1:]:
            if v[0] - cur[-1][0] <= max(CLUSTER_ABS_S, CLUSTER_REL * v[0]):
                cur.append(v)
            else:
                runs.append(cur)
                cur = [v]
        runs.append(cur)
        for run in runs:
            xs = [x for x, _ in run]
            t = min(xs)
            clusters.append(TimeoutCluster(side, outst, t, len(run), min(xs), max(xs), max(xs) - min(xs),
                                           _is_round(t), tuple(sorted(cid for _, cid in run)),
                                           _round_timer(t)))
    clusters.sort(key=lambda k: (-k.count, k.side, k.timeout_s))
    return clusters


# -- findings -----------------------------------------------------------------------------

def _filter(conn_id: int, frames: Iterable[Any]) -> str:
    fs = sorted({int(f) for f in frames if not _na(f)})
    base = f"tcp.stream eq {conn_id}"
    return base if not fs else f"{base} && frame.number in {{{' '.join(map(str, fs))}}}"


def _ts(v: Any) -> str | None:
    return None if _na(v) else pd.Timestamp(v).isoformat()


def _hms(v: Any) -> str:
    return "-" if _na(v) else pd.Timestamp(v).strftime("%H:%M:%S.%f")[:-3]


def _req_chain(reqs: pd.DataFrame | None) -> list[dict[str, Any]]:
    if reqs is None:
        return []
    chain = []
    for r in reqs.itertuples(index=False):
        chain.append({
            "index": int(r.index), "method": None if _na(r.method) else str(r.method),
            "uri": None if _na(r.uri) else str(r.uri),
            "user_agent": None if _na(r.user_agent) else str(r.user_agent),
            "status": None if _na(r.status) else int(r.status), "outcome": str(r.outcome),
            "sent": _ts(r.request_start), "first_frame": None if _na(r.first_frame) else int(r.first_frame),
            "request_last_frame": (None if _na(getattr(r, "request_last_frame", None))
                                   else int(r.request_last_frame)),
        })
    return chain


def diagnose(cap: Any) -> list[Finding]:
    """All findings for a capture (an object with connections/requests/gaps tables)."""
    conns: pd.DataFrame = cap.connections
    reqs: pd.DataFrame = cap.requests
    closes = close_attribution(conns, reqs)
    clusters = infer_timeouts(closes.values())
    by_conn = {cid: grp for cid, grp in reqs.groupby("conn_id", sort=False)} if len(reqs) else {}
    cluster_of: dict[tuple[int, bool], TimeoutCluster] = {}
    for k in clusters:
        for cid in k.conn_ids:
            cluster_of[(cid, k.outstanding)] = k
    findings: list[Finding] = []
    for c in conns.itertuples(index=False):
        cid = int(c.conn_id)
        ci = closes[cid]
        r = by_conn.get(cid)
        chain = _req_chain(r)
        client = f"{c.client_ip}:{c.client_port}"
        server = f"{c.server_ip}:{c.server_port}"
        if ci.closer is not None:
            base_ev = {
                "closer": ci.closer, "close_kind": ci.kind, "close_frame": int(c.close_frame),
                "close_ts": _ts(c.close_ts), "idle_s": ci.idle_s,
                "last_payload_frame": None if _na(c.last_payload_frame) else int(c.last_payload_frame),
                "last_payload_ts": _ts(c.last_payload_ts),
                "last_payload_by": None if _na(c.last_payload_by) else str(c.last_payload_by),
                "level": ci.level, "client": client, "server": server, "requests": chain,
            }
            reaction = _reaction(c)
            base_ev["reaction"] = reaction
            frames = [c.close_frame, c.last_payload_frame, *reaction["frames"]]
            waiting = [x for x in chain if x["index"] in ci.outstanding]
            for w in waiting:
                frames.append(w["first_frame"])
                frames.append(w.get("request_last_frame"))
            if ci.outstanding:
                k = cluster_of.get((cid, True))
                idle_ok = ci.idle_s is not None and ci.idle_s >= MIN_TIMER_S
                timer = idle_ok and k is not None and (k.count >= 2 or k.round_ms)
                what = _waiting_text(waiting, ci)
                if ci.closer == "client" and timer:
                    assert k is not None
                    ev = dict(base_ev, inferred_timeout_s=k.timer_s, measured_timeout_s=k.timeout_s,
                              timeout_cluster_size=k.count,
                              timeout_cluster_min_s=k.min_s, timeout_cluster_max_s=k.max_s,
                              timeout_confidence=k.confidence, timeout_round_ms=k.round_ms,
                              same_pattern_conn_ids=list(k.conn_ids))
                    same = (f"{k.count} connection{'s' if k.count != 1 else ''} closed the same way after "
                            f"{k.min_s:.3f}–{k.max_s:.3f} s: {k.describe()}") if k.count > 1 else \
                        f"a single occurrence, consistent with {k.describe()} (low confidence)"
                    summary = (f"client {client} closed the connection ({ci.kind}, frame {int(c.close_frame)}) "
                               f"{ci.idle_s:.3f} s after the last byte while {what}; {same}")
                    if ci.level == "tcp":
                        summary += " (TCP-level verdict: the payload is not readable HTTP)"
                    findings.append(Finding("client_idle_timeout", "error", cid,
                                            waiting[0]["index"] if waiting else None, summary, ev,
                                            _filter(cid, frames)))
                elif ci.closer == "client":
                    findings.append(Finding(
                        "client_abort", "warning", cid, waiting[0]["index"] if waiting else None,
                        f"client {client} closed the connection ({ci.kind}, frame {int(c.close_frame)}) "
                        f"{_idle_text(ci.idle_s)} while {what}, with no timer pattern", base_ev,
                        _filter(cid, frames)))
                else:
                    ev = dict(base_ev)
                    if k is not None:
                        ev.update(inferred_timeout_s=k.timer_s, timeout_cluster_size=k.count)
                    findings.append(Finding(
                        "server_abort", "error", cid, waiting[0]["index"] if waiting else None,
                        f"server {server} closed the connection ({ci.kind}, frame {int(c.close_frame)}) "
                        f"{_idle_text(ci.idle_s)} while {what}", ev, _filter(cid, frames)))
            elif ci.closer == "server" and ci.idle_s is not None and ci.idle_s >= MIN_TIMER_S:
                k = cluster_of.get((cid, False))
                ev = dict(base_ev)
                extra = ""
                if k is not None:
                    ev.update(inferred_timeout_s=k.timer_s, timeout_cluster_size=k.count)
                    if k.count > 1:
                        extra = f"; {k.count} idle connections closed by the server after {k.min_s:.3f}–{k.max_s:.3f} s ({k.describe()})"
                findings.append(Finding(
                    "server_idle_close", "info", cid, None,
                    f"server {server} closed an idle keep-alive connection from {client} ({ci.kind}, frame "
                    f"{int(c.close_frame)}) after {ci.idle_s:.3f} s with nothing outstanding{extra}", ev,
                    _filter(cid, frames)))
        # data after the client's close
        if ci.closer == "client" and not _na(c.data_after_close_by) and str(c.data_after_close_by) == "server":
            rst = None if _na(c.client_rst_frame) else int(c.client_rst_frame)
            late_s = (c.data_after_close_ts - c.close_ts).total_seconds()
            ev = {"close_frame": int(c.close_frame), "close_ts": _ts(c.close_ts),
                  "late_data_frame": int(c.data_after_close_frame), "late_data_ts": _ts(c.data_after_close_ts),
                  "late_after_close_s": late_s, "late_bytes": int(c.data_after_close_bytes),
                  "client_rst_frame": rst, "client_rst_ts": _ts(c.client_rst_ts), "requests": chain}
            tail = f"; the client's kernel answered RST (frame {rst})" if rst is not None else ""
            answered = None
            if r is not None:
                late = r[(r["response_start"] >= c.close_ts) & (r["outcome"].astype(str) != "no_request")]
                if len(late):
                    answered = int(late.iloc[0]["index"])
                    ev["request_index"] = answered
            findings.append(Finding(
                "response_after_close", "warning", cid, answered,
                f"server {server} sent {int(c.data_after_close_bytes)} bytes (frame {int(c.data_after_close_frame)}) "
                f"{late_s:.3f} s after the client closed the connection (frame {int(c.close_frame)}): "
                f"the answer was dropped{tail}", ev,
                _filter(cid, [c.close_frame, c.data_after_close_frame, rst])))
        # a request sent on a connection the server had already closed (or was closing)
        if r is not None and not _na(c.server_fin_ts):
            for x in r.itertuples(index=False):
                if x.outcome in ("complete", "no_request") or _na(x.request_start):
                    continue
                if x.request_start >= c.server_fin_ts or \
                        (not _na(c.server_fin_ts) and (c.server_fin_ts - x.request_start).total_seconds() < 0.001
                         and _na(x.response_start)):
                    ev = {"request_index": int(x.index), "request_frame": int(x.first_frame),
                          "request_ts": _ts(x.request_start), "server_fin_frame": int(c.server_fin_frame),
                          "server_fin_ts": _ts(c.server_fin_ts), "requests": chain}
                    findings.append(Finding(
                        "stale_reuse", "error", cid, int(x.index),
                        f"client {client} sent {x.method} {x.uri} (frame {int(x.first_frame)}) on a connection "
                        f"the server had already closed (server FIN, frame {int(c.server_fin_frame)}): the request failed",
                        ev, _filter(cid, [x.first_frame, c.server_fin_frame])))
                    break
        # reuse by different clients on one socket
        if r is not None and len(r) >= 2:
            uas = [u for u in r["user_agent"].dropna().astype(str).tolist()]
            distinct = list(dict.fromkeys(uas))
            if len(distinct) >= 2:
                steps = " → ".join(f"{x['method']} {x['uri']} ({x['user_agent']})" for x in chain if x["method"])
                findings.append(Finding(
                    "connection_reuse", "info", cid, None,
                    f"{len(chain)} requests from {len(distinct)} different clients reused one socket "
                    f"({client}): {steps}", {"client": client, "user_agents": distinct, "requests": chain},
                    _filter(cid, [x["first_frame"] for x in chain])))
    return findings


def _reaction(c: Any) -> dict[str, Any]:
    """What the other side did after the close."""
    other = "server" if str(c.closed_by) == "client" else "client"
    out: dict[str, Any] = {"frames": []}
    for kind in ("fin", "rst"):
        fr = getattr(c, f"{other}_{kind}_frame")
        ts = getattr(c, f"{other}_{kind}_ts")
        if not _na(fr):
            out[f"{other}_{kind}_frame"] = int(fr)
            out[f"{other}_{kind}_after_s"] = (ts - c.close_ts).total_seconds()
            out["frames"].append(int(fr))
    if not _na(c.data_after_close_frame):
        out["data_after_close_frame"] = int(c.data_after_close_frame)
        out["data_after_close_by"] = str(c.data_after_close_by)
        out["frames"].append(int(c.data_after_close_frame))
    closer_rst = getattr(c, f"{c.closed_by}_rst_frame")
    if str(c.close_kind) == "FIN" and not _na(closer_rst):
        out[f"{c.closed_by}_rst_frame"] = int(closer_rst)
        out["frames"].append(int(closer_rst))
    return out


def _idle_text(idle: float | None) -> str:
    return "with no payload before it" if idle is None else f"{idle:.3f} s after the last byte"


def _waiting_text(waiting: list[dict[str, Any]], ci: CloseInfo) -> str:
    if ci.level == "tcp":
        return "the client's last data had no answer"
    if not waiting:
        return "a request was outstanding"
    w = waiting[0]
    more = f" (and {len(waiting) - 1} more)" if len(waiting) > 1 else ""
    return (f"{w['method']} {w['uri']} (request {w['index']}, sent {_hms(w['sent'])}) had no "
            f"{'complete ' if w['outcome'] == 'partial_response' else ''}response{more}")


def ua_family(ua: Any) -> str | None:
    """``axios/1.13.2`` -> ``axios/1.x``; ``node-fetch/1.0 (+https://...)`` -> ``node-fetch/1.x``."""
    if _na(ua):
        return None
    m = re.match(r"\s*([A-Za-z][\w.+-]*)(?:/(\d+))?", str(ua))
    if not m:
        return str(ua)[:40]
    return f"{m.group(1)}/{m.group(2)}.x" if m.group(2) else m.group(1)


def _socket_features(reqs: pd.DataFrame, upto_index: int, conn: Any, at: Any) -> dict[str, str]:
    """What a socket had been through before request `upto_index` (the long one)."""
    feats: dict[str, str] = {}
    earlier = reqs[reqs["index"] < upto_index]
    if len(earlier):
        first = earlier.iloc[0]
        fam = ua_family(first["user_agent"])
        feats["first request"] = request_type(first["method"], first["uri"]) + (f" from {fam}" if fam else "")
        for r in earlier.itertuples(index=False):
            fam = ua_family(r.user_agent)
            feats[f"earlier {request_type(r.method, r.uri)}" + (f" from {fam}" if fam else "")] = "yes"
        feats["reused socket"] = "yes"
    else:
        feats["fresh socket"] = "yes"
    if not _na(at):
        age = (at - conn.start).total_seconds()
        feats["socket age"] = ">= 1 s" if age >= 1 else "< 1 s"
    return feats


def root_cause_hints(cap: Any, findings: list[Finding]) -> list[Finding]:
    """Compare the sockets a client timer killed with long requests that survived.

    A feature shared by every killed socket and by no survivor is the likely cause (in the
    incident: an earlier axios GET /files on the same socket left a timer behind).
    """
    killed = [f for f in findings if f.kind == "client_idle_timeout" and f.request_index is not None]
    if not killed:
        return []
    reqs = cap.requests
    conns = cap.connections.set_index("conn_id")
    timer = min(f.evidence.get("inferred_timeout_s") or f.evidence["idle_s"] for f in killed)
    by_conn = {cid: grp for cid, grp in reqs.groupby("conn_id", sort=False)}
    k_feats = []
    for f in killed:
        r = by_conn[f.conn_id]
        row = r[r["index"] == f.request_index].iloc[0]
        k_feats.append(_socket_features(r, f.request_index, conns.loc[f.conn_id], row["request_start"]))
    # survivors: requests that waited at least as long as the timer for their answer, and got it
    long_ok = reqs[(reqs["outcome"].astype(str) == "complete") & (reqs["ttfb_s"] >= timer)]
    s_feats = []
    for r in long_ok.itertuples(index=False):
        s_feats.append(_socket_features(by_conn[r.conn_id], int(r.index), conns.loc[r.conn_id], r.request_start))
    scores = []
    keys = {(k, v) for fs in k_feats for k, v in fs.items()}
    for k, v in keys:
        nk = sum(1 for fs in k_feats if fs.get(k) == v)
        ns = sum(1 for fs in s_feats if fs.get(k) == v)
        score = nk / len(k_feats) - (ns / len(s_feats) if s_feats else 0)
        scores.append((score, nk, ns, k, v))
    def specificity(key: str) -> int:
        # among equally good features, name the request that poisoned the socket first
        for i, prefix in enumerate(("first request", "earlier ", "reused", "fresh", "socket age")):
            if key.startswith(prefix):
                return i
        return 9

    scores.sort(key=lambda x: (-x[0], -x[1], specificity(x[3]), x[3]))
    if not scores or scores[0][0] <= 0:
        return []
    best = scores[0]
    _, nk, ns, k, v = best
    if k == "first request":
        label = f"first carried {v}"
    elif k.startswith("earlier "):
        label = "carried " + k[len("earlier "):]
    elif k == "reused socket":
        label = "been reused"
    elif k == "socket age":
        label = f"been open {v}"
    else:
        label = k
    nkill, nsurv = len(k_feats), len(s_feats)
    if nsurv:
        tail = (f"none of the {nsurv} request(s) that waited {timer:g} s or longer and survived ran on such a socket"
                if ns == 0 else f"{ns} of the {nsurv} surviving long request(s) did")
    else:
        tail = "no request in this capture waited that long and survived, so there is nothing to contrast with"
    summary = (f"{'all' if nk == nkill else nk} of {nkill} killed socket(s) had {label} before the request "
               f"that died; {tail}")
    ranked = [{"feature": (kk if vv == "yes" else f"{kk} {vv}"), "killed": a, "survivors": b, "score": round(sc, 3)}
              for sc, a, b, kk, vv in scores[:6]]
    ev = {"killed_conn_ids": [f.conn_id for f in killed], "survivor_requests": int(nsurv),
          "timer_s": timer, "ranked_features": ranked}
    return [Finding("root_cause_hint", "info", None, None, summary, ev,
                    "tcp.stream in {" + " ".join(str(f.conn_id) for f in killed) + "}")]


def heartbeats(cap: Any) -> list[Finding]:
    """Responses kept alive by small periodic writes (a defence against idle timers)."""
    out: list[Finding] = []
    gaps = cap.gaps
    if gaps.empty or cap.requests.empty:
        return out
    for r in cap.requests.itertuples(index=False):
        if _na(r.response_start) or _na(r.response_end):
            continue
        span = (r.response_end - r.response_start).total_seconds()
        if span < 2 * cap.min_gap_s:
            continue
        g = gaps[(gaps["conn_id"] == r.conn_id) & (gaps["start"] >= r.response_start)
                 & (gaps["end"] <= r.response_end) & (gaps["ended_by"].astype(str) == "server_data")]
        if len(g) < 2:
            continue
        d = g["duration_s"].to_numpy()
        med = float(pd.Series(d).median())
        if (d.max() - d.min()) > 0.25 * med:
            continue
        out.append(Finding(
            "heartbeat", "info", int(r.conn_id), int(r.index),
            f"the server kept {r.method} {r.uri} alive with {len(g)} small writes about every {med:.2f} s over "
            f"{span:.1f} s: client idle timers longer than {med:.2f} s cannot fire during it",
            {"interval_s": med, "writes": int(len(g)), "response_span_s": span,
             "gap_frames": [int(x) for x in g["end_frame"].dropna()]},
            _filter(int(r.conn_id), [x for x in g["end_frame"].dropna()])))
    return out


def findings_table(cap: Any) -> pd.DataFrame:
    found = diagnose(cap)
    found += root_cause_hints(cap, found)
    found += heartbeats(cap)
    return schema.frame_from_records([f.as_row() for f in found], schema.FINDING_COLUMNS)


__all__ = ["heartbeats", "root_cause_hints", "ua_family", "Finding", "TimeoutCluster", "CloseInfo", "close_attribution", "diagnose", "findings_table",
           "infer_timeouts", "path_template", "request_type"]
