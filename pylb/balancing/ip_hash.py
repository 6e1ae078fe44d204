"""nginx `ip_hash` (ngx_http_upstream_ip_hash_module.c), byte for byte.

IPv4 hashes the first three octets (the /24), IPv6 all 16 bytes:
`h = 89; for b in addr: h = (h * 113 + b) % 6271`, then `w = h % total_weight` walks the
peer list (config order, every primary peer counts, down ones included) subtracting weights.
A tried / down / failed / non-active peer is skipped by hashing the same bytes again starting
from the current hash; after 20 tries the request falls back to round robin. The hash and the
try count live on the `Pick`, so a retry after a connect error continues the same walk, as in
nginx. `backup` is refused at config time.
"""

from __future__ import annotations

from typing import ClassVar

from pylb.balancing.base import ACTIVE, Balancer, Peer, Pick, by_weight, smooth_wrr


def hash_bytes(client: bytes) -> bytes:
    """The bytes nginx feeds the hash: the /24 of IPv4 (also IPv4-mapped IPv6), else 16."""
    if len(client) == 16 and client[:12] == b"\0" * 10 + b"\xff\xff":
        return client[12:15]
    if len(client) == 4:
        return client[:3]
    return client


def ip_hash_step(h: int, addr: bytes) -> int:
    for b in addr:
        h = (h * 113 + b) % 6271
    return h


class IpHash(Balancer):
    allows_backup: ClassVar[bool] = False
    wants_client: ClassVar[bool] = True

    def select_primary(self, pick: Pick, now: float) -> Peer | None:
        addr = hash_bytes(pick.client)
        peers = self.primary
        if pick.tries > 20 or len(peers) < 2 or not addr:
            return smooth_wrr(self.tier1, pick, now)
        h = 89 if pick.hash is None else pick.hash
        total = self.total_weight
        while True:
            h = ip_hash_step(h, addr)
            peer = by_weight(peers, h % total)
            if peer.index not in pick.tried and peer.state == ACTIVE and peer.usable(now):
                pick.hash = h
                return peer
            pick.tries += 1
            if pick.tries > 20:
                pick.hash = h
                return smooth_wrr(self.tier1, pick, now)
