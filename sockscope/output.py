"""Machine-readable rows: JSON-safe records and spreadsheet-safe CSV from the tables."""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii as _jstr  # C; quotes + escapes
from typing import TYPE_CHECKING, Any, Callable, TextIO

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:       # pandas is imported where a frame is handled: JSON of the engine's
    import pandas as pd  # Arrow tables (write_table_json) runs without it

# A cell starting with one of these is a formula to a spreadsheet program.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(v: Any) -> Any:
    import pandas as pd

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


def _json_default(v: Any) -> Any:
    """What :func:`json.dumps` cannot write by itself: numpy scalars, timestamps."""
    out = _cell(v)
    if out is v:
        raise TypeError(f"not JSON: {type(v).__name__}")
    return out


def _write_nested(df: "pd.DataFrame", fh: TextIO, lines: bool = False) -> None:
    """Rows with nested cells (findings' evidence), one JSON object per line.

    Nested values are written by the C encoder as they are (numpy scalars and timestamps
    through ``_json_default``); a row holding a NaN somewhere is cleaned by :func:`_cell`
    first, since JSON has no NaN.
    """
    cols = list(df.columns)
    sep = "\n" if lines else ",\n"
    if not lines:
        fh.write("[\n")
    first = True
    for row in df.itertuples(index=False, name=None):
        rec = {c: (v if isinstance(v, (dict, list)) else _cell(v)) for c, v in zip(cols, row)}
        try:
            text = json.dumps(rec, ensure_ascii=True, allow_nan=False, default=_json_default)
        except ValueError:
            text = json.dumps(_cell(rec), ensure_ascii=True, default=_json_default)
        fh.write(text if first else sep + text)
        first = False
    if lines:
        fh.write("" if first else "\n")
    else:
        fh.write("]\n" if first else "\n]\n")


def use_system_allocator() -> None:
    """Make Arrow allocate with the C library's malloc (returns memory, lower peaks)."""
    pa.set_memory_pool(pa.system_memory_pool())


def _json_cells(arr: "pa.Array | pa.ChunkedArray") -> pa.Array:
    """JSON text of every cell of a column the row renderer has no fast path for
    (timestamps in units other than ns, uint64, nested values), as a string array."""
    import pyarrow.compute as pc    # only for these rare columns: its import costs 0.1 s

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    typ = arr.type
    if pa.types.is_timestamp(typ):
        # Arrow's cast of a zone-less timestamp prints "YYYY-MM-DD HH:MM:SS.fff" with the
        # unit's digits; the values are UTC
        iso = pc.cast(arr.cast(pa.timestamp(typ.unit)), pa.string())
        iso = pc.replace_substring(iso, " ", "T", max_replacements=1)
        txt = pc.binary_join_element_wise('"', iso, 'Z"', "")
    elif pa.types.is_integer(typ):
        txt = pc.cast(arr, pa.string())
    else:
        txt = pa.array([None if v is None else json.dumps(_cell(v), ensure_ascii=True)
                        for v in arr.to_pylist()], type=pa.string())
    return pc.fill_null(txt, "null")


def _prepared(arr: "pa.Array | pa.ChunkedArray") -> tuple:
    """A column ready for the compiled row renderer (rendered here when it has no fast path)."""
    from sockscope._rows import prepare

    prep = prepare(arr)
    return prep if prep is not None else prepare(_json_cells(arr).cast(pa.binary()))


def _arrow_column(col: "pd.Series") -> pa.Array:
    """A pandas column as the Arrow array the JSON row renderer writes."""
    import pandas as pd

    dt = col.dtype
    if isinstance(dt, pd.DatetimeTZDtype):
        return pa.array(col.dt.tz_convert("UTC").dt.tz_localize(None), type=pa.timestamp("ns"), from_pandas=True)
    if isinstance(dt, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy()
        return pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0),
                                              pa.array([str(c) for c in dt.categories], type=pa.string()))
    if pd.api.types.is_bool_dtype(dt):
        return pa.array(col, type=pa.bool_(), from_pandas=True)
    if pd.api.types.is_integer_dtype(dt):
        return pa.array(col, type=pa.int64(), from_pandas=True)
    if pd.api.types.is_timedelta64_dtype(dt):
        return pa.array(col.dt.total_seconds(), type=pa.float64(), from_pandas=True)
    if pd.api.types.is_float_dtype(dt):
        return pa.array(col, type=pa.float64(), from_pandas=True)
    if isinstance(dt, pd.StringDtype) or col.map(lambda v: v is None or isinstance(v, str)).all():
        return pa.array(col, type=pa.string(), from_pandas=True)
    # anything else (numbers of mixed types, timestamps as objects): one JSON text per cell,
    # as binary, which the row renderer copies as it is
    return pa.array([None if v is None or v is pd.NA or v is pd.NaT else json.dumps(_cell(v), ensure_ascii=True)
                     for v in col.tolist()], type=pa.binary())


def write_json(df: "pd.DataFrame", fh: TextIO, lines: bool = False) -> None:
    """One JSON array of row objects, one object per line; timestamps ISO-8601 UTC
    (nanoseconds), durations float seconds, missing = null, text ASCII-escaped so any byte
    sequence from a capture stays valid JSON. With ``lines``, JSON Lines: the objects alone,
    one per line."""
    if any(df[c].dtype == object and df[c].map(lambda v: isinstance(v, (dict, list))).any() for c in df.columns):
        _write_nested(df, fh, lines)    # findings' evidence
        return

    def cells(i: int, n: int) -> list[pa.Array]:
        part = df.iloc[i:i + n]
        return [_arrow_column(part[c]) for c in df.columns]

    _write_rows([str(c) for c in df.columns], len(df), cells, fh, lines)


def write_table_json(table: pa.Table, fh: TextIO, lines: bool = False) -> None:
    """:func:`write_json` for an Arrow table (the engine's tables): the same text, no pandas."""
    _write_rows(table.column_names, table.num_rows,
                lambda i, n: table.slice(i, n).columns, fh, lines)


# Columns are prepared ~128k cells at a time (for a pandas frame that is a conversion to
# Arrow, for a table a zero-copy slice; per slice, categories are rendered once) and rows
# rendered and written 1k at a time into one reused buffer: with ~1 KB rows, about a MB of
# text is in memory however long the table.
_BATCH_CELLS = 1 << 17
_JOIN_ROWS = 1_024


def _write_rows(names: list[str], nrows: int, cells: Callable[[int, int], list[pa.Array]], fh: TextIO,
                lines: bool = False) -> None:
    from sockscope._rows import RowWriter

    keys = [(("{" if i == 0 else ",") + _jstr(c) + ":").encode("ascii") for i, c in enumerate(names)]
    if not lines:
        fh.write("[\n")
    raw = getattr(fh, "buffer", None)    # the text is ASCII: its bytes can skip the str copy
    step = max(_JOIN_ROWS, _BATCH_CELLS // max(1, len(names)) // _JOIN_ROWS * _JOIN_ROWS)
    writer = RowWriter()
    for i in range(0, nrows, step):
        cols = [_prepared(c) for c in cells(i, step)]
        n = min(step, nrows - i)
        for j in range(0, n, _JOIN_ROWS):
            text = writer.render(keys, cols, j, min(_JOIN_ROWS, n - j), i + j == 0)
            if lines:
                # rows are joined by ",\n"; a raw newline never occurs inside a row (strings
                # are escaped), so the joints are exactly these
                text = bytes(text).replace(b",\n{", b"\n{")
            if raw is not None:
                fh.flush()
                raw.write(text)
            else:
                fh.write(str(text, "ascii"))
    if lines:
        fh.write("\n" if nrows else "")
    else:
        fh.write("\n]\n" if nrows else "]\n")


def _csv_safe(v: Any) -> Any:
    v = _cell(v)
    if isinstance(v, (dict, list)):
        v = json.dumps(v, ensure_ascii=True)
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def write_csv(df: "pd.DataFrame", fh: TextIO) -> None:
    """CSV with the same columns: integers as integers (missing: empty), timestamps as in
    JSON (ISO-8601 UTC, always nine fractional digits, ``Z``), floats as repr, nested cells
    as JSON; text that a spreadsheet would run as a formula is escaped."""
    import pandas as pd

    out = {}
    for c in df.columns:
        col = df[c]
        dt = col.dtype
        if isinstance(dt, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dt):
            ns = col.dt.tz_convert("UTC").dt.tz_localize(None) if isinstance(dt, pd.DatetimeTZDtype) else col
            text = np.datetime_as_string(ns.to_numpy(dtype="datetime64[ns]"), unit="ns")
            out[c] = pd.Series([None if t == "NaT" else t + "Z" for t in text], index=df.index, dtype=object)
        elif pd.api.types.is_bool_dtype(dt) or pd.api.types.is_integer_dtype(dt) or pd.api.types.is_float_dtype(dt):
            out[c] = col
        else:
            out[c] = pd.Series([_csv_safe(v) for v in col], index=df.index, dtype=object)
    pd.DataFrame(out, columns=df.columns).to_csv(fh, index=False)
