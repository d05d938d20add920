"""Pictures for incident reports: the connection timeline and the idle-before-close chart.

matplotlib is imported only when a plot is drawn, so ``import sockscope`` stays fast and
matplotlib stays an optional dependency (``pip install sockscope[plot]``). Without a
display the Agg backend is used; in Jupyter the returned figure shows as the cell's value.

>>> cap = sockscope.load("captures/crafted/incident-before-fix.pcap")   # doctest: +SKIP
>>> cap.plot.timeline()                       # or sockscope.plot.timeline(cap)  # doctest: +SKIP
>>> cap.plot.idle_closes().savefig("idle.svg")                                     # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sockscope.api import Capture


def timeline(cap: "Capture", conn_ids: Iterable[int] | None = None, max_conns: int = 50,
             ax: "Axes | None" = None) -> "Figure":
    """One lane per connection; see :mod:`sockscope.plot._timeline`."""
    from sockscope.plot._timeline import timeline as _timeline

    return _timeline(cap, conn_ids=conn_ids, max_conns=max_conns, ax=ax)


def idle_closes(cap: "Capture", ax: "Axes | None" = None) -> "Figure":
    """Idle time before close per closer; see :mod:`sockscope.plot._idle`."""
    from sockscope.plot._idle import idle_closes as _idle_closes

    return _idle_closes(cap, ax=ax)


class PlotAccessor:
    """``cap.plot``: the plots of one capture.

    >>> cap.plot.timeline(conn_ids=[0, 2])       # doctest: +SKIP
    >>> cap.plot.idle_closes()                   # doctest: +SKIP
    """

    def __init__(self, cap: "Capture") -> None:
        self._cap = cap

    def timeline(self, conn_ids: Iterable[int] | None = None, max_conns: int = 50,
                 ax: "Axes | None" = None) -> "Figure":
        """See :func:`sockscope.plot.timeline`."""
        return timeline(self._cap, conn_ids=conn_ids, max_conns=max_conns, ax=ax)

    def idle_closes(self, ax: "Axes | None" = None) -> "Figure":
        """See :func:`sockscope.plot.idle_closes`."""
        return idle_closes(self._cap, ax=ax)

    def __call__(self, **kwargs: Any) -> "Figure":
        """``cap.plot()`` is the timeline, the picture most people want."""
        return self.timeline(**kwargs)

    def __repr__(self) -> str:
        return f"<PlotAccessor for {self._cap!r}: .timeline(), .idle_closes()>"


__all__ = ["PlotAccessor", "idle_closes", "timeline"]
