"""Lazy matplotlib access: ``import sockscope`` must not pay for matplotlib."""

from __future__ import annotations

import os
import sys
from typing import Any


def mpl() -> Any:
    """Import matplotlib, choosing the non-interactive Agg backend when nothing can show a window.

    We only pick a backend when the user has not (``MPLBACKEND``), no notebook kernel is
    running (it installs its own inline backend) and there is no display -- otherwise
    matplotlib's default probing would try a GUI toolkit on a headless server.
    """
    import matplotlib

    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.platform.startswith("linux")
    if headless and not os.environ.get("MPLBACKEND") and "ipykernel" not in sys.modules \
            and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    if "ipykernel" in sys.modules and "matplotlib.pyplot" not in sys.modules:
        # In a notebook, loading the (inline) backend module registers the PNG display of
        # Figure objects, so a returned figure shows as the cell's value. pyplot resolves
        # its backend lazily; switching to the configured one loads it now. No pyplot
        # figure exists yet (pyplot was not imported), so the switch closes nothing.
        import matplotlib.pyplot as plt

        plt.switch_backend(matplotlib.get_backend())
    return matplotlib


def new_figure(width: float, height: float) -> Any:
    """A figure that is not registered with pyplot.

    A bare :class:`~matplotlib.figure.Figure` is not kept alive by pyplot's global figure
    list (no memory growth when a script draws hundreds of plots) and is displayed exactly
    once in a notebook when it is a cell's value.
    """
    mpl()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")
