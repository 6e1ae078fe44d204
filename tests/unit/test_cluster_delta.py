"""DeltaManager decisions and the merge rule, sans-IO: two managers exchange the messages
their `outgoing` produces through `apply`, with injected time (no sockets)."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

from pysession.cluster.config import ClusterConfig
from pysession.cluster.delta import DeltaManager
from pysession.cluster.merge import apply_delta, make_delta, state
from pysession.manager import RequestInfo
from pysession.session import Session

_ids = itertools.count()


class FakeService:
    """Just enough of ClusterService for the sans-IO paths (nothing is sent)."""

    def __init__(self) -> None:
        self.cfg = ClusterConfig(key="k")
        self.uuid = f"u{next(_ids)}"
        self.posted: list[Any] = []
        self.codec = type("C", (), {"rejected": 0})()
        self.rejected_hb = 0

    def register(self, ctx: str, listener: Any) -> None: ...

    def members(self) -> list[Any]:
        return []


def mgr(route: str, **kw: Any) -> DeltaManager:
    return DeltaManager(route=route, max_inactive=60, service=FakeService(),
                        **kw)


def finish(m: DeltaManager, s: Session, now: float) -> list[dict[str, Any]]:
    msgs = m.outgoing(s, now)
    m.commit(s, now)
    return msgs


def deliver(to: DeltaManager, msgs: list[dict[str, Any]], now: float = 0.0) -> None:
    for msg in msgs:
        to.apply(msg, now)


INFO = RequestInfo()


def test_created_carries_the_attributes_of_the_creating_request() -> None:
    a, b = mgr("node1"), mgr("node2")
    s = a.create(0.0)
    s.set_attribute("user", "alice")
    msgs = finish(a, s, 0.0)
    assert [x["t"] for x in msgs] == ["created"]
    deliver(b, msgs)
    copy = b.find(s.id, 1.0)
    assert copy is not None and copy.get_attribute("user") == "alice" and not copy.is_dirty


def test_delta_only_when_dirty() -> None:
    a, b = mgr("node1"), mgr("node2")
    s = a.create(0.0)
    deliver(b, finish(a, s, 0.0))
    assert finish(a, s, 1.0) == []               # clean request on the primary: nothing
    s.set_attribute("x", "1")
    msgs = finish(a, s, 2.0)
    assert [x["t"] for x in msgs] == ["delta"]
    deliver(b, msgs)
    s.set_max_inactive_interval(99)
    s.set_principal("bob")
    s.remove_attribute("x")
    deliver(b, finish(a, s, 3.0))
    copy = b.sessions[s.id.split(".")[0]]
    assert copy.max_inactive == 99 and copy.principal == "bob" and "x" not in copy


def test_accessed_when_clean_on_a_non_primary_node() -> None:
    a, b = mgr("node1"), mgr("node2", jvm_route_binder=False)
    s = a.create(0.0)
    deliver(b, finish(a, s, 0.0))
    copy = asyncio.run(b.begin_request(s.id, 50.0, INFO))
    assert copy is not None and copy.id == s.id          # no binder: the id stays
    msgs = finish(b, copy, 50.0)
    assert [x["t"] for x in msgs] == ["accessed"]
    deliver(a, msgs)
    assert s.this_accessed == 50.0


def test_jvm_route_binder_rewrites_and_broadcasts() -> None:
    a, b = mgr("node1"), mgr("node2")
    s = a.create(0.0)
    s.set_attribute("n", 1)
    deliver(b, finish(a, s, 0.0))
    copy = asyncio.run(b.begin_request(s.id, 1.0, INFO))
    assert copy is not None and copy.id == s.id.replace(".node1", ".node2")
    assert b.session_cookie(copy, s.id) is not None     # cookie re-issued
    msgs = finish(b, copy, 1.0)
    assert [x["t"] for x in msgs] == ["chid"]
    deliver(a, msgs)
    assert s.id == copy.id and a.find(copy.id, 1.0) is s
    # the old id still finds it (the route is not part of the identity)
    assert a.find(s.id.replace(".node2", ".node1"), 1.0) is s


def test_concurrent_increments_on_two_nodes_all_survive() -> None:
    a, b = mgr("node1"), mgr("node2")
    s = a.create(0.0)
    deliver(b, finish(a, s, 0.0))
    copy = b.sessions[s.id.split(".")[0]]
    to_b: list[dict[str, Any]] = []
    to_a: list[dict[str, Any]] = []
    for _ in range(5):                      # both increment from the same stale value
        s.set_attribute("n", s.get_attribute("n", 0) + 1)
        to_b += finish(a, s, 1.0)
        copy.set_attribute("n", copy.get_attribute("n", 0) + 1)
        to_a += finish(b, copy, 1.0)
    deliver(a, to_a)
    deliver(b, to_b)
    assert s.get_attribute("n") == copy.get_attribute("n") == 10


def test_last_writer_wins_converges_whatever_the_order() -> None:
    rng = random.Random(5)
    for _ in range(20):
        nodes = [mgr(f"node{i}") for i in range(3)]
        s = nodes[0].create(0.0)
        created = finish(nodes[0], s, 0.0)
        for n in nodes[1:]:
            deliver(n, created)
        sessions = [n.sessions[s.id.split(".")[0]] for n in nodes]
        sent: list[tuple[int, dict[str, Any]]] = []
        for i, (n, x) in enumerate(zip(nodes, sessions, strict=True)):
            x.set_attribute("colour", f"c{i}-{rng.random()}")
            sent += [(i, m) for m in finish(n, x, 1.0)]
        for i, n in enumerate(nodes):
            msgs = [m for j, m in sent if j != i]
            rng.shuffle(msgs)
            deliver(n, msgs)
        assert len({x.get_attribute("colour") for x in sessions}) == 1


def test_duplicate_delta_is_applied_once() -> None:
    a = mgr("node1")
    s = a.create(0.0)
    finish(a, s, 0.0)
    s.set_attribute("n", 1)
    d = make_delta(s, "other", a.serializer)
    assert d is not None
    t = Session("T.node2", 0.0)
    assert apply_delta(t, d, a.policy) == "applied"
    assert apply_delta(t, d, a.policy) == "duplicate"
    assert t.get_attribute("n") == 1 and state(t).vv["other"] == 1


def test_replica_expires_after_twice_max_inactive() -> None:
    a, b = mgr("node1"), mgr("node2")
    s = a.create(0.0)
    deliver(b, finish(a, s, 0.0))
    assert b.sweep(61.0) == 0 and len(b) == 1       # a copy: 2 x 60 s
    assert a.find(s.id, 61.0) is None               # the primary: 60 s
    assert b.sweep(121.0) == 1 and len(b) == 0


def test_expiry_and_invalidation_are_broadcast() -> None:
    a, b = mgr("node1"), mgr("node2")
    s = a.create(0.0)
    deliver(b, finish(a, s, 0.0))
    s.invalidate()
    msgs = a.outgoing(s, 1.0)
    assert [x["t"] for x in msgs] == ["expired"]
    deliver(b, msgs)
    assert len(b) == 0


def test_change_session_id_is_broadcast() -> None:
    a, b = mgr("node1"), mgr("node2")
    s = a.create(0.0)
    deliver(b, finish(a, s, 0.0))
    old = s.id
    a.change_id(s, 1.0)
    msgs = finish(a, s, 1.0)
    assert [x["t"] for x in msgs] == ["chid"] and msgs[0]["old"] == old
    deliver(b, msgs)
    assert b.find(old, 1.0) is None and b.find(s.id, 1.0) is not None


def test_state_transfer_snapshot_then_queued_messages() -> None:
    a, c = mgr("node1"), mgr("node3")
    s = a.create(0.0)
    finish(a, s, 0.0)
    s.set_attribute("n", 1)
    live = finish(a, s, 1.0)                  # sent live AND already in the snapshot
    replies: list[Any] = []
    a._send_all(lambda body, more=False: replies.append(body), 1.0)
    c.transferring = True
    c.on_cluster_message(None, "u", {**live[0], "ctx": "/"}, lambda *x: None)
    assert len(c.queued) == 1
    for part in replies[:-1]:
        c._load_part(part)
    for _, msg in c.queued:
        c.apply(msg, 2.0)
    copy = c.find(s.id, 2.0)
    assert copy is not None and copy.get_attribute("n") == 1 and c.counts["duplicate"] == 1


def test_survivors_relay_what_a_crashed_member_sent_to_some_of_them() -> None:
    from pysession.cluster.membership import Member, MemberEvent

    a, b, c = mgr("node1"), mgr("node2"), mgr("node3")
    s = a.create(0.0)
    created = finish(a, s, 0.0)
    deliver(b, created)                      # a crashes: c never hears of the session
    s.set_attribute("n", 1)
    deliver(b, finish(a, s, 1.0))
    relayed: list[dict[str, Any]] = []
    b.broadcast = relayed.append  # type: ignore[method-assign,assignment]
    b.on_member_event(MemberEvent("dropped", Member(a.me, "node1", "h", 1, 0.0)))
    deliver(c, relayed)
    copy = c.find(s.id, 2.0)
    assert copy is not None and copy.get_attribute("n") == 1
    deliver(c, relayed)                       # relayed twice: applied once
    assert copy.get_attribute("n") == 1


def test_remote_delta_waits_for_the_local_request_using_the_session() -> None:
    a, b = mgr("node1"), mgr("node2", jvm_route_binder=False)
    s = a.create(0.0)
    deliver(b, finish(a, s, 0.0))
    copy = asyncio.run(b.begin_request(s.id, 1.0, INFO))
    assert copy is not None
    copy.in_use += 1                               # what SessionBinding does
    seen = copy.get_attribute("n", 0)              # the request reads n = 0 ...
    s.set_attribute("n", 1)
    deliver(b, finish(a, s, 1.0))                  # ... node1's +1 arrives meanwhile ...
    assert copy.get_attribute("n", 0) == 0         # (deferred)
    copy.set_attribute("n", seen + 1)              # ... and the request writes 1
    asyncio.run(b.end_request(copy, 2.0, INFO))
    copy.in_use -= 1
    assert copy.get_attribute("n") == 2            # both increments
