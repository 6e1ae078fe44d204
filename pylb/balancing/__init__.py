"""Balancing methods: one module each, one small interface (`base.Balancer`), one registry.

Adding a method = one new module + one line in METHODS.
"""

from __future__ import annotations

from pylb.balancing.base import (
    ACTIVE,
    DISABLED,
    DRAIN,
    STANDBY,
    STATES,
    STOPPED,
    Balancer,
    Peer,
    Pick,
)
from pylb.balancing.hash import ConsistentHash, Hash
from pylb.balancing.ip_hash import IpHash
from pylb.balancing.least_conn import LeastConn
from pylb.balancing.random_two import Random, RandomTwo
from pylb.balancing.round_robin import RoundRobin

METHODS: dict[str, type[Balancer]] = {
    "round_robin": RoundRobin,
    "ip_hash": IpHash,
    "hash": Hash,
    "hash_consistent": ConsistentHash,
    "least_conn": LeastConn,
    "random": Random,
    "random_two": RandomTwo,
}

__all__ = ["ACTIVE", "DISABLED", "DRAIN", "METHODS", "STANDBY", "STATES", "STOPPED",
           "Balancer", "Peer", "Pick"]
