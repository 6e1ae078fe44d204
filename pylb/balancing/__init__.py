"""Balancing methods: one module each, one small interface (`base.Balancer`), one registry.

Adding a method = one new module + one line in METHODS.
"""

from __future__ import annotations

from pylb.balancing.base import Balancer, Peer, Pick
from pylb.balancing.round_robin import RoundRobin

METHODS: dict[str, type[Balancer]] = {
    "round_robin": RoundRobin,
}

__all__ = ["METHODS", "Balancer", "Peer", "Pick"]
