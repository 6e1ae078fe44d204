"""nginx `hash KEY [consistent]` (ngx_http_upstream_hash_module.c).

Plain: Cache::Memcached compatible — `hash += (crc32([REHASH] KEY) >> 16) & 0x7fff` with
the retry counter as a decimal prefix from the second try on, then `w = hash % total_weight`
walks the peers like ip_hash; 20 tries, then round robin.

Consistent (ketama, Cache::Memcached::Fast compatible): each peer gets `160 * weight` points;
the base hash is crc32 over `host`, a NUL byte and `port` of the peer's `server` string; point
j is crc32(base ‖ previous point as 4 little-endian bytes). A key goes to the first point
whose hash is ≥ crc32(KEY) (wrapping); a skipped peer moves the walk to the next point, giving
up after as many tries as there are points. Among peers with the same `server` string the
smooth WRR picks, as in nginx.
"""

from __future__ import annotations

import bisect
import struct
import zlib
from collections.abc import Sequence
from typing import ClassVar

from pylb.balancing.base import ACTIVE, Balancer, Peer, Pick, by_weight, smooth_wrr


def _crc_update(crc: int, data: bytes) -> int:
    return zlib.crc32(data, crc)


class Hash(Balancer):
    allows_backup: ClassVar[bool] = False

    def select_primary(self, pick: Pick, now: float) -> Peer | None:
        peers = self.primary
        if pick.tries > 20 or len(peers) < 2 or not pick.key:
            return smooth_wrr(self.tier1, pick, now)
        h = 0 if pick.hash is None else pick.hash
        total = self.total_weight
        while True:
            crc = 0
            if pick.rehash > 0:
                crc = _crc_update(crc, b"%d" % pick.rehash)
            crc = _crc_update(crc, pick.key)
            h += (crc >> 16) & 0x7FFF
            peer = by_weight(peers, h % total)
            pick.rehash += 1
            pick.hash = h
            if peer.index not in pick.tried and peer.state == ACTIVE and peer.usable(now):
                return peer
            pick.tries += 1
            if pick.tries > 20:
                return smooth_wrr(self.tier1, pick, now)


def _host_port(server: str) -> tuple[bytes, bytes]:
    """nginx's split of a `server` string: a trailing `:digits` is the port."""
    raw = server.encode()
    if raw[:5].lower() == b"unix:":
        return raw[5:], b""
    j = len(raw) - 1
    while j >= 0 and raw[j:j + 1].isdigit():
        j -= 1
    if j >= 0 and raw[j:j + 1] == b":" and j < len(raw) - 1:
        return raw[:j], raw[j + 1:]
    return raw, b""


def ketama_points(peers: Sequence[Peer]) -> list[tuple[int, str]]:
    points: list[tuple[int, str]] = []
    for p in peers:
        host, port = _host_port(p.server)
        base = _crc_update(_crc_update(_crc_update(0, host), b"\0"), port)
        # nginx finalises each point from the running (non-finalised) base; zlib's crc32
        # is already final-xored, and resuming from a final value is exactly
        # ngx_crc32_update on the un-finalised state, so chaining works unchanged.
        prev = 0
        for _ in range(160 * p.weight):
            h = _crc_update(base, struct.pack("<I", prev))
            points.append((h, p.server))
            prev = h
    points.sort(key=lambda t: t[0])
    out: list[tuple[int, str]] = []
    for pt in points:
        if not out or out[-1][0] != pt[0]:
            out.append(pt)
    return out


class ConsistentHash(Balancer):
    allows_backup: ClassVar[bool] = False

    def __init__(self, peers: Sequence[Peer]) -> None:
        self.points: list[tuple[int, str]] = []
        self.hashes: list[int] = []
        super().__init__(peers)

    def refresh(self) -> None:
        super().refresh()
        self.points = ketama_points(self.primary)
        self.hashes = [h for h, _ in self.points]

    def select_primary(self, pick: Pick, now: float) -> Peer | None:
        n = len(self.points)
        if len(self.primary) < 2 or not pick.key or n == 0:
            return smooth_wrr(self.tier1, pick, now)
        if pick.hash is None:
            pick.hash = bisect.bisect_left(self.hashes, zlib.crc32(pick.key))
        while True:
            server = self.points[pick.hash % n][1]
            cands = [p for p in self.primary if p.server == server and p.state == ACTIVE]
            best = smooth_wrr(cands, pick, now)
            if best is not None:
                return best
            pick.hash += 1
            pick.tries += 1
            if pick.tries >= n:
                return None
