"""``sockscope watch``: report killed requests live, as the FIN/RST goes by.

Reads a pcap stream (``-`` = stdin, e.g. ``tcpdump -U -w - | sockscope watch -``) or runs
tcpdump itself (``-i IFACE``). Two kinds of line:

* at each connection's first FIN/RST, at once, a *close* report: who closed, after what
  silence, with a request waiting or not, named by the one close rule of the analysis layer
  (:func:`sockscope.analysis.classify_close`) against the timers seen so far;
* when the connection has lingered (its late packets are in), its *findings*: the same
  detectors as ``diagnose`` on its rows; and *revisions* when later closes change what an
  earlier one is (a second close at the same idle time turns an abort into a timer).

At the end of a file, each connection's findings and revisions give the kinds that
``diagnose`` gives it.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
from typing import Any

import click

from sockscope.cli import EXIT_UNREADABLE, _die, main


class _Watcher:
    def __init__(self, as_json: bool, all_closes: bool, min_gap_s: float) -> None:
        from sockscope.analysis.live import LiveDiagnosis

        self.as_json = as_json
        self.all_closes = all_closes
        self.live = LiveDiagnosis(min_gap_s)
        self.reported = 0
        self.findings = 0
        # client closes with a request waiting after >= MIN_TIMER_S of silence, at FIN time
        self.killer_idle: list[float] = []
        self.killer_ids: list[int] = []

    def _out(self, obj: dict[str, Any], text: str) -> None:
        self.reported += 1
        sys.stdout.write(json.dumps(obj, default=str) + "\n" if self.as_json else text + "\n")
        sys.stdout.flush()

    def on_close(self, ev: dict[str, Any]) -> None:
        """The tracker's live hook: a connection's first FIN/RST."""
        from sockscope.analysis import classify_close
        from sockscope.analysis.closes import forged_rst
        from sockscope.analysis.live import HISTORY_MAX
        from sockscope.analysis.timers import MIN_TIMER_S, cluster_closes

        import numpy as np
        import pandas as pd

        ev["event"] = "close"
        ev["client"] = f"{ipaddress.ip_address(ev.pop('client_addr'))}:{ev.pop('client_port')}"
        ev["server"] = f"{ipaddress.ip_address(ev.pop('server_addr'))}:{ev.pop('server_port')}"
        ev["close_ts"] = pd.Timestamp(ev["close_ts"], unit="ns", tz="UTC").isoformat()
        idle = ev["idle_s"]
        cluster = None
        if idle is not None and idle >= MIN_TIMER_S and ev["closed_by"] == "client" and ev["outstanding"]:
            # Only these closes' kind depends on the timers: judged against the earlier ones
            # of their group as they passed (a connection joins the analysis' own history
            # only when it retires, seconds later). A quicker close can neither join a timer
            # cluster nor count as a neighbour of one (cluster_closes leaves it out), so it is
            # not kept. Re-clustered at every close, a list of every abort made watch's CPU grow
            # with its uptime (bench/soak_watch.py, busy loops: 0.75 s per 300k-packet loop in
            # this hook at the start, 1.45 s after 12M packets); it now grows with the closes
            # that could be timers only (15 of the 235 aborts and timeouts of a loop).
            self.killer_idle.append(idle)
            self.killer_ids.append(ev["conn_id"])
            if len(self.killer_idle) > HISTORY_MAX:       # the recent past, as the batches' timers
                del self.killer_idle[0], self.killer_ids[0]
            n = len(self.killer_idle)
            clusters, member = cluster_closes(np.full(n, "client", dtype=object), np.ones(n, dtype=bool),
                                              np.array(self.killer_idle), np.array(self.killer_ids))
            cluster = clusters[member[-1]] if member[-1] >= 0 else None
        forged = forged_rst(ev.pop("rst_ttl", None), ev.pop("ttl_min", None), ev.pop("ttl_max", None))
        kind = "middlebox_rst" if forged else classify_close(ev["closed_by"], ev["outstanding"], idle, cluster)
        ev["kind"] = kind or "close"
        if kind == "client_idle_timeout" and cluster is not None:
            ev["inferred_timeout_s"] = cluster.timer_s
            ev["timeout_cluster_size"] = cluster.count
        if kind not in ("client_idle_timeout", "client_abort", "server_abort", "middlebox_rst") and not self.all_closes:
            return
        idle_t = "-" if idle is None else f"{idle:.3f} s"
        line = (f"{ev['close_ts']}  conn {ev['conn_id']} {ev['client']} → {ev['server']}: "
                f"{ev['closed_by']} {ev['close_kind']} (frame {ev['close_frame']}) after {idle_t} idle")
        if kind == "client_idle_timeout":
            t = ev.get("inferred_timeout_s")
            line = ("KILLED  " + line + " with a request outstanding"
                    + (f"; timer ≈ {t:g} s ({ev['timeout_cluster_size']} so far)" if t else ""))
        elif kind == "middlebox_rst":
            line = "FORGED  " + line + ": an RST its claimed sender did not send (IP TTL differs)"
        elif kind in ("client_abort", "server_abort"):
            line = "ABORT   " + line + f" with a request outstanding ({kind})"
        else:
            line = "close   " + line
        self._out(ev, line)

    def on_batch(self, result: Any) -> None:
        """Connections that finished lingering: their findings, and revisions of earlier closes."""
        from sockscope.analysis.live import feed_result

        found, revisions = feed_result(self.live, result)
        for f in found:
            self.findings += 1
            row = {"event": "finding", **f.as_row()}
            self._out(row, f"FINDING {f.kind} [{f.severity}] conn {f.conn_id}: {f.summary}\n"
                           f"        {f.display_filter}")
        for r in revisions:
            k = r.cluster
            row = {"event": "revision", "conn_id": r.conn_id, "kind": r.now, "was": r.was,
                   "inferred_timeout_s": None if k is None else k.timer_s,
                   "timeout_cluster_size": None if k is None else k.count}
            why = f"; {k.headline()}" if k is not None else ""
            self._out(row, f"REVISED conn {r.conn_id}: {r.was} → {r.now}{why}")


@main.command()
@click.argument("capture", required=False, type=click.Path(allow_dash=True))
@click.option("-i", "--interface", default=None, help="Capture live on this interface with tcpdump (root).")
@click.option("-f", "--filter", "bpf", default="tcp", show_default=True, help="tcpdump filter with -i.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line; 'event' is close, finding or revision.")
@click.option("--all", "all_closes", is_flag=True, help="Print every close, not only problems.")
@click.option("--min-gap", type=float, default=1.0, show_default=True, help="Silences at least this long (s) are gaps.")
def watch(capture: str | None, interface: str | None, bpf: str, as_json: bool, all_closes: bool,
          min_gap: float) -> None:
    """Watch a live capture and report killed requests as they happen.

    A close is reported the moment its FIN/RST passes; the findings of a connection (the same
    detectors as `diagnose`) once it has lingered 5 s for late packets; a revision when later
    closes change what an earlier one was.

    \b
    Example:
      sockscope watch -i lo -f 'tcp port 8000'
      tcpdump -i any -U -w - port 8000 | sockscope watch -
    """
    from sockscope.engine import stream
    from sockscope.errors import SockscopeError

    proc = None
    if interface:
        exe = shutil.which("tcpdump")
        if exe is None:
            _die("tcpdump is not installed (apt-get install tcpdump)", EXIT_UNREADABLE)
        proc = subprocess.Popen([exe, "-i", interface, "-U", "-s", "0", "-w", "-", bpf],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        source: Any = proc.stdout
    elif capture:
        from sockscope.cli import _expand

        files = _expand(capture)     # a directory: its capture files, one after the other
        source = files[0] if len(files) == 1 else files
    else:
        raise click.UsageError("give a CAPTURE ('-' for stdin) or -i INTERFACE")
    watcher = _Watcher(as_json, all_closes, min_gap)
    counts: dict[str, Any] = {}
    try:
        counts = stream(source, watcher.on_batch, on_close=watcher.on_close, min_gap_s=min_gap)
    except SockscopeError as exc:
        _die(str(exc))
    except KeyboardInterrupt:
        pass
    finally:
        if proc is not None:
            proc.terminate()
    if not as_json:
        click.echo(f"watched {counts.get('packets', 0):,} packets, {counts.get('connections', 0):,} connections, "
                   f"{watcher.findings} finding(s), {watcher.reported} line(s) reported", err=True)
