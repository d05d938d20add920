"""Timer inference: which closes were a configured timer firing, and its value.

Closes by one side, after at least ``MIN_TIMER_S`` of silence, are grouped by (side, whether a
request was outstanding) and clustered by idle time: sorted, a new cluster starts where the
step to the next value exceeds max(``CLUSTER_ABS_S``, ``CLUSTER_REL`` x value) (single
linkage). A cluster's value is its minimum: a timer fires at T after the last activity and
scheduling only adds delay. Nothing assumes 5 s.

A timer is *claimed* only for a cluster of two or more closes whose spread is tight (at most
max(``TIMER_SPREAD_ABS_S``, ``TIMER_SPREAD_REL`` x value): a timer's closes agree to within
scheduling delay, while single linkage can chain a dense run of ordinary closes into one
wide cluster) and that stand out from the closes around them (more closes in the cluster than
in its whole neighbourhood), or for one close whose idle time is a round number of
milliseconds (then with low confidence); one close at an arbitrary value is "one close after
X s", never a timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

MIN_TIMER_S = 0.5          # closes quicker than this after the last byte are not idle timers
CLUSTER_ABS_S = 0.020     # timers fire late by up to tens of ms on a busy host
CLUSTER_REL = 0.004
# A timer's closes agree: a cluster spread wider than this is a dense run of ordinary closes
# that single linkage chained together (think times of a load generator), not one timer.
TIMER_SPREAD_ABS_S = 0.050
TIMER_SPREAD_REL = 0.02
# ...and stand out from the closes around them: among thousands of closes at random times a
# few always fall close together somewhere. A timer's cluster holds more closes than all the
# other closes of its group within +-BACKGROUND_SPAN x its width (at least +-BACKGROUND_MIN_S)
# together: a peak, not a bump in a crowd.
BACKGROUND_SPAN = 10
BACKGROUND_MIN_S = 0.5


@dataclass(frozen=True, slots=True)
class TimeoutCluster:
    """A tight group of closes by one side after the same silence: a configured timer."""

    side: str                 # 'client' | 'server'
    outstanding: bool         # closes with a request waiting (a killer) or idle keep-alive closes
    timeout_s: float          # the measured timer (cluster minimum)
    count: int
    min_s: float
    max_s: float
    spread_s: float
    round_ms: bool            # the value is a round number of milliseconds (e.g. 5000 ms)
    conn_ids: tuple[int, ...]
    configured_s: float | None = None   # the round value the timer was most likely set to
    neighbours: int = 0                 # other closes of its group around it (see BACKGROUND_SPAN)
    @property
    def timer_s(self) -> float:
        """The configured value when one is evident, else the measured minimum."""
        return self.configured_s if self.configured_s is not None else self.timeout_s

    @property
    def confidence(self) -> str:
        return "high" if self.count >= 3 else ("medium" if self.count == 2 else "low")

    @property
    def tight(self) -> bool:
        """The closes agree as one timer's would (spread within scheduling delay)."""
        return self.spread_s <= max(TIMER_SPREAD_ABS_S, TIMER_SPREAD_REL * self.timeout_s)

    @property
    def stands_out(self) -> bool:
        """More closes in the cluster than in its whole neighbourhood: a peak."""
        return self.count > self.neighbours

    @property
    def is_timer(self) -> bool:
        """Enough to call it a timer: several closes that agree and stand out, or one at a round value."""
        if self.count == 1:      # a lone close at a round value, and no other close near it
            return self.round_ms and self.stands_out
        return self.tight and self.stands_out

    def describe(self) -> str:
        t = fmt_timer(self.timer_s)
        what = "inactivity timeout" if self.outstanding else "keep-alive idle timeout"
        return f"a {self.side}-side {t} {what}"

    def headline(self) -> str:
        """One line for a text face. "Timer" is said only of two or more closes alike; one
        close is "one close after X s", with a note when X is a round value."""
        what = "request outstanding" if self.outstanding else "idle keep-alive"
        if self.count == 1:
            note = (f"a round value: perhaps a {fmt_timer(self.timer_s)} timer, low confidence" if self.is_timer
                    else "one sample is not a timer")
            return f"{self.side}: one close after {self.timeout_s:.3f} s ({what}; {note})"
        if not self.tight:
            return (f"{self.side}: {self.count} closes after {self.min_s:.3f}–{self.max_s:.3f} s ({what}; too "
                    f"spread out for one timer)")
        if not self.stands_out:
            return (f"{self.side}: {self.count} closes after {self.min_s:.3f}–{self.max_s:.3f} s ({what}; "
                    f"{self.neighbours} more close by: no timer stands out)")
        return (f"{self.side}-side timer {fmt_timer(self.timer_s)} ({what}; {self.count} closes, measured "
                f"{self.min_s:.3f}–{self.max_s:.3f} s, {self.confidence} confidence)")


def fmt_timer(t: float) -> str:
    ms = round(t * 1000)
    if ms % 1000 == 0:
        return f"{ms // 1000} s"
    if ms >= 1000:
        return f"{t:.3f} s"
    return f"{ms} ms"


def round_timer(t: float) -> float | None:
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


def cluster_closes(side: np.ndarray, outstanding: np.ndarray, idle_s: np.ndarray,
                   conn_id: np.ndarray) -> tuple[list[TimeoutCluster], np.ndarray]:
    """Clusters of the closes given as parallel arrays, and each close's cluster (-1: none).

    ``side`` holds 'client'/'server'/None, ``idle_s`` NaN where unknown. Clusters are sorted by
    size (largest first), then side and value; the returned index refers to that order.
    """
    n = len(idle_s)
    member = np.full(n, -1, dtype=np.int64)
    eligible = np.flatnonzero((side != None) & ~np.isnan(idle_s) & (idle_s >= MIN_TIMER_S))  # noqa: E711
    found: list[tuple[TimeoutCluster, np.ndarray]] = []
    for s in ("client", "server"):
        for out in (True, False):
            rows = eligible[(side[eligible] == s) & (outstanding[eligible] == out)]
            if not len(rows):
                continue
            rows = rows[np.lexsort((conn_id[rows], idle_s[rows]))]
            v = idle_s[rows]
            step = np.diff(v) > np.maximum(CLUSTER_ABS_S, CLUSTER_REL * v[1:])
            bounds = np.concatenate([[0], np.flatnonzero(step) + 1, [len(v)]])
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                xs, ids = v[lo:hi], rows[lo:hi]
                t = float(xs[0])
                width = max(float(xs[-1] - xs[0]), CLUSTER_ABS_S)
                reach = max(BACKGROUND_SPAN * width, BACKGROUND_MIN_S)
                around = (np.searchsorted(v, xs[-1] + reach, "right") - np.searchsorted(v, t - reach, "left")
                          - (hi - lo))
                k = TimeoutCluster(s, out, t, int(hi - lo), t, float(xs[-1]), float(xs[-1] - xs[0]),
                                   round_timer(t) is not None, tuple(sorted(int(c) for c in conn_id[ids])),
                                   round_timer(t), int(around))
                found.append((k, ids))
    found.sort(key=lambda kv: (-kv[0].count, kv[0].side, kv[0].timeout_s))
    for i, (_, ids) in enumerate(found):
        member[ids] = i
    return [k for k, _ in found], member


def infer_timeouts(closes: Iterable) -> list[TimeoutCluster]:
    """Timer clusters of :class:`~sockscope.analysis.closes.CloseInfo`-like records
    (``closer``, ``outstanding``, ``idle_s``, ``conn_id``)."""
    cs = list(closes)
    side = np.array([c.closer for c in cs], dtype=object)
    out = np.array([bool(c.outstanding) for c in cs], dtype=bool)
    idle = np.array([np.nan if c.idle_s is None else c.idle_s for c in cs], dtype=np.float64)
    ids = np.array([c.conn_id for c in cs], dtype=np.int64)
    return cluster_closes(side, out, idle, ids)[0]
