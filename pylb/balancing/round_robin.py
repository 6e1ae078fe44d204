"""Smooth weighted round robin, exactly nginx's (weights 5,1,1 → a a b a c a a).

httpd's `lbmethod=byrequests` is the same walk without `effective` (which only differs after
failures), so one module serves both.

The walk is O(members) per pick, as in nginx. Large groups usually have equal weights and
all members up, and then the walk is provably a plain cycle in list order: from all
`current == 0`, after j picks of n the picked members hold `(j - n) * w` and the others
`j * w`, and after n picks everything is back to 0. So while that holds pylb keeps only a
cursor (O(1) per pick) and writes the `current` values back ("materialises" them) the moment
anything breaks the pattern (a failure, a state or weight change, an unusable member at the
cursor, a retry) — the sequence stays exactly nginx's. Every n slow picks it checks, in one
pass, whether the pattern holds again.
"""

from __future__ import annotations

from collections.abc import Sequence

from pylb.balancing.base import Balancer, Peer, Pick, smooth_wrr


class RoundRobin(Balancer):
    def __init__(self, peers: Sequence[Peer]) -> None:
        self.fast = False
        self.cursor = 0
        self.slow_picks = 0
        super().__init__(peers)

    def _materialise(self) -> None:
        if not self.fast:
            return
        self.fast = False
        peers = self.tier1
        n = len(peers)
        j = self.cursor
        for i, p in enumerate(peers):
            p.current = (j - n) * p.weight if i < j else j * p.weight
        self.slow_picks = 0

    def _try_fast(self, now: float) -> None:
        peers = self.tier1
        if len(peers) < 2:
            return
        w = peers[0].weight
        for p in peers:
            if p.current != 0 or p.weight != w or p.effective != w or not p.usable(now):
                return
        self.fast = True
        self.cursor = 0

    def refresh(self) -> None:
        if getattr(self, "fast", False):
            self._materialise()
        super().refresh()

    def report(self, peer: Peer, ok: bool, now: float) -> None:
        if not ok:
            self._materialise()
        Balancer.report(self, peer, ok, now)  # not super(): this runs once per request

    def select_primary(self, pick: Pick, now: float) -> Peer | None:
        if self.fast:
            if not pick.tried:
                peers = self.tier1
                p = peers[self.cursor]
                if p.usable(now):
                    self.cursor += 1
                    if self.cursor == len(peers):
                        self.cursor = 0
                    return p
            self._materialise()
        peer = smooth_wrr(self.tier1, pick, now)
        self.slow_picks += 1
        if self.slow_picks >= len(self.tier1):
            self.slow_picks = 0
            self._try_fast(now)
        return peer
