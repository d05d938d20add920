"""``df.sockscope``: connection-aware helpers on any sockscope table.

Importing this module registers the accessor on every pandas DataFrame::

    import sockscope.accessor  # noqa: F401  (registers .sockscope)

    cap.requests.sockscope.on(3)             # the rows of connection 3
    cap.findings.sockscope.on(0, 2).sockscope.filter()   # 'tcp.stream in {0,2}'
    cap.requests.sockscope.by_type().size()  # requests per method + path template

Works on ``connections``, ``requests``, ``gaps`` and ``findings`` (any frame with a
``conn_id`` column, which is tshark's ``tcp.stream`` number).
"""

from __future__ import annotations

import warnings
from typing import Iterable

import pandas as pd

from sockscope.analysis import request_type
from sockscope.filters import MATCH_NOTHING, streams_filter


class SockscopeAccessor:
    """The ``.sockscope`` namespace of a DataFrame (see the module docstring)."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def _conn_col(self) -> pd.Series:
        if "conn_id" not in self._df.columns:
            raise AttributeError("this DataFrame has no 'conn_id' column: not a sockscope table")
        return self._df["conn_id"]

    def on(self, *conn_ids: int | Iterable[int]) -> pd.DataFrame:
        """The rows that belong to the given connection(s): ``df.sockscope.on(0)``, ``.on(0, 2)``, ``.on([0, 2])``."""
        wanted: list[int] = []
        for c in conn_ids:
            if isinstance(c, Iterable) and not isinstance(c, (str, bytes)):
                wanted.extend(int(x) for x in c)
            else:
                wanted.append(int(c))  # type: ignore[arg-type]
        return self._df[self._conn_col().isin(wanted).fillna(False).astype(bool)]

    def conn_ids(self) -> list[int]:
        """The distinct connection ids of the rows, sorted (rows without one are skipped)."""
        return sorted({int(c) for c in self._conn_col().dropna()})

    def filter(self) -> str:
        """A Wireshark display filter showing the packets of these rows' connections.

        ``tcp.stream in {0,2}`` (sockscope's ``conn_id`` is tshark's ``tcp.stream``). For no
        rows it is a filter that matches nothing, not an empty one (which shows everything).
        """
        return streams_filter(self.conn_ids())

    def request_types(self) -> pd.Series:
        """Each request's type: method and path template (``GET /files/{id}``)."""
        df = self._df
        if "method" not in df.columns or "uri" not in df.columns:
            raise AttributeError("request types need 'method' and 'uri' columns (the requests table)")
        return pd.Series([request_type(m, u) for m, u in zip(df["method"], df["uri"])], index=df.index,
                         name="request_type", dtype="string")

    def by_type(self) -> "pd.core.groupby.DataFrameGroupBy":
        """Requests grouped by type (method + path template), e.g. ``.by_type()["ttfb_s"].describe()``."""
        return self._df.groupby(self.request_types(), sort=True)


def register() -> None:
    """Register ``.sockscope`` on DataFrames (done on import; idempotent and quiet)."""
    # On the class, pandas' accessor descriptor returns the registered class itself.
    if getattr(pd.DataFrame, "sockscope", None) is SockscopeAccessor:
        return
    with warnings.catch_warnings():
        # pandas warns when a name is registered twice (module reloads in a notebook).
        warnings.simplefilter("ignore", UserWarning)
        pd.api.extensions.register_dataframe_accessor("sockscope")(SockscopeAccessor)


register()

__all__ = ["MATCH_NOTHING", "SockscopeAccessor", "register"]
