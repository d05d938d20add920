"""The CLI's contract, command by command: every output format against good input, a missing
file, a directory, garbage, an unknown option and a closed pipe. Exit codes mean one thing
and no case prints a traceback.

0 ok · 1 a check/crosscheck failed or compare says "not fixed" · 2 usage · 3 unreadable
capture · 4 internal error · 141 the reader closed stdout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "captures" / "crafted" / "incident-after-fix.pcap"
BEFORE = ROOT / "captures" / "crafted" / "incident-before-fix.pcap"
DIRECTORY = ROOT / "captures" / "lab" / "before-fix"       # a directory holding one capture
HAS_TSHARK = shutil.which("tshark") is not None

# command -> (arguments before the capture, arguments after it, formats it has, writes to stdout)
COMMANDS = {
    "summary": ([], [], ["--json", "--csv", "--jsonl", ""], True),
    "requests": ([], [], ["--json", "--csv", "--jsonl", ""], True),
    "diagnose": ([], [], ["--json", "--csv", "--jsonl", ""], True),
    "check": ([], ["--no", "client_idle_timeout"], ["--json", ""], True),
    "compare": ([str(BEFORE)], [], ["--json", ""], True),
    "watch": ([], [], ["--json", ""], True),
    "crosscheck": ([], [], ["--json", ""], True),
    "plot": ([], ["-o", "{tmp}/out.png"], [""], False),
    "export": ([], ["--format", "json", "--out", "{tmp}/export"], [""], True),
    "report": ([], ["-o", "{tmp}/report.html"], [""], False),
}


def _cases(tmp: Path) -> list[tuple[str, str, str, list[str], set[int]]]:
    garbage = tmp / "garbage.pcap"
    garbage.write_bytes(os.urandom(4096))
    out = []
    for cmd, (pre, post, formats, stdout) in COMMANDS.items():
        if cmd == "crosscheck" and not HAS_TSHARK:
            continue
        post = [a.replace("{tmp}", str(tmp)) for a in post]
        for fmt in formats:
            f = [fmt] if fmt else []
            ok = {0} if cmd != "crosscheck" else {0, 1}     # crosscheck: 1 = the engines disagree
            # the directory holds a before-fix recording: check's rule fails on it, and
            # compare (before-fix -> before-fix) says "not fixed"
            in_dir = {1} if cmd in ("check", "compare") else ok
            out += [
                (cmd, fmt, "ok", [cmd, *pre, str(GOOD), *post, *f], ok),
                (cmd, fmt, "missing file", [cmd, *pre, str(tmp / "nope.pcap"), *post, *f], {3}),
                (cmd, fmt, "directory", [cmd, *pre, str(DIRECTORY), *post, *f], in_dir),
                (cmd, fmt, "garbage", [cmd, *pre, str(garbage), *post, *f], {3}),
                (cmd, fmt, "unknown option", [cmd, *pre, str(GOOD), *post, *f, "--no-such-option"], {2}),
                # a capture with findings, so that every command has something to write
                (cmd, fmt, "closed pipe", [cmd, *pre, str(BEFORE), *post, *f], {141} if stdout else {0}),
            ]
    return out


def _run(case: tuple, tmp: Path) -> tuple[tuple, int, str]:
    cmd, fmt, what, args, _ = case
    exe = [sys.executable, "-c", "from sockscope.cli import entry; entry()", *args]
    if what == "closed pipe":
        # the reader is gone before the command writes a byte
        r, w = os.pipe()
        os.close(r)
        p = subprocess.run(exe, stdout=w, stderr=subprocess.PIPE, text=True, timeout=300, cwd=tmp)
        os.close(w)
        return case, p.returncode, p.stderr
    p = subprocess.run(exe, capture_output=True, text=True, timeout=300, cwd=tmp)
    return case, p.returncode, p.stderr


def test_every_command_every_format_every_kind_of_input(tmp_path):
    cases = _cases(tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: _run(c, tmp_path), cases))
    wrong = []
    for (cmd, fmt, what, args, want), code, err in results:
        if code not in want or "Traceback" in err:
            wrong.append(f"{cmd} {fmt or '(text)'} {what}: exit {code}, want {sorted(want)}; stderr: "
                         f"{err.strip().splitlines()[-1] if err.strip() else ''}")
    assert not wrong, "\n".join(wrong)
    assert len(results) >= 100


def test_internal_error_is_one_line_with_a_hint(monkeypatch, capsys):
    from sockscope import cli

    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "_load", boom)
    monkeypatch.setattr(sys, "argv", ["sockscope", "summary", str(GOOD)])
    monkeypatch.delenv("SOCKSCOPE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.entry()
    err = capsys.readouterr().err
    assert exc.value.code == 4
    assert "sockscope: internal error: ZeroDivisionError: division by zero" in err and "Traceback" not in err
    assert "SOCKSCOPE_DEBUG=1" in err


def test_python_dash_m_has_the_console_scripts_exit_codes(tmp_path):
    """``python -m sockscope`` is the same entry point: a reader that leaves early is exit
    141 without a traceback, a missing file exit 3 in one line."""
    r, w = os.pipe()
    os.close(r)
    p = subprocess.run([sys.executable, "-m", "sockscope", "diagnose", str(BEFORE)], stdout=w,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(w)
    assert p.returncode == 141 and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "sockscope", "summary", str(tmp_path / "none.pcap")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3 and len(p.stderr.strip().splitlines()) == 1
