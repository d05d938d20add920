"""CLI commands built on the analysis layer: diagnose, check, compare, crosscheck."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import pandas as pd
from rich.markup import escape

from sockscope import output
from sockscope.analysis import (close_attribution, diagnose as _diagnose, infer_timeouts, path_template,
                                request_type)
from sockscope.cli import CAPTURE, ENGINE, JSON, KEYLOG, EXIT_FAIL, _console, _emit, _facts_header, _load, _s, _t, main

_KIND_TITLE = {
    "client_idle_timeout": "Client idle timeout killed requests",
    "server_abort": "Server closed connections with a request outstanding",
    "client_abort": "Client aborted connections with a request outstanding",
    "stale_reuse": "Requests sent on connections the server had closed",
    "response_after_close": "Server answered into closed connections",
    "server_idle_close": "Server closed idle keep-alive connections",
    "connection_reuse": "Sockets reused by different clients",
    "root_cause_hint": "What the killed sockets have in common",
    "heartbeat": "Responses kept alive by heartbeat writes",
}
_ORDER = list(_KIND_TITLE)


def _verdict(kind: str, rows: pd.DataFrame, cap) -> str:
    n = rows["conn_id"].nunique()
    ev = rows.iloc[0]["evidence"]
    if kind == "client_idle_timeout":
        t = ev.get("inferred_timeout_s")
        reqs = sorted({request_type(r["method"], r["uri"]) for e in rows["evidence"] for r in e.get("requests", [])
                       if r["index"] == rows.iloc[0]["request_index"]} - {"- ?"})
        lo = min(e["idle_s"] for e in rows["evidence"])
        hi = max(e["idle_s"] for e in rows["evidence"])
        level = " (TCP-level: payload not readable as HTTP)" if ev.get("level") == "tcp" else ""
        return (f"The CLIENT destroyed {n} connection(s) after {lo:.3f}–{hi:.3f} s without a byte in either "
                f"direction while a request was waiting for its answer{level}. Inferred timer: "
                f"{t:g} s, measured {ev.get('measured_timeout_s'):.4f} s ({ev.get('timeout_confidence')} confidence, {ev.get('timeout_cluster_size')} "
                f"close(s){', a round number: a configured timeout' if ev.get('timeout_round_ms') else ''}). "
                f"The server never got the chance to answer" + (f" {', '.join(reqs)}" if reqs else "") + ".")
    if kind == "response_after_close":
        rst = sum(1 for e in rows["evidence"] if e.get("client_rst_frame") is not None)
        return (f"The server sent its late answer on {n} connection(s) after the client had closed them; "
                f"{rst} drew an RST from the client's kernel: the responses were dropped.")
    if kind == "connection_reuse":
        uas = sorted({ua for e in rows["evidence"] for ua in e.get("user_agents", [])})
        return f"{n} socket(s) carried requests from different clients: {', '.join(uas)}."
    if kind == "server_idle_close":
        t = ev.get("inferred_timeout_s")
        return f"The server closed {n} idle keep-alive connection(s) with nothing outstanding" + \
            (f" (server keep-alive timeout ≈ {t:.3f} s)." if t else ".")
    if kind in ("root_cause_hint", "heartbeat"):
        return " ".join(rows["summary"].astype(str).tolist()[:3])
    return f"{n} connection(s): see below."


@main.command()
@CAPTURE
@JSON
@ENGINE
@KEYLOG
@click.option("--min-gap", type=float, default=1.0, show_default=True,
              help="Silences at least this long (s) are listed as gaps.")
@click.option("--log", "logs", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="An application log (client or server) to align with the capture: its clock offset is "
                   "estimated from the requests it names and its lines are shown on their connections. "
                   "Repeatable.")
@click.option("--log-regex", default=None, metavar="RE",
              help="Regex with a named group 'ts' (optional 'port', 'method', 'path', 'msg') for logs whose "
                   "timestamp is not at the start of the line.")
def diagnose(capture: str, as_json: bool, engine: str, tls_keylog: str | None, min_gap: float,
             logs: tuple[str, ...] = (), log_regex: str | None = None) -> None:
    """Who killed each connection, after how long, with what outstanding; the evidence to check it.

    Prints the verdict first (one paragraph per finding kind), then a short timeline per affected
    connection. Every figure names its frames; each finding has a Wireshark display filter.
    With --log, each log file's clock offset to the capture is printed after the verdict and
    its lines appear (📝) in the timelines of the connections they mention.

    \b
    Example:
      sockscope diagnose captures/crafted/incident-before-fix.pcap
      sockscope diagnose --json capture.pcap | jq '.[] | select(.kind == "client_idle_timeout")'
      sockscope diagnose capture.pcap --log client.log --log server.log
    """
    cap = _load(capture, engine=engine, min_gap_s=min_gap, tls_keylog=tls_keylog)
    f = cap.findings
    aligned, offsets = _align(cap, logs, log_regex) if logs else (None, {})
    if as_json:
        output.write_json(f if aligned is None else _with_log_evidence(f, aligned, offsets), sys.stdout)
        return
    con = _console()
    con.print(_facts_header(cap))
    if f.empty:
        con.print("\n[green]No findings[/green]: no connection was closed with a request outstanding, "
                  "no late answers, no stale reuse.")
        _print_offsets(con, offsets)
        return
    kinds = sorted(f["kind"].astype(str).unique(), key=lambda k: _ORDER.index(k) if k in _ORDER else 99)
    con.print()
    for kind in kinds:
        rows = f[f["kind"].astype(str) == kind]
        sev = str(rows.iloc[0]["severity"])
        color = {"error": "red", "warning": "yellow"}.get(sev, "cyan")
        n_conn = rows["conn_id"].nunique()
        con.print(f"[bold {color}]{_KIND_TITLE.get(kind, kind)}[/bold {color}] "
                  f"[dim]({kind}{f', {n_conn} connection(s)' if n_conn else ''})[/dim]")
        con.print("  " + escape(_verdict(kind, rows, cap)))
    _print_offsets(con, offsets)
    conns = cap.connections.set_index("conn_id")
    affected = [cid for cid in f[f["severity"].astype(str) != "info"]["conn_id"].dropna().unique()]
    for cid in affected:
        c = conns.loc[cid]
        con.print(f"\n[bold]connection {cid}[/bold] {c.client_ip}:{c.client_port} → {c.server_ip}:{c.server_port}"
                  f"   [dim]tcp.stream eq {cid}[/dim]")
        events: list[tuple[Any, str]] = []
        for r in cap.requests[cap.requests["conn_id"] == cid].itertuples():
            ua = "" if pd.isna(r.user_agent) else f" [{r.user_agent}]"
            if not pd.isna(r.request_start):
                events.append((r.request_start, f"→ request {r.index}: {r.method} {r.uri}{ua} (frame {r.first_frame})"))
            if not pd.isna(r.response_start):
                events.append((r.response_start, f"← {r.status} {'' if pd.isna(r.reason) else r.reason} "
                                                  f"for request {r.index} (ttfb {_s(r.ttfb_s)} s)"))
        if not pd.isna(c.last_payload_ts):
            events.append((c.last_payload_ts, f"  last byte on the socket (frame {c.last_payload_frame}, "
                                              f"{c.last_payload_by}) — silence begins"))
        if not pd.isna(c.close_ts):
            events.append((c.close_ts, f"✖ {c.closed_by} sends {c.close_kind} (frame {c.close_frame}) after "
                                       f"{_s(c.idle_before_close_s)} s of silence"))
        for side in ("client", "server"):
            for kind in ("fin", "rst"):
                fr = getattr(c, f"{side}_{kind}_frame")
                if not pd.isna(fr) and fr != c.close_frame:
                    events.append((getattr(c, f"{side}_{kind}_ts"), f"  {side} {kind.upper()} (frame {fr})"))
        if not pd.isna(c.data_after_close_frame):
            events.append((c.data_after_close_ts, f"  {c.data_after_close_by} sends {c.data_after_close_bytes} bytes "
                                                  f"after the close (frame {c.data_after_close_frame})"))
        if aligned is not None:
            events.extend(_log_events(aligned, int(cid), c))
        events.sort(key=lambda e: e[0])
        for ts, text in events:
            con.print(f"  {_t(ts)}  {escape(text)}", soft_wrap=text.startswith("📝"))
        for r in f[f["conn_id"] == cid].itertuples():
            if str(r.severity) != "info":
                con.print(f"  [dim]{r.kind}: {escape(str(r.display_filter))}[/dim]")
    con.print("\n[dim]Paste a filter into Wireshark to see exactly the packets behind a finding; "
              "`--json` gives every figure.[/dim]")


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


def _header_rule(spec: str) -> tuple[str, str, str, str]:
    try:
        target, header = spec.split(":", 1)
        method, prefix = target.strip().split(None, 1)
        name, value = header.split(":", 1)
    except ValueError:
        raise click.BadParameter(f"expected 'METHOD PATH-PREFIX: Header: value', got {spec!r}", param_hint="--header")
    return method.strip(), prefix.strip(), name.strip().lower(), value.strip().lower()


_HEADER_COLUMNS = {"connection": ("req_connection", "resp_connection"), "keep-alive": ("resp_keep_alive",),
                   "host": ("host",), "user-agent": ("user_agent",),
                   "content-type": ("req_content_type", "resp_content_type")}


def _matches(reqs: pd.DataFrame, method: str, prefix: str) -> pd.Series:
    return (reqs["method"].astype("string").str.upper() == method.upper()) & \
        reqs["uri"].astype("string").str.startswith(prefix).fillna(False)


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
@click.option("--separate", nargs=2, multiple=True, metavar="'METHOD PREFIX' 'METHOD PREFIX'",
              help="Fail if requests of both kinds ever share a connection. Repeatable.")
@JSON
def check(capture: str, no_kinds: tuple[str, ...], max_idle_close: float | None, headers: tuple[str, ...],
          separate: tuple[tuple[str, str], ...], as_json: bool) -> None:
    """Assert properties of a capture for CI: exit 0 when every rule holds, 1 when one fails.

    The incident's validation plan is three rules: GET /files answered with Connection: close,
    POST /exec never on the socket of GET /files, and no client-side close while a request waits.

    \b
    Example:
      sockscope check after.pcap --no client_idle_timeout \\
          --header 'GET /files: Connection: close' --separate 'GET /files' 'POST /exec'
    """
    rules = [_header_rule(h) for h in headers]
    for h in rules:
        if h[2] not in _HEADER_COLUMNS:
            raise click.BadParameter(f"header {h[2]!r} is not recorded; use one of {', '.join(_HEADER_COLUMNS)}",
                                     param_hint="--header")
    cap = _load(capture)
    results: list[dict[str, Any]] = []
    f = cap.findings
    for kind in no_kinds:
        hits = f[f["kind"].astype(str) == kind]
        results.append({"rule": f"--no {kind}", "ok": hits.empty,
                        "reason": "none found" if hits.empty else
                        f"{len(hits)} {kind} finding(s) on connection(s) {sorted(set(hits['conn_id'].dropna().astype(int)))}: "
                        f"{hits.iloc[0]['summary']}"})
    if max_idle_close is not None:
        closes = close_attribution(cap.connections, cap.requests)
        bad = [ci for ci in closes.values() if ci.outstanding and ci.idle_s is not None and ci.idle_s <= max_idle_close]
        results.append({"rule": f"--max-idle-close {max_idle_close:g}", "ok": not bad,
                        "reason": "no waiting request was cut off by a short idle close" if not bad else
                        f"{len(bad)} connection(s) closed by the {bad[0].closer} after {bad[0].idle_s:.3f} s with a "
                        f"request outstanding (connection {bad[0].conn_id})"})
    reqs = cap.requests
    for spec, (method, prefix, name, value) in zip(headers, rules):
        sel = reqs[_matches(reqs, method, prefix)]
        missing = []
        for r in sel.itertuples():
            vals = [getattr(r, col) for col in _HEADER_COLUMNS[name]]
            if not any((not pd.isna(v)) and value in str(v).lower() for v in vals):
                missing.append(r)
        ok = not missing and len(sel) > 0
        reason = (f"all {len(sel)} matching request(s) carry it" if ok else
                  f"no request matches {method} {prefix}" if not len(sel) else
                  f"{len(missing)} of {len(sel)} lack it (first: connection {missing[0].conn_id} request "
                  f"{missing[0].index}, frame {missing[0].first_frame})")
        results.append({"rule": f"--header '{spec}'", "ok": ok, "reason": reason})
    for a, b in separate:
        ma, pa = a.split(None, 1) if " " in a else (a, "/")
        mb, pb = b.split(None, 1) if " " in b else (b, "/")
        ca = set(reqs[_matches(reqs, ma, pa)]["conn_id"])
        cb = set(reqs[_matches(reqs, mb, pb)]["conn_id"])
        both = sorted(ca & cb)
        conns = cap.connections.set_index("conn_id")
        results.append({"rule": f"--separate '{a}' '{b}'", "ok": not both,
                        "reason": f"never on one connection ({len(ca)} vs {len(cb)} connections)" if not both else
                        f"{len(both)} connection(s) carry both, e.g. connection {both[0]} (client port "
                        f"{conns.loc[both[0]].client_port})"})
    if not results:
        raise click.UsageError("no rule given: use --no, --max-idle-close, --header or --separate")
    failed = [r for r in results if not r["ok"]]
    if as_json:
        json.dump({"ok": not failed, "capture": capture, "rules": results}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for r in results:
            click.echo(f"{'PASS' if r['ok'] else 'FAIL'}  {r['rule']}: {r['reason']}")
    sys.exit(EXIT_FAIL if failed else 0)


def _profile(cap) -> dict[str, Any]:
    f = cap.findings
    reqs = cap.requests.copy()
    reqs["type"] = [request_type(m, u) for m, u in zip(reqs["method"], reqs["uri"])]
    per_conn = reqs.groupby("conn_id")["index"].count()
    reqs["reused"] = reqs["conn_id"].map(per_conn) > 1
    types = {}
    for t, grp in reqs.groupby("type"):
        types[t] = {
            "requests": int(len(grp)), "connections": int(grp["conn_id"].nunique()),
            "on_reused_sockets": int(grp["reused"].sum()),
            "killed": int((grp["outcome"].astype(str) != "complete").sum()),
            "resp_connection_close": int(grp["resp_connection"].astype("string").str.lower()
                                         .str.contains("close").fillna(False).sum()),
        }
    closes = close_attribution(cap.connections, cap.requests)
    timers = [{"side": k.side, "outstanding": k.outstanding, "timeout_s": k.timer_s,
               "measured_s": k.timeout_s, "count": k.count}
              for k in infer_timeouts(closes.values())]
    return {"connections": int(len(cap.connections)), "requests": int(len(reqs)),
            "findings": {str(k): int(v) for k, v in f["kind"].astype(str).value_counts().items()},
            "request_types": types, "timers": timers}


@main.command()
@click.argument("before", type=click.Path(allow_dash=False, dir_okay=False))
@click.argument("after", type=click.Path(allow_dash=False, dir_okay=False))
@JSON
def compare(before: str, after: str, as_json: bool) -> None:
    """Before vs after a fix: findings, reuse, killed requests, timers, headers per request type.

    Verdict: "fixed" when the error findings of BEFORE are gone in AFTER, "not fixed" when they
    remain, "changed" otherwise.

    \b
    Example:
      sockscope compare captures/crafted/incident-before-fix.pcap captures/crafted/incident-after-fix.pcap
    """
    b, a = _profile(_load(before)), _profile(_load(after))
    errors = ("client_idle_timeout", "server_abort", "client_abort", "stale_reuse", "response_after_close")
    eb = {k: v for k, v in b["findings"].items() if k in errors}
    ea = {k: v for k, v in a["findings"].items() if k in errors}
    if eb and not ea:
        verdict = "fixed"
        reason = "gone after: " + ", ".join(f"{v} {k}" for k, v in eb.items())
    elif ea and any(k in eb for k in ea):
        verdict = "not fixed"
        reason = "still there: " + ", ".join(f"{v} {k} (before {eb.get(k, 0)})" for k, v in ea.items())
    elif ea:
        verdict = "changed"
        reason = "new problems after: " + ", ".join(f"{v} {k}" for k, v in ea.items())
    else:
        verdict = "changed" if b != a else "unchanged"
        reason = "no error findings in either capture"
    if as_json:
        json.dump({"verdict": verdict, "reason": reason, "before": b, "after": a}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
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
        t.add_row(typ, *[f"{x.get(k, 0)} → {y.get(k, 0)}" for k in
                         ("requests", "connections", "on_reused_sockets", "killed", "resp_connection_close")])
    con.print(t)
    for name, p in (("before", b), ("after", a)):
        for k in p["timers"]:
            con.print(f"{name}: {k['side']}-side timer {k['timeout_s']:.3f} s "
                      f"({'request outstanding' if k['outstanding'] else 'idle keep-alive'}, {k['count']} close(s))")
    color = {"fixed": "green", "not fixed": "red"}.get(verdict, "yellow")
    con.print(f"\n[bold {color}]{verdict}[/bold {color}]: {reason}")


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
