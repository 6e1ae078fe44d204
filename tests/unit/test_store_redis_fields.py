"""The redis manager's field decisions, sans-IO: which hash fields a save writes under each
save policy, and the record <-> fields mapping."""

from __future__ import annotations

from typing import Any

from pycommon.wire import packb
from pysession.managers.redis import RedisSessionManager
from pysession.stores.redis import ATTR, META, RedisStore


class NoClient:
    """Enough of a redis client to build a store that is never called."""

    def register_script(self, source: str) -> Any:
        return None


def manager(policy: str = "on_change") -> RedisSessionManager:
    return RedisSessionManager(RedisStore(NoClient()), route="node1", max_inactive=60,
                               save_policy=policy)


def loaded(m: RedisSessionManager) -> Any:
    s = m.create(100.0)
    s.set_attribute("user", "ann")
    s.set_attribute("cart", ["a"])
    fields = {META: m.meta_bytes(s), ATTR + "user": packb("ann"), ATTR + "cart": packb(["a"])}
    s2 = m.session_from(s.id, fields)
    assert s2 is not None
    return s2


def test_on_change_writes_meta_and_changed_fields_only() -> None:
    m = manager()
    s = loaded(m)
    assert s.attributes == {"user": "ann", "cart": ["a"]} and not s.is_new
    s.access(130.0)
    assert [c[0] for c in m.changes(s)] == [META]  # nothing changed: meta (access time) only
    s.set_attribute("user", "bob")
    s.remove_attribute("cart")
    ch = {f: (old, new) for f, old, new in m.changes(s)}
    assert ch[ATTR + "user"] == (packb("ann"), packb("bob"))
    assert ch[ATTR + "cart"] == (packb(["a"]), b"")  # b"" = delete the field


def test_on_change_misses_in_place_mutation_always_catches_it() -> None:
    for policy, expect in (("on_change", [META]), ("always", [META, ATTR + "cart"])):
        m = manager(policy)
        s = loaded(m)
        s.get_attribute("cart").append("b")  # no set_attribute
        assert [c[0] for c in m.changes(s)] == expect


def test_new_session_writes_everything_and_ttl_is_the_timeout() -> None:
    m = manager()
    s = m.create(0.0)
    s.set_attribute("n", 1)
    assert {c[0] for c in m.changes(s)} == {META, ATTR + "n"}
    assert m.ttl(s) == 60
    s.set_max_inactive_interval(-1)
    assert m.ttl(s) is None  # never expires: PERSIST


def test_unreadable_hash_is_not_a_session() -> None:
    m = manager()
    assert m.session_from("X", {ATTR + "n": packb(1)}) is None  # no __meta
    assert m.session_from("X", {META: b"\xc1garbage"}) is None
