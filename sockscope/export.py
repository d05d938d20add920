"""Write a capture's tables to files: JSON, CSV, Parquet, or Zeek's conn.log/http.log.

>>> export(cap, "out/", "parquet")    # doctest: +SKIP
[PosixPath('out/connections.parquet'), PosixPath('out/requests.parquet'), ...]

* ``json`` / ``csv``: the same rows as the CLI's ``--json`` / ``--csv`` (one file per table;
  CSV cells that a spreadsheet would run as a formula are escaped).
* ``parquet``: the tables with their pandas dtypes (categories, nullable integers, UTC
  timestamps to the nanosecond) via pyarrow; the findings' ``evidence`` dicts become a
  JSON text column, since Parquet has no "any dict" type.
* ``zeek``: ``conn.log`` and ``http.log`` in Zeek's ASCII log format, so the output can be
  read by zeek-cut and tools built for Zeek logs. Fields mean what Zeek's mean, with these
  differences: ``uid`` is a hash of the connection (stable across runs, not Zeek's random
  one); ``local_orig``/``local_resp`` are unset (no notion of local networks); connections
  are split like tshark's ``tcp.stream`` (a new SYN), not by Zeek's inactivity timeouts;
  ``http.log``'s ``*_mime_types`` are the declared Content-Type, not sniffed from the body,
  and no file ids are logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from sockscope import output

FORMATS = ("json", "csv", "parquet", "zeek")
TABLE_NAMES = ("connections", "requests", "gaps", "findings")


def tables(cap: Any) -> dict[str, pd.DataFrame]:
    """The four public tables of a capture, by name."""
    return {name: getattr(cap, name) for name in TABLE_NAMES}


def export(cap: Any, out_dir: str | os.PathLike, fmt: str) -> list[Path]:
    """Write the capture's tables into ``out_dir`` (created if needed); return the files written.

    ``fmt`` is ``json``, ``csv`` or ``parquet`` (``connections``, ``requests``, ``gaps``,
    ``findings`` with that extension) or ``zeek`` (``conn.log`` and ``http.log``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "zeek":
        return write_zeek(cap, out)
    written = []
    for name, df in tables(cap).items():
        path = out / f"{name}.{fmt}"
        if fmt == "json":
            with open(path, "w", encoding="ascii") as fh:
                output.write_json(df, fh)
        elif fmt == "csv":
            with open(path, "w", encoding="utf-8", newline="") as fh:
                output.write_csv(df, fh)
        else:
            parquet_frame(df).to_parquet(path, engine="pyarrow", index=False)
        written.append(path)
    return written


def _json_text(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return pd.NA
    return json.dumps(output._cell(v), ensure_ascii=False, sort_keys=True)


def parquet_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` ready for Parquet: columns of dicts/lists (``evidence``) as JSON text, ``string`` dtype.

    Every other column keeps its dtype; pandas stores the dtypes in the file's metadata so
    :func:`pandas.read_parquet` gives them back.
    """
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and any(isinstance(v, (dict, list, tuple)) for v in out[col]):
            out[col] = pd.Series([_json_text(v) for v in out[col]], index=out.index, dtype="string")
    return out


# -- Zeek ASCII logs ------------------------------------------------------------------------

SEPARATOR = "\t"
SET_SEPARATOR = ","
EMPTY = "(empty)"
UNSET = "-"

CONN_FIELDS: list[tuple[str, str]] = [
    ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
    ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto", "enum"), ("service", "string"),
    ("duration", "interval"), ("orig_bytes", "count"), ("resp_bytes", "count"),
    ("conn_state", "string"), ("local_orig", "bool"), ("local_resp", "bool"),
    ("missed_bytes", "count"), ("history", "string"), ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"), ("resp_pkts", "count"), ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"), ("ip_proto", "count"),
]

HTTP_FIELDS: list[tuple[str, str]] = [
    ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
    ("id.resp_h", "addr"), ("id.resp_p", "port"), ("trans_depth", "count"), ("method", "string"),
    ("host", "string"), ("uri", "string"), ("referrer", "string"), ("version", "string"),
    ("user_agent", "string"), ("origin", "string"), ("request_body_len", "count"),
    ("response_body_len", "count"), ("status_code", "count"), ("status_msg", "string"),
    ("info_code", "count"), ("info_msg", "string"), ("tags", "set[enum]"), ("username", "string"),
    ("password", "string"), ("proxied", "set[string]"), ("orig_fuids", "vector[string]"),
    ("orig_filenames", "vector[string]"), ("orig_mime_types", "vector[string]"),
    ("resp_fuids", "vector[string]"), ("resp_filenames", "vector[string]"),
    ("resp_mime_types", "vector[string]"),
]

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _na(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def conn_uid(client_ip: str, client_port: int, server_ip: str, server_port: int, start_ns: int) -> str:
    """A Zeek-style connection uid: ``C`` + 17 base62 characters of a hash of 4-tuple and start.

    Deterministic, so two exports of one capture (and conn.log vs http.log) agree.
    """
    key = f"{client_ip}|{int(client_port)}|{server_ip}|{int(server_port)}|{int(start_ns)}".encode()
    n = int.from_bytes(hashlib.blake2b(key, digest_size=13).digest(), "big")
    chars = []
    for _ in range(17):
        n, r = divmod(n, 62)
        chars.append(_B62[r])
    return "C" + "".join(chars)


def escape(value: str) -> str:
    """A string field as Zeek writes it: separators and non-printable bytes as ``\\xNN``.

    The text is UTF-8 encoded and every byte outside printable ASCII, the tab separator and
    the backslash are written as ``\\xNN`` (so the file is 7-bit clean and one row is one
    line). sockscope keeps undecodable bytes as ``\\xNN`` text already; those sequences are
    passed through, so the original byte comes out once, not double-escaped. A value that
    reads like the unset or empty marker is escaped so it is not taken for one; the empty
    string is written as ``(empty)``, like Zeek.
    """
    if value == "":
        return EMPTY
    if value == UNSET:
        return "\\x2d"
    if value == EMPTY:
        return "\\x28empty)"
    out = []
    raw = value.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x5C and _is_hex_escape(raw, i):
            out.append(raw[i:i + 4].decode("ascii"))
            i += 4
            continue
        if b < 0x20 or b > 0x7E or b == 0x5C or b == 0x09:
            out.append(f"\\x{b:02x}")
        else:
            out.append(chr(b))
        i += 1
    return "".join(out)


def _is_hex_escape(raw: bytes, i: int) -> bool:
    hexdigits = b"0123456789abcdefABCDEF"
    return (i + 3 < len(raw) and raw[i + 1] == 0x78 and raw[i + 2] in hexdigits and raw[i + 3] in hexdigits)


_ESCAPE = re.compile(r"(\\x[0-9a-fA-F]{2})")


def unescape(field: str) -> str | None:
    """Inverse of the writer for one field: ``None`` for unset, ``""`` for ``(empty)``."""
    if field == UNSET:
        return None
    if field == EMPTY:
        return ""
    raw = bytearray()
    for part in _ESCAPE.split(field):
        if _ESCAPE.fullmatch(part):
            raw.append(int(part[2:], 16))
        else:
            raw.extend(part.encode("utf-8"))
    return raw.decode("utf-8", "backslashreplace")


def _time(ts: Any) -> str:
    if _na(ts):
        return UNSET
    ns = pd.Timestamp(ts).value
    return f"{ns // 1_000_000_000}.{(ns % 1_000_000_000) // 1000:06d}"


def _count(v: Any) -> str:
    return UNSET if _na(v) else str(int(v))


def _str(v: Any) -> str:
    return UNSET if _na(v) else escape(str(v))


def _header(path_name: str, fields: Sequence[tuple[str, str]], opened: datetime) -> list[str]:
    return [
        "#separator \\x09",
        f"#set_separator{SEPARATOR}{SET_SEPARATOR}",
        f"#empty_field{SEPARATOR}{EMPTY}",
        f"#unset_field{SEPARATOR}{UNSET}",
        f"#path{SEPARATOR}{path_name}",
        f"#open{SEPARATOR}{opened:%Y-%m-%d-%H-%M-%S}",
        "#fields" + SEPARATOR + SEPARATOR.join(f for f, _ in fields),
        "#types" + SEPARATOR + SEPARATOR.join(t for _, t in fields),
    ]


def _write_log(path: Path, name: str, fields: Sequence[tuple[str, str]], rows: Iterable[list[str]]) -> None:
    opened = datetime.now(timezone.utc)
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        for line in _header(name, fields, opened):
            fh.write(line + "\n")
        for row in rows:
            assert len(row) == len(fields)
            fh.write(SEPARATOR.join(row) + "\n")
        fh.write(f"#close{SEPARATOR}{datetime.now(timezone.utc):%Y-%m-%d-%H-%M-%S}\n")


_SERVICE = {"http": "http", "tls": "ssl"}


def conn_rows(connections: pd.DataFrame) -> list[list[str]]:
    """``conn.log`` rows (lists of field strings, in ``CONN_FIELDS`` order), by start time."""
    rows = []
    df = connections.sort_values(["start", "conn_id"], kind="stable")
    for c in df.itertuples(index=False):
        dur = float(c.duration_s) if not _na(c.duration_s) else 0.0
        # Zeek leaves duration and the byte counts unset for a connection with no duration
        # (a single packet): there is no interval to report.
        has_dur = dur > 0
        rows.append([
            _time(c.start), _uid(c), _str(c.client_ip), _count(c.client_port), _str(c.server_ip),
            _count(c.server_port), "tcp", _SERVICE.get(str(c.protocol), UNSET),
            f"{dur:.6f}" if has_dur else UNSET,
            _count(c.client_bytes) if has_dur else UNSET, _count(c.server_bytes) if has_dur else UNSET,
            _str(c.state), UNSET, UNSET, _count(c.missed_bytes), _str(c.history) if not _na(c.history) and str(c.history) else UNSET,
            _count(c.client_pkts), _count(c.client_ip_bytes), _count(c.server_pkts), _count(c.server_ip_bytes),
            UNSET,      # tunnel_parents: Zeek leaves it unset when there is no tunnel
            "6",
        ])
    return rows


def _uid(c: Any) -> str:
    return conn_uid(str(c.client_ip), int(c.client_port), str(c.server_ip), int(c.server_port),
                    pd.Timestamp(c.start).value)


def _mime(v: Any) -> str:
    if _na(v) or not str(v).strip():
        return UNSET
    return escape(str(v).split(";", 1)[0].strip().lower())


def http_rows(connections: pd.DataFrame, requests: pd.DataFrame) -> list[list[str]]:
    """``http.log`` rows (in ``HTTP_FIELDS`` order), by request time."""
    conns = {int(c.conn_id): c for c in connections.itertuples(index=False)}
    df = requests.copy()
    df["log_ts"] = df["request_start"].fillna(df["response_start"])
    df = df.sort_values(["log_ts", "conn_id", "index"], kind="stable", na_position="last")
    rows = []
    for r in df.itertuples(index=False):
        c = conns.get(int(r.conn_id))
        if c is None:
            continue
        has_body = not _na(r.response_body_len) and int(r.response_body_len) > 0
        rows.append([
            _time(r.log_ts), _uid(c), _str(c.client_ip), _count(c.client_port), _str(c.server_ip),
            _count(c.server_port), _count(r.index), _str(r.method), _str(r.host), _str(r.uri), UNSET,
            _str(r.version), _str(r.user_agent), UNSET, _count(r.request_body_len),
            _count(r.response_body_len), _count(r.status), _str(r.reason), _count(r.info_code), UNSET,
            EMPTY, UNSET, UNSET, UNSET, UNSET, UNSET,
            _mime(r.req_content_type) if not _na(r.request_body_len) and int(r.request_body_len) > 0 else UNSET,
            UNSET, UNSET, _mime(r.resp_content_type) if has_body else UNSET,
        ])
    return rows


def write_zeek(cap: Any, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``conn.log`` and ``http.log`` (Zeek ASCII format) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    conn_path, http_path = out / "conn.log", out / "http.log"
    _write_log(conn_path, "conn", CONN_FIELDS, conn_rows(cap.connections))
    _write_log(http_path, "http", HTTP_FIELDS, http_rows(cap.connections, cap.requests))
    return [conn_path, http_path]


def read_zeek_log(path: str | os.PathLike) -> tuple[dict[str, str], list[dict[str, str | None]]]:
    """A small reader of Zeek ASCII logs: (header directives, rows with fields unescaped).

    Unset fields are ``None``; ``(empty)`` is ``""``. Used by the tests and handy for
    checking an export by hand.
    """
    meta: dict[str, str] = {}
    fields: list[str] = []
    rows: list[dict[str, str | None]] = []
    sep = SEPARATOR
    for line in Path(path).read_text(encoding="ascii").splitlines():
        if line.startswith("#separator "):
            sep = bytes(line.split(" ", 1)[1], "ascii").decode("unicode_escape")
            meta["separator"] = sep
        elif line.startswith("#"):
            key, _, value = line[1:].partition(sep)
            meta[key] = value
            if key == "fields":
                fields = value.split(sep)
        elif line:
            rows.append({f: unescape(v) for f, v in zip(fields, line.split(sep))})
    return meta, rows


__all__ = ["FORMATS", "CONN_FIELDS", "HTTP_FIELDS", "conn_uid", "escape", "export", "parquet_frame",
           "read_zeek_log", "tables", "unescape", "write_zeek"]
