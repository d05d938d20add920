"""Diagnosis: who closed each connection, after how much silence, with what outstanding.

Consumes the ``connections``, ``requests`` and ``gaps`` tables (nothing below them).
Produces :class:`Finding` objects and the ``findings`` table, plus inferred timers.

Theory of operation
-------------------
1. A :class:`~sockscope.analysis.model.Context` indexes the tables once: each connection's
   requests are one slice, each column one numpy array.
2. *Close attribution* (:mod:`.closes`), column-wise: the first FIN/RST's side and kind, the
   silence before it (``idle_before_close_s``, from the tracker), and what was outstanding.
3. *Timer inference* (:mod:`.timers`): closes by one side after the same silence, clustered;
   a cluster of two or more (or one close at a round value) is a timer. Nothing assumes 5 s.
4. *Detectors* (:mod:`.detectors`): one module per finding family decides over whole arrays
   and builds a :class:`Finding` (evidence, frames, a Wireshark filter) only for the rows
   that are findings. Per-connection findings are listed by connection, in registry order;
   findings about groups of connections (the root-cause hint) follow.
5. The same rules serve ``diagnose`` (whole capture), ``watch`` (connections as they retire),
   ``check`` (:mod:`.check`) and ``compare`` (:mod:`.compare`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from sockscope import schema
from sockscope.analysis.closes import CloseInfo, classify_close, close_attribution
from sockscope.analysis.detectors import KINDS, MODULE_OF, PER_CONNECTION, rootcause
from sockscope.analysis import points
from sockscope.analysis.model import Context, Finding, Kind
from sockscope.analysis.points import Points
from sockscope.analysis.text import path_template, request_type, ua_family
from sockscope.analysis.timers import MIN_TIMER_S, TimeoutCluster, infer_timeouts


@dataclass
class Diagnosis:
    """Everything ``diagnose`` found in one capture."""

    findings: list[Finding]
    clusters: list[TimeoutCluster]       # timer clusters, largest first
    context: Context
    points: Points | None = None         # two capture points of the same connections, matched

    @cached_property
    def table(self) -> pd.DataFrame:
        """The ``findings`` table (``schema.FINDING_COLUMNS``)."""
        return schema.frame_from_records([f.as_row() for f in self.findings], schema.FINDING_COLUMNS)

    @property
    def timers(self) -> list[TimeoutCluster]:
        """The clusters that are timers (two or more closes alike, or a round value)."""
        return [k for k in self.clusters if k.is_timer]


def per_connection(ctx: Context) -> list[Finding]:
    """The per-connection findings of ``ctx``, by connection (table order), in registry order."""
    found: list[Finding] = [f for module in PER_CONNECTION for f in module.detect(ctx)]
    if not found:
        return found
    pos = pd.Index(ctx.conn_id).drop_duplicates().get_indexer([f.conn_id for f in found])
    rank_of = {id(m): r for r, m in enumerate(PER_CONNECTION)}
    ranks = [rank_of[id(MODULE_OF[f.kind])] for f in found]
    order = np.lexsort((np.arange(len(found)), ranks, pos))
    return [found[i] for i in order]


def diagnosis(cap: Any) -> Diagnosis:
    """Diagnose a capture (an object with ``connections``, ``requests`` and ``gaps`` tables)."""
    ctx = Context.of(cap)
    found = per_connection(ctx)
    found += rootcause.hints(ctx, found)
    pts = points.annotate(ctx, found)
    points.localize_filters(ctx, found)
    return Diagnosis(found, ctx.closes.clusters, ctx, pts)


def diagnose(cap: Any) -> list[Finding]:
    """All findings for a capture, as :class:`Finding` objects."""
    return diagnosis(cap).findings


def findings_table(cap: Any) -> pd.DataFrame:
    """The ``findings`` table of a capture."""
    return diagnosis(cap).table


def verdict(kind: str, rows: pd.DataFrame) -> str:
    """One paragraph on all findings of ``kind`` (rows of the findings table)."""
    return MODULE_OF[kind].verdict(kind, rows) if kind in MODULE_OF else f"{rows['conn_id'].nunique()} connection(s)."


def root_cause_hints(cap: Any, findings: list[Finding]) -> list[Finding]:
    """The root-cause hint for ``findings`` (see :mod:`.detectors.rootcause`)."""
    return rootcause.hints(Context.of(cap), findings)


def heartbeats(cap: Any) -> list[Finding]:
    """Responses kept alive by small periodic writes (see :mod:`.detectors.heartbeat`)."""
    from sockscope.analysis.detectors import heartbeat

    return heartbeat.detect(Context.of(cap))


__all__ = ["KINDS", "MIN_TIMER_S", "CloseInfo", "Context", "Diagnosis", "Finding", "Kind", "Points", "TimeoutCluster",
           "classify_close", "close_attribution", "diagnose", "diagnosis", "findings_table",
           "heartbeats", "infer_timeouts", "path_template", "per_connection", "request_type", "root_cause_hints",
           "ua_family", "verdict"]
