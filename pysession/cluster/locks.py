"""The cluster-wide per-session lock table (`lock = "session"`), kept by the coordinator.

Sans-IO: time comes in as `now`, and every method that may grant a lock returns who got it;
the DeltaManager's shell sends the grants and sets the one lease timer.
"""

from __future__ import annotations

from collections import deque

LockKey = tuple[str, int]
"""Who asked for a lock: (member uuid, that member's request token)."""


class SessionLocks:
    """Per-session FIFO locks granted by the coordinator (sans-IO: time is passed in).

    Holders and waiters are keyed by (member, token), one token per lock request, so a
    requester that gave up can withdraw exactly that request, whether or not it was granted
    meanwhile, and a late or repeated release of an old grant cannot free a newer one. A
    grant expires after `lease` seconds (a hung holder, a lost release): it passes on to
    the next waiter. Every method that may grant returns who got the lock; telling them is
    the caller's job.
    """

    def __init__(self, lease: float = 30.0) -> None:
        self.lease = lease
        self.holders: dict[str, tuple[LockKey, float]] = {}   # sid -> (holder, expires at)
        self.waiters: dict[str, deque[LockKey]] = {}

    def acquire(self, sid: str, key: LockKey, now: float) -> bool:
        """True: `key` holds the lock now; False: it waits its turn (FIFO)."""
        if sid not in self.holders:
            self.holders[sid] = (key, now + self.lease)
            return True
        self.waiters.setdefault(sid, deque()).append(key)
        return False

    def release(self, sid: str, key: LockKey, now: float) -> LockKey | None:
        """`key` is done with the lock or gave up waiting for it: a holder's lock passes on,
        a waiter leaves the queue, anything else (already expired, passed on, unknown) is
        ignored. Returns the key granted the lock by this call, if any."""
        held = self.holders.get(sid)
        if held is not None and held[0] == key:
            return self._pass_on(sid, now)
        q = self.waiters.get(sid)
        if q is not None and key in q:
            q.remove(key)
            if not q:
                del self.waiters[sid]
        return None

    def expire(self, now: float) -> list[tuple[str, LockKey, LockKey | None]]:
        """Locks whose lease ran out pass on: (sid, expired holder, new holder or None)."""
        out: list[tuple[str, LockKey, LockKey | None]] = []
        for sid, (key, until) in list(self.holders.items()):
            if until <= now:
                out.append((sid, key, self._pass_on(sid, now)))
        return out

    def release_all(self, member: str, now: float) -> list[tuple[str, LockKey]]:
        """`member` left: its waits are withdrawn and its locks pass on; returns the grants."""
        for sid, q in list(self.waiters.items()):
            kept = deque(k for k in q if k[0] != member)
            if kept:
                self.waiters[sid] = kept
            else:
                del self.waiters[sid]
        grants: list[tuple[str, LockKey]] = []
        for sid, (key, _) in list(self.holders.items()):
            if key[0] == member:
                nxt = self._pass_on(sid, now)
                if nxt is not None:
                    grants.append((sid, nxt))
        return grants

    def next_deadline(self) -> float | None:
        """When the earliest lease runs out (None: no lock held)."""
        return min((until for _, until in self.holders.values()), default=None)

    def _pass_on(self, sid: str, now: float) -> LockKey | None:
        q = self.waiters.get(sid)
        if not q:
            self.waiters.pop(sid, None)
            del self.holders[sid]
            return None
        nxt = q.popleft()
        if not q:
            del self.waiters[sid]
        self.holders[sid] = (nxt, now + self.lease)
        return nxt
