"""Machine-readable rows: JSON-safe records and spreadsheet-safe CSV from the tables."""

from __future__ import annotations

import json
import math
from typing import Any, TextIO

import numpy as np
import pandas as pd

# A cell starting with one of these is a formula to a spreadsheet program.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, pd.Timedelta):
        return v.total_seconds()
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) else f
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "backslashreplace")
    if isinstance(v, dict):
        return {str(k): _cell(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_cell(x) for x in v]
    return v


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of JSON-safe values (ISO-8601 UTC timestamps, None for missing)."""
    cols = list(df.columns)
    out = []
    for row in df.itertuples(index=False, name=None):
        out.append({c: _cell(v) for c, v in zip(cols, row)})
    return out


def _iso_dates(df: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as ISO-8601 UTC strings with nanoseconds, formatted by numpy in C."""
    out = {}
    for c in df.columns:
        col = df[c]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            raw = col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
            txt = np.char.add(np.datetime_as_string(raw, unit="ns"), "Z").astype(object)
            txt[np.isnat(raw)] = None
            out[c] = txt
        else:
            out[c] = col
    return pd.DataFrame(out, columns=df.columns)


def write_json(df: pd.DataFrame, fh: TextIO) -> None:
    """One JSON array of row objects; timestamps ISO-8601 UTC (nanoseconds), missing = null."""
    if any(df[c].dtype == object and df[c].map(lambda v: isinstance(v, (dict, list))).any() for c in df.columns):
        # nested evidence: the generic path (small tables only)
        json.dump(records(df), fh, ensure_ascii=True, indent=1)
    else:
        # pandas' C encoder: fast for tables of a million rows; ensure_ascii keeps any byte
        # sequence from a capture valid JSON text.
        # In slices, so a million-row table never becomes one giant string in memory.
        step = 5000
        fh.write("[")
        for i in range(0, len(df), step):
            part = _iso_dates(df.iloc[i:i + step]).to_json(orient="records", force_ascii=True)
            fh.write(("," if i else "") + part[1:-1])
        fh.write("]")
    fh.write("\n")


def _csv_safe(v: Any) -> Any:
    v = _cell(v)
    if isinstance(v, (dict, list)):
        v = json.dumps(v, ensure_ascii=True)
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def write_csv(df: pd.DataFrame, fh: TextIO) -> None:
    """CSV with the same columns; text that a spreadsheet would run as a formula is escaped."""
    safe = pd.DataFrame({c: [_csv_safe(v) for v in df[c]] for c in df.columns}, columns=df.columns)
    safe.to_csv(fh, index=False)
