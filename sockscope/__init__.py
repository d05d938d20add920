"""sockscope: prove who killed the TCP connection, from a tcpdump capture.

>>> import sockscope
>>> cap = sockscope.load("captures/crafted/incident-before-fix.pcap")  # doctest: +SKIP
>>> cap.connections, cap.requests, cap.gaps, cap.findings                 # doctest: +SKIP

Layers (each imports only those before it): ``capture`` (reader) -> ``tcp`` (tracker,
reassembly) -> ``http`` (framing, pairing) -> ``engine``/``schema`` (tables) ->
``analysis`` (findings) -> ``cli`` / ``plot`` / ``export``.

Importing the package is cheap: pandas (and the ``DataFrame.sockscope`` accessor) load
with the first ``load`` or ``Capture``, or at once if pandas is already imported, so that
``sockscope summary --json`` never pays for them.
"""

import sys as _sys
from typing import Any as _Any

from sockscope.errors import CaptureError, SockscopeError

__version__ = "0.1.0"
__all__ = ["Capture", "CaptureError", "SockscopeError", "check", "compare", "load", "load_arrow", "__version__"]

_LAZY = {"Capture", "load", "load_arrow"}


def check(cap: _Any, rules: _Any, allow_empty: bool = False) -> _Any:
    """Evaluate rules (:mod:`sockscope.analysis.check`) on a Capture or a capture path.

    >>> from sockscope.analysis.check import NeverAfter, NoKind, RequestKind       # doctest: +SKIP
    >>> sockscope.check("after.pcap", [NoKind("client_idle_timeout"),              # doctest: +SKIP
    ...     NeverAfter(RequestKind.parse("GET /files"), RequestKind.parse("POST /exec"))]).ok
    True
    """
    from sockscope.analysis.check import check as _check

    return _check(_loaded(cap), rules, allow_empty=allow_empty)


def compare(before: _Any, after: _Any) -> _Any:
    """Before vs after a fix (:func:`sockscope.analysis.compare.compare`): Captures or paths."""
    from sockscope.analysis.compare import compare as _compare

    return _compare(_loaded(before), _loaded(after))


def _loaded(cap: _Any) -> _Any:
    from sockscope import api

    return api.load(cap) if isinstance(cap, (str, bytes)) or hasattr(cap, "__fspath__") else cap


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        from sockscope import api

        if name != "load_arrow":
            import sockscope.accessor  # noqa: F401  (registers DataFrame.sockscope)
        return getattr(api, name)
    raise AttributeError(f"module 'sockscope' has no attribute {name!r}")


if "pandas" in _sys.modules:
    # a notebook that imported pandas first gets df.sockscope on any frame right away
    import sockscope.accessor  # noqa: F401,E402
