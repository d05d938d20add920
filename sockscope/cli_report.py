"""``sockscope report``: the incident report, one self-contained HTML file.

Registered on the main command group when this module is imported (see ``cli._Commands``).
"""

from __future__ import annotations

from typing import Any

import click

from sockscope.cli import CAPTURES, ENGINE, EXIT_USAGE, KEYLOG, _die, _load, main


@main.command()
@CAPTURES
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), default="incident.html", show_default=True,
              help="The HTML file to write.")
@ENGINE
@KEYLOG
@click.option("--min-gap", type=float, default=1.0, show_default=True, help="Silences at least this long (s) are gaps.")
@click.option("--log", "logs", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="An application log to align with the capture; its lines appear on their connections' "
                   "lanes and stories. Repeatable.")
@click.option("--log-regex", default=None, metavar="RE", help="As for diagnose: a regex with a named group 'ts'.")
@click.option("--details-per-group", type=click.IntRange(0, 100_000), default=None, metavar="N",
              help="Connections without findings whose details are embedded, per pattern group (default 40).")
def report(captures: tuple[str, ...], out: str, engine: str, tls_keylog: str | None, min_gap: float,
           logs: tuple[str, ...], log_regex: str | None, details_per_group: int | None) -> None:
    """Write the incident report: one HTML file with the verdict, a timeline and the evidence.

    The file is self-contained (no network access when opened, from file:// or a ticket
    attachment): the diagnosis first (findings by kind, inferred timers, what to do), then a
    timeline with one lane per connection, grouped by pattern -- zoom with Ctrl+wheel or the
    buttons, drag to pan, click a lane for its requests, silences, closes, evidence frames
    and Wireshark filters -- and the capture's facts.

    \b
    Example:
      sockscope report captures/lab/before-fix/capture.pcap -o incident.html
      sockscope report capture.pcap --log client.log --log server.log -o incident.html
    """
    from sockscope import htmlreport

    cap = _load(list(captures), engine=engine, min_gap_s=min_gap, tls_keylog=tls_keylog)
    aligned, offsets = None, {}
    if logs:
        from sockscope.cli_diag import _align

        aligned, offsets = _align(cap, logs, log_regex)
    kw: dict[str, Any] = {} if details_per_group is None else {"detail_per_group": details_per_group}
    rep = htmlreport.build(cap, aligned, offsets, **kw)
    try:
        rep.save(out)
    except OSError as exc:
        _die(f"{out}: cannot write the report: {exc.strerror or exc}", EXIT_USAGE)
    n = len(cap.findings)
    click.echo(f"wrote {out} ({len(rep.html.encode()) / 1e6:.2f} MB): {n:,} finding(s) on "
               f"{len(cap.connections):,} connection(s)", err=True)
