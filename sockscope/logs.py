"""Application logs next to the packets: read log files, find their clock offset, place each line.

A capture says *what* happened on the wire; the client's and server's logs say what the
programs *thought* happened ("socket hang up", "client disconnected"). This module puts
both on one clock.

Reading (:func:`read_log`)
--------------------------
One row per log event with columns ``source`` (file name), ``line_no`` (1-based line of the
event's first line), ``ts`` (``datetime64[ns, UTC]``), ``text``, ``port`` (``Int64``),
``method``, ``path`` and ``request_id``.

* Timestamps must start the line (optionally inside ``[...]``): ISO-8601 with ``T`` or a
  space, optional fraction (``.`` or ``,``), optional ``Z`` or ``±HH:MM`` offset -- a naive
  time is taken as UTC -- or epoch seconds (9-10 digits, optional fraction, parsed exactly
  to the nanosecond). ``text`` is the rest of the line after the timestamp.
* With ``regex=`` (``re.search`` on each line) the named group ``ts`` holds the timestamp
  (ISO-8601, epoch seconds, or the access-log form ``25/Nov/2026:17:24:51[.ffffff] +0000``); optional groups ``port``, ``method``, ``path`` and ``msg``
  override the heuristics below (``text`` is ``msg`` when present, else the whole line).
* A line without a timestamp (a stack trace, a wrapped message) is a **continuation**: it is
  appended to the previous event's ``text`` after a newline. Lines before the first
  timestamp and blank lines are skipped; ``df.attrs["skipped_lines"]`` counts them.
* ``port`` is the first of: ``local_port=N``, ``client_port=N``, ``src_port=N``,
  ``source_port=N``, ``sport=N``, ``port=N`` (key=value, in this order of preference), then
  ``IPv4:N`` or ``[IPv6]:N`` outside a URL (``http://host:8080/...`` is never a port).
  ``remote_port=`` and URL ports are ignored: from a client they name the server.
* ``method``/``path``: ``method=GET`` with ``path=``/``target=``/``uri=``/``url=`` (quoted or
  bare values), else a request line ``GET /x`` (also ``"GET /x HTTP/1.1"``). URLs are reduced
  to path + query.
* ``request_id`` from ``request_id=``, ``req_id=``, ``lab_id=``, ``id=`` (first found). Lines
  of one source sharing a request id and lacking a port inherit the port when every line of
  that id that names a port names the same one (a client logs "request_start GET /x" before
  it knows its socket, and "socket_assigned local_port=..." afterwards).

Alignment (:func:`align_logs`)
------------------------------
1. **Matching.** A log line naming a method and path is a candidate for every captured
   request (``cap.requests``) with the same method and target (the full target with query
   when the line has one, else the path alone) -- on the connection whose client port the
   line names, when it names one (a port that is no connection's client port, e.g. the
   server's own listening port, is ignored) -- whose ``request_start`` lies within
   ``max_offset_s`` of the line's time.
2. **Consensus.** The window of ``window_s`` (default 1 s) holding the most candidate
   differences (packet time − log time) is the clock offset's neighbourhood; each line keeps
   its candidate nearest to that window's median, and each request keeps the *earliest* line
   that names it (the first mention is the request's arrival or departure; a later
   ``response_start ... GET /x`` line is not). Lines outside the window are unmatched and do
   not influence anything.
3. **Offset** = the median of the kept differences (packet − log) in their *densest half*
   (the shortest interval holding ``ceil(n/2)`` of them; all of them when ``n <= 2``);
   ``spread_s`` = half that interval's width; ``median_all_s`` the plain median of all
   matches, ``min_s``/``max_s`` the extremes. Why not the plain median: each difference is
   the clock offset plus the program's own latency between its log call and the packet, and
   that latency is one-sided with a long tail (a client logs "request_start" before it even
   connects; a server logs after it has read and routed). On the lab captures, whose logs
   share tcpdump's clock, the plain median of the client logs is 1.4-12 ms off, the densest
   half 0.9-1.9 ms (server logs: -0.5 to -3.1 ms). The estimate is therefore good to a
   millisecond or two: a log line written a fraction of a millisecond before a packet can
   land just after it.
4. **Placement.** Each line goes on a connection: by its client port (the connection with
   that port that was open at the line's adjusted time, else the nearest in time), else
   the request it matched, else (method + path) the request with that target whose start is
   nearest within ``window_s``, else (a line naming no socket, ``Error: socket hang up``) the
   connection whose first FIN/RST came last before it, at most ``CLOSE_WINDOW_S`` earlier and
   not within a millisecond of another close. ``placed_by`` says which (``port``,
   ``request``, ``path_time``, ``close_time``); lines placed nowhere are counted per source
   (``unplaced``). ``adjusted_ts`` = ``ts`` + offset;
   ``delta_to_close_s`` = ``adjusted_ts`` − the connection's ``close_ts`` (first FIN/RST).

A source with no match keeps offset 0 (``offset_s`` is ``None`` in the summary, with a
``warning``), its lines are still placed by port, and a :class:`LogAlignmentWarning` is
issued. Unreadable files and files without a single timestamped line raise
:class:`LogError` (a :class:`~sockscope.errors.SockscopeError`: exit 3 on the CLI).
"""

from __future__ import annotations

import os
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np
import pandas as pd

from sockscope.errors import SockscopeError

__all__ = ["LogError", "LogAlignmentWarning", "LOG_COLUMNS", "ALIGNED_COLUMNS", "read_log", "align_logs",
           "describe_offset"]

LOG_COLUMNS = ["source", "line_no", "ts", "text", "port", "method", "path", "request_id"]
ALIGNED_COLUMNS = LOG_COLUMNS + ["conn_id", "placed_by", "request_index", "offset_s", "adjusted_ts",
                                 "delta_to_close_s"]

LogInput = Union[str, os.PathLike, pd.DataFrame]


class LogError(SockscopeError):
    """A log file cannot be used: unreadable, no timestamped line, or a bad ``--log-regex``."""


class LogAlignmentWarning(UserWarning):
    """A log file was read but none of its lines could be matched to a captured request."""


# -- reading ----------------------------------------------------------------------------------

_ISO = re.compile(r"^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|z|[+-]\d{2}:?\d{2})?)\]?(?=\s|$)")
_EPOCH = re.compile(r"^\[?(\d{9,10}(?:\.\d{1,9})?)\]?(?=\s|$)")
_EPOCH_FULL = re.compile(r"^\s*(\d{9,10})(?:\.(\d{1,9}))?\s*$")
_CLF = re.compile(r"^\d{2}/[A-Za-z]{3}/\d{4}:")     # access-log time: 25/Nov/2026:17:24:51 +0000
_KV = r'(?:"((?:[^"\\]|\\.)*)"|(\S+))'
_PORT_KEYS = ("local_port", "client_port", "src_port", "source_port", "sport", "port")
_PORT_KV = {k: re.compile(rf"(?<![\w.-]){k}=\"?(\d{{1,5}})\b") for k in _PORT_KEYS}
_PORT_ADDR = re.compile(r"(?<![/@\w.:\[])(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.%\w]+\]):(\d{1,5})\b(?!/)")
_METHODS = "GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS|CONNECT|TRACE"
_METHOD_KV = re.compile(rf'(?<![\w.-])method=("?)({_METHODS})\1(?=\s|$|,)', re.IGNORECASE)
_PATH_KV = re.compile(rf"(?<![\w.-])(?:path|target|uri|url)={_KV}")
_REQ_LINE = re.compile(rf'(?<![\w/])({_METHODS})\s+((?:https?://[^\s"]+)|/[^\s"]*)')
_ID_KV = [re.compile(rf"(?<![\w.-]){k}={_KV}") for k in ("request_id", "req_id", "lab_id", "id")]


def _kv_value(m: re.Match) -> str:
    return m.group(1) if m.group(1) is not None else m.group(2)


def _target(raw: str | None) -> str | None:
    """``http://h:8301/files/x?y=1`` -> ``/files/x?y=1``; ``/x`` unchanged; junk -> None."""
    if not raw:
        return None
    raw = raw.strip().rstrip(",;")
    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s]*", raw)
    if m:
        raw = raw[m.end():] or "/"
    if not raw.startswith("/") and raw != "*":
        return None
    return raw.split("#", 1)[0]


def _port_of(text: str) -> int | None:
    for k in _PORT_KEYS:
        m = _PORT_KV[k].search(text)
        if m:
            return int(m.group(1))
    m = _PORT_ADDR.search(text)
    return int(m.group(1)) if m else None


def _method_path_of(text: str) -> tuple[str | None, str | None]:
    mm = _METHOD_KV.search(text)
    pm = _PATH_KV.search(text)
    method = mm.group(2).upper() if mm else None
    path = _target(_kv_value(pm)) if pm else None
    if method is None or path is None:
        rm = _REQ_LINE.search(text)
        if rm:
            return method or rm.group(1).upper(), path or _target(rm.group(2))
    return method, path


def _request_id_of(text: str) -> str | None:
    for rx in _ID_KV:
        m = rx.search(text)
        if m:
            return _kv_value(m)
    return None


def _epoch_ns(s: str) -> int | None:
    m = _EPOCH_FULL.match(s)
    if not m:
        return None
    frac = (m.group(2) or "").ljust(9, "0")
    return int(m.group(1)) * 1_000_000_000 + int(frac)


def _parse_ts(raw: str) -> pd.Timestamp | None:
    """One timestamp string (ISO-8601 or epoch seconds) -> UTC Timestamp, or None (also for a
    time outside what nanoseconds since 1970 can hold, 1677-2262: no capture is there)."""
    try:
        ts = _parse_ts_any(raw)
        return None if ts is None else ts.as_unit("ns")
    except (ValueError, TypeError, OverflowError):
        return None


def _parse_ts_any(raw: str) -> pd.Timestamp | None:
    ns = _epoch_ns(raw)
    if ns is not None:
        return pd.Timestamp(ns, unit="ns", tz="UTC")
    if _CLF.match(raw.strip()):
        body = raw.strip()
        for fmt in ("%d/%b/%Y:%H:%M:%S.%f %z", "%d/%b/%Y:%H:%M:%S %z", "%d/%b/%Y:%H:%M:%S.%f", "%d/%b/%Y:%H:%M:%S"):
            try:
                ts = pd.Timestamp(datetime.strptime(body, fmt))
            except ValueError:
                continue
            return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return None
    ts = pd.Timestamp(raw.strip().strip("[]").replace(",", "."))
    if ts is pd.NaT:
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _compile(regex: str | re.Pattern | None) -> re.Pattern | None:
    if regex is None:
        return None
    try:
        rx = re.compile(regex) if isinstance(regex, str) else regex
    except re.error as exc:
        raise LogError(f"invalid log regex {regex!r}: {exc}") from None
    if "ts" not in rx.groupindex:
        raise LogError(f"log regex {rx.pattern!r} needs a named group 'ts' (e.g. (?P<ts>\\S+))")
    return rx


def read_log(path: str | os.PathLike, regex: str | re.Pattern | None = None, *,
             source: str | None = None) -> pd.DataFrame:
    """Read one application log into a table of timestamped events.

    Parameters
    ----------
    path:
        The log file (UTF-8; undecodable bytes are replaced).
    regex:
        Optional pattern with a named group ``ts`` (and optional ``port``, ``method``,
        ``path``, ``msg``) for logs whose timestamp is not at the start of the line.
    source:
        Name for the ``source`` column (default: the file name).

    Returns
    -------
    DataFrame with :data:`LOG_COLUMNS`, in file order; ``attrs["skipped_lines"]`` counts lines
    dropped (blank, or before the first timestamp), ``attrs["continuations"]`` lines folded
    into the previous event.

    Raises
    ------
    LogError
        The file cannot be read, the regex is invalid, or no line carries a timestamp.

    Example
    -------
    >>> df = read_log("captures/lab/before-fix/client.log")          # doctest: +SKIP
    >>> df[df.text.str.contains("socket hang up")][["ts", "port"]]   # doctest: +SKIP
    """
    rx = _compile(regex)
    p = Path(path)
    name = source or p.name
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise LogError(f"cannot read log {os.fspath(path)!r}: {exc.strerror or exc}") from None
    text = raw.decode("utf-8", errors="replace")
    if "\x00" in text[:4096]:
        raise LogError(f"{name}: looks like a binary file, not a text log")
    events: list[dict[str, Any]] = []
    skipped = continuations = 0
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            skipped += 1
            continue
        ts: pd.Timestamp | None = None
        body = line
        given: dict[str, Any] = {}
        if rx is not None:
            m = rx.search(line)
            if m and m.group("ts"):
                ts = _parse_ts(m.group("ts"))
                gd = m.groupdict()
                given = {k: gd.get(k) for k in ("port", "method", "path") if gd.get(k)}
                body = gd["msg"] if gd.get("msg") is not None else line
        else:
            m = _ISO.match(line) or _EPOCH.match(line)
            if m:
                ts = _parse_ts(m.group(1))
                body = line[m.end():].strip()
        if ts is None:
            if events:
                events[-1]["text"] += "\n" + line
                continuations += 1
            else:
                skipped += 1
            continue
        events.append({"source": name, "line_no": no, "ts": ts, "text": body, "_given": given})
    if not events:
        how = f"matches the regex {rx.pattern!r} with a parsable 'ts'" if rx is not None else \
            "starts with an ISO-8601 or epoch-seconds timestamp"
        raise LogError(f"{name}: no line {how} ({skipped} line(s) read)")
    for ev in events:
        given = ev.pop("_given")
        t = ev["text"]
        port = given.get("port")
        try:
            v = int(port) if port is not None else _port_of(t)
        except ValueError:
            v = _port_of(t)
        ev["port"] = v if v is not None and 0 <= v <= 65535 else None
        method, pth = _method_path_of(t)
        ev["method"] = given["method"].upper() if "method" in given else method
        ev["path"] = _target(given["path"]) if "path" in given else pth
        ev["request_id"] = _request_id_of(t)
    df = pd.DataFrame(events, columns=LOG_COLUMNS)
    df["ts"] = pd.to_datetime(pd.Series([e["ts"].value for e in events], dtype="int64"), unit="ns", utc=True)
    df["line_no"] = df["line_no"].astype("int64")
    df["port"] = pd.array([None if v is None or v != v else int(v) for v in df["port"]], dtype="Int64")
    for c in ("source", "text", "method", "path", "request_id"):
        df[c] = df[c].astype("string")
    _inherit_ports(df)
    df.attrs["skipped_lines"] = skipped
    df.attrs["continuations"] = continuations
    return df


def _inherit_ports(df: pd.DataFrame) -> None:
    """Lines of one request id without a port take the id's port when it is unambiguous."""
    if df["request_id"].isna().all():
        return
    known = df.dropna(subset=["request_id", "port"]).groupby(["source", "request_id"])["port"].agg(
        lambda s: int(s.iloc[0]) if s.nunique() == 1 else None)
    if known.empty:
        return
    for i in df.index[df["port"].isna() & df["request_id"].notna()]:
        p = known.get((df.at[i, "source"], df.at[i, "request_id"]))
        if p is not None and not pd.isna(p):     # None or NA: the id's lines disagree
            df.at[i, "port"] = int(p)


# -- alignment ----------------------------------------------------------------------------------

def _as_frame(item: LogInput, regex: str | re.Pattern | None, k: int) -> pd.DataFrame:
    if isinstance(item, pd.DataFrame):
        if "ts" not in item.columns or "text" not in item.columns:
            raise LogError("a log DataFrame needs at least the columns 'ts' and 'text' (see read_log)")
        df = item.copy()
        if "source" not in df.columns:
            df["source"] = f"log{k}"
        if "line_no" not in df.columns:
            df["line_no"] = np.arange(1, len(df) + 1)
        ts = pd.to_datetime(df["ts"], utc=True)
        df["ts"] = ts
        for col, fn in (("port", _port_of), ("request_id", _request_id_of)):
            if col not in df.columns:
                df[col] = [fn(str(t)) for t in df["text"]]
        if "method" not in df.columns or "path" not in df.columns:
            mp = [_method_path_of(str(t)) for t in df["text"]]
            df["method"] = df["method"] if "method" in df.columns else [m for m, _ in mp]
            df["path"] = df["path"] if "path" in df.columns else [p for _, p in mp]
        df["port"] = pd.array([None if _na(v) else int(v) for v in df["port"]], dtype="Int64")
        for c in ("source", "text", "method", "path", "request_id"):
            df[c] = df[c].astype("string")
        return df[LOG_COLUMNS].reset_index(drop=True)
    return read_log(item, regex)


def _na(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def _split_target(t: str) -> tuple[str, str]:
    return t, t.split("?", 1)[0]


def _match_source(lines: pd.DataFrame, reqs: pd.DataFrame, client_ports: set[int],
                  max_offset_s: float, window_s: float) -> tuple[dict[int, tuple[int, float]], dict[str, Any]]:
    """Line index -> (request row position, packet − log seconds) for the kept matches, plus stats."""
    req_ns = reqs["_start_ns"].to_numpy()
    by_full: dict[tuple[str, str], list[int]] = {}
    by_path: dict[tuple[str, str], list[int]] = {}
    for pos, (m, full, path) in enumerate(zip(reqs["_method"], reqs["_full"], reqs["_path"])):
        by_full.setdefault((m, full), []).append(pos)
        by_path.setdefault((m, path), []).append(pos)
    cports = reqs["_cport"].to_numpy()
    cands: list[tuple[int, int, float]] = []        # (line index, request pos, delta s)
    lim = max_offset_s
    for i, m, p, port, ts in zip(lines.index, lines["method"], lines["path"], lines["port"], lines["_ns"]):
        if _na(m) or _na(p):
            continue
        m, p = str(m), str(p)
        key_full, key_path = _split_target(p)
        pool = by_full.get((m, key_full), []) if "?" in p else by_path.get((m, key_path), [])
        if not pool and "?" not in p:
            pool = by_full.get((m, key_full), [])
        use_port = not _na(port) and int(port) in client_ports
        for pos in pool:
            if use_port and cports[pos] != int(port):
                continue
            d = (req_ns[pos] - ts) / 1e9
            if abs(d) <= lim:
                cands.append((i, pos, d))
    stats: dict[str, Any] = {"candidates": len(cands)}
    if not cands:
        return {}, stats
    ds = np.array(sorted(c[2] for c in cands))
    # The densest window of width window_s (most candidates; ties: the tighter one).
    best = (0, np.inf, 0, 0)
    j = 0
    for k in range(len(ds)):
        while ds[k] - ds[j] > window_s:
            j += 1
        n = k - j + 1
        w = ds[k] - ds[j]
        if n > best[0] or (n == best[0] and w < best[1]):
            best = (n, w, j, k)
    lo, hi = ds[best[2]], ds[best[3]]
    center = float(np.median(ds[best[2]:best[3] + 1]))
    # Each line: its candidate nearest the centre (inside the window).
    per_line: dict[int, tuple[int, float]] = {}
    for i, pos, d in cands:
        if lo - 1e-12 <= d <= hi + 1e-12 and (i not in per_line or abs(d - center) < abs(per_line[i][1] - center)):
            per_line[i] = (pos, d)
    # Each request: the earliest line naming it (the largest packet − log difference).
    per_req: dict[int, tuple[int, float]] = {}
    for i, (pos, d) in per_line.items():
        if pos not in per_req or d > per_req[pos][1] or (d == per_req[pos][1] and i < per_req[pos][0]):
            per_req[pos] = (i, d)
    kept = {i: (pos, d) for pos, (i, d) in per_req.items()}
    return kept, stats


def _place(lines: pd.DataFrame, conns: pd.DataFrame, reqs: pd.DataFrame, kept: dict[int, tuple[int, float]],
           client_ports: set[int], window_s: float) -> tuple[list[Any], list[Any], list[Any]]:
    conn_ids: list[Any] = []
    how: list[Any] = []
    req_index: list[Any] = []
    by_port: dict[int, list[tuple[int, int, int]]] = {}
    for cid, cp, s, e in zip(conns["conn_id"], conns["client_port"], conns["_start_ns"], conns["_end_ns"]):
        if not _na(cp):
            by_port.setdefault(int(cp), []).append((int(cid), int(s), int(e)))
    req_key: dict[tuple[str, str], list[int]] = {}
    for pos, (m, full) in enumerate(zip(reqs["_method"], reqs["_full"])):
        req_key.setdefault((m, full), []).append(pos)
        if "?" in full:      # a log line naming only the path matches the request with a query too
            req_key.setdefault((m, full.split("?", 1)[0]), []).append(pos)
    starts = reqs["_start_ns"].to_numpy()
    for i, port, m, p, t in zip(lines.index, lines["port"], lines["method"], lines["path"], lines["_adj_ns"]):
        if i in kept:
            pos = kept[i][0]
            req_index.append(int(reqs["index"].iat[pos]))
        else:
            req_index.append(None)
        if not _na(port) and int(port) in client_ports:
            opts = by_port[int(port)]
            best = min(opts, key=lambda o: 0 if o[1] <= t <= o[2] else min(abs(t - o[1]), abs(t - o[2])))
            conn_ids.append(best[0])
            how.append("port")
            continue
        if i in kept:
            conn_ids.append(int(reqs["conn_id"].iat[kept[i][0]]))
            how.append("request")
            continue
        if not _na(m) and not _na(p):
            pool = req_key.get((str(m), str(p)), [])
            if pool:
                pos = min(pool, key=lambda q: abs(starts[q] - t))
                if abs(starts[pos] - t) <= window_s * 1e9:
                    conn_ids.append(int(reqs["conn_id"].iat[pos]))
                    how.append("path_time")
                    continue
        conn_ids.append(None)
        how.append(None)
    return conn_ids, how, req_index


CLOSE_WINDOW_S = 1.0     # a line naming no socket, this soon after a close, is about that close


def _place_after_close(conn_ids: list[Any], how: list[Any], adj_ns: np.ndarray, conns: pd.DataFrame) -> None:
    """Lines that name no port, request or path (``Error: socket hang up``): on the connection
    whose first FIN/RST came last before them, when that was at most CLOSE_WINDOW_S earlier
    and no other connection closed within the same millisecond (then it is ambiguous)."""
    close = np.array([pd.Timestamp(v).value if not _na(v) else np.iinfo(np.int64).max for v in conns["close_ts"]],
                     dtype=np.int64)
    known = close != np.iinfo(np.int64).max
    if not known.any():
        return
    order = np.argsort(close[known], kind="stable")
    ts = close[known][order]
    ids = conns["conn_id"].to_numpy()[known][order]
    for i, c in enumerate(conn_ids):
        if c is not None:
            continue
        k = int(np.searchsorted(ts, adj_ns[i], side="right")) - 1
        if k < 0 or adj_ns[i] - ts[k] > CLOSE_WINDOW_S * 1e9:
            continue
        if (k > 0 and ts[k] - ts[k - 1] < 1_000_000) or (k + 1 < len(ts) and ts[k + 1] - ts[k] < 1_000_000):
            continue
        conn_ids[i] = int(ids[k])
        how[i] = "close_time"


def _densest_half_median(ds: np.ndarray) -> tuple[float, float]:
    """(median, half-width) of the shortest interval holding ceil(n/2) of the differences.

    A program's latency between its log call and the packet is one-sided (a client logs
    before it writes, a server after it reads) and has a long tail (connection set-up, a busy
    event loop); the densest half sits at the true offset plus the *usual* small latency,
    where a plain median would be dragged along the tail.
    """
    x = np.sort(ds)
    n = len(x)
    h = max((n + 1) // 2, min(n, 2))
    widths = x[h - 1:] - x[: n - h + 1]
    i = int(np.argmin(widths))
    core = x[i:i + h]
    return float(np.median(core)), float((core[-1] - core[0]) / 2)


def align_logs(cap: Any, paths_or_frames: LogInput | Sequence[LogInput], regex: str | re.Pattern | None = None,
               max_offset_s: float = 300.0, *, window_s: float = 1.0) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Put application log lines on the capture's clock and on their connections.

    Parameters
    ----------
    cap:
        A :class:`sockscope.Capture` (its ``connections`` and ``requests`` tables are used).
    paths_or_frames:
        One log path / :func:`read_log` frame, or a list of them. Each distinct ``source``
        gets its own clock offset.
    regex:
        Passed to :func:`read_log` for paths.
    max_offset_s:
        Largest clock difference considered between a log and the capture.
    window_s:
        Width of the consensus window of matched differences (see the module docstring);
        also the reach of placement by method + path + time.

    Returns
    -------
    (lines, summary)
        ``lines``: :data:`ALIGNED_COLUMNS`, sorted by ``adjusted_ts``; ``conn_id`` is ``<NA>``
        for lines that name no connection. ``summary``: per source ``{"offset_s", "matches",
        "spread_s", "min_s", "max_s", "lines", "placed", "candidates", "warning"}``;
        ``offset_s`` is ``None`` (and ``warning`` says why) when nothing matched.

    Example
    -------
    >>> lines, summary = align_logs(cap, ["client.log", "server.log"])   # doctest: +SKIP
    >>> summary["client.log"]["offset_s"]                                 # doctest: +SKIP
    """
    items = [paths_or_frames] if isinstance(paths_or_frames, (str, os.PathLike, pd.DataFrame)) \
        else list(paths_or_frames)
    frames = [_as_frame(it, regex, k) for k, it in enumerate(items, start=1)]
    # Two files of the same name (client/a.log, server/a.log) stay separate sources.
    seen: dict[str, int] = {}
    for df in frames:
        names = df["source"].unique()
        for nm in names:
            seen[str(nm)] = seen.get(str(nm), 0) + 1
    if any(v > 1 for v in seen.values()):
        for k, (df, it) in enumerate(zip(frames, items), start=1):
            if not isinstance(it, pd.DataFrame):
                df["source"] = pd.array([os.fspath(it)] * len(df), dtype="string")
    lines = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LOG_COLUMNS)
    lines["_ns"] = lines["ts"].astype("int64")

    conns = cap.connections.copy()
    conns["_start_ns"] = pd.to_datetime(conns["start"], utc=True).astype("int64")
    conns["_end_ns"] = pd.to_datetime(conns["end"], utc=True).astype("int64")
    client_ports = {int(p) for p in conns["client_port"].dropna()}
    reqs = cap.requests
    reqs = reqs[reqs["request_start"].notna() & reqs["method"].notna() & reqs["uri"].notna()].copy()
    reqs = reqs.merge(conns[["conn_id", "client_port"]].rename(columns={"client_port": "_cport"}), on="conn_id",
                      how="left")
    reqs["_start_ns"] = pd.to_datetime(reqs["request_start"], utc=True).astype("int64")
    reqs["_method"] = reqs["method"].astype(str).str.upper()
    reqs["_full"] = [(_target(str(u)) or str(u)) for u in reqs["uri"]]
    reqs["_path"] = [f.split("?", 1)[0] for f in reqs["_full"]]
    reqs["_cport"] = reqs["_cport"].fillna(-1).astype("int64")
    reqs = reqs.reset_index(drop=True)

    summary: dict[str, dict[str, Any]] = {}
    offsets = pd.Series(0.0, index=lines.index)
    kept_all: dict[int, tuple[int, float]] = {}
    src_offset: dict[str, float | None] = {}
    for src, sub in lines.groupby("source", sort=False):
        kept, stats = _match_source(sub, reqs, client_ports, max_offset_s, window_s)
        kept_all.update(kept)
        ds = np.array([d for _, d in kept.values()])
        info: dict[str, Any] = {"lines": int(len(sub)), "matches": int(len(ds)), "candidates": stats["candidates"],
                                "offset_s": None, "spread_s": None, "median_all_s": None, "min_s": None, "max_s": None,
                                "warning": None}
        if len(ds):
            off, half = _densest_half_median(ds)
            info.update(offset_s=off, spread_s=half, median_all_s=float(np.median(ds)), min_s=float(ds.min()),
                        max_s=float(ds.max()))
            offsets.loc[sub.index] = off
        else:
            info["warning"] = (f"no log line naming a method and path matched a captured request within "
                               f"{max_offset_s:g} s: clock offset unknown, lines kept on the log's own clock")
            warnings.warn(f"{src}: {info['warning']}", LogAlignmentWarning, stacklevel=2)
        src_offset[str(src)] = info["offset_s"]
        summary[str(src)] = info

    lines["offset_s"] = [src_offset[str(s)] for s in lines["source"]]
    lines["_adj_ns"] = lines["_ns"] + (offsets * 1e9).round().astype("int64")
    lines["adjusted_ts"] = pd.to_datetime(lines["_adj_ns"], unit="ns", utc=True)
    cids, how, ridx = _place(lines, conns, reqs, kept_all, client_ports, window_s)
    _place_after_close(cids, how, lines["_adj_ns"].to_numpy(), conns)
    lines["conn_id"] = pd.array(cids, dtype="Int64")
    lines["placed_by"] = pd.array(how, dtype="string")
    lines["request_index"] = pd.array(ridx, dtype="Int64")
    close_ns = dict(zip(conns["conn_id"].astype(int),
                        [None if _na(v) else pd.Timestamp(v).value for v in conns["close_ts"]]))
    lines["delta_to_close_s"] = [
        np.nan if _na(c) or close_ns.get(int(c)) is None else (t - close_ns[int(c)]) / 1e9
        for c, t in zip(lines["conn_id"], lines["_adj_ns"])]
    for src in summary:
        placed = int(lines.loc[lines["source"] == src, "conn_id"].notna().sum())
        summary[src]["placed"] = placed
        summary[src]["unplaced"] = summary[src]["lines"] - placed
    out = lines.sort_values(["adjusted_ts", "source", "line_no"], kind="stable")[ALIGNED_COLUMNS]
    return out.reset_index(drop=True), summary


def describe_offset(source: str, info: dict[str, Any]) -> str:
    """One line for people: ``client.log: clock offset +0.000412 s from 6 matched requests, spread 0.3 ms``."""
    if info.get("offset_s") is None:
        return (f"{source}: clock offset unknown: no line matched a captured request "
                f"(lines shown on the log's own clock)")
    n = info["matches"]
    return (f"{source}: clock offset {info['offset_s']:+.6f} s from {n} matched request{'s' if n != 1 else ''}, "
            f"spread {info['spread_s'] * 1e3:.1f} ms")


def lines_of(aligned: pd.DataFrame, conn_id: int) -> Iterable[Any]:
    """The aligned lines placed on one connection, in time order (rows as namedtuples)."""
    sub = aligned[aligned["conn_id"] == conn_id]
    return sub.sort_values("adjusted_ts", kind="stable").itertuples(index=False)
