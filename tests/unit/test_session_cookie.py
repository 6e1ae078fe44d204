"""Cookie-held sessions: sealed with AES-GCM, tamper → fresh empty session, 4 KB refusal,
key rotation, expiry, context binding."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from pysession.binding import CookieSettings, SessionBinding
from pysession.cookie_manager import CookieManager, SessionTooLarge
from pysession.manager import RequestInfo
from pysession.session import NotSerializableError

K1, K2 = os.urandom(32), os.urandom(16)
INFO = RequestInfo()


def cycle(m: CookieManager, presented: str | None, now: float = 0.0,
          action=lambda s: None):
    """One request through the binding; returns (session, Set-Cookie header)."""
    async def go():
        b = SessionBinding(m, CookieSettings(m.cookie_name), lambda: now, INFO, presented)
        await b.begin()
        s = b.get(True)
        assert s is not None
        action(s)
        s.notes["was_new"] = s.is_new  # is_new is cleared by the commit at end
        return s, await b.end()
    return asyncio.run(go())


def value_of(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]


def test_round_trip_through_the_cookie() -> None:
    m = CookieManager([K1], route="node1")
    s1, h1 = cycle(m, None, 0.0, lambda s: s.set_attribute("user", "alice"))
    assert h1.startswith("PYSESSION=") and "HttpOnly" in h1
    assert "alice" not in h1                       # encrypted, not just signed
    s2, _ = cycle(m, value_of(h1), 5.0)
    assert s2.id == s1.id and s2.get_attribute("user") == "alice"
    assert not s2.notes["was_new"]
    assert len(m) == 0                              # nothing held server-side


@pytest.mark.parametrize("mangle", [
    lambda v: v[:-2] + ("A" if v[-2] != "A" else "B") + v[-1],  # flipped ciphertext bit
    lambda v: v[:10],                                          # truncated
    lambda v: "garbage!!",                                     # not base64
    lambda v: base64.urlsafe_b64encode(b"\x01\x00" + b"\x00" * 40).decode(),
])
def test_tampered_cookie_gives_fresh_empty_session(mangle) -> None:
    m = CookieManager([K1])
    s1, h1 = cycle(m, None, 0.0, lambda s: s.set_attribute("role", "user"))
    s2, _ = cycle(m, mangle(value_of(h1)), 1.0)
    assert s2.notes["was_new"] and s2.id != s1.id and s2.attributes == {}
    assert m.tampered_count == 1


def test_key_rotation_old_cookies_still_open_new_ones_use_new_key() -> None:
    old = CookieManager([K1])
    _, h = cycle(old, None, 0.0, lambda s: s.set_attribute("n", 1))
    rotated = CookieManager([K2, K1])
    s, h2 = cycle(rotated, value_of(h), 1.0)
    assert s.get_attribute("n") == 1
    assert CookieManager([K2]).open(value_of(h2), 2.0) is not None  # resealed with K2
    assert CookieManager([K2]).open(value_of(h), 2.0) is None       # K1 retired


def test_cookie_of_another_context_does_not_open() -> None:
    a = CookieManager([K1], context_path="/a")
    b = CookieManager([K1], context_path="/b")
    _, h = cycle(a, None)
    assert b.open(value_of(h), 0.0) is None


def test_expired_cookie_session_is_not_adopted() -> None:
    m = CookieManager([K1], max_inactive=60)
    s1, h = cycle(m, None, 0.0)
    s2, _ = cycle(m, value_of(h), 61.0)
    assert s2.notes["was_new"] and s2.id != s1.id


def test_over_4k_is_refused_at_set_time_with_clear_error() -> None:
    m = CookieManager([K1])
    s = m.create(0.0)
    s.set_attribute("small", "x" * 1000)
    with pytest.raises(SessionTooLarge, match="over the 4096-byte limit"):
        s.set_attribute("big", "x" * 3500)
    assert "big" not in s and s.get_attribute("small") == "x" * 1000


def test_mutation_without_set_is_refused_at_commit() -> None:
    m = CookieManager([K1])

    def grow(s) -> None:
        s.set_attribute("items", [])
        s.get_attribute("items").extend(["y" * 100] * 50)   # bypasses set_attribute
    with pytest.raises(SessionTooLarge):
        cycle(m, None, 0.0, grow)


def test_cookie_sessions_enforce_the_type_policy() -> None:
    s = CookieManager([K1]).create(0.0)
    with pytest.raises(NotSerializableError):
        s.set_attribute("o", object())


def test_invalidate_deletes_the_cookie() -> None:
    m = CookieManager([K1])
    _, h = cycle(m, None)
    _, h2 = cycle(m, value_of(h), 1.0, lambda s: s.invalidate())
    assert h2 is not None and h2.startswith("PYSESSION=;") and "Max-Age=0" in h2


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        CookieManager([b"short"])
    with pytest.raises(ValueError):
        CookieManager([])
