"""CLI commands built on the analysis layer: diagnose, check, compare, crosscheck."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
import pandas as pd
from rich.markup import escape

from sockscope import output
from sockscope.cli import (CAPTURE, CAPTURES, CSV, ENGINE, EXIT_FAIL, EXIT_USAGE, JSON, JSONL, KEYLOG, MERGE, SELECT, _console, _facts_header,
                           _load, _selection, main)
from sockscope.cli import _select as _select_rows


def _check_kinds(kinds: tuple[str, ...]) -> None:
    """Unknown finding kinds are a usage error (exit 2), never an empty answer."""
    from sockscope.analysis.detectors import require_kinds

    try:
        require_kinds(kinds)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--kind") from None


_SEVERITY_COLOR = {"error": "red", "warning": "yellow"}
_KEEP_EXCHANGES = (2, 6)   # request/answer lines kept at the start and end of a long story
_MAX_TIMERS = 6


@main.command()
@CAPTURES
@JSON
@ENGINE
@KEYLOG
@MERGE
@click.option("--min-gap", type=float, default=1.0, show_default=True,
              help="Silences at least this long (s) are listed as gaps.")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Only findings of this kind (repeatable): client_idle_timeout, client_abort, ...")
@SELECT
@JSONL
@CSV
@click.option("--examples", type=click.IntRange(0, 1000), default=3, show_default=True,
              help="Example connections shown per finding kind in the text report.")
@click.option("--all", "show_all", is_flag=True, help="Show every affected connection, not only examples.")
@click.option("--log", "logs", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="An application log (client or server) to align with the capture: its clock offset is "
                   "estimated from the requests it names and its lines are shown on their connections. "
                   "Repeatable.")
@click.option("--log-regex", default=None, metavar="RE",
              help="Regex with a named group 'ts' (optional 'port', 'method', 'path', 'msg') for logs whose "
                   "timestamp is not at the start of the line.")
@click.option("--evidence", "evidence", default=None, metavar="OUT.pcapng",
              help="Also write the packets behind the selected findings (and their connections' handshakes) "
                   "to OUT.pcapng, each commented with what it proves and its frame in the original; the "
                   "verdict is the file's section comment. An OUT that cannot be written exits 2.")
def diagnose(captures: tuple[str, ...], as_json: bool, engine: str, tls_keylog: str | None, min_gap: float,
             merge: bool = False,
             kinds: tuple[str, ...] = (), examples: int = 3, show_all: bool = False, as_jsonl: bool = False,
             as_csv: bool = False,
             logs: tuple[str, ...] = (), log_regex: str | None = None, evidence: str | None = None,
             **sel: Any) -> None:
    """Who killed each connection, after how long, with what outstanding; the evidence to check it.

    The text report is bounded whatever the capture's size: the findings by kind with counts,
    the timers inferred from the closes, then per kind its verdict, what to do, and a few
    example connections (the commonest patterns first) with their timelines and Wireshark
    filters. --all shows every affected connection; --kind and --conn select findings (also
    for --json, which always carries every figure). With --log, each log's clock offset is
    printed and its lines appear (📝) in the timelines of the connections they mention.

    Two files that overlap in time are two capture points (beside the client and beside the
    server): the same connections are matched across them, the points' clock offset and
    one-way delay are estimated from requests answered at both, and a finding the other
    point can confirm says so: an RST the point nearer its claimed sender never saw was not
    sent by it; data the point nearer its receiver never saw was lost in between.

    \b
    Example:
      sockscope diagnose captures/crafted/incident-before-fix.pcap
      sockscope diagnose big.pcap --kind client_abort --all
      sockscope diagnose big.pcap --port 8080 --since 12:00:05 --until +30
      sockscope diagnose --json capture.pcap | jq '.[] | select(.kind == "client_idle_timeout")'
      sockscope diagnose capture.pcap --log client.log --log server.log
      sockscope diagnose capture.pcap --kind client_idle_timeout --evidence proof.pcapng
      sockscope diagnose client-side.pcap server-side.pcap
    """
    _check_kinds(kinds)
    selection = _selection(sel, kind=kinds)
    capture = captures[0] if len(captures) == 1 else " ".join(captures)
    if evidence is not None:
        for c in captures:
            _check_evidence_target(c, evidence)
    cap = _load(captures, engine=engine, min_gap_s=min_gap, tls_keylog=tls_keylog, merge=merge)
    f, _ = _select_rows(selection, cap.findings, "findings", cap)
    if evidence is not None:
        _write_evidence(cap, f, evidence)
    aligned, offsets = _align(cap, logs, log_regex) if logs else (None, {})
    if as_json or as_jsonl or as_csv:
        rows = f if aligned is None else _with_log_evidence(f, aligned, offsets)
        if as_csv:
            output.write_csv(rows, sys.stdout)      # evidence as one JSON cell
        else:
            output.write_json(rows, sys.stdout, lines=as_jsonl)
        return
    _report(cap, f, aligned, offsets, examples=examples, show_all=show_all or bool(selection.conn),
            capture=capture, selected=selection.filters)


def _check_evidence_target(capture: str, out: str) -> None:
    """Before the analysis (which can take minutes): the capture must be readable again and
    OUT writable, else a one-line usage error (exit 2)."""
    import os

    from sockscope.cli import _die

    if capture == "-":
        _die("--evidence reads the capture a second time, and standard input can be read only once: save the "
             "capture to a file first", EXIT_USAGE)
    if out == "-":
        _die("--evidence needs a file name (standard output carries the report)", EXIT_USAGE)
    where = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        _die(f"--evidence {out}: is a directory", EXIT_USAGE)
    if not os.path.isdir(where):
        _die(f"--evidence {out}: no such directory {where}", EXIT_USAGE)
    if not os.access(where, os.W_OK | os.X_OK) or (os.path.exists(out) and not os.access(out, os.W_OK)):
        _die(f"--evidence {out}: permission denied", EXIT_USAGE)
    if os.path.exists(out):
        sources = [os.path.join(capture, x) for x in os.listdir(capture)] if os.path.isdir(capture) else [capture]
        if any(os.path.exists(src) and os.path.samefile(out, src) for src in sources):
            _die(f"--evidence {out}: is one of the capture's own files: the evidence would replace it", EXIT_USAGE)


def _write_evidence(cap, f, out: str) -> None:
    """``--evidence``: the selected findings' packets as pcapng, and one line on stderr."""
    from sockscope.cli import EXIT_UNREADABLE, _die
    from sockscope.errors import SockscopeError

    try:
        res = cap.write_evidence(out, f)
    except SockscopeError as exc:
        _die(str(exc), EXIT_UNREADABLE)
    except ValueError as exc:
        _die(str(exc), EXIT_USAGE)
    except OSError as exc:
        _die(f"--evidence {out}: cannot write it ({exc.strerror or exc})", EXIT_USAGE)
    click.echo(f"sockscope: evidence: {res}", err=True)


def _report(cap, f, aligned, offsets, *, examples: int, show_all: bool, capture: str, selected: bool) -> None:
    """The bounded text report (see ``diagnose --help``)."""
    from sockscope.analysis import report, verdict

    con = _console()
    con.print(_facts_header(cap))
    if f.empty:
        if selected:
            con.print("\nNo findings match the selection.")
        else:
            con.print("\n[green]No findings[/green]: no connection was closed with a request outstanding, "
                      "no late answers, no stale reuse.")
        _print_offsets(con, offsets)
        return
    twins = report.twins_of(cap.connections)
    groups = report.group(f, examples=examples, twins=twins)
    n_conn = int(f["conn_id"].dropna().nunique())
    once = report.deaths(f["conn_id"].dropna(), twins)
    both = (f" ({once:,} once a connection seen at both capture points counts once)" if once < n_conn else "")
    con.print(f"\n[bold]{len(f):,} finding(s)[/bold] on {n_conn:,} of {len(cap.connections):,} connection(s)"
              f"{both}:")
    for g in groups:
        color = _SEVERITY_COLOR.get(g.severity, "cyan")
        on = f"{g.connections:,} connection(s)" if g.connections else f"{g.findings} finding(s)"
        if g.connections and g.deaths < g.connections:
            on = f"{g.deaths:,} connection(s), {g.connections - g.deaths:,} seen at both points"
        con.print(f"  [{color}]{g.severity:<7}[/{color}] {g.kind:<21} {on:>20}   {escape(g.title)}")
    clusters = cap.diagnosis.clusters
    timers = cap.diagnosis.timers
    if clusters:
        con.print("\n[bold]Timers inferred from idle closes[/bold] (two or more closes that agree, or one at a "
                  "round value):")
        for k in timers[:_MAX_TIMERS]:
            con.print("  " + escape(k.headline()))
        if not timers:
            con.print("  none")
        other = len(clusters) - min(len(timers), _MAX_TIMERS)
        if other > 0:
            con.print(f"  [dim]… {other} other group(s) of idle closes: smaller, single or too spread out for "
                      f"one timer[/dim]")
    _print_offsets(con, offsets)
    if cap.diagnosis.points is not None:
        con.print("\n[bold]Capture points[/bold]: " + escape(cap.diagnosis.points.describe()))
    ctx = cap.diagnosis.context
    told: set[int] = set()       # connections whose story is already on screen
    for g in groups:
        color = _SEVERITY_COLOR.get(g.severity, "cyan")
        con.print(f"\n[bold {color}]{escape(g.title)}[/bold {color}] [dim]({g.kind}"
                  f"{f', {g.connections:,} connection(s)' if g.connections else ''})[/dim]")
        con.print("  " + escape(verdict(g.kind, g.rows)), soft_wrap=False)
        if g.advice:
            con.print(f"  [dim]What to do:[/dim] {escape(g.advice)}")
        if len(g.patterns) > 1:
            top = list(g.patterns.items())[:4]
            con.print("  [dim]Patterns:[/dim] " + escape("; ".join(f"{p} ×{n:,}" for p, n in top))
                      + (f" [dim](+{len(g.patterns) - 4} more)[/dim]" if len(g.patterns) > 4 else ""))
        shown = sorted(set(g.rows["conn_id"].dropna().astype(int))) if show_all else g.examples
        if g.severity == "info" and not show_all:
            shown = shown[:1]
        for cid in shown:
            rows = g.rows[g.rows["conn_id"] == cid]
            timeline = g.severity != "info" or show_all
            _print_connection(con, ctx, cid, rows, aligned, timeline=timeline, told=cid in told)
            if timeline:
                told.add(cid)
            for ev in rows["evidence"]:
                # what the other capture point saw of it (analysis.points)
                if isinstance(ev, dict) and ev.get("absent_from") and ev.get("also_at"):
                    at = ev["also_at"]
                    con.print(f"    [bold]✔ never seen at {escape(', '.join(ev['absent_from']))}[/bold] (conn "
                              f"{at['conn_id']} there, frames {at['first_frame']}–{at['last_frame']}; "
                              f"`--json`: evidence.absent_from)")
        if not g.connections:    # findings about groups of connections: their filters
            for r in g.rows.head(3).itertuples():
                con.print(f"  [dim]{r.kind}: {escape(_short(str(r.display_filter)))}[/dim]")
        rest = g.connections - len(shown)
        if rest > 0:
            con.print(f"  [dim]… {rest:,} more connection(s): sockscope diagnose {escape(capture)} --kind {g.kind} "
                      f"--all  (or --conn ID, --json)[/dim]")
    con.print("\n[dim]Paste a filter into Wireshark to see exactly the packets behind a finding; "
              "`--json` gives every figure.[/dim]")


def _elide_exchanges(events: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """A long connection's story, bounded: its first and last request/answer lines, and every
    other line (the silence, closes, late data, log lines) whatever their number."""
    routine = [i for i, (_, text) in enumerate(events) if text.startswith(("→", "←"))]
    head, tail = _KEEP_EXCHANGES
    if len(routine) <= head + tail + 1:
        return events
    drop = set(routine[head:len(routine) - tail])
    out, marked = [], False
    for i, e in enumerate(events):
        if i not in drop:
            out.append(e)
        elif not marked:
            out.append((e[0], f"  … {len(drop)} request/answer line(s) of earlier exchanges"))
            marked = True
    return out


def _short(display_filter: str, limit: int = 300) -> str:
    """A filter cut for a terminal line (``--json`` has it whole)."""
    return display_filter if len(display_filter) <= limit else display_filter[:limit] + "… (whole in --json)"


def _print_connection(con, ctx, cid: int, rows, aligned, timeline: bool, told: bool = False) -> None:
    from sockscope.analysis import report
    from sockscope.analysis._cols import hms

    from sockscope.analysis.points import stream_in_file

    pos = int((ctx.conn_id == cid).argmax())
    client, server = ctx.endpoint(pos, "client"), ctx.endpoint(pos, "server")
    stream, point = stream_in_file(ctx, cid)
    where = f" in {escape(os.path.basename(point))}" if point else ""
    con.print(f"  [bold]connection {cid}[/bold] {client} → {server}   [dim]tcp.stream eq {stream}{where}"
              f"{' (its timeline is above)' if told else ''}[/dim]")
    if not timeline and not told:
        for r in rows.itertuples():
            con.print(f"    {escape(str(r.summary))}")
    elif not told:
        events = [(e.ts_ns, e.text) for e in report.connection_events(ctx, cid)]
        if aligned is not None:
            c = ctx.conns.iloc[pos]
            events.extend((int(ts.value), text) for ts, text in _log_events(aligned, int(cid), c))
            events.sort(key=lambda e: e[0])
        events = _elide_exchanges(events)
        for ts, text in events:
            con.print(f"    {hms(ts)}  {escape(text)}", soft_wrap=text.startswith("📝"))
    for r in rows.itertuples():
        con.print(f"    [dim]{r.kind}: {escape(str(r.display_filter))}[/dim]")


def _align(cap, logs: tuple[str, ...], regex: str | None) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Aligned log lines and per-file offsets; log errors exit 3, a file with no match warns on stderr."""
    import warnings

    from sockscope.cli import _die
    from sockscope.errors import SockscopeError
    from sockscope.logs import LogAlignmentWarning, align_logs

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LogAlignmentWarning)   # reported below, once, in our words
            aligned, offsets = align_logs(cap, list(logs), regex=regex)
    except SockscopeError as exc:
        _die(str(exc))
    for src, info in offsets.items():
        if info.get("warning"):
            click.echo(f"sockscope: warning: {src}: {info['warning']}", err=True)
    return aligned, offsets


def _print_offsets(con, offsets: dict[str, dict[str, Any]]) -> None:
    from sockscope.logs import describe_offset

    if not offsets:
        return
    con.print()
    for src, info in offsets.items():
        con.print(escape(describe_offset(src, info)), soft_wrap=True)
        if info.get("unplaced"):
            con.print(f"  [dim]{info['unplaced']} of its {info['lines']} line(s) name no connection and follow no "
                      f"close closely: not shown (`--json` has the offsets; Capture.align_logs every line)[/dim]")


def _ago(delta_s: float) -> str:
    a = abs(delta_s)
    return f"{a * 1e3:.1f} ms" if a < 1 else f"{a:.3f} s"


def _log_events(aligned: pd.DataFrame, cid: int, c: Any) -> list[tuple[Any, str]]:
    """Timeline entries for the log lines placed on one connection."""
    out: list[tuple[Any, str]] = []
    for r in aligned[aligned["conn_id"] == cid].itertuples(index=False):
        text = str(r.text).split("\n", 1)[0]
        if len(text) > 300:
            text = text[:299] + "…"
        rel = ""
        if not pd.isna(r.delta_to_close_s):
            d = float(r.delta_to_close_s)
            rel = f" ({_ago(d)} {'after' if d >= 0 else 'before'} the {c.closed_by} {c.close_kind})"
        out.append((r.adjusted_ts, f"📝 {r.source}: {text}{rel}"))
    return out


def _with_log_evidence(f: pd.DataFrame, aligned: pd.DataFrame, offsets: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Findings with ``evidence["log_alignment"]``: the offsets, and the lines of the finding's connection."""
    srcs = {s: {k: i[k] for k in ("offset_s", "matches", "spread_s")} for s, i in offsets.items()}
    out = f.copy()
    evs = []
    for cid, ev in zip(out["conn_id"], out["evidence"]):
        ev = dict(ev)
        entry: dict[str, Any] = {"sources": srcs}
        if not pd.isna(cid):
            sub = aligned[aligned["conn_id"] == int(cid)]
            entry["lines"] = [
                {"source": str(r.source), "line_no": int(r.line_no), "ts": r.ts.isoformat(),
                 "adjusted_ts": r.adjusted_ts.isoformat(), "placed_by": None if pd.isna(r.placed_by) else str(r.placed_by),
                 "delta_to_close_s": None if pd.isna(r.delta_to_close_s) else float(r.delta_to_close_s),
                 "text": str(r.text)} for r in sub.itertuples(index=False)]
        ev["log_alignment"] = entry
        evs.append(ev)
    out["evidence"] = evs
    return out


def _rules(no_kinds, max_idle_close, headers, separate, never_after) -> list:
    """The check rules from the command line; a malformed rule is a usage error (exit 2)."""
    from sockscope.analysis import check as chk

    try:
        rules: list = [chk.NoKind(k) for k in no_kinds]
        if max_idle_close is not None:
            rules.append(chk.MaxIdleClose(max_idle_close))
        rules += [chk.Header.parse(h) for h in headers]
        rules += [chk.Separate(chk.RequestKind.parse(a), chk.RequestKind.parse(b)) for a, b in separate]
        rules += [chk.NeverAfter(chk.RequestKind.parse(a), chk.RequestKind.parse(b)) for a, b in never_after]
    except chk.RuleError as exc:
        raise click.UsageError(str(exc)) from None
    if not rules:
        raise click.UsageError("no rule given: use --no, --max-idle-close, --header, --separate or --never-after")
    return rules


@main.command()
@CAPTURE
@click.option("--no", "no_kinds", multiple=True, metavar="KIND",
              help="Fail if any finding of this kind exists (e.g. client_idle_timeout). Repeatable.")
@click.option("--max-idle-close", type=float, default=None, metavar="SECONDS",
              help="Fail if a connection with a request outstanding was closed after SECONDS or less of silence "
                   "(an idle timer of that length or shorter killed a waiting request).")
@click.option("--header", "headers", multiple=True, metavar="'METHOD PATH-PREFIX: Header: value'",
              help="Fail unless every matching request or its response carries the header (Connection, "
                   "Keep-Alive, Content-Type, Host, User-Agent). Repeatable.")
@click.option("--never-after", "never_after", nargs=2, multiple=True, metavar="'METHOD PREFIX' 'METHOD PREFIX'",
              help="Fail if a request of the second kind is sent on a connection that earlier carried one of "
                   "the first kind (order matters). Repeatable.")
@click.option("--separate", nargs=2, multiple=True, metavar="'METHOD PREFIX' 'METHOD PREFIX'",
              help="Fail if requests of both kinds ever share a connection, in either order. Repeatable.")
@click.option("--allow-empty", is_flag=True,
              help="A rule whose requests match nothing passes (default: usage error, exit 2).")
@JSON
def check(capture: str, no_kinds: tuple[str, ...], max_idle_close: float | None, headers: tuple[str, ...],
          never_after: tuple[tuple[str, str], ...], separate: tuple[tuple[str, str], ...], allow_empty: bool,
          as_json: bool) -> None:
    """Assert properties of a capture for CI: exit 0 when every rule holds, 1 when one fails.

    The incident's validation plan is three rules: GET /files answered with Connection: close,
    POST /exec never sent on a socket that carried GET /files before it, and no client-side
    close while a request waits. A rule whose requests match nothing is a usage error (exit 2):
    a typo must not pass.

    \b
    Example:
      sockscope check after.pcap --no client_idle_timeout \\
          --header 'GET /files: Connection: close' --never-after 'GET /files' 'POST /exec'
    """
    from sockscope.analysis.check import check as run_check

    rules = _rules(no_kinds, max_idle_close, headers, separate, never_after)
    cap = _load(capture)
    res = run_check(cap, rules, allow_empty=allow_empty)
    if as_json:
        json.dump({"ok": res.ok, "capture": capture,
                   "rules": [r.as_dict() for r in res.results]}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for r in res.results:
            word = "EMPTY" if r.empty and not r.ok else "PASS" if r.ok else "FAIL"
            click.echo(f"{word}  {r.rule}: {r.reason}")
    if res.empty and not allow_empty:
        click.echo(f"sockscope: {len(res.empty)} rule(s) match no request in {capture} "
                   f"(a typo?); --allow-empty lets them pass", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(0 if res.ok else EXIT_FAIL)


@main.command()
@click.argument("before", type=click.Path(allow_dash=False))
@click.argument("after", type=click.Path(allow_dash=False))
@JSON
def compare(before: str, after: str, as_json: bool) -> None:
    """Before vs after a fix: findings, reuse, killed requests, timers, headers per request type.

    Verdict: "fixed" when the error and warning findings of BEFORE are gone in AFTER, "not
    fixed" when they remain (exit 1), "changed" otherwise. A timer is claimed only for two or
    more closes alike; a single close is reported as such.

    \b
    Example:
      sockscope compare captures/crafted/incident-before-fix.pcap captures/crafted/incident-after-fix.pcap
    """
    from sockscope.analysis.compare import compare as run_compare, profile

    res = run_compare(profile(_load(before)), profile(_load(after)))
    b, a, verdict = res.before, res.after, res.verdict
    if as_json:
        json.dump(res.as_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        sys.exit(EXIT_FAIL if verdict == "not fixed" else 0)
    from rich.table import Table

    con = _console()
    t = Table(title="findings", header_style="bold")
    t.add_column("kind")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    for k in sorted(set(b["findings"]) | set(a["findings"])):
        t.add_row(k, str(b["findings"].get(k, 0)), str(a["findings"].get(k, 0)))
    con.print(t)
    t = Table(title="request types (before → after)", header_style="bold")
    for col in ("type", "requests", "connections", "on reused sockets", "killed", "Connection: close"):
        t.add_column(col, justify="left" if col == "type" else "right")
    for typ in sorted(set(b["request_types"]) | set(a["request_types"])):
        x, y = b["request_types"].get(typ, {}), a["request_types"].get(typ, {})
        t.add_row(escape(typ), *[f"{x.get(k, 0)} → {y.get(k, 0)}" for k in
                                 ("requests", "connections", "on_reused_sockets", "killed", "resp_connection_close")])
    con.print(t)
    for name, p in (("before", b), ("after", a)):
        for k in p["timers"][:_MAX_TIMERS]:
            con.print(f"{name}: {escape(k['headline'])}")
    color = {"fixed": "green", "not fixed": "red"}.get(verdict, "yellow")
    con.print(f"\n[bold {color}]{verdict}[/bold {color}]: {escape(res.reason)}")
    sys.exit(EXIT_FAIL if verdict == "not fixed" else 0)


@main.command()
@CAPTURE
@JSON
@KEYLOG
def crosscheck(capture: str, as_json: bool, tls_keylog: str | None) -> None:
    """Run the native engine and tshark on the same capture and list every disagreement.

    Exit 1 when they disagree beyond documented, explained differences.

    \b
    Example:
      sockscope crosscheck captures/crafted/incident-before-fix.pcap
    """
    from sockscope.crosscheck import crosscheck as _cc, ok

    native = _load(capture)
    other = _load(capture, engine="tshark", tls_keylog=tls_keylog)
    d = _cc({"connections": native.connections, "requests": native.requests},
            {"connections": other.connections, "requests": other.requests})
    if as_json:
        output.write_json(d, sys.stdout)
    else:
        if d.empty:
            click.echo(f"agree: {len(native.connections)} connections, {len(native.requests)} requests")
        else:
            from rich.table import Table

            t = Table(header_style="bold")
            for col in d.columns:
                t.add_column(col)
            for row in d.itertuples(index=False):
                t.add_row(*["-" if pd.isna(v) else str(v) for v in row])
            _console().print(t)
    sys.exit(0 if ok(d) else EXIT_FAIL)
