"""Coverage-guided fuzzing in the suite: the targets of ``tests/fuzz/targets.py`` mean what they
say, every input a long run ever broke stays fixed, and a short run of ``bench/fuzzcov.py``
(the harness of ``make fuzz``) finds nothing and grows its corpus.

The short run takes at most ``SOCKSCOPE_FUZZCOV_SECONDS`` (40 s) on the normal build (the
compiled modules are fuzzed without their coverage there; ``make fuzz`` builds them with it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.fuzz import mutators as M
from tests.fuzz import targets as T

REPO = Path(__file__).resolve().parents[1]
REGRESSIONS = REPO / "tests/fuzz/regressions"
SECONDS = int(os.environ.get("SOCKSCOPE_FUZZCOV_SECONDS", "40"))


def _regressions() -> list[Path]:
    return sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file())


@pytest.mark.parametrize("path", _regressions(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_regression_inputs_stay_fixed(path: Path) -> None:
    """Each minimized input a fuzz run broke, through the target that broke on it.

    Inputs named ``hang-*`` once looped forever inside compiled code, where no signal can
    interrupt this process: they run in a child under a time limit instead.
    """
    if path.name.startswith("hang-"):
        cmd = [sys.executable, str(REPO / "bench/fuzzcov.py"), "--replay", str(path), "--target", path.parent.name]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{path.name} still hangs (no answer in 60 s)")
        assert done.returncode == 0, done.stdout + done.stderr
        return
    T.TARGETS[path.parent.name](path.read_bytes())


def test_regressions_exist_for_every_directory() -> None:
    assert _regressions(), "tests/fuzz/regressions holds no inputs"
    assert {p.parent.name for p in _regressions()} <= set(T.TARGETS)


def test_segment_programs_are_conversations() -> None:
    seeds = T.segment_seeds()
    got = {k: M.analyse_core(T.segments_capture(v)) for k, v in seeds.items()}
    assert all(r["outcome"] == "ok" and not r["warnings"] for r in got.values()), got
    assert (got["get-ok-close"]["connections"], got["get-ok-close"]["requests"]) == (1, 1)
    assert got["two-flows"]["connections"] == 2
    assert got["refused"]["requests"] == 0
    assert got["chunked-v6"]["requests"] == 1


def test_any_bytes_are_a_readable_segment_program() -> None:
    """Every byte string is a well-formed capture: the fuzzer's effort goes to TCP, not framing."""
    rng = random.Random(7)
    for _ in range(300):
        data = rng.randbytes(rng.randrange(0, 400))
        res = M.analyse_core(T.segments_capture(data))
        assert res["outcome"] == "ok" and res["warnings"] == [], res
        assert res["packets"] == res["tcp_packets"]


def test_http_program_round_trip() -> None:
    ev = [(0, b"GET / HTTP/1.1\r\n\r\n"), (3, 17), (1, b"HTTP/1.1 200 OK\r\n\r\n"), (2, 0)]
    assert T.http_events(T.encode_http(ev)) == ev


def test_plain_python_framer_is_the_source_not_the_build() -> None:
    from sockscope.http import session

    pure = T.pure_session()
    assert pure.__file__.endswith("session.py")
    assert pure.HttpSession is not session.HttpSession
    assert not getattr(pure.cython, "compiled", False)


def test_http_target_catches_a_framer_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    real = T.pure_session()

    class Lossy(real.HttpSession):
        def finish(self):
            return super().finish()[:-1]       # drops the last exchange

    monkeypatch.setattr(T, "pure_session", lambda: types.SimpleNamespace(HttpSession=Lossy))
    with pytest.raises(T.Invariant, match="exchanges"):
        T.http(T.http_seeds()["get-ok"])


def test_capture_target_raises_on_a_foreign_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes):
        raise KeyError("boom")

    monkeypatch.setattr(M, "_core", broken)
    with pytest.raises(T.Invariant, match="KeyError"):
        T.capture(T.capture_seeds()["incident-before-fix.pcap"])


def test_every_seed_passes_its_target() -> None:
    for name, fn in T.TARGETS.items():
        if name == "load":
            continue        # the short run below covers it; the full pipeline is slow per seed
        for key, data in T.seeds(name).items():
            fn(data[:T.MAX_LEN[name]])


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (no binary wheel for this Python/platform): "
                           "the coverage-guided run cannot start")
def test_short_coverage_guided_run(tmp_path: Path) -> None:
    out = tmp_path / "fz"
    proc = subprocess.run([sys.executable, str(REPO / "bench/fuzzcov.py"), "--inputs", "40000",
                           "--seconds", str(SECONDS), "--no-build", "--no-minimize", "--jobs", "2",
                           "--out", str(out), "--report-every", "1000"],
                          cwd=REPO, capture_output=True, text=True, timeout=SECONDS + 120)
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 0 and summary["unique_findings"] == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    res = summary["targets"]
    assert set(res) == set(T.TARGETS)
    for name, r in res.items():
        assert r["inputs"] > 0 and r["cov"] > 0, (name, r)
        assert r["max_rss_mb"] < 2048, (name, r)
    # coverage guidance at work: inputs reaching new code were kept beyond the seeds
    seeds = {name: len(T.seeds(name)) for name in ("http", "segments")}
    grown = [name for name, n in seeds.items() if res[name]["corpus"] > 0]
    assert grown, (seeds, res)
    assert summary["inputs"] == sum(r["inputs"] for r in res.values())
