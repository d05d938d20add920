"""Compare the tables of two engines (native vs tshark) and list every disagreement.

:func:`crosscheck` returns one row per disagreement; :func:`ok` says whether all of them
are explained. A disagreement is *explained* only when it matches one of the documented,
known differences in :data:`KNOWN_DIFFERENCES` (for example, tshark cannot tell the client
of a connection without a SYN any better than a guess, and neither can the native engine,
so two different guesses are not a bug).

What is compared
----------------
* connections, matched by ``conn_id`` and the unordered 4-tuple: a row present in one
  table only is reported as ``missing in native`` / ``missing in <other_name>``
  (field ``connection``); same endpoints with client and server swapped is one ``roles``
  row, and the remaining fields of that connection are compared after mapping the other
  engine's values onto the native orientation (so a swap is reported once, not as
  pkts/closed_by noise);
* per connection: ``closed_by``, ``close_kind``, ``close_frame``, ``idle_before_close_s``
  (within ``idle_tol_s``), ``client_pkts``, ``server_pkts``, ``requests``;
* per request, matched by ``(conn_id, index)`` on connections present in both: presence
  (field ``request``), ``method``, ``uri``, ``status``, ``outcome``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pandas as pd

__all__ = ["crosscheck", "ok", "KNOWN_DIFFERENCES", "KnownDifference", "DISAGREEMENT_COLUMNS"]

DISAGREEMENT_COLUMNS: dict[str, Any] = {
    "table": "string",
    "conn_id": "Int64",
    "request_index": "Int64",
    "field": "string",
    "native": "object",
    "other": "object",
    "explained": "bool",
    "reason": "string",
}


@dataclass(frozen=True)
class KnownDifference:
    """A documented reason why the engines may legitimately disagree.

    ``applies(row, native_conn, other_conn)`` gets the disagreement row (a dict with the
    DISAGREEMENT_COLUMNS keys) and the two connection rows (dicts, or None when absent).
    """

    name: str
    reason: str
    applies: Callable[[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None], bool]


def _heuristic_roles(row: dict, n: dict | None, o: dict | None) -> bool:
    return (
        row["field"] == "roles"
        and n is not None
        and o is not None
        and (str(n.get("roles_from")) == "heuristic" or str(o.get("roles_from")) == "heuristic")
    )


def _tshark_no_http(row: dict, n: dict | None, o: dict | None) -> bool:
    # tshark dissects HTTP only on registered ports (and, with the heuristic, only when
    # the first segment of a direction looks like HTTP): it may see fewer requests.
    if o is None or str(o.get("protocol")) == "http":
        return False
    if row["field"] == "requests":
        return (row["other"] or 0) < (row["native"] or 0)
    if row["field"] == "request":
        return row["other"] is None
    return False


def _partial_vs_no_response(row: dict, n: dict | None, o: dict | None) -> bool:
    # An unfinished response is never reported by tshark's HTTP dissector; the tshark
    # engine only infers partial_response from unconsumed server payload.
    return row["field"] == "outcome" and {row["native"], row["other"]} == {
        "partial_response",
        "no_response",
    }


def _http09(row: dict, n: dict | None, o: dict | None) -> bool:
    # tshark does not parse version-less (HTTP/0.9) request lines.
    return row["field"] in ("request", "requests") and bool(row.get("_native_http09"))


KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    KnownDifference(
        "heuristic_roles",
        "no SYN/SYN-ACK seen: both engines guess the client and their heuristics differ",
        _heuristic_roles,
    ),
    KnownDifference(
        "tshark_http_ports",
        "tshark dissects HTTP only on its registered ports or when a direction's first "
        "segment looks like HTTP; the native engine frames HTTP by content on any port",
        _tshark_no_http,
    ),
    KnownDifference(
        "unfinished_response",
        "tshark reports an HTTP message only once complete; a response cut short is "
        "partial_response only if the engine saw its payload",
        _partial_vs_no_response,
    ),
    KnownDifference(
        "http09",
        "tshark does not dissect HTTP/0.9 (version-less) requests",
        _http09,
    ),
)


def _na(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _plain(v: Any) -> Any:
    """Scalars as plain Python values (None for any missing marker)."""
    if _na(v):
        return None
    if hasattr(v, "item"):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    return v


def _differ(a: Any, b: Any, tol: float | None = None) -> bool:
    a, b = _plain(a), _plain(b)
    if a is None or b is None:
        return (a is None) != (b is None)
    if tol is not None:
        return not math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=tol)
    return str(a) != str(b)


def _tuple_text(c: Mapping[str, Any]) -> str:
    return f"{c['client_ip']}:{c['client_port']} -> {c['server_ip']}:{c['server_port']}"


def _records(df: pd.DataFrame | None, key: Callable[[dict], Any]) -> dict[Any, dict[str, Any]]:
    if df is None or len(df) == 0:
        return {}
    return {key(r): r for r in df.to_dict("records")}


_SWAP_SIDE = {"client": "server", "server": "client"}


def crosscheck(
    native: Mapping[str, pd.DataFrame],
    other: Mapping[str, pd.DataFrame],
    *,
    idle_tol_s: float = 1e-6,
    other_name: str = "tshark",
) -> pd.DataFrame:
    """Every disagreement between two engines' ``connections`` and ``requests`` tables.

    Returns a DataFrame with columns ``table, conn_id, request_index, field, native,
    other, explained, reason`` (``native``/``other`` hold the two values, None when a side
    has none; ``reason`` is the known-difference reason when ``explained``, otherwise what
    kind of disagreement it is). Empty when the engines agree on everything compared.
    """
    nconn = _records(native.get("connections"), lambda r: int(r["conn_id"]))
    oconn = _records(other.get("connections"), lambda r: int(r["conn_id"]))
    rows: list[dict[str, Any]] = []

    def add(table: str, cid: int, idx: int | None, fld: str, nv: Any, ov: Any, what: str, **extra: Any) -> None:
        rows.append(
            {"table": table, "conn_id": cid, "request_index": idx, "field": fld,
             "native": _plain(nv), "other": _plain(ov), "explained": False, "reason": what, **extra}
        )

    both: dict[int, bool] = {}  # conn_id -> roles swapped
    for cid in sorted(set(nconn) | set(oconn)):
        n, o = nconn.get(cid), oconn.get(cid)
        if n is not None and o is not None:
            ne = {(n["client_ip"], int(n["client_port"])), (n["server_ip"], int(n["server_port"]))}
            oe = {(o["client_ip"], int(o["client_port"])), (o["server_ip"], int(o["server_port"]))}
            if ne != oe:
                # Same id, different connection: each is missing from the other table.
                add("connections", cid, None, "connection", _tuple_text(n), None, f"missing in {other_name}")
                add("connections", cid, None, "connection", None, _tuple_text(o), "missing in native")
                continue
            swapped = (n["client_ip"], int(n["client_port"])) != (o["client_ip"], int(o["client_port"]))
            both[cid] = swapped
            if swapped:
                add("connections", cid, None, "roles", _tuple_text(n), _tuple_text(o), "client/server swapped")
            cmp = dict(o)
            if swapped:
                cmp["client_pkts"], cmp["server_pkts"] = o["server_pkts"], o["client_pkts"]
                cb = _plain(o["closed_by"])
                cmp["closed_by"] = _SWAP_SIDE.get(cb, cb)
            for fld in ("closed_by", "close_kind", "close_frame", "client_pkts", "server_pkts", "requests"):
                if _differ(n[fld], cmp[fld]):
                    add("connections", cid, None, fld, n[fld], cmp[fld], "values differ")
            if _differ(n["idle_before_close_s"], o["idle_before_close_s"], tol=idle_tol_s):
                add("connections", cid, None, "idle_before_close_s", n["idle_before_close_s"],
                    o["idle_before_close_s"], f"differ by more than {idle_tol_s:g} s")
        elif n is not None:
            add("connections", cid, None, "connection", _tuple_text(n), None, f"missing in {other_name}")
        else:
            add("connections", cid, None, "connection", None, _tuple_text(o), "missing in native")

    def rkey(r: dict) -> tuple[int, int]:
        return int(r["conn_id"]), int(r["index"])

    nreq = {k: v for k, v in _records(native.get("requests"), rkey).items() if k[0] in both}
    oreq = {k: v for k, v in _records(other.get("requests"), rkey).items() if k[0] in both}
    http09 = {k[0] for k, v in nreq.items() if _plain(v.get("version")) == "0.9"}
    for key in sorted(set(nreq) | set(oreq)):
        cid, idx = key
        n, o = nreq.get(key), oreq.get(key)
        if n is None or o is None:
            present = n if n is not None else o
            txt = f"{_plain(present.get('method'))} {_plain(present.get('uri'))}"
            if n is None:
                add("requests", cid, idx, "request", None, txt, "missing in native")
            else:
                add("requests", cid, idx, "request", txt, None, f"missing in {other_name}",
                    _native_http09=_plain(n.get("version")) == "0.9")
            continue
        for fld in ("method", "uri", "status", "outcome"):
            if _differ(n[fld], o[fld]):
                add("requests", cid, idx, fld, n[fld], o[fld], "values differ")
    for r in rows:
        if r["field"] == "requests" and r["conn_id"] in http09:
            r["_native_http09"] = True

    for r in rows:
        n, o = nconn.get(r["conn_id"]), oconn.get(r["conn_id"])
        for kd in KNOWN_DIFFERENCES:
            if kd.applies(r, n, o):
                r["explained"] = True
                r["reason"] = f"{kd.name}: {kd.reason}"
                break
        r.pop("_native_http09", None)

    out = pd.DataFrame(rows, columns=list(DISAGREEMENT_COLUMNS))
    return out.astype(DISAGREEMENT_COLUMNS)


def ok(disagreements: pd.DataFrame) -> bool:
    """True when every disagreement is explained (an empty table is ok)."""
    return bool(disagreements["explained"].all()) if len(disagreements) else True
