"""The public data model: column names and dtypes of every table sockscope returns.

This module is the contract shared by both engines (native and tshark), the CLI's
``--json``/``--csv`` output and the exports. Columns may be added, never renamed.

Conventions
-----------
* Timestamps are ``datetime64[ns, UTC]``; the engines carry integer nanoseconds until
  :func:`frame_from_records` turns them into timestamps.
* Durations are float seconds (``*_s`` columns), computed from integer nanoseconds, so they
  keep the capture's precision (float64 holds microseconds exactly for any realistic span).
* Counts that can be unknown are nullable ``Int64``; enumerations are ``category``.

Meanings worth stating (connections)
------------------------------------
* ``end`` / ``duration_s``: as Zeek's duration, packets after both sides have sent a FIN
  (the final ACK, a late RST) do not extend the connection; ``last_frame`` is still the
  truly last packet.
* ``client_bytes`` / ``server_bytes``: payload from the sequence-number span (Zeek's
  orig_bytes/resp_bytes): retransmissions once, data the capture missed included.
* ``retransmits``: payload segments that carried no byte not seen before (keep-alive probes
  excluded); ``history``'s T letter keeps Zeek's wider meaning.
* ``idle_before_close_s``: first FIN/RST time minus the last segment that carried new payload
  in either direction (pure ACKs, window updates, keep-alive probes are not activity).
* ``last_payload_*``: that last segment before the first FIN/RST (or overall, if none).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd

TS = "datetime64[ns, UTC]"

# name -> pandas dtype, in the order the columns appear.
CONNECTION_COLUMNS: dict[str, Any] = {
    "conn_id": "int64",
    "client_ip": "string",
    "client_port": "int32",
    "server_ip": "string",
    "server_port": "int32",
    "roles_from": pd.CategoricalDtype(["syn", "heuristic"]),
    "start": TS,
    "end": TS,
    "duration_s": "float64",
    "client_pkts": "int64",
    "server_pkts": "int64",
    "client_bytes": "int64",
    "server_bytes": "int64",
    "client_ip_bytes": "int64",
    "server_ip_bytes": "int64",
    "state": pd.CategoricalDtype(
        ["S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"]
    ),
    "history": "string",
    "closed_by": pd.CategoricalDtype(["client", "server"]),
    "close_kind": pd.CategoricalDtype(["FIN", "RST"]),
    "close_ts": TS,
    "close_frame": "Int64",
    "idle_before_close_s": "float64",
    "requests": "int64",
    "unanswered": "int64",
    "protocol": pd.CategoricalDtype(["http", "tls", "unknown"]),
    "sni": "string",
    "retransmits": "int64",
    "gaps": "int64",
    "missed_bytes": "int64",
    "last_payload_ts": TS,
    "last_payload_frame": "Int64",
    "first_frame": "int64",
    "last_frame": "int64",
}

OUTCOMES = ["complete", "no_response", "partial_response", "no_request"]
ENDED_BY = ["client_fin", "client_rst", "server_fin", "server_rst", "capture_end"]

REQUEST_COLUMNS: dict[str, Any] = {
    "conn_id": "int64",
    "index": "int64",
    "method": "string",
    "uri": "string",
    "host": "string",
    "user_agent": "string",
    "version": "string",
    "status": "Int64",
    "reason": "string",
    "info_code": "Int64",
    "request_start": TS,
    "request_end": TS,
    "response_start": TS,
    "response_end": TS,
    "ttfb_s": "float64",
    "request_body_len": "int64",
    "response_body_len": "int64",
    "response_body_decoded_len": "Int64",
    "req_content_type": "string",
    "resp_content_type": "string",
    "req_connection": "string",
    "resp_connection": "string",
    "resp_keep_alive": "string",
    "outcome": pd.CategoricalDtype(OUTCOMES),
    "ended_by": pd.CategoricalDtype(ENDED_BY),
    "first_frame": "Int64",
    "last_frame": "Int64",
}

GAP_ENDED_BY = ["client_data", "server_data"] + ENDED_BY

GAP_COLUMNS: dict[str, Any] = {
    "conn_id": "int64",
    "start": TS,
    "end": TS,
    "duration_s": "float64",
    "outstanding": "boolean",
    "ended_by": pd.CategoricalDtype(GAP_ENDED_BY),
    "start_frame": "Int64",
    "end_frame": "Int64",
}

FINDING_COLUMNS: dict[str, Any] = {
    "kind": "category",
    "severity": pd.CategoricalDtype(["info", "warning", "error"], ordered=True),
    "conn_id": "Int64",
    "request_index": "Int64",
    "summary": "string",
    "evidence": "object",
    "display_filter": "string",
}

TABLES: dict[str, dict[str, Any]] = {
    "connections": CONNECTION_COLUMNS,
    "requests": REQUEST_COLUMNS,
    "gaps": GAP_COLUMNS,
    "findings": FINDING_COLUMNS,
}


def _ns_to_ts(values: pd.Series) -> pd.Series:
    # Integer nanoseconds since the epoch (None for missing) -> tz-aware UTC timestamps.
    ints = pd.array([None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else int(v)
                     for v in values], dtype="Int64")
    return pd.Series(pd.to_datetime(ints, unit="ns", utc=True), index=values.index)


def frame_from_records(
    records: Iterable[Mapping[str, Any]] | pd.DataFrame, columns: Mapping[str, Any]
) -> pd.DataFrame:
    """Build a table with exactly ``columns`` (in order) and their dtypes.

    Timestamp columns may hold integer nanoseconds (or ``None``); extra keys in the
    records are kept after the contract's columns.
    """
    if isinstance(records, pd.DataFrame):
        df = records
    else:
        # Column by column as objects: from_records would turn int nanoseconds with a None
        # into float64 and lose precision (1.7e18 ns does not fit a double exactly).
        rows = list(records)
        keys: dict[str, None] = {}
        for r in rows:
            keys.update(dict.fromkeys(r))
        df = pd.DataFrame({k: pd.Series([r.get(k) for r in rows], dtype="object") for k in keys})
    out: dict[str, pd.Series] = {}
    n = len(df)
    for name, dtype in columns.items():
        if name in df.columns:
            col = df[name]
        else:
            col = pd.Series([None] * n, dtype="object")
        if dtype == TS:
            if not isinstance(col.dtype, pd.DatetimeTZDtype):
                col = _ns_to_ts(col)
            out[name] = pd.Series(col, index=df.index)
        elif dtype in ("int64", "int32") and col.isna().any():
            raise ValueError(f"column {name!r} must not have missing values")
        else:
            out[name] = col.astype(dtype) if n else pd.Series([], dtype=dtype)
    extra = [c for c in df.columns if c not in columns]
    result = pd.DataFrame(out, index=df.index)
    for c in extra:
        result[c] = df[c]
    return result.reset_index(drop=True)


def empty(columns: Mapping[str, Any]) -> pd.DataFrame:
    """An empty table with the contract's columns and dtypes."""
    return frame_from_records([], columns)
