"""Tunnels: the reader looks inside VXLAN, Geneve, GRE (plain, keyed, Ethernet bridging),
ERSPAN II/III, IP-in-IP, 6in4, 4in6 and tunnels in tunnels, so the inner connection is the
row -- the same connections Wireshark's tshark finds -- and the facts say which tunnels the
packets came in. The captures are crafted (``captures/crafted/tun-*.pcap``, each with its
truth file, checked like every crafted capture by test_crafted_captures.py).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import sockscope
from sockscope.capture import open_source

CRAFTED = Path(__file__).resolve().parents[1] / "captures/crafted"
TUNNELS = sorted(CRAFTED.glob("tun-*.pcap"))
KIND = {"vxlan": "vxlan", "vxlan-8472": "vxlan", "vxlan-vlan": "vxlan", "geneve": "geneve", "gre": "gre",
        "gre-key": "gre", "gre-teb": "gre", "erspan2": "erspan", "erspan3": "erspan", "ipip": "ipip",
        "6in4": "ipip", "4in6": "ipip", "vxlan-in-gre": "gre"}
TUNNEL_ID = {"vxlan": 100, "vxlan-8472": 100, "vxlan-vlan": 100, "geneve": 200, "gre-key": 100, "gre-teb": 101,
             "erspan2": 7, "erspan3": 9}


def test_every_encapsulation_has_a_capture() -> None:
    assert {p.stem[4:] for p in TUNNELS} == set(KIND)


@pytest.mark.parametrize("path", TUNNELS, ids=lambda p: p.stem)
def test_inner_connection_is_the_row(path: Path) -> None:
    cap = sockscope.load(path)
    assert len(cap.connections) == 1
    c = cap.connections.iloc[0]
    assert c["client_ip"] in ("10.0.0.5", "fd00::5") and c["server_port"] == 8000   # never the VTEPs
    assert c["state"] == "SF" and c["requests"] == 1
    n = cap.facts["packets"]
    assert cap.facts["tunnels"] == {KIND[path.stem[4:]]: n}
    assert cap.facts["status_counts"] == {"tcp": n}


@pytest.mark.parametrize("path", TUNNELS, ids=lambda p: p.stem)
def test_tunnel_of_each_packet(path: Path) -> None:
    pkts = list(open_source(str(path)).packets())
    kind = path.stem[4:]
    assert {p["tunnel"] for p in pkts} == {KIND[kind]}
    assert {p["tunnel_id"] for p in pkts} == {TUNNEL_ID.get(kind, 0)}


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("path", TUNNELS, ids=lambda p: p.stem)
def test_same_connections_as_tshark(path: Path) -> None:
    # tshark decodes VXLAN on 4789 only; Linux's old 8472 needs saying
    cmd = ["tshark", "-n", "-r", str(path), "-d", "udp.port==8472,vxlan", "-T", "fields",
           "-e", "tcp.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines() if line]
    streams = {r[0] for r in rows}
    cap = sockscope.load(path)
    assert len(streams) == len(cap.connections)
    # the innermost source addresses are the connection's (tshark lists outer ones first)
    c = cap.connections.iloc[0]
    field = 2 if ":" in c["client_ip"] else 1          # 6in4 / 4in6: the other family is the outer one
    inner = {r[field].split(",")[-1] for r in rows}
    assert inner == {c["client_ip"], c["server_ip"]}


@pytest.mark.parametrize("path", TUNNELS, ids=lambda p: p.stem)
def test_tunnel_column(path: Path) -> None:
    kind = path.stem[4:]
    c = sockscope.load(path).connections.iloc[0]
    assert c["tunnel"] == KIND[kind]
    assert c["tunnel_id"] == TUNNEL_ID.get(kind, 0)


def test_no_tunnel_is_null() -> None:
    c = sockscope.load(CRAFTED / "mixed.pcap").connections
    assert c["tunnel"].isna().all() and c["tunnel_id"].isna().all()


def test_summary_shows_the_tunnel() -> None:
    import os
    import sys

    env = dict(os.environ, COLUMNS="220")
    out = subprocess.run([sys.executable, "-m", "sockscope", "summary", str(CRAFTED / "tun-vxlan.pcap")],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "vxlan vni 100" in out and "packets vxlan" in out
    out = subprocess.run([sys.executable, "-m", "sockscope", "summary", str(CRAFTED / "mixed.pcap")],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "tunnel" not in out


def test_mirror_copies_are_told_from_retransmissions(tmp_path: Path) -> None:
    """Ingress and egress mirror sessions deliver each packet twice (here VNI 100 and 101,
    40 µs apart): packets and history count both copies, as Zeek and Wireshark do (Zeek's
    own m57 trace has every packet twice and its baseline says so), but the copies are
    counted and said, and never taken for retransmissions."""
    from scapy.layers.inet import UDP
    from scapy.layers.vxlan import VXLAN
    from scapy.utils import PcapWriter, rdpcap

    src = CRAFTED / "tun-vxlan.pcap"
    out = tmp_path / "mirror-twice.pcap"
    w = PcapWriter(str(out), linktype=1, sync=True)
    for pkt in rdpcap(str(src)):
        w.write(pkt)
        copy = pkt.copy()
        copy[VXLAN].vni = 101
        del copy[UDP].chksum
        copy = copy.__class__(bytes(copy))         # checksums and lengths computed again
        copy.time = pkt.time + 0.00004
        w.write(copy)
    w.close()
    once, twice = sockscope.load(src), sockscope.load(out)
    cols = ["client_bytes", "server_bytes", "retransmits", "state", "closed_by", "close_kind", "requests",
            "missed_bytes", "idle_before_close_s"]
    assert twice.connections[cols].to_dict("records") == once.connections[cols].to_dict("records")
    c1, c2 = once.connections.iloc[0], twice.connections.iloc[0]
    assert (c2["client_pkts"], c2["server_pkts"]) == (2 * c1["client_pkts"], 2 * c1["server_pkts"])
    assert "T" in c2["history"] and "T" not in c1["history"]       # Zeek's letters, as Zeek writes them
    assert c2["retransmits"] == 0
    assert twice.facts["duplicate_packets"] == once.facts["packets"] == 9
    assert any("appear twice" in w for w in twice.facts["warnings"])
    assert once.facts["duplicate_packets"] == 0
    assert twice.findings.empty
