"""memcached-session-manager's decisions, sans-IO: which memcached node a session lives on,
where its backup goes, when a node counts as dead, when a request must lock, when a backup
can be skipped. No clock, no socket: `now` is an argument everywhere, so unit tests replay
any timeline.

msm's rules (de.javakaffee.web.msm.NodeIdService / MemcachedNodesManager):

* the node id is part of the session id: `ID-n1.node1`;
* a new session goes to a live *regular* node (round robin here); `failover_nodes` are used
  only when no regular node is left (seed 003: `failoverNodes="n1"`, the memcached next to
  this Tomcat, so a Tomcat crash does not take the only copy with it);
* the backup (`bak:ID`, non-sticky) goes to the next live node after the session's node;
* a session whose node is dead moves to the next live node: its id suffix changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pysession.ids import format_session_id, parse_session_id
from pysession.stores.health import Health

LOCK_MODES = ("none", "all", "auto", "uriPattern")


class NodeRing:
    """Node ids in configuration order, with msm's failover-node preference and health."""

    def __init__(self, ids: list[str], failover: Iterable[str] = (), retry: float = 2.0
                 ) -> None:
        self.ids = list(ids)
        self.failover = [f for f in failover if f]
        unknown = [f for f in self.failover if f not in self.ids]
        if unknown:
            raise ValueError(f"failover node {unknown[0]!r} is not in memcached_nodes")
        self.regular = [i for i in self.ids if i not in self.failover] or list(self.ids)
        self.health = {i: Health(f"memcached node {i}", retry) for i in self.ids}
        self._rr = 0

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.health

    def usable(self, node_id: str, now: float) -> bool:
        h = self.health.get(node_id)
        return h is not None and h.usable(now)

    def pick_new(self, now: float) -> str:
        """The node for a new session: a usable regular node (round robin), else a usable
        failover node, else (everything down) the first regular node."""
        for group in (self.regular, self.failover):
            live = [i for i in group if self.usable(i, now)]
            if live:
                self._rr += 1
                return live[self._rr % len(live)]
        return self.regular[0]

    def next_after(self, node_id: str, now: float) -> str | None:
        """The backup / relocation node for sessions of `node_id`: the next usable node after
        it in ring order, regular nodes first; None when no other node is usable."""
        if node_id not in self.health:
            return self.pick_new(now) if any(self.usable(i, now) for i in self.ids) else None
        i = self.ids.index(node_id)
        order = self.ids[i + 1:] + self.ids[:i]
        for want_regular in (True, False):
            for cand in order:
                if (cand in self.regular) == want_regular and self.usable(cand, now):
                    return cand
        return None


def node_of(sid: str) -> str | None:
    parts = parse_session_id(sid)
    return None if parts is None else parts.node_id


def with_node(sid: str, node_id: str) -> str:
    parts = parse_session_id(sid)
    if parts is None:
        raise ValueError(f"not a session id: {sid!r}")
    return format_session_id(parts.base, node_id, parts.route)


def backup_key(sid: str) -> str:
    return "bak:" + sid


def validity_key(sid: str) -> str:
    return "validity:" + sid


def lock_key(sid: str) -> str:
    return "lock:" + sid


def item_ttl(max_inactive: int, sticky: bool) -> float:
    """msm's memcached expiry: max-inactive (sticky), 2x (non-sticky, so the backup outlives
    the validity check); 0 (never) for a session that never expires."""
    if max_inactive < 0:
        return 0
    return float(max_inactive if sticky else 2 * max_inactive)


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class LockPolicy:
    """msm's lockingMode: none | all | auto | uriPattern:REGEX.

    `auto` here: lock requests that may write (methods other than GET/HEAD/OPTIONS) and
    GETs on a URI that has written a session before (learned, bounded); the rest go unlocked
    and save with compare-and-swap, so a wrong guess is merged or refused, never lost.
    """

    mode: str = "none"
    pattern: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> LockPolicy:
        if text.startswith("uriPattern:"):
            try:
                return cls("uriPattern", re.compile(text[len("uriPattern:"):]))
            except re.error as exc:
                raise ValueError(f"bad lock uriPattern: {exc}") from None
        if text not in ("none", "all", "auto"):
            raise ValueError("lock_mode: expected none, all, auto or uriPattern:REGEX")
        return cls(text)

    def needs_lock(self, method: str, path: str, writers: set[str]) -> bool:
        if self.mode == "all":
            return True
        if self.mode == "uriPattern":
            return self.pattern is not None and self.pattern.match(path) is not None
        if self.mode == "auto":
            return method not in ("GET", "HEAD", "OPTIONS") or path in writers
        return False
