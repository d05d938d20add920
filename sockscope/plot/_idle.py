"""How long each side waited in silence before closing: the picture of an idle timer."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sockscope.analysis import MIN_TIMER_S, close_attribution, infer_timeouts
from sockscope.plot._mpl import new_figure
from sockscope.plot._timeline import CLIENT, SERVER, _source_name

# One row per (closer, outstanding) group, top to bottom.
GROUPS: list[tuple[str, bool, str]] = [
    ("client", True, "client closed,\nrequest outstanding"),
    ("client", False, "client closed,\nnothing outstanding"),
    ("server", True, "server closed,\nrequest outstanding"),
    ("server", False, "server closed,\nnothing outstanding"),
]
FLOOR_S = 1e-4   # log axis: closes quicker than this are drawn at the floor


def idle_closes(cap: Any, ax: Any = None) -> Any:
    """Strip chart of ``idle_before_close_s`` per closer and return the Figure.

    One row per group -- client/server closer, with or without a request outstanding at
    the close -- one dot per closed connection, on a log time axis (a timer shows as a
    vertical stack of dots at one value). Every timer that
    :func:`sockscope.analysis.infer_timeouts` finds is drawn as a dashed line across its
    row, annotated with its value, the number of closes and their spread. Closes faster
    than ``MIN_TIMER_S`` are in a shaded band: too quick to be a timer.

    Example
    -------
    >>> sockscope.plot.idle_closes(cap).savefig("idle.png")   # doctest: +SKIP
    """
    closes = close_attribution(cap.connections, cap.requests)
    clusters = infer_timeouts(closes.values())
    if ax is None:
        fig = new_figure(11.0, 4.8)
        ax = fig.add_subplot()
    else:
        fig = ax.figure

    values: dict[int, list[tuple[float, int]]] = {i: [] for i in range(len(GROUPS))}
    for ci in closes.values():
        if ci.closer is None or ci.idle_s is None:
            continue
        row = next(i for i, (side, outst, _) in enumerate(GROUPS) if side == ci.closer and outst == bool(ci.outstanding))
        values[row].append((max(ci.idle_s, FLOOR_S), ci.conn_id))
    all_x = [x for v in values.values() for x, _ in v]
    hi = max(all_x + [MIN_TIMER_S * 4, *(k.max_s for k in clusters)])
    ax.set_xscale("log")
    ax.set_xlim(FLOOR_S / 1.5, hi * 3)
    ax.set_ylim(len(GROUPS) - 0.5, -0.5)
    ax.axvspan(FLOOR_S / 1.5, MIN_TIMER_S, color="#f4f4f4", zorder=0, gid="too-quick")
    ax.text(math.sqrt(FLOOR_S / 1.5 * MIN_TIMER_S), len(GROUPS) - 0.55, f"< {MIN_TIMER_S:g} s: too quick to be an idle timer",
            ha="center", va="bottom", fontsize=8, color="#737373")

    rng = np.random.default_rng(0)      # fixed jitter: the same picture every run
    for row, pts in values.items():
        side = GROUPS[row][0]
        if not pts:
            ax.text(hi * 2.5, row, "none", ha="right", va="center", fontsize=8, color="#969696")
            continue
        xs = np.array([x for x, _ in pts])
        jitter = rng.uniform(-0.22, 0.22, len(xs)) if len(xs) > 1 else np.zeros(1)
        ax.scatter(xs, row + jitter, s=36, color=CLIENT if side == "client" else SERVER,
                   alpha=0.8 if GROUPS[row][1] else 0.45, edgecolors="white", linewidths=0.5, zorder=3,
                   gid=f"closes-{side}-{'outstanding' if GROUPS[row][1] else 'idle'}")
        ax.text(hi * 2.5, row, f"n = {len(xs)}", ha="right", va="center", fontsize=8, color="#525252")

    for k in clusters:
        if k.count < 2 and not k.round_ms:
            continue     # a lone close at an arbitrary value is no timer
        row = next(i for i, (side, outst, _) in enumerate(GROUPS) if side == k.side and outst == k.outstanding)
        color = CLIENT if k.side == "client" else SERVER
        ax.plot([k.timeout_s, k.timeout_s], [row - 0.42, row + 0.42], color=color, ls="--", lw=1.4, zorder=2,
                gid=f"timer-{k.side}")
        spread = f"spread {k.spread_s * 1000:.1f} ms" if k.count > 1 else "single close"
        what = "inactivity timeout" if k.outstanding else "keep-alive idle timeout"
        ax.annotate(f"inferred {k.side} {what}: {k.timeout_s:.2f} s\n{k.count} close{'s' if k.count != 1 else ''}, "
                    f"{spread} ({k.confidence} confidence)",
                    xy=(k.timeout_s, row - 0.3), xytext=(-8, 0), textcoords="offset points", ha="right", va="center",
                    fontsize=8.5, fontweight="bold", color=color, zorder=5,
                    bbox=dict(boxstyle="round,pad=0.25", fc="white", ec=color, lw=0.8, alpha=0.95))

    ax.set_yticks(range(len(GROUPS)))
    ax.set_yticklabels([g[2] for g in GROUPS], fontsize=9)
    for tl, (side, _, _) in zip(ax.get_yticklabels(), GROUPS):
        tl.set_color(CLIENT if side == "client" else SERVER)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", which="major", color="#e0e0e0", lw=0.6)
    ax.set_axisbelow(True)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    ax.xaxis.set_major_formatter(_seconds_formatter())
    ax.set_xlabel("silence before the first FIN/RST (idle_before_close_s, log scale)")
    n = sum(len(v) for v in values.values())
    ax.set_title(f"{_source_name(cap)} — idle time before close, {n} closed connection"
                 f"{'s' if n != 1 else ''}", loc="left", fontsize=11, fontweight="bold")
    return fig


def _seconds_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    def fmt(x: float, _pos: Any) -> str:
        if x >= 1:
            return f"{x:g} s"
        return f"{x * 1000:g} ms"

    return FuncFormatter(fmt)
