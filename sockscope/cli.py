"""Command line: ``sockscope summary|requests|diagnose|check|compare|crosscheck CAPTURE``.

Exit codes (every command): 0 ok, 1 a check or cross-check failed, 2 usage error,
3 the capture could not be read (nothing to analyse).
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any, Callable, NoReturn

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
    from rich.console import Console as _RichConsole

    class Console(_RichConsole):
        def on_broken_pipe(self) -> None:   # rich's own answer is a bare exit 1
            raise PipeClosed()

    # A terminal's own width; else $COLUMNS when set (a pager, a test); else 200 for files.
    cols = os.environ.get("COLUMNS", "")
    width = int(cols) if cols.isdigit() and int(cols) >= 40 else (None if sys.stdout.isatty() else 200)
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def _expand(paths: tuple[str, ...] | list[str] | str) -> list[str]:
    """Arguments -> capture files: a directory stands for the capture files in it
    (:func:`sockscope.api.expand_sources`; an empty one exits 3)."""
    from sockscope.api import expand_sources
    from sockscope.errors import CaptureError

    try:
        return list(expand_sources([paths] if isinstance(paths, str) else list(paths)))
    except CaptureError as exc:
        _die(str(exc))


def _load(path: str | list[str] | tuple[str, ...], *, engine: str = "native", min_gap_s: float = 1.0,
          tls_keylog: str | None = None, tables: tuple[str, ...] = ("connections", "requests", "gaps"),
          jobs: int = 1, scheduler: str | None = None, merge: bool = False, arrow: bool = False):
    """Load with a progress line on stderr (only on a TTY); input errors exit 3.

    With ``arrow`` (native engine, no cluster) the result is the engine's
    :class:`~sockscope.engine.EngineResult` of Arrow tables instead of a Capture.
    """
    import sockscope

    if tls_keylog and engine == "native":
        # TLS decryption is Wireshark's: never ignore the key log
        if shutil.which("tshark") is None:
            _die("--tls-keylog needs the tshark engine (--engine tshark), and tshark is not installed", EXIT_USAGE)
        click.echo("sockscope: --tls-keylog: decrypting with Wireshark's dissectors (--engine tshark) for this "
                   "capture", err=True)
        engine = "tshark"
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


EXIT_INTERNAL = 4        # a bug in sockscope: one line and where to report it, never a bare traceback
EXIT_PIPE = 141          # the reader of stdout went away (`| head`): quietly, as a shell tool would
EXIT_INTERRUPTED = 130


def entry() -> None:
    """The ``sockscope`` console script: :func:`main` with exit codes that mean one thing.

    0 ok, 1 a check/crosscheck failed or compare says "not fixed", 2 usage, 3 unreadable
    capture, 4 internal error (one line, a bug-report hint; ``SOCKSCOPE_DEBUG=1`` shows the
    traceback), 141 stdout closed by its reader, 130 interrupted.

    The JSON commands then leave without the interpreter's teardown: tearing down frees every
    object and module one by one (3 % of a `requests --json` run on the 100k bench capture,
    more on larger ones) while the system would take the memory back at once. Only a command
    that marked itself (``_leave_quickly``: its output written, no child processes, files or
    exit handlers pending) skips it; streams are flushed first. Tests call :func:`main`
    directly and keep click's own handling.
    """
    code = _run_main()
    if code == 0 and _QUICK_EXIT:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            _quiet_pipe()
            os._exit(EXIT_PIPE)
        os._exit(0)
    sys.exit(code)


def _is_epipe(exc: OSError) -> bool:
    import errno

    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE


def _run_main() -> int:
    try:
        main.main(prog_name="sockscope", standalone_mode=False)
        sys.stdout.flush()
        return 0
    except SystemExit as exc:
        code = exc.code
        return 0 if code is None else code if isinstance(code, int) else 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except PipeClosed:
        _quiet_pipe()
        return EXIT_PIPE
    except OSError as exc:
        if _is_epipe(exc):      # after the command: flushing what it wrote
            _quiet_pipe()
            return EXIT_PIPE
        return _internal(exc)
    except Exception as exc:  # noqa: BLE001 -- the last line of defence: one line, not a traceback
        return _internal(exc)


def _quiet_pipe() -> None:
    """stdout's reader left: point stdout at /dev/null so the final flush says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _internal(exc: BaseException) -> int:
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
    msg = str(exc).splitlines()[0] if str(exc) else ""
    click.echo(f"sockscope: internal error: {type(exc).__name__}{': ' + msg if msg else ''}{where}", err=True)
    if os.environ.get("SOCKSCOPE_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    else:
        click.echo("sockscope: this is a bug; please report it with the command line (and, if you can, the "
                   "capture). SOCKSCOPE_DEBUG=1 shows the traceback.", err=True)
    return EXIT_INTERNAL


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


def _die(msg: str, code: int = EXIT_UNREADABLE) -> NoReturn:
    click.echo(f"sockscope: error: {msg}", err=True)
    sys.exit(code)


def _emit(df: Any, as_json: bool, as_csv: bool, as_jsonl: bool = False) -> bool:
    if as_json or as_jsonl:
        output.write_json(df, sys.stdout, lines=as_jsonl)
        return True
    if as_csv:
        output.write_csv(df, sys.stdout)
        return True
    return False


HUMAN_ROWS = 200          # rows of a text table before "… N more" (--limit changes it)
HUMAN_GROUPS = 30         # connections' request tables before "… N more"


def _fit(con: Any, columns: list[tuple[str, str, int]], rows: list[list[str]]) -> Any:
    """A rich Table of ``rows`` that fits the terminal: columns (name, justify, priority)
    are dropped from the least important (highest priority number) until the rest fit;
    priority 0 is never dropped."""
    from rich.table import Table
    from rich.text import Text

    widths = [max([len(name)] + [Text.from_markup(r[i]).cell_len for r in rows]) for i, (name, _, _) in
              enumerate(columns)]
    keep = list(range(len(columns)))

    def total() -> int:
        return sum(widths[i] for i in keep) + 3 * (len(keep) - 1) + 2

    for i in sorted(range(len(columns)), key=lambda k: -columns[k][2]):
        if total() <= con.width or columns[i][2] == 0:
            break
        keep.remove(i)
    t = Table(header_style="bold", pad_edge=False)
    for i in keep:
        name, just, _ = columns[i]
        t.add_column(name, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        t.add_row(*[r[i] for i in keep])
    if len(keep) < len(columns):
        t.caption = "not shown for the terminal's width: " + ", ".join(columns[i][0] for i in range(len(columns))
                                                                        if i not in keep)
    return t


def _t(ts: Any, date: bool = False) -> str:
    """A timestamp for a text table: time of day (µs), with the date when ``date``."""
    import pandas as pd

    if ts is None or ts is pd.NaT or pd.isna(ts):
        return "-"
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")


def _s(x: Any) -> str:
    """A duration cell: the faces' one style (5.000 s, 12.5 ms, 290 µs); ``-`` when unknown."""
    import pandas as pd

    from sockscope.analysis.text import seconds

    if x is None or pd.isna(x):
        return "-"
    return seconds(float(x))


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
    if f.get("tunnels"):
        lines.append("in tunnels (the inner connections are the rows): "
                     + ", ".join(f"{v:,} packets {k}" for k, v in f["tunnels"].items()))
    if skipped:
        lines.append("skipped: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in skipped.items()))
    return "\n".join(lines)


CAPTURE = click.argument("capture", type=click.Path(allow_dash=True))
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
JSONL = click.option("--jsonl", "as_jsonl", is_flag=True, help="Print JSON Lines: one row object per line, no array.")
ENGINE = click.option("--engine", type=click.Choice(["native", "tshark"]), default="native", show_default=True,
                      help="native: sockscope's own fast engine; tshark: Wireshark's dissectors.")
KEYLOG = click.option("--tls-keylog", type=click.Path(exists=True, dir_okay=False), default=None,
                      help="SSLKEYLOGFILE to decrypt TLS (tshark engine).")


def SELECT(f: Callable) -> Callable:  # noqa: N802 (a decorator, named like the other option sets)
    """The row selection options every tabular command shares (see :mod:`sockscope.selection`)."""
    opts = [
        click.option("--conn", "sel_conn", type=int, multiple=True, metavar="ID",
                     help="Only this connection (tcp.stream) id; repeatable."),
        click.option("--host", "sel_host", multiple=True, metavar="ADDR",
                     help="Only connections with this client or server address (requests: or Host header); "
                          "repeatable."),
        click.option("--port", "sel_port", type=int, multiple=True, metavar="N",
                     help="Only connections with this client or server port; repeatable."),
        click.option("--since", "sel_since", metavar="T",
                     help="Only rows at or after T: ISO-8601, a time of day (12:00:05) or +SECONDS from the "
                          "capture's start."),
        click.option("--until", "sel_until", metavar="T", help="Only rows at or before T (as --since)."),
        click.option("--where", "sel_where", metavar="EXPR",
                     help="Only rows where a pandas query expression over the columns holds, e.g. "
                          "\"idle_before_close_s > 4 and closed_by == 'client'\"."),
        click.option("--sort", "sel_sort", metavar="COL", help="Sort by column(s), comma-separated; -COL descends."),
        click.option("--limit", "sel_limit", type=click.IntRange(0), metavar="N",
                     help="At most N rows (after --sort). Text output shows a bounded number by default."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _selection(sel: dict[str, Any], kind: tuple[str, ...] = ()) -> Any:
    from sockscope.selection import Selection

    return Selection(conn=sel.get("sel_conn", ()), host=sel.get("sel_host", ()), port=sel.get("sel_port", ()),
                     since=sel.get("sel_since"), until=sel.get("sel_until"), where=sel.get("sel_where"),
                     sort=sel.get("sel_sort"), limit=sel.get("sel_limit"), kind=kind)


def _select(selection: Any, df: Any, table: str, cap: Any) -> tuple[Any, int]:
    """Apply a selection; a bad one, or a --conn id the capture does not have, is a usage error."""
    from sockscope.selection import SelectionError

    if selection.conn and len(cap.connections):
        have = set(cap.connections["conn_id"].tolist())
        missing = [c for c in selection.conn if c not in have]
        if missing:
            ids = sorted(have)
            raise click.BadParameter(f"no connection {missing[0]} in this capture (ids {ids[0]}–{ids[-1]})",
                                     param_hint="--conn")
    try:
        return selection.apply(df, table, cap.connections, cap.start)
    except SelectionError as exc:
        raise click.UsageError(str(exc)) from None


def _more(con: Any, shown: int, matched: int, what: str) -> None:
    """The line that says a text table was cut, and how to see the rest."""
    if matched > shown:
        con.print(f"[dim]… {matched - shown:,} more {what}; --limit N (or --json) for more, --where/--conn/--host "
                  f"to narrow[/dim]")


class PipeClosed(Exception):
    """The reader of stdout went away (``| head``)."""


class _Commands(click.Group):
    """The command group; commands that need the analysis layer (and so pandas) live in
    their own modules, imported when one of their commands is asked for."""

    lazy = {"diagnose": "cli_diag", "check": "cli_diag", "compare": "cli_diag", "crosscheck": "cli_diag",
            "plot": "cli_plot", "export": "cli_plot", "watch": "cli_watch", "report": "cli_report"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def invoke(self, ctx: click.Context) -> Any:
        # click turns a broken pipe into a bare exit 1 (the code of a failed check); say it apart
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if _is_epipe(exc):
                raise PipeClosed() from None
            raise

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

    Exit codes: 0 ok, 1 a check/crosscheck failed or compare says "not fixed", 2 usage error,
    3 unreadable capture, 4 internal error (a bug), 141 output closed by its reader (| head).
    """


@main.command()
@CAPTURES
@SELECT
@JSON
@JSONL
@CSV
@ENGINE
@KEYLOG
@JOBS
@MERGE
@SCHEDULER
def summary(captures: tuple[str, ...], as_json: bool, as_jsonl: bool, as_csv: bool, engine: str,
            tls_keylog: str | None, jobs: int, merge: bool, scheduler: str | None, **sel: Any) -> None:
    """One line per TCP connection: who talked, who closed it, with FIN or RST, after how much silence.

    Several files (or a directory) are read as one capture in time order, as tcpdump -C/-G
    rotation writes them: a connection that spans two files is one row. Files that overlap
    in time come from different capture points and are analysed apart (column `capture`),
    unless --merge interleaves their packets into one capture. The text table shows the
    first 200 rows (--limit to change) and drops low-priority columns to fit the terminal.

    \b
    Example:
      sockscope summary captures/crafted/incident-before-fix.pcap
      sockscope summary --json capture.pcap | jq '.[] | select(.closed_by == "client")'
      sockscope summary capture.pcap --where "closed_by == 'client' and idle_before_close_s > 4"
      sockscope summary capture.pcap --port 8000 --since +10 --sort -duration_s --limit 20
      sockscope summary -j 2 rotated/dump.pcap*
    """
    capture = captures
    selection = _selection(sel)
    # The summary needs only the connections table (request counts are on it): building
    # the requests table too would make memory grow with the number of requests.
    kw = dict(engine=engine, tls_keylog=tls_keylog, tables=("connections",), jobs=jobs, scheduler=scheduler,
              merge=merge)
    # Several files may be capture points of the same connections, whose matching
    # (twin_conn_id) happens in pandas: the Arrow fast path is for one file or one merge.
    one_point = merge or len(_expand(capture)) == 1
    if (as_json or as_jsonl) and engine == "native" and not scheduler and not selection and not tls_keylog \
            and one_point:
        output.write_table_json(_by_start(_load(capture, arrow=True, **kw)), sys.stdout, lines=as_jsonl)
        _leave_quickly()
        return
    import pandas as pd

    cap = _load(capture, **kw)
    df = cap.connections.sort_values(["start", "conn_id"], kind="stable")
    df, matched = _select(selection, df, "connections", cap)
    if _emit(df, as_json, as_csv, as_jsonl):
        return

    con = _console()
    con.print(_facts_header(cap))
    shown = df if selection.limit is not None else df.head(HUMAN_ROWS)
    days = _spans_days(cap)
    columns = [("id", "right", 0), ("client → server", "left", 0), ("start", "left", 3), ("duration", "right", 4),
               ("pkts c/s", "right", 7), ("bytes c/s", "right", 6), ("state", "left", 5), ("closed", "left", 1),
               ("idle", "right", 1), ("reqs", "right", 2), ("history", "left", 8)]
    points = "capture" in df.columns        # several capture points analysed apart
    if points:
        columns.append(("capture", "left", 2))
    tunnels = "tunnel" in df.columns and bool(df["tunnel"].notna().any())
    if tunnels:
        columns.append(("tunnel", "left", 2))
    rows = []
    for r in shown.itertuples():
        closed = "-" if pd.isna(r.closed_by) else f"{r.closed_by} {r.close_kind} #{r.close_frame}"
        color = "red" if (not pd.isna(r.closed_by) and r.closed_by == "client" and r.unanswered) else None
        reqs = "-" if r.protocol != "http" else (f"{r.requests}" + (f" ({r.unanswered} unanswered)" if r.unanswered else ""))
        if r.protocol == "tls":
            reqs = "tls" + (f" {escape(str(r.sni))}" if not pd.isna(r.sni) else "")
        rows.append([str(r.conn_id), f"{r.client_ip}:{r.client_port} → {r.server_ip}:{r.server_port}"
                     + ("" if r.roles_from == "syn" else " (?)"),
                     _t(r.start, days), _s(r.duration_s), f"{r.client_pkts}/{r.server_pkts}",
                     f"{r.client_bytes}/{r.server_bytes}", str(r.state),
                     f"[{color}]{closed}[/{color}]" if color else closed, _s(r.idle_before_close_s),
                     reqs, escape(str(r.history)), *([escape(os.path.basename(str(r.capture)))] if points else []),
                     *([_tunnel(r.tunnel, r.tunnel_id)] if tunnels else [])])
    con.print(_fit(con, columns, rows))
    _more(con, len(shown), matched, "connection(s)")
    legend = "idle = silence before the first FIN/RST; frame numbers (#) as in Wireshark"
    if (shown["roles_from"].astype(str) != "syn").any():
        legend = "(?) roles guessed without a handshake; " + legend
    con.print(f"[dim]{legend}[/dim]")


_TUNNEL_ID = {"vxlan": "vni", "geneve": "vni", "gre": "key", "erspan": "session"}


def _tunnel(kind: Any, ident: Any) -> str:
    """``vxlan vni 100``: the tunnel a connection came in, with the id that tells tunnels apart."""
    import pandas as pd

    if pd.isna(kind):
        return "-"
    name = _TUNNEL_ID.get(str(kind))
    return f"{kind} {name} {ident}" if name and not pd.isna(ident) and (ident or kind != "gre") else str(kind)


def _spans_days(cap: Any) -> bool:
    """Times need their date when the capture crosses midnight (UTC)."""
    return cap.start is not None and cap.end is not None and cap.start.date() != cap.end.date()


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
@SELECT
@JSON
@JSONL
@CSV
@ENGINE
@KEYLOG
@JOBS
@MERGE
@SCHEDULER
def requests(captures: tuple[str, ...], as_json: bool, as_jsonl: bool, as_csv: bool, engine: str,
             tls_keylog: str | None, jobs: int, merge: bool, scheduler: str | None, **sel: Any) -> None:
    """HTTP/1.x requests grouped by connection: the reuse chain and what happened to each.

    The text output shows the first 30 connections' tables (--limit N: N requests).

    \b
    Example:
      sockscope requests captures/crafted/incident-before-fix.pcap
      sockscope requests --conn 0 --json capture.pcap
      sockscope requests capture.pcap --where "outcome != 'complete'" --sort -ttfb_s --limit 10
    """
    selection = _selection(sel)
    kw = dict(engine=engine, tls_keylog=tls_keylog, jobs=jobs, scheduler=scheduler, merge=merge)
    if (as_json or as_jsonl) and engine == "native" and not scheduler and not selection and not tls_keylog:
        reqs = _load(captures, arrow=True, tables=("connections", "requests"), **kw).requests
        output.write_table_json(reqs, sys.stdout, lines=as_jsonl)
        _leave_quickly()
        return
    import pandas as pd

    cap = _load(captures, **kw)
    df, matched = _select(selection, cap.requests, "requests", cap)
    if _emit(df, as_json, as_csv, as_jsonl):
        return

    con = _console()
    con.print(_facts_header(cap))
    conns = cap.connections.set_index("conn_id")
    days = _spans_days(cap)
    groups = list(df.groupby("conn_id", sort=selection.sort is None))
    if selection.limit is None:
        groups_shown = groups[:HUMAN_GROUPS]
    else:
        groups_shown = groups
    columns = [("#", "right", 0), ("sent", "left", 3), ("gap", "right", 5), ("method uri", "left", 0),
               ("user-agent", "left", 6), ("status", "right", 1), ("ttfb", "right", 2), ("outcome", "left", 1)]
    for conn_id, grp in groups_shown:
        c = conns.loc[conn_id]
        closed = "still open at capture end" if pd.isna(c.closed_by) else \
            f"closed by {c.closed_by} ({c.close_kind}, frame {c.close_frame}) after {_s(c.idle_before_close_s)} idle"
        con.print(f"\n[bold]connection {conn_id}[/bold] {c.client_ip}:{c.client_port} → "
                  f"{c.server_ip}:{c.server_port} · {len(grp)} request(s) · {closed}")
        rows = []
        prev_end = None
        for r in grp.itertuples():
            gap = "-" if prev_end is None or pd.isna(r.request_start) else \
                _s((r.request_start - prev_end).total_seconds())
            if not pd.isna(r.response_end):
                prev_end = r.response_end
            elif not pd.isna(r.request_end):
                prev_end = r.request_end
            outcome = str(r.outcome) + ("" if pd.isna(r.ended_by) else f" ({r.ended_by})")
            style = "red" if r.outcome != "complete" else None
            rows.append([str(r.index), _t(r.request_start, days), gap,
                         escape(f"{'' if pd.isna(r.method) else r.method} {'' if pd.isna(r.uri) else r.uri}"),
                         "-" if pd.isna(r.user_agent) else escape(str(r.user_agent)),
                         "-" if pd.isna(r.status) else str(r.status), _s(r.ttfb_s),
                         f"[{style}]{outcome}[/{style}]" if style else outcome])
        con.print(_fit(con, columns, rows))
    if len(groups_shown) < len(groups):
        rest = sum(len(g) for _, g in groups[len(groups_shown):])
        con.print(f"\n[dim]… {len(groups) - len(groups_shown):,} more connection(s) with {rest:,} request(s); "
                  f"--limit N (or --json) for more, --conn/--where/--host to narrow[/dim]")
    elif matched > len(df):
        _more(con, len(df), matched, "request(s)")


if __name__ == "__main__":
    entry()
