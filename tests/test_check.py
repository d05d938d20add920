"""`check` and `compare`: the rules behind them live in sockscope.analysis and answer alike
from the CLI and from Python."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import sockscope
from sockscope.analysis.check import Header, NeverAfter, NoKind, RequestKind, RuleError, Separate
from sockscope.cli import main

CRAFTED = Path(__file__).resolve().parents[1] / "captures" / "crafted"
BEFORE = CRAFTED / "incident-before-fix.pcap"
AFTER_REUSE = CRAFTED / "incident-after-fix-reuse.pcap"
GET, POST = RequestKind.parse("GET /files"), RequestKind.parse("POST /exec")


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_never_after_is_ordered_where_separate_is_not():
    after = sockscope.load(AFTER_REUSE)
    # the POST's socket is reused by the next GET /files: fine for the ordered rule
    res = sockscope.check(after, [NeverAfter(GET, POST), Separate(GET, POST)])
    assert [r.ok for r in res.results] == [True, False] and not res.ok
    before = sockscope.check(BEFORE, [NeverAfter(GET, POST)])
    assert not before.ok and "3 POST /exec request(s)" in before.results[0].reason


def test_cli_never_after_passes_after_the_fix_and_fails_before():
    ok = _cli("check", AFTER_REUSE, "--never-after", "GET /files", "POST /exec", "--no", "client_idle_timeout",
              "--header", "GET /files: Connection: close")
    assert ok.exit_code == 0, ok.output
    assert ok.output.count("PASS") == 3
    bad = _cli("check", BEFORE, "--never-after", "GET /files", "POST /exec")
    assert bad.exit_code == 1 and "FAIL" in bad.output


def test_unknown_kind_and_rules_matching_nothing_are_usage_errors():
    with pytest.raises(RuleError):
        NoKind("nonsense_kind")
    assert _cli("check", AFTER_REUSE, "--no", "nonsense_kind").exit_code == 2
    empty = _cli("check", AFTER_REUSE, "--separate", "GET /nothere", "POST /exec")
    assert empty.exit_code == 2 and "EMPTY" in empty.output
    allowed = _cli("check", AFTER_REUSE, "--separate", "GET /nothere", "POST /exec", "--allow-empty", "--json")
    assert allowed.exit_code == 0
    assert json.loads(allowed.output)["rules"][0]["empty"] is True
    with pytest.raises(RuleError):
        Header.parse("GET /files: X-Nope: 1")


def test_compare_says_fixed_and_never_calls_one_close_a_timer():
    res = sockscope.compare(BEFORE, CRAFTED / "incident-after-fix.pcap")
    assert res.verdict == "fixed" and "client_idle_timeout" in res.reason
    timers = res.before["timers"]
    assert timers[0]["is_timer"] and timers[0]["count"] == 3 and "timer 5 s" in timers[0]["headline"]
    for t in res.before["timers"] + res.after["timers"]:
        if t["count"] == 1:
            assert "one close after" in t["headline"] and "-side timer" not in t["headline"]
    out = _cli("compare", BEFORE, CRAFTED / "incident-after-fix.pcap")
    assert out.exit_code == 0 and "fixed" in out.output


def test_compare_exits_1_when_not_fixed():
    out = _cli("compare", BEFORE, CRAFTED / "incident-3s.pcap")
    assert out.exit_code == 1 and "not fixed" in out.output


def test_one_close_is_not_called_a_timer():
    from sockscope.analysis.timers import TimeoutCluster

    odd = TimeoutCluster("client", False, 0.517, 1, 0.517, 0.517, 0.0, False, (4,))
    assert not odd.is_timer and odd.headline() == \
        "client: one close after 0.517 s (idle keep-alive; one sample is not a timer)"
    half = TimeoutCluster("client", False, 0.5003, 1, 0.5003, 0.5003, 0.0, True, (4,), 0.5)
    assert half.is_timer and "one close after 0.500 s" in half.headline() and "low confidence" in half.headline()
    crowd = TimeoutCluster("client", True, 1.6, 4, 1.6, 1.63, 0.03, False, (1, 2, 3, 4), None, 20)
    assert not crowd.is_timer and "no timer stands out" in crowd.headline()
    wide = TimeoutCluster("client", False, 0.5, 224, 0.5, 0.9, 0.4, True, tuple(range(224)), 0.5)
    assert not wide.is_timer and "too spread out" in wide.headline()
