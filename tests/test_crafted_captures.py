"""The crafted captures are up to date, and their truth files agree with their packets.

The truth files in captures/crafted/ are what sockscope's own tests will compare against,
so they are checked here independently of sockscope: packets are read with scapy only,
connections are re-derived from 4-tuples and SYNs, and every figure a truth file states
about frames, closes, idle time and byte counts is recomputed from the packets.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import struct
import sys
from pathlib import Path

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III  # noqa: F401  (registers GRE 0x88BE/0x22EB)
from scapy.contrib.geneve import GENEVE  # noqa: F401  (registers UDP 6081)
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.vxlan import VXLAN
from scapy.packet import bind_layers
from scapy.utils import rdpcap

bind_layers(UDP, VXLAN, dport=8472)     # Linux's old VXLAN port, which scapy does not know

CRAFTED = Path(__file__).resolve().parents[1] / "captures" / "crafted"
NOT_GENERATED = {"make_crafted.py", "README.md"}


def _load_generator():
    # load by path (captures/ is not a package) without leaving __pycache__ next to the captures
    spec = importlib.util.spec_from_file_location("make_crafted", CRAFTED / "make_crafted.py")
    mod = importlib.util.module_from_spec(spec)
    before, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = before
    return mod


gen = _load_generator()
TRUTHS = sorted(p.name for p in CRAFTED.glob("*.truth.json"))


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("crafted")
    return out, gen.build_all(out)


def test_committed_captures_are_up_to_date(regenerated):
    out, names = regenerated
    committed = {p.name for p in CRAFTED.iterdir() if p.is_file() and p.name not in NOT_GENERATED}
    assert committed == set(names), "run: python captures/crafted/make_crafted.py"
    stale = [n for n in names if (CRAFTED / n).read_bytes() != (out / n).read_bytes()]
    assert not stale, f"stale, regenerate: {stale}"


def test_generation_is_byte_identical_across_runs(regenerated, tmp_path):
    out, names = regenerated
    assert gen.build_all(tmp_path) == names
    for n in names:
        assert (tmp_path / n).read_bytes() == (out / n).read_bytes(), n


def test_readme_has_a_row_per_capture():
    readme = (CRAFTED / "README.md").read_text()
    for t in TRUTHS:
        assert f"`{t[: -len('.truth.json')]}`" in readme


def _raw_records(data, endian, nano):
    """(ts_ns, bytes) records of a classic pcap, parsed with struct only."""
    out, off = [], 24
    while off < len(data):
        sec, frac, caplen, _ = struct.unpack_from(endian + "IIII", data, off)
        out.append((sec * gen.S + frac * (1 if nano else gen.US), data[off + 16: off + 16 + caplen]))
        off += 16 + caplen
    return out


def test_scapy_writer_and_own_writer_agree():
    # Little-endian microsecond files come from scapy's writer, the others from
    # make_crafted.pcap_bytes; rewriting one with the other must give the same bytes.
    for t in TRUTHS:
        truth = json.loads((CRAFTED / t).read_text())
        if truth["file_format"] != "pcap":
            continue
        data = (CRAFTED / truth["capture"]).read_bytes()
        linktype = struct.unpack_from("<I", data, 20)[0]
        assert gen.pcap_bytes(_raw_records(data, "<", False), linktype) == data


MAGIC = {
    "pcap": b"\xd4\xc3\xb2\xa1",
    "pcap-nanosecond": b"\x4d\x3c\xb2\xa1",
    "pcap-big-endian": b"\xa1\xb2\xc3\xd4",
    "pcapng": b"\x0a\x0d\x0d\x0a",
    "pcap-gzip": b"\x1f\x8b",
}


# --------------------------------------------------------------------------- per capture


def _l3(pkt):
    """(ip layer trimmed of link padding, src, dst) or None for non-TCP frames."""
    if not pkt.haslayer(TCP):
        return None
    ip = pkt[TCP].underlayer           # the innermost IP: tunnels carry the connection inside
    if isinstance(ip, IP):
        return IP(bytes(ip)[: ip.len])
    return IPv6(bytes(ip)[: 40 + ip.plen])


def _checksums_ok(ip):
    tcp = ip[TCP]
    fresh = ip.copy()
    del fresh[TCP].chksum
    if isinstance(fresh, IP):
        del fresh.chksum
    fresh = fresh.__class__(bytes(fresh))
    ok = fresh[TCP].chksum == tcp.chksum
    if isinstance(ip, IP):
        ok = ok and fresh.chksum == ip.chksum
    return ok


def _connections(packets):
    """Split TCP frames into connections by 4-tuple; a SYN without ACK on a tuple that
    already carried traffic starts a new connection (port reuse), unless it repeats the
    sequence number of the connection's own SYN (a retransmitted SYN)."""
    conns, current = [], {}
    for frame, pkt in enumerate(packets, 1):
        ip = _l3(pkt)
        if ip is None:
            continue
        tcp = ip[TCP]
        ends = tuple(sorted([(ip.src, tcp.sport), (ip.dst, tcp.dport)]))
        syn_only = tcp.flags.S and not tcp.flags.A
        conn = current.get(ends)
        again = conn is not None and syn_only and conn.get("syn_seq") == int(tcp.seq)
        if conn is None or (syn_only and conn["frames"] and not again):
            conn = {"frames": [], "syn_seq": int(tcp.seq) if syn_only else None}
            conns.append(conn)
            current[ends] = conn
        conn["frames"].append((frame, pkt.time, ip))
    return conns


def _span(frames, base):
    """Bytes in sequence space covered by payload, and the union of captured intervals."""
    intervals = sorted(((int(ip[TCP].seq) - base) % 2**32, (int(ip[TCP].seq) - base) % 2**32 + len(ip[TCP].payload))
                       for _, _, ip in frames if len(ip[TCP].payload))
    union = []
    for a, b in intervals:
        if union and a <= union[-1][1]:
            union[-1][1] = max(union[-1][1], b)
        else:
            union.append([a, b])
    top = max((b for _, b in intervals), default=0)
    return top, sum(b - a for a, b in union)


@pytest.mark.parametrize("truth_name", TRUTHS)
def test_truth_agrees_with_packets(truth_name):
    truth = json.loads((CRAFTED / truth_name).read_text())
    path = CRAFTED / truth["capture"]
    head = path.read_bytes()[:4]
    assert head.startswith(MAGIC[truth["file_format"]])
    if truth["file_format"] == "pcap-gzip":
        assert not path.name.endswith(".gz")
        assert gzip.decompress(path.read_bytes())[:4] == MAGIC["pcap"]
    packets = rdpcap(str(path))
    assert len(packets) == truth["frames"]
    for n in truth["non_tcp_frames"]:
        assert not packets[n - 1].haslayer(TCP)

    for frame, pkt in enumerate(packets, 1):
        ip = _l3(pkt)
        if ip is not None:
            assert _checksums_ok(ip), f"bad checksum in frame {frame}"

    conns = _connections(packets)
    assert len(conns) == len(truth["connections"])
    for want, got in zip(truth["connections"], conns):
        _check_connection(want, got["frames"])
    _check_findings(truth)


def _check_connection(want, frames):
    cid = want["conn_id"]
    client = (want["client_ip"], want["client_port"])
    server = (want["server_ip"], want["server_port"])

    def side(ip):
        return "client" if (ip.src, ip[TCP].sport) == client else "server"

    first_ip = frames[0][2]
    assert {(first_ip.src, first_ip[TCP].sport), (first_ip.dst, first_ip[TCP].dport)} == {client, server}
    # roles from the handshake: the client's SYN, or (its SYN not captured) the server's SYN-ACK
    starts_with_syn = first_ip[TCP].flags.S and (not first_ip[TCP].flags.A) == (side(first_ip) == "client")
    assert (want["roles_from"] == "syn") == bool(starts_with_syn), cid
    assert want["first_frame"] == frames[0][0] and want["last_frame"] == frames[-1][0]
    assert want["client_pkts"] == sum(side(ip) == "client" for _, _, ip in frames)
    assert want["server_pkts"] == sum(side(ip) == "server" for _, _, ip in frames)

    # payload byte counts from sequence numbers; capture loss shows as missed bytes
    missed = 0
    probes = set(want["keepalive_probe_frames"])
    for who in ("client", "server"):
        mine = [f for f in frames if side(f[2]) == who]
        if not mine:
            continue        # a side that never answered (SYNs nobody acknowledged)
        syn = [ip for _, _, ip in mine if ip[TCP].flags.S]
        base = int(syn[0][TCP].seq) + 1 if syn else int(mine[0][2][TCP].seq)
        top, have = _span([f for f in mine if f[0] not in probes], base)
        assert want[f"{who}_bytes"] == top, (cid, who)
        missed += top - have
    assert want["missed_bytes"] == missed

    # retransmissions: payload that overlaps bytes already seen from that side
    seen, rexmit = {"client": [], "server": []}, 0
    for frame, _, ip in frames:
        n = len(ip[TCP].payload)
        if not n or frame in probes:
            continue
        a = int(ip[TCP].seq)
        iv = seen[side(ip)]
        if any((a - x) % 2**32 < y - x or (x - a) % 2**32 < n for x, y in iv):
            rexmit += 1
        iv.append((a, a + n))
    assert want["retransmits"] == rexmit

    closes = [f for f in frames if f[2][TCP].flags.F or f[2][TCP].flags.R]
    # a side never captured: the seen side's ACK one past everything it had acknowledged,
    # and never passed, acknowledges the unseen side's FIN, which came first
    by_ack = None
    sides = {side(ip) for _, _, ip in frames}
    if len(sides) == 1:
        acks = [(f, int(f[2][TCP].ack)) for f in frames if f[2][TCP].flags.A and not f[2][TCP].flags.R]
        for k in range(1, len(acks)):
            step = (acks[k][1] - acks[k - 1][1]) % 2**32
            if step == 1 and all(a == acks[k][1] for _, a in acks[k:]):
                by_ack = acks[k][0]
                break
    if by_ack is not None and (not closes or by_ack[0] <= closes[0][0]):
        closes = [by_ack]
    if want["close_frame"] is None:
        assert not closes
        return
    frame, t_close, ip = closes[0]
    assert frame == want["close_frame"]
    if by_ack is not None and closes[0] is by_ack:
        assert side(ip) != want["closed_by"] and want["close_kind"] == "FIN"
    else:
        assert side(ip) == want["closed_by"]
        assert ("RST" if ip[TCP].flags.R else "FIN") == want["close_kind"]
    data = [f for f in frames if len(f[2][TCP].payload) and f[0] < frame and f[0] not in probes]
    if want["last_payload_frame"] is None:
        assert not data and want["idle_before_close_s"] is None
        return
    last_frame, t_last, _ = data[-1]
    assert last_frame == want["last_payload_frame"]
    assert abs(float(t_close - t_last) - want["idle_before_close_s"]) < 1e-6

    # requests: the request line and User-Agent are in the client's bytes, statuses in the server's
    cli = b"".join(bytes(ip[TCP].payload) for _, _, ip in frames if side(ip) == "client")
    srv = b"".join(bytes(ip[TCP].payload) for _, _, ip in frames if side(ip) == "server")
    for r in want["requests"]:
        if r["method"]:
            assert f"{r['method']} {r['uri']} ".encode() in cli
        if r["user_agent"]:
            assert f"User-Agent: {r['user_agent']}\r\n".encode() in cli
        if r["status"] is not None:
            assert f" {r['status']} ".encode() in srv
    if want["sni"]:
        assert want["sni"].encode() in cli


def _check_findings(truth):
    conns = truth["connections"]
    for f in truth["findings"]:
        c = conns[f["conn_id"]]
        if f["kind"] == "client_idle_timeout":
            assert c["closed_by"] == "client"
            assert abs(c["idle_before_close_s"] - truth["inferred_timeout_s"]) < 1e-6
        elif f["kind"] == "server_idle_close":
            # nothing was waiting at the close; a request sent after it is a stale reuse
            stale = {g["request_index"] for g in truth["findings"]
                     if g["kind"] == "stale_reuse" and g["conn_id"] == f["conn_id"]}
            # (one stale_reuse finding per connection, at its first such request: the
            # unanswered requests are that one and the ones after it)
            assert c["closed_by"] == "server" and len(stale) <= 1
            after = c["requests"][min(stale) - 1:] if stale else []
            assert c["unanswered"] == sum(r["outcome"] != "complete" for r in after) >= len(stale)
        elif f["kind"] == "stale_reuse":
            assert c["closed_by"] == "server" and c["close_kind"] == "FIN"
            assert c["requests"][f["request_index"] - 1]["outcome"] != "complete"
        elif f["kind"] == "refused":
            assert c["state"] == "REJ" and c["server_pkts"] == 1
        elif f["kind"] == "syn_unanswered":
            assert c["state"] == "S0" and c["server_pkts"] == 0 and c["client_pkts"] >= 2
        elif f["kind"] == "response_after_close":
            assert c["closed_by"] == "client" and c["last_frame"] > c["close_frame"]
        elif f["kind"] == "connection_reuse":
            assert len({r["user_agent"] for r in c["requests"]}) > 1
        elif f["kind"] == "server_abort":
            assert c["closed_by"] == "server" and c["unanswered"] > 0
    # every client close at the inferred timer with a request outstanding is flagged
    flagged = {f["conn_id"] for f in truth["findings"] if f["kind"] == "client_idle_timeout"}
    for c in conns:
        timer = truth["inferred_timeout_s"]
        if c["closed_by"] == "client" and c["unanswered"] and c["idle_before_close_s"] is not None \
                and timer is not None and abs(c["idle_before_close_s"] - timer) < 1e-6:
            assert c["conn_id"] in flagged
