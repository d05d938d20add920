#!/usr/bin/env python3
"""Baseline readers that bench/run.py times as child processes.

    python bench/readers.py scapy FILE [--limit N] [--result OUT.json]
    python bench/readers.py dpkt  FILE [--limit N] [--result OUT.json]
    NFSTREAM_VENV/bin/python bench/readers.py nfstream FILE [--result OUT.json]

Each one decodes every packet down to TCP the way a user of that library would and
writes {"packets", "tcp", "import_s", "loop_s"} to --result.  Import and loop time are
reported separately so run.py can extrapolate a slice (scapy is too slow to read 1M
packets within a benchmark run) without multiplying the interpreter start-up as well.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def read_scapy(path: str, limit: int | None) -> tuple[int, int, float, float]:
    t0 = time.perf_counter()
    from scapy.layers.inet import TCP
    from scapy.utils import PcapReader
    t1 = time.perf_counter()
    n = tcp = 0
    with PcapReader(path) as reader:   # streams; each packet is fully dissected
        for pkt in reader:
            n += 1
            if TCP in pkt:
                tcp += 1
            if limit and n >= limit:
                break
    return n, tcp, t1 - t0, time.perf_counter() - t1


def read_dpkt(path: str, limit: int | None) -> tuple[int, int, float, float]:
    t0 = time.perf_counter()
    import dpkt
    t1 = time.perf_counter()
    n = tcp = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            n += 1
            eth = dpkt.ethernet.Ethernet(buf)   # decodes IP and TCP eagerly
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                tcp += 1
            if limit and n >= limit:
                break
    return n, tcp, t1 - t0, time.perf_counter() - t1


def read_nfstream(path: str, limit: int | None) -> tuple[int, int, float, float]:
    """NFStream's flows as a pandas frame, as its users call it: its C engine, no payload
    dissection (n_dissections=0), no statistical features; ``tcp`` is the TCP flow count.
    It runs in its own environment (bench/run.py installs it), never in the project's."""
    t0 = time.perf_counter()
    from nfstream import NFStreamer
    t1 = time.perf_counter()
    df = NFStreamer(source=path, n_dissections=0, statistical_analysis=False).to_pandas()
    n = int(df["bidirectional_packets"].sum()) if len(df) else 0
    tcp = int((df["protocol"] == 6).sum()) if len(df) else 0
    return n, tcp, t1 - t0, time.perf_counter() - t1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("reader", choices=["scapy", "dpkt", "nfstream"])
    ap.add_argument("file")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many packets")
    ap.add_argument("--result", help="write timings as JSON here")
    a = ap.parse_args()
    fn = {"scapy": read_scapy, "dpkt": read_dpkt, "nfstream": read_nfstream}[a.reader]
    n, tcp, import_s, loop_s = fn(a.file, a.limit or None)
    out = {"packets": n, "tcp": tcp, "import_s": import_s, "loop_s": loop_s}
    if a.result:
        with open(a.result, "w") as f:
            json.dump(out, f)
    else:
        json.dump(out, sys.stdout)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
