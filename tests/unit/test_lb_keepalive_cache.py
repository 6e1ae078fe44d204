"""The upstream keep-alive cache has nginx's `keepalive N` semantics.

One cache per upstream (not per member) of at most N idle connections, looked up by the
member's address, most recently released first, the least recently used one closed when a
release would exceed N. Connections carry a fake transport: no socket is opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pylb.config import MemberConfig, UpstreamConfig
from pylb.upstream import UpstreamConnection, UpstreamGroup


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes) -> None:
        pass


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def group(keepalive: int, *addrs: tuple[str, int]) -> UpstreamGroup:
    members = [MemberConfig(f"m{i}", h, p) for i, (h, p) in enumerate(addrs)]
    return UpstreamGroup(UpstreamConfig("app", members=members, keepalive=keepalive))


def conns(loop: asyncio.AbstractEventLoop, g: UpstreamGroup, member: int,
          n: int) -> list[UpstreamConnection]:
    async def make() -> list[UpstreamConnection]:
        out = []
        for _ in range(n):
            c = UpstreamConnection(g.peers[member])
            c.connection_made(FakeTransport())  # type: ignore[arg-type]
            out.append(c)
        return out
    return loop.run_until_complete(make())


def closed(c: UpstreamConnection) -> bool:
    return c.transport.closed  # type: ignore[union-attr]


def test_one_cache_for_the_whole_upstream_least_recently_used_goes(
        loop: asyncio.AbstractEventLoop) -> None:
    g = group(3, ("127.0.0.1", 9001), ("127.0.0.1", 9002))
    a = conns(loop, g, 0, 2)
    b = conns(loop, g, 1, 2)
    for t, c in enumerate([a[0], b[0], a[1], b[1]]):
        g.release(c, True, float(t))
    assert closed(a[0]) and not any(closed(c) for c in (b[0], a[1], b[1]))
    assert len(g.lru) == 3
    # most recently released first, and only connections to that member's address
    assert g.take_idle(g.peers[0], 5.0, None) is a[1]
    assert g.take_idle(g.peers[0], 5.0, None) is None
    assert g.take_idle(g.peers[1], 5.0, None) is b[1]
    assert g.take_idle(g.peers[1], 5.0, None) is b[0]
    assert not g.lru


def test_members_on_one_address_share_connections(loop: asyncio.AbstractEventLoop) -> None:
    g = group(8, *[("127.0.0.1", 9001)] * 1000)
    c = conns(loop, g, 7, 1)[0]
    g.release(c, True, 0.0)
    got = g.take_idle(g.peers[900], 1.0, None)
    assert got is c and got.peer is g.peers[900]


def test_not_kept_when_closing_dead_or_disabled(loop: asyncio.AbstractEventLoop) -> None:
    g = group(4, ("127.0.0.1", 9001))
    x, y = conns(loop, g, 0, 2)
    g.release(x, False, 0.0)  # the member said Connection: close
    y.alive = False
    g.release(y, True, 0.0)
    assert closed(x) and closed(y) and not g.lru
    off = group(0, ("127.0.0.1", 9001))
    (z,) = conns(loop, off, 0, 1)
    off.release(z, True, 0.0)
    assert closed(z) and not off.lru


def test_stale_entries_are_skipped_and_max_idle_honoured(
        loop: asyncio.AbstractEventLoop) -> None:
    g = group(4, ("127.0.0.1", 9001))
    old, dead, fresh = conns(loop, g, 0, 3)
    g.release(old, True, 0.0)
    g.release(dead, True, 9.0)
    g.release(fresh, True, 10.0)
    dead.alive = False  # closed by the member while idle
    assert g.take_idle(g.peers[0], 10.5, 2.0) is fresh
    # the next one is dead, the one after too old for a non-idempotent request: both closed
    assert g.take_idle(g.peers[0], 10.5, 2.0) is None
    assert closed(dead) and closed(old) and not g.lru


def test_close_empties_the_cache(loop: asyncio.AbstractEventLoop) -> None:
    g = group(4, ("127.0.0.1", 9001), ("127.0.0.1", 9002))
    cs = conns(loop, g, 0, 2) + conns(loop, g, 1, 1)
    for c in cs:
        g.release(c, True, 0.0)
    g.close()
    assert all(closed(c) for c in cs) and not g.lru and not g.idle
    (late,) = conns(loop, g, 0, 1)
    g.release(late, True, 1.0)  # a retired group keeps nothing
    assert closed(late)
