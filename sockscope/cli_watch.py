"""``sockscope watch``: report killed requests live, as the FIN/RST goes by.

Reads a pcap stream (``-`` = stdin, e.g. ``tcpdump -U -w - | sockscope watch -``) or runs
tcpdump itself (``-i IFACE``). The tracker calls back at each connection's first FIN/RST,
so a client close after silence with a request outstanding is printed at once; the timer
estimate sharpens as closes accumulate.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
from typing import Any

import click
import pandas as pd

from sockscope.analysis import MIN_TIMER_S, CloseInfo, infer_timeouts
from sockscope.cli import EXIT_UNREADABLE, _die, main


class _Watcher:
    def __init__(self, as_json: bool, all_closes: bool) -> None:
        self.as_json = as_json
        self.all_closes = all_closes
        self.closes: list[CloseInfo] = []
        self.reported = 0

    def __call__(self, ev: dict[str, Any]) -> None:
        ev["client"] = f"{ipaddress.ip_address(ev.pop('client_addr'))}:{ev.pop('client_port')}"
        ev["server"] = f"{ipaddress.ip_address(ev.pop('server_addr'))}:{ev.pop('server_port')}"
        ev["close_ts"] = pd.Timestamp(ev["close_ts"], unit="ns", tz="UTC").isoformat()
        killed = ev["closed_by"] == "client" and ev["outstanding"] and (ev["idle_s"] or 0) >= MIN_TIMER_S
        self.closes.append(CloseInfo(ev["conn_id"], ev["closed_by"], ev["close_kind"], ev["idle_s"],
                                     [1] if ev["outstanding"] else [], ev["level"]))
        ev["kind"] = "client_idle_timeout" if killed else (
            "server_abort" if ev["closed_by"] == "server" and ev["outstanding"] else "close")
        if killed:
            ks = [k for k in infer_timeouts(self.closes) if k.side == "client" and k.outstanding
                  and ev["conn_id"] in k.conn_ids]
            if ks:
                ev["inferred_timeout_s"] = ks[0].timer_s
                ev["timeout_cluster_size"] = ks[0].count
        if not (killed or self.all_closes or ev["kind"] != "close"):
            return
        self.reported += 1
        if self.as_json:
            sys.stdout.write(json.dumps(ev) + "\n")
        else:
            idle = "-" if ev["idle_s"] is None else f"{ev['idle_s']:.3f} s"
            line = (f"{ev['close_ts']}  conn {ev['conn_id']} {ev['client']} → {ev['server']}: "
                    f"{ev['closed_by']} {ev['close_kind']} (frame {ev['close_frame']}) after {idle} idle")
            if killed:
                t = ev.get("inferred_timeout_s")
                line = ("KILLED  " + line + " with a request outstanding"
                        + (f"; timer ≈ {t:g} s ({ev['timeout_cluster_size']} so far)" if t else ""))
            elif ev["kind"] == "server_abort":
                line = "ABORT   " + line + " with a request outstanding"
            else:
                line = "close   " + line
            sys.stdout.write(line + "\n")
        sys.stdout.flush()


@main.command()
@click.argument("capture", required=False, type=click.Path(allow_dash=True, dir_okay=False))
@click.option("-i", "--interface", default=None, help="Capture live on this interface with tcpdump (root).")
@click.option("-f", "--filter", "bpf", default="tcp", show_default=True, help="tcpdump filter with -i.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--all", "all_closes", is_flag=True, help="Print every close, not only problems.")
def watch(capture: str | None, interface: str | None, bpf: str, as_json: bool, all_closes: bool) -> None:
    """Watch a live capture and report killed requests as they happen.

    \b
    Example:
      sockscope watch -i lo -f 'tcp port 8000'
      tcpdump -i any -U -w - port 8000 | sockscope watch -
    """
    from sockscope.capture import open_source
    from sockscope.errors import SockscopeError
    from sockscope.http import HttpSession, detect
    from sockscope.tcp._tracker import Tracker

    proc = None
    if interface:
        exe = shutil.which("tcpdump")
        if exe is None:
            _die("tcpdump is not installed (apt-get install tcpdump)", EXIT_UNREADABLE)
        proc = subprocess.Popen([exe, "-i", interface, "-U", "-s", "0", "-w", "-", bpf],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        source: Any = proc.stdout
    elif capture:
        source = capture
    else:
        raise click.UsageError("give a CAPTURE ('-' for stdin) or -i INTERFACE")
    watcher = _Watcher(as_json, all_closes)
    tracker = Tracker(lambda c: None, session_factory=HttpSession, detect=detect)
    tracker.on_close = watcher
    try:
        tracker.run(open_source(source))
        tracker.finish()
    except SockscopeError as exc:
        _die(str(exc))
    except KeyboardInterrupt:
        pass
    finally:
        if proc is not None:
            proc.terminate()
    if not as_json:
        click.echo(f"watched {tracker.packets:,} packets, {tracker.next_id} connections, "
                   f"{watcher.reported} reported", err=True)
