"""MemcachedSessionManager: memcached-session-manager's behaviour over pymemcache.

Sticky mode (msm default): sessions live in this node's memory; after each request the
session is backed up to its memcached node (`ID-n1.node1` → node n1) unless nothing changed
(a digest of attributes + metadata, so mutation without set_attribute is still saved);
asynchronously by default (one ordered writer per session, coalescing), synchronously with
`session_backup_async = false`. A request for a session this node does not hold (its node
crashed, the balancer failed over) loads it from memcached and re-keys it to this route.

Non-sticky mode (`sticky = false`): the session is loaded at request start and stored at
request end, with a copy `bak:ID` (and its validity record) on the next node written in the
same moment (both before the response); between
requests this node keeps only a fallback copy for store outages. Locking (`lock_mode`) none /
all / auto / uriPattern:REGEX takes `lock:ID` with memcached `add`, waits at most
`lock_wait` seconds and answers 503 when it cannot get it — it never goes on without the lock.
Requests that run unlocked (auto, uriPattern) save with memcached `cas`; when someone else
wrote meanwhile, attributes this request did not touch are merged, and a real conflict (both
changed the same attribute) is refused instead of silently overwriting.

A dead memcached node: its sessions move to the next live node (id suffix changes, the cookie
is re-issued), found through their backup in non-sticky mode and through node memory in
sticky mode. Every node down: keep serving from memory, log once, write again when a node
returns; `fail_closed = true` answers 503 instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any

from pycommon.wire import DEFAULT_POLICY, TypePolicy, WireError
from pysession.ids import new_session_id, parse_session_id, with_route
from pysession.manager import RequestInfo, StandardManager
from pysession.managers.memcached_core import (
    LockPolicy,
    NodeRing,
    backup_key,
    digest,
    item_ttl,
    lock_key,
    node_of,
    validity_key,
    with_node,
)
from pysession.session import DEFAULT_MAX_INACTIVE, Session
from pysession.store import StoreError
from pysession.stores.health import SessionConflict, SessionUnavailable, retry_lock
from pysession.stores.memcached import MemcachedNode, MemcachedStore, parse_nodes

if TYPE_CHECKING:
    from pysession.options import ManagerEnv, Options

log = logging.getLogger("pysession.memcached")

#: notes keys (transient, never serialised)
N_DIGEST = "msm.digest"     # digest of what the store holds for this session
N_KEY = "msm.key"           # the key it is stored under
N_CAS = "msm.cas"           # cas token at load (non-sticky, unlocked)
N_LOADED = "msm.loaded"     # attribute values at load (for merges)
N_LOCK = "msm.lock"         # (key, node) of the lock this request holds
N_UNSAVED = "msm.unsaved"   # the last save failed: write in full next time
N_TOUCHED = "msm.touched"   # when the store item's expiry was last refreshed

_MAX_WRITERS_LEARNED = 1024


class MemcachedSessionManager(StandardManager):
    kind = "memcached"

    def __init__(self, nodes: list[MemcachedNode], failover_nodes: list[str] | None = None,
                 *, route: str | None = None, max_inactive: int = DEFAULT_MAX_INACTIVE,
                 distributable: bool = True, policy: TypePolicy = DEFAULT_POLICY,
                 sticky: bool = True, backup_async: bool = True, lock_mode: str = "none",
                 lock_wait: float = 5.0, request_uri_ignore_pattern: str | None = None,
                 timeout: float = 1.0, node_retry: float = 2.0, fail_closed: bool = False,
                 max_active: int = -1) -> None:
        super().__init__(route, max_inactive, max_active, distributable, policy)
        self.ring = NodeRing([n.id for n in nodes], failover_nodes or [], node_retry)
        self.stores = {n.id: MemcachedStore(n.host, n.port, timeout=timeout, node_id=n.id)
                       for n in nodes}
        self.sticky = sticky
        self.backup_async = backup_async and sticky
        self.lock = LockPolicy.parse(lock_mode)
        self.lock_wait = lock_wait
        self.ignore = re.compile(request_uri_ignore_pattern) if request_uri_ignore_pattern \
            else None
        self.fail_closed = fail_closed
        self._now = 0.0
        self._writers: set[str] = set()            # auto mode: URIs seen writing a session
        self._pending: dict[str, tuple[Session, bytes, bytes, str | None]] = {}
        self._drain: asyncio.Task[None] | None = None
        self._bg: set[asyncio.Task[Any]] = set()
        self.counters = {"loads": 0, "saves": 0, "skipped": 0, "relocated": 0,
                         "lock_timeouts": 0, "merges": 0, "conflicts": 0, "degraded": 0,
                         "round_trips": 0}

    # -- sans-IO core ---------------------------------------------------------------------
    def new_id(self) -> str:
        return new_session_id(self.route, self.ring.pick_new(self._now))

    def create(self, now: float) -> Session:
        self._now = now
        if self.fail_closed and not any(self.ring.usable(i, now) for i in self.ring.ids):
            raise SessionUnavailable("memcached is down (fail_closed): cannot create sessions")
        return super().create(now)

    def change_id(self, session: Session, now: float) -> str:
        self._now = now
        return super().change_id(session, now)

    def _rekey(self, session: Session, new_id: str) -> None:
        old = session.id
        if old == new_id:
            return
        if self.sessions.get(old) is session:
            del self.sessions[old]
        session.id = new_id
        self.sessions[new_id] = session
        if self.events:
            self.events.session_id_changed(session, old)

    def _relocate_if_dead(self, session: Session, now: float) -> None:
        """A session whose memcached node is dead moves to the next live node (msm)."""
        node = node_of(session.id)
        if node is None or node not in self.ring or not self.ring.health[node].is_down:
            return
        target = self.ring.next_after(node, now)
        if target is not None and target != node:
            self._rekey(session, with_node(session.id, target))
            self.counters["relocated"] += 1

    def _body_digest(self, session: Session) -> bytes:
        d = self.serializer.session_dict(session)
        return digest(self.policy.packb([d["attributes"], d["max_inactive"], d["principal"]]))

    def _validity(self, session: Session) -> bytes:
        return self.policy.packb([session.this_accessed, session.max_inactive])

    def _decode(self, data: bytes | None, now: float, sid: str,
                validity: bytes | None = None) -> Session | None:
        """The stored session, None when absent/unreadable/expired. Its access time comes
        from the validity record when that is newer (read-only requests refresh only the
        validity); `notes[N_TOUCHED]` keeps when the record itself was written."""
        if data is None:
            return None
        try:
            s = self.serializer.loads(data, self.distributable)
        except WireError as exc:
            log.warning("session %s: undecodable record in memcached: %s", sid, exc)
            return None
        s.notes[N_TOUCHED] = s.this_accessed
        if validity is not None:
            try:
                accessed, max_inactive = self.policy.unpackb(validity)
                if float(accessed) > s.this_accessed:
                    s.this_accessed = float(accessed)
                    s.max_inactive = int(max_inactive)
            except (WireError, ValueError, TypeError):
                pass
        # sticky copies are rewritten at least every max-inactive/4 while in use: allow that
        grace = max(s.max_inactive, 0) / 4 if self.sticky else 0.0
        if s.is_expired(now - grace):
            return None
        return s

    def _adopt(self, s: Session, key: str, now: float) -> Session:
        old = self.sessions.get(s.id)
        if old is not None and old is not s and old.in_use > 0 and self.sticky:
            return old
        self.add(s)
        s.notes[N_DIGEST] = self._body_digest(s)
        s.notes[N_KEY] = key
        return s

    # -- store helpers (IO) ---------------------------------------------------------------
    async def _call(self, node: str, now: float, op: str, *args: Any) -> Any:
        """Run one store operation on `node`, keeping its health; raises StoreError."""
        store = self.stores[node]
        self.counters["round_trips"] += 1
        try:
            r = await getattr(store, op)(*args)
        except StoreError as exc:
            self.ring.health[node].failed(now, exc)
            raise
        self.ring.health[node].ok(now)
        return r

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    async def _load(self, sid: str, now: float) -> Session | None:
        """The session from its node, else from its backup / relocated copy on the next
        node. Sets N_CAS (non-sticky). None when nowhere (or everything down)."""
        node = node_of(sid)
        if node is None or node not in self.ring:
            return None
        self.counters["loads"] += 1
        if self.ring.usable(node, now):
            try:
                got = await self._call(node, now, "gets_many_raw", [sid, validity_key(sid)])
                data, cas = got.get(sid, (None, None))
                s = self._decode(data, now, sid, got.get(validity_key(sid), (None, None))[0])
                if s is not None:
                    s.notes[N_CAS] = cas
                    return self._adopt(s, sid, now)
                if data is not None:
                    return None  # present but expired
            except StoreError:
                pass
        nxt = self.ring.next_after(node, now)
        if nxt is None:
            return None
        moved = with_node(sid, nxt)
        bak_validity = validity_key(backup_key(sid))
        try:
            got = await self._call(nxt, now, "gets_many_raw",
                                   [moved, backup_key(sid), validity_key(moved), bak_validity])
        except StoreError:
            return None
        for key in (moved, backup_key(sid)):
            data = got.get(key, (None, None))[0]
            validity = got.get(bak_validity if key != moved else validity_key(moved),
                               (None, None))[0]
            s = self._decode(data, now, sid, validity)
            if s is not None:
                s.notes.pop(N_CAS, None)
                return self._adopt(s, key, now)
        return None

    async def _acquire(self, sid: str, now: float) -> tuple[str, str] | None:
        """Take `lock:ID` on the session's node within `lock_wait`; 503 when not possible."""
        node = node_of(sid)
        if node is None or node not in self.ring:
            return None
        if not self.ring.usable(node, now):
            node = self.ring.next_after(node, now) or node
        parts = parse_session_id(sid)
        key = lock_key(parts.base if parts else sid)
        class _StoreDown(Exception):
            pass

        async def try_once() -> tuple[str, str] | None:
            try:
                if await self._call(node, now, "add", key, b"1", max(self.lock_wait * 2, 5)):
                    return key, node
            except StoreError:
                raise _StoreDown from None
            return None

        try:
            return await retry_lock(try_once, self.lock_wait, self.counters)
        except _StoreDown:
            return None  # store down: no lock to take; the degraded path applies

    async def _release(self, session: Session, now: float) -> None:
        held = session.notes.pop(N_LOCK, None)
        if held is not None:
            key, node = held
            with contextlib.suppress(StoreError):
                await self._call(node, now, "delete", key)

    # -- request hooks --------------------------------------------------------------------
    async def begin_request(self, sid: str, now: float, info: RequestInfo) -> Session | None:
        self._now = now
        if node_of(sid) not in self.ring:
            return None  # not one of ours (no or unknown node id): never adopted
        if self.sticky:
            if self.fail_closed and not any(self.ring.usable(i, now) for i in self.ring.ids):
                raise SessionUnavailable("memcached is down (fail_closed): sessions cannot be "
                                         "backed up")
            s = self.find(sid, now)
            if s is None:
                s = self.find(with_route(sid, self.route), now)
            if s is None:
                s = await self._load_or_fallback(sid, now)
                if s is None:
                    return None
                if self.route and parse_session_id(s.id) and s.id != with_route(s.id,
                                                                                 self.route):
                    self._rekey(s, with_route(s.id, self.route))  # msm: tomcat failover
            self._relocate_if_dead(s, now)
            s.access(now)
            return s
        held = None
        if self.lock.needs_lock(info.method, info.path, self._writers):
            held = await self._acquire(sid, now)
        try:
            s = await self._load_or_fallback(sid, now)
        except BaseException:
            if held:
                with contextlib.suppress(StoreError):
                    await self._call(held[1], now, "delete", held[0])
            raise
        if s is None:
            if held:
                with contextlib.suppress(StoreError):
                    await self._call(held[1], now, "delete", held[0])
            return None
        if held:
            s.notes[N_LOCK] = held
        s.notes[N_LOADED] = s.attributes
        self._relocate_if_dead(s, now)
        s.access(now)
        return s

    async def _load_or_fallback(self, sid: str, now: float) -> Session | None:
        """Load from memcached; when every candidate node is down, the memory copy."""
        node = node_of(sid) or ""
        mem = self.sessions.get(sid)
        if mem is not None and mem.notes.get(N_UNSAVED) and mem.valid \
                and not mem.is_expired(now):
            return mem  # changed during an outage: newer than what the store holds
        s = await self._load(sid, now)
        if s is not None:
            return s
        nxt = self.ring.next_after(node, now)
        answered = nxt is not None and self.ring.usable(nxt, now) \
            and not self.ring.health[nxt].is_down
        if self.ring.usable(node, now) or answered:
            return None  # the store answered: the session is not there
        if self.fail_closed:
            raise SessionUnavailable("memcached is down (fail_closed)")
        mem = self.sessions.get(sid)
        if mem is None or not mem.valid or mem.is_expired(now):
            return None
        self.counters["degraded"] += 1
        mem.notes[N_UNSAVED] = True
        return mem

    async def end_request(self, session: Session, now: float, info: RequestInfo) -> None:
        self._now = now
        try:
            if not session.valid:
                self.expire(session, now)
                await self._delete_stored(session, now)
                return
            skip = self.ignore is not None and self.ignore.match(info.path) is not None \
                and not session.is_new and session.notes.get(N_KEY) == session.id
            if not skip:
                if session.is_dirty and not self.sticky and len(self._writers) < \
                        _MAX_WRITERS_LEARNED:
                    self._writers.add(info.path)
                await self._save(session, now)
            else:
                self.counters["skipped"] += 1
            self.commit(session, now)
        finally:
            if not self.sticky:
                await self._release(session, now)

    async def _save(self, s: Session, now: float) -> None:
        body = self._body_digest(s)
        key = s.notes.get(N_KEY)
        changed = body != s.notes.get(N_DIGEST) or key != s.id or s.notes.get(N_UNSAVED) \
            or s.is_new
        ttl = item_ttl(s.max_inactive, self.sticky)
        node = node_of(s.id) or self.ring.regular[0]
        # unchanged, but the stored record (its access time, the item's expiry) is a quarter
        # (sticky) / half (non-sticky, expiry 2x) of the timeout old: rewrite it anyway
        stale = now - s.notes.get(N_TOUCHED, 0.0) >= max(s.max_inactive, 0) / (
            4 if self.sticky else 2)
        if not changed and not stale:
            self.counters["skipped"] += 1
            if not self.sticky:
                await self._write_validity(s, node, now)
            return
        s.notes[N_TOUCHED] = now
        record = self.serializer.dumps(s)
        old_key = key if key and key != s.id else None
        if self.sticky:
            if self.backup_async:
                self._enqueue(s, record, body, old_key)
            else:
                await self._write_sticky(s, record, body, old_key, now)
        else:
            await self._write_nonsticky(s, record, body, old_key, node, ttl, now)

    # sticky: backups written behind the response, batched ---------------------------------
    def _enqueue(self, s: Session, record: bytes, body: bytes, old_key: str | None) -> None:
        """Queue the session's latest bytes; one drain task writes whatever is queued with
        one `set_many` per memcached node. A session changed again before its write went out
        is written once, with its newest bytes (never an older one after a newer)."""
        self._pending[s.id] = (s, record, body, old_key)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_task(self._drain_pending())

    async def _drain_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            groups: dict[tuple[str, float], list[tuple[Session, bytes, bytes, str | None]]] = {}
            for sid, item in batch.items():
                node = node_of(sid) or self.ring.regular[0]
                groups.setdefault((node, item_ttl(item[0].max_inactive, True)), []).append(item)
            for (node, ttl), items in groups.items():
                await self._write_batch(node, ttl, items, self._now)

    async def _write_batch(self, node: str, ttl: float,
                           items: list[tuple[Session, bytes, bytes, str | None]], now: float
                           ) -> bool:
        """Write sticky backups to `node`, or relocated (`ID-next`) to the next node when it
        fails; True when written somewhere."""
        for target in (node, self.ring.next_after(node, now)):
            if target is None:
                break
            keyed = {(s.id if target == node else with_node(s.id, target)): it
                     for it in items for s in [it[0]]}
            try:
                await self._call(target, now, "set_many", {k: it[1] for k, it in keyed.items()},
                                 ttl)
            except StoreError:
                continue
            for key, (s, _, body, old_key) in keyed.items():
                self.counters["saves"] += 1
                s.notes[N_DIGEST] = body
                s.notes[N_KEY] = key
                s.notes[N_TOUCHED] = now
                s.notes.pop(N_UNSAVED, None)
                if old_key and old_key != key:
                    old_node = node_of(old_key)
                    if old_node in self.ring and self.ring.usable(old_node or "", now):
                        await self._quiet(old_node or "", now, "delete", old_key)
            return True
        for s, *_ in items:
            s.notes[N_UNSAVED] = True
        return False

    async def _write_sticky(self, s: Session, record: bytes, body: bytes,
                            old_key: str | None, now: float) -> None:
        """Synchronous backup (`session_backup_async = false`): the response waits."""
        node = node_of(s.id) or self.ring.regular[0]
        ok = await self._write_batch(node, item_ttl(s.max_inactive, True),
                                     [(s, record, body, old_key)], now)
        if not ok and self.fail_closed:
            raise SessionUnavailable("memcached is down (fail_closed): session not saved")

    async def _quiet(self, node: str, now: float, op: str, *args: Any) -> None:
        with contextlib.suppress(StoreError):
            await self._call(node, now, op, *args)

    # non-sticky ---------------------------------------------------------------------------
    async def _write_nonsticky(self, s: Session, record: bytes, body: bytes,
                               old_key: str | None, node: str, ttl: float, now: float) -> None:
        """Session + validity to its node and `bak:` + validity to the next node, both before
        the response: an acknowledged change is on two nodes, and two nodes' backups of one
        session can never land out of order. The two writes run concurrently (different
        nodes), so the request waits for one round trip's time, not two."""
        nxt = self.ring.next_after(node, now)
        validity = self._validity(s)

        def backup(rec: bytes) -> Any:
            return self._quiet(nxt or node, now, "set_many",
                               {backup_key(s.id): rec, validity_key(backup_key(s.id)): validity},
                               ttl)

        with_backup = nxt is not None and nxt != node
        try:
            if s.notes.get(N_LOCK) is None and self.lock.mode != "none" \
                    and not s.is_new and s.notes.get(N_CAS) is not None and old_key is None:
                record = await self._cas_write(s, record, node, ttl, now)  # may merge
                await self._call(node, now, "set", validity_key(s.id), validity, ttl)
                if with_backup:
                    await backup(record)
            else:
                primary = self._call(node, now, "set_many",
                                     {s.id: record, validity_key(s.id): validity}, ttl)
                if with_backup:
                    await asyncio.gather(primary, backup(record))
                else:
                    await primary
        except SessionConflict:
            raise
        except StoreError:
            s.notes[N_UNSAVED] = True
            if self.fail_closed:
                raise SessionUnavailable("memcached is down (fail_closed): session not "
                                         "saved") from None
            return
        self.counters["saves"] += 1
        s.notes[N_DIGEST] = body
        s.notes[N_KEY] = s.id
        s.notes.pop(N_UNSAVED, None)
        if old_key:
            self._spawn(self._delete_keys(old_key, now))

    async def _cas_write(self, s: Session, record: bytes, node: str, ttl: float, now: float
                         ) -> bytes:
        """Unlocked save: cas; on a concurrent write merge the attributes the other request
        changed that this one did not; refuse a conflict on the same attribute."""
        token = s.notes.get(N_CAS)
        loaded: dict[str, Any] = s.notes.get(N_LOADED, {})
        for _ in range(5):
            ok = await self._call(node, now, "cas", s.id, record, token, ttl)
            if ok:
                return record
            data, token = await self._call(node, now, "gets", s.id)
            current = self._decode(data, now, s.id)
            if current is None or token is None:
                raise SessionUnavailable("session vanished while being saved")
            mine = s.attributes
            theirs = current.attributes
            for name in s.dirty | {k for k in mine if mine.get(k) != loaded.get(k)}:
                if theirs.get(name) != loaded.get(name):  # both changed it: no safe merge
                    self.counters["conflicts"] += 1
                    raise SessionConflict(
                        f"session attribute {name!r} was changed by a concurrent request; "
                        "this request's change was not saved, try again")
            merged = dict(theirs)
            for name in set(mine) | set(loaded):
                if mine.get(name) != loaded.get(name):
                    if name in mine:
                        merged[name] = mine[name]
                    else:
                        merged.pop(name, None)
            for name in list(s.attribute_names()):
                if name not in merged:
                    s.remove_attribute(name)
            for name, value in merged.items():
                if s.get_attribute(name) != value:
                    s._attributes[name] = value  # adopt theirs without marking dirty
            loaded = merged
            record = self.serializer.dumps(s)
            self.counters["merges"] += 1
        raise SessionUnavailable("session is too busy to save; try again")

    async def _write_validity(self, s: Session, node: str, now: float) -> None:
        """Unchanged session: only the validity records (access time) of the session and of
        its backup are written, concurrently."""
        ttl = item_ttl(s.max_inactive, False)
        validity = self._validity(s)
        nxt = self.ring.next_after(node, now)
        writes = [self._quiet(node, now, "set", validity_key(s.id), validity, ttl)]
        if nxt is not None and nxt != node:
            writes.append(self._quiet(nxt, now, "set", validity_key(backup_key(s.id)),
                                      validity, ttl))
        await asyncio.gather(*writes)

    async def _delete_keys(self, sid: str, now: float) -> None:
        node = node_of(sid)
        if node is None or node not in self.ring:
            return
        keys = [sid, validity_key(sid)]
        for n, ks in ((node, keys), (self.ring.next_after(node, now),
                                    [backup_key(sid), validity_key(backup_key(sid))])):
            if n is not None:
                for k in ks:
                    await self._quiet(n, now, "delete", k)

    async def _delete_stored(self, s: Session, now: float) -> None:
        self._pending.pop(s.id, None)
        keys = {s.id, s.notes.get(N_KEY) or s.id}
        for k in keys:
            await self._delete_keys(k, now)

    # -- lifetime ---------------------------------------------------------------------------
    def sweep(self, now: float) -> int:
        """Sticky: idle sessions expire (and their items, lazily by memcached expiry).
        Non-sticky: memory holds only fallback copies; drop idle ones quietly (another node
        may have used the session since)."""
        if self.sticky:
            return super().sweep(now)
        for s in [s for s in self.sessions.values()
                  if s.in_use == 0 and (not s.valid or s.is_expired(now))]:
            self.remove(s)
        return 0

    async def stop(self, now: float) -> None:
        """Let queued sticky backups finish (bounded), then close the clients."""
        tasks = [*([self._drain] if self._drain else []), *self._bg]
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for st in self.stores.values():
            await st.close()

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(self.counters)
        out["mode"] = "sticky" if self.sticky else "non-sticky"
        draining = self._drain is not None and not self._drain.done()
        out["pending_backups"] = len(self._pending) + int(draining) + len(self._bg)
        out["nodes"] = {i: h.stats() for i, h in self.ring.health.items()}
        return out

    @classmethod
    def from_options(cls, opts: Options, env: ManagerEnv) -> MemcachedSessionManager:
        text = opts.string("memcached_nodes")
        if not text:
            raise opts.error("memcached_nodes is required (\"n1:host:port,n2:host:port\")",
                             "memcached_nodes")
        try:
            nodes = parse_nodes(text)
        except ValueError as exc:
            raise opts.error(f"memcached_nodes: {exc}", "memcached_nodes", text) from None
        failover = [x for x in re.split(r"[,\s]+", opts.string("failover_nodes", "") or "")
                    if x]
        for f in failover:
            if f not in {n.id for n in nodes}:
                raise opts.error(f"failover_nodes: {f!r} is not a memcached node",
                                 "failover_nodes", f)
        lock_mode = opts.string("lock_mode", "none")
        try:
            LockPolicy.parse(lock_mode)
        except ValueError as exc:
            raise opts.error(str(exc), "lock_mode", lock_mode) from None
        pattern = opts.string("request_uri_ignore_pattern")
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise opts.error(f"request_uri_ignore_pattern: {exc}",
                                 "request_uri_ignore_pattern", pattern) from None
        return cls(nodes, failover, route=env.route, max_inactive=env.max_inactive,
                   distributable=env.distributable, policy=env.policy,
                   sticky=opts.boolean("sticky", True),
                   backup_async=opts.boolean("session_backup_async", True),
                   lock_mode=lock_mode, lock_wait=opts.number("lock_wait", 5.0),
                   request_uri_ignore_pattern=pattern,
                   timeout=opts.number("operation_timeout", 1.0),
                   node_retry=opts.number("node_retry", 2.0),
                   fail_closed=opts.boolean("fail_closed", False),
                   max_active=opts.integer("max_active_sessions", -1))
