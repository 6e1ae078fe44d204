"""PersistentManager: swap out / in, backup, max-active swaps, stored expiry, the File and
SQLite stores, concurrent swap-in, and a store that fails."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pysession.manager import RequestInfo
from pysession.persistent import PersistentManager
from pysession.store import MemoryStore, Store, StoreError
from pysession.stores import FileStore, SQLiteStore

INFO = RequestInfo()


def run(coro):
    return asyncio.run(coro)


def make(store: Store, **kw: float) -> PersistentManager:
    return PersistentManager(store, route="node1", max_inactive=600, **kw)  # type: ignore[arg-type]


def test_plan_swaps_idle_and_backs_up() -> None:
    m = make(MemoryStore(), max_idle_swap=100, min_idle_swap=10, max_idle_backup=20)
    a, b, c = m.create(0.0), m.create(0.0), m.create(0.0)
    b.access(60.0)
    c.access(145.0)
    plan = m.plan(150.0)
    assert plan.swap_out == [a]             # idle 150 ≥ 100
    assert plan.backup == [b]               # idle 90 ≥ 20, c only 5
    c.in_use = 1
    assert c not in m.plan(10_000.0).swap_out  # never under a request


def test_max_active_swaps_most_idle_first_respecting_min_idle() -> None:
    m = make(MemoryStore(), min_idle_swap=10)
    a, b, c = m.create(0.0), m.create(0.0), m.create(0.0)
    m.max_active = 2
    a.access(5.0)
    b.access(1.0)
    c.access(15.0)
    assert m.plan(16.0).swap_out == [b]     # one too many; b is the most idle; c too fresh


def swap_cycle(store: Store) -> None:
    async def go() -> None:
        m = make(store, max_idle_swap=60)
        s = m.create(0.0)
        s.set_attribute("user", "alice")
        await m.end_request(s, 0.0, INFO)
        sid = s.id
        await m.background(100.0)
        assert len(m) == 0 and m.swapped_out == 1 and sid in await store.keys()
        back = await m.begin_request(sid, 110.0, INFO)
        assert back is not None and back.get_attribute("user") == "alice"
        assert back.this_accessed == 110.0 and len(m) == 1 and m.swapped_in == 1
        # invalidation removes it from the store as well
        back.invalidate()
        await m.end_request(back, 111.0, INFO)
        assert sid not in await store.keys()
        assert await m.begin_request(sid, 112.0, INFO) is None
        await store.close()
    run(go())


def test_swap_out_in_memory_store() -> None:
    swap_cycle(MemoryStore())


def test_swap_out_in_file_store(tmp_path: Path) -> None:
    swap_cycle(FileStore(tmp_path / "sessions"))


def test_swap_out_in_sqlite_store_with_tomcat_table(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    swap_cycle(SQLiteStore(db, app_name="/shop"))
    cols = [r[1] for r in sqlite3.connect(db).execute('PRAGMA table_info("tomcat$sessions")')]
    assert cols == ["session_id", "valid_session", "max_inactive", "last_access", "app_name",
                    "session_data"]


def test_expired_while_swapped_out_is_not_swapped_in_and_is_cleaned(tmp_path: Path) -> None:
    async def go() -> None:
        store = FileStore(tmp_path)
        m = make(store, max_idle_swap=60)
        s = m.create(0.0)
        await m.background(100.0)
        assert await m.begin_request(s.id, 700.0, INFO) is None   # idle 700 > 600
        assert await store.keys() == []
        t = m.create(0.0)
        await m.background(100.0)
        assert await store.keys() == [t.id]
        assert await m.background(1000.0) == 1                   # processExpires on the store
        assert await store.keys() == []
    run(go())


def test_restart_saves_to_store_and_swaps_back_lazily(tmp_path: Path) -> None:
    async def go() -> None:
        db = tmp_path / "s.sqlite3"
        m1 = make(SQLiteStore(db))
        s = m1.create(0.0)
        s.set_attribute("n", 41)
        await m1.stop(10.0)
        m2 = make(SQLiteStore(db))
        await m2.start(20.0)
        got = await m2.begin_request(s.id, 20.0, INFO)
        assert got is not None and got.get_attribute("n") == 41
        await m2.stop(30.0)
    run(go())


def test_concurrent_requests_share_one_swap_in() -> None:
    class SlowStore(MemoryStore):
        gets = 0

        async def get(self, sid: str) -> bytes | None:
            SlowStore.gets += 1
            await asyncio.sleep(0.01)
            return await super().get(sid)

    async def go() -> None:
        store = SlowStore()
        m = make(store, max_idle_swap=1)
        s = m.create(0.0)
        await m.background(5.0)
        SlowStore.gets = 0
        a, b = await asyncio.gather(m.begin_request(s.id, 6.0, INFO),
                                    m.begin_request(s.id, 6.0, INFO))
        assert a is b and a is not None and SlowStore.gets == 1
    run(go())


def test_forged_ids_never_reach_the_store(tmp_path: Path) -> None:
    async def go() -> None:
        store = FileStore(tmp_path / "s")
        (tmp_path / "secret.session").write_bytes(b"x")
        m = make(store)
        assert await m.begin_request("../secret", 0.0, INFO) is None
        with pytest.raises(StoreError):
            await store.set("../secret", b"x")
    run(go())


def test_store_down_degrades_to_memory(caplog: pytest.LogCaptureFixture) -> None:
    class DownStore(MemoryStore):
        async def set(self, sid: str, data: bytes, ttl: float | None = None) -> None:
            raise StoreError("connection refused")

        async def get(self, sid: str) -> bytes | None:
            raise StoreError("connection refused")

    async def go() -> None:
        m = make(DownStore(), max_idle_swap=1)
        s = m.create(0.0)
        await m.background(5.0)
        await m.background(6.0)
        assert m.find(s.id, 6.0) is s            # not swapped: kept in memory
        assert await m.begin_request("4DD0340CE6294FF2BBE802CD4CD039EC.node1", 7.0,
                                     INFO) is None
    run(go())
    errors = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(errors) == 1                      # logged once per outage
