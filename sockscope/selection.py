"""Row selection over the public tables: the same options on every tabular command.

``--conn ID``, ``--host ADDR``, ``--port N``, ``--since T`` / ``--until T``, ``--where EXPR``,
``--sort COL``, ``--limit N`` (and ``--kind`` for findings). One :class:`Selection` is applied
to any of ``connections``, ``requests``, ``gaps`` and ``findings``; the tables that do not
carry addresses or a time of their own (requests, gaps, findings) are matched through their
connection's row.

* ``--host``: client or server address of the connection (for requests also the ``Host``
  header's name); ``--port``: client or server port.
* ``--since`` / ``--until``: an ISO-8601 time (``2024-03-14T12:00:05Z``; no zone = UTC), a
  time of day (``12:00:05.5``, on the capture's first day) or seconds from the capture's
  start (``+5``, ``+1.5``). A row is kept when its time (connections: ``start``, requests:
  ``request_start``, gaps: ``start``, findings: the connection's ``start``) lies within.
* ``--where``: a pandas ``DataFrame.query`` expression over the table's columns, e.g.
  ``"idle_before_close_s > 4 and closed_by == 'client'"`` or ``"status >= 500"``.
* ``--sort``: a column, ``-column`` for descending; several separated by commas.
* ``--limit``: at most N rows, after sorting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


class SelectionError(ValueError):
    """A selection that cannot be applied as written (unknown column, bad time or expression)."""


TIME_COLUMN = {"connections": "start", "requests": "request_start", "gaps": "start"}


@dataclass(frozen=True)
class Selection:
    conn: tuple[int, ...] = ()
    host: tuple[str, ...] = ()
    port: tuple[int, ...] = ()
    since: str | None = None
    until: str | None = None
    where: str | None = None
    sort: str | None = None
    limit: int | None = None
    kind: tuple[str, ...] = ()

    @property
    def filters(self) -> bool:
        """Anything that drops rows (as opposed to ordering them)."""
        return bool(self.conn or self.host or self.port or self.since or self.until or self.where or self.kind
                    or self.limit is not None)

    def __bool__(self) -> bool:
        return self.filters or bool(self.sort)

    def apply(self, df: "pd.DataFrame", table: str, connections: "pd.DataFrame | None" = None,
              start: Any = None) -> tuple["pd.DataFrame", int]:
        """The selected rows of ``df`` (a ``table``), and how many matched before ``--limit``.

        ``connections`` is the capture's connections table (for the tables matched through
        it); ``start`` the capture's first timestamp (for ``+seconds`` times).
        """
        import numpy as np
        import pandas as pd

        conns = df if table == "connections" else connections
        keep = np.ones(len(df), dtype=bool)
        ids = df["conn_id"] if "conn_id" in df.columns else None
        if self.conn and ids is not None:
            keep &= ids.isin(self.conn).fillna(False).to_numpy(dtype=bool)
        through_conns = self.host or self.port or ((self.since or self.until) and table == "findings")
        if through_conns and conns is not None:
            ok = np.ones(len(conns), dtype=bool)
            if self.host:
                ok &= (conns["client_ip"].isin(self.host) | conns["server_ip"].isin(self.host)).fillna(False) \
                    .to_numpy(dtype=bool)
            if self.port:
                ok &= (conns["client_port"].isin(self.port) | conns["server_port"].isin(self.port)).to_numpy(dtype=bool)
            if table == "findings":
                ok &= self._in_time(conns["start"], start)
            wanted = set(conns["conn_id"].to_numpy()[ok].tolist())
            by_conn = ids.isin(wanted).fillna(False).to_numpy(dtype=bool) if ids is not None else keep
            if self.host and table == "requests" and "host" in df.columns:
                names = df["host"].astype("string").str.split(":").str[0]
                by_conn |= names.isin(self.host).fillna(False).to_numpy(dtype=bool)
            keep &= by_conn
        if (self.since or self.until) and table in TIME_COLUMN:
            keep &= self._in_time(df[TIME_COLUMN[table]], start)
        if self.kind and "kind" in df.columns:
            keep &= df["kind"].astype(str).isin(self.kind).to_numpy(dtype=bool)
        out = df[keep]
        if self.where:
            try:
                out = out[out.eval(self.where, engine="python").astype(bool)]
            except Exception as exc:   # pandas raises many kinds for a bad expression
                raise SelectionError(f"--where {self.where!r}: {str(exc).splitlines()[0] if str(exc) else exc!r}") \
                    from None
        matched = len(out)
        if self.sort:
            cols, asc = [], []
            for part in self.sort.split(","):
                part = part.strip()
                name = part.lstrip("-")
                if name not in out.columns:
                    raise SelectionError(f"--sort: no column {name!r} in {table} (columns: {', '.join(out.columns)})")
                cols.append(name)
                asc.append(not part.startswith("-"))
            out = out.sort_values(cols, ascending=asc, kind="stable", na_position="last")
        if self.limit is not None:
            out = out.head(self.limit)
        return out, matched

    def _in_time(self, col: "pd.Series", start: Any) -> Any:
        import numpy as np

        keep = np.ones(len(col), dtype=bool)
        if self.since:
            keep &= (col >= parse_time(self.since, start)).fillna(False).to_numpy(dtype=bool)
        if self.until:
            keep &= (col <= parse_time(self.until, start)).fillna(False).to_numpy(dtype=bool)
        return keep


_OFFSET = re.compile(r"^\+(\d+(?:\.\d*)?)s?$")
_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")


def parse_time(text: str, start: Any = None) -> "pd.Timestamp":
    """``--since``/``--until`` text as a UTC timestamp (see the module docstring)."""
    import pandas as pd

    t = text.strip()
    m = _OFFSET.match(t)
    if m:
        if start is None:
            raise SelectionError(f"{text!r}: a time from the capture's start needs a capture with packets")
        return pd.Timestamp(start) + pd.Timedelta(seconds=float(m.group(1)))
    if _TIME_OF_DAY.match(t):
        if start is None:
            raise SelectionError(f"{text!r}: a time of day needs a capture with packets")
        day = pd.Timestamp(start).tz_convert("UTC").normalize()
        return day + pd.Timedelta(t if t.count(":") == 2 else t + ":00")
    try:
        ts = pd.Timestamp(t)
    except (ValueError, TypeError):
        raise SelectionError(f"{text!r} is not a time: use ISO-8601 (2024-03-14T12:00:05Z), a time of day "
                             f"(12:00:05) or seconds from the capture's start (+5)") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


__all__ = ["Selection", "SelectionError", "parse_time"]
