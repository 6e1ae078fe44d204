"""The cluster-wide per-session lock (`lock = "session"`): SessionLocks with injected time,
then the coordinator's message handling in DeltaManager (fake service, real event loop for
the lease timer). Keys are (member, token): one token per lock request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pycommon.config import ConfigError
from pysession.cluster.config import ClusterConfig
from pysession.cluster.delta import DeltaManager
from pysession.cluster.locks import SessionLocks
from pysession.options import ManagerEnv, Options

A1, A2, B1, C1 = ("a", 1), ("a", 2), ("b", 1), ("c", 1)


def test_grant_queue_release_in_fifo_order() -> None:
    locks = SessionLocks(lease=30.0)
    assert locks.acquire("s", A1, 0.0) is True
    assert locks.acquire("s", B1, 0.1) is False
    assert locks.acquire("s", C1, 0.2) is False
    assert locks.acquire("other", A2, 0.2) is True          # locks are per session
    assert locks.release("s", A1, 1.0) == B1
    assert locks.release("s", B1, 2.0) == C1
    assert locks.release("s", C1, 3.0) is None
    assert "s" not in locks.holders and "s" not in locks.waiters
    assert locks.holders["other"][0] == A2


def test_cancel_before_the_grant_leaves_the_queue() -> None:
    locks = SessionLocks()
    locks.acquire("s", A1, 0.0)
    locks.acquire("s", B1, 0.0)
    locks.acquire("s", C1, 0.0)
    assert locks.release("s", B1, 1.0) is None              # b gave up while waiting
    assert list(locks.waiters["s"]) == [C1]
    assert locks.release("s", A1, 2.0) == C1                # b is skipped, never granted
    assert locks.release("s", C1, 3.0) is None
    assert not locks.holders and not locks.waiters


def test_cancel_after_the_grant_passes_the_lock_on() -> None:
    """The grant crossed the requester's timeout: its cancel releases what it never used."""
    locks = SessionLocks()
    locks.acquire("s", A1, 0.0)
    locks.acquire("s", B1, 0.0)
    locks.acquire("s", C1, 0.0)
    assert locks.release("s", A1, 1.0) == B1                # granted to b, who gave up
    assert locks.release("s", B1, 1.1) == C1                # b's cancel: on to c at once
    assert locks.release("s", C1, 2.0) is None
    assert not locks.holders


def test_stale_or_unknown_unlock_is_ignored() -> None:
    locks = SessionLocks()
    locks.acquire("s", A1, 0.0)
    locks.acquire("s", A2, 0.0)                             # same member, a later request
    assert locks.release("s", A1, 1.0) == A2
    assert locks.release("s", A1, 1.5) is None              # a repeated/late unlock of A1
    assert locks.holders["s"][0] == A2                      # ... does not free A2's lock
    assert locks.release("s", ("a", 99), 1.5) is None       # never asked for
    assert locks.release("nothing", B1, 1.5) is None
    assert locks.holders["s"][0] == A2


def test_an_expired_lease_passes_the_lock_on() -> None:
    locks = SessionLocks(lease=10.0)
    locks.acquire("s", A1, 0.0)
    locks.acquire("s", B1, 5.0)
    locks.acquire("t", C1, 3.0)
    assert locks.next_deadline() == 10.0
    assert locks.expire(9.9) == []
    assert locks.expire(10.0) == [("s", A1, B1)]
    assert locks.holders["s"] == (B1, 20.0)                 # b's lease runs from its grant
    assert locks.next_deadline() == 13.0
    assert locks.expire(13.0) == [("t", C1, None)]
    assert locks.release("s", A1, 14.0) is None             # a's late unlock: ignored
    assert locks.holders["s"][0] == B1
    assert locks.expire(20.0) == [("s", B1, None)]
    assert not locks.holders and locks.next_deadline() is None


def test_release_all_of_a_member_that_left() -> None:
    locks = SessionLocks()
    locks.acquire("s1", A1, 0.0)
    locks.acquire("s1", A2, 0.0)        # a's other request waits behind its own lock
    locks.acquire("s1", B1, 0.0)
    locks.acquire("s2", B1, 0.0)
    locks.acquire("s2", A1, 0.0)
    locks.acquire("s3", A2, 0.0)
    grants = locks.release_all("a", 1.0)
    assert grants == [("s1", B1)]                           # never granted to the dead a
    assert locks.holders == {"s1": (B1, 31.0), "s2": (B1, 30.0)}
    assert locks.waiters == {}
    assert locks.release("s2", B1, 2.0) is None


# -- the coordinator's side of DeltaManager ------------------------------------------------
class FakeMembership:
    def oldest(self) -> Any:
        return None                                         # this node coordinates


class FakeService:
    """Just enough of ClusterService: nothing is sent, this node is the oldest."""

    def __init__(self) -> None:
        self.cfg = ClusterConfig(key="k")
        self.uuid = "me"
        self.membership = FakeMembership()
        self.codec = type("C", (), {"rejected": 0})()
        self.channel = type("Ch", (), {"host": "127.0.0.1", "port": 0})()
        self.rejected_hb = 0

    def register(self, ctx: str, listener: Any) -> None: ...

    def members(self) -> list[Any]:
        return []

    def member(self, uuid: str) -> Any:
        return None

    async def stop(self) -> None: ...


def coordinator(**kw: Any) -> DeltaManager:
    return DeltaManager(route="node1", max_inactive=60, service=FakeService(),
                        lock="session", **kw)


class Replies:
    def __init__(self) -> None:
        self.granted: list[str] = []

    def to(self, who: str) -> Any:
        return lambda *_: self.granted.append(who)


def msg(t: str, k: int) -> dict[str, Any]:
    return {"t": t, "ctx": "/", "id": "S", "k": k}


def test_coordinator_cancel_before_and_after_the_grant() -> None:
    async def run() -> None:
        m, r = coordinator(), Replies()
        m.on_cluster_message(None, "b", msg("lock", 1), r.to("b1"))
        m.on_cluster_message(None, "c", msg("lock", 1), r.to("c1"))
        m.on_cluster_message(None, "d", msg("lock", 1), r.to("d1"))
        assert r.granted == ["b1"]
        m.on_cluster_message(None, "c", msg("unlock", 1), r.to("-"))   # c gave up: queued
        m.on_cluster_message(None, "b", msg("unlock", 1), r.to("-"))
        assert r.granted == ["b1", "d1"]                                # c was skipped
        m.on_cluster_message(None, "b", msg("lock", 2), r.to("b2"))
        m.on_cluster_message(None, "d", msg("unlock", 1), r.to("-"))
        assert r.granted == ["b1", "d1", "b2"]
        m.on_cluster_message(None, "b", msg("unlock", 2), r.to("-"))    # b2 gave up late
        m.on_cluster_message(None, "b", msg("unlock", 2), r.to("-"))    # repeated: ignored
        assert m.stats()["lock"]["held"] == 0 and m.stats()["lock"]["waiting"] == 0
        await m.stop(0.0)

    asyncio.run(run())


def test_local_request_that_times_out_is_withdrawn() -> None:
    """The coordinator's own requests use the same table: a timed-out one leaves no trace."""
    async def run() -> None:
        m = coordinator(lock_timeout=0.05)
        first = await m._lock("S")
        assert first is not None
        assert await m._lock("S") is None                   # waited lock_timeout, gave up
        await m._unlock(*first)
        assert m.locks.holders == {} and m.locks.waiters == {}
        again = await m._lock("S")                          # granted at once
        assert again is not None
        await m._unlock(*again)
        assert m.lock_counts == {"granted": 2, "not_granted": 1, "leases_expired": 0}
        await m.stop(0.0)

    asyncio.run(run())


def test_lease_expiry_passes_a_hung_holders_lock_on() -> None:
    async def run() -> None:
        m, r = coordinator(lock_lease=0.05), Replies()
        m.on_cluster_message(None, "b", msg("lock", 1), r.to("b1"))   # b then hangs
        m.on_cluster_message(None, "c", msg("lock", 1), r.to("c1"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while r.granted != ["b1", "c1"] and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert r.granted == ["b1", "c1"]
        assert m.lock_counts["leases_expired"] == 1
        m.on_cluster_message(None, "b", msg("unlock", 1), r.to("-"))  # b wakes: ignored
        assert m.locks.holders["S"][0] == ("c", 1)
        m.on_cluster_message(None, "c", msg("unlock", 1), r.to("-"))
        assert m.locks.holders == {}
        await m.stop(0.0)
        assert m._lease_timer is None

    asyncio.run(run())


def test_member_leaving_releases_its_locks_to_the_next_waiter() -> None:
    from pysession.cluster.membership import Member, MemberEvent

    async def run() -> None:
        m, r = coordinator(), Replies()
        m.on_cluster_message(None, "b", msg("lock", 1), r.to("b1"))
        m.on_cluster_message(None, "b", msg("lock", 2), r.to("b2"))
        m.on_cluster_message(None, "c", msg("lock", 1), r.to("c1"))
        m.on_member_event(MemberEvent("dropped", Member("b", "node2", "127.0.0.1", 1, 0.0)))
        assert r.granted == ["b1", "c1"]
        await m.stop(0.0)

    asyncio.run(run())


def test_lock_lease_option_is_parsed_and_checked() -> None:
    env = ManagerEnv(route="node1", cluster={"key": "k"})
    m = DeltaManager.from_options(Options({"type": "delta", "lock": "session",
                                           "lock_lease": 5}), env)
    assert m.lock_lease == 5.0 and m.locks.lease == 5.0
    assert DeltaManager.from_options(Options({"type": "delta"}), env).lock_lease == 30.0
    for bad in (0, -1, "5s"):
        with pytest.raises(ConfigError, match="lock_lease"):
            DeltaManager.from_options(Options({"type": "delta", "lock_lease": bad}), env)
