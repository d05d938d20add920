"""The detectors: one module per finding family, each with its rule, evidence and prose.

A detector module has ``KINDS`` (the :class:`~sockscope.analysis.model.Kind` entries it can
produce), ``detect(ctx) -> list[Finding]`` (column-wise over a
:class:`~sockscope.analysis.model.Context`) and ``verdict(kind, rows) -> str`` (one paragraph
on all findings of a kind, for the text faces). A new finding family is a new module here,
added to ``PER_CONNECTION`` (findings about one connection, computed from its rows alone
plus the capture-wide timer clusters) or handled in ``analysis.diagnose`` when it looks
across connections.
"""

from __future__ import annotations

from types import ModuleType
from typing import Iterable

from sockscope.analysis.detectors import (closes, dead_peer, handshake, heartbeat, late_response, middlebox, reuse,
                                          rootcause, silent_drop, stale_reuse, zero_window)
from sockscope.analysis.model import Kind

# Order matters twice: findings of one connection are listed in this order, and text faces
# show the kinds in the order of the registry below.
PER_CONNECTION: tuple[ModuleType, ...] = (handshake, middlebox, silent_drop, dead_peer, zero_window, closes,
                                          late_response, stale_reuse, reuse, heartbeat)
ALL: tuple[ModuleType, ...] = PER_CONNECTION + (rootcause,)

_ORDER = ("middlebox_rst", "silent_drop", "dead_peer", "refused", "syn_unanswered", "zero_window_stall",
          "client_idle_timeout", "server_abort", "client_abort", "stale_reuse", "response_after_close",
          "server_idle_close", "client_idle_close", "connection_reuse", "root_cause_hint", "heartbeat")

KINDS: dict[str, Kind] = {k.name: k for name in _ORDER for m in ALL for k in m.KINDS if k.name == name}
MODULE_OF: dict[str, ModuleType] = {k.name: m for m in ALL for k in m.KINDS}

assert set(KINDS) == set(MODULE_OF), "every kind has a place in the display order"


def require_kinds(kinds: Iterable[str]) -> None:
    """Raise ValueError naming the first kind that is not in the vocabulary (a typo must not
    read as "none found")."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown finding kind {unknown[0]!r}; known: {', '.join(KINDS)}")

__all__ = ["ALL", "KINDS", "MODULE_OF", "PER_CONNECTION", "require_kinds"]
