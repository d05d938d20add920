"""Test helpers: play a script of stream events into HttpSession in several ways.

A script is a list of events, each fed as one "packet" (frame i+1, time (i+1) ms):
``c(bytes)``/``s(bytes)`` for client/server data, ``cgap(n)``/``sgap(n)`` for capture holes.
:func:`run3` plays it whole, one byte per call and with random splits, and asserts all
three produce identical exchanges, violations and tunnel state.
"""

from __future__ import annotations

import random
from typing import Any

from sockscope.http import HttpSession

Event = tuple[str, Any]
MODES = ("whole", "bytes", "random")


def c(data: bytes) -> Event:
    return ("c", data)


def s(data: bytes) -> Event:
    return ("s", data)


def cgap(n: int) -> Event:
    return ("cgap", n)


def sgap(n: int) -> Event:
    return ("sgap", n)


def ts_of(i: int) -> int:
    """Capture time (ns) given to the i-th event (1-based)."""
    return i * 1_000_000


def split_random(data: bytes, rnd: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        k = rnd.randint(1, max(1, min(len(data) - i, rnd.choice((3, 17, 200, 1460)))))
        out.append(data[i : i + k])
        i += k
    return out


def feed(script: list[Event], mode: str = "whole", seed: int = 0, **kw: Any) -> HttpSession:
    session = HttpSession(**kw)
    rnd = random.Random(seed)
    for i, (kind, arg) in enumerate(script, 1):
        ts = ts_of(i)
        if kind == "cgap":
            session.client_gap(arg, ts, i)
            continue
        if kind == "sgap":
            session.server_gap(arg, ts, i)
            continue
        put = session.client_data if kind == "c" else session.server_data
        if mode == "whole":
            pieces = [arg]
        elif mode == "bytes":
            pieces = [arg[j : j + 1] for j in range(len(arg))]
        else:
            pieces = split_random(arg, rnd)
        for piece in pieces:
            put(piece, ts, i)
    session.finish()
    return session


def run3(script: list[Event], **kw: Any) -> HttpSession:
    """Feed three ways (plus two more random seeds); assert identical results; return one."""
    ref = feed(script, "whole", **kw)
    others = [feed(script, "bytes", **kw)] + [feed(script, "random", seed=k, **kw) for k in (1, 2, 3)]
    for other in others:
        assert other.exchanges == ref.exchanges
        assert other.violations == ref.violations
        assert other.tunnel == ref.tunnel
        assert other.pending == ref.pending
    return ref


def kinds(session: HttpSession) -> list[str]:
    return [k for k, _ in session.violations]
