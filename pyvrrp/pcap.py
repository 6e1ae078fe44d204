"""A classic-pcap reader (libpcap format, microsecond timestamps) on `struct`, for the fixtures.

Enough for the captured keepalived packets: Ethernet link type, either byte order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

LINKTYPE_ETHERNET = 1


def read_pcap(path: str | Path) -> Iterator[tuple[float, bytes]]:
    """Yield (timestamp seconds, frame bytes) for every record."""
    data = Path(path).read_bytes()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet")
    off = 24
    while off + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        yield sec + usec / 1e6, data[off:off + caplen]
        off += caplen
