"""PersistentManager (Tomcat's): sessions in memory, idle ones swapped out to a Store and
swapped back in on their next request; idle ones optionally backed up while kept in memory.

Tomcat's knobs, in seconds (-1 = off):
* `max_idle_swap`  — a session idle at least this long is written to the store and dropped
  from memory;
* `min_idle_swap`  — never swap out a session idle less than this (also when over
  `max_active_sessions`, where the most idle sessions are swapped out first to make room);
* `max_idle_backup` — a session idle at least this long is written to the store but kept in
  memory (a crash then loses at most that much).

The decisions (`plan`) are sans-IO; `background` and `begin_request` do the store IO. A
session with a request in flight (`in_use > 0`) is never swapped out. Two requests for the
same swapped-out session share one load (no duplicate objects). With `save_on_stop` (Tomcat's
saveOnRestart, default on) a graceful stop writes every session to the store; they come back
lazily, on their next request, after a restart. A store that fails is logged once per outage
and the node keeps serving from memory.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pycommon.wire import DEFAULT_POLICY, TypePolicy, WireError
from pysession.ids import parse_session_id
from pysession.manager import RequestInfo, StandardManager
from pysession.session import DEFAULT_MAX_INACTIVE, Session
from pysession.store import Store, StoreError

if TYPE_CHECKING:
    from pysession.options import ManagerEnv, Options

log = logging.getLogger("pysession.persistent")

_BACKED_UP = "persistent.backed_up_at"


@dataclass
class SwapPlan:
    swap_out: list[Session] = field(default_factory=list)
    backup: list[Session] = field(default_factory=list)


class PersistentManager(StandardManager):
    kind = "persistent"

    def __init__(self, store: Store, route: str | None = None,
                 max_inactive: int = DEFAULT_MAX_INACTIVE, max_active: int = -1,
                 distributable: bool = False, policy: TypePolicy = DEFAULT_POLICY,
                 max_idle_swap: float = -1, min_idle_swap: float = -1,
                 max_idle_backup: float = -1, save_on_stop: bool = True) -> None:
        super().__init__(route, max_inactive, max_active, distributable, policy)
        self.store = store
        self.max_idle_swap = max_idle_swap
        self.min_idle_swap = min_idle_swap
        self.max_idle_backup = max_idle_backup
        self.save_on_stop = save_on_stop
        self.swapped_out = 0
        self.swapped_in = 0
        self._loading: dict[str, asyncio.Future[Session | None]] = {}
        self._to_delete: list[str] = []
        self._store_down = False

    # -- sans-IO decisions ------------------------------------------------------------
    def plan(self, now: float) -> SwapPlan:
        """Which sessions to swap out and which to back up now."""
        p = SwapPlan()
        idle = sorted((s for s in self.sessions.values()
                       if s.in_use == 0 and s.valid and not s.is_expired(now)),
                      key=lambda s: s.this_accessed)
        chosen: set[str] = set()
        min_ok = (lambda s: s.idle(now) >= self.min_idle_swap) if self.min_idle_swap >= 0 \
            else (lambda s: True)
        if self.max_idle_swap >= 0:
            for s in idle:
                if s.idle(now) >= self.max_idle_swap and min_ok(s):
                    p.swap_out.append(s)
                    chosen.add(s.id)
        if self.max_active >= 0:
            excess = len(self.sessions) - len(p.swap_out) - self.max_active
            for s in idle:
                if excess <= 0:
                    break
                if s.id not in chosen and min_ok(s):
                    p.swap_out.append(s)
                    chosen.add(s.id)
                    excess -= 1
        if self.max_idle_backup >= 0:
            for s in idle:
                if (s.id not in chosen and s.idle(now) >= self.max_idle_backup
                        and s.notes.get(_BACKED_UP) != s.this_accessed):
                    p.backup.append(s)
        return p

    def expire(self, session: Session, now: float) -> None:
        super().expire(session, now)
        self._to_delete.append(session.id)

    def change_id(self, session: Session, now: float) -> str:
        old = session.id
        new = super().change_id(session, now)
        self._to_delete.append(old)
        return new

    # -- IO shell ---------------------------------------------------------------------
    def _store_failed(self, what: str, exc: Exception) -> None:
        if not self._store_down:
            log.error("session store %s failed (%s): %s; serving from memory", self.store.name,
                      what, exc)
            self._store_down = True

    def _store_ok(self) -> None:
        if self._store_down:
            log.info("session store %s is back", self.store.name)
            self._store_down = False

    async def _save(self, s: Session, now: float) -> bool:
        try:
            await self.store.set(s.id, self.serializer.dumps(s),
                                 s.max_inactive if s.max_inactive >= 0 else None)
        except (StoreError, OSError) as exc:
            self._store_failed("save", exc)
            return False
        self._store_ok()
        s.notes[_BACKED_UP] = s.this_accessed
        return True

    async def _flush_deletes(self) -> None:
        while self._to_delete:
            sid = self._to_delete.pop()
            try:
                await self.store.delete(sid)
            except (StoreError, OSError) as exc:
                self._store_failed("delete", exc)

    async def _load(self, sid: str, now: float) -> Session | None:
        try:
            data = await self.store.get(sid)
        except (StoreError, OSError) as exc:
            self._store_failed("load", exc)
            return None
        self._store_ok()
        if data is None:
            return None
        try:
            s = self.serializer.loads(data, self.distributable)
        except WireError as exc:
            log.warning("dropping undecodable stored session %s: %s", sid, exc)
            self._to_delete.append(sid)
            return None
        if s.id != sid or not s.valid or s.is_expired(now):
            self._to_delete.append(sid)
            return None
        s.notes[_BACKED_UP] = s.this_accessed
        return s

    async def swap_in(self, sid: str, now: float) -> Session | None:
        """Load `sid` from the store into memory (one load for concurrent requests)."""
        pending = self._loading.get(sid)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Session | None] = asyncio.get_running_loop().create_future()
        self._loading[sid] = fut
        try:
            s = await self._load(sid, now)
            if s is not None:
                existing = self.sessions.get(sid)
                if existing is not None:
                    s = existing
                else:
                    self.add(s)
                    self.swapped_in += 1
            fut.set_result(s)
            return s
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        finally:
            del self._loading[sid]
            if self._to_delete:
                await self._flush_deletes()

    async def begin_request(self, sid: str, now: float, info: RequestInfo) -> Session | None:
        s = self.find(sid, now)
        if s is None and sid not in self.sessions and parse_session_id(sid) is not None:
            s = await self.swap_in(sid, now)
            if s is not None and (not s.valid or s.is_expired(now)):
                s = None
        if s is not None:
            s.access(now)
        return s

    async def end_request(self, session: Session, now: float, info: RequestInfo) -> None:
        await super().end_request(session, now, info)
        if self._to_delete:
            await self._flush_deletes()

    async def swap_out(self, sessions: list[Session], now: float) -> int:
        n = 0
        for s in sessions:
            if not await self._save(s, now):
                break
            # a request may have started while we awaited the store: keep it in memory then
            if s.in_use == 0 and self.sessions.get(s.id) is s and s.valid:
                self.remove(s)
                n += 1
        self.swapped_out += n
        return n

    async def background(self, now: float) -> int:
        expired = self.sweep(now)
        plan = self.plan(now)
        for s in plan.backup:
            if not await self._save(s, now):
                break
        await self.swap_out(plan.swap_out, now)
        expired += await self.expire_stored(now)
        await self._flush_deletes()
        return expired

    async def expire_stored(self, now: float) -> int:
        """Drop expired sessions that live only in the store (Tomcat's processExpires)."""
        try:
            keys = await self.store.keys()
        except (StoreError, OSError) as exc:
            self._store_failed("keys", exc)
            return 0
        n = 0
        for sid in keys:
            if sid in self.sessions or sid in self._loading:
                continue
            try:
                data = await self.store.get(sid)
                if data is None:
                    continue
                s = self.serializer.loads(data, self.distributable)
            except (StoreError, OSError) as exc:
                self._store_failed("load", exc)
                return n
            except WireError:
                self._to_delete.append(sid)
                continue
            if s.is_expired(now):
                self._to_delete.append(sid)
                self.expired_count += 1
                n += 1
        return n

    async def stop(self, now: float) -> None:
        await self._flush_deletes()
        if self.save_on_stop:
            saved = 0
            for s in list(self.sessions.values()):
                if s.valid and not s.is_expired(now) and await self._save(s, now):
                    saved += 1
            log.info("saved %d sessions to the %s store", saved, self.store.name)
        await self.store.close()

    def stats(self) -> dict[str, object]:
        d = super().stats()
        d.update(store=self.store.name, swapped_out=self.swapped_out,
                 swapped_in=self.swapped_in)
        return d

    @classmethod
    def from_options(cls, opts: Options, env: ManagerEnv) -> PersistentManager:
        from pysession.stores import build_store

        store = build_store(opts, env)
        return cls(store, route=env.route, max_inactive=env.max_inactive,
                   max_active=opts.integer("max_active_sessions", -1),
                   distributable=env.distributable, policy=env.policy,
                   max_idle_swap=opts.number("max_idle_swap", -1),
                   min_idle_swap=opts.number("min_idle_swap", -1),
                   max_idle_backup=opts.number("max_idle_backup", -1),
                   save_on_stop=opts.boolean("save_on_stop", True))
