"""Write the notebooks in this folder from the cell sources below (outputs stripped).

Edit the cells here, then run ``python notebooks/make_notebooks.py``; the test suite checks
that the committed .ipynb files equal what this script writes, and runs each one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# Every notebook starts by finding the repository root, so it runs from any working
# directory (the tests execute copies in a temporary folder).
SETUP = '''\
from pathlib import Path
import os

import pandas as pd
import sockscope
import sockscope.accessor  # registers df.sockscope
import sockscope.plot

# The repository's captures/: $SOCKSCOPE_ROOT, else above the working directory (Jupyter
# starts a kernel in the notebook's folder), else beside the sockscope package it imports.
ROOT = Path(os.environ.get("SOCKSCOPE_ROOT", Path.cwd()))
while not (ROOT / "captures").is_dir() and ROOT != ROOT.parent:
    ROOT = ROOT.parent
if not (ROOT / "captures").is_dir():
    ROOT = Path(sockscope.__file__).resolve().parents[1]
pd.set_option("display.max_colwidth", 80)
pd.set_option("display.width", 200)'''


def _md(text: str):
    return new_markdown_cell(text.strip("\n"))


def _code(text: str):
    return new_code_cell(text.strip("\n"))


def socket_hang_up() -> list:
    return [
        _md("""
# "socket hang up": who killed the connection?

A Node.js service logs `Error: socket hang up` on `POST /exec`. This notebook walks the
capture of the incident: which connection carried the request, what else ran on that
socket, who closed it and after how long, and why that is a timer rather than bad luck.
It uses the lab recording (`captures/lab/before-fix/capture.pcap`) when present, else the
crafted reproduction bundled with the repository.
"""),
        _code(SETUP + '''

lab = ROOT / "captures/lab/before-fix/capture.pcap"
path = lab if lab.exists() else ROOT / "captures/crafted/incident-before-fix.pcap"
cap = sockscope.load(path)
cap'''),
        _md("## The connections\nOne row per TCP connection: who closed it (`closed_by`, `close_kind`) and the silence before the close."),
        _code('''cap.connections[["conn_id", "client_port", "server_port", "start", "duration_s", "state", "history",
                 "closed_by", "close_kind", "idle_before_close_s", "requests", "unanswered"]]'''),
        _md("""
## The reuse chain on one socket

Pick the first connection that had an unanswered request. Its requests came from *two
different clients* in the same process (see the User-Agent): the keep-alive agent handed
the socket used for `GET /files` to the `POST /exec` call.
"""),
        _code('''victim = int(cap.connections.query("unanswered > 0")["conn_id"].iloc[0])
chain = cap.requests.sockscope.on(victim)
chain[["index", "method", "uri", "user_agent", "status", "request_start", "response_end", "outcome", "ended_by"]]'''),
        _code('''assert chain["user_agent"].nunique() >= 2, "expected requests from two clients on one socket"
assert chain.iloc[-1]["method"] == "POST" and chain.iloc[-1]["outcome"] != "complete"'''),
        _md("## The idle gap and the client's FIN\nThe silences on that connection; the last one ends with the *client's* FIN while the POST was waiting."),
        _code('''gaps = cap.gaps.sockscope.on(victim)
gaps[["start", "end", "duration_s", "outstanding", "ended_by"]]'''),
        _code('''last = gaps.iloc[-1]
conn = cap.connections.sockscope.on(victim).iloc[0]
print(f"silence of {last.duration_s:.3f} s with a request outstanding, ended by {last.ended_by}")
print(f"closed by the {conn.closed_by} with {conn.close_kind} (frame {conn.close_frame})")
assert last.outstanding and last.ended_by == "client_fin" and conn.closed_by == "client"'''),
        _md("""
## The inferred timeout

Every client close with a request outstanding, clustered by idle time. A tight cluster is
a configured timer; nothing here assumes the value.
"""),
        _code('''from sockscope.analysis import close_attribution, infer_timeouts

clusters = infer_timeouts(close_attribution(cap.connections, cap.requests).values())
timer = next(k for k in clusters if k.side == "client" and k.outstanding)
print(f"{timer.describe()}: {timer.count} closes between {timer.min_s:.3f} and {timer.max_s:.3f} s "
      f"({timer.confidence} confidence)")
assert abs(timer.timeout_s - 5.0) < 0.05'''),
        _code("sockscope.plot.idle_closes(cap)"),
        _md("## The timeline\nEvery connection as a lane: the requests, the silences (with their length), who sent FIN/RST."),
        _code("sockscope.plot.timeline(cap)"),
        _md("## Verdict\nThe findings, one sentence each, with the Wireshark filter that shows the evidence."),
        _code('''for f in cap.findings.query("severity == 'error'").itertuples():
    print(f"[{f.kind}] {f.summary}")
    print(f"    wireshark: {f.display_filter}")'''),
        _code('''assert (cap.findings["kind"] == "client_idle_timeout").any()
print("Open in Wireshark with:", cap.findings.query("kind == 'client_idle_timeout'").sockscope.filter())'''),
        _md("## The report for the ticket\n`cap.report(path)` writes one self-contained HTML file (verdict, "
            "timeline, each connection's evidence on click); the returned report also shows here, inline."),
        _code('''import tempfile
report = cap.report(os.path.join(tempfile.mkdtemp(), "incident.html"))
assert "client_idle_timeout" in report.html
report'''),
        *which_death(),
    ]


def which_death() -> list:
    """The "which death is this?" section: one error message, several causes; the packets decide."""
    return [
        _md("""
## Which death is this?

`socket hang up`, `ECONNRESET`, `Connection reset by peer`, `RemoteDisconnected`: the client's
error cannot tell a server's reset from a router's, a dead host from a slow one. The packets
can. This recording went through a router whose conntrack entry for the connection expired
while it sat idle in the pool; Python `requests` reported the next request's failure as
`ConnectionResetError(104, 'Connection reset by peer')`, exactly as if the server had reset it
(`captures/lab/middlebox-rst/`: the same connection captured beside the client and beside the
server; `lab/PATHS.md` tells how it was recorded).
"""),
        _code('''mb = sockscope.load(ROOT / "captures/lab/middlebox-rst/client.pcap")
mb.findings[["kind", "severity", "conn_id", "request_index", "summary"]]'''),
        _md("""
The RST claims the server's address. Everything the server really sent reached the client
one hop away (IP TTL 63); the RST arrived with TTL 64, so it was made one hop closer: by the
router. Its IP-ID 0 fits a forgery too, but Linux also sends its own RSTs with IP-ID 0, so
sockscope notes it and never rests on it.
"""),
        _code('''mb.connections[["conn_id", "closed_by", "close_kind", "close_frame", "server_ttl_min",
                "server_ttl_max", "server_rst_ttl", "server_rst_ip_id", "server_ip_id_before_rst"]]'''),
        _code('''f = mb.findings.query("kind == 'middlebox_rst'").iloc[0]
for sig in f["evidence"]["signals"]:
    print(sig["signal"], "->", sig["verdict"])
print("confidence:", f["evidence"]["confidence"])
print("Wireshark:", f["display_filter"])'''),
        _md("The capture beside the server settles it: the failed request never arrived there, and the server sent no RST."),
        _code('''at_server = sockscope.load(ROOT / "captures/lab/middlebox-rst/server.pcap")
at_server.connections[["conn_id", "requests", "closed_by", "close_kind", "server_rst_frame"]]'''),
        _code('''assert list(mb.findings["kind"]) == ["middlebox_rst"], "the router, and nobody else, is blamed"
assert at_server.findings.empty and at_server.connections["server_rst_frame"].isna().all()'''),
        _md("""
The other deaths the lab recorded each have their own finding: `silent_drop` (the router
dropped instead), `dead_peer` (keep-alive probes unanswered), `zero_window_stall`,
`server_abort` grouped when a killed process closed several sockets in the same millisecond,
`stale_reuse` for the keep-alive race, and `client_idle_close` (information only) for a pool
retiring an idle socket. The README's table lists them with the capture behind each.
"""),
    ]


def before_after() -> list:
    return [
        _md("""
# Before and after the fix: the validation plan as assertions

The fix: `GET /files` responses carry `Connection: close`, so the socket that served them
is never handed to `POST /exec`. Each check of the validation plan is one cell that
asserts on the *after* capture, and shows the *before* capture failing the same check.
"""),
        _code(SETUP + '''

before = sockscope.load(ROOT / "captures/crafted/incident-before-fix.pcap")
after = sockscope.load(ROOT / "captures/crafted/incident-after-fix.pcap")
before, after'''),
        _md("## 1. Every `GET /files` response carries `Connection: close`"),
        _code('''def files_responses(cap):
    r = cap.requests
    return r[(r["method"] == "GET") & r["uri"].str.startswith("/files")]

def all_close(cap):
    resp = files_responses(cap)["resp_connection"].fillna("").str.lower()
    return bool(len(resp)) and bool(resp.str.contains("close").all())

print("before:", all_close(before), " after:", all_close(after))
assert not all_close(before)
assert all_close(after)'''),
        _md("## 2. `POST /exec` never goes out on a socket that carried `GET /files` before it\n"
            "The rule is ordered: a later `GET /files` on the socket of a finished `POST /exec` is fine "
            "(`sockscope check --never-after 'GET /files' 'POST /exec'`)."),
        _code('''from sockscope.analysis.check import NeverAfter, RequestKind

rule = NeverAfter(RequestKind.parse("GET /files"), RequestKind.parse("POST /exec"))
for name, cap in (("before", before), ("after", after)):
    print(name, sockscope.check(cap, [rule]).results[0].reason)
assert not sockscope.check(before, [rule]).ok
assert sockscope.check(after, [rule]).ok'''),
        _md("## 3. No client-side close while a request is outstanding"),
        _code('''from sockscope.analysis import close_attribution

def client_kills(cap):
    closes = close_attribution(cap.connections, cap.requests)
    return [c.conn_id for c in closes.values() if c.closer == "client" and c.outstanding]

print("before:", client_kills(before), " after:", client_kills(after))
assert client_kills(before)
assert not client_kills(after)'''),
        _md("## 4. No error findings after the fix"),
        _code('''print(before.findings["kind"].value_counts().to_string())
assert (before.findings["severity"] == "error").any()
assert not (after.findings["severity"] == "error").any()'''),
        _md("## Side by side"),
        _code("sockscope.plot.timeline(before)"),
        _code("sockscope.plot.timeline(after)"),
    ]


def explore() -> list:
    return [
        _md("""
# Explore your capture

A template: set `CAPTURE` to your file (pcap, pcapng, optionally gzipped) and run all
cells. Record one with e.g. `tcpdump -i any -s 0 -w capture.pcap port 8000`.
"""),
        _code(SETUP + '''

CAPTURE = ROOT / "captures/crafted/mixed.pcap"   # <- your capture here
cap = sockscope.load(CAPTURE)
cap, cap.facts.get("warnings")'''),
        _md("## Tables"),
        _code("cap.connections.head(20)"),
        _code("cap.requests.head(20)"),
        _code("cap.gaps.sort_values('duration_s', ascending=False).head(20)"),
        _code("cap.findings[['kind', 'severity', 'conn_id', 'request_index', 'summary']]"),
        _md("## Slicing\n`df.sockscope.on(conn_id)` for one connection's rows, `.filter()` for the Wireshark filter, `.by_type()` for request types."),
        _code('''worst = cap.findings.sort_values("severity", ascending=False).head(1)
cid = int(worst["conn_id"].iloc[0]) if len(worst) else int(cap.connections["conn_id"].iloc[0])
cap.requests.sockscope.on(cid)'''),
        _code('''print("Wireshark filter for connections with findings:", cap.findings.sockscope.filter())'''),
        _code('''cap.requests.sockscope.by_type().agg(count=("index", "size"), median_ttfb_s=("ttfb_s", "median"),
                                     unanswered=("outcome", lambda s: int((s != "complete").sum())))'''),
        _md("## Who closes, after how long"),
        _code('''cap.connections.groupby(["closed_by", "close_kind"], observed=True)["idle_before_close_s"].describe()'''),
        _code("sockscope.plot.idle_closes(cap)"),
        _md("## Timeline\nAll connections, or the worst `max_conns`; pass `conn_ids=[...]` to choose."),
        _code("sockscope.plot.timeline(cap, max_conns=30)"),
        _md("## Export\nFiles for other tools: `json`, `csv`, `parquet`, or Zeek's `conn.log`/`http.log`."),
        _code('''import tempfile
from sockscope.export import export

out = Path(tempfile.mkdtemp(prefix="sockscope-"))
export(cap, out, "zeek")'''),
    ]


NOTEBOOKS = {
    "01-socket-hang-up.ipynb": socket_hang_up,
    "02-before-after.ipynb": before_after,
    "03-explore-your-capture.ipynb": explore,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    # Stable cell ids: without them nbformat draws random ones and every run would differ.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"
    return nb


def render(name: str) -> str:
    """The exact text of a notebook file."""
    return nbformat.writes(build(name)) + "\n"


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else HERE
    for name in NOTEBOOKS:
        (out_dir / name).write_text(render(name), encoding="utf-8")
        print(out_dir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
