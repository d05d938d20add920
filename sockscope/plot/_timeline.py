"""The connection timeline: one lane per TCP connection, everything that killed it drawn on it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import pandas as pd

from sockscope.analysis import path_template
from sockscope.analysis.text import seconds
from sockscope.plot._mpl import new_figure

# Colours: the two sides are always the same colours, on every plot.
CLIENT = "#6a3d9a"        # purple
SERVER = "#1b7837"        # green
REQ_OK = "#4477aa"        # an exchange that completed
REQ_FAIL = "#cc3311"      # a request that never got its (complete) response
GAP_IDLE = "#d9d9d9"      # silence with nothing outstanding
GAP_WAIT = "#fdd49e"      # silence while a request waited for its response
LATE = "#ee7733"          # data after the close (it was dropped)
ERROR = "#cc0000"
WARNING = "#b35806"
LIFELINE = "#9e9e9e"
LOG_COLORS = ("#555555", "#2166ac", "#8c510a", "#762a83")   # one per log source, in order of appearance
LOG_DY = 0.14             # log markers sit just below the lane line, between the bars and the labels

SIDE_COLOR = {"client": CLIENT, "server": SERVER}
KIND_MARKER = {"FIN": "v", "RST": "X"}

# Vertical geometry of one lane (lane centres are 1 apart; the y axis is inverted so the
# first lane is at the top).
BAR_H = 0.22
GAP_H = 0.8
ROWS_ABOVE = (-0.2, -0.37)
ROWS_BELOW = (0.2, 0.37)
MARK_DY = 0.07


def _na(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def _sec(ts: Any, t0: pd.Timestamp) -> float | None:
    return None if _na(ts) else (pd.Timestamp(ts) - t0).total_seconds()


@dataclass
class _Label:
    x: float
    text: str
    color: str
    weight: str = "normal"
    kind: str = ""


@dataclass
class _RowPlacer:
    """Greedy placement of labels on a few text rows so that no two overlap.

    Labels may be placed in any order (the important ones first); each row keeps the
    intervals it already holds. Widths are estimated from the character count and the
    font size: an Agg render pass per label would be exact but slow on big captures.
    """

    data_per_pt: float
    fontsize: float
    rows: Sequence[float]
    x_max: float
    taken: list[list[tuple[float, float]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.taken = [[] for _ in self.rows]

    def width(self, text: str) -> float:
        return len(text) * self.fontsize * 0.52 * self.data_per_pt

    def place(self, x: float, text: str) -> tuple[float, str] | None:
        """(row offset, horizontal alignment) for a label anchored at ``x``, or None if full.

        Near the right edge a label extends leftwards from its anchor instead of being cut.
        """
        w = self.width(text)
        pad = 4 * self.data_per_pt
        ha = "left"
        x0, x1 = x, x + w
        if x1 > self.x_max:
            ha, x0, x1 = "right", x - w, x
        for i, row in enumerate(self.taken):
            if all(x1 + pad <= a or x0 >= b + pad for a, b in row):
                row.append((x0, x1))
                return self.rows[i], ha
        return None


MAX_LANES = 50      # lanes one image holds: ~3,400 px tall at 150 dpi, a screen or two


def select_connections(cap: Any, conn_ids: Iterable[int] | None = None, max_conns: int = 50) -> list[int]:
    """The connection ids a timeline shows, in lane order (by start time); at most
    :data:`MAX_LANES` (an image stays a few thousand pixels whatever is asked).

    With ``conn_ids`` those connections; otherwise all, and when there are more than
    ``max_conns`` the worst ones, spread over the patterns the HTML report groups them by
    (:func:`sockscope.analysis.report.connection_patterns`): connections with error findings
    first, one per pattern before a second of any, then warnings the same way; within a
    pattern the longest silence (idle gap or idle before close) first. The rest (info
    findings are not failures) by longest silence alone.
    """
    import numpy as np

    conns = cap.connections
    max_conns = min(max_conns, MAX_LANES)
    if conn_ids is not None:
        wanted = [int(c) for c in conn_ids]
        known = set(conns["conn_id"].astype(int))
        missing = [c for c in wanted if c not in known]
        if missing:
            raise ValueError(f"no such connection id(s): {missing}")
        chosen = set(wanted[:MAX_LANES])
    elif len(conns) <= max_conns:
        chosen = set(conns["conn_id"].astype(int))
    else:
        from sockscope.analysis.report import connection_patterns, rank_in_groups

        ctx = cap.diagnosis.context
        pats = connection_patterns(ctx, cap.findings)
        idle = conns["idle_before_close_s"].to_numpy(dtype=np.float64, na_value=0.0)
        silence = np.nan_to_num(idle)
        if len(cap.gaps):
            longest = cap.gaps.groupby("conn_id")["duration_s"].max()
            gap = longest.reindex(ctx.conn_id).to_numpy(dtype=np.float64, na_value=0.0)
            silence = np.maximum(silence, np.nan_to_num(gap))
        # errors, then warnings: rank within a pattern by silence (longest first), then
        # round-robin over patterns. Info findings (a pool's idle close) are not failures,
        # so they rank with the connections that have none: by silence alone.
        tier = np.where(pats.severity >= 2, pats.severity, 0)
        rank = rank_in_groups(pats.group, np.lexsort((ctx.conn_id, -silence, pats.group)))
        rank = np.where(tier > 0, rank, 0)
        group = np.where(tier > 0, pats.group, 0)
        order = np.lexsort((ctx.conn_id, -silence, group, rank, -tier))
        chosen = set(ctx.conn_id[order[:max_conns]].tolist())
    shown = conns[conns["conn_id"].isin(chosen)].sort_values(["start", "conn_id"], kind="stable")
    return [int(c) for c in shown["conn_id"]]


def _source_name(cap: Any) -> str:
    """``lab/before-fix/capture.pcap`` -> ``before-fix/capture.pcap``: the folder often names the run."""
    path = os.path.normpath(str(cap.source))
    parent = os.path.basename(os.path.dirname(path))
    return f"{parent}/{os.path.basename(path)}" if parent else os.path.basename(path)


def _dur(t: float) -> str:
    """The faces' one duration style (:func:`sockscope.analysis.text.seconds`)."""
    return seconds(t)


def _merge_close_by(labels: list[_Label], tol: float) -> list[_Label]:
    """Join labels of events a hair apart (late data answered by an RST) into one text."""
    out: list[_Label] = []
    for lab in sorted(labels, key=lambda b: b.x):
        if out and lab.x - out[-1].x <= tol and "close" not in (lab.kind, out[-1].kind):
            prev = out[-1]
            out[-1] = _Label(prev.x, f"{prev.text} → {lab.text}", prev.color, prev.weight, prev.kind)
        else:
            out.append(lab)
    return out


def _time_zero(cap: Any) -> pd.Timestamp:
    if cap.start is not None:
        return cap.start
    if len(cap.connections):
        return pd.Timestamp(cap.connections["start"].min())
    return pd.Timestamp(0, unit="s", tz="UTC")


def _short(text: str, limit: int = 38) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_LOG_MSG = re.compile(r'(?<![\w.-])(?:error|err|reason|message|msg)=(?:"((?:[^"\\]|\\.)*)"|(\S+))')


_LOG_KV = re.compile(r'(?<!\S)[\w.-]+=(?:"(?:[^"\\]|\\.)*"|\S*)')


def _log_label(source: str, text: str, limit: int = 52) -> str:
    """``client.log: request_error — socket hang up``: the event words and the error, not the key=values."""
    first = text.split("\n", 1)[0]
    words = _LOG_KV.sub(" ", first).split()[:3]
    m = _LOG_MSG.search(first)
    msg = ""
    if m:
        msg = (m.group(1) if m.group(1) is not None else m.group(2)).rsplit(": ", 1)[-1]
    body = " ".join(words) + (f" — {msg}" if msg else "")
    body = body.strip() or first
    return _short(f"{source}: {body}", limit)


def _log_rows(logs: Any, ids: Sequence[int]) -> dict[int, list[tuple[pd.Timestamp, str, str, float | None]]]:
    """Per shown connection: (time, source, text, delta to close) of the aligned log lines on it."""
    if logs is None:
        return {}
    missing = [c for c in ("conn_id", "text") if c not in logs.columns]
    if missing or not ({"adjusted_ts", "ts"} & set(logs.columns)):
        raise ValueError("logs must be the lines table of sockscope.logs.align_logs (conn_id, adjusted_ts, text)")
    tcol = "adjusted_ts" if "adjusted_ts" in logs.columns else "ts"
    wanted = set(ids)
    out: dict[int, list[tuple[pd.Timestamp, str, str, float | None]]] = {}
    for row in logs.itertuples(index=False):
        cid = getattr(row, "conn_id")
        if _na(cid) or int(cid) not in wanted or _na(getattr(row, tcol)):
            continue
        d = getattr(row, "delta_to_close_s", None)
        out.setdefault(int(cid), []).append((getattr(row, tcol), str(getattr(row, "source", "log")),
                                              str(row.text), None if _na(d) else float(d)))
    return out


def timeline(cap: Any, conn_ids: Iterable[int] | None = None, max_conns: int = 50, ax: Any = None,
             logs: Any = None) -> Any:
    """Draw one lane per connection and return the :class:`matplotlib.figure.Figure`.

    Each lane shows the connection's lifetime (thin grey line from first to last packet),
    its HTTP exchanges as bars from the first request byte to the last response byte
    (labelled *method + path template*; red and hatched up to the close when the response
    never completed), idle gaps shaded with their duration written on them (amber when a
    request was waiting), FIN/RST markers coloured by the side that sent them, data that
    arrived after the close, and -- in the lane label -- the kinds of the connection's
    findings (red for errors).

    Parameters
    ----------
    cap:
        A :class:`sockscope.Capture`.
    conn_ids:
        Only these connections (default: all, or the ``max_conns`` worst).
    max_conns:
        With more connections than this, show the worst: error findings first (one per
        pattern before a second), then the longest silences; never more than
        :data:`MAX_LANES`. The title says how many were left out.
    ax:
        Draw into this Axes instead of a new figure.
    logs:
        The lines table of :func:`sockscope.logs.align_logs` (or ``cap.align_logs``): each line
        placed on a shown connection is drawn as a small diamond just below its lane at its
        adjusted time (one colour per log file), and the lines nearest the close get a short
        label (``client.log: request_error — socket hang up``) where there is room.

    Example
    -------
    >>> fig = sockscope.plot.timeline(cap)          # doctest: +SKIP
    >>> fig.savefig("timeline.png", dpi=150)        # doctest: +SKIP
    """
    conn_ids = None if conn_ids is None else list(conn_ids)
    ids = select_connections(cap, conn_ids, max_conns)
    log_rows = _log_rows(logs, ids)
    log_sources = list(dict.fromkeys(src for rows in log_rows.values() for _, src, _, _ in rows))
    log_color = {src: LOG_COLORS[i % len(LOG_COLORS)] for i, src in enumerate(log_sources)}
    n = len(ids)
    t0 = _time_zero(cap)
    if ax is None:
        per_lane = 0.85 if n <= 12 else (0.6 if n <= 25 else 0.42)
        fig = new_figure(13.0, 1.9 + per_lane * max(n, 1))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    fontsize = 7.5 if n <= 25 else 6.0

    conns = cap.connections.set_index("conn_id", drop=False)
    reqs = cap.requests
    req_by = {int(k): g for k, g in reqs.groupby("conn_id", sort=False)} if len(reqs) else {}
    gaps_by = {int(k): g for k, g in cap.gaps.groupby("conn_id", sort=False)} if len(cap.gaps) else {}
    findings = cap.findings
    kinds_by: dict[int, list[tuple[str, str]]] = {}
    for cid, kind, sev in zip(findings["conn_id"], findings["kind"], findings["severity"]):
        if not _na(cid):
            kinds_by.setdefault(int(cid), []).append((str(kind), str(sev)))

    # x range: the shown connections (plus a margin for labels at the right end).
    if n:
        sub = conns.loc[ids]
        x_min = min(0.0, _sec(sub["start"].min(), t0) or 0.0)
        x_max = max(_sec(sub["end"].max(), t0) or 0.0, x_min + 1e-3)
        log_x = [_sec(ts, t0) for rows in log_rows.values() for ts, _, _, _ in rows]
        if log_x:     # a server logs the end of its work after the socket is gone: keep it in view
            x_min = min(x_min, min(log_x))
            x_max = max(x_max, max(log_x))
    else:
        x_min, x_max = 0.0, 1.0
    span = x_max - x_min
    x_right = x_max + 0.06 * span
    ax.set_xlim(x_min - 0.01 * span, x_right)
    ax.set_ylim(n - 0.5, -0.5)
    fig_w = fig.get_figwidth() * ax.get_position().width
    data_per_pt = (span * 1.10) / max(fig_w * 72 * 0.86, 1.0)

    from matplotlib.patches import Rectangle

    tick_labels: list[str] = []
    tick_colors: list[str] = []
    for lane, cid in enumerate(ids):
        c = conns.loc[cid]
        y = float(lane)
        start = _sec(c["start"], t0) or 0.0
        end = _sec(c["end"], t0) or start
        close_x = _sec(c["close_ts"], t0)
        kinds = kinds_by.get(cid, [])
        sev = "error" if any(s == "error" for _, s in kinds) else ("warning" if any(s == "warning" for _, s in kinds) else "")
        above = _RowPlacer(data_per_pt, fontsize, ROWS_ABOVE, x_right)
        below = _RowPlacer(data_per_pt, fontsize, ROWS_BELOW, x_right)

        # The lane itself: outlined in red when the connection has an error finding.
        lane_bg = Rectangle((x_min - 0.01 * span, y - 0.48), span * 1.10, 0.96, facecolor="#fafafa" if lane % 2 else "white",
                            edgecolor=ERROR if sev == "error" else "none", linewidth=1.2 if sev == "error" else 0,
                            zorder=0, gid=f"lane-{cid}")
        ax.add_patch(lane_bg)
        ax.plot([start, end], [y, y], color=LIFELINE, lw=1.0, zorder=1, solid_capstyle="butt")
        ax.plot([start], [y], marker="|", color=LIFELINE, ms=9, mew=1.5, zorder=1)

        # Idle gaps (silences) with their duration.
        for g in (gaps_by.get(cid, pd.DataFrame()).itertuples(index=False)):
            gx0, gx1 = _sec(g.start, t0), _sec(g.end, t0)
            if gx0 is None or gx1 is None:
                continue
            wait = bool(g.outstanding) if not _na(g.outstanding) else False
            ax.add_patch(Rectangle((gx0, y - GAP_H / 2), gx1 - gx0, GAP_H, facecolor=GAP_WAIT if wait else GAP_IDLE,
                                   edgecolor="none", alpha=0.85, zorder=1.5, gid=f"gap-{cid}"))
            label = f"{g.duration_s:.2f} s"
            # Always written, even on a narrow gap: the figure is about these numbers.
            ax.text((gx0 + gx1) / 2, y, label, ha="center", va="center", fontsize=fontsize + 0.5,
                    fontweight="bold", color="#7f3b08" if wait else "#525252", zorder=4,
                    bbox=dict(boxstyle="round,pad=0.15", fc=GAP_WAIT if wait else GAP_IDLE, ec="none", alpha=0.9),
                    gid=f"gap-label-{cid}")

        # HTTP exchanges: request start -> response end.
        labels: list[_Label] = []
        for r in (req_by.get(cid, pd.DataFrame()).itertuples(index=False)):
            rx0 = _sec(r.request_start, t0)
            if rx0 is None:
                rx0 = _sec(r.response_start, t0)
            if rx0 is None:
                continue
            ok = str(r.outcome) == "complete"
            rx1 = _sec(r.response_end, t0)
            if not ok:
                # Waiting until whatever ended it: the close, or the end of the connection.
                candidates = [v for v in (close_x, end) if v is not None and v >= rx0]
                rx1 = min(candidates) if candidates else end
            if rx1 is None:
                rx1 = rx0
            width = max(rx1 - rx0, span * 0.0015)   # visible even for a 1 ms exchange
            ax.add_patch(Rectangle((rx0, y - BAR_H / 2), width, BAR_H, facecolor=REQ_OK if ok else "white",
                                   edgecolor=REQ_OK if ok else REQ_FAIL, hatch=None if ok else "////",
                                   linewidth=0.8, zorder=3, gid=f"req-{cid}-{int(r.index)}"))
            method = "?" if _na(r.method) else str(r.method)
            status = "" if _na(r.status) else f" {int(r.status)}"
            text = f"{method} {_short(path_template(None if _na(r.uri) else str(r.uri)))}{status if ok else ' ✗'}"
            labels.append(_Label(rx0, text, REQ_OK if ok else REQ_FAIL, "normal" if ok else "bold", "req"))
        # Failed requests are the story: they get a label first, the rest where room is left.
        labels.sort(key=lambda lab: (lab.weight != "bold", lab.x))
        for lab in labels:
            spot = above.place(lab.x, lab.text)
            if spot is not None:
                row, ha = spot
                ax.text(lab.x, y + row, lab.text, ha=ha, va="center", fontsize=fontsize, color=lab.color,
                        fontweight=lab.weight, zorder=5, clip_on=True, gid=f"req-label-{cid}")

        # FIN / RST from each side, the first one labelled as the close.
        events: list[tuple[float, str, str, str]] = []
        for side in ("client", "server"):
            for kind in ("FIN", "RST"):
                x = _sec(c.get(f"{side}_{kind.lower()}_ts"), t0)
                if x is not None:
                    events.append((x, side, kind, ""))
        if close_x is not None and not _na(c["closed_by"]) and not any(
                e[1] == str(c["closed_by"]) and e[2] == str(c["close_kind"]) for e in events):
            events.append((close_x, str(c["closed_by"]), str(c["close_kind"]), ""))
        events.sort()
        below_labels: list[_Label] = []
        for i, (x, side, kind, _) in enumerate(events):
            # Client events sit just above the lane line, server events just below, so a
            # FIN answered within a millisecond does not hide the one it answers.
            ax.plot([x], [y + (-MARK_DY if side == "client" else MARK_DY)], marker=KIND_MARKER[kind],
                    color=SIDE_COLOR[side], ms=9 if kind == "RST" else 8, mec="white", mew=0.6, zorder=6, linestyle="none", gid=f"close-{cid}-{side}-{kind}")
            is_close = (close_x is not None and abs(x - close_x) < 1e-9 and side == str(c["closed_by"])
                        and kind == str(c["close_kind"]))
            if is_close:
                idle = c["idle_before_close_s"]
                tail = "" if _na(idle) else f" after {_dur(float(idle))} idle"
                below_labels.append(_Label(x, f"{side} {kind}{tail}", SIDE_COLOR[side], "bold", "close"))
            elif kind == "RST":
                below_labels.append(_Label(x, f"{side} RST", SIDE_COLOR[side], "normal", "rst"))
        # Data after the close: the answer nobody read.
        lx = _sec(c.get("data_after_close_ts"), t0)
        if lx is not None:
            nbytes = c.get("data_after_close_bytes")
            by = c.get("data_after_close_by")
            ax.plot([lx], [y], marker="*", color=LATE, ms=12, mec="black", mew=0.5, zorder=7, linestyle="none",
                    gid=f"late-{cid}")
            who = "" if _na(by) else f"{by} "
            below_labels.append(_Label(lx, f"late {who}data {int(nbytes) if not _na(nbytes) else '?'} B", LATE,
                                       "bold", "late"))
        below_labels = _merge_close_by(below_labels, span * 0.01)
        below_labels.sort(key=lambda b: (b.kind != "close", b.x))
        for lab in below_labels:
            spot = below.place(lab.x, lab.text)
            if spot is None:     # crowded: overlap on the last row rather than hide a close
                spot = (ROWS_BELOW[-1], "left")
            row, ha = spot
            ax.text(lab.x, y + row, lab.text, ha=ha, va="center", fontsize=fontsize, color=lab.color,
                    fontweight=lab.weight, zorder=5, clip_on=True, gid=f"{lab.kind}-label-{cid}")

        # Application log lines on this connection: a marker each; labels for those nearest the close.
        rows_here = log_rows.get(cid, [])
        if rows_here:
            xs = [_sec(ts, t0) for ts, _, _, _ in rows_here]
            for src in log_sources:
                pts = [x for x, (_, s2, _, _) in zip(xs, rows_here) if s2 == src and x is not None]
                if pts:
                    ax.plot(pts, [y + LOG_DY] * len(pts), marker="d", ms=4, color=log_color[src], mec="white",
                            mew=0.4, linestyle="none", zorder=6.5, gid=f"log-{cid}")
            # Errors first ("socket hang up" is the story), then the lines nearest the close.
            ranked = sorted(zip(xs, rows_here), key=lambda e: (_LOG_MSG.search(e[1][2]) is None, e[1][3] is None,
                                                               abs(e[1][3] or 0.0), e[0] or 0.0))
            for x, (_, src, text, _) in ranked:
                if x is None:
                    continue
                label = _log_label(src, text)
                spot = below.place(x, label)
                if spot is None:
                    continue
                row, ha = spot
                ax.text(x, y + row, label, ha=ha, va="center", fontsize=fontsize - 0.5, color=log_color[src],
                        fontstyle="italic", zorder=5, clip_on=True, gid=f"log-label-{cid}")

        kind_names = list(dict.fromkeys(k for k, _ in kinds))
        lane_name = f":{int(c['client_port'])}  conn {cid}"
        tick_labels.append(lane_name + ("\n" + "\n".join(kind_names[:3]) if kind_names else ""))
        tick_colors.append(ERROR if sev == "error" else (WARNING if sev == "warning" else "black"))

    ax.set_yticks(range(n))
    ax.set_yticklabels(tick_labels, fontsize=fontsize + 0.5)
    for tl, col in zip(ax.get_yticklabels(), tick_colors):
        tl.set_color(col)
        if col != "black":
            tl.set_fontweight("bold")
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#e0e0e0", lw=0.6, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel(f"seconds since capture start (t = 0 at {t0:%Y-%m-%d %H:%M:%S.%f} UTC)")
    total = len(cap.connections)
    name = _source_name(cap)
    shown = f"{n} connections" if n == total else f"{n} of {total} connections" + (
        " (worst first: error findings, one per pattern, then longest silence)" if conn_ids is None
        else f" (the first {MAX_LANES} asked for)" if len(list(conn_ids)) > n else "")
    ax.set_title(f"{name} — {shown} — t = 0 at {t0:%Y-%m-%d %H:%M:%S} UTC", loc="left", fontsize=11,
                 fontweight="bold")
    _legend(fig, ax, fontsize, log_color)
    return fig


def _legend(fig: Any, ax: Any, fontsize: float, log_color: dict[str, str] | None = None) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=REQ_OK, edgecolor=REQ_OK, label="request → response"),
        Patch(facecolor="white", edgecolor=REQ_FAIL, hatch="////", label="request with no (complete) response"),
        Patch(facecolor=GAP_IDLE, label="idle gap"),
        Patch(facecolor=GAP_WAIT, label="idle gap, request waiting"),
        Line2D([], [], marker="v", color=CLIENT, linestyle="none", ms=8, label="client FIN"),
        Line2D([], [], marker="v", color=SERVER, linestyle="none", ms=8, label="server FIN"),
        Line2D([], [], marker="X", color=CLIENT, linestyle="none", ms=8, label="client RST"),
        Line2D([], [], marker="X", color=SERVER, linestyle="none", ms=8, label="server RST"),
        Line2D([], [], marker="*", color=LATE, mec="black", mew=0.5, linestyle="none", ms=11,
               label="data after close"),
        Patch(facecolor="white", edgecolor=ERROR, label="error finding"),
    ]
    for src, col in (log_color or {}).items():
        handles.append(Line2D([], [], marker="d", color=col, linestyle="none", ms=5, label=f"log: {src}"))
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    if len(fig.axes) == 1 and isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=fontsize + 0.5, frameon=False)
    else:
        ax.legend(handles=handles, loc="upper right", fontsize=fontsize, ncol=2, framealpha=0.9)
