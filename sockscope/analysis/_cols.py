"""Column access for the detectors: pandas columns as numpy arrays with one missing-value rule.

Timestamps become int64 nanoseconds (``NAT`` where missing), frame numbers int64 (``-1``
where missing), enumerations and texts object arrays (``None`` where missing). Detectors
compare whole arrays with these; they turn single cells back into Python values only for
the rows that became findings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

NAT = np.iinfo(np.int64).min      # pandas' own NaT as int64 nanoseconds
NO_FRAME = -1


def na(v: Any) -> bool:
    """A missing cell of any kind (None, NaN, pandas NA, NaT)."""
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def ns(col: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch; ``NAT`` where missing."""
    if len(col) == 0:
        return np.empty(0, np.int64)
    arr = col.array
    if hasattr(arr, "asi8"):
        return np.asarray(arr.asi8, dtype=np.int64)
    return np.asarray(pd.to_datetime(col, utc=True).array.asi8, dtype=np.int64)


def frames(col: pd.Series) -> np.ndarray:
    """Frame numbers (or any nullable counts) as int64; ``NO_FRAME`` where missing."""
    return col.astype("Int64").to_numpy(dtype=np.int64, na_value=NO_FRAME)


def floats(col: pd.Series) -> np.ndarray:
    """Floats with NaN where missing."""
    return col.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def flags(col: pd.Series) -> np.ndarray:
    """Booleans as a bool array; False where missing."""
    return col.astype("boolean").to_numpy(dtype=bool, na_value=False)


def texts(col: pd.Series) -> np.ndarray:
    """Texts or categories as an object array of ``str``; ``None`` where missing."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = np.array([str(c) for c in col.cat.categories] + [None], dtype=object)
        return cats[col.cat.codes.to_numpy()]    # code -1 (missing) takes the last slot
    out = np.array(col.astype(object).to_numpy(), dtype=object)    # a writable copy
    out[pd.isna(out)] = None
    return out


def iso(ns_value: int) -> str | None:
    """ISO-8601 text of one nanosecond timestamp, as pandas writes it (``+00:00``)."""
    return None if ns_value == NAT else pd.Timestamp(int(ns_value), unit="ns", tz="UTC").isoformat()


def hms(ns_value: int) -> str:
    """``12:00:05.123`` (milliseconds) of one nanosecond timestamp; ``-`` when missing."""
    return "-" if ns_value == NAT else pd.Timestamp(int(ns_value), unit="ns", tz="UTC").strftime("%H:%M:%S.%f")[:-3]


def frame(v: int) -> int | None:
    return None if v == NO_FRAME else int(v)
