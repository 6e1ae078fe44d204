"""MemcachedSessionManager in-process against two real memcached (fast; the pynode-level
stories are in test_store_failover.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pysession.manager import Manager
from pysession.managers.memcached import MemcachedSessionManager
from pysession.stores.health import SessionUnavailable
from pysession.stores.memcached import MemcachedStore, parse_nodes
from tests import stores_fixtures
from tests.stores_fixtures import Stores, incr, request

pytestmark = [pytest.mark.integration, pytest.mark.interop]
memcached_pair = stores_fixtures.memcached_pair

def manager(stores: Stores, route: str, **kw: Any) -> MemcachedSessionManager:
    kw.setdefault("backup_async", False)
    return MemcachedSessionManager(parse_nodes(stores.nodes_option("n1", "n2")),
                                   kw.pop("failover", ["n1"]), route=route, max_inactive=600,
                                   node_retry=0.5, **kw)


def store(stores: Stores, name: str) -> MemcachedStore:
    h, p = stores.addr(name)
    return MemcachedStore(h, p, node_id=name)


def test_sticky_backup_failover_and_skip(memcached_pair: Stores) -> None:
    async def go() -> None:
        m1 = manager(memcached_pair, "node1", request_uri_ignore_pattern=r".*\.(css|png)$")
        m2 = manager(memcached_pair, "node2")
        n2 = store(memcached_pair, "n2")
        try:
            s, cookie = await request(m1, None, incr)
            sid = s.id
            assert sid.endswith("-n2.node1"), sid  # n1 is the failover node: n2 is used
            assert cookie and cookie.startswith(f"JSESSIONID={sid};")
            assert await n2.get(sid) is not None
            assert 595 <= (await n2.ttl_of(sid) or 0) <= 600  # sticky: expiry = max-inactive
            saves = m1.counters["saves"]
            await request(m1, sid, None, path="/api/session", method="GET")  # unchanged
            await request(m1, sid, incr, path="/static/a.css")                # ignored URI
            assert m1.counters["saves"] == saves
            await request(m1, sid, incr)
            assert m1.counters["saves"] == saves + 1
            # node1 "crashes": node2 loads the session from memcached and re-keys it
            s2, cookie2 = await request(m2, sid, incr)
            assert s2.id == sid.replace(".node1", ".node2")
            assert s2.get_attribute("n") == 4  # the ignored request's change travelled too
            assert cookie2 and s2.id in cookie2
            assert await n2.get(s2.id) is not None and await n2.get(sid) is None
        finally:
            for x in (m1, m2):
                await x.stop(time.time())
            await n2.close()

    asyncio.run(go())


def test_sticky_async_backup_keeps_order(memcached_pair: Stores) -> None:
    async def go() -> None:
        m1 = manager(memcached_pair, "node1", backup_async=True)
        m2 = manager(memcached_pair, "node2")
        try:
            s, _ = await request(m1, None, incr)
            for _ in range(30):
                await request(m1, s.id, incr)
            await m1.stop(time.time())  # flushes the queued backups
            s2, _ = await request(m2, s.id)
            assert s2.get_attribute("n") == 31
        finally:
            await m2.stop(time.time())

    asyncio.run(go())


def test_nonsticky_backup_and_dead_node_relocation(memcached_pair: Stores) -> None:
    async def go() -> None:
        a = manager(memcached_pair, "node1", sticky=False, failover=[])
        b = manager(memcached_pair, "node2", sticky=False, failover=[])
        n1, n2 = store(memcached_pair, "n1"), store(memcached_pair, "n2")
        try:
            ids = []
            for _ in range(4):
                s, _ = await request(a, None, incr)
                ids.append(s.id)
            on_n1 = [i for i in ids if "-n1." in i]
            assert on_n1 and len(on_n1) < 4  # round robin over n1, n2
            for sid in ids:  # alternate nodes: every request sees the last write
                await request(b, sid, incr)
                await request(a, sid, incr)
            await drained(a)  # backups are written behind the response
            await drained(b)
            for sid in on_n1:
                assert await n1.get(sid) is not None
                assert 1195 <= (await n1.ttl_of(sid) or 0) <= 1200  # 2x max-inactive
                assert await n2.get("bak:" + sid) is not None
            memcached_pair.sup.kill("n1")
            for sid in on_n1:
                s, cookie = await request(b, sid, incr)
                assert s.id == sid.replace("-n1.", "-n2."), s.id
                assert cookie and s.id in cookie  # re-issued
                assert s.get_attribute("n") == 4  # nothing lost
                s, _ = await request(a, s.id, incr)
                assert s.get_attribute("n") == 5
            # a new session avoids the dead node
            s, _ = await request(a, None, incr)
            assert "-n2." in s.id
        finally:
            for x in (a, b):
                await x.stop(time.time())
            await n1.close()
            await n2.close()

    asyncio.run(go())


@pytest.mark.parametrize("mode", ["all", "none"])
def test_nonsticky_concurrent_increments(memcached_pair: Stores, mode: str) -> None:
    """4 x 50 increments from two nodes at once: lock 'all' loses nothing."""
    async def go() -> int:
        a = manager(memcached_pair, "node1", sticky=False, lock_mode=mode)
        b = manager(memcached_pair, "node2", sticky=False, lock_mode=mode)
        try:
            s, _ = await request(a, None, incr)
            sid = s.id

            async def client(m: Manager) -> None:
                for _ in range(50):
                    await request(m, sid, incr)

            await asyncio.gather(client(a), client(b), client(a), client(b))
            s, _ = await request(a, sid)
            return int(s.get_attribute("n"))
        finally:
            await a.stop(time.time())
            await b.stop(time.time())

    n = asyncio.run(go())
    if mode == "all":
        assert n == 201
    else:
        assert n <= 201  # last write wins (msm without locking): loss is measured elsewhere


def test_lock_timeout_answers_503(memcached_pair: Stores) -> None:
    async def go() -> None:
        a = manager(memcached_pair, "node1", sticky=False, lock_mode="all", lock_wait=0.2)
        try:
            s, _ = await request(a, None, incr)
            base = s.id.split("-")[0]
            node = s.id.split("-")[1].split(".")[0]
            st = store(memcached_pair, node)
            await st.add("lock:" + base, b"1", 5)  # someone holds it
            with pytest.raises(SessionUnavailable):
                await request(a, s.id, incr)
            await st.delete("lock:" + base)
            s2, _ = await request(a, s.id, incr)
            assert s2.get_attribute("n") == 2
            await st.close()
        finally:
            await a.stop(time.time())

    asyncio.run(go())


async def drained(m: MemcachedSessionManager) -> None:
    for _ in range(300):
        if not m.stats()["pending_backups"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("backups still pending")


def test_outage_memory_fallback_and_recovery(memcached_pair: Stores) -> None:
    async def go() -> None:
        a = manager(memcached_pair, "node1", sticky=False)
        closed = manager(memcached_pair, "node2", sticky=False, fail_closed=True)
        sticky_closed = manager(memcached_pair, "node3", fail_closed=True, backup_async=True)
        try:
            s, _ = await request(a, None, incr)
            sid = s.id
            st, _ = await request(sticky_closed, None, incr)
            await drained(sticky_closed)
            memcached_pair.sup.kill("n1")
            memcached_pair.sup.kill("n2")
            for _ in range(3):  # keeps serving from memory
                s, _ = await request(a, sid, incr)
            assert s.get_attribute("n") == 4
            with pytest.raises(SessionUnavailable):
                await request(closed, sid, incr)
            await request(sticky_closed, st.id, incr)  # the backup fails behind the response
            await drained(sticky_closed)
            with pytest.raises(SessionUnavailable):
                await request(sticky_closed, st.id, incr)
            memcached_pair.sup.start("n1")
            memcached_pair.sup.start("n2")
            await asyncio.sleep(0.6)  # node_retry
            s, _ = await request(a, sid, incr)
            assert s.get_attribute("n") == 5
            s, _ = await request(closed, s.id, incr)  # written back: the other node sees it
            assert s.get_attribute("n") == 6
        finally:
            for m in (a, closed, sticky_closed):
                await m.stop(time.time())

    asyncio.run(go())


def test_unlocked_auto_requests_merge_or_refuse(memcached_pair: Stores) -> None:
    """lock_mode auto: GETs go unlocked and save with cas; a concurrent write to another
    attribute is merged, one to the same attribute is refused (409), never lost."""
    from pysession.binding import CookieSettings, SessionBinding
    from pysession.manager import RequestInfo
    from pysession.stores.health import SessionConflict

    async def go() -> None:
        a = manager(memcached_pair, "node1", sticky=False, lock_mode="auto")
        b = manager(memcached_pair, "node2", sticky=False, lock_mode="auto")
        try:
            s, _ = await request(a, None, incr)
            sid = s.id

            def bind(m: MemcachedSessionManager, path: str = "/read") -> SessionBinding:
                return SessionBinding(m, CookieSettings(), time.time,
                                      RequestInfo("GET", path, ""), sid)

            x, y = bind(a), bind(b)
            await x.begin()
            await y.begin()
            sx, sy = x.get(), y.get()
            assert sx is not None and sy is not None
            sx.set_attribute("k", "x")
            sy.set_attribute("j", "y")
            await x.end()
            await y.end()  # cas fails, merged: both attributes kept
            s, _ = await request(a, sid)
            assert s.get_attribute("k") == "x" and s.get_attribute("j") == "y"
            assert b.counters["merges"] == 1
            assert "/read" in a._writers  # learned: the next GET /read takes the lock
            x, y = bind(a, "/other"), bind(b, "/other")
            await x.begin()
            await y.begin()
            sx, sy = x.get(), y.get()
            assert sx is not None and sy is not None
            incr(sx)
            incr(sy)
            await x.end()
            with pytest.raises(SessionConflict):
                await y.end()
            s, _ = await request(a, sid)
            assert s.get_attribute("n") == 2
        finally:
            await a.stop(time.time())
            await b.stop(time.time())

    asyncio.run(go())


def test_nonsticky_reads_keep_the_backup_alive(memcached_pair: Stores) -> None:
    """Read-only requests refresh only validity records; a session later loaded from its
    backup takes its access time from validity:bak:ID, so it is not taken for expired."""
    async def go() -> None:
        a = manager(memcached_pair, "node1", sticky=False, failover=[])
        a.max_inactive = 100
        b = manager(memcached_pair, "node2", sticky=False, failover=[])
        try:
            t0 = time.time()
            sid = ""
            while "-n1." not in sid:  # a session on n1, its backup on n2
                s, _ = await request(a, None, incr, at=t0)
                sid = s.id
            for dt in (60.0, 120.0, 180.0):  # reads only: the record itself is not rewritten
                s, _ = await request(a, sid, None, method="GET", at=t0 + dt)
                assert s.id == sid
            memcached_pair.sup.kill("n1")
            s, _ = await request(b, sid, incr, at=t0 + 240)  # 240 s after the last change
            assert s.id == sid.replace("-n1.", "-n2.") and s.get_attribute("n") == 2
        finally:
            await a.stop(time.time())
            await b.stop(time.time())

    asyncio.run(go())


def test_sticky_reads_refresh_the_stored_copy(memcached_pair: Stores) -> None:
    """Sticky: unchanged requests write nothing, except every max-inactive/4 the record is
    rewritten, so another node taking over after reads-only use finds it alive."""
    async def go() -> None:
        a = manager(memcached_pair, "node1")
        a.max_inactive = 100
        b = manager(memcached_pair, "node2")
        try:
            t0 = time.time()
            s, _ = await request(a, None, incr, at=t0)
            sid = s.id
            saves = a.counters["saves"]
            await request(a, sid, None, method="GET", at=t0 + 10)  # fresh: nothing written
            assert a.counters["saves"] == saves
            for dt in (40.0, 80.0):  # older than max-inactive/4: rewritten
                await request(a, sid, None, method="GET", at=t0 + dt)
            assert a.counters["saves"] == saves + 2
            s2, _ = await request(b, sid, incr, at=t0 + 170)  # 90 s after the last read
            assert s2.get_attribute("n") == 2 and s2.id.endswith(".node2")
        finally:
            await a.stop(time.time())
            await b.stop(time.time())

    asyncio.run(go())
