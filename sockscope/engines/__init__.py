"""Alternative analysis engines that produce sockscope's public tables.

Each engine turns a capture file into the ``connections`` and ``requests`` tables defined
in :mod:`sockscope.schema`, so their results can be compared row by row with
:func:`sockscope.crosscheck.crosscheck`.

* :mod:`sockscope.engines.tshark` -- built on Wireshark's dissectors (runs ``tshark``).
"""

__all__ = ["tshark"]
