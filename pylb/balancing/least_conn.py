"""nginx `least_conn`: the lowest `conns / weight`; ties broken by smooth WRR among the tied.

`conns` is the number of requests in flight to the peer (the proxy shell counts them).
"""

from __future__ import annotations

from pylb.balancing.base import Balancer, Peer, Pick


class LeastConn(Balancer):
    def select_primary(self, pick: Pick, now: float) -> Peer | None:
        best: Peer | None = None
        many = False
        start = 0
        peers = self.tier1
        for i, p in enumerate(peers):
            if p.index in pick.tried or not p.usable(now):
                continue
            if best is None or p.conns * best.weight < best.conns * p.weight:
                best, many, start = p, False, i
            elif p.conns * best.weight == best.conns * p.weight:
                many = True
        if best is None or not many:
            return best
        total = 0
        first = best
        for p in peers[start:]:
            if p.index in pick.tried or not p.usable(now):
                continue
            if p.conns * first.weight != first.conns * p.weight:
                continue
            p.current += p.effective
            total += p.effective
            if p.effective < p.cap:
                p.effective += 1
            if p.current > best.current:
                best = p
        best.current -= total
        return best
