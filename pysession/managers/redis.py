"""RedisSessionManager: tomcat-redis-session-manager's role over redis-py asyncio, without its
pains (pickle-like Java serialisation, whole-session overwrites, TTL not refreshed).

Every request loads the session's hash at start (so any node serves any session: no sticky
balancer needed) and saves at end, in one round trip each:

* only the fields that changed are written — `save_policy = "on_change"` writes the
  attributes set/removed through the API; `"always"` (always-after-request) compares every
  attribute's bytes with what was loaded, so an attribute mutated in place is saved too;
* the TTL is set to max-inactive on every request (also when nothing changed), so the TTL in
  redis always equals the session timeout counted from the last request;
* concurrency (`concurrency`): `"optimistic"` (default) — the save applies only if every
  attribute this request changed still holds the value this request loaded (a Lua script), so
  concurrent requests changing different attributes both land and a request that would
  overwrite a change it never saw is refused (the response is an error; nothing is silently
  lost); `"lock"` — requests on one session are serialised with a redis lock
  (`SET NX PX`, bounded wait, 503 on timeout); `"none"` — last write wins (the measured
  baseline).

Store down → this node keeps serving its memory copies, logs once, writes them back in full
when redis returns; `fail_closed = true` answers 503 instead.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from pycommon.wire import DEFAULT_POLICY, TypePolicy, WireError
from pysession.ids import parse_session_id
from pysession.manager import RequestInfo, StandardManager
from pysession.session import DEFAULT_MAX_INACTIVE, Session
from pysession.store import StoreError
from pysession.stores.health import Health, SessionUnavailable, retry_lock
from pysession.stores.redis import (
    ABSENT,
    ATTR,
    META,
    RedisSettings,
    RedisStore,
    SessionConflict,
    SessionGone,
)

if TYPE_CHECKING:
    from pysession.options import ManagerEnv, Options

log = logging.getLogger("pysession.redis")

N_FIELDS = "redis.fields"    # field -> bytes as loaded / last saved
N_LOCK = "redis.lock"        # lock token held by this request
N_UNSAVED = "redis.unsaved"  # a save failed (outage): write in full next time

SAVE_POLICIES = ("on_change", "always")
CONCURRENCY = ("optimistic", "lock", "none")


class RedisSessionManager(StandardManager):
    kind = "redis"

    def __init__(self, store: RedisStore, *, route: str | None = None,
                 max_inactive: int = DEFAULT_MAX_INACTIVE, distributable: bool = True,
                 policy: TypePolicy = DEFAULT_POLICY, save_policy: str = "on_change",
                 concurrency: str = "optimistic", lock_wait: float = 5.0,
                 fail_closed: bool = False, retry: float = 2.0, max_active: int = -1) -> None:
        super().__init__(route, max_inactive, max_active, distributable, policy)
        if save_policy not in SAVE_POLICIES or concurrency not in CONCURRENCY:
            raise ValueError("bad save_policy or concurrency")
        self.store = store
        self.save_policy = save_policy
        self.concurrency = concurrency
        self.lock_wait = lock_wait
        self.fail_closed = fail_closed
        self.health = Health(store.label, retry)
        self.counters = {"loads": 0, "saves": 0, "conflicts": 0, "lock_timeouts": 0,
                         "degraded": 0, "fields_written": 0, "round_trips": 0}

    # -- sans-IO: record <-> fields --------------------------------------------------------
    def meta_bytes(self, s: Session) -> bytes:
        return self.policy.packb({"created": s.created, "last_accessed": s.last_accessed,
                                  "this_accessed": s.this_accessed,
                                  "max_inactive": s.max_inactive, "principal": s.principal})

    def session_from(self, sid: str, fields: dict[str, bytes]) -> Session | None:
        try:
            meta = self.policy.unpackb(fields[META])
            attrs = {k[len(ATTR):]: self.policy.unpackb(v) for k, v in fields.items()
                     if k.startswith(ATTR)}
            s = Session.from_dict({"id": sid, **meta, "attributes": attrs},
                                  self.distributable, self.policy)
        except (KeyError, TypeError, ValueError, WireError) as exc:
            log.warning("session %s: unreadable hash in redis: %s", sid, exc)
            return None
        s.events = self.events
        s.notes[N_FIELDS] = dict(fields)
        return s

    def changes(self, s: Session) -> list[tuple[str, bytes, bytes]]:
        """(field, loaded bytes, new bytes) for what this request changed (b"" = absent)."""
        loaded: dict[str, bytes] = s.notes.get(N_FIELDS, {})
        out = [(META, loaded.get(META, ABSENT), self.meta_bytes(s))]
        if s.is_new or self.save_policy == "always" or s.notes.get(N_UNSAVED):
            names = set(s.attribute_names()) | {k[len(ATTR):] for k in loaded
                                                if k.startswith(ATTR)}
        else:
            names = set(s.dirty)
        for name in sorted(names):
            fld = ATTR + name
            new = self.policy.packb(s.get_attribute(name)) if name in s else ABSENT
            old = loaded.get(fld, ABSENT)
            if new != old:
                out.append((fld, old, new))
        return out

    def ttl(self, s: Session) -> float | None:
        return float(s.max_inactive) if s.max_inactive >= 0 else None

    # -- IO helpers ---------------------------------------------------------------------------
    async def _io(self, coro: Any, now: float) -> Any:
        self.counters["round_trips"] += 1
        try:
            r = await coro
        except (SessionConflict, SessionGone):
            self.health.ok(now)
            raise
        except StoreError as exc:
            self.health.failed(now, exc)
            raise
        self.health.ok(now)
        return r

    async def _lock(self, sid: str, now: float) -> str | None:
        async def try_once() -> str | None:
            token = await self._io(self.store.lock(sid, max(self.lock_wait * 2, 5.0)), now)
            return str(token) if token else None

        return await retry_lock(try_once, self.lock_wait, self.counters)

    async def _unlock(self, s: Session, now: float) -> None:
        token = s.notes.pop(N_LOCK, None)
        if token:
            with contextlib.suppress(StoreError):
                await self._io(self.store.unlock(s.id, token), now)

    # -- request hooks ------------------------------------------------------------------------
    async def begin_request(self, sid: str, now: float, info: RequestInfo) -> Session | None:
        if parse_session_id(sid) is None:
            return None
        mem = self.sessions.get(sid)
        if mem is not None and (not mem.valid or mem.is_expired(now)):
            mem = None
        if mem is not None and mem.notes.get(N_UNSAVED):
            mem.access(now)  # changed during an outage: newer than what redis holds
            return mem
        if not self.health.usable(now):
            return self._degraded(mem, now)
        token = None
        try:
            if self.concurrency == "lock":
                token = await self._lock(sid, now)
            fields = await self._io(self.store.load(sid), now)
        except StoreError:
            return self._degraded(mem, now)
        self.counters["loads"] += 1
        s = self.session_from(sid, fields) if fields else None
        if s is None or s.is_expired(now):
            if token:
                with contextlib.suppress(StoreError):
                    await self._io(self.store.unlock(sid, token), now)
            if mem is not None:
                self.remove(mem)
            return None
        if token:
            s.notes[N_LOCK] = token
        self.add(s)
        s.access(now)
        return s

    def _degraded(self, mem: Session | None, now: float) -> Session | None:
        if self.fail_closed:
            raise SessionUnavailable(f"{self.store.label} is down (fail_closed)")
        if mem is None:
            return None
        self.counters["degraded"] += 1
        mem.notes[N_UNSAVED] = True
        mem.access(now)
        return mem

    def create(self, now: float) -> Session:
        if self.fail_closed and self.health.is_down and not self.health.usable(now):
            raise SessionUnavailable(f"{self.store.label} is down (fail_closed)")
        return super().create(now)

    async def end_request(self, session: Session, now: float, info: RequestInfo) -> None:
        try:
            if not session.valid:
                self.expire(session, now)
                with contextlib.suppress(StoreError):
                    await self._io(self.store.delete(session.id), now)
                return
            await self._save(session, now)
            self.commit(session, now)
        finally:
            await self._unlock(session, now)

    async def _save(self, s: Session, now: float) -> None:
        changes = self.changes(s)
        old_id = s.notes.pop("redis.old_id", None)
        try:
            if s.notes.get(N_UNSAVED) or old_id:
                await self._io(self.store.set(s.id, self.serializer.dumps(s), self.ttl(s)),
                               now)
                if old_id:
                    await self._io(self.store.delete(old_id), now)
            else:
                await self._io(self.store.save(s.id, changes, self.ttl(s), creating=s.is_new,
                                               check=self.concurrency != "none"), now)
        except SessionConflict:
            self.counters["conflicts"] += 1
            self.remove(s)
            raise
        except SessionGone:
            # expired in redis or invalidated by another node meanwhile: it is over
            self.expire(s, now)
            return
        except StoreError:
            s.notes[N_UNSAVED] = True
            if self.fail_closed:
                raise SessionUnavailable(f"{self.store.label} is down (fail_closed): session "
                                         "not saved") from None
            return
        self.counters["saves"] += 1
        self.counters["fields_written"] += len(changes)
        s.notes.pop(N_UNSAVED, None)
        fields: dict[str, bytes] = s.notes.setdefault(N_FIELDS, {})
        if old_id:
            fields.clear()
            fields[META] = self.meta_bytes(s)
            fields.update({ATTR + n: self.policy.packb(s.get_attribute(n))
                           for n in s.attribute_names()})
        for fld, _, new in changes:
            if new == ABSENT:
                fields.pop(fld, None)
            else:
                fields[fld] = new

    def change_id(self, session: Session, now: float) -> str:
        old = session.id
        new = super().change_id(session, now)
        session.notes.setdefault("redis.old_id", old)
        return new

    # -- lifetime -----------------------------------------------------------------------------
    def sweep(self, now: float) -> int:
        """Memory holds copies; redis' TTL is the expiry. Drop idle copies quietly."""
        for s in [s for s in self.sessions.values()
                  if s.in_use == 0 and (not s.valid or s.is_expired(now))]:
            self.remove(s)
        return 0

    async def stop(self, now: float) -> None:
        await self.store.close()

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(self.counters)
        out["store"] = self.health.stats()
        return out

    @classmethod
    def from_options(cls, opts: Options, env: ManagerEnv) -> RedisSessionManager:
        mode = opts.choice("mode", ("single", "sentinel", "cluster"), "single")
        s = RedisSettings(
            mode=mode, host=opts.string("host", "127.0.0.1"),
            port=opts.integer("port", 6379, minimum=1),
            database=opts.integer("database", 0, minimum=0),
            username=opts.string("username"), password=opts.string("password"),
            tls=opts.boolean("tls", False), tls_ca_file=opts.string("tls_ca_file"),
            tls_verify=opts.boolean("tls_verify", True), timeout=opts.number("timeout", 1.0),
            sentinels=opts.list_of_str("sentinels"),
            sentinel_master=opts.string("sentinel_master", "mymaster"),
            cluster_nodes=opts.list_of_str("cluster_nodes"))
        if mode == "sentinel" and not s.sentinels:
            raise opts.error("mode = \"sentinel\" needs sentinels = [\"host:port\", ...]",
                             "mode", mode)
        if mode == "cluster" and not s.cluster_nodes:
            raise opts.error("mode = \"cluster\" needs cluster_nodes = [\"host:port\", ...]",
                             "mode", mode)
        for key, hosts in (("sentinels", s.sentinels), ("cluster_nodes", s.cluster_nodes)):
            for h in hosts:
                if ":" not in h:
                    raise opts.error(f"{key}: expected host:port", key, h)
        store = RedisStore.connect(s, opts.string("key_prefix", "session:"), env.policy)
        return cls(store, route=env.route, max_inactive=env.max_inactive,
                   distributable=env.distributable, policy=env.policy,
                   save_policy=opts.choice("save_policy", SAVE_POLICIES, "on_change"),
                   concurrency=opts.choice("concurrency", CONCURRENCY, "optimistic"),
                   lock_wait=opts.number("lock_wait", 5.0),
                   fail_closed=opts.boolean("fail_closed", False),
                   retry=opts.number("store_retry", 2.0),
                   max_active=opts.integer("max_active_sessions", -1))
