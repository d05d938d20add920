"""The incident report (``sockscope report``, ``Capture.report``): one self-contained HTML page.

Without a browser: what the page carries (every connection a lane, every finding's details,
hostile text inert, the size bound), the CLI's contract. With Debian's Chromium driven by
Playwright: the verdict renders, the timeline draws, a real click on a lane opens that
connection's details with its Wireshark filter, zoom moves the view, the console stays
clean and no request leaves the page -- on the lab's before-fix capture (with its logs) and
on a generated capture of about 30,000 connections. A screenshot of each lands in the
test's tmp dir. The browser tests skip, saying why, when Chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sockscope
from sockscope import htmlreport

REPO = Path(__file__).resolve().parents[1]
BEFORE = REPO / "captures/lab/before-fix"
MIDDLEBOX = REPO / "captures/lab/middlebox-rst/client.pcap"
SOCKSCOPE = [sys.executable, "-m", "sockscope"]


def _data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def before():
    return sockscope.load(BEFORE / "capture.pcap")


def test_every_connection_is_a_lane_and_every_finding_is_embedded(before) -> None:
    d = htmlreport.report_data(before)
    assert sorted(d["lanes"]["id"]) == sorted(before.connections["conn_id"].tolist())
    assert sum(g["count"] for g in d["groups"]) == len(before.connections)
    per_conn = before.findings.dropna(subset=["conn_id"])
    for cid, rows in per_conn.groupby("conn_id"):
        det = d["details"][str(int(cid))]
        assert sorted(f["kind"] for f in det["findings"]) == sorted(rows["kind"])
        assert {f["filter"] for f in det["findings"]} == set(rows["display_filter"])
    # the incident: one group of three client idle timeouts, their 5 s timer named
    assert d["groups"][0]["kind"] == "client_idle_timeout" and d["groups"][0]["count"] == 3
    assert "5 s timer" in d["groups"][0]["title"]
    assert any("client-side timer 5 s" in t for t in d["verdict"]["timers"])
    # the frames of the proof, by name
    det0 = d["details"]["0"]
    frames = dict((k, v) for f in det0["findings"] if f["kind"] == "client_idle_timeout" for k, v in f["frames"])
    assert frames["close_frame"] == 26 and frames["last_payload_frame"] == 16


def test_lane_times_are_microseconds_after_the_capture_start(before) -> None:
    d = htmlreport.report_data(before)
    lanes = d["lanes"]
    t0 = int(d["t0_ns"])
    c = before.connections.set_index("conn_id")
    for i, cid in enumerate(lanes["id"]):
        assert lanes["start"][i] == (c.loc[cid, "start"].value - t0) // 1000
        assert lanes["close"][i] == (c.loc[cid, "close_ts"].value - c.loc[cid, "start"].value) // 1000
        assert lanes["flags"][i] & 3 == {"client": 1, "server": 2}[c.loc[cid, "closed_by"]]


def test_forged_rst_lane_is_marked_forged_not_the_servers() -> None:
    cap = sockscope.load(MIDDLEBOX)
    d = htmlreport.report_data(cap)
    assert d["groups"][0]["kind"] == "middlebox_rst"
    assert "forged" in d["groups"][0]["title"]
    assert (d["lanes"]["flags"][0] >> 2) & 3 == 3


def test_text_from_the_capture_cannot_close_the_script_or_run(before) -> None:
    cap = sockscope.load(BEFORE / "capture.pcap")
    evil = '</script><script>alert(1)</script><!--'
    cap.requests["uri"] = cap.requests["uri"].astype(object)
    cap.requests.loc[0, "uri"] = evil
    page = htmlreport.build(cap).html
    assert evil not in page and "</script><script>alert" not in page
    assert _data(page)["details"]["0"]["requests"][0][2] == evil     # kept, as data
    assert page.count("<script") == 2


def test_page_is_self_contained(before) -> None:
    page = before.report().html
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', page)
    assert "{{" not in page.split('<script type="application/json"')[0]


def test_repr_html_isolates_the_page(before, tmp_path: Path) -> None:
    rep = before.report(tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == rep.html
    frame = rep._repr_html_()
    assert frame.startswith("<iframe srcdoc=\"") and 'sandbox="allow-scripts"' in frame
    assert "<script" not in frame          # all of it escaped inside the attribute


def test_cli_writes_the_report_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "incident.html"
    done = subprocess.run(SOCKSCOPE + ["report", str(BEFORE / "capture.pcap"), "-o", str(out),
                                       "--log", str(BEFORE / "client.log"), "--log", str(BEFORE / "server.log")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr and "7 finding(s) on 3 connection(s)" in done.stderr
    d = _data(out.read_text(encoding="utf-8"))
    assert any("client.log" in m[2] for m in d["logs"])
    assert any(e[1].startswith("📝") for e in d["details"]["0"]["events"])


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    done = subprocess.run(SOCKSCOPE + ["report", str(BEFORE / "capture.pcap"), "-o", str(tmp_path / "no/such/dir.html")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "cannot write" in done.stderr
    done = subprocess.run(SOCKSCOPE + ["report", str(tmp_path / "missing.pcap")], capture_output=True, text=True)
    assert done.returncode == 3 and "Traceback" not in done.stderr
    done = subprocess.run(SOCKSCOPE + ["report", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "Example:" in done.stdout


# ---- in a real browser ------------------------------------------------------------------

def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip("no Chromium: apt-get install chromium (make test does, as root)")


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    seen = {"console": [], "requests": []}
    page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["console"].append(f"pageerror: {e}"))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto(path.as_uri())
    page.wait_for_function("() => window.sockscopeReport !== undefined")
    return page, seen


def _inked(page) -> int:
    """Pixels of the timeline canvas that are not blank."""
    return page.evaluate("""() => { const c = document.getElementById('tl');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240)) n++;
        return n; }""")


def _click_lane(page, cid: int) -> None:
    page.locator("#scroller").scroll_into_view_if_needed()
    y = page.evaluate(f"window.sockscopeReport.laneY({cid})")
    assert y is not None, f"lane {cid} not on screen"
    box = page.locator("#tl").bounding_box()
    page.mouse.click(box["x"] + 400, box["y"] + y)


def test_browser_renders_the_incident(browser, tmp_path: Path, before) -> None:
    out = tmp_path / "before-fix.html"
    subprocess.run(SOCKSCOPE + ["report", str(BEFORE / "capture.pcap"), "-o", str(out), "--log",
                                str(BEFORE / "client.log"), "--log", str(BEFORE / "server.log")], check=True,
                   capture_output=True)
    page, seen = _open(browser, out)
    verdict = page.inner_text("#verdict")
    assert "7 finding(s) on 3 of 3 connection(s)" in verdict
    assert "client_idle_timeout" in verdict and "Client idle timeout killed requests" in verdict
    assert "client-side timer 5 s" in verdict
    assert "raise the client's timeout" in verdict
    assert _inked(page) > 2000
    _click_lane(page, 1)
    page.wait_for_function("() => window.sockscopeReport.selected() === 1")
    details = page.inner_text("#details")
    assert "connection 1" in details and "tcp.stream eq 1" in details
    filt = before.findings.query("conn_id == 1 and kind == 'client_idle_timeout'")["display_filter"].iloc[0]
    assert filt in details
    assert "POST /exec" in details and "📝" in details          # the request chain and its log lines
    # zoom in with the button: the visible span halves
    a0, a1 = page.evaluate("window.sockscopeReport.view()")
    page.click("#zoom-in")
    b0, b1 = page.evaluate("window.sockscopeReport.view()")
    assert abs((b1 - b0) - (a1 - a0) / 2) < 1e-6 * (a1 - a0)
    page.screenshot(path=str(tmp_path / "before-fix.png"), full_page=True)
    assert (tmp_path / "before-fix.png").stat().st_size > 10_000
    assert seen["console"] == []
    assert seen["requests"] == [out.as_uri()], "a request left the page"


@pytest.fixture(scope="module")
def busy_capture(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("busy") / "busy.pcap"
    subprocess.run([sys.executable, str(REPO / "bench/gen_capture.py"), "--profile", "busy", "--packets", "870000",
                    "--out", str(out)], check=True, capture_output=True)
    return out


def test_browser_handles_thirty_thousand_connections(browser, tmp_path: Path, busy_capture: Path) -> None:
    out = tmp_path / "busy.html"
    done = subprocess.run(SOCKSCOPE + ["report", str(busy_capture), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    size = out.stat().st_size
    assert size <= 5_000_000, f"{size:,} bytes"
    d = _data(out.read_text(encoding="utf-8"))
    n = len(d["lanes"]["id"])
    assert n >= 30_000
    flagged = {int(k) for k, v in d["details"].items() if v["findings"]}
    page, seen = _open(browser, out)
    assert page.evaluate("window.sockscopeReport.lanes") == n
    assert "finding(s) on" in page.inner_text("#verdict")
    assert _inked(page) > 5000
    # the first group holds findings and starts open; its first lane opens on a click
    first = d["lanes"]["id"][0]
    assert first in flagged
    _click_lane(page, first)
    page.wait_for_function(f"() => window.sockscopeReport.selected() === {first}")
    assert f"tcp.stream eq {first}" in page.inner_text("#details")
    # a healthy group: closed at first, opened by a click on its row
    healthy = next(i for i, g in enumerate(d["groups"]) if not g["severity"])
    page.evaluate("window.sockscopeReport.reveal(%d)" % d["lanes"]["id"][d["lanes"]["group"].index(healthy)])
    assert page.evaluate(f"window.sockscopeReport.isOpen({healthy})")
    rows_open = page.evaluate("window.sockscopeReport.rows()")
    page.click("#collapse-all")
    assert page.evaluate("window.sockscopeReport.rows()") == len(d["groups"]) < rows_open
    page.click("#expand-all")
    assert page.evaluate("window.sockscopeReport.rows()") == len(d["groups"]) + n
    # to the bottom of 30k lanes: the last one is on screen and drawn
    page.evaluate("() => { const s = document.getElementById('scroller'); s.scrollTop = s.scrollHeight; }")
    page.wait_for_timeout(200)
    y = page.evaluate("window.sockscopeReport.laneY(%d)" % d["lanes"]["id"][-1])
    assert 0 < y < page.locator("#tl").bounding_box()["height"]
    assert _inked(page) > 1000
    page.screenshot(path=str(tmp_path / "busy.png"))
    assert seen["console"] == []
    assert seen["requests"] == [out.as_uri()]
