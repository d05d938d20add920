"""Diagnosis of connections as they retire (``watch``), by the same detectors as ``diagnose``.

Sans-I/O: :meth:`LiveDiagnosis.feed` takes the tables of a batch of finished connections
(rows only of those) and returns their per-connection findings. Timers are inferred over
every close seen so far, so a close's kind can change as evidence accumulates: a client
close after 1.234 s with a request waiting is a ``client_abort`` while it is the only one,
and becomes a ``client_idle_timeout`` when a second close agrees with it. Such changes come
back as :class:`Revision` records, so that at the end of a capture every connection carries
the kind ``diagnose`` gives it.

Memory and the work per batch grow with the closes that could be timers (idle >=
``MIN_TIMER_S``: one float and an id each), not with packets or connections, and only up to
the last :data:`HISTORY_MAX` of them: a ``watch`` that runs for days judges timers by the
recent past (a soak of 12M packets showed the cost per batch rising with uptime while the
history was unbounded). Below that many closes, watch and diagnose see the same closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sockscope.analysis.model import Context, Finding
from sockscope.analysis.timers import MIN_TIMER_S, TimeoutCluster, cluster_closes


HISTORY_MAX = 50_000     # timer-eligible closes kept (the most recent)


@dataclass
class CloseHistory:
    """The closes that can belong to a timer (idle >= MIN_TIMER_S), as parallel arrays."""

    side: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    outstanding: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    idle_s: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    conn_id: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def extend(self, side: np.ndarray, outstanding: np.ndarray, idle_s: np.ndarray, conn_id: np.ndarray) -> None:
        keep = (side != None) & ~np.isnan(idle_s) & (idle_s >= MIN_TIMER_S)  # noqa: E711
        self.side = np.concatenate([self.side, side[keep]])
        self.outstanding = np.concatenate([self.outstanding, outstanding[keep]])
        self.idle_s = np.concatenate([self.idle_s, idle_s[keep]])
        self.conn_id = np.concatenate([self.conn_id, conn_id[keep]])
        if len(self.idle_s) > HISTORY_MAX:
            cut = len(self.idle_s) - HISTORY_MAX
            self.side, self.outstanding = self.side[cut:], self.outstanding[cut:]
            self.idle_s, self.conn_id = self.idle_s[cut:], self.conn_id[cut:]


@dataclass(frozen=True, slots=True)
class Revision:
    """An earlier close now named differently, because the timers it is judged by changed."""

    conn_id: int
    was: str
    now: str
    cluster: TimeoutCluster | None


class LiveDiagnosis:
    """Feed batches of finished connections; get their findings and revisions of earlier ones."""

    def __init__(self, min_gap_s: float = 1.0) -> None:
        self.min_gap_s = min_gap_s
        self.history = CloseHistory()
        # kinds that depend on the timers: client closes with a request waiting after >= MIN_TIMER_S
        self._judged: dict[int, str] = {}
        self.clusters: list[TimeoutCluster] = []

    def feed(self, connections: pd.DataFrame, requests: pd.DataFrame, gaps: pd.DataFrame | None,
             stalls: pd.DataFrame | None = None) -> tuple[list[Finding], list[Revision]]:
        from sockscope.analysis import per_connection

        ctx = Context(connections, requests, gaps, self.min_gap_s, history=self.history, stalls=stalls)
        found = per_connection(ctx)
        cl = ctx.closes
        self.history.extend(cl.closer, cl.n_outstanding > 0, cl.idle_s, ctx.conn_id)
        self.clusters = cl.clusters
        kinds = cl.kinds()
        for pos in np.flatnonzero(np.isin(kinds, ("client_idle_timeout", "client_abort"))
                                  & ~np.isnan(cl.idle_s) & (cl.idle_s >= MIN_TIMER_S)).tolist():
            self._judged[int(ctx.conn_id[pos])] = str(kinds[pos])
        if len(self._judged) > HISTORY_MAX:
            # a close that left the history can no longer be revised: forget its kind
            # (dicts keep insertion order, and closes are judged in order)
            for cid in list(self._judged)[:len(self._judged) - HISTORY_MAX]:
                del self._judged[cid]
        return found, self._revise(ctx.conn_id)

    def _revise(self, fresh: np.ndarray) -> list[Revision]:
        """Earlier client closes whose kind the latest timers change."""
        h = self.history
        if not self._judged:
            return []
        clusters, member = cluster_closes(h.side, h.outstanding, h.idle_s, h.conn_id)
        out = []
        new = set(fresh.tolist())
        for i in np.flatnonzero((h.side == "client") & h.outstanding).tolist():
            cid = int(h.conn_id[i])
            was = self._judged.get(cid)
            if was is None or cid in new:
                continue
            k = clusters[member[i]] if member[i] >= 0 else None
            now = "client_idle_timeout" if k is not None and k.is_timer else "client_abort"
            if now != was:
                self._judged[cid] = now
                out.append(Revision(cid, was, now, k))
        return out

    def kinds(self) -> dict[int, str]:
        """The current kind of every client close whose kind depends on the timers."""
        return dict(self._judged)


def feed_result(live: LiveDiagnosis, result: Any) -> tuple[list[Finding], list[Revision]]:
    """:meth:`LiveDiagnosis.feed` with an engine batch (Arrow tables)."""
    conns, reqs, gaps = result.frames()
    return live.feed(conns, reqs, gaps, result.stalls_frame())


__all__ = ["HISTORY_MAX", "CloseHistory", "LiveDiagnosis", "Revision", "feed_result"]

