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
* The engine builds its tables as Arrow tables (:func:`arrow_type` gives each column's
  Arrow type) so that JSON output never needs pandas; :func:`frame_from_arrow` turns them
  into the pandas dtypes above. This module imports pandas only when a pandas dtype or
  frame is asked for: a ``sockscope summary --json`` process never loads it.

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

Extended columns (both engines; the analysis layer reads them)
--------------------------------------------------------------
Every one is declared below (``_EXTENDED_CONNECTIONS``, ``_EXTENDED_REQUESTS``) with its
dtype and a line saying what it means: :func:`extended` and :func:`extended_doc` give them,
the frames take their dtypes from there (the same whatever the data: a frame column with no
missing value is still ``Int64``), and a test checks both engines and every column name the
analysis layer reads against the list. Two of them, at more length:

* connections ``data_after_close_rst_frame`` / ``_ts``: the first RST sent, after the first
  payload that followed the close, by the side that had not sent that payload: its kernel
  refusing data for a socket that is gone. It is not the closer's own earlier RST (a client
  that closed with RST resets a second time when the late answer arrives).
* requests ``response_after_close``: the response began after the client's first FIN or
  RST, i.e. it was sent to a socket the client had closed. ``outcome`` still describes the
  bytes on the wire (``complete`` when the whole answer was sent); this flag says the
  client cannot have read it (after an RST, or a FIN from an application that destroyed the
  socket; the ``response_after_close`` finding says which).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


class Categories(list):
    """The categories of an enumeration column (a pandas ``CategoricalDtype`` once pandas
    is loaded, an Arrow dictionary column in the engine)."""

    def __init__(self, values: Iterable[str], ordered: bool = False) -> None:
        super().__init__(values)
        self.ordered = ordered


TS = "datetime64[ns, UTC]"

# name -> pandas dtype, in the order the columns appear.
_CONNECTION_SPEC: dict[str, Any] = {
    "conn_id": "int64",
    "client_ip": "string",
    "client_port": "int32",
    "server_ip": "string",
    "server_port": "int32",
    "roles_from": Categories(["syn", "heuristic"]),
    "start": TS,
    "end": TS,
    "duration_s": "float64",
    "client_pkts": "int64",
    "server_pkts": "int64",
    "client_bytes": "int64",
    "server_bytes": "int64",
    "client_ip_bytes": "int64",
    "server_ip_bytes": "int64",
    "state": Categories(
        ["S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"]
    ),
    "history": "string",
    "closed_by": Categories(["client", "server"]),
    "close_kind": Categories(["FIN", "RST"]),
    "close_ts": TS,
    "close_frame": "Int64",
    "idle_before_close_s": "float64",
    "requests": "int64",
    "unanswered": "int64",
    "protocol": Categories(["http", "tls", "unknown"]),
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

_REQUEST_SPEC: dict[str, Any] = {
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
    "outcome": Categories(OUTCOMES),
    "ended_by": Categories(ENDED_BY),
    "first_frame": "Int64",
    "last_frame": "Int64",
}

GAP_ENDED_BY = ["client_data", "server_data"] + ENDED_BY

_GAP_SPEC: dict[str, Any] = {
    "conn_id": "int64",
    "start": TS,
    "end": TS,
    "duration_s": "float64",
    "outstanding": "boolean",
    "ended_by": Categories(GAP_ENDED_BY),
    "start_frame": "Int64",
    "end_frame": "Int64",
}

STALL_KINDS = ["zero_window", "keepalive"]

# One row per stall: a receiver advertising a zero window for at least 0.2 s (or until the
# connection ended), or a run of keep-alive probes the peer never answered. Sparse: most
# connections have none, so these are rows of their own table, not connection columns.
_STALL_SPEC: dict[str, Any] = {
    "conn_id": "int64",
    "kind": Categories(STALL_KINDS),
    "side": Categories(["client", "server"]),   # zero_window: the receiver; keepalive: the prober
    "start": TS,
    "end": TS,                                  # window reopened / last probe / connection's last packet
    "duration_s": "float64",
    "start_frame": "Int64",
    "end_frame": "Int64",
    "probes": "int64",                          # the peer's window probes / the prober's unanswered probes
    "resolved": "boolean",                      # the window reopened (keep-alive rows: never)
    "peer_quiet_before_s": "float64",           # keepalive: the peer's silence before the first probe
}

_FINDING_SPEC: dict[str, Any] = {
    "kind": "category",
    "severity": Categories(["info", "warning", "error"], ordered=True),
    "conn_id": "Int64",
    "request_index": "Int64",
    "summary": "string",
    "evidence": "object",
    "display_filter": "string",
}

# The extended columns: after the contract's, in both engines unless said, and read by the
# analysis layer (sockscope.analysis) and the faces. Declared here once, with what each
# means; the engines and the frames take their dtypes from here (tests check both engines
# against this list). Not part of the published contract: they may change with the analysis.
_SIDE = Categories(["client", "server"])
ENDPOINT_STATES = ["INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET"]
TUNNELS = ["vxlan", "geneve", "gre", "erspan", "ipip"]


def _per_side(fields: dict[str, tuple[Any, str]]) -> dict[str, tuple[Any, str]]:
    """The same columns for the client (first) and the server."""
    out: dict[str, tuple[Any, str]] = {}
    for side in ("client", "server"):
        out.update({f"{side}_{k}": (kind, doc.replace("{side}", side)) for k, (kind, doc) in fields.items()})
    return out


_EXTENDED_CONNECTIONS: dict[str, tuple[Any, str]] = {
    "last_payload_by": (_SIDE, "who sent the last segment with new payload (last_payload_*)"),
    "close_by_ack": ("boolean", "the close is a FIN the capture never held, known from the peer's ACK of "
                                "it (one direction captured); close_frame is that ACK"),
    **_per_side({
        "fin_ts": (TS, "the {side}'s first FIN"), "fin_frame": ("Int64", "the {side}'s first FIN"),
        "rst_ts": (TS, "the {side}'s first RST"), "rst_frame": ("Int64", "the {side}'s first RST"),
    }),
    "data_after_close_pkts": ("int64", "payload segments with new bytes after the first FIN/RST"),
    "data_after_close_bytes": ("int64", "their bytes"),
    "data_after_close_frame": ("Int64", "the first of them"),
    "data_after_close_ts": (TS, "the first of them"),
    "data_after_close_by": (_SIDE, "who sent the first of them"),
    "data_after_close_rst_ts": (TS, "the first RST after it by the other side (its kernel refusing data)"),
    "data_after_close_rst_frame": ("Int64", "that RST"),
    **_per_side({
        "ttl_min": ("Int64", "lowest IP TTL / hop limit of the {side}'s own packets (not its RSTs)"),
        "ttl_max": ("Int64", "highest of them"),
        "rst_ttl": ("Int64", "the TTL of the {side}'s first RST (middlebox_rst: a forged one differs)"),
        "rst_ip_id": ("Int64", "its IPv4 ID"),
        "ip_id_before_rst": ("Int64", "the IPv4 ID of the {side}'s packet before it"),
    }),
    **_per_side({
        "unacked_since_ts": (TS, "when the {side}'s flight the peer never acknowledged began (silent_drop)"),
        "unacked_since_frame": ("Int64", "its first segment"),
        "unacked_retransmits": ("Int64", "its retransmissions"),
        "unacked_bytes": ("Int64", "its bytes"),
        "unacked_peer_quiet_s": ("float64", "the peer's silence before it began (none: the peer never seen)"),
    }),
    **_per_side({
        "unacked_acked_bytes": ("Int64", "bytes of that flight the peer did acknowledge (0: none; the "
                                         "keep-alive race: a FIN acknowledging none of it crossed it)"),
    }),
    **_per_side({
        "unseen_acked_bytes": ("Int64", "bytes the {side} sent that no captured packet carried, known from "
                                        "the peer's ACKs (one direction captured, capture loss)"),
        "unseen_acked_ts": (TS, "when the last of them (beyond an unseen FIN's one) was acknowledged"),
    }),
    **_per_side({"state": (Categories(ENDPOINT_STATES), "Zeek's endpoint state of the {side} at the end "
                                                        "(native engine only)")}),
    "tunnel": (Categories(TUNNELS), "the tunnel the first packet came in (native engine only)"),
    "tunnel_id": ("Int64", "its VNI, GRE key or ERSPAN session id (native engine only)"),
    "capture": ("category", "the capture point (file) of the row, when several files overlap in time"),
    "twin_conn_id": ("Int64", "the same connection at the other capture point"),
}

_EXTENDED_REQUESTS: dict[str, tuple[Any, str]] = {
    "response_after_close": ("boolean", "the response began after the client's first FIN or RST"),
    "resp_version": ("string", "the response's HTTP version"),
    "request_first_frame": ("Int64", "the request's first frame"),
    "request_last_frame": ("Int64", "the request's last frame"),
    "response_first_frame": ("Int64", "the response's first frame"),
    "response_last_frame": ("Int64", "the response's last frame"),
}

_EXTENDED: dict[str, dict[str, tuple[Any, str]]] = {"connections": _EXTENDED_CONNECTIONS,
                                                    "requests": _EXTENDED_REQUESTS}


def extended(table: str) -> dict[str, Any]:
    """A table's extended columns (see above): name -> dtype name or :class:`Categories`."""
    return {k: kind for k, (kind, _) in _EXTENDED.get(table, {}).items()}


def extended_doc(table: str) -> dict[str, str]:
    """What each extended column of ``table`` means, one line each."""
    return {k: doc for k, (_, doc) in _EXTENDED.get(table, {}).items()}


def extended_pandas(table: str) -> dict[str, Any]:
    """:func:`extended` with pandas dtypes."""
    return {k: _pandas_dtype(v) for k, v in extended(table).items()}


_SPECS: dict[str, dict[str, Any]] = {
    "connections": _CONNECTION_SPEC,
    "requests": _REQUEST_SPEC,
    "gaps": _GAP_SPEC,
    "stalls": _STALL_SPEC,
    "findings": _FINDING_SPEC,
}
_PUBLIC = {"CONNECTION_COLUMNS": "connections", "REQUEST_COLUMNS": "requests", "GAP_COLUMNS": "gaps",
           "STALL_COLUMNS": "stalls", "FINDING_COLUMNS": "findings"}
_built: dict[str, Any] = {}


def spec(table: str) -> dict[str, Any]:
    """A table's columns without pandas: name -> dtype name, or :class:`Categories`."""
    return _SPECS[table]


def _pandas_dtype(kind: Any) -> Any:
    import pandas as pd

    if isinstance(kind, Categories):
        return pd.CategoricalDtype(list(kind), ordered=kind.ordered)
    return kind


def __getattr__(name: str) -> Any:
    # CONNECTION_COLUMNS & co. hold pandas dtypes: built on first use, so importing this
    # module (as the engine does) does not import pandas.
    if name in _PUBLIC or name == "TABLES":
        if not _built:
            for const, table in _PUBLIC.items():
                _built[const] = {k: _pandas_dtype(v) for k, v in _SPECS[table].items()}
            _built["TABLES"] = {table: _built[const] for const, table in _PUBLIC.items()}
        return _built[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def arrow_type(kind: Any) -> "pa.DataType":
    """The Arrow type the engine stores a column of this dtype in."""
    import pyarrow as pa

    if isinstance(kind, Categories) or kind == "category":
        return pa.dictionary(pa.int8() if isinstance(kind, Categories) else pa.int32(), pa.string())
    return {"int64": pa.int64(), "Int64": pa.int64(), "int32": pa.int32(), "float64": pa.float64(),
            "string": pa.string(), TS: pa.timestamp("ns", tz="UTC"), "boolean": pa.bool_()}[kind]


def frame_from_arrow(table: "pa.Table", name: str) -> "pd.DataFrame":
    """An engine table (Arrow) as a pandas frame with the dtypes of table ``name``'s contract.

    Columns outside the contract keep their natural dtype: integers are ``int64``
    (``Int64`` when some are missing), text is ``string``, dictionaries are ``category``,
    timestamps UTC.
    """
    return frame_from_columns(dict(zip(table.column_names, table.columns)), table.num_rows, name)


def frame_from_columns(columns: "dict[str, pa.ChunkedArray]", n: int, name: str) -> "pd.DataFrame":
    """:func:`frame_from_arrow` on a table's columns, taking them out of ``columns`` one at
    a time: when the caller dropped the table, each Arrow column is freed as soon as its
    pandas column exists, so the peak holds one column twice, not the whole table.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    public = _SPECS[name]
    spec_ = {**public, **extended(name)}
    out: dict[str, Any] = {}
    for col_name in list(columns):
        col = columns.pop(col_name)
        kind = spec_.get(col_name)
        typ = col.type
        if isinstance(kind, Categories) or pa.types.is_dictionary(typ):
            # copied: the codes would be a read-only view of Arrow memory (one byte a row)
            ser = pd.Series(col.to_pandas(), copy=True)
            out[col_name] = ser.astype(_pandas_dtype(kind)) if kind is not None else ser
        elif pa.types.is_timestamp(typ):
            out[col_name] = pd.Series(col.to_pandas(), copy=False)
        elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
            out[col_name] = pd.Series(pd.StringDtype().__from_arrow__(col), copy=False)
        elif pa.types.is_boolean(typ):
            out[col_name] = pd.Series(pd.BooleanDtype().__from_arrow__(col), copy=False)
        elif pa.types.is_integer(typ):
            if kind == "Int64" or (kind is None and col.null_count):
                out[col_name] = pd.Series(pd.Int64Dtype().__from_arrow__(col.cast(pa.int64())), copy=False)
            else:
                # a copy: numpy views of Arrow memory are read-only, and users write to frames
                out[col_name] = pd.Series(np.array(col.to_numpy(), dtype=kind or "int64"), copy=False)
        elif pa.types.is_floating(typ):
            out[col_name] = pd.Series(np.array(col.to_numpy(zero_copy_only=False), dtype="float64"), copy=False)
        else:
            out[col_name] = pd.Series(col.to_pandas(), copy=False)
        del col
    if not n:
        return frame_from_records([], {k: _pandas_dtype(v) for k, v in public.items()} | {
            k: (_pandas_dtype(spec_[k]) if k in spec_ else out[k].dtype) for k in out if k not in public})
    # copy=False: the columns are fresh already; consolidating them into 2-D blocks would
    # hold a second copy of every numeric column at the peak (1M rows: +230 MB)
    return pd.DataFrame(out, copy=False)


def _ns_to_ts(values: "pd.Series") -> "pd.Series":
    import pandas as pd

    # Integer nanoseconds since the epoch (None for missing) -> tz-aware UTC timestamps.
    ints = pd.array([None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else int(v)
                     for v in values], dtype="Int64")
    return pd.Series(pd.to_datetime(ints, unit="ns", utc=True), index=values.index)


def frame_from_records(
    records: "Iterable[Mapping[str, Any]] | pd.DataFrame", columns: Mapping[str, Any]
) -> "pd.DataFrame":
    """Build a table with exactly ``columns`` (in order) and their dtypes.

    Timestamp columns may hold integer nanoseconds (or ``None``); extra keys in the
    records are kept after the contract's columns.
    """
    import pandas as pd

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


def empty(columns: Mapping[str, Any]) -> "pd.DataFrame":
    """An empty table with the contract's columns and dtypes."""
    return frame_from_records([], columns)
