"""memcached-session-manager decisions, sans-IO: node choice, failover nodes, backup and
relocation targets, health timeline, lock modes, item expiry."""

from __future__ import annotations

import pytest

from pysession.ids import parse_session_id
from pysession.managers.memcached_core import LockPolicy, NodeRing, item_ttl, node_of, with_node


def test_failover_node_used_only_when_no_other_is_left() -> None:
    ring = NodeRing(["n1", "n2"], ["n1"], retry=5)
    assert {ring.pick_new(0) for _ in range(4)} == {"n2"}  # seed 003: failoverNodes="n1"
    ring.health["n2"].failed(10, "refused")
    assert ring.pick_new(11) == "n1"
    assert ring.next_after("n2", 11) == "n1"
    assert ring.pick_new(15) == "n2"  # retry due: n2 is tried again
    ring.health["n2"].ok(15)
    assert not ring.health["n2"].is_down


def test_backup_goes_to_next_live_node_regular_first() -> None:
    ring = NodeRing(["n1", "n2", "n3"], ["n3"])
    assert ring.next_after("n1", 0) == "n2"
    assert ring.next_after("n2", 0) == "n1"  # regular nodes before the failover node
    ring.health["n1"].failed(0, "x")
    assert ring.next_after("n2", 1) == "n3"
    ring.health["n3"].failed(0, "x")
    assert ring.next_after("n2", 1) is None
    assert {ring.pick_new(0) for _ in range(4)} == {"n1", "n2"} - {"n1"}


def test_unknown_failover_node_refused() -> None:
    with pytest.raises(ValueError):
        NodeRing(["n1"], ["n9"])


def test_ids_carry_the_node() -> None:
    sid = "4DD0340CE6294FF2BBE802CD4CD039EC-n1.node1"
    assert node_of(sid) == "n1"
    assert with_node(sid, "n2") == "4DD0340CE6294FF2BBE802CD4CD039EC-n2.node1"
    assert parse_session_id(with_node(sid, "n2")) is not None
    assert node_of("4DD0340CE6294FF2BBE802CD4CD039EC.node1") is None


def test_lock_modes() -> None:
    writers = {"/cart"}
    assert not LockPolicy.parse("none").needs_lock("POST", "/x", writers)
    assert LockPolicy.parse("all").needs_lock("GET", "/x", writers)
    auto = LockPolicy.parse("auto")
    assert auto.needs_lock("POST", "/x", writers)
    assert not auto.needs_lock("GET", "/x", writers)
    assert auto.needs_lock("GET", "/cart", writers)  # learned: this URI writes sessions
    uri = LockPolicy.parse("uriPattern:/api/.*")
    assert uri.needs_lock("GET", "/api/session", writers)
    assert not uri.needs_lock("POST", "/other", writers)
    for bad in ("sometimes", "uriPattern:("):
        with pytest.raises(ValueError):
            LockPolicy.parse(bad)


def test_item_expiry_as_msm() -> None:
    assert item_ttl(1800, sticky=True) == 1800
    assert item_ttl(1800, sticky=False) == 3600
    assert item_ttl(-1, sticky=True) == 0


def test_store_health_logs_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    from pysession.stores.health import Health

    h = Health("memcached node n1", retry=2.0)
    with caplog.at_level("WARNING", logger="pysession.stores"):
        for t in (10.0, 10.5, 12.5, 15.0):  # failures, including retries that fail again
            h.failed(t, "connection refused")
        assert not h.usable(16.0) and h.usable(17.0)  # next try due 2 s after the last
        h.ok(17.0)
        h.ok(18.0)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2, msgs
    assert "is down" in msgs[0] and "is back after 7.0 s" in msgs[1]
    assert h.failures == 4 and h.stats()["up"] is True
