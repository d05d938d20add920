"""Wireshark display filters: the one place sockscope writes them.

Every claim sockscope makes is checked by pasting a filter into Wireshark or ``tshark -Y``,
so the syntax must be what Wireshark accepts. Set members are separated by commas
(``frame.number in {16,26,27}``): Wireshark 3.6 added the comma, and 4.0 made the old
whitespace-only form a syntax error. A connection is ``tcp.stream`` (sockscope's
``conn_id`` is tshark's stream number where the two agree).
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["MATCH_NOTHING", "frame_set", "stream_filter", "streams_filter"]

MATCH_NOTHING = "frame.number == 0"   # frames count from 1; an empty filter would show everything


def _ints(values: Iterable[Any]) -> list[int]:
    """Sorted distinct ints; missing values (None, NaN, pandas NA) are left out."""
    out = set()
    for v in values:
        if v is None:
            continue
        try:
            if v != v:          # NaN
                continue
            out.add(int(v))
        except (TypeError, ValueError):   # pandas NA refuses both comparisons and int()
            continue
    return sorted(out)


def frame_set(frames: Iterable[Any]) -> str:
    """``{16,26,27}``; consecutive runs are kept as single members, never ranges, so the
    set reads the same in every Wireshark version that has sets."""
    return "{" + ",".join(map(str, _ints(frames))) + "}"


def stream_filter(conn_id: int, frames: Iterable[Any] = ()) -> str:
    """The packets of one connection, or just the given frames of it.

    >>> stream_filter(0, [26, 16, None, 27])
    'tcp.stream eq 0 && frame.number in {16,26,27}'
    >>> stream_filter(3)
    'tcp.stream eq 3'
    """
    fs = _ints(frames)
    base = f"tcp.stream eq {int(conn_id)}"
    return base if not fs else f"{base} && frame.number in {frame_set(fs)}"


def streams_filter(conn_ids: Iterable[Any]) -> str:
    """The packets of several connections: ``tcp.stream in {0,2}``; an empty selection is
    :data:`MATCH_NOTHING` (``tcp.stream in {}`` is not valid syntax, and an empty filter
    would show every packet)."""
    ids = _ints(conn_ids)
    return "tcp.stream in " + frame_set(ids) if ids else MATCH_NOTHING
