"""The peer-selection interface and nginx's passive health bookkeeping (sans-IO).

Semantics follow ngx_http_upstream_round_robin.c: a peer is skipped while
`fails >= max_fails` and `now - checked <= fail_timeout`; after fail_timeout it gets one trial
request; a failure adds one to `fails` and lowers `effective` by `weight // max_fails`;
a success after the trial resets `fails`. A one-peer group is never marked failed.

Tiers: the first tier is every primary peer whose runtime state is `active`; the second tier
(used only when the first yields nothing) is the backup peers plus primaries in `standby`
(httpd's hot standby). Peers in `drain`/`disabled` take only requests already stuck to them
(the sticky layer asks `Peer.usable`), `stopped` take nothing. No method reads a clock:
`now` comes in as an argument, so tests replay any timeline.

With `--workers N` the passive-health fields (`fails`, `checked`, `accessed`) can live on a
shared board (nginx's `zone`, implemented by `pylb.shared_health`): the balancer keeps its
local copy for the per-request decisions, brings it up to date when the board's change
counter moved (one integer compare per pick), and writes through on the rare transitions —
a failure, the reset after a trial, the trial itself. `board` is None in one process.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar, Protocol

ACTIVE = "active"
DRAIN = "drain"
DISABLED = "disabled"
STOPPED = "stopped"
STANDBY = "standby"
STATES = (ACTIVE, DRAIN, DISABLED, STOPPED, STANDBY)


class Peer:
    __slots__ = ("accessed", "backup", "cap", "checked", "conns", "current", "down", "effective",
                 "fail_timeout", "failures", "fails", "healthy", "host", "index", "max_fails",
                 "name", "port", "requests", "route", "server", "shared_key", "state",
                 "sticky_hits", "weight")

    def __init__(self, name: str, host: str, port: int, weight: int = 1, max_fails: int = 1,
                 fail_timeout: float = 10.0, backup: bool = False, down: bool = False,
                 route: str | None = None, state: str = ACTIVE) -> None:
        self.name = name
        self.host = host
        self.port = port
        # the `server` string nginx hashes for `hash ... consistent`
        self.server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.weight = weight
        self.effective = weight
        self.cap = weight  # effective grows back up to this (lowered during slow start)
        self.current = 0
        self.max_fails = max_fails
        self.fail_timeout = fail_timeout
        self.fails = 0
        self.checked = 0.0
        self.accessed = 0.0
        self.backup = backup
        self.down = down
        self.route = route
        self.state = state
        self.healthy = True  # active health checks (pylb.health) flip this
        self.index = 0
        self.conns = 0  # requests in flight (least_conn, manager page)
        self.requests = 0
        self.failures = 0  # total failed attempts (manager page)
        self.sticky_hits = 0
        self.shared_key: bytes | None = None  # its slot on the shared board, when bound

    def usable(self, now: float) -> bool:
        """Can take a request at all (sticky requests may use drain/disabled peers)."""
        if self.down or not self.healthy or self.state == STOPPED:
            return False
        return not (self.max_fails and self.fails >= self.max_fails
                    and now - self.checked <= self.fail_timeout)

    @property
    def active(self) -> int:
        return self.conns

    def __repr__(self) -> str:
        return f"<Peer {self.name} {self.host}:{self.port} w={self.weight} {self.state}>"


class HealthBoard(Protocol):
    """Passive-health state shared between processes (see `pylb.shared_health`).

    Every method takes a peer bound to the board (`shared_key` set) and leaves the board's
    current `fails`/`checked`/`accessed` in the peer's own fields.
    """

    @property
    def gen(self) -> Sequence[int]:
        """A change counter: `gen[0]` moves whenever any slot changes."""

    def pull(self, bal: Balancer) -> None:
        """Copy the board's state into every bound peer of `bal`; note `bal.board_seen`."""

    def fail(self, peer: Peer, now: float) -> None:
        """One more failure: `fails += 1`, `checked = accessed = now`."""

    def reset(self, peer: Peer) -> None:
        """A success: `fails = 0` if the board still says `accessed < checked`."""

    def clear(self, peer: Peer) -> None:
        """`fails = 0` unconditionally (an active check saw the member come back)."""

    def claim(self, peer: Peer, now: float) -> bool:
        """Take the trial: if `now - checked > fail_timeout`, set `checked = now` and say
        True; otherwise (another process took it) say False."""


class Pick:
    """What a balancer may look at for one request, plus per-request retry state."""

    __slots__ = ("client", "hash", "key", "rehash", "route", "tried", "tries")

    def __init__(self, client: bytes = b"", key: bytes = b"", route: str | None = None) -> None:
        self.client = client  # packed client address (4 or 16 bytes)
        self.key = key  # the evaluated `hash` key
        self.route = route
        self.tried: set[int] = set()
        self.hash: int | None = None  # ip_hash / hash carry their hash across retries
        self.tries = 0  # skips so far (nginx gives up after 20)
        self.rehash = 0  # hash module: iterations so far (the decimal prefix)


def eligible(p: Peer, pick: Pick, now: float) -> bool:
    return p.index not in pick.tried and p.usable(now)


def by_weight(peers: Sequence[Peer], w: int) -> Peer:
    """The peer a point `w` (0 <= w < total weight) falls on when each peer spans its weight
    in list order: nginx's walk for `ip_hash` and `hash` (`w = hash % total_weight`)."""
    i = 0
    while w >= peers[i].weight:
        w -= peers[i].weight
        i += 1
    return peers[i]


def smooth_wrr(peers: Sequence[Peer], pick: Pick, now: float) -> Peer | None:
    """nginx's smooth weighted round robin over `peers` (already restricted to one tier)."""
    best: Peer | None = None
    total = 0
    for p in peers:
        if p.index in pick.tried or not p.usable(now):
            continue
        p.current += p.effective
        total += p.effective
        if p.effective < p.cap:
            p.effective += 1
        if best is None or p.current > best.current:
            best = p
    if best is not None:
        best.current -= total
    return best


class Balancer(abc.ABC):
    """Choose a peer for a request; learn from the outcome (passive health)."""

    #: methods like ip_hash refuse backup peers at config time (nginx does too)
    allows_backup: ClassVar[bool] = True
    #: whether `Pick.client` (the packed client address) is needed
    wants_client: ClassVar[bool] = False

    def __init__(self, peers: Sequence[Peer]) -> None:
        self.primary = [p for p in peers if not p.backup]
        self.backups = [p for p in peers if p.backup]
        for i, p in enumerate(self.primary + self.backups):
            p.index = i
        self.single = len(self.primary) == 1 and not self.backups
        self.tier1: list[Peer] = []
        self.tier2: list[Peer] = []
        self.total_weight = 0
        self.board: HealthBoard | None = None
        self.board_seen = -1  # the board's change counter when last pulled
        self.refresh()

    @property
    def peers(self) -> list[Peer]:
        return self.primary + self.backups

    def refresh(self) -> None:
        """Recompute tiers and weights after a runtime state or weight change."""
        self.tier1 = [p for p in self.primary if p.state == ACTIVE]
        self.tier2 = [p for p in self.primary if p.state == STANDBY] + \
            [p for p in self.backups if p.state in (ACTIVE, STANDBY)]
        self.total_weight = sum(p.weight for p in self.primary)
        self.single = len(self.primary) == 1 and not self.backups

    def set_weight(self, peer: Peer, weight: int) -> None:
        peer.weight = weight
        peer.effective = weight
        peer.cap = weight
        peer.current = 0
        self.refresh()

    def set_state(self, peer: Peer, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r} (known: {', '.join(STATES)})")
        peer.state = state
        self.refresh()

    @abc.abstractmethod
    def select_primary(self, pick: Pick, now: float) -> Peer | None:
        """Pick among the first tier (`self.tier1`); skip tried and unusable peers."""

    def sync(self) -> None:
        """Bring in the shared board's state if it changed (callers that test
        `Peer.usable` without `select`, e.g. the sticky layer)."""
        board = self.board
        if board is not None and board.gen[0] != self.board_seen:
            board.pull(self)

    def select(self, pick: Pick, now: float) -> Peer | None:
        if self.single:
            p = self.primary[0]
            if p.index in pick.tried or p.down or not p.healthy or p.state != ACTIVE:
                return None
            return p
        board = self.board
        if board is not None and board.gen[0] != self.board_seen:
            board.pull(self)
        peer = self.select_primary(pick, now)
        if peer is None and self.tier2:
            peer = smooth_wrr(self.tier2, pick, now)
        if peer is not None and now - peer.checked > peer.fail_timeout:
            if (peer.fails and board is not None and peer.shared_key is not None
                    and not board.claim(peer, now) and not peer.usable(now)):
                # another process took the trial first: the peer is out again
                return self.select(pick, now)
            peer.checked = now
        return peer

    def report(self, peer: Peer, ok: bool, now: float) -> None:
        """The outcome of a request sent to `peer` (nginx's `free` callback)."""
        if not ok:
            peer.failures += 1
        if self.single:
            return
        if not ok:
            if self.board is not None and peer.shared_key is not None:
                self.board.fail(peer, now)
            else:
                peer.fails += 1
                peer.accessed = now
                peer.checked = now
            if peer.max_fails:
                peer.effective -= peer.weight // peer.max_fails
            peer.effective = max(peer.effective, 0)
        elif peer.fails and peer.accessed < peer.checked:
            if self.board is not None and peer.shared_key is not None:
                self.board.reset(peer)
            else:
                peer.fails = 0

    def clear_fails(self, peer: Peer) -> None:
        """Forget passive failures (an active health check saw the member come back)."""
        if self.board is not None and peer.shared_key is not None:
            self.board.clear(peer)
        else:
            peer.fails = 0
