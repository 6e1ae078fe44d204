"""memcached as a session store (pymemcache), one `MemcachedStore` per memcached node.

pymemcache is a blocking client, so every call runs on a small thread pool owned by the store
(one per memcached node, as many threads as pooled connections): the event loop never waits
on a socket. Timeouts are short (a session store that hangs is worse than one that is down)
and every failure becomes `StoreError`, which the managers turn into "node down, degrade".

Besides the `Store` interface the managers get what memcached-session-manager uses: `gets` /
`cas` (optimistic writes), `add` (locks), `get_many` / `set_many` (session + validity in one
round trip). Keys are session ids and ids with a prefix (`bak:`, `validity:`, `lock:`).
Values are bytes; the serialiser (msgpack under the type policy) lives above.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheError

from pysession.store import Store, StoreError

T = TypeVar("T")

#: memcached treats an expiry above 30 days as an absolute unix time
_RELATIVE_LIMIT = 30 * 24 * 3600

_NODE_RE = re.compile(r"^([A-Za-z0-9_]+):([^:,\s]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$")


@dataclass(frozen=True, slots=True)
class MemcachedNode:
    """One `id:host:port` entry of msm's `memcachedNodes`."""

    id: str
    host: str
    port: int


def parse_nodes(text: str) -> list[MemcachedNode]:
    """`"n1:host:port,n2:host:port"` (commas or spaces, as msm) → nodes; ValueError names the
    bad entry."""
    nodes: list[MemcachedNode] = []
    for entry in re.split(r"[,\s]+", text.strip()):
        if not entry:
            continue
        m = _NODE_RE.match(entry)
        if not m:
            raise ValueError(f"bad memcached node {entry!r} (expected id:host:port)")
        port = int(m.group(3))
        if not 0 < port < 65536:
            raise ValueError(f"bad port in memcached node {entry!r}")
        if any(n.id == m.group(1) for n in nodes):
            raise ValueError(f"memcached node id {m.group(1)!r} is used twice")
        nodes.append(MemcachedNode(m.group(1), m.group(2).strip("[]"), port))
    if not nodes:
        raise ValueError("no memcached nodes given")
    return nodes


def expiry(ttl: float | None) -> int:
    """memcached's exptime for a ttl in seconds: 0 = never, >30 days as an absolute time."""
    if ttl is None or ttl <= 0:
        return 0
    secs = max(1, round(ttl))
    if secs > _RELATIVE_LIMIT:
        return int(time.time()) + secs
    return secs


class MemcachedStore(Store):
    """One memcached server; bytes in, bytes out, failures as StoreError."""

    name = "memcached"

    def __init__(self, host: str, port: int, *, timeout: float = 1.0,
                 connect_timeout: float | None = None, pool_size: int = 4,
                 node_id: str = "") -> None:
        self.host = host
        self.port = port
        self.node_id = node_id
        self.client = PooledClient((host, port), connect_timeout=connect_timeout or timeout,
                                   timeout=timeout, no_delay=True, max_pool_size=pool_size,
                                   default_noreply=False)
        self._pool = ThreadPoolExecutor(max_workers=pool_size,
                                        thread_name_prefix=f"memcached-{node_id or port}")

    def __repr__(self) -> str:
        return f"<MemcachedStore {self.node_id or '?'} {self.host}:{self.port}>"

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(*args))
        except (TimeoutError, MemcacheError, OSError) as exc:
            raise StoreError(f"memcached {self.node_id or ''} {self.host}:{self.port}: "
                             f"{exc.__class__.__name__}: {exc}".replace("  ", " ")) from None

    # -- Store interface ----------------------------------------------------------------
    async def get(self, sid: str) -> bytes | None:
        v = await self._run(self.client.get, sid)
        return None if v is None else bytes(v)

    async def set(self, sid: str, data: bytes, ttl: float | None = None) -> None:
        ok = await self._run(self.client.set, sid, data, expiry(ttl))
        if ok is False:
            raise StoreError(f"memcached {self.host}:{self.port}: set {sid} refused")

    async def delete(self, sid: str) -> None:
        await self._run(self.client.delete, sid)

    async def touch(self, sid: str, ttl: float | None = None) -> bool:
        return bool(await self._run(self.client.touch, sid, expiry(ttl)))

    async def keys(self) -> list[str]:
        """Every key, through `lru_crawler metadump all` (memcached >= 1.4.31)."""
        for _ in range(40):  # the crawler may be busy with its own background pass
            raw = await self._run(self.client.raw_command, "lru_crawler metadump all",
                                  "END\r\n")
            if not raw.startswith(b"BUSY"):
                break
            await asyncio.sleep(0.05)
        else:
            raise StoreError(f"memcached {self.host}:{self.port}: lru crawler stays busy")
        out = []
        for line in raw.decode("ascii", "replace").splitlines():
            if line.startswith("key="):
                out.append(unquote(line.split(" ", 1)[0][4:]))
        return out

    async def clear(self) -> None:
        await self._run(self.client.flush_all, 0, False)

    async def close(self) -> None:
        self.client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- what msm needs -------------------------------------------------------------------
    async def get_many(self, keys: list[str]) -> dict[str, bytes]:
        got = await self._run(self.client.get_many, keys)
        return {k: bytes(v) for k, v in got.items()}

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None:
        failed = await self._run(self.client.set_many, items, expiry(ttl))
        if failed:
            raise StoreError(f"memcached {self.host}:{self.port}: set refused for {failed}")

    async def gets_many_raw(self, keys: list[str]) -> dict[str, tuple[bytes | None, Any]]:
        """{key: (value, cas token)} for the keys present, in one round trip."""
        got = await self._run(self.client.gets_many, keys)
        return {k: (None if v is None else bytes(v), cas) for k, (v, cas) in got.items()}

    async def gets(self, key: str) -> tuple[bytes | None, bytes | None]:
        """Value and cas token (None, None when absent)."""
        v, cas = await self._run(self.client.gets, key)
        return (None if v is None else bytes(v)), cas

    async def cas(self, key: str, data: bytes, token: bytes, ttl: float | None = None
                  ) -> bool | None:
        """Store only if unchanged since `gets`: True stored, False changed, None absent."""
        return await self._run(self.client.cas, key, data, token, expiry(ttl))

    async def add(self, key: str, data: bytes, ttl: float | None = None) -> bool:
        """Store only if absent (locks)."""
        return bool(await self._run(self.client.add, key, data, expiry(ttl)))

    async def ttl_of(self, key: str) -> float | None:
        """Seconds until `key` expires (-1 never), None when absent (meta get `mg KEY t`)."""
        raw = await self._run(self.client.raw_command, f"mg {key} t", "\r\n")
        m = re.search(rb"\bt(-?\d+)", raw)
        return None if m is None else float(m.group(1))
