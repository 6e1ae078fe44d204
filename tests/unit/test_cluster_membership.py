"""Membership timeline with injected time: McastService semantics."""

from __future__ import annotations

from pysession.cluster.membership import Member, Membership


def m(uuid: str, route: str, started: float = 0.0, port: int = 4000) -> Member:
    return Member(uuid, route, "127.0.0.1", port, started)


def test_heartbeat_every_frequency() -> None:
    ms = Membership(m("a", "node1"), frequency=0.5)
    assert ms.heartbeat(0.0) is not None
    assert ms.heartbeat(0.3) is None
    assert ms.heartbeat(0.5) is not None


def test_join_suspect_then_drop_after_tcp_check() -> None:
    a = Membership(m("a", "node1", 1.0), frequency=0.5, drop_time=3.0)
    b = Membership(m("b", "node2", 2.0, 4001))
    ev = a.receive(b.heartbeat(0.0), 0.0)
    assert [e.kind for e in ev] == ["added"]
    assert a.receive(b.heartbeat(0.5), 0.5) == []
    assert a.tick(3.4) == []
    ev = a.tick(3.5)                                 # 3000 ms after the last heartbeat
    assert [e.kind for e in ev] == ["suspect"]
    assert a.tick(3.6) == []                         # suspected once
    a.confirmed_alive("b", 3.7)                      # receiver answered: kept
    assert [x.uuid for x in a.alive()] == ["b"]
    assert [e.kind for e in a.tick(6.7)] == ["suspect"]
    dropped = a.confirmed_dead("b")
    assert dropped is not None and dropped.kind == "dropped" and a.alive() == []


def test_graceful_leave_is_immediate() -> None:
    a = Membership(m("a", "node1"))
    b = Membership(m("b", "node2", port=4001))
    a.receive(b.heartbeat(0.0), 0.0)
    ev = a.receive(b.heartbeat(0.1, leaving=True), 0.1)
    assert [e.kind for e in ev] == ["left"] and a.alive() == []


def test_restart_replaces_old_incarnation() -> None:
    a = Membership(m("a", "node1"))
    a.receive(Membership(m("b1", "node2", port=4001)).heartbeat(0.0), 0.0)
    ev = a.receive(Membership(m("b2", "node2", 5.0, 4001)).heartbeat(5.0), 5.0)
    assert [(e.kind, e.member.uuid) for e in ev] == [("dropped", "b1"), ("added", "b2")]


def test_oldest_member_serves_state_transfer() -> None:
    me = Membership(m("c", "node3", 30.0))
    for u, r, t in (("b", "node2", 20.0), ("a", "node1", 10.0)):
        me.receive(Membership(m(u, r, t)).heartbeat(0.0), 0.0)
    oldest = me.oldest()
    assert oldest is not None and oldest.route == "node1"
    first = Membership(m("a", "node1", 10.0))
    first.receive(Membership(m("c", "node3", 30.0)).heartbeat(0.0), 0.0)
    assert first.oldest() is None                    # nobody older: start empty


def test_own_and_foreign_garbage_ignored() -> None:
    a = Membership(m("a", "node1"))
    assert a.receive(a.heartbeat(0.0), 0.0) == []
    assert a.receive({"t": "hb", "m": {"uuid": 1}}, 0.0) == []
    assert a.receive([1, 2], 0.0) == []
