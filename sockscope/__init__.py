"""sockscope: prove who killed the TCP connection, from a tcpdump capture.

>>> import sockscope
>>> cap = sockscope.load("captures/crafted/incident-before-fix.pcap")  # doctest: +SKIP
>>> cap.connections, cap.requests, cap.gaps, cap.findings                 # doctest: +SKIP

Layers (each imports only those before it): ``capture`` (reader) -> ``tcp`` (tracker,
reassembly) -> ``http`` (framing, pairing) -> ``engine``/``schema`` (tables) ->
``analysis`` (findings) -> ``cli`` / ``plot`` / ``export``.
"""

from sockscope import accessor as _accessor  # noqa: F401  (registers DataFrame.sockscope)
from sockscope.api import Capture, load
from sockscope.errors import CaptureError, SockscopeError

__version__ = "0.1.0"
__all__ = ["Capture", "CaptureError", "SockscopeError", "load", "__version__"]
