"""Classic pcap files cut into records, for tests that split or replay captures."""

from __future__ import annotations

import struct
from pathlib import Path


def pcap_records(path: Path) -> tuple[bytes, list[bytes]]:
    """(24-byte file header, [record header + data, ...]) of a little-endian classic pcap."""
    data = Path(path).read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), "little-endian classic pcap expected"
    out, pos = [], 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        out.append(data[pos:pos + 16 + caplen])
        pos += 16 + caplen
    return data[:24], out
