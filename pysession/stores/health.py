"""Store health as the store-backed managers see it: up / down, logged once per outage,
retried after a pause; and the answers the node gives: 503 (`fail_closed`, lock timeouts),
409 (a save that would lose a concurrent change).

Sans-IO: every method takes `now`; the managers call `failed` when an operation raised
`StoreError` and `ok` when one succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pysession.manager import SessionError
from pysession.store import StoreError

log = logging.getLogger("pysession.stores")


class SessionUnavailable(SessionError):
    """The session cannot be served safely right now (store down with `fail_closed`, lock not
    obtained within its bounded wait): the node answers 503 with this text."""

    http_status = 503


class SessionConflict(StoreError):
    """A save would overwrite an attribute another request changed meanwhile. Nothing was
    written; pynode answers 409 (`http_status`) and the client may retry. A StoreError
    rather than a SessionError so the store layer can raise it without the manager."""

    http_status = 409


class Health:
    """One store (or one memcached node): down after a failure, probed again after `retry`
    seconds, logged once when it goes down and once when it comes back."""

    __slots__ = ("down_since", "failures", "label", "last_error", "retry", "retry_at")

    def __init__(self, label: str, retry: float = 2.0) -> None:
        self.label = label
        self.retry = retry
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.failures = 0
        self.last_error = ""

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def usable(self, now: float) -> bool:
        """Up, or down long enough that one more try is due."""
        return self.down_since is None or now >= self.retry_at

    def failed(self, now: float, error: object) -> None:
        self.failures += 1
        self.last_error = str(error)
        self.retry_at = now + self.retry
        if self.down_since is None:
            self.down_since = now
            log.warning("%s is down (%s): serving sessions from memory until it returns",
                        self.label, error)

    def ok(self, now: float) -> None:
        if self.down_since is not None:
            log.warning("%s is back after %.1f s", self.label, now - self.down_since)
            self.down_since = None

    def stats(self) -> dict[str, object]:
        return {"up": self.down_since is None, "failures": self.failures,
                "last_error": self.last_error}


T = TypeVar("T")


async def retry_lock(try_once: Callable[[], Awaitable[T | None]], wait: float,
                     counters: dict[str, int]) -> T:
    """Call `try_once` with exponential backoff (2 ms .. 50 ms) until it returns a lock token
    or `wait` seconds have passed; then count a lock timeout and answer 503. Both store-backed
    managers lock this way, so neither ever goes on without the lock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    delay = 0.002
    while True:
        token = await try_once()
        if token:
            return token
        if loop.time() >= deadline:
            counters["lock_timeouts"] += 1
            raise SessionUnavailable(f"session is locked by another request (waited "
                                     f"{wait:g} s); try again")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
