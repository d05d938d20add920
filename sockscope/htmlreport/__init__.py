"""The incident report: one self-contained HTML file that shows the verdict and its proof.

Consumes an analysed :class:`~sockscope.api.Capture` (its tables, its diagnosis) and, when
given, aligned application log lines. Produces one HTML document with everything inline:
the page (``page.html``), its style (``report.css``), its script (``report.js``, plain
canvas drawing, no library) and the data as one JSON block. It makes no network request
when opened (a Content-Security-Policy forbids every fetch), so it works from ``file://``
and as an attachment to a ticket.

What the page holds, top to bottom: the verdict (findings by kind, inferred timers, per kind
the verdict paragraph, what to do and the commonest patterns -- the same text ``diagnose``
prints, from :mod:`sockscope.analysis.report`); an interactive timeline with one lane per
connection, connections grouped by pattern (:func:`~sockscope.analysis.report.connection_patterns`),
the groups with findings expanded and the healthy ones collapsed; and the capture's facts.

Size is bounded whatever the capture: every connection has a lane (start, end, close,
silence, a few integers), but the details behind a click -- the request chain, the timed
story, the findings with their evidence frames and Wireshark filters -- are embedded for
every connection with an error or warning finding (up to :data:`MAX_DETAILED`, then as many
from each pattern) and for the first :data:`DETAIL_PER_GROUP` connections of every pattern.
A connection without details says so and names the command that tells its story. Every
finding is counted in the verdict whatever is embedded. The 1M-packet bench captures
(27,692 and 34,670 connections) make files of 2-4 MB.
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from sockscope.api import Capture

MAX_DETAILED = 3_000        # connections with error/warning findings whose details are embedded
DETAIL_PER_GROUP = 10        # connections of a group without findings whose details are embedded
MAX_EVENTS = 30              # story lines kept per connection (first and last ones)
MAX_LOG_LINES = 20_000       # log markers embedded in all

_NAT = np.iinfo(np.int64).min


@dataclass
class Report:
    """A rendered report: ``html`` is the whole self-contained page.

    ``save(path)`` writes it; in Jupyter the object displays the page inline (in an
    isolated frame, so its script and style cannot touch the notebook's).
    """

    html: str
    title: str

    def save(self, path: str | os.PathLike) -> str:
        """Write the page to ``path`` (UTF-8) and return the path."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.html)
        return os.fspath(path)

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" title="{html.escape(self.title)}" '
                'style="width:100%;height:820px;border:1px solid #ccc" sandbox="allow-scripts"></iframe>')

    def __len__(self) -> int:
        return len(self.html)


def _us(ns: np.ndarray, t0: int) -> list[int]:
    """Nanosecond timestamps as microseconds after ``t0``; -1 where missing."""
    out = np.where(ns == _NAT, -1, (ns - t0) // 1000)
    return out.astype(np.int64).tolist()


def _capture_facts(cap: Capture) -> dict[str, Any]:
    import sockscope

    f = cap.facts
    return {
        "source": cap.source, "format": f.get("format"), "packets": f.get("packets", 0),
        "tcp_packets": f.get("tcp_packets", 0), "linktypes": f.get("linktypes", {}),
        "skipped": {k: v for k, v in f.get("status_counts", {}).items() if k != "tcp"},
        "warnings": list(f.get("warnings", [])), "first_ts": None if cap.start is None else cap.start.isoformat(),
        "last_ts": None if cap.end is None else cap.end.isoformat(), "connections": len(cap.connections),
        "requests": int(len(cap.requests)), "engine": f.get("engine", "native"),
        "version": getattr(sockscope, "__version__", "?"), "tunnels": f.get("tunnels", {}),
    }


def _verdict(cap: Capture) -> dict[str, Any]:
    from sockscope.analysis import report, verdict

    f = cap.findings
    kinds = []
    for g in report.group(f, examples=3):
        kinds.append({"kind": g.kind, "severity": g.severity, "title": g.title, "advice": g.advice,
                      "findings": g.findings, "connections": g.connections, "verdict": verdict(g.kind, g.rows),
                      "patterns": list(g.patterns.items())[:6], "examples": g.examples,
                      "summaries": [str(s) for s in g.rows["summary"].head(3) if str(s) != verdict(g.kind, g.rows)]
                      if not g.connections else []})
    d = cap.diagnosis
    return {"findings": len(f), "on_connections": int(f["conn_id"].dropna().nunique()) if len(f) else 0,
            "kinds": kinds, "timers": [k.headline() for k in d.timers[:8]],
            "other_clusters": max(0, len(d.clusters) - min(len(d.timers), 8))}


def _evidence_frames(ev: dict[str, Any]) -> list[list[Any]]:
    """(name, frame) for every frame number an evidence dict names, nested ones included."""
    out: list[list[Any]] = []

    def walk(prefix: str, v: Any) -> None:
        if prefix == "requests." and isinstance(v, list):     # the chain: where each request began
            for r in v[:20]:
                if isinstance(r, dict) and isinstance(r.get("first_frame"), int):
                    out.append([f"request {r.get('index')}", r["first_frame"]])
            return
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}{k}." if isinstance(x, (dict, list)) else f"{prefix}{k}", x)
        elif isinstance(v, list):
            if prefix.endswith("frames.") and all(isinstance(x, int) for x in v):
                for x in v[:20]:
                    out.append([prefix[:-1], x])
                return
            for i, x in enumerate(v[:20]):
                walk(f"{prefix}{i}.", x)
        elif prefix.endswith("frame") and isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out.append([prefix, int(v)])

    walk("", ev)
    return out


def _details(cap: Capture, positions: np.ndarray, t0: int, logs: dict[int, list[list[Any]]]) -> dict[str, Any]:
    """Per embedded connection (by lane id): endpoints, story, request spans, findings."""
    from sockscope.analysis import report
    from sockscope.analysis._cols import na

    ctx = cap.diagnosis.context
    wanted = ctx.conn_id[positions]
    f = cap.findings
    by_conn: dict[int, list[dict[str, Any]]] = {}
    if len(f):
        ids = f["conn_id"].astype("Int64").to_numpy(dtype=np.int64, na_value=-1)
        for r in f[np.isin(ids, wanted)].itertuples(index=False):
            ev = r.evidence if isinstance(r.evidence, dict) else {}
            by_conn.setdefault(int(r.conn_id), []).append({
                "kind": r.kind, "severity": r.severity, "request_index": None if na(r.request_index) else int(r.request_index), "summary": r.summary,
                "filter": r.display_filter, "frames": _evidence_frames(ev)})
    c = ctx.conns
    idx = ctx.reqs["index"].to_numpy() if len(ctx.reqs) else np.zeros(0, np.int64)
    rs, rps, rpe = ctx.req_ns("request_start"), ctx.req_ns("response_start"), ctx.req_ns("response_end")
    method, uri, status = ctx.req_text("method"), ctx.req_text("uri"), ctx.req_frames("status")
    outcome = ctx.req_text("outcome")
    out: dict[str, Any] = {}
    text = {k: ctx.text(k) for k in ("state", "history", "closed_by", "close_kind", "protocol")}
    # the silences of the embedded connections, gathered in one pass over their rows
    gaps_of: dict[int, list[list[Any]]] = {}
    g = ctx.gaps
    if len(g):
        for gr in g[g["conn_id"].isin(wanted)].itertuples(index=False):
            rows = gaps_of.setdefault(int(gr.conn_id), [])
            if len(rows) < 50:
                rows.append([int((gr.start.value - t0) // 1000), int((gr.end.value - t0) // 1000),
                             bool(gr.outstanding), str(gr.ended_by)])
    idle = c["idle_before_close_s"].to_numpy(dtype=np.float64, na_value=np.nan) if ctx.n else np.zeros(0)
    for pos in positions.tolist():
        cid = int(ctx.conn_id[pos])
        lo, hi = ctx.req_bounds(pos)
        reqs = [[int(idx[i]), method[i], uri[i], None if status[i] == -1 else int(status[i]), outcome[i],
                 -1 if rs[i] == _NAT else int((rs[i] - t0) // 1000),
                 -1 if rps[i] == _NAT else int((rps[i] - t0) // 1000),
                 -1 if rpe[i] == _NAT else int((rpe[i] - t0) // 1000)] for i in range(lo, min(hi, lo + 500))]
        events = [[int((e.ts_ns - t0) // 1000), e.text] for e in report.connection_events(ctx, cid)]
        if len(events) > MAX_EVENTS:
            half = MAX_EVENTS // 2
            events = events[:half] + [[events[half][0], f"… {len(events) - MAX_EVENTS} more line(s): "
                                       f"sockscope diagnose CAPTURE --conn {cid}"]] + events[-half:]
        i = idle[pos]
        out[str(cid)] = {
            "client": ctx.endpoint(pos, "client"), "server": ctx.endpoint(pos, "server"),
            "state": text["state"][pos], "history": text["history"][pos], "protocol": text["protocol"][pos],
            "closed_by": text["closed_by"][pos], "close_kind": text["close_kind"][pos],
            "close_frame": None if ctx.frames("close_frame")[pos] == -1 else int(ctx.frames("close_frame")[pos]),
            "idle_s": None if i != i else float(i), "requests_total": hi - lo,
            "first_frame": int(ctx.frames("first_frame")[pos]), "last_frame": int(ctx.frames("last_frame")[pos]),
            "requests": reqs, "events": events + logs.get(cid, []), "gaps": gaps_of.get(cid, []),
            "findings": by_conn.get(cid, []),
        }
        out[str(cid)]["events"].sort(key=lambda e: e[0])
    return out


def _log_lines(aligned: pd.DataFrame | None, t0: int) -> tuple[dict[int, list[list[Any]]], list[list[Any]]]:
    """Aligned log lines: per connection story entries, and markers (conn, µs, source, text)."""
    from sockscope.analysis._cols import na

    if aligned is None or not len(aligned):
        return {}, []
    per: dict[int, list[list[Any]]] = {}
    marks: list[list[Any]] = []
    for r in aligned.head(MAX_LOG_LINES).itertuples(index=False):
        ts = getattr(r, "adjusted_ts", None)
        if na(ts):
            continue
        us = int((ts.value - t0) // 1000)
        text = str(r.text).split("\n", 1)[0][:300]
        src = os.path.basename(str(getattr(r, "source", "log")))
        cid = getattr(r, "conn_id", None)
        cid = None if na(cid) else int(cid)
        marks.append([-1 if cid is None else cid, us, src, text])
        if cid is not None:
            per.setdefault(cid, []).append([us, f"📝 {src}: {text}"])
    return per, marks


def _detailed(sev: np.ndarray, group: np.ndarray, rank: np.ndarray, per_group: int) -> np.ndarray:
    """Which lanes carry their details: every connection with an error or warning finding (up
    to MAX_DETAILED in all, then the same number from each group: a pattern is never left
    without examples), and the first ``per_group`` of every group. Info findings (connection
    reuse, idle keep-alive closes) can be on every connection of a load test: those lanes are
    sampled like healthy ones."""
    bad = sev >= 2
    keep = bad.copy()
    if int(bad.sum()) > MAX_DETAILED:
        counts = np.bincount(group[bad])
        counts = counts[counts > 0]
        k = 1
        while k < counts.max() and np.minimum(counts, k + 1).sum() <= MAX_DETAILED:
            k += 1
        keep = bad & (rank < k)
    return keep | (rank < per_group)


def report_data(cap: Capture, aligned: pd.DataFrame | None = None, offsets: dict[str, Any] | None = None,
                detail_per_group: int = DETAIL_PER_GROUP) -> dict[str, Any]:
    """The data the page draws, as plain JSON-able values (lanes column-wise).

    Times are integer microseconds after the capture's first packet (``t0_ns``), -1 where
    missing. ``lanes`` holds one entry per connection in display order (by group, then by
    start): ``start`` after ``t0``; ``end``, ``close``, ``silence`` (the last payload) and
    ``late`` (data after the close) after the lane's own start; ``flags`` packs the closer
    (bits 0-1: 1 client, 2 server), the close (bits 2-3: 1 FIN, 2 RST, 3 forged RST), a
    request waiting (bit 4), the worst severity (bits 5-6) and details embedded (bit 7).
    ``details`` holds the embedded connections by id.
    """
    from sockscope.analysis import report

    ctx = cap.diagnosis.context
    t0 = int(cap.facts.get("first_ts_ns") or 0)
    t1 = int(cap.facts.get("last_ts_ns") or t0)
    pats = report.connection_patterns(ctx, cap.findings)
    n = ctx.n
    start = ctx.ns("start") if n else np.zeros(0, np.int64)
    order = np.lexsort((ctx.conn_id, start, pats.group)) if n else np.zeros(0, np.int64)
    cl = ctx.closes
    closer = np.select([cl.closer == "client", cl.closer == "server"], [1, 2], 0) if n else np.zeros(0, np.int64)
    ckind = np.select([cl.kind == "FIN", cl.kind == "RST"], [1, 2], 0) if n else np.zeros(0, np.int64)
    ckind = np.where(cl.forged, 3, ckind) if n else ckind
    waiting = (cl.n_outstanding > 0).astype(np.int64) if n else np.zeros(0, np.int64)
    # details: connections with error/warning findings, and the first few of every group
    rank_in_group = report.rank_in_groups(pats.group, order)
    detailed = _detailed(pats.severity, pats.group, rank_in_group, detail_per_group)
    per_log, marks = _log_lines(aligned, t0)
    if per_log:
        detailed |= np.isin(ctx.conn_id, np.fromiter(per_log, dtype=np.int64))
    st = start[order]

    def rel(name: str) -> list[int]:      # a lane's other times, as offsets from its start
        ns = ctx.ns(name)[order]
        return np.where(ns == _NAT, -1, (ns - st) // 1000).astype(np.int64).tolist()

    # closer (2 bits), close kind (2: 1 FIN, 2 RST, 3 forged RST), a request waiting (1),
    # severity (2), details embedded (1): one small integer per lane instead of five
    flags = (closer | ckind << 2 | waiting << 4 | pats.severity << 5 | detailed.astype(np.int64) << 7)[order] \
        if n else np.zeros(0, np.int64)
    lanes = {"id": ctx.conn_id[order].tolist(), "start": _us(st, t0), "end": rel("end") if n else [],
             "close": rel("close_ts") if n else [], "silence": rel("last_payload_ts") if n else [],
             "late": rel("data_after_close_ts") if n else [], "flags": flags.tolist(),
             "group": pats.group[order].tolist()}
    groups = [{"title": g.title, "kind": g.lead_kind, "severity": g.severity, "count": g.count} for g in pats.groups]
    details = _details(cap, np.flatnonzero(detailed), t0, per_log)
    return {
        "t0_ns": str(t0), "t0_us": t0 // 1000, "span_us": max(0, (t1 - t0) // 1000), "facts": _capture_facts(cap), "verdict": _verdict(cap),
        "groups": groups, "lanes": lanes, "details": details, "logs": marks,
        "log_offsets": {os.path.basename(k): {kk: vv for kk, vv in v.items() if isinstance(vv, (int, float, str))}
                        for k, v in (offsets or {}).items()},
        "detail_per_group": detail_per_group,
    }


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _json_for_script(obj: Any) -> str:
    """JSON safe inside a <script> element: no "</" can close it, no "<!--" open a comment."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: dict[str, Any], title: str) -> str:
    """The page for ``data`` (from :func:`report_data`)."""
    # One pass over the template: text from the capture (in the data) can never be taken
    # for a later placeholder.
    parts = {"TITLE": html.escape(title), "CSS": _asset("report.css"), "DATA": _json_for_script(data),
             "JS": _asset("report.js")}
    return re.sub(r"\{\{(TITLE|CSS|DATA|JS)\}\}", lambda m: parts[m.group(1)], _asset("page.html"))


def build(cap: Capture, aligned: pd.DataFrame | None = None, offsets: dict[str, Any] | None = None,
          detail_per_group: int = DETAIL_PER_GROUP) -> Report:
    """The incident report of an analysed capture (optionally with aligned log lines)."""
    title = f"sockscope report: {os.path.basename(str(cap.source))}"
    return Report(render(report_data(cap, aligned, offsets, detail_per_group), title), title)


__all__ = ["DETAIL_PER_GROUP", "Report", "build", "render", "report_data"]
