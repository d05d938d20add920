"""Helpers for the end-to-end CLI tests: run the real ``sockscope`` executable, parse its
``--json`` output, and compare rows with the truth files of captures/crafted and captures/lab.

Each ``compare_*`` function returns a list of human-readable mismatches (empty when the CLI
agrees with the truth), each naming the connection / request and the field, so a failing
test says exactly what differs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CRAFTED = ROOT / "captures" / "crafted"
LAB = ROOT / "captures" / "lab"

# The console script installed next to the interpreter running the tests (the project venv).
_BIN = Path(sys.executable).parent
SOCKSCOPE = str(_BIN / "sockscope") if (_BIN / "sockscope").exists() else "sockscope"

MICRO = 1e-6  # idle_before_close_s must match the crafted truth to the microsecond
TIMEOUT_TOL = 0.01  # inferred_timeout_s tolerance


# ---------------------------------------------------------------------------------------
# discovery


def crafted_captures() -> list[Path]:
    """Every crafted capture that has a truth file (pcap, pcapng, gzip)."""
    out = []
    for p in sorted(CRAFTED.glob("*.pcap*")):
        if p.name.endswith(".truth.json"):
            continue
        if (CRAFTED / f"{p.name}.truth.json").exists():
            out.append(p)
    return out


def crafted_truth(capture: Path) -> dict[str, Any]:
    return json.loads((CRAFTED / f"{capture.name}.truth.json").read_text())


def lab_scenarios() -> list[Path]:
    """Lab scenario folders holding both a capture and its truth file."""
    if not LAB.is_dir():
        return []
    return sorted(d for d in LAB.iterdir()
                  if d.is_dir() and (d / "capture.pcap").is_file() and (d / "truth.json").is_file())


def lab_truth(scenario: Path) -> dict[str, Any]:
    return json.loads((scenario / "truth.json").read_text())


def lab_cases() -> list[tuple[str, Path, tuple[str, ...]]]:
    """(id, scenario folder, extra CLI args) for every lab capture.

    A TLS scenario (it ships an sslkeys.log) runs twice: as a user without the keys would
    (native engine: connections, closes, idle and findings are visible, HTTP is not) and with
    the keys (``--engine tshark --tls-keylog``), where the requests the logs name can be seen.
    """
    cases = []
    for d in lab_scenarios():
        keylog = d / "sslkeys.log"
        if keylog.is_file():
            cases.append((f"{d.name}[no-keys]", d, ()))
            cases.append((f"{d.name}[keylog]", d, ("--engine", "tshark", "--tls-keylog", str(keylog))))
        else:
            cases.append((d.name, d, ()))
    return cases


# ---------------------------------------------------------------------------------------
# running the CLI


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    env["COLUMNS"] = "200"
    return subprocess.run([SOCKSCOPE, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


@lru_cache(maxsize=None)
def command_available(command: str) -> bool:
    return run_cli(command, "--help").returncode == 0


@lru_cache(maxsize=None)
def _json_rows(command: str, capture: str, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    proc = run_cli(command, "--json", *extra, capture)
    return proc.returncode, proc.stdout, proc.stderr


def json_rows(command: str, capture: Path | str, extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``sockscope COMMAND --json [EXTRA...] CAPTURE`` parsed; fails with stderr unless it exits 0."""
    rc, out, err = _json_rows(command, str(capture), tuple(extra))
    shown = " ".join((command, "--json", *extra, str(capture)))
    if rc != 0:
        raise AssertionError(f"sockscope {shown} exited {rc}; stderr:\n{err}")
    try:
        rows = json.loads(out)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"sockscope {shown}: not JSON ({exc}):\n{out[:500]}")
    assert isinstance(rows, list), f"sockscope {command} --json must print a JSON array"
    return rows


# ---------------------------------------------------------------------------------------
# comparison helpers


def _isnull(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def endpoint(row: dict[str, Any]) -> str:
    return f"{row['client_ip']}:{row['client_port']} -> {row['server_ip']}:{row['server_port']}"


def _cmp(diffs: list[str], where: str, field: str, got: Any, want: Any) -> None:
    if _isnull(got) and _isnull(want):
        return
    if got != want:
        diffs.append(f"{where}: {field} = {got!r}, truth {want!r}")


def _cmp_float(diffs: list[str], where: str, field: str, got: Any, want: Any, tol: float) -> None:
    if _isnull(want):
        if not _isnull(got):
            diffs.append(f"{where}: {field} = {got!r}, truth null")
        return
    if _isnull(got) or abs(float(got) - float(want)) >= tol:
        diffs.append(f"{where}: {field} = {got!r}, truth {want!r} (tolerance {tol:g})")


def conn_label(conn_id: Any, truth_conn: dict[str, Any] | None = None) -> str:
    return f"conn {conn_id}" + (f" ({endpoint(truth_conn)})" if truth_conn else "")


# ---- crafted truth ---------------------------------------------------------------------

IDENTITY_FIELDS = ("conn_id", "client_ip", "client_port", "server_ip", "server_port", "roles_from")
CLOSE_FIELDS = ("closed_by", "close_kind", "close_frame")
BYTE_FIELDS = ("client_bytes", "server_bytes", "missed_bytes")
ZEEK_FIELDS = ("state", "history")


def compare_identity(rows: list[dict], truth: dict) -> list[str]:
    """The same connections in the same order (conn_id, endpoints, roles_from)."""
    want = [tuple(c[f] for f in IDENTITY_FIELDS) for c in truth["connections"]]
    got = [tuple(r.get(f) for f in IDENTITY_FIELDS) for r in rows]
    if got == want:
        return []
    return [f"connections (conn_id, client ip/port, server ip/port, roles_from) in order:\n"
            f"  sockscope {got}\n  truth     {want}"]


def _paired(rows: list[dict], truth: dict) -> list[tuple[dict, dict]]:
    by_id = {r.get("conn_id"): r for r in rows}
    pairs = []
    for c in truth["connections"]:
        r = by_id.get(c["conn_id"])
        if r is None:
            raise AssertionError(f"sockscope has no connection {c['conn_id']} ({endpoint(c)})")
        pairs.append((r, c))
    return pairs


def compare_fields(rows: list[dict], truth: dict, fields: tuple[str, ...], *,
                   skip_null_truth: bool = False) -> list[str]:
    diffs: list[str] = []
    for r, c in _paired(rows, truth):
        where = conn_label(c["conn_id"], c)
        for f in fields:
            if skip_null_truth and c.get(f) is None:
                continue
            _cmp(diffs, where, f, r.get(f), c.get(f))
    return diffs


def compare_idle(rows: list[dict], truth: dict, tol: float = MICRO) -> list[str]:
    diffs: list[str] = []
    for r, c in _paired(rows, truth):
        _cmp_float(diffs, conn_label(c["conn_id"], c), "idle_before_close_s",
                   r.get("idle_before_close_s"), c.get("idle_before_close_s"), tol)
    return diffs


REQUEST_FIELDS = ("method", "uri", "user_agent", "status", "outcome")


def _paired_requests(diffs: list[str], where: str, req_rows: list[dict], conn_id, want: list[dict]):
    """Our requests on `conn_id` paired with the truth's, in index order; [] (and a diff) when
    the two do not have the same indexes."""
    mine = sorted((r for r in req_rows if r.get("conn_id") == conn_id), key=lambda r: r.get("index") or 0)
    if [r.get("index") for r in mine] != [q["index"] for q in want]:
        diffs.append(f"{where}: request indexes {[r.get('index') for r in mine]}, "
                     f"truth {[q['index'] for q in want]}")
        return []
    return list(zip(mine, want))


def compare_requests(req_rows: list[dict], truth: dict) -> list[str]:
    """Per connection: the requests in order with method/uri/user_agent/status/outcome, and
    ended_by where the truth gives it."""
    diffs: list[str] = []
    known = {c["conn_id"] for c in truth["connections"]}
    stray = sorted({r.get("conn_id") for r in req_rows} - known, key=str)
    if stray:
        diffs.append(f"requests on connections the truth does not have: {stray}")
    for c in truth["connections"]:
        where = conn_label(c["conn_id"], c)
        for r, q in _paired_requests(diffs, where, req_rows, c["conn_id"], c.get("requests") or []):
            w = f"{where} request {q['index']}"
            for f in REQUEST_FIELDS:
                _cmp(diffs, w, f, r.get(f), q.get(f))
            if q.get("ended_by") is not None:
                _cmp(diffs, w, "ended_by", r.get("ended_by"), q["ended_by"])
    return diffs


# The diagnosis vocabulary the truth files are written in (DESIGN.md, "Diagnosis vocabulary").
TRUTH_VOCABULARY = frozenset({
    "client_idle_timeout", "server_idle_close", "stale_reuse", "response_after_close",
    "server_abort", "client_abort", "connection_reuse", "refused", "syn_unanswered", "middlebox_rst",
    "silent_drop", "zero_window_stall", "dead_peer", "client_idle_close",
})


def judged(findings: list[dict]) -> list[dict]:
    """The findings a truth file can judge: every kind of its vocabulary, and any finding
    above severity info. An info-only kind the truth files do not know (an explanatory note
    added to the engine later, e.g. a capture-level hint) is neither required nor forbidden
    by them; test_findings_outside_the_truth_vocabulary_are_info_only pins that it stays info."""
    return [f for f in findings if f.get("kind") in TRUTH_VOCABULARY or f.get("severity") != "info"]


def finding_pairs(findings: list[dict]) -> set[tuple[str, Any]]:
    return {(f.get("kind"), f.get("conn_id")) for f in judged(findings)}


def compare_findings(findings: list[dict], truth: dict) -> list[str]:
    got = finding_pairs(findings)
    want = {(f["kind"], f["conn_id"]) for f in truth["findings"]}
    if got == want:
        return []
    return [f"findings (kind, conn_id): missing {sorted(want - got, key=str)}, "
            f"unexpected {sorted(got - want, key=str)}"]


def compare_inferred_timeout(findings: list[dict], truth: dict, tol: float = TIMEOUT_TOL) -> list[str]:
    """inferred_timeout_s in the evidence of every client_idle_timeout finding."""
    want = truth.get("inferred_timeout_s")
    diffs: list[str] = []
    timeouts = [f for f in findings if f.get("kind") == "client_idle_timeout"]
    if want is None:
        return diffs
    if not timeouts:
        return [f"no client_idle_timeout finding to carry inferred_timeout_s {want}"]
    for f in timeouts:
        ev = f.get("evidence") or {}
        got = ev.get("inferred_timeout_s")
        _cmp_float(diffs, f"client_idle_timeout on conn {f.get('conn_id')}", "evidence.inferred_timeout_s",
                   got, want, tol)
    return diffs


# ---- lab truth -------------------------------------------------------------------------


def lab_match(rows: list[dict], truth: dict) -> list[tuple[dict | None, dict]]:
    """Pair each lab truth connection with sockscope's row by client/server ip:port."""
    by_ep = {(r.get("client_ip"), r.get("client_port"), r.get("server_ip"), r.get("server_port")): r
             for r in rows}
    return [(by_ep.get((c["client_ip"], c["client_port"], c["server_ip"], c["server_port"])), c)
            for c in truth["connections"]]


# Lab truth is derived from the client's and server's logs, not from packets. Its idle is the
# client's clock from `request_start` (logged before the socket write) to the close; on the
# loaded recording machine the request reaches the wire up to ~15 ms later, so the log-based
# idle runs long by that much (captures/lab/README.md says "about ±10 ms"; lab/verify.py, the
# lab's own cross-check against tshark, allows 0.05 s). The wire is what sockscope measures.
LAB_IDLE_TOL = 0.05
# The client timer that fired is given in ms; timers land 1-15 ms late (captures/lab/README.md).
LAB_TIMEOUT_TOL = 0.02


def lab_compare_connections(rows: list[dict], truth: dict) -> list[str]:
    """Exactly the truth's connections (by client/server ip:port), and who closed them."""
    diffs: list[str] = []
    want = {(c["client_ip"], c["client_port"], c["server_ip"], c["server_port"]) for c in truth["connections"]}
    got = {(r.get("client_ip"), r.get("client_port"), r.get("server_ip"), r.get("server_port")) for r in rows}
    if want != got:
        diffs.append(f"connections: missing {sorted(want - got)}, unexpected {sorted(got - want)}")
    n = (truth.get("summary") or {}).get("connections")
    if n is not None and len(rows) != n:
        diffs.append(f"{len(rows)} connections, truth summary says {n}")
    return diffs


def lab_compare_close(rows: list[dict], truth: dict) -> list[str]:
    diffs: list[str] = []
    for r, c in lab_match(rows, truth):
        if r is None:
            continue  # reported by lab_compare_connections
        where = f"client port {c['client_port']} (conn {r.get('conn_id')})"
        if c.get("closer") is None:
            continue
        if c.get("close_race"):
            # Connection: close -- both FINs within ~1 ms, either may be first on the wire;
            # the truth credits the server but flags the race, so either side is right.
            if r.get("closed_by") not in ("client", "server"):
                diffs.append(f"{where}: closed_by = {r.get('closed_by')!r}, truth: a FIN race, client or server")
        else:
            _cmp(diffs, where, "closed_by", r.get("closed_by"), c["closer"])
    return diffs


def lab_compare_idle(rows: list[dict], truth: dict, tol: float = LAB_IDLE_TOL) -> list[str]:
    diffs: list[str] = []
    for r, c in lab_match(rows, truth):
        if r is None or c.get("idle_before_close_s") is None:
            continue
        _cmp_float(diffs, f"client port {c['client_port']} (conn {r.get('conn_id')})", "idle_before_close_s",
                   r.get("idle_before_close_s"), c["idle_before_close_s"], tol)
    return diffs


def lab_compare_requests(rows: list[dict], req_rows: list[dict], truth: dict) -> list[str]:
    """Requests per connection in order: method/uri/user_agent always; a request the client saw
    complete is complete with the same status; one that failed on the client (`error`) is not
    complete on the wire, and has no status unless the server wrote a late response."""
    diffs: list[str] = []
    for r, c in lab_match(rows, truth):
        if r is None:
            continue
        where = f"client port {c['client_port']} (conn {r.get('conn_id')})"
        for m, q in _paired_requests(diffs, where, req_rows, r.get("conn_id"), c.get("requests") or []):
            w = f"{where} request {q['index']}"
            for f in ("method", "uri", "user_agent"):
                _cmp(diffs, w, f, m.get(f), q.get(f))
            if q["outcome"] == "complete":
                _cmp(diffs, w, "outcome", m.get("outcome"), "complete")
                _cmp(diffs, w, "status", m.get("status"), q.get("status"))
            elif q["outcome"] == "error":
                allowed = ("no_response", "partial_response") if c.get("late_response_written") \
                    else ("no_response",)
                if m.get("outcome") not in allowed:
                    diffs.append(f"{w}: outcome = {m.get('outcome')!r}, the client saw an error "
                                 f"({q.get('error_code')}); want one of {allowed}")
                if not c.get("late_response_written"):
                    _cmp(diffs, w, "status", m.get("status"), None)
    return diffs


def lab_compare_findings(rows: list[dict], findings: list[dict], truth: dict) -> list[str]:
    """Per connection: every expected kind is reported; nothing beyond expected + informational;
    no finding on a connection the truth does not know."""
    diffs: list[str] = []
    matched = {}
    for r, c in lab_match(rows, truth):
        if r is not None:
            matched[r.get("conn_id")] = c
    findings = judged(findings)
    for conn_id, c in matched.items():
        got = {f.get("kind") for f in findings if f.get("conn_id") == conn_id}
        expected = set(c.get("expected_finding_kinds") or [])
        allowed = expected | set(c.get("informational_finding_kinds") or [])
        where = f"client port {c['client_port']} (conn {conn_id})"
        if expected - got:
            diffs.append(f"{where}: missing findings {sorted(expected - got)} (got {sorted(got)})")
        if got - allowed:
            diffs.append(f"{where}: unexpected findings {sorted(got - allowed)} (truth allows {sorted(allowed)})")
    stray = [(f.get("kind"), f.get("conn_id")) for f in findings if f.get("conn_id") not in matched]
    if stray:
        diffs.append(f"findings on no truth connection: {stray}")
    return diffs


def lab_compare_inferred_timeout(findings: list[dict], truth: dict, tol: float = LAB_TIMEOUT_TOL) -> list[str]:
    fired = (truth.get("timeout_configured_ms") or {}).get("fired")
    if fired is None:
        return []
    return compare_inferred_timeout(findings, {"inferred_timeout_s": fired / 1000}, tol)
