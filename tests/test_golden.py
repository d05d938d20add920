"""Golden ``--json`` outputs: the published CLI contract, pinned byte for byte (issue #22, step 0).

For a few captures with findings (crafted and lab, one and two capture points) the stdout of
``sockscope <command> --json <capture...>`` is stored in tests/golden/ as pretty, key-sorted
JSON, and every run must reproduce it exactly: a refactor that claims to change nothing
proves it here. A deliberate change of output is re-recorded with

    python -m pytest tests/test_golden.py --update-golden

which rewrites the files and reports each case as skipped ("updated ..."), so an update never
passes as a green run; review the diff of tests/golden/ before committing it.

Normalization (the same when recording and when comparing): the captures are passed by
absolute path and the CLI echoes them (``capture``, ``points``, ``absent_from``, finding
summaries...), so the repository's absolute path is replaced by ``<ROOT>``. Nothing else is
touched: the outputs hold no wall-clock time, run duration, version or host name (all
timestamps are the packets' own, printed in UTC; checked under another TZ and locale).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest

from e2e_helpers import ROOT, run_cli

GOLDEN = Path(__file__).resolve().parent / "golden"
ROOT_MARK = "<ROOT>"

COMMANDS = ("summary", "requests", "diagnose")

# one capture point each (paths relative to ROOT)
SINGLE = (
    "captures/crafted/mixed.pcap",
    "captures/crafted/crossing-fin.pcap",
    "captures/crafted/stalls.pcap",
    "captures/crafted/rst-vs-fin.pcap",
    "captures/lab/keepalive-race/client.pcap",
    "captures/lab/middlebox-rst/client.pcap",
)
# two capture points of one incident (client side, server side): diagnose matches them
TWO_POINT = (
    (("captures/lab/middlebox-rst/client.pcap", "captures/lab/middlebox-rst/server.pcap"), "diagnose"),
)

CASES: tuple[tuple[tuple[str, ...], str], ...] = tuple(
    ((cap,), cmd) for cap in SINGLE for cmd in COMMANDS) + TWO_POINT


def golden_name(captures: tuple[str, ...], command: str) -> str:
    """``<capture-dir>_<capture-stem>.<command>.json``; several captures (of one folder)
    join their stems with ``+``: middlebox-rst_client+server.diagnose.json."""
    first = Path(captures[0])
    stems = "+".join(Path(c).stem for c in captures)
    return f"{first.parent.name}_{stems}.{command}.json"


def _normalize(obj: Any) -> Any:
    """The CLI output with the machine-specific repository path replaced (keys and values)."""
    root = str(ROOT)
    if isinstance(obj, str):
        return obj.replace(root, ROOT_MARK)
    if isinstance(obj, list):
        return [_normalize(v) for v in obj]
    if isinstance(obj, dict):
        return {_normalize(k): _normalize(v) for k, v in obj.items()}
    return obj


def render(captures: tuple[str, ...], command: str) -> str:
    """What the golden file of this case must hold: the CLI's JSON, normalized, pretty and sorted."""
    args = (command, "--json", *(str(ROOT / c) for c in captures))
    proc = run_cli(*args)
    shown = "sockscope " + " ".join(args)
    assert proc.returncode == 0, f"{shown} exited {proc.returncode}; stderr:\n{proc.stderr}"
    try:
        obj = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{shown}: stdout is not one JSON document ({exc}):\n{proc.stdout[:500]}")
    assert isinstance(obj, list), f"{shown}: --json must print a JSON array, got {type(obj).__name__}"
    return json.dumps(_normalize(obj), indent=1, sort_keys=True) + "\n"


def _short_diff(want: str, got: str, name: str, limit: int = 60) -> str:
    lines = list(difflib.unified_diff(want.splitlines(), got.splitlines(),
                                      f"golden/{name}", "cli output", lineterm="", n=2))
    more = f"\n... ({len(lines) - limit} more diff lines)" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


@pytest.mark.parametrize(("captures", "command"), CASES,
                         ids=[golden_name(c, cmd).removesuffix(".json") for c, cmd in CASES])
def test_golden_json(captures: tuple[str, ...], command: str, update_golden: bool) -> None:
    for c in captures:
        assert (ROOT / c).is_file(), f"capture {c} is missing"
    name = golden_name(captures, command)
    path = GOLDEN / name
    got = render(captures, command)
    if update_golden:
        old = path.read_text() if path.exists() else None
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got)
        pytest.skip(f"updated {path.relative_to(ROOT)}"
                    + (" (new)" if old is None else " (unchanged)" if old == got else " (changed)"))
    if not path.exists():
        pytest.fail(f"golden file {path.relative_to(ROOT)} is missing; record it with\n"
                    f"  python -m pytest tests/test_golden.py --update-golden -k '{name.removesuffix('.json')}'\n"
                    f"and review it before committing", pytrace=False)
    want = path.read_text()
    if got != want:
        pytest.fail(f"sockscope {command} --json {' '.join(captures)} differs from golden/{name} "
                    f"(a deliberate change: rerun with --update-golden and review):\n"
                    + _short_diff(want, got, name), pytrace=False)


def test_no_stale_goldens() -> None:
    """Every file in tests/golden/ is the golden of some case (none left behind by a rename)."""
    used = {golden_name(c, cmd) for c, cmd in CASES}
    present = {p.name for p in GOLDEN.iterdir()} if GOLDEN.is_dir() else set()
    stale = sorted(present - used)
    assert not stale, f"tests/golden/ holds files no case uses (delete them): {stale}"
