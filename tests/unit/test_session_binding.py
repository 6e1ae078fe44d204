"""The request cycle shared by pynode and the aiohttp middleware: unknown ids never adopted,
fixation protection, invalidate-and-recreate, cookie attributes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pysession.binding import CookieSettings, SessionBinding
from pysession.manager import RequestInfo, StandardManager
from pysession.session import Session

COOKIE = CookieSettings("JSESSIONID", "/shop")


def request(m: StandardManager, presented: str | None, now: float = 0.0,
            action: Callable[[SessionBinding], Any] = lambda b: b.get(True)
            ) -> tuple[Session | None, str | None]:
    async def go() -> tuple[Session | None, str | None]:
        b = SessionBinding(m, COOKIE, lambda: now, RequestInfo(), presented)
        await b.begin()
        action(b)
        s = b.session
        if s is not None:
            s.notes["was_new"] = s.is_new  # is_new is cleared by the commit at end
        return s, await b.end()
    return asyncio.run(go())


def test_new_session_cookie_attributes() -> None:
    m = StandardManager(route="node1")
    s, h = request(m, None)
    assert s is not None and h == f"JSESSIONID={s.id}; Path=/shop; HttpOnly"
    secure = CookieSettings("JSESSIONID", "/", secure=True, same_site="Strict")
    from pysession.manager import SetCookie
    assert secure.header(SetCookie("X")) == "JSESSIONID=X; Path=/; Secure; HttpOnly; " \
                                            "SameSite=Strict"
    with pytest.raises(ValueError):
        CookieSettings(same_site="Sometimes")


def test_known_session_no_cookie_again() -> None:
    m = StandardManager(route="node1")
    s, _ = request(m, None)
    assert s is not None
    s2, h = request(m, s.id, 1.0)
    assert s2 is s and h is None and s.this_accessed == 1.0


@pytest.mark.parametrize("forged", ["4DD0340CE6294FF2BBE802CD4CD039EC.node1",
                                    "attacker-chosen", "4DD0340CE6294FF2BBE802CD4CD039EC"])
def test_unknown_or_forged_id_is_never_adopted(forged: str) -> None:
    m = StandardManager(route="node1")
    s, h = request(m, forged)
    assert s is not None and s.id != forged and s.notes["was_new"]
    assert h is not None and h.startswith(f"JSESSIONID={s.id};")
    assert m.find(forged, 0.0) is None


def test_fixation_protection_change_id_at_login() -> None:
    m = StandardManager(route="node1")
    s, _ = request(m, None)
    assert s is not None
    before = s.id

    def login(b: SessionBinding) -> None:
        b.get(True).set_attribute("user", "alice")  # type: ignore[union-attr]
        b.change_id()
    s2, h = request(m, before, 1.0, login)
    assert s2 is s and s.id != before and h is not None and h.startswith(f"JSESSIONID={s.id}")
    assert m.find(before, 1.0) is None                  # the attacker's id is worthless
    s3, _ = request(m, before, 2.0)
    assert s3 is not None and s3.get_attribute("user") is None


def test_invalidate_then_recreate_in_one_request() -> None:
    m = StandardManager()
    s, _ = request(m, None)
    assert s is not None
    old = s.id

    def relogin(b: SessionBinding) -> None:
        b.get(True).invalidate()  # type: ignore[union-attr]
        b.get(True).set_attribute("fresh", 1)  # type: ignore[union-attr]
    s2, h = request(m, old, 1.0, relogin)
    assert s2 is not None and s2.id != old and s2.get_attribute("fresh") == 1
    assert m.find(old, 1.0) is None and len(m) == 1 and h is not None


def test_no_session_asked_no_session_made() -> None:
    m = StandardManager()
    s, h = request(m, None, action=lambda b: b.get(False))
    assert s is None and h is None and len(m) == 0


def test_in_use_is_balanced() -> None:
    m = StandardManager()
    s, _ = request(m, None)
    assert s is not None and s.in_use == 0
    request(m, s.id, 1.0)
    assert s.in_use == 0
