"""Exports: Parquet keeps dtypes, CSV is spreadsheet-safe, JSON is valid for any bytes,
and the Zeek logs read back and agree with the tables and with Zeek itself."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import sockscope
from sockscope import export as ex
from tests.zeekref import ZEEK_DIR, read_log

CRAFTED = Path(__file__).resolve().parents[1] / "captures" / "crafted"


@pytest.fixture(scope="module")
def mixed():
    return sockscope.load(CRAFTED / "mixed.pcap")


def _hostile(cap):
    """A copy of the capture whose requests carry hostile text (formulas, tabs, odd bytes)."""
    reqs = cap.requests.copy()
    reqs.loc[0, "uri"] = "/a\tb\nc\\d\x01é\\xff"      # \\xff: an undecodable byte as sockscope keeps it
    reqs.loc[1, "uri"] = "=cmd|' /C calc'!A0"
    reqs.loc[2, "user_agent"] = "-"
    return sockscope.Capture(cap.source, cap.connections, reqs, cap.gaps, cap.facts)


def test_parquet_round_trip_keeps_dtypes(mixed, tmp_path):
    pytest.importorskip("pyarrow")
    paths = ex.export(mixed, tmp_path, "parquet")
    assert [p.name for p in paths] == [f"{t}.parquet" for t in ex.TABLE_NAMES]
    for name, df in ex.tables(mixed).items():
        back = pd.read_parquet(tmp_path / f"{name}.parquet")
        pd.testing.assert_frame_equal(back, ex.parquet_frame(df), check_exact=True)
        for col in df.columns:
            if col != "evidence":
                assert back[col].dtype == df[col].dtype, (name, col)
    back = pd.read_parquet(tmp_path / "findings.parquet")
    assert back["evidence"].dtype == "string"
    ev = json.loads(back["evidence"].iloc[0])
    assert ev == json.loads(json.dumps(sockscope.output._cell(mixed.findings["evidence"].iloc[0])))
    # timestamps keep their nanoseconds and zone
    conns = pd.read_parquet(tmp_path / "connections.parquet")
    assert conns["start"].dtype == "datetime64[ns, UTC]"
    assert (conns["close_ts"] == mixed.connections["close_ts"]).all()


def test_csv_escapes_formulas(mixed, tmp_path):
    ex.export(_hostile(mixed), tmp_path, "csv")
    text = (tmp_path / "requests.csv").read_text()
    assert "'=cmd|" in text and "\n=cmd" not in text and ",=cmd" not in text
    back = pd.read_csv(tmp_path / "requests.csv")
    assert back.loc[1, "uri"] == "'=cmd|' /C calc'!A0"
    assert list(back.columns) == list(mixed.requests.columns)


def test_json_valid_for_arbitrary_bytes(mixed, tmp_path):
    ex.export(_hostile(mixed), tmp_path, "json")
    raw = (tmp_path / "requests.json").read_bytes()
    raw.decode("ascii")                           # ensure_ascii: 7-bit clean
    rows = json.loads(raw)
    assert rows[0]["uri"] == "/a\tb\nc\\d\x01é\\xff"
    assert rows[1]["uri"].startswith("=cmd")      # JSON is data, not a spreadsheet: unchanged
    for name in ex.TABLE_NAMES:
        assert len(json.loads((tmp_path / f"{name}.json").read_text())) == len(getattr(mixed, name))


def test_unknown_format(mixed, tmp_path):
    with pytest.raises(ValueError):
        ex.export(mixed, tmp_path, "xml")


# -- Zeek -----------------------------------------------------------------------------------

def test_escape_round_trip():
    for s in ["plain", "a\tb", "line\nbreak", "back\\slash", "\x00\x7f", "é ü", "-", "(empty)", "", "\\xff"]:
        assert ex.unescape(ex.escape(s)) == s
        assert "\t" not in ex.escape(s) and "\n" not in ex.escape(s)
    assert ex.escape("a\tb") == "a\\x09b"
    assert ex.escape("") == "(empty)" and ex.escape("-") == "\\x2d"


def test_zeek_conn_log_matches_connections(mixed, tmp_path):
    paths = ex.export(_hostile(mixed), tmp_path, "zeek")
    assert [p.name for p in paths] == ["conn.log", "http.log"]
    text = (tmp_path / "conn.log").read_text(encoding="ascii")
    lines = text.splitlines()
    assert lines[0] == "#separator \\x09"
    assert lines[1:5] == ["#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn"]
    assert lines[5].startswith("#open\t") and lines[-1].startswith("#close\t")
    meta, rows = ex.read_zeek_log(tmp_path / "conn.log")
    assert meta["fields"].split("\t") == [f for f, _ in ex.CONN_FIELDS]
    assert meta["types"].split("\t") == [t for _, t in ex.CONN_FIELDS]
    assert len(rows) == len(mixed.connections)
    for row, c in zip(rows, mixed.connections.sort_values("start").itertuples()):
        assert len(row) == len(ex.CONN_FIELDS)
        assert row["ts"] == f"{c.start.value / 1e9:.6f}"
        assert row["uid"].startswith("C") and len(row["uid"]) == 18
        assert (row["id.orig_h"], row["id.orig_p"], row["id.resp_h"], row["id.resp_p"]) == \
            (c.client_ip, str(c.client_port), c.server_ip, str(c.server_port))
        assert row["proto"] == "tcp" and row["service"] == "http"
        assert row["duration"] == f"{c.duration_s:.6f}"
        assert (row["orig_bytes"], row["resp_bytes"]) == (str(c.client_bytes), str(c.server_bytes))
        assert (row["conn_state"], row["history"]) == (c.state, c.history)
        assert (row["orig_pkts"], row["orig_ip_bytes"], row["resp_pkts"], row["resp_ip_bytes"]) == \
            tuple(map(str, (c.client_pkts, c.client_ip_bytes, c.server_pkts, c.server_ip_bytes)))
        assert row["local_orig"] is None and row["tunnel_parents"] is None and row["ip_proto"] == "6"
    # uids are stable across runs and shared with http.log
    ex.export(_hostile(mixed), tmp_path / "again", "zeek")
    assert [r["uid"] for r in ex.read_zeek_log(tmp_path / "again" / "conn.log")[1]] == [r["uid"] for r in rows]
    _, http = ex.read_zeek_log(tmp_path / "http.log")
    assert {r["uid"] for r in http} <= {r["uid"] for r in rows}
    assert len(http) == len(mixed.requests)
    uris = {r["uri"] for r in http}
    assert "/a\tb\nc\\d\x01é\\xff" in uris            # escaped in the file, intact when read back
    assert "\\x09" in (tmp_path / "http.log").read_text()
    assert any(r["user_agent"] == "-" for r in http)     # a literal '-' is not "unset"


def test_zeek_single_packet_connection_has_no_duration():
    row = ex.conn_rows(pd.DataFrame([{
        "conn_id": 0, "client_ip": "10.0.0.1", "client_port": 1, "server_ip": "10.0.0.2", "server_port": 80,
        "start": pd.Timestamp("2026-01-01", tz="UTC"), "duration_s": 0.0, "client_bytes": 0, "server_bytes": 0,
        "protocol": "unknown", "state": "S0", "missed_bytes": 0, "history": "S", "client_pkts": 1,
        "client_ip_bytes": 60, "server_pkts": 0, "server_ip_bytes": 0}]))[0]
    fields = dict(zip([f for f, _ in ex.CONN_FIELDS], row))
    assert fields["duration"] == fields["orig_bytes"] == fields["resp_bytes"] == "-"
    assert fields["service"] == "-" and fields["ts"] == "1767225600.000000"


def _zeek_case(name: str) -> Path:
    case = ZEEK_DIR / name
    if not case.is_dir():
        pytest.skip(f"Zeek conformance set not found at {ZEEK_DIR} (set SOCKSCOPE_ZEEK_CONFORMANCE); "
                    "the comparison with Zeek's own logs needs it")
    return case


@pytest.mark.parametrize("log,skip", [
    ("conn.log", {"ts", "uid", "local_orig", "local_resp"}),
    # file ids and sniffed mime types come from Zeek's file analysis, which sockscope does not do
    ("http.log", {"ts", "uid", "orig_fuids", "resp_fuids", "orig_mime_types", "resp_mime_types"}),
])
def test_zeek_log_equals_zeeks_own(tmp_path, log, skip):
    case = _zeek_case("http-get-basic")
    ex.export(sockscope.load(case / "get.pcap"), tmp_path, "zeek")
    theirs = read_log(case / log)
    ours_text = (tmp_path / log).read_text()
    ours = read_log(tmp_path / log)
    assert len(ours) == len(theirs) == 1
    assert list(ours[0]) == list(theirs[0])             # same fields, same order
    for field in theirs[0]:
        if field not in skip:
            assert ours[0][field] == theirs[0][field], field
    # the header lines Zeek writes, apart from the (masked) open/close times
    ref_head = [ln for ln in (case / log).read_text().splitlines()
                if ln.startswith("#") and not ln.startswith(("#open", "#close", "###"))]
    our_head = [ln for ln in ours_text.splitlines() if ln.startswith("#") and not ln.startswith(("#open", "#close"))]
    assert our_head == ref_head


def test_export_cli(tmp_path):
    from click.testing import CliRunner

    from sockscope import cli_plot  # noqa: F401  (registers the commands)
    from sockscope.cli import main

    r = CliRunner().invoke(main, ["export", str(CRAFTED / "mixed.pcap"), "--format", "csv", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.csv" for t in ex.TABLE_NAMES)
    assert "Example" in CliRunner().invoke(main, ["export", "--help"]).output
