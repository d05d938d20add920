"""Read the Zeek reference set in ../shared/conformance/zeek (never copied into the repo)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ZEEK_DIR = Path(os.environ.get(
    "SOCKSCOPE_ZEEK_CONFORMANCE", Path(__file__).resolve().parents[2] / "shared" / "conformance" / "zeek"))


def require_zeek_dir() -> Path:
    if not ZEEK_DIR.is_dir():
        pytest.skip(f"Zeek conformance set not found at {ZEEK_DIR} (set SOCKSCOPE_ZEEK_CONFORMANCE)")
    return ZEEK_DIR


def read_log(path: Path) -> list[dict[str, str]]:
    """Rows of a Zeek ASCII log or a zeek-cut file, as dicts of strings."""
    lines = path.read_text().splitlines()
    lines = [ln for ln in lines if not ln.startswith("### ")]
    fields: list[str] | None = None
    rows = []
    for ln in lines:
        if ln.startswith("#fields"):
            fields = ln.split("\t")[1:]
            continue
        if ln.startswith("#") or not ln.strip():
            continue
        if fields is None:
            fields = ln.split("\t")
            continue
        rows.append(dict(zip(fields, ln.split("\t"))))
    return rows


def cases() -> list[tuple[str, Path]]:
    if not ZEEK_DIR.is_dir():
        return []
    return [(p.name, p) for p in sorted(ZEEK_DIR.iterdir()) if (p / "case.json").exists()]


def case_info(case_dir: Path) -> dict:
    return json.loads((case_dir / "case.json").read_text())


def traces(case_dir: Path) -> list[Path]:
    return [case_dir / t for t in case_info(case_dir)["traces"]]


def report_match_rate(what: str, all_cases, compare_case, capsys) -> float:
    """Print per-case and overall agreement with Zeek; return the overall rate."""
    require_zeek_dir()
    ok_all = tot_all = 0
    lines = []
    for name, case_dir in all_cases:
        ok, total, _ = compare_case(case_dir)
        o, t = sum(ok.values()), sum(total.values())
        ok_all += o
        tot_all += t
        lines.append(f"  {name:34s} {o:4d}/{t:<4d}")
    with capsys.disabled():
        print(f"\nZeek {what} agreement: {ok_all}/{tot_all} field comparisons ({ok_all / tot_all:.1%})")
        print("\n".join(lines))
    return ok_all / tot_all


def differing_fields(compare_case, case_dir: Path) -> tuple[set[str], list[str]]:
    """Fields of one case where some row disagrees with Zeek, and the notes saying where."""
    ok, total, notes = compare_case(case_dir)
    return {f for f in total if ok.get(f, 0) != total[f]}, notes
