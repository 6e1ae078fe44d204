"""The peer-selection interface and nginx's passive health bookkeeping (sans-IO).

Semantics follow ngx_http_upstream_round_robin.c: a peer is skipped while
`fails >= max_fails` and `now - checked <= fail_timeout`; after fail_timeout it gets one trial
request; a failure adds one to `fails` and lowers `effective_weight` by `weight / max_fails`;
a success after the trial resets `fails`. A one-peer group is never marked failed. Backup peers
are used only when no primary peer is usable.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence


class Peer:
    __slots__ = ("accessed", "active", "backup", "checked", "conns", "current", "down",
                 "effective", "fail_timeout", "fails", "host", "index", "max_fails", "name",
                 "port", "requests", "route", "weight")

    def __init__(self, name: str, host: str, port: int, weight: int = 1, max_fails: int = 1,
                 fail_timeout: float = 10.0, backup: bool = False, down: bool = False,
                 route: str | None = None) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.weight = weight
        self.effective = weight
        self.current = 0
        self.max_fails = max_fails
        self.fail_timeout = fail_timeout
        self.fails = 0
        self.checked = 0.0
        self.accessed = 0.0
        self.backup = backup
        self.down = down
        self.route = route
        self.index = 0
        self.conns = 0
        self.active = 0
        self.requests = 0

    def usable(self, now: float) -> bool:
        if self.down:
            return False
        return not (self.max_fails and self.fails >= self.max_fails
                    and now - self.checked <= self.fail_timeout)

    def __repr__(self) -> str:
        return f"<Peer {self.name} {self.host}:{self.port} w={self.weight}>"


class Pick:
    """What a balancer may look at for one request."""

    __slots__ = ("client", "key", "route", "tried")

    def __init__(self, client: bytes = b"", key: bytes = b"", route: str | None = None) -> None:
        self.client = client  # packed client address (4 or 16 bytes)
        self.key = key
        self.route = route
        self.tried: set[int] = set()


class Balancer(abc.ABC):
    """Choose a peer for a request; learn from the outcome (passive health)."""

    def __init__(self, peers: Sequence[Peer]) -> None:
        self.primary = [p for p in peers if not p.backup]
        self.backups = [p for p in peers if p.backup]
        for i, p in enumerate(self.primary + self.backups):
            p.index = i
        self.single = len(self.primary) == 1 and not self.backups

    @property
    def peers(self) -> list[Peer]:
        return self.primary + self.backups

    @abc.abstractmethod
    def select_from(self, peers: list[Peer], pick: Pick, now: float) -> Peer | None:
        """Pick among `peers` (one tier); skip tried and unusable ones."""

    def select(self, pick: Pick, now: float) -> Peer | None:
        if self.single:
            p = self.primary[0]
            if p.index in pick.tried or p.down:
                return None
            return p
        peer = self.select_from(self.primary, pick, now)
        if peer is None and self.backups:
            peer = self.select_from(self.backups, pick, now)
        if peer is not None and now - peer.checked > peer.fail_timeout:
            peer.checked = now
        return peer

    def report(self, peer: Peer, ok: bool, now: float) -> None:
        """The outcome of a request sent to `peer` (nginx's `free` callback)."""
        if self.single:
            return
        if not ok:
            peer.fails += 1
            peer.accessed = now
            peer.checked = now
            if peer.max_fails:
                peer.effective -= peer.weight // peer.max_fails
                peer.effective = max(peer.effective, 0)
        elif peer.accessed < peer.checked:
            peer.fails = 0
