"""StandardManager with an injected clock: expiry (lazy and swept), max_active refusal,
change_id, listeners, in-use protection, save on stop / reload on start."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pysession.events import SessionListener
from pysession.manager import RequestInfo, SessionLimitExceeded, StandardManager
from pysession.session import IllegalStateError, Session

INFO = RequestInfo()


def test_lazy_expiry_on_access() -> None:
    m = StandardManager(route="node1", max_inactive=60)
    s = m.create(1000.0)
    assert m.find(s.id, 1059.0) is s
    s.access(1059.0)
    assert m.find(s.id, 1118.0) is s          # idle is measured from the last access
    assert m.find(s.id, 1119.0) is None       # 60 s idle → gone
    assert len(m) == 0 and m.expired_count == 1


def test_sweep_expires_only_idle_sessions() -> None:
    m = StandardManager(max_inactive=30)
    a, b = m.create(0.0), m.create(0.0)
    b.access(20.0)
    assert m.sweep(40.0) == 1
    assert m.find(a.id, 40.0) is None and m.find(b.id, 40.0) is b


def test_negative_max_inactive_never_expires() -> None:
    m = StandardManager(max_inactive=-1)
    s = m.create(0.0)
    assert m.sweep(1e9) == 0 and m.find(s.id, 1e9) is s


def test_in_use_session_is_not_expired_under_a_request() -> None:
    m = StandardManager(max_inactive=10)
    s = m.create(0.0)
    s.in_use = 1
    assert m.sweep(100.0) == 0
    s.in_use = 0
    assert m.sweep(100.0) == 1


def test_max_active_sessions_refused_with_clear_error() -> None:
    m = StandardManager(max_inactive=10, max_active=2)
    m.create(0.0)
    m.create(0.0)
    with pytest.raises(SessionLimitExceeded, match="too many active sessions"):
        m.create(1.0)
    assert m.rejected_count == 1
    m.create(11.0)  # the sweep on refusal made room: the two old ones expired
    assert len(m) == 1


def test_change_id_keeps_attributes_and_forgets_old_id() -> None:
    m = StandardManager(route="node1")
    s = m.create(0.0)
    s.set_attribute("cart", [1, 2])
    old = s.id
    new = m.change_id(s, 1.0)
    assert new != old and new.endswith(".node1")
    assert m.find(old, 1.0) is None
    assert m.find(new, 1.0) is s and s.get_attribute("cart") == [1, 2]


def test_unknown_id_is_not_found() -> None:
    m = StandardManager(route="node1")
    assert m.find("4DD0340CE6294FF2BBE802CD4CD039EC.node1", 0.0) is None


class Recorder(SessionListener):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def session_created(self, session: Session) -> None:
        self.events.append(("created",))

    def session_destroyed(self, session: Session) -> None:
        self.events.append(("destroyed", session.get_attribute("a")))

    def attribute_added(self, session: Session, name: str, value: Any) -> None:
        self.events.append(("added", name, value))

    def attribute_replaced(self, session: Session, name: str, old_value: Any) -> None:
        self.events.append(("replaced", name, old_value))

    def attribute_removed(self, session: Session, name: str, old_value: Any) -> None:
        self.events.append(("removed", name, old_value))

    def session_id_changed(self, session: Session, old_id: str) -> None:
        self.events.append(("id", old_id))


def test_listeners_see_the_lifecycle() -> None:
    m = StandardManager(max_inactive=5)
    rec = Recorder()
    m.events.add(rec)
    s = m.create(0.0)
    s.set_attribute("a", 1)
    s.set_attribute("a", 2)
    old = s.id
    m.change_id(s, 0.0)
    m.sweep(10.0)
    assert rec.events == [("created",), ("added", "a", 1), ("replaced", "a", 1), ("id", old),
                          ("destroyed", 2)]


def test_invalidate_then_expire_at_request_end() -> None:
    m = StandardManager()
    s = m.create(0.0)
    s.invalidate()
    with pytest.raises(IllegalStateError):
        s.set_attribute("x", 1)
    asyncio.run(m.end_request(s, 1.0, INFO))
    assert len(m) == 0


def test_dirty_tracking_and_commit() -> None:
    m = StandardManager()
    s = m.create(0.0)
    s.set_attribute("a", 1)
    s.remove_attribute("a")
    s.set_max_inactive_interval(99)
    assert s.dirty == {"a"} and s.dirty_meta == {"max_inactive"} and s.is_new
    asyncio.run(m.end_request(s, 0.0, INFO))
    assert not s.is_dirty and not s.is_new


def test_set_none_removes() -> None:
    s = StandardManager().create(0.0)
    s.set_attribute("a", 1)
    s.set_attribute("a", None)
    assert "a" not in s and s.get_attribute_names() == []


def test_save_on_stop_and_reload_on_start_drops_expired(tmp_path: Path) -> None:
    f = tmp_path / "sessions.msgpack"
    m1 = StandardManager(route="node1", max_inactive=100, save_file=f)
    keep = m1.create(0.0)
    keep.set_attribute("user", "alice")
    keep.access(90.0)
    old = m1.create(0.0)
    short = m1.create(0.0)
    short.set_max_inactive_interval(10_000)
    asyncio.run(m1.stop(95.0))
    assert f.exists()

    m2 = StandardManager(route="node1", max_inactive=100, save_file=f)
    asyncio.run(m2.start(150.0))       # `old` has been idle 150 s > 100 s: dropped
    assert not f.exists()              # read once, like Tomcat's SESSIONS.ser
    got = m2.find(keep.id, 150.0)
    assert got is not None and got.get_attribute("user") == "alice" and not got.is_new
    assert m2.find(old.id, 150.0) is None
    assert m2.find(short.id, 150.0) is not None and len(m2) == 2


def test_reload_of_a_corrupt_file_starts_empty(tmp_path: Path) -> None:
    f = tmp_path / "sessions.msgpack"
    f.write_bytes(b"\x93garbage")
    m = StandardManager(save_file=f)
    asyncio.run(m.start(0.0))
    assert len(m) == 0


def test_apply_attribute_is_clean_and_silent() -> None:
    m = StandardManager(distributable=True)
    rec = Recorder()
    m.events.add(rec)
    s = m.create(0.0)
    s.apply_attribute("replicated", 1)
    s.apply_removal("replicated")
    s.apply_attribute("x", 2)
    assert not s.is_dirty and s.attribute_map == {"x": 2} and rec.events == [("created",)]
