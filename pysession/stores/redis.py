"""redis as a session store (redis-py asyncio): one hash per session, attributes as fields.

    KEY = prefix + session id            (default prefix "session:")
    __meta      msgpack {"created", "last_accessed", "this_accessed", "max_inactive", "principal"}
    a:<name>    msgpack of one attribute value (pycommon.wire type policy; never pickle)
    TTL         the session's max-inactive, refreshed by every save

A save writes only the fields that changed, in one round trip, through a Lua script that is
also the concurrency rule (see docs/stores.md): every changed field carries the bytes the
request *loaded*; the script applies the save only if each of those fields still holds them,
so two requests changing different attributes both land, and a request that would overwrite a
change it never saw is refused (`SessionConflict`) instead of losing it silently.

`RedisStore.connect(...)` builds the client for the three connection modes: a single server
(host/port/database/password/TLS as tomcat-redis-session-manager), Sentinel (a master name and
sentinels; redis-py follows failovers), and Cluster (a seed node list; one session = one key,
so every script touches one slot).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from pycommon.config import parse_hostport
from pycommon.wire import DEFAULT_POLICY, TypePolicy
from pysession.store import Store, StoreError
from pysession.stores.health import SessionConflict

__all__ = ["RedisSettings", "RedisStore", "SessionConflict", "SessionGone"]

META = "__meta"
ATTR = "a:"
#: sentinel for "this field was absent when loaded" / "remove this field"
ABSENT = b""

# KEYS[1] = session key
# ARGV[1] = ttl in ms (<= 0: no expiry)   ARGV[2] = "1" when creating (key must not exist)
# ARGV[3] = "1" to check loaded values    then triples: field, loaded bytes ("" = absent),
#           new bytes ("" = delete)
# returns 1 saved, 0 conflict (a field changed underneath), -1 gone (key vanished), -2 exists
_SAVE = """
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local creating = ARGV[2] == '1'
local check = ARGV[3] == '1'
local exists = redis.call('EXISTS', key) == 1
if creating and exists then return -2 end
if (not creating) and (not exists) then return -1 end
if check then
  for i = 4, #ARGV, 3 do
    local cur = redis.call('HGET', key, ARGV[i])
    if cur == false then cur = '' end
    if ARGV[i] ~= '__meta' and cur ~= ARGV[i + 1] then return 0 end
  end
end
for i = 4, #ARGV, 3 do
  if ARGV[i + 2] == '' then
    redis.call('HDEL', key, ARGV[i])
  else
    redis.call('HSET', key, ARGV[i], ARGV[i + 2])
  end
end
if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
return 1
"""

# KEYS[1] = lock key, ARGV[1] = token: delete only our own lock
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SessionGone(StoreError):
    """The session key vanished (expired in redis or invalidated by another node)."""


@dataclass
class RedisSettings:
    """Connection settings (the seed's RedisSessionManager attributes plus the HA modes)."""

    mode: str = "single"                  # single | sentinel | cluster
    host: str = "127.0.0.1"
    port: int = 6379
    database: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_ca_file: str | None = None
    tls_verify: bool = True
    timeout: float = 1.0
    sentinels: list[str] = field(default_factory=list)   # "host:port"
    sentinel_master: str = "mymaster"
    cluster_nodes: list[str] = field(default_factory=list)  # "host:port"


class RedisStore(Store):
    """Sessions as redis hashes; the `Store` interface plus field-level load/save."""

    name = "redis"

    def __init__(self, client: Any, prefix: str = "session:",
                 policy: TypePolicy = DEFAULT_POLICY, label: str = "redis") -> None:
        self.client = client
        self.prefix = prefix
        self.policy = policy
        self.label = label
        self._save = client.register_script(_SAVE)
        self._unlock = client.register_script(_UNLOCK)

    @classmethod
    def connect(cls, s: RedisSettings, prefix: str = "session:",
                policy: TypePolicy = DEFAULT_POLICY) -> RedisStore:
        # one immediate retry (a pooled connection that died with a redis restart), no
        # backoff: a session store that is down must fail fast so the node can degrade
        common: dict[str, Any] = {"username": s.username, "password": s.password,
                                  "socket_timeout": s.timeout,
                                  "socket_connect_timeout": s.timeout,
                                  "retry": Retry(NoBackoff(), 1)}
        tls: dict[str, Any] = {}
        if s.tls:
            tls = {"ssl": True, "ssl_ca_certs": s.tls_ca_file,
                   "ssl_cert_reqs": "required" if s.tls_verify else "none",
                   "ssl_check_hostname": s.tls_verify}
        client: Any
        if s.mode == "sentinel":
            sentinels = [parse_hostport(x) for x in s.sentinels]
            sent = Sentinel(sentinels, sentinel_kwargs={"socket_timeout": s.timeout},
                            **common, **tls)
            client = sent.master_for(s.sentinel_master, db=s.database)
            label = f"redis sentinel {s.sentinel_master}"
        elif s.mode == "cluster":
            nodes = [ClusterNode(*parse_hostport(x)) for x in s.cluster_nodes]
            client = RedisCluster(startup_nodes=nodes, **common, **tls)
            label = f"redis cluster {','.join(s.cluster_nodes)}"
        else:
            client = aioredis.Redis(host=s.host, port=s.port, db=s.database, **common, **tls)
            label = f"redis {s.host}:{s.port}/{s.database}"
        return cls(client, prefix, policy, label)

    def key(self, sid: str) -> str:
        return self.prefix + sid

    async def _do(self, coro: Any) -> Any:
        try:
            return await coro
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreError(f"{self.label}: {exc.__class__.__name__}: {exc}") from None

    # -- fields (what the redis manager uses) -------------------------------------------
    async def load(self, sid: str) -> dict[str, bytes] | None:
        """All fields of the session's hash, or None when there is none."""
        got = await self._do(self.client.hgetall(self.key(sid)))
        if not got:
            return None
        return {(k.decode() if isinstance(k, bytes) else k): bytes(v) for k, v in got.items()}

    async def save(self, sid: str, changes: list[tuple[str, bytes, bytes]], ttl: float | None,
                   creating: bool = False, check: bool = True) -> None:
        """Apply `(field, loaded bytes, new bytes)` changes (b"" = absent / delete) and set
        the TTL, atomically. Raises SessionConflict / SessionGone / StoreError."""
        args: list[Any] = [int((ttl or 0) * 1000), "1" if creating else "0",
                           "1" if check else "0"]
        for name, old, new in changes:
            args += [name, old, new]
        r = await self._do(self._save(keys=[self.key(sid)], args=args))
        if r == 0:
            raise SessionConflict(f"session {sid}: an attribute this request changed was "
                                  "changed by a concurrent request")
        if r == -1:
            raise SessionGone(f"session {sid} is no longer in {self.label}")
        if r == -2:
            raise SessionConflict(f"session {sid} already exists")

    async def ttl_of(self, sid: str) -> float | None:
        """Seconds to live (None: absent or no expiry)."""
        ms = await self._do(self.client.pttl(self.key(sid)))
        return None if ms is None or ms < 0 else ms / 1000.0

    async def lock(self, sid: str, ttl: float) -> str | None:
        """Try once to take the session's lock; its token when taken."""
        token = secrets.token_hex(8)
        ok = await self._do(self.client.set(f"{self.prefix}lock:{sid}", token, nx=True,
                                            px=max(1, int(ttl * 1000))))
        return token if ok else None

    async def unlock(self, sid: str, token: str) -> None:
        await self._do(self._unlock(keys=[f"{self.prefix}lock:{sid}"], args=[token]))

    # -- Store interface (whole records, for generic users) -----------------------------
    def fields_of(self, record: bytes) -> dict[str, bytes]:
        d = self.policy.unpackb(record)
        meta = {k: d.get(k) for k in ("created", "last_accessed", "this_accessed",
                                      "max_inactive", "principal")}
        out = {META: self.policy.packb(meta)}
        for name, value in (d.get("attributes") or {}).items():
            out[ATTR + name] = self.policy.packb(value)
        return out

    def record_of(self, sid: str, fields: dict[str, bytes]) -> bytes:
        meta = self.policy.unpackb(fields[META])
        attrs = {k[len(ATTR):]: self.policy.unpackb(v) for k, v in fields.items()
                 if k.startswith(ATTR)}
        return self.policy.packb({"v": 1, "id": sid, **meta, "attributes": attrs})

    async def get(self, sid: str) -> bytes | None:
        fields = await self.load(sid)
        if fields is None or META not in fields:
            return None
        return self.record_of(sid, fields)

    async def set(self, sid: str, data: bytes, ttl: float | None = None) -> None:
        key = self.key(sid)
        fields = self.fields_of(data)

        async def write() -> None:
            async with self.client.pipeline(transaction=True) as p:
                p.delete(key)
                p.hset(key, mapping=fields)
                if ttl:
                    p.pexpire(key, int(ttl * 1000))
                await p.execute()

        await self._do(write())

    async def delete(self, sid: str) -> None:
        await self._do(self.client.delete(self.key(sid)))

    async def keys(self) -> list[str]:
        async def scan() -> list[str]:
            out = []
            async for k in self.client.scan_iter(match=self.prefix + "*", count=500):
                name = (k.decode() if isinstance(k, bytes) else k)[len(self.prefix):]
                if not name.startswith("lock:"):
                    out.append(name)
            return out

        return list(await self._do(scan()))

    async def touch(self, sid: str, ttl: float | None = None) -> bool:
        key = self.key(sid)
        if ttl:
            return bool(await self._do(self.client.pexpire(key, int(ttl * 1000))))
        return bool(await self._do(self.client.exists(key)))

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except (RedisError, OSError):
            pass
