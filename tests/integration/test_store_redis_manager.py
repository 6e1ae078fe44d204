"""RedisSessionManager in-process against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pysession.managers.redis import RedisSessionManager
from pysession.stores.health import SessionUnavailable
from pysession.stores.redis import ATTR, RedisSettings, RedisStore, SessionConflict
from tests import stores_fixtures
from tests.stores_fixtures import Stores, incr, request

pytestmark = [pytest.mark.integration, pytest.mark.interop]
redis_server = stores_fixtures.redis_server


def manager(stores: Stores, route: str, **kw: Any) -> RedisSessionManager:
    h, p = stores.addr("redis")
    st = RedisStore.connect(RedisSettings(host=h, port=p, timeout=0.5))
    kw.setdefault("max_inactive", 600)
    return RedisSessionManager(st, route=route, retry=0.3, **kw)


def test_hash_fields_ttl_and_save_policies(redis_server: Stores) -> None:
    async def go() -> None:
        a = manager(redis_server, "node1")
        b = manager(redis_server, "node2", save_policy="always")
        try:
            s, cookie = await request(a, None, lambda s: s.set_attribute("user", "ann"))
            sid = s.id
            assert cookie and sid.endswith(".node1")
            fields = await a.store.load(sid)
            assert fields is not None and set(fields) == {"__meta", "a:user"}
            assert 599 <= (await a.store.ttl_of(sid) or 0) <= 600
            # TTL moves with every request, also one that changes nothing
            await a.store.client.pexpire(a.store.key(sid), 100_000)
            await request(a, sid, None, method="GET")
            assert 599 <= (await a.store.ttl_of(sid) or 0) <= 600
            # another node sees it (no stickiness needed); only the changed field is written
            s2, cookie2 = await request(b, sid, incr)
            assert s2.id == sid and cookie2 is None and s2.get_attribute("user") == "ann"
            assert b.changes(s2) == [b.changes(s2)[0]]  # after save: only __meta differs
            # mutation without set: lost by on_change, saved by always-after-request
            await request(a, sid, lambda s: s.set_attribute("cart", ["x"]))
            await request(a, sid, lambda s: s.get_attribute("cart").append("lost"))
            s3, _ = await request(b, sid)
            assert s3.get_attribute("cart") == ["x"]
            await request(b, sid, lambda s: s.get_attribute("cart").append("kept"))
            s4, _ = await request(a, sid)
            assert s4.get_attribute("cart") == ["x", "kept"]
            # session timeout change moves the TTL; invalidate deletes the hash
            await request(a, sid, lambda s: s.set_max_inactive_interval(120))
            assert 119 <= (await a.store.ttl_of(sid) or 0) <= 120
            await request(a, sid, lambda s: s.invalidate())
            assert await a.store.load(sid) is None
            s5, _ = await request(b, sid)
            assert s5.id != sid  # an unknown id is never adopted
        finally:
            await a.stop(time.time())
            await b.stop(time.time())

    asyncio.run(go())


def test_optimistic_refuses_lost_update_but_merges_other_fields(redis_server: Stores
                                                                 ) -> None:
    async def go() -> None:
        a = manager(redis_server, "node1")
        b = manager(redis_server, "node2")
        try:
            s, _ = await request(a, None, incr)
            sid = s.id
            from pysession.binding import CookieSettings, SessionBinding
            from pysession.manager import RequestInfo

            def bind(m: RedisSessionManager) -> SessionBinding:
                return SessionBinding(m, CookieSettings(), time.time,
                                      RequestInfo("POST", "/", ""), sid)

            x, y = bind(a), bind(b)
            await x.begin()
            await y.begin()
            sx, sy = x.get(), y.get()
            assert sx is not None and sy is not None
            incr(sx)
            incr(sy)
            sy.set_attribute("other", 1)
            await x.end()
            with pytest.raises(SessionConflict):
                await y.end()  # would overwrite n=2 with n=2: refused, not lost
            z = bind(a)
            await z.begin()
            sz = z.get()
            assert sz is not None and sz.get_attribute("n") == 2
            sz.set_attribute("k", "v")
            w = bind(b)
            await w.begin()
            sw = w.get()
            assert sw is not None
            sw.set_attribute("j", "w")
            await z.end()
            await w.end()  # different attributes: both land
            fields = await a.store.load(sid) or {}
            assert {ATTR + "k", ATTR + "j"} <= set(fields)
        finally:
            await a.stop(time.time())
            await b.stop(time.time())

    asyncio.run(go())


@pytest.mark.parametrize("concurrency", ["lock", "optimistic", "none"])
def test_concurrent_increments(redis_server: Stores, concurrency: str) -> None:
    async def go() -> tuple[int, int]:
        a = manager(redis_server, "node1", concurrency=concurrency)
        b = manager(redis_server, "node2", concurrency=concurrency)
        acked = 1
        try:
            s, _ = await request(a, None, incr)
            sid = s.id

            async def client(m: RedisSessionManager) -> None:
                nonlocal acked
                for _ in range(40):
                    try:
                        await request(m, sid, incr)
                        acked += 1
                    except SessionConflict:
                        pass

            await asyncio.gather(client(a), client(b), client(a), client(b))
            s, _ = await request(a, sid)
            return int(s.get_attribute("n")), acked
        finally:
            await a.stop(time.time())
            await b.stop(time.time())

    value, acked = asyncio.run(go())
    if concurrency == "lock":
        assert value == acked == 161
    elif concurrency == "optimistic":
        assert value == acked  # every acknowledged increment is there
    else:
        assert value <= acked


def test_outage_fallback_recovery_and_fail_closed(redis_server: Stores) -> None:
    async def go() -> None:
        a = manager(redis_server, "node1")
        closed = manager(redis_server, "node2", fail_closed=True)
        try:
            s, _ = await request(a, None, incr)
            sid = s.id
            redis_server.sup.kill("redis")
            for _ in range(3):
                s, _ = await request(a, sid, incr)
            assert s.get_attribute("n") == 4 and a.health.is_down
            with pytest.raises(SessionUnavailable):
                await request(closed, sid, incr)
            redis_server.sup.start("redis")  # empty again: nothing persisted
            await asyncio.sleep(0.35)
            s, _ = await request(a, sid, incr)
            assert s.get_attribute("n") == 5 and not a.health.is_down
            s, _ = await request(closed, sid, incr)  # written back in full
            assert s.id == sid and s.get_attribute("n") == 6
        finally:
            await a.stop(time.time())
            await closed.stop(time.time())

    asyncio.run(go())


