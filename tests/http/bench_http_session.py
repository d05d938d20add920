"""Throughput check: 100,000 keep-alive GET/200 exchanges in ~1460-byte segments.

Run directly (``python tests/http/bench_http_session.py``); the test suite runs a smaller,
generously bounded version so a slow CI box does not fail it.
"""

from __future__ import annotations

import time

from sockscope.http import HttpSession

REQ = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench/1.0\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"
MSS = 1460


def segments(stream: bytes, mss: int = MSS) -> list[bytes]:
    return [stream[i : i + mss] for i in range(0, len(stream), mss)]


def run(n: int = 100_000, batch: int = 100) -> tuple[float, int]:
    """Seconds to parse ``n`` exchanges (client and server alternate every ``batch``
    exchanges, like a busy keep-alive connection), and the exchange count found."""
    creq = segments(REQ * batch)
    cresp = segments(RESP * batch)
    s = HttpSession()
    frame = 0
    t0 = time.process_time()
    for _ in range(n // batch):
        for seg in creq:
            frame += 1
            s.client_data(seg, frame * 1000, frame)
        for seg in cresp:
            frame += 1
            s.server_data(seg, frame * 1000, frame)
    ex = s.finish()
    return time.process_time() - t0, len(ex)


if __name__ == "__main__":
    secs, count = run()
    print(f"{count} exchanges in {secs:.3f} s ({count / secs:,.0f}/s)")
