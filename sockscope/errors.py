"""One error family for problems with the input (the CLI maps them to exit code 3).

Any other exception escaping sockscope is a bug.
"""


class SockscopeError(Exception):
    """Base class of every error sockscope raises on purpose."""


class CaptureError(SockscopeError):
    """The capture cannot be read at all (not pcap/pcapng, empty, unreadable file)."""


class EngineUnavailable(SockscopeError):
    """An optional engine (e.g. tshark) is not installed."""
