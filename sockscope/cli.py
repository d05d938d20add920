"""Command line: ``sockscope summary|requests|diagnose|check|compare|crosscheck CAPTURE``.

Exit codes (every command): 0 ok, 1 a check or cross-check failed, 2 usage error,
3 the capture could not be read (nothing to analyse).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

# numpy's OpenBLAS starts a worker thread per core that spins for a while after start-up;
# no command does linear algebra, and on a small machine the spinning competes with the
# analysis (and with -j workers). Must be set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click  # noqa: E402

from sockscope import output  # noqa: E402
from sockscope.errors import SockscopeError  # noqa: E402

# A command is one short-lived process: Arrow's default allocator keeps freed blocks for
# reuse, which for column-wise JSON output costs 2x the peak memory of the C allocator.
# (The library leaves the pool alone; this is the CLI's own process.)
output.use_system_allocator()


def _return_freed_memory() -> None:
    """glibc: freed blocks of 128 KiB or more go back to the system at once.

    By default glibc raises its mmap threshold each time a large block is freed, after
    which large blocks (row-store columns, Arrow buffers, JSON batches) come from the heap,
    whose middle is never returned: a run's peak RSS then kept each phase's leftovers
    (-6 MB of 120 on the 1M-packet bench capture). Other C libraries: nothing to do.
    """
    import ctypes   # loaded already (numpy and pyarrow use it)

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 128 * 1024)
    mallopt(m_trim_threshold, 128 * 1024)


_return_freed_memory()

# pandas is imported by the commands that need a frame, never at start-up: `summary --json`
# and `requests --json` write the engine's Arrow tables directly, and skipping pandas saves
# them 0.7 s and 60 MB.

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNREADABLE = 0, 1, 2, 3


def escape(text: str) -> str:
    """Text shown in a rich table, its [markup] made literal (rich loads only when a table
    is drawn: the JSON commands never need it)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False,
                   width=None if sys.stdout.isatty() else 200)


def _expand(paths: tuple[str, ...] | list[str] | str) -> list[str]:
    """Arguments -> capture files: a directory stands for the capture files in it."""
    if isinstance(paths, str):
        paths = [paths]
    out: list[str] = []
    for p in paths:
        if p != "-" and os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if not f.startswith(".") and os.path.isfile(os.path.join(p, f))
                           and (".pcap" in f or ".cap" in f or f.endswith(".gz")))
            if not found:
                _die(f"{p}: no capture files (*.pcap*, *.cap*) in this directory")
            out.extend(found)
        else:
            out.append(p)
    return out


def _load(path: str | list[str] | tuple[str, ...], *, engine: str = "native", min_gap_s: float = 1.0,
          tls_keylog: str | None = None, tables: tuple[str, ...] = ("connections", "requests", "gaps"),
          jobs: int = 1, scheduler: str | None = None, merge: bool = False, arrow: bool = False):
    """Load with a progress line on stderr (only on a TTY); input errors exit 3.

    With ``arrow`` (native engine, no cluster) the result is the engine's
    :class:`~sockscope.engine.EngineResult` of Arrow tables instead of a Capture.
    """
    import sockscope

    paths = _expand(path)
    if len(paths) > 1 and engine != "native":
        _die("several capture files need the native engine", EXIT_USAGE)
    target: Any = paths[0] if len(paths) == 1 else paths
    path = paths[0] if len(paths) == 1 else f"{len(paths)} files"

    progress: Callable[[int], None] | None = None
    live = None
    if sys.stderr.isatty() and engine == "native":
        from rich.progress import Progress, SpinnerColumn, TextColumn

        live = Progress(SpinnerColumn(), TextColumn("reading {task.fields[name]}: {task.completed:,} packets"),
                        console=_console(stderr=True), transient=True)
        task = live.add_task("read", total=None, name=os.path.basename(path))
        live.start()

        def progress(n: int) -> None:
            live.update(task, completed=n)

    try:
        if scheduler:
            from dask.distributed import Client

            import sockscope.dask

            with Client(scheduler) as client:
                return sockscope.dask.analyze(paths, client=client, min_gap_s=min_gap_s)
        extra = {"tables": tables, "jobs": jobs, "merge": merge} if engine == "native" else {}
        if arrow and engine == "native":
            _without_pandas()
            cap = sockscope.load_arrow(target, min_gap_s=min_gap_s, progress=progress, **extra)[1]
        else:
            cap = sockscope.load(target, engine=engine, min_gap_s=min_gap_s, progress=progress,
                                 tls_keylog=tls_keylog, **extra)
    except SockscopeError as exc:
        _die(str(exc))
    except RuntimeError as exc:     # tshark missing or failing (its own one-line message)
        _die(str(exc))
    except MemoryError:
        _die(f"{path}: out of memory while building the tables (too many connections or requests "
             "for this machine); analyse a slice of the capture, or use -j/--scheduler")
    finally:
        if live is not None:
            live.stop()
    for w in cap.facts.get("warnings", []):
        click.echo(f"sockscope: warning: {path}: {w}", err=True)
    if not cap.facts.get("packets") and cap.facts.get("engine") == "native":
        _die(f"{path}: no packets could be read")
    return cap


# Set by a command whose work is done and written when nothing is left for the interpreter's
# teardown to do but free memory (see entry()).
_QUICK_EXIT = False


def _leave_quickly() -> None:
    global _QUICK_EXIT
    _QUICK_EXIT = True


def entry() -> None:
    """The ``sockscope`` console script: :func:`main`, then, for the JSON commands, an exit
    without the interpreter's teardown.

    Tearing down frees every object and module one by one (3 % of a `requests --json` run on
    the 100k bench capture, more on larger ones); the process is ending, so the system takes
    the memory back at once. Only a command that marked itself (``_leave_quickly``: its
    output written, no child processes, files or exit handlers pending) skips it; streams
    are flushed first. Tests call :func:`main` directly and keep the normal exit.
    """
    try:
        main()
    except SystemExit as exc:
        if not _QUICK_EXIT or exc.code not in (None, 0):
            raise
    else:
        if not _QUICK_EXIT:
            return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:     # the reader left: what a normal exit would say with code 1
        os._exit(1)
    os._exit(0)


class _NoPandas:
    """An import finder that refuses pandas (see :func:`_without_pandas`)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("this sockscope command runs without pandas")
        return None


def _without_pandas() -> None:
    """For the rest of this process `import pandas` raises ImportError (unless it is loaded).

    Called by the commands that write the engine's Arrow tables as JSON and need no frame:
    pyarrow imports pandas, if installed, the first time it builds any array (to check
    whether the input is a pandas object), which would cost such a run 0.5 s and 50 MB.
    pyarrow catches the ImportError and from then on treats pandas as absent.
    """
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())


def _die(msg: str, code: int = EXIT_UNREADABLE) -> None:
    click.echo(f"sockscope: error: {msg}", err=True)
    sys.exit(code)


def _emit(df: Any, as_json: bool, as_csv: bool) -> bool:
    if as_json:
        output.write_json(df, sys.stdout)
        return True
    if as_csv:
        output.write_csv(df, sys.stdout)
        return True
    return False


def _t(ts: Any, date: bool = False) -> str:
    import pandas as pd

    if ts is None or ts is pd.NaT or pd.isna(ts):
        return "-"
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")


def _s(x: Any, digits: int = 3) -> str:
    import pandas as pd

    if x is None or pd.isna(x):
        return "-"
    return f"{x:.{digits}f}"


def _facts_header(cap) -> str:
    f = cap.facts
    lt = ", ".join(f"{k}×{v}" for k, v in f.get("linktypes", {}).items()) or "-"
    skipped = {k: v for k, v in f.get("status_counts", {}).items() if k != "tcp"}
    span = "-"
    if cap.start is not None:
        span = f"{_t(cap.start, True)} → {_t(cap.end, True)} UTC ({(cap.end - cap.start).total_seconds():.3f} s)"
    n_req = int(cap.connections["requests"].sum()) if len(cap.connections) else 0
    lines = [
        f"[bold]{escape(cap.source)}[/bold]: {f.get('format')} · link types {lt} · {f.get('packets', 0):,} packets "
        f"({f.get('tcp_packets', 0):,} TCP) · {len(cap.connections)} connections · {n_req} requests",
        f"span {span}",
    ]
    if skipped:
        lines.append("skipped: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in skipped.items()))
    return "\n".join(lines)


CAPTURE = click.argument("capture", type=click.Path(allow_dash=True, dir_okay=False))
CAPTURES = click.argument("captures", nargs=-1, required=True, type=click.Path(allow_dash=True))
JOBS = click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True,
                    help="Worker processes; flows are split by 4-tuple, output is identical to -j 1.")
MERGE = click.option("--merge", is_flag=True,
                     help="Read several files as one capture with packets interleaved by time (mergecap), "
                          "even when they overlap. Without it, files that overlap in time are different "
                          "capture points, analysed apart (a `capture` column tells which).")
SCHEDULER = click.option("--scheduler", default=None, metavar="ADDRESS",
                         help="Run the shards on a dask.distributed cluster (e.g. tcp://host:8786); "
                              "the files must be readable by every worker.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON array of row objects.")
CSV = click.option("--csv", "as_csv", is_flag=True, help="Print CSV with the same columns.")
ENGINE = click.option("--engine", type=click.Choice(["native", "tshark"]), default="native", show_default=True,
                      help="native: sockscope's own fast engine; tshark: Wireshark's dissectors.")
KEYLOG = click.option("--tls-keylog", type=click.Path(exists=True, dir_okay=False), default=None,
                      help="SSLKEYLOGFILE to decrypt TLS (tshark engine).")


class _Commands(click.Group):
    """The command group; commands that need the analysis layer (and so pandas) live in
    their own modules, imported when one of their commands is asked for."""

    lazy = {"diagnose": "cli_diag", "check": "cli_diag", "compare": "cli_diag", "crosscheck": "cli_diag",
            "plot": "cli_plot", "export": "cli_plot", "watch": "cli_watch"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            import importlib

            importlib.import_module(f"sockscope.{self.lazy[name]}")      # registers it on `main`
        return self.commands.get(name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sockscope")
def main() -> None:
    """Prove who killed a TCP connection, from a tcpdump capture.

    \b
    Example:
      sockscope summary captures/crafted/incident-before-fix.pcap
      sockscope diagnose captures/crafted/incident-before-fix.pcap
      tcpdump -i any -w - port 8000 | sockscope summary -

    Exit codes: 0 ok, 1 a check failed, 2 usage error, 3 unreadable capture.
    """


@main.command()
@CAPTURES
@JSON
@CSV
@ENGINE
@KEYLOG
@JOBS
@MERGE
@SCHEDULER
def summary(captures: tuple[str, ...], as_json: bool, as_csv: bool, engine: str, tls_keylog: str | None,
            jobs: int, merge: bool, scheduler: str | None) -> None:
    """One line per TCP connection: who talked, who closed it, with FIN or RST, after how much silence.

    Several files (or a directory) are read as one capture in time order, as tcpdump -C/-G
    rotation writes them: a connection that spans two files is one row. Files that overlap
    in time come from different capture points and are analysed apart (column `capture`),
    unless --merge interleaves their packets into one capture.

    \b
    Example:
      sockscope summary captures/crafted/incident-before-fix.pcap
      sockscope summary --json capture.pcap | jq '.[] | select(.closed_by == "client")'
      sockscope summary -j 2 rotated/dump.pcap*
      sockscope summary --merge eth0.pcap eth1.pcap
    """
    capture = captures
    # The summary needs only the connections table (request counts are on it): building
    # the requests table too would make memory grow with the number of requests.
    kw = dict(engine=engine, tls_keylog=tls_keylog, tables=("connections",), jobs=jobs, scheduler=scheduler,
              merge=merge)
    if as_json and engine == "native" and not scheduler:
        output.write_table_json(_by_start(_load(capture, arrow=True, **kw)), sys.stdout)
        _leave_quickly()
        return
    import pandas as pd
    from rich.table import Table

    cap = _load(capture, **kw)
    df = cap.connections.sort_values(["start", "conn_id"], kind="stable")
    if _emit(df, as_json, as_csv):
        return

    con = _console()
    con.print(_facts_header(cap))
    t = Table(show_lines=False, header_style="bold", pad_edge=False)
    for col, just in [("id", "right"), ("client → server", "left"), ("start", "left"), ("dur s", "right"),
                      ("pkts c/s", "right"), ("bytes c/s", "right"), ("state", "left"), ("closed", "left"),
                      ("idle s", "right"), ("reqs", "right"), ("history", "left")]:
        t.add_column(col, justify=just, no_wrap=True)
    points = "capture" in df.columns        # several capture points analysed apart
    if points:
        t.add_column("capture", no_wrap=True)
    for r in df.itertuples():
        closed = "-" if pd.isna(r.closed_by) else f"{r.closed_by} {r.close_kind} #{r.close_frame}"
        color = "red" if (not pd.isna(r.closed_by) and r.closed_by == "client" and r.unanswered) else None
        reqs = "-" if r.protocol != "http" else (f"{r.requests}" + (f" ({r.unanswered} unanswered)" if r.unanswered else ""))
        if r.protocol == "tls":
            reqs = "tls" + (f" {escape(str(r.sni))}" if not pd.isna(r.sni) else "")
        t.add_row(str(r.conn_id), f"{r.client_ip}:{r.client_port} → {r.server_ip}:{r.server_port}"
                  + ("" if r.roles_from == "syn" else " (?)"),
                  _t(r.start), _s(r.duration_s), f"{r.client_pkts}/{r.server_pkts}",
                  f"{r.client_bytes}/{r.server_bytes}", str(r.state),
                  f"[{color}]{closed}[/{color}]" if color else closed, _s(r.idle_before_close_s),
                  reqs, str(r.history), *([escape(os.path.basename(str(r.capture)))] if points else []))
    con.print(t)
    con.print("[dim](?) roles guessed without a handshake; idle s = silence before the first FIN/RST; "
              "frame numbers (#) as in Wireshark[/dim]")


def _by_start(res: Any) -> Any:
    """``res.connections`` (taken out of ``res``) in summary order: by start, then conn_id.

    Usually that is already the order (conn_id numbers connections by first packet); when
    it is not, columns are reordered one at a time, each old one dropped as its copy is made,
    so the table is never in memory twice.
    """
    import numpy as np
    import pyarrow as pa

    table, res.connections = res.connections, None
    # numpy, not pyarrow.compute (whose import alone is 0.1 s of the command)
    start = table.column("start").combine_chunks().view(pa.int64()).to_numpy(zero_copy_only=False)
    ids = table.column("conn_id").to_numpy()
    order = np.lexsort((ids, start))
    if np.array_equal(order, np.arange(len(order))):
        return table
    order = pa.array(order)
    schema, cols = table.schema, table.columns
    del table
    out = []
    for i in range(len(cols)):
        out.append(cols[i].take(order))
        cols[i] = None
    return pa.Table.from_arrays(out, schema=schema)


@main.command()
@CAPTURES
@click.option("--conn", "conn_ids", type=int, multiple=True, help="Only these connection ids (repeatable).")
@JSON
@CSV
@ENGINE
@KEYLOG
@JOBS
@MERGE
@SCHEDULER
def requests(captures: tuple[str, ...], conn_ids: tuple[int, ...], as_json: bool, as_csv: bool, engine: str,
             tls_keylog: str | None, jobs: int, merge: bool, scheduler: str | None) -> None:
    """HTTP/1.x requests grouped by connection: the reuse chain and what happened to each.

    \b
    Example:
      sockscope requests captures/crafted/incident-before-fix.pcap
      sockscope requests --conn 0 --json capture.pcap
    """
    kw = dict(engine=engine, tls_keylog=tls_keylog, jobs=jobs, scheduler=scheduler, merge=merge)
    if as_json and engine == "native" and not scheduler:
        reqs = _load(captures, arrow=True, tables=("connections", "requests"), **kw).requests
        if conn_ids:
            import pyarrow as pa
            import pyarrow.compute as pc

            reqs = reqs.filter(pc.is_in(reqs.column("conn_id"), pa.array(conn_ids, type=pa.int64())))
        output.write_table_json(reqs, sys.stdout)
        _leave_quickly()
        return
    import pandas as pd
    from rich.table import Table

    cap = _load(captures, **kw)
    df = cap.requests
    if conn_ids:
        df = df[df["conn_id"].isin(conn_ids)]
    if _emit(df, as_json, as_csv):
        return

    con = _console()
    con.print(_facts_header(cap))
    conns = cap.connections.set_index("conn_id")
    for conn_id, grp in df.groupby("conn_id", sort=True):
        c = conns.loc[conn_id]
        closed = "still open at capture end" if pd.isna(c.closed_by) else \
            f"closed by {c.closed_by} ({c.close_kind}, frame {c.close_frame}) after {_s(c.idle_before_close_s)} s idle"
        con.print(f"\n[bold]connection {conn_id}[/bold] {c.client_ip}:{c.client_port} → "
                  f"{c.server_ip}:{c.server_port} · {len(grp)} request(s) · {closed}")
        t = Table(header_style="bold", pad_edge=False)
        for col in ("#", "sent", "gap s", "method uri", "user-agent", "status", "ttfb s", "outcome"):
            t.add_column(col, no_wrap=col != "method uri")
        prev_end = None
        for r in grp.itertuples():
            gap = "-" if prev_end is None or pd.isna(r.request_start) else \
                f"{(r.request_start - prev_end).total_seconds():.3f}"
            if not pd.isna(r.response_end):
                prev_end = r.response_end
            elif not pd.isna(r.request_end):
                prev_end = r.request_end
            outcome = str(r.outcome) + ("" if pd.isna(r.ended_by) else f" ({r.ended_by})")
            style = "red" if r.outcome != "complete" else None
            t.add_row(str(r.index), _t(r.request_start), gap,
                      escape(f"{'' if pd.isna(r.method) else r.method} {'' if pd.isna(r.uri) else r.uri}"),
                      "-" if pd.isna(r.user_agent) else escape(str(r.user_agent)),
                      "-" if pd.isna(r.status) else str(r.status), _s(r.ttfb_s),
                      f"[{style}]{outcome}[/{style}]" if style else outcome)
        con.print(t)


if __name__ == "__main__":
    entry()
