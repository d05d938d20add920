"""The Python face: ``cap = sockscope.load("x.pcap")`` and the tables on it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

from sockscope import engine, schema

if TYPE_CHECKING:
    import pandas as pd

    from sockscope.evidence import EvidenceResult


@dataclass
class Capture:
    """An analysed capture: typed tables plus facts about the file.

    Attributes
    ----------
    connections:
        One row per TCP connection (``schema.CONNECTION_COLUMNS``).
    requests:
        One row per HTTP request (``schema.REQUEST_COLUMNS``).
    gaps:
        Silences longer than ``min_gap_s`` (``schema.GAP_COLUMNS``).
    stalls:
        Zero-window stalls and unanswered keep-alive probe runs (``schema.STALL_COLUMNS``).
    facts:
        File format, link types, packet counts by status, warnings, time span.

    Two capture points of the same connections (two files overlapping in time, analysed
    apart): ``connections`` gains ``twin_conn_id``, the same connection's id at the other
    point (missing where only one point saw it), and :attr:`points` tells which point is
    nearer the clients, their clock offset and the one-way delay between them.
    """

    source: str
    connections: pd.DataFrame
    requests: pd.DataFrame
    gaps: pd.DataFrame
    facts: dict[str, Any] = field(default_factory=dict)
    min_gap_s: float = 1.0
    stalls: pd.DataFrame = None  # type: ignore[assignment]   # None: no stalls (filled in below)

    def __post_init__(self) -> None:
        if self.stalls is None:
            self.stalls = schema.empty(schema.STALL_COLUMNS)
        # two capture points: matched once, here; the diagnosis' context reuses the match
        self._points: Any = None
        if "capture" in self.connections.columns and self.connections["capture"].nunique() == 2:
            import pandas as pd

            from sockscope.analysis.model import Context

            self._points = pts = Context(self.connections, self.requests, None).points
            if pts is not None:
                ids = self.connections["conn_id"].to_numpy()
                twin = pd.array([None] * len(ids), dtype="Int64")
                has = pts.twin >= 0
                twin[has] = ids[pts.twin[has]]
                self.connections["twin_conn_id"] = twin

    @property
    def points(self) -> "Points | None":  # noqa: F821
        """Two capture points matched (:class:`sockscope.analysis.points.Points`), or None."""
        return self._points

    @cached_property
    def diagnosis(self) -> "Diagnosis":  # noqa: F821
        """Findings, timer clusters and the indexed tables behind them (:mod:`sockscope.analysis`)."""
        from sockscope.analysis import diagnosis

        return diagnosis(self)

    @property
    def findings(self) -> pd.DataFrame:
        """Diagnoses with evidence (``schema.FINDING_COLUMNS``)."""
        return self.diagnosis.table

    @cached_property
    def anomalies(self) -> pd.DataFrame:
        """Named oddities in the input, Zeek's weird.log style: kind, layer, count, example frames.

        Packets the reader skipped (truncated or impossible headers, fragments, unknown link
        types), damage it stopped at (warnings), and HTTP protocol violations.
        """
        rows: list[dict[str, Any]] = []
        for kind, n in self.facts.get("status_counts", {}).items():
            if kind in ("tcp", "not_ip", "not_tcp"):
                continue        # ordinary traffic that is simply not TCP
            rows.append({"kind": kind, "layer": "packet", "count": n, "frames": None, "detail": None})
        for w in self.facts.get("warnings", []):
            rows.append({"kind": "damaged_input", "layer": "file", "count": 1, "frames": None, "detail": w})
        for kind, frames in self.facts.get("http_violation_frames", {}).items():
            rows.append({"kind": kind, "layer": "http", "count": self.facts["http_violations"].get(kind, len(frames)),
                         "frames": list(frames), "detail": None})
        import pandas as pd

        df = pd.DataFrame(rows, columns=["kind", "layer", "count", "frames", "detail"])
        df["kind"] = df["kind"].astype("category")
        df["layer"] = pd.Categorical(df["layer"], categories=["file", "packet", "http"])
        df["count"] = df["count"].astype("int64")
        df["detail"] = df["detail"].astype("string")
        return df

    @property
    def plot(self) -> "PlotAccessor":  # noqa: F821
        """``cap.plot.timeline()``, ``cap.plot.idle_closes()`` (matplotlib figures)."""
        from sockscope.plot import PlotAccessor

        return PlotAccessor(self)

    @property
    def start(self) -> pd.Timestamp | None:
        import pandas as pd

        ns = self.facts.get("first_ts_ns")
        return None if ns is None else pd.Timestamp(ns, unit="ns", tz="UTC")

    @property
    def end(self) -> pd.Timestamp | None:
        import pandas as pd

        ns = self.facts.get("last_ts_ns")
        return None if ns is None else pd.Timestamp(ns, unit="ns", tz="UTC")

    def connection(self, conn_id: int) -> dict[str, pd.DataFrame]:
        """The rows of every table that belong to one connection."""
        out = {
            "connections": self.connections[self.connections["conn_id"] == conn_id],
            "requests": self.requests[self.requests["conn_id"] == conn_id],
            "gaps": self.gaps[self.gaps["conn_id"] == conn_id],
            "stalls": self.stalls[self.stalls["conn_id"] == conn_id],
        }
        f = self.findings
        out["findings"] = f[f["conn_id"] == conn_id]
        return out

    def align_logs(
        self,
        paths_or_frames: "str | os.PathLike | pd.DataFrame | list[str | os.PathLike | pd.DataFrame]",
        regex: str | None = None,
        max_offset_s: float = 300.0,
    ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
        """Application log lines on this capture's clock and connections.

        Delegates to :func:`sockscope.logs.align_logs`: returns the aligned lines (with
        ``conn_id``, ``adjusted_ts``, ``delta_to_close_s``) and per log file the estimated
        clock offset (``offset_s``, ``matches``, ``spread_s``).

        >>> lines, offsets = cap.align_logs(["client.log", "server.log"])   # doctest: +SKIP
        """
        from sockscope.logs import align_logs

        return align_logs(self, paths_or_frames, regex=regex, max_offset_s=max_offset_s)

    def write_evidence(
        self,
        path: str | os.PathLike,
        findings: "pd.DataFrame | None" = None,
        *,
        max_per_finding: int = 64,
    ) -> "EvidenceResult":
        """Write the packets behind findings as pcapng, a file that opens on exactly the proof.

        Delegates to :func:`sockscope.evidence.write_evidence`. ``findings`` are rows of
        :attr:`findings` (default: all of them; a selection writes only its packets). The file
        holds every frame a finding's evidence names and its display filter selects, plus
        each connection's handshake as context, with the original timestamps and bytes; each
        packet has one comment per finding it proves ("client_idle_timeout, connection 0:
        client FIN after 5.002 s of silence; POST /exec outstanding ... (frame 26 of
        capture.pcap)"), and the section comment holds the verdict. At most
        ``max_per_finding`` packets per finding, the most telling first.

        Reads the capture's files once more, so they must still be there (not standard input).
        Returns the counts written (:class:`sockscope.evidence.EvidenceResult`).

        >>> cap.write_evidence("proof.pcapng", cap.findings.query("kind == 'client_idle_timeout'"))  # doctest: +SKIP
        """
        from sockscope.evidence import write_evidence

        return write_evidence(self, path, findings, max_per_finding=max_per_finding)

    def report(self, path: "str | os.PathLike | None" = None, *, logs: Any = None,
               log_regex: str | None = None) -> "Report":  # noqa: F821
        """The incident report of this capture (:mod:`sockscope.htmlreport`), written to ``path`` if given.

        One self-contained HTML file: the verdict, a timeline of every connection grouped by
        pattern, each connection's story and evidence on click. In Jupyter the returned
        :class:`~sockscope.htmlreport.Report` displays inline. ``logs`` (paths or frames, as
        for :meth:`align_logs`) puts log lines on their connections.

        >>> cap.report("incident.html")   # doctest: +SKIP
        """
        from sockscope import htmlreport

        aligned, offsets = (None, {})
        if logs is not None:
            aligned, offsets = self.align_logs(logs, regex=log_regex)
        rep = htmlreport.build(self, aligned, offsets)
        if path is not None:
            rep.save(path)
        return rep

    def __repr__(self) -> str:
        return (f"<Capture {self.source!r}: {self.facts.get('packets', 0)} packets, "
                f"{len(self.connections)} connections, {len(self.requests)} requests>")


def load(
    source: str | os.PathLike | BinaryIO,
    *,
    engine_name: str = "native",
    min_gap_s: float = 1.0,
    progress: Callable[[int], None] | None = None,
    tls_keylog: str | None = None,
    **kwargs: Any,
) -> Capture:
    """Read a capture and build its tables.

    Parameters
    ----------
    source:
        Path to a pcap/pcapng file (optionally gzip-compressed), ``"-"`` for standard
        input, or a binary file object.
    engine_name:
        ``"native"`` (default, fast) or ``"tshark"`` (Wireshark's dissectors; slower, and
        can decrypt TLS with ``tls_keylog``).
    min_gap_s:
        Silences at least this long become rows of ``gaps``.

    Example
    -------
    >>> cap = sockscope.load("captures/crafted/incident-before-fix.pcap")  # doctest: +SKIP
    >>> cap.connections[["conn_id", "closed_by", "idle_before_close_s"]]  # doctest: +SKIP
    """
    engine_name = kwargs.pop("engine", engine_name)
    source = expand_sources(source)
    if engine_name == "tshark":
        from sockscope.engines.tshark import load_tables

        name = _source_name(source)
        tables = load_tables(str(name), tls_keylog=tls_keylog)
        gaps = tables.get("gaps", schema.empty(schema.GAP_COLUMNS))
        return Capture(str(name), tables["connections"], tables["requests"], gaps,
                       tables.get("facts", {"engine": "tshark"}), min_gap_s, tables.get("stalls"))
    if engine_name != "native":
        raise ValueError(f"unknown engine {engine_name!r}: use 'native' or 'tshark'")
    name, res = load_arrow(source, min_gap_s=min_gap_s, progress=progress, **kwargs)
    import sockscope.accessor  # noqa: F401  (registers DataFrame.sockscope on the frames' users)

    # One column at a time: each table is taken apart into its columns and dropped, and each
    # Arrow column is freed once its pandas column exists (the peak holds one column twice).
    frames = []
    for table in ("connections", "requests", "gaps", "stalls"):
        t = getattr(res, table)
        setattr(res, table, None)
        cols, n = dict(zip(t.column_names, t.columns)), t.num_rows
        del t
        frames.append(schema.frame_from_columns(cols, n, table))
    stalls = frames.pop()
    return Capture(name, *frames, res.facts, min_gap_s, stalls)


def capture_files(directory: str | os.PathLike) -> list[str]:
    """The capture files of a directory (``*.pcap*``, ``*.cap*``, ``*.gz``), sorted by name."""
    d = os.fspath(directory)
    return sorted(os.path.join(d, f) for f in os.listdir(d)
                  if not f.startswith(".") and os.path.isfile(os.path.join(d, f))
                  and (".pcap" in f or ".cap" in f or f.endswith(".gz")))


def expand_sources(source: Any) -> Any:
    """A source with each directory replaced by its capture files (an empty one is an error)."""
    from sockscope.errors import CaptureError

    items = list(source) if isinstance(source, (list, tuple)) else [source]
    out: list[Any] = []
    for one in items:
        if isinstance(one, (str, os.PathLike)) and os.fspath(one) != "-" and os.path.isdir(one):
            found = capture_files(one)
            if not found:
                raise CaptureError(f"{os.fspath(one)}: no capture files (*.pcap*, *.cap*) in this directory")
            out.extend(found)
        else:
            out.append(one)
    if not isinstance(source, (list, tuple)) and len(out) == 1:
        return out[0]
    return out


def _source_name(source: Any) -> str:
    if isinstance(source, (list, tuple)):
        return f"{os.fspath(source[0])} (+{len(source) - 1} files)" if len(source) > 1 else os.fspath(source[0])
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<stream>")


def load_arrow(
    source: str | os.PathLike | BinaryIO | list,
    *,
    min_gap_s: float = 1.0,
    progress: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> tuple[str, engine.EngineResult]:
    """The native engine's tables as Arrow tables, without pandas: ``(name, result)``.

    The same run as :func:`load` (same keywords), for pipelines that write the tables out
    (``sockscope summary --json`` uses it) or read them with Arrow-native tools (polars,
    DuckDB). ``result.connections`` & co. are ``pyarrow.Table``; ``result.frames()`` gives
    the pandas frames of :func:`load`.
    """
    source = expand_sources(source)
    name = _source_name(source)
    if isinstance(source, (list, tuple)) and len(source) == 1:
        source = source[0]
    res = engine.run(source, min_gap_s=min_gap_s, progress=progress, **kwargs)
    if "requests" not in kwargs.get("tables", ("requests",)):
        res.facts["requests_table"] = "not built"
    res.facts["engine"] = "native"
    return str(name), res
