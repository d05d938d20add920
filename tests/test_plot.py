"""The plots build for the crafted captures and show what they claim (asserted on the artists)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

import sockscope
from sockscope.plot import PlotAccessor, idle_closes, timeline
from sockscope.plot._timeline import select_connections

CRAFTED = Path(__file__).resolve().parents[1] / "captures" / "crafted"
CAPTURES = ["incident-before-fix.pcap", "incident-after-fix.pcap", "incident-late-rst.pcap", "mixed.pcap",
            "rst-vs-fin.pcap", "pipelining.pcap", "port-reuse.pcap", "tls-clienthello.pcap"]


def _texts(fig) -> list[str]:
    ax = fig.axes[0]
    return [t.get_text() for t in ax.texts] + [t.get_text() for t in ax.get_yticklabels()]


def _lanes(fig) -> list[str]:
    return [p.get_gid() for p in fig.axes[0].patches if (p.get_gid() or "").startswith("lane-")]


@pytest.fixture(scope="module")
def before():
    return sockscope.load(CRAFTED / "incident-before-fix.pcap")


@pytest.mark.parametrize("name", CAPTURES)
def test_figures_build_and_save(name, tmp_path):
    cap = sockscope.load(CRAFTED / name)
    fig = timeline(cap)
    assert len(_lanes(fig)) == len(cap.connections)
    assert len(fig.axes[0].get_yticks()) == len(cap.connections)
    out = tmp_path / "t.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig2 = idle_closes(cap)
    fig2.savefig(tmp_path / "i.svg")
    assert (tmp_path / "i.svg").read_text().lstrip().startswith("<?xml")


def test_timeline_tells_the_incident(before):
    fig = timeline(before)
    texts = _texts(fig)
    assert any("POST /exec" in t for t in texts)
    assert any("GET /files/{id}" in t for t in texts)          # path templated
    assert sum("5.00 s" in t for t in texts) == 3               # the fatal silence, on each lane
    assert sum(t.startswith("client FIN after 5.000 s") for t in texts) == 3
    assert any("client_idle_timeout" in t for t in texts)
    # lanes with an error finding: red label and red outline
    for tl in fig.axes[0].get_yticklabels():
        assert tl.get_color() == "#cc0000"
    lane_edges = [p.get_edgecolor() for p in fig.axes[0].patches if (p.get_gid() or "").startswith("lane-")]
    assert all(e[0] > 0.7 and e[1] < 0.1 for e in lane_edges)
    # the time axis says when t = 0 is, in UTC
    assert "2026-02-10 09:47:22.879000 UTC" in fig.axes[0].get_xlabel()
    assert fig.legends and len(fig.legends[0].get_texts()) >= 8


def test_late_data_and_rst_marked():
    cap = sockscope.load(CRAFTED / "incident-late-rst.pcap")
    texts = _texts(timeline(cap))
    assert sum("late server data 193 B" in t for t in texts) == 2
    assert any("client RST" in t for t in texts)


def test_conn_ids_and_worst_first():
    cap = sockscope.load(CRAFTED / "mixed.pcap")
    fig = timeline(cap, conn_ids=[1, 3])
    assert _lanes(fig) == ["lane-1", "lane-3"]
    # max_conns: the two connections with error findings come before longer idle ones
    assert set(select_connections(cap, max_conns=2)) == {0, 3}
    # then the longest silence (conn 1: 15 s idle keep-alive)
    assert set(select_connections(cap, max_conns=3)) == {0, 1, 3}
    fig = timeline(cap, max_conns=2)
    assert "2 of 7 connections" in fig.axes[0].get_title(loc="left")
    with pytest.raises(ValueError):
        timeline(cap, conn_ids=[99])


def test_idle_closes_annotates_the_timer(before):
    fig = idle_closes(before)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("inferred client inactivity timeout: 5.00 s" in t and "3 closes" in t for t in texts)
    dots = [c for c in fig.axes[0].collections if c.get_gid() == "closes-client-outstanding"]
    assert len(dots) == 1 and len(dots[0].get_offsets()) == 3


def test_accessor_and_existing_axes(before):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    acc = PlotAccessor(before)
    assert len(_lanes(acc.timeline())) == 3
    fig = Figure()
    ax1, ax2 = fig.subplots(2)
    assert acc.timeline(ax=ax1) is fig and acc.idle_closes(ax=ax2) is fig
    assert ax1.get_legend() is not None     # shared figure: the legend goes on the axes


def test_plot_cli(tmp_path):
    from click.testing import CliRunner

    from sockscope import cli_plot  # noqa: F401  (registers the commands)
    from sockscope.cli import main

    out = tmp_path / "t.svg"
    r = CliRunner().invoke(main, ["plot", str(CRAFTED / "incident-before-fix.pcap"), "-o", str(out), "--conn", "1"])
    assert r.exit_code == 0, r.output
    assert "<svg" in out.read_text()
    r = CliRunner().invoke(main, ["plot", str(CRAFTED / "mixed.pcap"), "--kind", "idle", "-o", str(tmp_path / "i.png")])
    assert r.exit_code == 0 and (tmp_path / "i.png").stat().st_size > 1000
    r = CliRunner().invoke(main, ["plot", str(CRAFTED / "mixed.pcap"), "-o", str(tmp_path / "x.gif")])
    assert r.exit_code == 2
    assert "Example" in CliRunner().invoke(main, ["plot", "--help"]).output


def test_import_sockscope_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, sockscope, sockscope.plot, sockscope.accessor; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
