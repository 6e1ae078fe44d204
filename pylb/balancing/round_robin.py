"""Smooth weighted round robin, exactly nginx's (weights 5,1,1 → a a b a c a a).

httpd's `lbmethod=byrequests` is the same walk without `effective` (which only differs after
failures), so one module serves both.
"""

from __future__ import annotations

from pylb.balancing.base import Balancer, Peer, Pick, smooth_wrr


class RoundRobin(Balancer):
    def select_primary(self, pick: Pick, now: float) -> Peer | None:
        return smooth_wrr(self.tier1, pick, now)
