"""Native engine: capture -> tracker -> compact columns -> typed tables.

Consumes a capture (path, ``-`` or binary file object). Produces the ``connections``,
``requests`` and ``gaps`` tables of :mod:`sockscope.schema` plus file facts.

Rows are kept column-wise in ``array('q')`` buffers (integers, with a sentinel for
missing values) and interned strings while the capture streams through, so memory per
finished connection is a few hundred bytes, not a Python dict per row.

The tables are built as Arrow tables with the types of :func:`schema.arrow_type`: the CLI
writes JSON from them without importing pandas (0.7 s and 60 MB of a run), and
:meth:`EngineResult.frames` gives the pandas frames of the Python API.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import os
import socket
from array import array
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

import numpy as np
import pyarrow as pa

try:
    import cython
except ImportError:  # running the plain .py without Cython: the annotations are not needed
    class cython:  # type: ignore[no-redef]  # noqa: N801
        compiled = False
        Py_ssize_t = longlong = object

from sockscope import schema
from sockscope._rows import gather_texts, take_table
from sockscope.capture import open_source
from sockscope.capture._source import TUNNEL_NAMES
from sockscope.http import EXCHANGE_FIELDS, Exchange, HttpSession, detect
from sockscope.tcp._tracker import (GAP_ENDED_BY, PROTOCOL_CODES, SHARD_BUCKETS, STATE_CODES, _STATE_NAMES,
                                    RowStore, Tracker)

NA = -(2**63)

# Connection columns kept by the engine: name -> kind ('i' int, 't' timestamp ns, 's' str).
_CONN_FIELDS: dict[str, str] = {
    "conn_id": "i", "client_ip": "s", "client_port": "i", "server_ip": "s", "server_port": "i",
    "roles_from": "s", "start": "t", "end": "t", "client_pkts": "i", "server_pkts": "i",
    "client_bytes": "i", "server_bytes": "i", "client_ip_bytes": "i", "server_ip_bytes": "i",
    "state": "s", "history": "s", "closed_by": "s", "close_kind": "s", "close_ts": "t",
    "close_frame": "i", "idle_close_ns": "i", "requests": "i", "unanswered": "i", "protocol": "s",
    "sni": "s", "retransmits": "i", "gap_count": "i", "missed_bytes": "i", "last_payload_ts": "t",
    "last_payload_frame": "i", "last_payload_by": "s", "first_frame": "i", "last_frame": "i",
    "client_fin_ts": "t", "client_fin_frame": "i", "server_fin_ts": "t", "server_fin_frame": "i",
    "client_rst_ts": "t", "client_rst_frame": "i", "server_rst_ts": "t", "server_rst_frame": "i",
    "data_after_close_pkts": "i", "data_after_close_bytes": "i", "data_after_close_frame": "i",
    "data_after_close_ts": "t", "data_after_close_by": "s", "data_after_close_rst_ts": "t",
    "data_after_close_rst_frame": "i",
    "client_ttl_min": "i", "client_ttl_max": "i", "client_rst_ttl": "i", "client_rst_ip_id": "i",
    "client_ip_id_before_rst": "i", "server_ttl_min": "i", "server_ttl_max": "i", "server_rst_ttl": "i",
    "server_rst_ip_id": "i", "server_ip_id_before_rst": "i",
    "client_unacked_since_ts": "t", "client_unacked_since_frame": "i", "client_unacked_retransmits": "i",
    "client_unacked_bytes": "i", "client_unacked_peer_quiet_ns": "i", "server_unacked_since_ts": "t",
    "server_unacked_since_frame": "i", "server_unacked_retransmits": "i", "server_unacked_bytes": "i",
    "server_unacked_peer_quiet_ns": "i", "client_unacked_acked_bytes": "i", "server_unacked_acked_bytes": "i",
    "client_unseen_acked_bytes": "i", "client_unseen_acked_ts": "t", "server_unseen_acked_bytes": "i",
    "server_unseen_acked_ts": "t", "close_by_ack": "b",
    "client_state": "s", "server_state": "s", "tunnel": "s", "tunnel_id": "i",
}

_REQ_FIELDS: dict[str, str] = {
    "conn_id": "i", "index": "i", "method": "s", "uri": "s", "host": "s", "user_agent": "s",
    "version": "s", "status": "i", "reason": "s", "info_code": "i", "request_start": "t",
    "request_end": "t", "response_start": "t", "response_end": "t", "request_body_len": "i",
    "response_body_len": "i", "response_body_decoded_len": "i", "req_content_type": "s",
    "resp_content_type": "s", "req_connection": "s", "resp_connection": "s", "resp_keep_alive": "s",
    "outcome": "s", "ended_by": "s", "first_frame": "i", "last_frame": "i", "resp_version": "s",
    "request_first_frame": "i", "request_last_frame": "i", "response_first_frame": "i",
    "response_last_frame": "i",
}

_GAP_FIELDS: dict[str, str] = {
    "conn_id": "i", "start": "t", "end": "t", "outstanding": "i", "ended_by": "s",
    "start_frame": "i", "end_frame": "i", "started_by": "s",
}

# the tracker's stall tuples: (kind, side, start, start_frame, end, end_frame, probes, resolved, quiet_ns)
_STALL_FIELDS: dict[str, str] = {
    "conn_id": "i", "kind": "i", "side": "i", "start": "t", "start_frame": "i", "end": "t", "end_frame": "i",
    "probes": "i", "resolved": "i", "quiet_ns": "i",
}


_TS = pa.timestamp("ns", tz="UTC")


def _i64(buf: Any) -> np.ndarray:
    """An int64 numpy view of an array('q'), or an int64 copy of a narrower one."""
    typ = buf.typecode if isinstance(buf, array) else "q"
    if not len(buf):
        return np.zeros(0, dtype=np.int64)
    return np.frombuffer(buf, dtype=np.int64) if typ == "q" else np.frombuffer(buf, dtype=typ).astype(np.int64)


def _arrow_ints(arr: np.ndarray, kind: str) -> pa.Array:
    """int64 values with the NA sentinel -> UTC timestamps ('t') or integers, NA as null."""
    mask = arr == NA
    typ = _TS if kind == "t" else pa.int64()
    return pa.array(arr, type=typ, mask=mask) if mask.any() else pa.array(arr, type=typ)


def _secs(ns: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Integer nanoseconds -> float seconds (correctly rounded: one division), null where masked."""
    secs = ns / 1e9
    return pa.array(secs, type=pa.float64(), mask=mask) if mask is not None and mask.any() \
        else pa.array(secs, type=pa.float64())


def _categories(values: Any, categories: list[str]) -> pa.DictionaryArray:
    """Text values (None for missing) -> a dictionary column over exactly ``categories``."""
    pos = {c: i for i, c in enumerate(categories)}
    codes = np.fromiter((pos.get(v, -1) if v is not None else -1 for v in values), dtype=np.int8,
                        count=len(values))
    return pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), pa.array(categories, type=pa.string()))


def _row_order(*keys: np.ndarray) -> np.ndarray | None:
    """The stable order that sorts rows by ``keys`` (the first the most significant), or
    None when the rows are in that order already (tables arrive mostly in order)."""
    if not len(keys[0]):
        return None
    order = np.lexsort(keys[::-1])
    return None if bool(np.all(order[1:] > order[:-1])) else order


def _by_conn_and_start(g: "_Columns") -> tuple[dict[str, Any], Callable[[str], np.ndarray]]:
    """A sparse table's columns in (conn_id, start) order, and its integer columns in that
    order by name."""
    order = _row_order(_i64(g.cols["conn_id"]), _i64(g.cols["start"]))

    def ints(name: str) -> np.ndarray:
        v = _i64(g.cols[name])
        return v if order is None else v[order]

    return g.arrays(order), ints


def _contract_order(cols: dict[str, Any], table: str) -> pa.Table:
    """The contract's columns in its order, then the engine's extra columns in theirs."""
    spec = schema.spec(table)
    names = [c for c in spec if c in cols] + [c for c in cols if c not in spec]
    return pa.table({c: cols[c] for c in names})


def _int64s(vals: tuple) -> array:
    """Python ints (None for missing) -> array('q') with the NA sentinel; a typed loop once
    compiled (array('q', list) converts through a generic per-item setter)."""
    n: cython.Py_ssize_t = len(vals)
    out = array("q", bytes(8 * n))
    if not cython.compiled:
        out[:] = array("q", [NA if v is None else v for v in vals])
        return out
    mv: cython.longlong[:] = out
    j: cython.Py_ssize_t
    for j in range(n):
        v = vals[j]
        mv[j] = NA if v is None else v
    return out


# Distinct texts kept per request column before new ones are stored without a lookup entry
# (a flood of unique URIs must not grow the index beyond this).
_TEXT_INDEX_CAP = 1 << 18


def _text_codes(vals: tuple, index: dict | None, texts: list) -> array:
    """Texts (None for missing) -> int32 positions in ``texts`` (-1 for missing); new texts
    are appended, each distinct one once while ``index`` has room (every one when there is
    no index: a column of mostly distinct texts is not worth hashing)."""
    n: cython.Py_ssize_t = len(vals)
    out = array("i", bytes(4 * n))
    mv: cython.int[:] = out
    j: cython.Py_ssize_t
    last: object = None     # exchanges come grouped by connection: a text often repeats the
    last_code: cython.int = -1     # previous row's (host, agent, types), and comparing is cheaper than hashing
    for j in range(n):
        v = vals[j]
        if v is None:
            mv[j] = -1
            continue
        if index is None:
            mv[j] = len(texts)
            texts.append(v)
            continue
        if last is not None and type(v) is str and v == last:
            mv[j] = last_code
            continue
        c = index.get(v)
        if c is None:
            c = len(texts)
            texts.append(v)
            if len(index) < _TEXT_INDEX_CAP:
                index[v] = c
        mv[j] = c
        last, last_code = v, c
    return out


class _Columns:
    """Append-only column store: int64 arrays with a NA sentinel, interned strings."""

    def __init__(self, spec: dict[str, str]):
        self.spec = spec
        self.cols: dict[str, Any] = {k: (array("q") if t in "it" else []) for k, t in spec.items()}
        self._intern: dict[str, str] = {}
        self.n = 0

    def append(self, row: dict[str, Any]) -> None:
        intern = self._intern
        for k, t in self.spec.items():
            v = row.get(k)
            if t == "s":
                if v is not None:
                    v = intern.setdefault(v, v) if len(v) < 64 else v
                self.cols[k].append(v)
            else:
                self.cols[k].append(NA if v is None else int(v))
        self.n += 1

    def arrays(self, order: np.ndarray | None = None) -> dict[str, pa.Array]:
        """The columns as Arrow arrays (rows in ``order`` if given)."""
        out: dict[str, pa.Array] = {}
        for k, t in self.spec.items():
            col = self.cols[k]
            if t == "s":
                a = pa.array(col, type=pa.string())
                out[k] = a.take(order) if order is not None else a
            else:
                v = _i64(col)
                out[k] = _arrow_ints(v[order] if order is not None else v, t)
        return out


_ip_cache: dict[bytes, str] = {}


def _ip(b: bytes) -> str:
    s = _ip_cache.get(b)
    if s is None:
        # inet_ntop is 10x faster; IPv6 keeps ipaddress's spelling (mapped forms differ)
        s = socket.inet_ntop(socket.AF_INET, b) if len(b) == 4 else str(ipaddress.ip_address(b))
        if len(_ip_cache) < 65_536:     # a flood of distinct addresses must not grow it
            _ip_cache[b] = s
    return s


def _ended_by(row: dict[str, Any], after_ns: int | None) -> str:
    """What ended an incomplete exchange: the first close at/after the request, else capture end."""
    events = []
    for side in ("client", "server"):
        for kind in ("fin", "rst"):
            ts = row.get(f"{side}_{kind}_ts")
            if ts is not None and (after_ns is None or ts >= after_ns):
                events.append((ts, 0 if kind == "rst" else 1, f"{side}_{kind}"))
    if not events:
        return "capture_end"
    return min(events)[2]


@dataclass
class EngineResult:
    """The engine's tables as Arrow tables (contract columns first, then extra columns)."""

    connections: pa.Table
    requests: pa.Table
    gaps: pa.Table
    facts: dict[str, Any] = field(default_factory=dict)
    stalls: pa.Table = field(default_factory=lambda: _empty_table("stalls"))

    def frames(self) -> tuple[Any, Any, Any]:
        """connections, requests, gaps as pandas frames with the contract's dtypes."""
        return (schema.frame_from_arrow(self.connections, "connections"),
                schema.frame_from_arrow(self.requests, "requests"),
                schema.frame_from_arrow(self.gaps, "gaps"))

    def stalls_frame(self) -> Any:
        """The stalls table as a pandas frame with the contract's dtypes."""
        return schema.frame_from_arrow(self.stalls, "stalls")


def _empty_table(table: str) -> pa.Table:
    """A table of the contract with no rows."""
    return pa.table({name: pa.array([], type=schema.arrow_type(kind)) for name, kind in schema.spec(table).items()})


_BATCH = 4096

_CLOSE_EVENTS = ("client_fin", "server_fin", "client_rst", "server_rst")
_OUTCOME_CODE = {o: i for i, o in enumerate(schema.OUTCOMES)}
_ENDED_CODE = {e: i for i, e in enumerate(schema.ENDED_BY)}

_EX_ATTRS = (
    "index", "method", "uri", "host", "user_agent", "version", "status", "reason", "info_code",
    "request_start_ns", "request_end_ns", "response_start_ns", "response_end_ns", "request_body_len",
    "response_body_len", "response_body_decoded_len", "req_content_type", "resp_content_type",
    "req_connection", "resp_connection", "resp_keep_alive", "first_frame", "last_frame", "resp_version",
    "request_first_frame", "request_last_frame", "response_first_frame", "response_last_frame",
)


class _Sink:
    """Receives, per retired connection that had HTTP or silences, its exchanges and gaps."""

    def __init__(self, keep_requests: bool = True, keep_gaps: bool = True) -> None:
        self.keep_requests = keep_requests
        self.keep_gaps = keep_gaps
        # positions of the stored attributes in Exchange.as_tuple()
        self._pos = [EXCHANGE_FIELDS.index(a) for a in _EX_ATTRS]
        self._kinds = [_REQ_FIELDS.get(a[:-3] if a.endswith("_ns") else a, "s") for a in _EX_ATTRS]
        # Exchanges become columns soon after their connection retires: int64 arrays, and
        # for texts int32 codes into a list of the distinct texts (methods, hosts, agents
        # repeat: one copy each; the table gathers them back with _rows.gather_texts).
        self.req_cols: list[Any] = [array("q") if k in "it" else array("i") for k in self._kinds]
        self._text_index: list[dict[str, int] | None] = [{} for _ in self._kinds]
        self._texts: list[list[str]] = [[] for _ in self._kinds]
        self.ex_conn = array("q")
        # Exchanges become columns a few thousand at a time: per connection (5 requests on
        # average) the per-column extend calls cost more than the values they copy.
        self._batch: list = []
        self._batch_conn: list[int] = []
        self.ex_outcome = array("b")       # positions in schema.OUTCOMES
        self.ex_ended = array("b")         # positions in schema.ENDED_BY, -1: none
        self.ex_late = array("b")          # response_after_close
        self.gaps = _Columns(_GAP_FIELDS)
        self.stalls = _Columns(_STALL_FIELDS)
        self.violations: dict[str, list[int]] = {}
        self.violation_counts: dict[str, int] = {}

    def __call__(self, conn_id: int, session, raw_gaps, proto: int, closes, raw_stalls=()) -> tuple[int, int]:
        """A retired connection's exchanges, silences and stalls: (requests, unanswered)."""
        n_req, unanswered, req_spans = self._exchanges(conn_id, session, closes)
        self._gaps(conn_id, raw_gaps, proto, req_spans)
        self._stalls(conn_id, raw_stalls)
        return n_req, unanswered

    def release(self, conn_id: int, session, raw_gaps, proto: int, closes) -> tuple[int, int, int | None]:
        """A connection both sides closed with a FIN, before its linger ends (the tracker's
        ``release_app``): its exchanges and the silences so far. Returns (requests,
        unanswered, the end of the first request never answered or None): all a silence
        that ends later needs, since no response can begin after both FINs."""
        n_req, unanswered, req_spans = self._exchanges(conn_id, session, closes)
        self._gaps(conn_id, raw_gaps, proto, req_spans)
        waiting = min((end for end, answer in req_spans if answer is None), default=None)
        return n_req, unanswered, waiting

    def rest(self, conn_id: int, raw_gaps, proto: int, raw_stalls, waiting: int | None) -> None:
        """What a released connection adds when it retires: silences that ended after the
        release, and its stalls."""
        self._gaps(conn_id, raw_gaps, proto, [] if waiting is None else [(waiting, None)])
        self._stalls(conn_id, raw_stalls)

    def _exchanges(self, conn_id: int, session, closes) -> tuple[int, int, list[tuple[int, int | None]]]:
        exchanges = session.finish() if session is not None else []
        n_req = unanswered = 0
        req_spans: list[tuple[int, int | None]] = []
        events = None       # the closes in time order, sorted only if a request was cut off
        outcomes: list[int] = []
        ended_by: list[int] = []
        late: list[int] = []
        client_close = min((ts for ts in (closes[0], closes[2]) if ts is not None), default=None)
        for ex in exchanges:
            # the answer began after the client's first FIN/RST: it was sent to a closed socket
            late.append(1 if client_close is not None and ex.response_start_ns is not None
                        and ex.response_start_ns > client_close else 0)
            if ex.no_request:
                outcome = "no_request"
            elif ex.response_complete:
                outcome = "complete"
            elif ex.response_start_ns is not None:
                outcome = "partial_response"
            else:
                outcome = "no_response"
            ended = None
            if not ex.no_request:
                n_req += 1
                if outcome != "complete":
                    unanswered += 1
                if ex.request_end_ns is not None:
                    req_spans.append((ex.request_end_ns, ex.response_start_ns))
            if outcome != "complete":
                # the first close at or after the request began, else the end of the capture
                after = ex.request_start_ns if ex.request_start_ns is not None else ex.response_start_ns
                if events is None:
                    events = sorted((ts, 0 if "rst" in name else 1, name)
                                    for ts, name in zip(closes, _CLOSE_EVENTS) if ts is not None)
                ended = next((name for ts, _, name in events if after is None or ts >= after), "capture_end")
            outcomes.append(_OUTCOME_CODE[outcome])
            ended_by.append(-1 if ended is None else _ENDED_CODE[ended])
        if self.keep_requests and exchanges:
            self._batch.extend(exchanges)
            self._batch_conn.extend([conn_id] * len(exchanges))
            self.ex_outcome.extend(outcomes)
            self.ex_ended.extend(ended_by)
            self.ex_late.extend(late)
            if len(self._batch) >= _BATCH:
                self.flush()
        if session is not None:
            dropped = getattr(session, "dropped_requests", 0)
            if dropped:
                # beyond the per-connection cap requests are counted, not stored: say so
                self.violation_counts["pending_requests_capped"] = \
                    self.violation_counts.get("pending_requests_capped", 0) + dropped
                self.violations.setdefault("pending_requests_capped", [])
            for kind, frame in session.violations:
                lst = self.violations.setdefault(kind, [])
                self.violation_counts[kind] = self.violation_counts.get(kind, 0) + 1
                if len(lst) < 20:
                    lst.append(frame)
        return n_req, unanswered, req_spans

    def _gaps(self, conn_id: int, raw_gaps, proto: int, req_spans: list[tuple[int, int | None]]) -> None:
        for (s_ts, s_frame, e_ts, e_frame, code, start_code) in (raw_gaps if self.keep_gaps else ()):
            if proto == 1:
                outstanding = any(rend <= s_ts and (rstart is None or rstart >= e_ts)
                                  for rend, rstart in req_spans)
            else:
                # Without HTTP framing: a request is waiting when the client spoke last.
                outstanding = start_code == 0
            self.gaps.append({
                "conn_id": conn_id, "start": s_ts, "end": e_ts, "outstanding": int(outstanding),
                "ended_by": GAP_ENDED_BY[code], "start_frame": s_frame,
                "end_frame": None if e_frame < 0 else e_frame,
                "started_by": None if start_code < 0 else GAP_ENDED_BY[start_code],
            })

    def _stalls(self, conn_id: int, raw_stalls) -> None:
        for st in raw_stalls:
            self.stalls.append(dict(zip(_STALL_FIELDS, (conn_id, *st))))

    def flush(self) -> None:
        """Turn the exchanges waiting in the batch into columns (``ex_conn``, ``req_cols``)."""
        if not self._batch:
            return
        fields = list(zip(*map(Exchange.as_tuple, self._batch)))
        for k, (col, kind, i) in enumerate(zip(self.req_cols, self._kinds, self._pos)):
            if kind == "s":
                col.extend(_text_codes(fields[i], self._text_index[k], self._texts[k]))
                if self._text_index[k] is not None and len(col) >= 8192 and 2 * len(self._texts[k]) > len(col):
                    # mostly distinct (URIs): stop hashing them, and drop the index's memory
                    self._text_index[k] = None
            else:
                col.extend(_int64s(fields[i]))
        self.ex_conn.extend(array("q", self._batch_conn))
        self._batch = []
        self._batch_conn = []

    def requests_table(self) -> pa.Table:
        """The exchanges of every retired connection, in (conn_id, index) order.

        Each stored column is released as soon as its Arrow column is built, so the
        requests are never held twice (152k requests: 60 MB less at the peak).
        """
        self.flush()
        conn = _i64(self.ex_conn)
        index = _i64(self.req_cols[_EX_ATTRS.index("index")])
        # connections retire out of id order; a stable sort puts each one's exchanges together
        order = _row_order(conn, index)
        cols: dict[str, Any] = {"conn_id": pa.array(conn if order is None else conn[order], type=pa.int64())}
        self.ex_conn = array("q")
        kept: dict[str, np.ndarray] = {}
        for k, (attr, kind) in enumerate(zip(_EX_ATTRS, self._kinds)):
            name = attr[:-3] if attr.endswith("_ns") else attr
            vals = self.req_cols[k]
            self.req_cols[k] = array("i") if kind == "s" else array("q")
            if kind == "s":
                codes = np.frombuffer(vals, dtype=np.int32) if len(vals) else np.zeros(0, dtype=np.int32)
                if order is not None:
                    codes = codes[order]
                texts = pa.array(self._texts[k], type=pa.string())
                self._texts[k], self._text_index[k] = [], {}
                cols[name] = gather_texts(texts, codes)
                del vals, codes, texts
                continue
            v = _i64(vals) if order is None else _i64(vals)[order]
            del vals
            if name in ("request_body_len", "response_body_len"):
                v = np.where(v == NA, 0, v)      # no body seen: zero bytes (Zeek's convention)
            if name in ("response_start", "request_end"):
                kept[name] = v
            cols[name] = _arrow_ints(v, kind)
        start, end = kept["response_start"], kept["request_end"]
        cols["ttfb_s"] = _secs(start - end, (start == NA) | (end == NA))
        for name, codes, cats in (("outcome", self.ex_outcome, schema.OUTCOMES),
                                  ("ended_by", self.ex_ended, schema.ENDED_BY)):
            idx = np.frombuffer(codes, dtype=np.int8) if len(codes) else np.zeros(0, dtype=np.int8)
            idx = idx if order is None else idx[order]
            cols[name] = pa.DictionaryArray.from_arrays(pa.array(idx, mask=idx < 0),
                                                        pa.array(cats, type=pa.string()))
        self.ex_outcome, self.ex_ended = array("b"), array("b")
        late = np.frombuffer(self.ex_late, dtype=np.int8) if len(self.ex_late) else np.zeros(0, dtype=np.int8)
        cols["response_after_close"] = pa.array((late if order is None else late[order]) != 0, type=pa.bool_())
        self.ex_late = array("b")
        return _contract_order(cols, "requests")

    def gaps_table(self) -> pa.Table:
        """The silences of every retired connection, in (conn_id, start) order."""
        cols, ints = _by_conn_and_start(self.gaps)
        cols["duration_s"] = _secs(ints("end") - ints("start"))
        cols["outstanding"] = pa.array(ints("outstanding") != 0, type=pa.bool_())
        cols["ended_by"] = _categories(cols["ended_by"].to_pylist(), schema.GAP_ENDED_BY)
        return _contract_order(cols, "gaps")

    def stalls_table(self) -> pa.Table:
        """The stalls of every retired connection, in (conn_id, start) order."""
        cols, ints = _by_conn_and_start(self.stalls)
        for name, cats in (("kind", schema.STALL_KINDS), ("side", ["client", "server"])):
            idx = ints(name).astype(np.int8)
            cols[name] = pa.DictionaryArray.from_arrays(pa.array(idx), pa.array(cats, type=pa.string()))
        cols["duration_s"] = _secs(ints("end") - ints("start"))
        cols["probes"] = pa.array(ints("probes"), type=pa.int64())
        cols["resolved"] = pa.array(ints("resolved") != 0, type=pa.bool_())
        quiet = ints("quiet_ns")
        cols["peer_quiet_before_s"] = _secs(quiet, quiet < 0)
        del cols["quiet_ns"]
        return _contract_order(cols, "stalls")


_CODE_COLUMNS = {
    "roles_from": ("syn", "heuristic"), "state": STATE_CODES, "closed_by": ("client", "server"),
    "close_kind": ("FIN", "RST"), "last_payload_by": ("client", "server"),
    "data_after_close_by": ("client", "server"), "protocol": PROTOCOL_CODES,
    "client_state": _STATE_NAMES, "server_state": _STATE_NAMES, "tunnel": TUNNEL_NAMES[1:],
}


def _connections_table(rows: RowStore, release: bool = False) -> pa.Table:
    """The row store as a table in conn_id order (rows arrive in retirement order).

    Each column is put in order as it is built, so the table is never copied whole to sort
    it; with ``release`` the row store's copy of a column goes as soon as it is built.
    """
    contract = schema.spec("connections")
    order = _row_order(_i64(rows.ints["conn_id"]))
    picks = None if order is None else order.tolist()      # for the object columns

    def ordered(values: Any) -> Any:
        if order is None:
            return values
        if isinstance(values, np.ndarray):
            return values[order]
        return [values[i] for i in picks]

    cols: dict[str, Any] = {}
    for name, kind in _CONN_FIELDS.items():
        if name in ("client_ip", "server_ip"):
            addrs = rows.addresses(name == "client_ip", picks)
            cols[name] = pa.array([_ip(a) for a in addrs], type=pa.string())
            del addrs
            if release and name == "server_ip":
                rows.release_addresses()
            continue
        if name in ("history", "sni"):
            cols[name] = pa.array(ordered(getattr(rows, name)), type=pa.string())
            if release:
                getattr(rows, name).clear()
            continue
        arr = ordered(_i64(rows.ints[name]))
        if name in _CODE_COLUMNS:
            codes = _CODE_COLUMNS[name]
            cats = list(contract[name]) if name in contract else list(dict.fromkeys(codes))
            # engine code -> position in the table's categories (-1: missing)
            lut = np.array([cats.index(c) for c in codes] + [-1], dtype=np.int8)
            idx = lut[arr]
            cols[name] = pa.DictionaryArray.from_arrays(pa.array(idx, mask=idx < 0),
                                                        pa.array(cats, type=pa.string()))
        elif name == "idle_close_ns":
            cols["idle_before_close_s"] = _secs(arr, arr == NA)
        elif name == "gap_count":
            cols["gaps"] = pa.array(arr, type=pa.int64())
        elif name == "close_by_ack":
            cols[name] = pa.array(arr != 0, type=pa.bool_())
        elif name in ("client_port", "server_port"):
            cols[name] = pa.array(arr.astype(np.int32), type=pa.int32())
        elif name in _SMALL_EVIDENCE:
            # narrow row-store columns with -1 for missing: narrow Arrow columns with nulls
            typ = _SMALL_EVIDENCE[name]
            cols[name] = pa.array(arr.astype(typ.to_pandas_dtype()), mask=arr < 0, type=typ)
        elif name.endswith("_unacked_peer_quiet_ns"):
            cols[name[:-3] + "_s"] = _secs(arr, arr == NA)
        else:
            cols[name] = _arrow_ints(arr, kind)
            if name == "end":
                start = ordered(_i64(rows.ints["start"]))
                cols["duration_s"] = _secs(arr - start)
        if release and name not in ("conn_id", "start"):
            del arr
            _release(rows.ints[name])
    return _contract_order(cols, "connections")


# The tracker's evidence columns that fit 16 or 32 bits (TTLs, IP-IDs, counts): a million
# connections' table stays 60 MB smaller than with int64 columns.
_SMALL_EVIDENCE = {name: (pa.int16() if "ttl" in name else pa.int32()) for name in (
    "client_ttl_min", "client_ttl_max", "client_rst_ttl", "server_ttl_min", "server_ttl_max", "server_rst_ttl",
    "client_rst_ip_id", "client_ip_id_before_rst", "server_rst_ip_id", "server_ip_id_before_rst",
    "client_unacked_retransmits", "client_unacked_bytes", "server_unacked_retransmits", "server_unacked_bytes",
    "client_unacked_acked_bytes", "server_unacked_acked_bytes")}


def _release(col: array) -> None:
    """Free a row-store column now. Emptied in place: the store holds each column twice (by
    name and by position), so replacing the dict entry freed nothing. A column that a table
    still views (rows already in order: zero-copy) cannot be resized, and stays."""
    try:
        del col[:]
    except BufferError:
        pass


Source = "str | os.PathLike | BinaryIO"


@contextlib.contextmanager
def _no_cyclic_gc():
    """Pause the cycle collector while packets flow.

    The pipeline allocates millions of short-lived, acyclic objects (byte slices, exchange
    records); each allocation burst triggers a collection that walks every live object, which
    cost 35 % of a run. Nothing on this path forms reference cycles (gc.collect() after a 1M-packet
    run frees nothing), so pausing the collector changes no memory figure.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _first_ts(source: Any) -> int | None:
    src = open_source(source)
    for p in src.packets():
        return int(p["ts_ns"])
    return None


def run(
    source: str | os.PathLike | BinaryIO | list,
    *,
    min_gap_s: float = 1.0,
    l7: bool = True,
    progress: Callable[[int], None] | None = None,
    linger_s: float = 5.0,
    max_open: int = 100_000,
    tables: tuple[str, ...] = ("connections", "requests", "gaps"),
    jobs: int = 1,
    shard: tuple[int, int] | None = None,
    merge: bool = False,
) -> EngineResult:
    """Read one capture (or several rotated pieces of one) and build the tables.

    ``tables`` names the tables to keep; the connections table is always built (with its
    request counts). Leaving out ``requests`` keeps memory flat however many requests pass,
    and the HTTP framer then skips header text fields and compressed-body inflation (so
    ``http_violations`` has no decoding problems to report).

    Several files are read as one capture in the order of their first timestamps (what
    ``tcpdump -C``/``-G`` rotation writes), so a connection spanning a rotation is one row;
    frame numbers continue across files as in ``mergecap -a``. Files that overlap in time
    were written at different capture points (two hosts, two interfaces): each chain of
    files is analysed apart and the tables say which by a ``capture`` column. With
    ``merge=True`` all files are one capture, packets interleaved by timestamp and frames
    numbered as ``mergecap`` (without -a) would.

    ``jobs > 1`` splits the flows over worker processes by a symmetric hash of the
    4-tuple (both directions of a connection land in one worker) and merges the tables;
    the result is identical to ``jobs=1``.
    """
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    firsts: list[int | None] = [None]
    if len(sources) > 1 and not merge:
        # Read order = time order of the files' first packets.
        order = sorted(((_first_ts(s), i) for i, s in enumerate(sources)),
                       key=lambda t: (t[0] is None, t[0] or 0, t[1]))
        sources = [sources[i] for _, i in order]
        firsts = [t for t, _ in order]
    kw = dict(min_gap_s=min_gap_s, l7=l7, linger_s=linger_s, max_open=max_open, tables=tables, merge=merge,
              firsts=firsts if len(firsts) == len(sources) else None)
    with _no_cyclic_gc():
        if jobs > 1 and shard is None and all(isinstance(s, (str, os.PathLike)) and os.fspath(s) != "-"
                                              for s in sources):
            return _run_parallel(sources, jobs, progress, **kw)
        return _run_serial(sources, progress=progress, buckets=None if shard is None else _equal_buckets(*shard),
                           **kw)


def _name(s: Any) -> str:
    return os.fspath(s) if isinstance(s, (str, os.PathLike)) else "<stream>"


def _add_facts(facts: dict[str, Any], f: dict[str, Any], label: bool = True) -> dict[str, Any]:
    """Reader facts of one more file (``label``: its warnings named after it) added to ``facts``."""
    if not facts:
        return f
    facts["packets"] += f["packets"]
    facts["bytes_read"] += f["bytes_read"]
    facts["warnings"] += [f"{f['name']}: {w}" for w in f["warnings"]] if label else f["warnings"]
    for key in ("linktypes", "status_counts", "tunnels"):
        into = facts.setdefault(key, {})
        for k, v in f.get(key, {}).items():
            into[k] = into.get(k, 0) + v
    return facts


def _framing_session() -> HttpSession:
    return HttpSession(framing_only=True)


class _Point:
    """One capture point: a tracker fed with a chain of files that follow each other in time."""

    def __init__(self, tables: tuple[str, ...], buckets: tuple[int, int] | None, **kw: Any) -> None:
        self.sink = _Sink(keep_requests="requests" in tables, keep_gaps="gaps" in tables)
        self.rows = RowStore(self.sink)
        # Without a requests table no header text field can be seen: the framer skips them
        # (and the inflating of compressed bodies), which is a tenth of its work.
        factory = HttpSession if "requests" in tables else _framing_session
        self.tracker = Tracker(self.rows, session_factory=factory if kw["l7"] else None, detect=detect, **kw)
        if buckets is not None:
            self.tracker.shard_lo, self.tracker.shard_hi = buckets
        self.facts: dict[str, Any] = {}
        self.files: list[str] = []
        self.frames = 0

    @property
    def last_ts(self) -> int:
        return self.tracker.capture_last_ts

    def read(self, one: Any, progress: Callable[[int], None] | None) -> None:
        src = open_source(one)
        src.frame_base = self.frames
        self.tracker.run(src, progress)
        f = src.facts()
        self.frames += f["packets"]
        self.facts = _add_facts(self.facts, f)
        self.files.append(_name(one))

    def merge(self, sources: list, progress: Callable[[int], None] | None) -> None:
        srcs = [open_source(one) for one in sources]
        self.tracker.run_merged(srcs, progress)
        for one, src in zip(sources, srcs):
            self.facts = _add_facts(self.facts, src.facts())
            self.files.append(_name(one))

    def result(self) -> EngineResult:
        tracker, sink, facts = self.tracker, self.sink, self.facts
        tracker.finish()
        if len(self.files) > 1:
            facts["files"] = list(self.files)
        facts["first_ts_ns"] = tracker.capture_first_ts if tracker.capture_first_ts >= 0 else None
        facts["last_ts_ns"] = tracker.capture_last_ts if tracker.capture_last_ts >= 0 else None
        facts["tcp_packets"] = tracker.tcp_packets
        facts["connections"] = tracker.next_id
        facts["evicted_connections"] = tracker.evicted
        facts["out_of_order_flushes"] = tracker.ooo_flushes
        facts["duplicate_packets"] = tracker.duplicates
        if tracker.duplicates:
            facts["warnings"] = list(facts.get("warnings", [])) + [
                f"{tracker.duplicates:,} packet(s) appear twice within 5 ms with the same IP identification and "
                "TCP header (two mirror sessions, or a capture on two interfaces): packet counts and history "
                "count both copies as Zeek and Wireshark do; retransmits and the findings' evidence count one"]
        if tracker.ooo_flushes:
            facts["warnings"] = list(facts.get("warnings", [])) + [
                f"out-of-order data held for reassembly reached {tracker.max_ooo_bytes >> 20} MiB in total "
                f"{tracker.ooo_flushes:,} time(s): the direction adding to it gave up what it held "
                "(its holes count as gaps, missed_bytes)"]
        if tracker.evicted:
            facts["warnings"] = list(facts.get("warnings", [])) + [
                f"more than {tracker.max_open:,} connections open at once: {tracker.evicted:,} quiet ones "
                f"(no packet for {tracker.linger_ns / 1e9:g} s) were ended early as if the capture had ended "
                f"(max_open caps memory; a later packet of one starts a new row)"]
        facts["http_violations"] = dict(sink.violation_counts)
        facts["http_violation_frames"] = {k: list(v) for k, v in sink.violations.items()}
        return EngineResult(
            connections=_connections_table(self.rows, release=True),
            requests=sink.requests_table(),
            gaps=sink.gaps_table(),
            facts=facts,
            stalls=sink.stalls_table(),
        )


def stream(source: Any, on_batch: Callable[[EngineResult], None], *, on_close: Callable[[dict], None] | None = None,
           min_gap_s: float = 1.0, linger_s: float = 5.0, max_open: int = 100_000,
           every_s: float = 1.0) -> dict[str, Any]:
    """Read a capture (a file, ``-``, a pipe, or a list of rotated files) and hand over its
    tables in batches.

    The live mode behind ``watch``: every ``every_s`` of capture time (and every 64k packets)
    the connections retired since the last batch -- closed and lingered ``linger_s``, so
    their late packets are in -- become an :class:`EngineResult` of their rows only, given to
    ``on_batch``; the rest of the capture is not kept. ``conn_id`` is the capture-wide id.
    ``on_close`` is the tracker's live hook (called at each connection's first FIN/RST).
    Returns the tracker's counts.
    """
    def fresh() -> RowStore:
        return RowStore(_Sink())

    tracker = Tracker(fresh(), session_factory=HttpSession, detect=detect, min_gap_s=min_gap_s,
                      linger_s=linger_s, max_open=max_open)
    tracker.on_close = on_close
    tracker.sweep_every_ns = int(every_s * 1e9)

    def flush(_: int = 0) -> None:
        rows = tracker.sink
        if rows.n == 0:
            return
        tracker.sink = fresh()
        sink = rows.on_extra
        on_batch(EngineResult(connections=_connections_table(rows, release=True),
                              requests=sink.requests_table(), gaps=sink.gaps_table(),
                              stalls=sink.stalls_table()))

    frames = 0
    for one in (source if isinstance(source, list) else [source]):    # rotated files: one capture
        src = open_source(one)
        src.frame_base = frames
        tracker.run(src, flush)
        frames += src.facts()["packets"]
    tracker.finish()
    flush()
    return {"packets": tracker.packets, "tcp_packets": tracker.tcp_packets, "connections": tracker.next_id}


def _run_serial(sources: list, *, min_gap_s: float, l7: bool, progress: Callable[[int], None] | None,
                linger_s: float, max_open: int, tables: tuple[str, ...],
                buckets: tuple[int, int] | None, merge: bool = False,
                firsts: list[int | None] | None = None) -> EngineResult:
    kw = dict(min_gap_s=min_gap_s, linger_s=linger_s, l7=l7, max_open=max_open)
    if merge:
        point = _Point(tables, buckets, **kw)
        point.merge(sources, progress)
        res = point.result()
        if len(sources) > 1:
            res.facts["merged"] = True
        return res
    # Files in time order of their first packets. A file that starts at or after the end
    # of a chain continues it (tcpdump -C/-G rotation); one that starts earlier overlaps
    # every chain so far, so it was written at another capture point: a chain of its own.
    # Of several chains it could continue, it continues the one that ended last before it.
    points: list[_Point] = []
    firsts = firsts if firsts is not None else [None] * len(sources)
    for one, first in zip(sources, firsts):
        fits = [p for p in points if first is None or p.last_ts < 0 or p.last_ts <= first]
        point = max(fits, key=lambda p: p.last_ts) if fits else None
        if point is None:
            point = _Point(tables, buckets, **kw)
            points.append(point)
        point.read(one, progress)
    results = [p.result() for p in points]
    if len(results) == 1:
        return results[0]
    return _apart(results)


def _sum_tracker_facts(facts: dict[str, Any], parts: list[EngineResult]) -> None:
    """Tracker counts and time span of several partial results, as one run would report them."""
    for key in ("tcp_packets", "connections", "evicted_connections", "out_of_order_flushes", "duplicate_packets"):
        facts[key] = sum(p.facts.get(key, 0) for p in parts)
    viol: dict[str, int] = {}
    for p in parts:
        for k, v in p.facts["http_violations"].items():
            viol[k] = viol.get(k, 0) + v
    facts["http_violations"] = viol
    facts["first_ts_ns"] = min((p.facts["first_ts_ns"] for p in parts if p.facts["first_ts_ns"] is not None),
                               default=None)
    facts["last_ts_ns"] = max((p.facts["last_ts_ns"] for p in parts if p.facts["last_ts_ns"] is not None),
                              default=None)


def _shift_ids(t: pa.Table, offset: int) -> pa.Table:
    i = t.column_names.index("conn_id")
    return t.set_column(i, "conn_id", pa.array(t.column(i).to_numpy() + offset, type=pa.int64()))


def _apart(results: list[EngineResult]) -> EngineResult:
    """Tables of several capture points side by side: a ``capture`` column names each
    point (its first file); conn_ids continue from one point to the next; frame numbers
    stay those of each point's own files."""
    conns, reqs, gaps, stalls = [], [], [], []
    offset = 0
    names = [r.facts.get("files", [r.facts.get("name")])[0] for r in results]
    cats = pa.array(list(dict.fromkeys(names)), type=pa.string())
    for k, r in enumerate(results):
        n = r.connections.num_rows
        code = cats.to_pylist().index(names[k])
        capture = pa.DictionaryArray.from_arrays(pa.array(np.full(n, code, dtype=np.int8)), cats)
        conns.append(_shift_ids(r.connections, offset).append_column("capture", capture))
        reqs.append(_shift_ids(r.requests, offset))
        gaps.append(_shift_ids(r.gaps, offset))
        stalls.append(_shift_ids(r.stalls, offset))
        offset += n
    # the points read different files: their reader facts add up, and so do the trackers'
    facts = dict(results[0].facts, warnings=list(results[0].facts["warnings"]),
                 linktypes=dict(results[0].facts["linktypes"]), status_counts=dict(results[0].facts["status_counts"]),
                 tunnels=dict(results[0].facts.get("tunnels", {})))
    facts["capture_points"] = [r.facts.get("files", [r.facts.get("name")]) for r in results]
    for r in results[1:]:
        _add_facts(facts, r.facts, label=False)
    _sum_tracker_facts(facts, results)
    facts["files"] = [f for r in results for f in r.facts.get("files", [r.facts.get("name")])]
    facts["warnings"].append(
        f"{len(results)} capture points (files overlapping in time) analysed apart, told apart by the "
        "`capture` column; --merge reads them as one capture, packets interleaved by time")
    return EngineResult(connections=_concat(conns), requests=_concat(reqs), gaps=_concat(gaps), facts=facts,
                        stalls=_concat(stalls))


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables).combine_chunks()


def _equal_buckets(k: int, n: int) -> tuple[int, int]:
    """The flow-hash buckets of shard ``k`` of ``n`` equal ones."""
    if not 0 <= k < n:
        raise ValueError(f"shard {k} of {n}: k must be in 0..n-1")
    return k * SHARD_BUCKETS // n, (k + 1) * SHARD_BUCKETS // n


# The process that starts the -j workers analyses a share of the flows too, then merges
# the shards and writes the output alone while the others have finished: its share is this
# fraction of an equal one, so that all end about together (figures in bench/README).
_OWN_SHARE = 0.9


def _job_buckets(jobs: int) -> list[tuple[int, int]]:
    """Bucket ranges of ``jobs`` shards, the first (this process's) ``_OWN_SHARE`` of the rest's."""
    own = round(SHARD_BUCKETS * _OWN_SHARE / (_OWN_SHARE + jobs - 1))
    cuts = [0] + [own + (SHARD_BUCKETS - own) * i // (jobs - 1) for i in range(jobs)]
    return list(zip(cuts[:-1], cuts[1:]))


def _run_parallel(sources: list, jobs: int, progress: Callable[[int], None] | None, **kw: Any) -> EngineResult:
    """``jobs`` flow shards, one here and the others in forked processes, merged.

    A fork shares the loaded modules (no start-up per worker) and this process works too.
    Each worker pickles its tables into an in-memory file of its own while this process is
    still busy, and exits; reading the answer back is then a copy, not a conversation
    through a pipe.
    """
    shares = _job_buckets(jobs)
    children: list[tuple[int, int]] = []
    try:
        for k in range(1, jobs):
            fd = _answer_file()
            pid = os.fork()
            if pid == 0:        # pragma: no cover - the worker; it reports through its file
                _worker(fd, sources, shares[k], kw)
            children.append((pid, fd))
        parts = [_run_serial(sources, progress=progress, buckets=shares[0], **kw)]
        while children:
            pid, fd = children.pop(0)
            parts.append(_collect(pid, fd))
    finally:
        for pid, fd in children:    # after an error here: the workers not heard yet are stopped
            os.close(fd)
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
                os.waitpid(pid, 0)
    return _merge_shards(parts)


def _answer_file() -> int:
    """A file descriptor of an unnamed file in memory (a worker's answer goes there)."""
    try:
        return os.memfd_create("sockscope-shard", os.MFD_CLOEXEC)
    except (AttributeError, OSError):     # not Linux, or an old kernel
        import tempfile

        fd, path = tempfile.mkstemp(prefix="sockscope-shard-")
        os.unlink(path)
        return fd


def _worker(fd: int, sources: list, buckets: tuple[int, int], kw: dict[str, Any]) -> None:
    """A forked -j worker: its shard's tables (or the exception it met) into ``fd``, then exit
    at once (the parent's buffers, atexit handlers and threads are not the worker's)."""
    import pickle

    status = 0
    try:
        try:
            payload = pickle.dumps((True, _run_serial(sources, progress=None, buckets=buckets, **kw)),
                                   protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # noqa: BLE001 - every failure is the parent's to report
            try:
                payload = pickle.dumps((False, exc))
            except Exception:  # noqa: BLE001 - an exception that cannot travel
                payload = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        with open(fd, "wb", closefd=True) as out:
            out.write(payload)
    except BaseException:  # noqa: BLE001 - the parent sees no answer
        status = 1
    finally:
        os._exit(status)


def _collect(pid: int, fd: int) -> EngineResult:
    """A -j worker's tables, or its exception raised here."""
    import mmap
    import pickle

    try:
        _, status = os.waitpid(pid, 0)
        size = os.fstat(fd).st_size
        value: Any = None
        if status == 0 and size:
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
                # Arrow buffers are copied out of the map; a cut-off answer leaves value None
                with contextlib.suppress(Exception):
                    ok, value = pickle.loads(m)
    finally:
        os.close(fd)
    if value is None:
        raise RuntimeError(f"a -j worker process ended without a result (wait status {status:#x}); "
                           "run without -j to see why")
    if not ok:
        raise value
    return value


def _merge_shards(parts: list[EngineResult]) -> EngineResult:
    """Tables of flow shards -> the tables a single pass would have built."""
    # chunks, not a combined copy: the reordering below copies one column at a time
    allc = pa.concat_tables([p.connections for p in parts])
    shard_of = np.concatenate([np.full(p.connections.num_rows, k, dtype=np.int64) for k, p in enumerate(parts)])
    old_ids = allc.column("conn_id").to_numpy()
    # a connection's id is its rank by first packet, exactly as a serial run numbers them;
    # capture points (see _apart) keep their order, frames count within each point
    keys = [old_ids, shard_of, allc.column("first_frame").to_numpy()]
    if "capture" in allc.column_names:
        keys.append(allc.column("capture").combine_chunks().indices.to_numpy(zero_copy_only=False))
    order = np.lexsort(keys)
    allc = take_table(allc, order)
    shard_of, old_ids = shard_of[order], old_ids[order]
    # per shard, a lookup array from the shard's own ids to the new ones
    lookup = []
    for k in range(len(parts)):
        mine = shard_of == k
        table = np.full(int(old_ids[mine].max()) + 1 if mine.any() else 0, -1, dtype=np.int64)
        table[old_ids[mine]] = np.flatnonzero(mine)
        lookup.append(table)
    allc = allc.set_column(allc.column_names.index("conn_id"), "conn_id",
                           pa.array(np.arange(allc.num_rows, dtype=np.int64)))

    def remap(tables: list[pa.Table], second: str) -> pa.Table:
        out = [t.set_column(t.column_names.index("conn_id"), "conn_id",
                            pa.array(lookup[k][t.column("conn_id").to_numpy()], type=pa.int64()))
               for k, t in enumerate(tables)]
        # as above: the table is never in memory three times (shards, concatenation, reordered)
        t = pa.concat_tables(out)
        if not t.num_rows:
            return t.combine_chunks()
        # (conn_id, second) order; stable, as the serial run's
        col = t.column(second).combine_chunks()
        if pa.types.is_timestamp(col.type):
            col = col.view(pa.int64())
        order = _row_order(t.column("conn_id").to_numpy(), col.to_numpy(zero_copy_only=False))
        return t.combine_chunks() if order is None else take_table(t, order)

    # every shard read the same files (reader facts alike); the flows were split among them
    facts = dict(parts[0].facts)
    _sum_tracker_facts(facts, parts)
    facts["jobs"] = len(parts)
    return EngineResult(connections=allc, requests=remap([p.requests for p in parts], "index"),
                        gaps=remap([p.gaps for p in parts], "start"), facts=facts,
                        stalls=remap([p.stalls for p in parts], "start"))

