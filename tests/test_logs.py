"""Application log alignment: reading, clock offsets, placement on connections, CLI and plot."""

from __future__ import annotations

import re
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import sockscope
from sockscope.cli import main
from sockscope.errors import SockscopeError
from sockscope.logs import LogAlignmentWarning, LogError, align_logs, describe_offset, read_log

LAB = Path(__file__).resolve().parents[1] / "captures" / "lab"

# Measured on the recorded lab captures (logs and tcpdump share one clock): the offset is the
# program's own usual latency between its log call and the packet (client logs before writing,
# server after reading): median of the densest half of the matched requests.
MEASURED = {
    ("before-fix", "client.log"): (0.000936, 9),
    ("before-fix", "server.log"): (-0.000491, 9),
    ("late-rst", "client.log"): (0.001372, 6),
    ("late-rst", "server.log"): (-0.001990, 6),
}
KILLED_PORTS = {"before-fix": [50346, 37480, 37486], "late-rst": [60490, 46376]}


@pytest.fixture(scope="module", params=["before-fix", "late-rst"])
def lab(request):
    d = LAB / request.param
    cap = sockscope.load(d / "capture.pcap")
    lines, summary = align_logs(cap, [d / "client.log", d / "server.log"])
    return request.param, d, cap, lines, summary


def _shifted(src: Path, dst: Path, shift_s: float) -> Path:
    out = []
    for line in src.read_text().splitlines():
        ts, rest = line.split(" ", 1)
        t = datetime.fromisoformat(ts.replace("Z", "+00:00")) + timedelta(seconds=shift_s)
        out.append(t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + " " + rest)
    dst.write_text("\n".join(out) + "\n")
    return dst


# -- reading ------------------------------------------------------------------------------------

def test_read_log_columns_and_fields():
    df = read_log(LAB / "before-fix" / "client.log")
    assert list(df.columns) == ["source", "line_no", "ts", "text", "port", "method", "path", "request_id"]
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    assert str(df["port"].dtype) == "Int64"
    assert (df["source"] == "client.log").all()
    assert len(df) == 48 and df["line_no"].iloc[0] == 1
    first = df.iloc[0]
    assert first["ts"] == pd.Timestamp("2026-11-25T17:24:51.740607Z")
    assert first["text"].startswith("client client_start")
    # request_start: method + URL reduced to the target; port inherited through the request id
    rs = df[df["text"].str.contains("request_start id=s1-fetch-files-2")].iloc[0]
    assert (rs["method"], rs["path"], rs["port"]) == ("GET", "/files/sess1?detail=full", 50346)
    # local_port= wins over remote=IP:PORT
    conn = df[df["text"].str.contains("socket_connect sock=1")].iloc[0]
    assert conn["port"] == 50346
    srv = read_log(LAB / "before-fix" / "server.log")
    req = srv[srv["text"].str.contains("lab_id=s1-fetch-exec-3")].iloc[0]
    assert (req["method"], req["path"], req["port"]) == ("POST", "/exec", 50346)
    assert srv.iloc[0]["port"] == 8301          # server_start port=8301: parsed, ignored by alignment


def test_read_log_timestamp_forms_and_continuations(tmp_path):
    p = tmp_path / "mixed.log"
    p.write_text(
        "preamble without a time\n"
        "2026-11-25T17:00:00.5Z first GET /a HTTP/1.1 from 10.0.0.1:40000\n"
        "Traceback (most recent call last):\n"
        "  boom\n"
        "\n"
        "2026-11-25 19:00:01,250+02:00 second port=123\n"
        "2026-11-25T17:00:02 naive is UTC\n"
        "[2026-11-25T17:00:03.000001Z] bracketed\n"
        "1764090004.123456789 epoch line client_port=555\n")
    df = read_log(p)
    assert df["ts"].tolist() == [pd.Timestamp(x) for x in (
        "2026-11-25T17:00:00.5Z", "2026-11-25T17:00:01.25Z", "2026-11-25T17:00:02Z",
        "2026-11-25T17:00:03.000001Z", pd.Timestamp(1764090004123456789, unit="ns", tz="UTC").isoformat())]
    assert df["line_no"].tolist() == [2, 6, 7, 8, 9]
    assert df.iloc[0]["text"].endswith("Traceback (most recent call last):\n  boom")
    assert (df.iloc[0]["method"], df.iloc[0]["path"], df.iloc[0]["port"]) == ("GET", "/a", 40000)
    assert df["port"].tolist()[1:] == [123, pd.NA, pd.NA, 555]
    assert df.attrs["skipped_lines"] == 2 and df.attrs["continuations"] == 2


def test_read_log_url_port_is_not_a_port(tmp_path):
    p = tmp_path / "u.log"
    p.write_text("2026-11-25T17:00:00Z fetch url=http://127.0.0.1:8301/x method=POST\n")
    row = read_log(p).iloc[0]
    assert pd.isna(row["port"]) and (row["method"], row["path"]) == ("POST", "/x")


@pytest.mark.parametrize("content", ["just some words\nand more\n", "", "\x00\x01\x02binary\x00"])
def test_garbage_log_is_a_clear_error(tmp_path, content):
    p = tmp_path / "garbage.log"
    p.write_text(content)
    with pytest.raises(LogError) as e:
        read_log(p)
    assert isinstance(e.value, SockscopeError) and "garbage.log" in str(e.value)


def test_missing_log_and_bad_regex():
    with pytest.raises(LogError, match="cannot read log"):
        read_log("/nonexistent/x.log")
    with pytest.raises(LogError, match="named group 'ts'"):
        read_log(LAB / "before-fix" / "client.log", regex=r"(\S+)")
    with pytest.raises(LogError, match="invalid log regex"):
        read_log(LAB / "before-fix" / "client.log", regex=r"(?P<ts>[")


# -- alignment on the lab captures --------------------------------------------------------------

def test_offset_found(lab):
    name, _, _, _, summary = lab
    for src in ("client.log", "server.log"):
        info = summary[src]
        want, n = MEASURED[(name, src)]
        assert abs(info["offset_s"]) < 0.050
        assert info["offset_s"] == pytest.approx(want, abs=1e-5)
        assert info["matches"] == n
        assert 0 <= info["spread_s"] < 0.010
        assert info["warning"] is None


def test_shifted_log_offset(lab, tmp_path):
    name, d, cap, _, summary = lab
    for src in ("client.log", "server.log"):
        shifted = _shifted(d / src, tmp_path / src, 3.25)
        _, s2 = align_logs(cap, shifted)
        assert s2[src]["offset_s"] == pytest.approx(-3.25, abs=0.005)
        assert s2[src]["offset_s"] == pytest.approx(summary[src]["offset_s"] - 3.25, abs=2e-6)
        assert s2[src]["matches"] == summary[src]["matches"]


def test_socket_hang_up_lands_after_the_client_fin(lab):
    name, _, cap, lines, _ = lab
    conns = cap.connections.set_index("conn_id")
    hang = lines[lines["text"].str.contains("socket hang up")]
    assert sorted(hang["port"].astype(int)) == sorted(KILLED_PORTS[name])
    for r in hang.itertuples():
        c = conns.loc[int(r.conn_id)]
        assert r.placed_by == "port" and int(c.client_port) == int(r.port)
        assert (c.closed_by, c.close_kind) == ("client", "FIN")
        assert 0 < r.delta_to_close_s < 0.050
        after_fin = (r.adjusted_ts - c.client_fin_ts).total_seconds()
        assert 0 < after_fin < 0.050 and after_fin == pytest.approx(r.delta_to_close_s, abs=1e-6)


def test_every_lab_line_placed_sensibly(lab):
    _, _, cap, lines, summary = lab
    assert lines["adjusted_ts"].is_monotonic_increasing
    assert (lines["adjusted_ts"] - lines["ts"]).dt.total_seconds().round(6).isin(
        [round(s["offset_s"], 6) for s in summary.values()]).all()
    # lines that name a client port sit on that port's connection
    conns = cap.connections.set_index("conn_id")
    by_port = lines[lines["placed_by"] == "port"]
    assert len(by_port) > 0
    assert all(int(conns.loc[int(c)].client_port) == int(p) for c, p in zip(by_port["conn_id"], by_port["port"]))
    # unplaced: only process-level lines (start, session, shutdown)
    unplaced = lines[lines["conn_id"].isna()]["text"]
    assert unplaced.str.contains(r"_start |_end |client_start|server_start|session_|client_shutdown|client_exit"
                                 ).all(), unplaced.tolist()


def test_capture_method_delegates():
    d = LAB / "before-fix"
    cap = sockscope.load(d / "capture.pcap")
    lines, summary = cap.align_logs([d / "client.log"])
    assert set(summary) == {"client.log"} and summary["client.log"]["matches"] == 9
    assert "conn_id" in lines.columns


def test_frames_in_and_no_ports_place_by_path_and_time():
    """A log without ports (only 'POST /exec') still aligns and lands on connections by path + time."""
    d = LAB / "before-fix"
    cap = sockscope.load(d / "capture.pcap")
    df = read_log(d / "server.log")
    df = df.assign(port=pd.array([pd.NA] * len(df), dtype="Int64"), request_id=pd.NA)
    df["source"] = "noports.log"
    lines, summary = align_logs(cap, [df])
    assert summary["noports.log"]["matches"] == 9
    assert summary["noports.log"]["offset_s"] == pytest.approx(MEASURED[("before-fix", "server.log")][0], abs=1e-5)
    req = lines[lines["text"].str.startswith("server request ")]
    assert set(req["placed_by"]) == {"request"}
    assert sorted(req["conn_id"].astype(int)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_epoch_seconds_log(tmp_path):
    d = LAB / "before-fix"
    cap = sockscope.load(d / "capture.pcap")
    out = []
    for line in (d / "client.log").read_text().splitlines():
        ts, rest = line.split(" ", 1)
        t = pd.Timestamp(ts)
        out.append(f"{t.value // 10**9}.{t.value % 10**9 // 1000:06d} {rest}")
    p = tmp_path / "epoch.log"
    p.write_text("\n".join(out) + "\n")
    lines, summary = align_logs(cap, p)
    assert summary["epoch.log"]["offset_s"] == pytest.approx(MEASURED[("before-fix", "client.log")][0], abs=1e-6)
    hang = lines[lines["text"].str.contains("socket hang up")]
    assert len(hang) == 3 and ((hang["delta_to_close_s"] > 0) & (hang["delta_to_close_s"] < 0.05)).all()


def test_custom_regex(tmp_path):
    """An access log (time in the middle, in brackets), parsed with a user regex."""
    d = LAB / "before-fix"
    cap = sockscope.load(d / "capture.pcap")
    out = []
    for r in read_log(d / "server.log").itertuples():
        if r.text.startswith("server request "):
            stamp = r.ts.strftime("%d/%b/%Y:%H:%M:%S.%f +0000")
            out.append(f'127.0.0.1:{r.port} - - [{stamp}] "{r.method} {r.path} HTTP/1.1" 200')
    p = tmp_path / "access.log"
    p.write_text("\n".join(out) + "\n")
    rx = r'^\S+:(?P<port>\d+) - - \[(?P<ts>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+)'
    # The default parser sees no timestamp at the line start: a clear error, not a traceback.
    with pytest.raises(LogError):
        read_log(p)
    df = read_log(p, regex=rx)
    assert len(df) == 9 and df["port"].notna().all() and df["method"].isin(["GET", "POST"]).all()
    first = read_log(d / "server.log").query("text.str.startswith('server request ')").iloc[0]
    assert df["ts"].iloc[0] == first["ts"] and df["path"].iloc[0] == first["path"]
    # the same layout with an ISO-8601 stamp inside the brackets
    iso = tmp_path / "iso" / "access.log"
    iso.parent.mkdir()
    iso.write_text("\n".join(re.sub(r"\[([^\]]+)\]", lambda m: "[" + datetime.strptime(
        m.group(1), "%d/%b/%Y:%H:%M:%S.%f %z").isoformat() + "]", line) for line in out) + "\n")
    assert read_log(iso, regex=rx)["ts"].tolist() == df["ts"].tolist()
    lines, summary = align_logs(cap, p, regex=rx)
    assert summary["access.log"]["matches"] == 9
    assert summary["access.log"]["offset_s"] == pytest.approx(MEASURED[("before-fix", "server.log")][0], abs=1e-5)
    assert (lines["placed_by"] == "port").all()


def test_unmatched_log_warns_and_keeps_its_clock(tmp_path):
    d = LAB / "before-fix"
    cap = sockscope.load(d / "capture.pcap")
    p = tmp_path / "other.log"
    p.write_text("2026-11-25T17:24:55Z GET /nothing-like-this local_port=50346\n"
                 "2026-11-25T17:24:56Z unrelated event\n")
    with pytest.warns(LogAlignmentWarning, match="other.log"):
        lines, summary = align_logs(cap, p)
    info = summary["other.log"]
    assert info["offset_s"] is None and info["matches"] == 0 and info["warning"]
    assert (lines["adjusted_ts"] == lines["ts"]).all()
    assert lines.iloc[0]["conn_id"] == 0                  # still placed by its port
    assert "unknown" in describe_offset("other.log", info)


def test_far_clock_is_not_matched(tmp_path):
    d = LAB / "before-fix"
    cap = sockscope.load(d / "capture.pcap")
    far = _shifted(d / "server.log", tmp_path / "server.log", 400.0)
    with pytest.warns(LogAlignmentWarning):
        _, s = align_logs(cap, far)                            # beyond max_offset_s = 300
    assert s["server.log"]["matches"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, s = align_logs(cap, far, max_offset_s=600)
    assert s["server.log"]["offset_s"] == pytest.approx(-400.0 + MEASURED[("before-fix", "server.log")][0],
                                                       abs=1e-5)


# -- CLI ----------------------------------------------------------------------------------------

def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("name", ["before-fix", "late-rst"])
def test_cli_prints_offsets_and_log_lines(name):
    d = LAB / name
    res = CliRunner().invoke(main, ["diagnose", str(d / "capture.pcap"), "--log", str(d / "client.log"),
                                    "--log", str(d / "server.log")])
    assert res.exit_code == 0, res.output
    out = res.output
    for src in ("client.log", "server.log"):
        want, n = MEASURED[(name, src)]
        assert f"{src}: clock offset {want:+.6f} s from {n} matched requests, spread" in out
    # offsets come after the findings by kind, before the first connection timeline
    assert out.index("clock offset") > out.index("Client idle timeout") and \
        out.index("clock offset") < out.index("\n  connection ")
    hang = [line for line in out.splitlines() if "socket hang up" in line]
    assert len(hang) == len(KILLED_PORTS[name])
    for line in hang:
        assert "📝 client.log:" in line
        assert re.search(r"\(\d+\.\d ms after the client FIN\)$", line), line
    # each hang-up line sits in its own connection's block, after that connection's FIN line
    blocks = out.split("\n  connection ")[1:]
    for port in KILLED_PORTS[name]:
        blk = next(b for b in blocks if f":{port} →" in b.splitlines()[0])
        assert f"local_port={port}" in blk and "socket hang up" in blk
        assert blk.index("✖ client sends FIN") < blk.index("socket hang up")


def test_cli_without_logs_unchanged_and_json():
    d = LAB / "before-fix"
    runner = CliRunner()
    plain = runner.invoke(main, ["diagnose", str(d / "capture.pcap")])
    assert plain.exit_code == 0 and "📝" not in plain.output and "clock offset" not in plain.output
    j0 = runner.invoke(main, ["diagnose", "--json", str(d / "capture.pcap")])
    j1 = runner.invoke(main, ["diagnose", "--json", str(d / "capture.pcap"), "--log", str(d / "client.log")])
    import json

    rows0, rows1 = json.loads(j0.output), json.loads(j1.output)
    assert [r["kind"] for r in rows0] == [r["kind"] for r in rows1]
    assert all("log_alignment" not in r["evidence"] for r in rows0)
    for r0, r1 in zip(rows0, rows1):
        la = r1["evidence"].pop("log_alignment")
        assert r0 == r1                                         # nothing else changed
        assert la["sources"]["client.log"]["matches"] == 9
        if r1["conn_id"] is not None:
            assert any("socket hang up" in x["text"] for x in la["lines"])


def test_cli_garbage_log_exits_3(tmp_path):
    d = LAB / "before-fix"
    g = tmp_path / "garbage.log"
    g.write_bytes(b"\x00\x01not a log\x00")
    res = CliRunner().invoke(main, ["diagnose", str(d / "capture.pcap"), "--log", str(g)])
    assert res.exit_code == 3 and res.exception is None or isinstance(res.exception, SystemExit)
    assert res.exit_code == 3
    assert "garbage.log" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["diagnose", str(d / "capture.pcap"), "--log", str(tmp_path / "missing.log")])
    assert res.exit_code == 3 and "cannot read log" in res.output
    res = CliRunner().invoke(main, ["diagnose", str(d / "capture.pcap"), "--log", str(d / "client.log"),
                                    "--log-regex", "(no ts group)"])
    assert res.exit_code == 3 and "named group 'ts'" in res.output


def test_cli_unmatched_log_warns(tmp_path):
    d = LAB / "before-fix"
    p = tmp_path / "other.log"
    p.write_text("2026-11-25T17:24:55Z nothing to see local_port=50346\n")
    res = CliRunner().invoke(main, ["diagnose", str(d / "capture.pcap"), "--log", str(p)])
    assert res.exit_code == 0, res.output
    assert "sockscope: warning: other.log" in res.output
    assert "other.log: clock offset unknown" in _flat(res.output)
    assert "📝 other.log: nothing to see" in res.output


def test_cli_custom_regex(tmp_path):
    d = LAB / "before-fix"
    p = tmp_path / "app.log"
    lines = []
    for r in read_log(d / "client.log").itertuples():
        lines.append(f"app[{r.ts.isoformat()}] {r.text}")
    p.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["diagnose", str(d / "capture.pcap"), "--log", str(p),
                                    "--log-regex", r"^app\[(?P<ts>[^\]]+)\]"])
    assert res.exit_code == 0, res.output
    assert "app.log: clock offset +0.000936 s from 9 matched requests" in res.output
    assert sum("📝 app.log:" in x and "socket hang up" in x for x in res.output.splitlines()) == 3


# -- plot ---------------------------------------------------------------------------------------

def test_timeline_draws_log_lines():
    pytest.importorskip("matplotlib")
    from sockscope.plot._timeline import timeline

    d = LAB / "before-fix"
    cap = sockscope.load(d / "capture.pcap")
    lines, _ = cap.align_logs([d / "client.log", d / "server.log"])
    fig = timeline(cap, logs=lines)
    ax = fig.axes[0]
    markers = [ln for ln in ax.lines if (ln.get_gid() or "").startswith("log-")]
    assert sum(len(ln.get_xdata()) for ln in markers) == int(lines["conn_id"].notna().sum())
    labels = [t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("log-label-")]
    assert sum("socket hang up" in t for t in labels) == 3
    base = timeline(cap)
    assert not [t for t in base.axes[0].texts if (t.get_gid() or "").startswith("log-")]
    with pytest.raises(ValueError):
        timeline(cap, logs=pd.DataFrame({"x": [1]}))


def test_a_line_naming_no_socket_is_placed_by_the_close_it_follows(tmp_path):
    import warnings

    log = tmp_path / "app.log"
    log.write_text("2026-11-25T17:24:57.969Z Error: socket hang up code=ECONNRESET\n"       # 2.4 ms after conn 0's FIN
                   "2026-11-25T17:24:55.000Z Error: socket hang up code=ECONNRESET\n")      # after no close
    cap = sockscope.load(LAB / "before-fix" / "capture.pcap")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lines, info = cap.align_logs([log])
    placed = lines[lines["placed_by"] == "close_time"]
    assert placed["conn_id"].tolist() == [0]
    assert 0 < placed["delta_to_close_s"].iloc[0] < 0.01
    assert info["app.log"]["unplaced"] == 1 and info["app.log"]["placed"] == 1


def test_times_outside_the_nanosecond_range_are_not_timestamps(tmp_path):
    """A capture's clock is nanoseconds since 1970 (1677-2262): a line stamped in year 7 or
    9999 is text, not an event (found by the coverage-guided fuzzer: it raised OverflowError)."""
    p = tmp_path / "a.log"
    p.write_text("0007-06-01T00:00:00 too early\n2026-11-25T17:25:16 kept port=5\n9999-01-01T00:00:00 too late\n")
    df = read_log(p)
    assert list(df["text"]) == ["kept port=5\n9999-01-01T00:00:00 too late"]
    assert df.attrs["skipped_lines"] == 1


def test_port_inheritance_skips_ids_whose_lines_disagree(tmp_path):
    """An id seen with two ports gives none to its port-less lines (NA, not a TypeError), and a
    port outside 0-65535 is no port."""
    p = tmp_path / "b.log"
    p.write_text("2026-11-25T17:25:16 id=r1 local_port=5\n2026-11-25T17:25:16 id=r1 local_port=6\n"
                 "2026-11-25T17:25:16 id=r1 done\n2026-11-25T17:25:17 id=r2 local_port=7\n"
                 "2026-11-25T17:25:17 id=r2 done\n")
    df = read_log(p)
    assert df["port"].tolist()[2] is pd.NA and df["port"].tolist()[4] == 7
    q = tmp_path / "c.log"
    q.write_text("[2026-11-25T17:25:16] port=99999 GET /x\n")
    assert read_log(q, r"^\[(?P<ts>[^\]]+)\] port=(?P<port>\d+) (?P<method>\w+) (?P<path>\S+)")["port"].isna().all()
