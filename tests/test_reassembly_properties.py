"""Reassembly invariants: any segmentation, duplication and reordering of one byte stream
gives the same bytes, in order, to the application layer (hypothesis).

The test writes a real pcap with its own minimal writer and runs the compiled tracker with a
recording session in place of the HTTP layer, so the property holds for the code users run.
"""

from __future__ import annotations

import io
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockscope.capture import open_source
from sockscope.tcp._tracker import RowStore, Tracker

CLIENT, SERVER = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _packet(src, dst, sport, dport, seq, ack, flags, payload=b""):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return ip + tcp + payload


def _pcap(packets) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]   # raw IPv4 link type
    for i, pkt in enumerate(packets):
        out.append(struct.pack("<IIII", 1_700_000_000, i, len(pkt), len(pkt)) + pkt)
    return b"".join(out)


class Recorder:
    """Stands in for the HTTP session: keeps what the reassembler delivers."""

    instances: list["Recorder"] = []

    def __init__(self):
        self.client = bytearray()
        self.server = bytearray()
        self.client_gaps = 0
        self.exchanges = []
        self.violations = []
        self.pending = 0
        Recorder.instances.append(self)

    def client_data(self, data, ts, frame):
        self.client += data

    def server_data(self, data, ts, frame):
        self.server += data

    def client_gap(self, n, ts, frame):
        self.client_gaps += n

    def server_gap(self, n, ts, frame):
        pass

    def finish(self):
        return []


def reassemble(stream: bytes, cuts: list[int], order: list[int], dups: list[int], isn: int) -> Recorder:
    bounds = sorted({c % len(stream) for c in cuts} | {0, len(stream)})
    segs = [(bounds[i], stream[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1) if bounds[i] < bounds[i + 1]]
    sent = [segs[i % len(segs)] for i in order] + segs      # reordered copies, then all of them
    sent += [segs[i % len(segs)] for i in dups]              # late duplicates
    pkts = [_packet(CLIENT, SERVER, 40000, 80, isn, 0, 0x02),
            _packet(SERVER, CLIENT, 80, 40000, 7, isn + 1, 0x12),
            _packet(CLIENT, SERVER, 40000, 80, isn + 1, 8, 0x10)]
    for off, data in sent:
        pkts.append(_packet(CLIENT, SERVER, 40000, 80, isn + 1 + off, 8, 0x18, data))
    pkts.append(_packet(SERVER, CLIENT, 80, 40000, 8, isn + 1 + len(stream), 0x10))
    Recorder.instances.clear()
    tracker = Tracker(RowStore(lambda *a: (0, 0)), session_factory=Recorder,
                      detect=lambda c, s: ("http", None))
    tracker.run(open_source(io.BytesIO(_pcap(pkts))))
    tracker.finish()
    assert len(Recorder.instances) == 1
    return Recorder.instances[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.binary(min_size=8, max_size=3000), cuts=st.lists(st.integers(0, 5000), max_size=25),
       order=st.lists(st.integers(0, 60), max_size=30), dups=st.lists(st.integers(0, 60), max_size=10),
       isn=st.integers(0, 2**32 - 1))
def test_any_segmentation_duplication_and_reordering_gives_the_same_bytes(stream, cuts, order, dups, isn):
    rec = reassemble(stream, cuts, order, dups, isn)
    assert bytes(rec.client) == stream
    assert rec.client_gaps == 0


def test_sequence_wraparound_mid_stream():
    stream = bytes(range(256)) * 20
    rec = reassemble(stream, [1000, 2000, 3000, 4000], [3, 1, 2], [0, 2], 2**32 - 2500)
    assert bytes(rec.client) == stream
