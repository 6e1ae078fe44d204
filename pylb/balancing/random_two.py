"""nginx `random [two [least_conn]]`: weighted random; with `two`, draw two distinct peers
and keep the one with fewer connections in flight (`conns / weight`, ties → the first draw).

The random source is injected (`rng`), so a unit test pins the sequence.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

from pylb.balancing.base import Balancer, Peer, Pick


class RandomTwo(Balancer):
    two: ClassVar[bool] = True

    def __init__(self, peers: Sequence[Peer], rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        super().__init__(peers)

    def _draw(self, cands: list[Peer], total: int) -> Peer:
        x = self.rng.randrange(total)
        for p in cands:
            x -= p.weight
            if x < 0:
                return p
        return cands[-1]

    def select_primary(self, pick: Pick, now: float) -> Peer | None:
        cands = [p for p in self.tier1 if p.index not in pick.tried and p.usable(now)]
        if not cands:
            return None
        if len(cands) == 1:
            return cands[0]
        total = sum(p.weight for p in cands)
        a = self._draw(cands, total)
        if not self.two:
            return a
        rest = [p for p in cands if p is not a]
        b = self._draw(rest, total - a.weight)
        return b if b.conns * a.weight < a.conns * b.weight else a


class Random(RandomTwo):
    two: ClassVar[bool] = False
