"""What the detectors share: the :class:`Finding` record, the finding-kind registry entry
:class:`Kind`, and :class:`Context`, the tables of one capture as columns.

A :class:`Context` is built once per diagnosis. It indexes the requests by connection once
(a sort, then two ``searchsorted``), so a detector reaches the requests of connection *p* as
the slice ``reqs[lo:hi]`` instead of filtering the table per connection, and it caches each
column it hands out as a numpy array. Detectors decide over whole arrays and turn cells back
into Python values only for the rows that became findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sockscope.analysis import _cols

if TYPE_CHECKING:
    from sockscope.analysis.closes import Closes
    from sockscope.analysis.points import Points

@dataclass(slots=True)
class Finding:
    """One diagnosis with the evidence behind it (a row of the ``findings`` table)."""

    kind: str
    severity: str
    conn_id: int | None
    request_index: int | None
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    display_filter: str = ""

    def as_row(self) -> dict[str, Any]:
        # Shallow: the evidence dict is shared, not deep-copied (dataclasses.asdict copies
        # every nested list and dict, a third of a big diagnosis' time).
        return {"kind": self.kind, "severity": self.severity, "conn_id": self.conn_id,
                "request_index": self.request_index, "summary": self.summary, "evidence": self.evidence,
                "display_filter": self.display_filter}


@dataclass(frozen=True, slots=True)
class Kind:
    """A finding kind of the vocabulary: its name (the contract), severity and title."""

    name: str
    severity: str
    title: str                  # a heading for text faces
    advice: str = ""            # what to do, one line


class Context:
    """One capture's tables, indexed for column-wise detectors."""

    def __init__(self, connections: pd.DataFrame, requests: pd.DataFrame, gaps: pd.DataFrame | None,
                 min_gap_s: float = 1.0, history: Any = None, stalls: pd.DataFrame | None = None) -> None:
        self.history = history      # closes seen before these rows (live mode): timers span both
        self.conns = connections
        self.gaps = gaps if gaps is not None else pd.DataFrame()
        self.stalls = stalls if stalls is not None else pd.DataFrame()
        self.min_gap_s = min_gap_s
        self.n = len(connections)
        self.conn_id = connections["conn_id"].to_numpy(dtype=np.int64) if self.n else np.zeros(0, np.int64)
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        # Requests in connection order: each connection's requests are one slice.
        if len(requests) and self.n:
            ids = pd.Index(self.conn_id)
            if not ids.is_unique:
                ids = ids.drop_duplicates()
            pos = ids.get_indexer(requests["conn_id"].to_numpy(dtype=np.int64))
            if (pos < 0).any() or (np.diff(pos) < 0).any():
                keep = np.flatnonzero(pos >= 0)
                order = keep[np.argsort(pos[keep], kind="stable")]
                requests = requests.iloc[order].reset_index(drop=True)
                pos = pos[order]
            self.reqs = requests
            self.req_pos = pos.astype(np.int64)
        else:
            self.reqs = requests.iloc[:0] if len(requests) else requests
            self.req_pos = np.zeros(0, np.int64)
        at = np.arange(self.n)
        self._req_lo = np.searchsorted(self.req_pos, at, side="left")
        self._req_hi = np.searchsorted(self.req_pos, at, side="right")
        self.req_count = self._req_hi - self._req_lo

    @classmethod
    def of(cls, cap: Any) -> "Context":
        """The context of an object with ``connections``, ``requests`` and ``gaps`` tables
        (a Capture's capture-point match, made at load, is reused)."""
        ctx = cls(cap.connections, cap.requests, cap.gaps, getattr(cap, "min_gap_s", 1.0),
                  stalls=getattr(cap, "stalls", None))
        pts = getattr(cap, "_points", None)
        if pts is not None:
            ctx.__dict__["points"] = pts
        return ctx

    # -- columns -------------------------------------------------------------------------
    def _col(self, table: str, name: str, conv: Any) -> np.ndarray:
        key = (table, name)
        got = self._cache.get(key)
        if got is None:
            df = self.conns if table == "c" else self.reqs
            if name in df.columns:
                got = conv(df[name])
            elif conv is _cols.texts:   # a column outside the contract (close details) it lacks: all missing
                got = np.full(len(df), None, dtype=object)
            elif conv is _cols.flags:
                got = np.zeros(len(df), dtype=bool)
            else:
                got = np.full(len(df), _cols.NAT if conv is _cols.ns else _cols.NO_FRAME, dtype=np.int64)
            self._cache[key] = got
        return got

    def ns(self, name: str) -> np.ndarray:
        """A connections timestamp column as int64 ns (``_cols.NAT`` where missing)."""
        return self._col("c", name, _cols.ns)

    def frames(self, name: str) -> np.ndarray:
        """A connections frame-number column as int64 (``_cols.NO_FRAME`` where missing)."""
        return self._col("c", name, _cols.frames)

    def flag(self, name: str) -> np.ndarray:
        """A connections boolean column as a bool array (False where missing)."""
        return self._col("c", name, _cols.flags)

    def text(self, name: str) -> np.ndarray:
        """A connections text/category column as an object array (None where missing)."""
        return self._col("c", name, _cols.texts)

    def req_ns(self, name: str) -> np.ndarray:
        return self._col("r", name, _cols.ns)

    def req_frames(self, name: str) -> np.ndarray:
        return self._col("r", name, _cols.frames)

    def req_text(self, name: str) -> np.ndarray:
        return self._col("r", name, _cols.texts)

    def stall_rows(self, kind: str) -> tuple[pd.DataFrame, np.ndarray]:
        """The stalls of one kind whose connection is in these rows, and each one's
        connection position."""
        st = self.stalls
        if st is None or st.empty or not self.n:
            return pd.DataFrame(), np.zeros(0, np.int64)
        st = st[(st["kind"] == kind).to_numpy(dtype=bool)]
        pos = pd.Index(self.conn_id).get_indexer(st["conn_id"].to_numpy(dtype=np.int64))
        keep = pos >= 0
        return st[keep].reset_index(drop=True), pos[keep].astype(np.int64)

    def req_bounds(self, pos: int) -> tuple[int, int]:
        """The slice of ``reqs`` that holds connection ``pos``'s requests."""
        return int(self._req_lo[pos]), int(self._req_hi[pos])

    @cached_property
    def closes(self) -> "Closes":
        from sockscope.analysis.closes import attribute

        return attribute(self)

    @cached_property
    def points(self) -> "Points | None":
        """Two capture points of the same connections, matched (None: one point)."""
        from sockscope.analysis.points import match

        return match(self)

    # -- cells, for the rows that became findings ------------------------------------------
    def endpoint(self, pos: int, side: str) -> str:
        """``ip:port`` of the client or server of connection ``pos``."""
        return f"{self.text(side + '_ip')[pos]}:{self.frames(side + '_port')[pos]}"

    def chain(self, pos: int) -> list[dict[str, Any]]:
        """The requests of connection ``pos`` as evidence: what was sent, answered, when."""
        lo, hi = self.req_bounds(pos)
        if lo == hi:
            return []
        idx = self.reqs["index"].to_numpy()
        method, uri, ua = self.req_text("method"), self.req_text("uri"), self.req_text("user_agent")
        status = self.req_frames("status")
        outcome = self.req_text("outcome")
        sent = self.req_ns("request_start")
        first = self.req_frames("first_frame")
        last = self.req_frames("request_last_frame") if "request_last_frame" in self.reqs else None
        return [{
            "index": int(idx[i]), "method": method[i], "uri": uri[i], "user_agent": ua[i],
            "status": _cols.frame(status[i]), "outcome": outcome[i], "sent": _cols.iso(sent[i]),
            "first_frame": _cols.frame(first[i]),
            "request_last_frame": None if last is None else _cols.frame(last[i]),
        } for i in range(lo, hi)]
