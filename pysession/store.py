"""The Store interface: *how* session bytes are kept; never *when* (that is the manager's).

Stores speak bytes (from pysession.serializer) keyed by the full session id. The interface is
async because most stores are on the network (memcached, redis); local stores (FileStore,
SQLiteStore) do their small synchronous IO inside the coroutine.

`ttl` is a hint in seconds for stores with native expiry (memcached item expiry, redis
EXPIRE); None means "no expiry from the store". A store never decides that a session expired
by itself beyond that: the manager checks the times inside the record.
"""

from __future__ import annotations

import abc


class StoreError(RuntimeError):
    """The store is unreachable or failed; managers degrade (log once, keep serving)."""


class Store(abc.ABC):
    """get / set / delete / keys / touch over bytes."""

    name = "store"

    @abc.abstractmethod
    async def get(self, sid: str) -> bytes | None:
        """The bytes saved under `sid`, or None when there are none."""

    @abc.abstractmethod
    async def set(self, sid: str, data: bytes, ttl: float | None = None) -> None: ...

    @abc.abstractmethod
    async def delete(self, sid: str) -> None:
        """Remove `sid`; removing an absent key is not an error."""

    @abc.abstractmethod
    async def keys(self) -> list[str]:
        """Every session id in the store (for sweeps and admin pages; may be slow)."""

    @abc.abstractmethod
    async def touch(self, sid: str, ttl: float | None = None) -> bool:
        """Refresh the expiry without rewriting the data; False when `sid` is absent."""

    async def clear(self) -> None:
        for sid in await self.keys():
            await self.delete(sid)

    async def close(self) -> None:
        """Release connections/files."""
        return None

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class MemoryStore(Store):
    """A dict; for tests and as the reference semantics (ttl is recorded, not enforced)."""

    name = "memory"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.ttls: dict[str, float | None] = {}

    async def get(self, sid: str) -> bytes | None:
        return self.data.get(sid)

    async def set(self, sid: str, data: bytes, ttl: float | None = None) -> None:
        self.data[sid] = data
        self.ttls[sid] = ttl

    async def delete(self, sid: str) -> None:
        self.data.pop(sid, None)
        self.ttls.pop(sid, None)

    async def keys(self) -> list[str]:
        return list(self.data)

    async def touch(self, sid: str, ttl: float | None = None) -> bool:
        if sid not in self.data:
            return False
        self.ttls[sid] = ttl
        return True
