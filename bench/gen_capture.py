#!/usr/bin/env python3
"""Deterministic synthetic HTTP/1.1 capture generator for the sockscope benchmark.

    python bench/gen_capture.py --packets 1000000 --out bench/data/x.pcap [--seed 1]

Writes a classic (microsecond) pcap of Ethernet/IPv4/TCP traffic between many clients
and three HTTP servers and prints the ground truth (connections, requests, ...) as JSON.

Why a home-grown writer: scapy/dpkt build packets at ~10-50k packets/s, far too slow for
the 1M-packet benchmark file.  Instead the simulation only records a few integers per
packet (time, connection, direction, flags, relative seq/ack, payload id); headers and
checksums are then computed for all packets at once with numpy and the payload bytes,
which come from a small pool of pre-rendered HTTP messages, are spliced in.

The capture point is modelled as the server host: client packets are stamped when they
arrive there, server packets when they leave, so a server reaction follows its trigger
by a few microseconds and a client reaction follows by one RTT.

Everything is driven by one ``random.Random(seed)``, so a (packets, seed) pair always
produces the byte-identical file.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from array import array
from pathlib import Path

import numpy as np

# Bump when the output for a given (packets, seed) changes, so bench/run.py's cache
# (keyed by this version) never serves a stale capture.
GEN_VERSION = 1

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
C2S, S2C = 0, 1

# 2024-03-14 12:00:00 UTC: a fixed epoch so the file does not depend on the wall clock.
EPOCH_US = 1_710_417_600 * 1_000_000

MSS = 1460
WINDOW = 65535          # constant on both sides: no scaling, so never a window update
SERIALISE_US = 12       # 1460 B at 1 Gbit/s: spacing of back-to-back segments
INITIAL_CWND = 10       # segments the server may send before the first ACK returns
DELACK_US = 40_000      # Linux delayed-ACK timer: pure ACK when the app is slow
INCIDENT_IDLE_US = 5_000_000   # the client's request timeout in the incident pattern

# SYN/SYN-ACK options: MSS 1460, NOP, NOP, SACK permitted.  They are stored as the
# "payload" of the SYN packets with the TCP data offset raised accordingly, which keeps
# every packet's fixed header at 20 bytes for the vectorised header builder.
SYN_OPTIONS = bytes([2, 4, 0x05, 0xB4, 1, 1, 4, 2])

SERVERS = [
    # (ip, port, mac, Host header, Server header, idle keep-alive timeout in us)
    ("192.0.2.10", 80, b"\x02\x00\x00\x00\x0a\x0a", "api.example.test", "nginx/1.24.0", 3_000_000),
    ("192.0.2.11", 80, b"\x02\x00\x00\x00\x0a\x0b", "www.example.test", "Apache/2.4.58", 2_000_000),
    ("198.51.100.20", 8080, b"\x02\x00\x00\x00\x0a\x14", "static.example.test", "gunicorn", 1_000_000),
]
SERVER_WEIGHTS = [0.5, 0.3, 0.2]
GATEWAY_MAC = b"\x02\x00\x00\x00\x01\x01"   # all client traffic arrives via one router

CLOSE_KINDS = ["client_fin", "server_idle", "conn_close", "client_rst", "client_abort"]
INCIDENT_RATE = 1 / 800     # connections ending in the 5 s request timeout
RETRANS_RATE = 0.03         # connections with one retransmitted response segment


# A profile is the traffic's shape: how fast connections open and how they end.
#  - default: a few hundred connections open at once, many idle keep-alive closes by the
#    servers (the capture the foundation's targets were set on; byte-identical to v1).
#  - busy: a load generator against a busy service, ~2,100 new connections per second (a
#    1M-packet file holds ~30k connections in ~15 s). Most connections end by the client;
#    a few hundred are aborted with a request in flight (client RST before the answer, as
#    a load generator cancelling requests does), a few hundred idle keep-alive closes by
#    the servers. This is the capture the diagnosis and memory targets are measured on.
PROFILES = {
    "default": {"conn_rate_per_s": 300, "max_requests": 10, "close_weights": [0.40, 0.25, 0.25, 0.10, 0.0]},
    "busy": {"conn_rate_per_s": 2100, "max_requests": 7, "close_weights": [0.62, 0.01, 0.30, 0.05, 0.02]},
}
CLOSE_WEIGHTS = PROFILES["default"]["close_weights"]
CONN_RATE_PER_S = PROFILES["default"]["conn_rate_per_s"]
ABORT_AFTER_US = (5_000, 400_000)   # a cancelled request is reset this long after it was sent

USER_AGENTS = [
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
]
PATHS = ["/api/v1/items", "/api/v1/users", "/api/v1/orders", "/index.html", "/static/app.js",
         "/static/style.css", "/img/logo.png", "/search", "/health", "/api/v2/reports"]
STATUS_TEXT = {200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found"}
DATE = "Thu, 14 Mar 2024 12:00:00 GMT"

POOL_VARIANTS = 96          # distinct messages per (server, kind): enough variety, small pool


def _ip(s: str) -> int:
    a, b, c, d = (int(x) for x in s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _filler(rng: random.Random, n: int) -> bytes:
    # Printable, deterministic body content; generated once per pooled message.
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 {}\":,"
    return bytes(rng.choice(alphabet) for _ in range(n)) if n < 64 else (
        bytes(rng.choice(alphabet) for _ in range(64)) * (n // 64 + 1))[:n]


class Generator:
    def __init__(self, seed: int, profile: str = "default"):
        self.profile = profile
        self.conn_rate_per_s = PROFILES[profile]["conn_rate_per_s"]
        self.close_weights = PROFILES[profile]["close_weights"]
        self.max_requests = PROFILES[profile]["max_requests"]
        self.rng = random.Random(seed)
        self.pool_rng = random.Random(seed * 7919 + 17)   # message content, independent of timing
        # Payload table: index 0 is the empty payload, 1 the SYN options.
        self.payloads: list[bytes] = [b"", SYN_OPTIONS]
        self.req_cache: dict[tuple, tuple[int, int, str]] = {}
        self.resp_cache: dict[tuple, tuple[list[tuple[int, int]], int]] = {}
        # Flat per-packet records: t_us, conn, dir, flags, rel_seq, rel_ack, payload_id.
        self.rec = array("q")
        self.conns: list[tuple[int, int]] = []   # (client_ip, server index)
        self.conn_span: list[tuple[int, int]] = []
        self.truth = {
            "connections": 0, "requests": 0, "responses": 0, "unanswered_requests": 0,
            "retransmissions": 0, "closes": {k: 0 for k in CLOSE_KINDS + ["incident"]},
            "methods": {}, "status": {}, "chunked_responses": 0, "multi_segment_responses": 0,
        }

    # ---- message pools -------------------------------------------------------------
    def _add_payload(self, data: bytes) -> int:
        self.payloads.append(data)
        return len(self.payloads) - 1

    def request(self, server: int, kind: str, close: bool, ua: int | None = None) -> tuple[int, int, str]:
        """(payload id, length, method) of a pooled request of ``kind`` (get/cond/post);
        ``ua`` pins the User-Agent (one client program per connection), else it varies."""
        variant = self.rng.randrange(POOL_VARIANTS)
        key = (server, kind, close, variant, ua)
        hit = self.req_cache.get(key)
        if hit:
            return hit
        r = self.pool_rng
        host = SERVERS[server][3]
        path = r.choice(PATHS)
        lines = []
        body = b""
        if kind == "post":
            method = "POST"
            body = b'{"data":"' + _filler(r, r.randint(40, 900)) + b'"}'
            lines.append(f"POST {path} HTTP/1.1")
        else:
            method = "GET"
            lines.append(f"GET {path}/{r.randint(1, 99999)}?page={r.randint(1, 50)} HTTP/1.1")
        agent = r.choice(USER_AGENTS) if ua is None else USER_AGENTS[ua]
        lines += [f"Host: {host}", f"User-Agent: {agent}", "Accept: */*"]
        if kind == "cond":
            lines.append(f'If-None-Match: "{r.getrandbits(48):012x}"')
        if kind == "post":
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        if close:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        assert len(data) <= MSS   # requests are single-segment by design
        hit = (self._add_payload(data), len(data), method)
        self.req_cache[key] = hit
        return hit

    def response(self, server: int, status: int, chunked: bool, close: bool):
        """(segments [(payload id, length)], status) of a pooled response, pre-split at MSS."""
        variant = self.rng.randrange(POOL_VARIANTS)
        key = (server, status, chunked, close, variant)
        hit = self.resp_cache.get(key)
        if hit:
            return hit
        r = self.pool_rng
        _, _, _, _, software, _ = SERVERS[server]
        if status in (204, 304):
            size = 0
        elif status == 404:
            size = r.randint(150, 600)
        else:
            u = r.random()   # mostly small API answers, some pages, a few large assets
            size = (r.randint(60, 1800) if u < 0.7 else
                    r.randint(1800, 16000) if u < 0.95 else r.randint(16000, 64000))
        body = _filler(r, size)
        lines = [f"HTTP/1.1 {status} {STATUS_TEXT[status]}", f"Date: {DATE}", f"Server: {software}"]
        if status == 304:
            lines.append(f'ETag: "{r.getrandbits(48):012x}"')
        elif status != 204:
            lines.append("Content-Type: " + ("text/html" if status == 404 else "application/json"))
            if chunked:
                lines.append("Transfer-Encoding: chunked")
                parts, pos = [], 0
                while pos < len(body):
                    n = min(r.randint(500, 8000), len(body) - pos)
                    parts.append(b"%x\r\n" % n + body[pos:pos + n] + b"\r\n")
                    pos += n
                body = b"".join(parts) + b"0\r\n\r\n"
            else:
                lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close" if close else "Connection: keep-alive")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        segs = [(self._add_payload(data[i:i + MSS]), len(data[i:i + MSS]))
                for i in range(0, len(data), MSS)]
        hit = (segs, status)
        self.resp_cache[key] = hit
        return hit

    # ---- one TCP connection ----------------------------------------------------------
    def connection(self, ci: int, t: int) -> None:
        r = self.rng
        rec = self.rec.extend
        tr = self.truth
        server = r.choices(range(len(SERVERS)), SERVER_WEIGHTS)[0]
        keepalive_us = SERVERS[server][5]
        rtt = int(min(150_000, max(200, r.lognormvariate(math.log(6000), 0.9))))
        kdelay = r.randint(8, 40)              # server kernel turnaround
        incident = r.random() < INCIDENT_RATE or ci == 20   # at least one in any file
        close = "incident" if incident else r.choices(CLOSE_KINDS, self.close_weights)[0]
        n_req = r.randint(1, self.max_requests)
        # The busy profile's clients are programs with one User-Agent each, as a real pool
        # is; the default profile keeps its varied agents (byte-identical to version 1).
        ua = r.randrange(len(USER_AGENTS)) if self.profile == "busy" else None
        retrans_k = r.randrange(n_req) if r.random() < RETRANS_RATE else -1
        if close == "conn_close" and retrans_k == n_req - 1:
            retrans_k = -1                      # keep the FIN sequence simple
        if close in ("incident", "client_abort") and retrans_k == n_req - 1:
            retrans_k = -1                      # the last request gets no response at all
        self.conns.append((self._client_ip(ci), server))
        t_start = t

        # 3-way handshake; relative seq 0 is the SYN, data starts at 1 on both sides.
        rec((t, ci, C2S, SYN, 0, 0, 1))
        t += kdelay
        rec((t, ci, S2C, SYN | ACK, 0, 1, 1))
        t += rtt
        rec((t, ci, C2S, ACK, 1, 1, 0))
        cs = ss = 1
        t += r.randint(20, 300)                 # client writes the request right away
        tr["connections"] += 1

        for k in range(n_req):
            last = k == n_req - 1
            req_close = last and close == "conn_close"
            u = r.random()
            kind = "post" if u < 0.2 else "cond" if u < 0.32 else "get"
            pid, plen, method = self.request(server, kind, req_close, ua)
            rec((t, ci, C2S, PSH | ACK, cs, ss, pid))
            cs += plen
            tr["requests"] += 1
            tr["methods"][method] = tr["methods"].get(method, 0) + 1

            if last and close == "incident":
                # Server kernel ACKs the request, the application never answers; the client
                # gives up after exactly 5 s of silence and closes.  This is what sockscope
                # is meant to find.
                rec((t + DELACK_US, ci, S2C, ACK, ss, cs, 0))
                t += INCIDENT_IDLE_US
                rec((t, ci, C2S, FIN | ACK, cs, ss, 0))
                t += kdelay
                rec((t, ci, S2C, ACK, ss, cs + 1, 0))
                t += r.randint(100_000, 900_000)   # app finally notices EOF and closes
                rec((t, ci, S2C, FIN | ACK, ss, cs + 1, 0))
                t += rtt
                rec((t, ci, C2S, ACK, cs + 1, ss + 1, 0))
                tr["unanswered_requests"] += 1
                break
            if last and close == "client_abort":
                # The client cancels the request before any answer (a load generator's
                # deadline, a user navigating away): RST, no FIN; the server has not written.
                wait = r.randint(*ABORT_AFTER_US)
                if wait > DELACK_US:
                    rec((t + DELACK_US, ci, S2C, ACK, ss, cs, 0))
                t += wait
                rec((t, ci, C2S, RST | ACK, cs, ss, 0))
                tr["unanswered_requests"] += 1
                break

            # Server think time: mostly a few ms, sometimes slow enough for a delayed ACK.
            proc = int(min(3_000_000, r.lognormvariate(math.log(3000), 1.3))) + kdelay
            if proc > DELACK_US:
                rec((t + DELACK_US, ci, S2C, ACK, ss, cs, 0))
            t += proc

            if kind == "cond":
                status, chunked = (304, False) if r.random() < 0.8 else (200, False)
            elif kind == "post":
                u = r.random()
                status, chunked = (200, False) if u < 0.6 else (204, False) if u < 0.9 else (404, False)
            else:
                u = r.random()
                status, chunked = ((200, False) if u < 0.7 else (200, True) if u < 0.9 else (404, False))
            segs, _ = self.response(server, status, chunked, req_close)
            tr["responses"] += 1
            tr["status"][str(status)] = tr["status"].get(str(status), 0) + 1
            tr["chunked_responses"] += chunked
            tr["multi_segment_responses"] += len(segs) > 1

            # Send schedule: the first INITIAL_CWND segments back to back, then each one
            # released by the client ACK covering the segment INITIAL_CWND earlier (the
            # client ACKs every second segment), so at most ~11 segments are in flight --
            # far below the 64 KiB window, hence no "window full" in tshark.
            n = len(segs)
            send = [0] * n
            for i in range(n):
                ts = t if i == 0 else send[i - 1] + SERIALISE_US
                if i >= INITIAL_CWND:
                    covering = (i - INITIAL_CWND) | 1
                    ts = max(ts, send[covering] + rtt + kdelay)
                send[i] = ts
            retrans = k == retrans_k
            t_end = send[-1]
            for i, (pid, plen) in enumerate(segs):
                final = i == n - 1
                rec((send[i], ci, S2C, (PSH | ACK) if final else ACK, ss, cs, pid))
                ss += plen
                if retrans and final:
                    # Lost after the capture point: nothing ACKs it, the RTO fires and the
                    # very same segment goes out again; only then does the client ACK.
                    rto = send[i] + 200_000 + rtt
                    rec((rto, ci, S2C, PSH | ACK, ss - plen, cs, pid))
                    tr["retransmissions"] += 1
                    t_end = rto + rtt
                    rec((t_end, ci, C2S, ACK, cs, ss, 0))
                elif (i & 1 or final) and not req_close:
                    # Client ACK (every second segment and the last one).  For a
                    # "Connection: close" response the final ACK rides on the client FIN.
                    rec((send[i] + rtt, ci, C2S, ACK, cs, ss, 0))
                    t_end = max(t_end, send[i] + rtt)
                elif i & 1 and not final:
                    rec((send[i] + rtt, ci, C2S, ACK, cs, ss, 0))
            t = t_end

            if req_close:
                # Server closes right after the response; the client ACKs data and FIN with
                # its own FIN, the server ACKs that.
                t = send[-1] + kdelay
                rec((t, ci, S2C, FIN | ACK, ss, cs, 0))
                t += rtt + r.randint(50, 400)
                rec((t, ci, C2S, FIN | ACK, cs, ss + 1, 0))
                t += kdelay
                rec((t, ci, S2C, ACK, ss + 1, cs + 1, 0))
                break
            if not last:
                # Keep-alive think time before the next request.
                t += int(min(2_000_000, r.lognormvariate(math.log(30_000), 1.2)))

        if close == "client_fin":
            t += int(min(2_000_000, r.lognormvariate(math.log(50_000), 1.0)))
            rec((t, ci, C2S, FIN | ACK, cs, ss, 0))
            t += kdelay
            rec((t, ci, S2C, FIN | ACK, ss, cs + 1, 0))
            t += rtt
            rec((t, ci, C2S, ACK, cs + 1, ss + 1, 0))
        elif close == "server_idle":
            # Server's keep-alive timer expires after an idle gap.
            t += keepalive_us
            rec((t, ci, S2C, FIN | ACK, ss, cs, 0))
            t += rtt
            rec((t, ci, C2S, FIN | ACK, cs, ss + 1, 0))
            t += kdelay
            rec((t, ci, S2C, ACK, ss + 1, cs + 1, 0))
        elif close == "client_rst":
            # Client aborts (SO_LINGER 0 / killed process): RST, no answer.
            t += int(min(2_000_000, r.lognormvariate(math.log(50_000), 1.0)))
            rec((t, ci, C2S, RST | ACK, cs, ss, 0))
        tr["closes"][close] += 1
        self.conn_span.append((t_start, t))

    def _client_ip(self, ci: int) -> int:
        # 4096 clients in 10.0.0.0/8 (spread over the address space deterministically).
        c = (ci * 2654435761) % 4096
        return (10 << 24) | ((c >> 8) + 1) << 16 | ((c & 0xFF) << 8) | (1 + (c % 250))

    # ---- driver ----------------------------------------------------------------------------
    def run(self, n_packets: int) -> None:
        r = self.rng
        t = EPOCH_US
        ci = 0
        # Generate whole connections until the packet budget is reached ("about N").
        while len(self.rec) // 7 < n_packets:
            t += int(r.expovariate(self.conn_rate_per_s) * 1e6)
            self.connection(ci, t)
            ci += 1


def _ones_sum_fold(s: np.ndarray) -> np.ndarray:
    # Fold a (non-negative, < 2**40) sum of 16-bit words into 16 bits, ones' complement style.
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (s & 0xFFFF) + (s >> 16)


def _payload_sums(payloads: list[bytes]) -> np.ndarray:
    # Sum of each payload's big-endian 16-bit words (odd length zero-padded).  The payload
    # always starts at an even offset of the TCP segment, so this part of the checksum is
    # independent of the header and can be computed once per pooled message.
    out = np.zeros(len(payloads), dtype=np.int64)
    for i, p in enumerate(payloads):
        if p:
            if len(p) & 1:
                p = p + b"\0"
            out[i] = int(np.frombuffer(p, dtype=">u2").sum(dtype=np.int64))
    return out


HDR_DTYPE = np.dtype([
    # pcap record header (little-endian, matching the a1b2c3d4 magic written natively LE)
    ("ts_sec", "<u4"), ("ts_usec", "<u4"), ("incl_len", "<u4"), ("orig_len", "<u4"),
    # Ethernet II
    ("eth_dst", "u1", (6,)), ("eth_src", "u1", (6,)), ("eth_type", ">u2"),
    # IPv4, no options
    ("ip_vhl", "u1"), ("ip_tos", "u1"), ("ip_len", ">u2"), ("ip_id", ">u2"), ("ip_frag", ">u2"),
    ("ip_ttl", "u1"), ("ip_proto", "u1"), ("ip_sum", ">u2"), ("ip_src", ">u4"), ("ip_dst", ">u4"),
    # TCP fixed header (options, if any, travel in the payload)
    ("sport", ">u2"), ("dport", ">u2"), ("seq", ">u4"), ("ack", ">u4"), ("off_flags", ">u2"),
    ("win", ">u2"), ("tcp_sum", ">u2"), ("urg", ">u2"),
])
assert HDR_DTYPE.itemsize == 16 + 14 + 20 + 20


def build(gen: Generator, path: str | Path, chunk: int = 200_000) -> dict:
    """Turn the generator's records into a pcap file; returns extra truth fields."""
    rec = np.frombuffer(gen.rec, dtype=np.int64).reshape(-1, 7)
    # Global time order; stable so that simultaneous packets keep generation (causal) order.
    order = np.argsort(rec[:, 0], kind="stable")
    rec = rec[order]
    t = rec[:, 0]
    # Strictly increasing microsecond timestamps: t'[i] = max(t[i], t'[i-1] + 1).  Written
    # as a running max of t - i, it only ever delays a packet, so the order is unchanged.
    idx = np.arange(len(t), dtype=np.int64)
    t = np.maximum.accumulate(t - idx) + idx
    conn, direction, flags = rec[:, 1], rec[:, 2], rec[:, 3]
    pid = rec[:, 6]
    n = len(t)

    rng = np.random.default_rng(12345 + len(gen.conns))   # ISNs; deterministic per file
    n_conn = len(gen.conns)
    isn = rng.integers(0, 2**32, size=(n_conn, 2), dtype=np.int64)
    cip = np.array([c[0] for c in gen.conns], dtype=np.int64)
    srv = np.array([c[1] for c in gen.conns], dtype=np.int64)
    # Ephemeral client ports: unique per (client ip) because each connection index gets
    # its own port, so no 4-tuple is ever reused (tshark would flag "port reused").
    cport = 32768 + (np.arange(n_conn, dtype=np.int64) * 7) % 28000
    sip_tab = np.array([_ip(s[0]) for s in SERVERS], dtype=np.int64)
    sport_tab = np.array([s[1] for s in SERVERS], dtype=np.int64)

    c2s = direction == C2S
    ip_c, ip_s = cip[conn], sip_tab[srv[conn]]
    p_c, p_s = cport[conn], sport_tab[srv[conn]]
    src = np.where(c2s, ip_c, ip_s)
    dst = np.where(c2s, ip_s, ip_c)
    sp = np.where(c2s, p_c, p_s)
    dp = np.where(c2s, p_s, p_c)
    seq = (isn[conn, direction] + rec[:, 4]) & 0xFFFFFFFF
    ack = np.where(flags & ACK, (isn[conn, 1 - direction] + rec[:, 5]) & 0xFFFFFFFF, 0)

    plen_tab = np.array([len(p) for p in gen.payloads], dtype=np.int64)
    psum_tab = _payload_sums(gen.payloads)
    plen = plen_tab[pid]
    doff = np.where(pid == 1, 5 + len(SYN_OPTIONS) // 4, 5)
    off_flags = (doff << 12) | flags
    tcp_len = 20 + plen
    ip_len = 20 + tcp_len
    ttl = np.where(c2s, 57, 64)    # clients are a few hops away
    # IP ID: Linux sets DF and counts per socket; any value is valid, a mix keeps it varied.
    ip_id = (conn * 40503 + idx) & 0xFFFF

    ip_sum = (0x4500 + ip_len + ip_id + 0x4000 + ((ttl << 8) | 6)
              + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF))
    ip_sum = (~_ones_sum_fold(ip_sum)) & 0xFFFF
    tcp_sum = ((src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + 6 + tcp_len
               + sp + dp + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
               + off_flags + WINDOW + psum_tab[pid])
    tcp_sum = (~_ones_sum_fold(tcp_sum)) & 0xFFFF

    h = np.zeros(n, dtype=HDR_DTYPE)
    h["ts_sec"] = t // 1_000_000
    h["ts_usec"] = t % 1_000_000
    h["incl_len"] = h["orig_len"] = 14 + ip_len
    # MAC table: one row per server, last row the gateway the clients come through.
    macs = np.frombuffer(b"".join(s[2] for s in SERVERS) + GATEWAY_MAC, np.uint8).reshape(-1, 6)
    gw_row = len(SERVERS)
    h["eth_dst"] = macs[np.where(c2s, srv[conn], gw_row)]
    h["eth_src"] = macs[np.where(c2s, gw_row, srv[conn])]
    h["eth_type"] = 0x0800
    h["ip_vhl"] = 0x45
    h["ip_len"] = ip_len
    h["ip_id"] = ip_id
    h["ip_frag"] = 0x4000
    h["ip_ttl"] = ttl
    h["ip_proto"] = 6
    h["ip_sum"] = ip_sum
    h["ip_src"] = src
    h["ip_dst"] = dst
    h["sport"] = sp
    h["dport"] = dp
    h["seq"] = seq
    h["ack"] = ack
    h["off_flags"] = off_flags
    h["win"] = WINDOW
    h["tcp_sum"] = tcp_sum

    payloads = gen.payloads
    pid_list = pid.tolist()
    with open(path, "wb") as f:
        # Classic pcap global header: magic, v2.4, UTC, snaplen, LINKTYPE_ETHERNET.
        f.write(np.array([0xA1B2C3D4], "<u4").tobytes()
                + np.array([2, 4], "<u2").tobytes()
                + np.array([0, 0, 262144, 1], "<u4").tobytes())
        size = HDR_DTYPE.itemsize
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            mv = memoryview(h[lo:hi].tobytes())
            parts: list = [None] * (2 * (hi - lo))
            parts[0::2] = [mv[i:i + size] for i in range(0, (hi - lo) * size, size)]
            parts[1::2] = [payloads[p] for p in pid_list[lo:hi]]
            f.write(b"".join(parts))

    # Peak number of simultaneously open connections (starts +1, ends -1).
    spans = np.array(gen.conn_span, dtype=np.int64)
    ev_t = np.concatenate([spans[:, 0], spans[:, 1]])
    ev_d = np.concatenate([np.ones(n_conn, np.int64), -np.ones(n_conn, np.int64)])
    o = np.lexsort((ev_d, ev_t))   # ends before starts at the same instant
    return {
        "packets": int(n),
        "first_ts": float(t[0] / 1e6),
        "last_ts": float(t[-1] / 1e6),
        "duration_s": round(float((t[-1] - t[0]) / 1e6), 6),
        "max_concurrent_connections": int(np.cumsum(ev_d[o]).max()),
        "file_bytes": int(Path(path).stat().st_size),
    }


def generate(n_packets: int, out: str | Path, seed: int = 1, profile: str = "default") -> dict:
    """Write the capture to ``out`` and return its ground truth."""
    t0 = time.perf_counter()
    gen = Generator(seed, profile)
    gen.run(n_packets)
    extra = build(gen, out)
    truth = {"generator_version": GEN_VERSION, "seed": seed, "profile": profile, "requested_packets": n_packets,
             **extra, **gen.truth,
             "servers": [f"{s[0]}:{s[1]}" for s in SERVERS],
             "payload_pool": len(gen.payloads),
             "generate_s": round(time.perf_counter() - t0, 3)}
    return truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, required=True, help="approximate packet count")
    ap.add_argument("--out", required=True, help="output .pcap path")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="default",
                    help="traffic shape: default (300 conn/s) or busy (2,100 conn/s, aborts)")
    a = ap.parse_args(argv)
    if a.packets < 1:
        ap.error("--packets must be positive")
    truth = generate(a.packets, a.out, a.seed, a.profile)
    json.dump(truth, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
