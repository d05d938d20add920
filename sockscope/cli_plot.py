"""``sockscope plot`` and ``sockscope export``: pictures and files from a capture.

Registered on the main command group when this module is imported (``cli._register_more``).
"""

from __future__ import annotations

import os

import click

from sockscope.cli import CAPTURE, EXIT_USAGE, _die, _load, main

MAX_IMAGE_PX = 4000


@main.command()
@CAPTURE
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), default="timeline.png", show_default=True,
              help="Image file to write; the extension picks the format (.png, .svg, .pdf).")
@click.option("--conn", "conn_ids", type=int, multiple=True,
              help="Only these connection ids (repeatable). Default: all, or the --max-conns worst.")
@click.option("--kind", type=click.Choice(["timeline", "idle"]), default="timeline", show_default=True,
              help="timeline: one lane per connection; idle: silence before each close, per closer.")
@click.option("--max-conns", type=int, default=50, show_default=True,
              help="Timeline: with more connections, show the worst (error findings one per pattern, then longest "
                   "silence); at most 50 lanes.")
@click.option("--dpi", type=int, default=150, show_default=True, help="Resolution of raster images.")
def plot(capture: str, out: str, conn_ids: tuple[int, ...], kind: str, max_conns: int, dpi: int) -> None:
    """Draw the connection timeline (or the idle-before-close chart) to an image for a report.

    \b
    Example:
      sockscope plot captures/crafted/incident-before-fix.pcap -o timeline.png
      sockscope plot capture.pcap --conn 0 --conn 2 -o two-conns.svg
      sockscope plot capture.pcap --kind idle -o idle.png
    """
    ext = os.path.splitext(out)[1].lower().lstrip(".")
    if ext not in ("png", "svg", "pdf"):
        _die(f"{out}: unsupported image type {ext or '(none)'!r}: use .png, .svg or .pdf", EXIT_USAGE)
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        _die("plots need matplotlib: pip install 'sockscope[plot]'", EXIT_USAGE)
    cap = _load(capture)
    from sockscope import plot as plots

    try:
        if kind == "timeline":
            fig = plots.timeline(cap, conn_ids=list(conn_ids) or None, max_conns=max_conns)
        else:
            if conn_ids:
                _die("--conn applies to --kind timeline only", EXIT_USAGE)
            fig = plots.idle_closes(cap)
    except ValueError as exc:   # unknown connection id
        _die(str(exc), EXIT_USAGE)
    # An image a viewer can open: no side over MAX_IMAGE_PX, whatever --dpi asks
    w_in, h_in = fig.get_size_inches()
    if ext == "png" and max(w_in, h_in) * dpi > MAX_IMAGE_PX:
        dpi = max(1, int(MAX_IMAGE_PX / max(w_in, h_in)))
        click.echo(f"sockscope: --dpi lowered to {dpi} to keep the image within {MAX_IMAGE_PX} px", err=True)
    fig.savefig(out, dpi=dpi, format=ext)
    click.echo(f"wrote {out}", err=True)


@main.command(name="export")
@CAPTURE
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "parquet", "zeek"]), required=True,
              help="json/csv/parquet: connections, requests, gaps, findings; zeek: conn.log and http.log.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Directory to write into (created if missing; files in it are overwritten).")
def export_cmd(capture: str, fmt: str, out_dir: str) -> None:
    """Write the tables to files: JSON, CSV, Parquet (dtypes kept) or Zeek's conn.log/http.log.

    \b
    Example:
      sockscope export captures/crafted/incident-before-fix.pcap --format parquet --out out/
      sockscope export capture.pcap --format zeek --out zeek/ && zeek-cut uid history < zeek/conn.log
    """
    cap = _load(capture)
    from sockscope.export import export

    try:
        paths = export(cap, out_dir, fmt)
    except ImportError as exc:     # pyarrow missing for parquet
        _die(f"{fmt} export needs an optional dependency: {exc}", EXIT_USAGE)
    for p in paths:
        click.echo(str(p))
