"""Capture reader layer: files (pcap, pcapng, gzip-compressed either) and stdin -> packets.

Consumes: a path, ``"-"`` for standard input, or a binary file object.
Produces: a :class:`PacketSource` (compiled) whose ``next_packet`` fills a C struct per
packet; Python code sees only file facts (``facts()``) and, for tests, ``packets()``.

Compression is recognised from the first bytes, never from the file name.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
from typing import BinaryIO

from sockscope.capture._source import LINKTYPE_NAMES, STATUS_NAMES, PacketSource
from sockscope.errors import CaptureError

__all__ = ["open_source", "PacketSource", "LINKTYPE_NAMES", "STATUS_NAMES"]

_GZIP_MAGIC = b"\x1f\x8b"


class _Peeked(io.RawIOBase):
    """A stream with a few already-read bytes put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = head
        self._rest = rest
        # A buffered pipe's readinto() waits until the whole buffer is full; readinto1()
        # returns what has arrived, so a live stream is analysed as it flows.
        self._read = getattr(rest, "readinto1", rest.readinto)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._read(b)


def _binary_stream(source: str | os.PathLike | BinaryIO) -> tuple[BinaryIO, str]:
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if name == "-":
            return sys.stdin.buffer, "<stdin>"
        try:
            return open(name, "rb", buffering=0), name
        except FileNotFoundError:
            raise CaptureError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{name}: is a directory, not a capture file") from None
        except PermissionError:
            raise CaptureError(f"{name}: permission denied") from None
        except OSError as exc:
            raise CaptureError(f"{name}: cannot open ({exc.strerror})") from None
    name = getattr(source, "name", None)
    return source, name if isinstance(name, str) else "<stream>"


def open_source(source: str | os.PathLike | BinaryIO) -> PacketSource:
    """Open a capture for reading; raises :class:`CaptureError` if it is not one."""
    fh, name = _binary_stream(source)
    head = fh.read(2) or b""
    stream: BinaryIO = _Peeked(head, fh)  # type: ignore[assignment]
    if head == _GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=io.BufferedReader(stream, 1 << 20), mode="rb")  # type: ignore[arg-type]
    return PacketSource(stream, name)
