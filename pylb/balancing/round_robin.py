"""Smooth weighted round robin, exactly nginx's (weights 5,1,1 → a a b a c a a)."""

from __future__ import annotations

from pylb.balancing.base import Balancer, Peer, Pick


class RoundRobin(Balancer):
    def select_from(self, peers: list[Peer], pick: Pick, now: float) -> Peer | None:
        best: Peer | None = None
        total = 0
        for p in peers:
            if p.index in pick.tried or not p.usable(now):
                continue
            p.current += p.effective
            total += p.effective
            if p.effective < p.weight:
                p.effective += 1
            if best is None or p.current > best.current:
                best = p
        if best is not None:
            best.current -= total
        return best
