"""Properties over generated data: any policy-typed session survives the serialiser and the
cookie seal, and no byte string (random or a corrupted cookie) ever opens as a session."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pysession.cookie_manager import CookieManager
from pysession.serializer import SessionSerializer
from pysession.session import Session

KEY = os.urandom(32)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20),
    st.datetimes(min_value=dt.datetime(1970, 1, 2), timezones=st.just(dt.UTC)))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
attributes = st.dictionaries(st.text(min_size=1, max_size=12), values, max_size=6)


def session_with(attrs: dict[str, Any]) -> Session:
    s = Session("0123456789ABCDEF0123456789ABCDEF.n1", 1000.0, 600, distributable=True)
    for k, v in attrs.items():
        s.set_attribute(k, v)
    return s


@settings(max_examples=60, deadline=None)
@given(attributes)
def test_serialiser_round_trips_everything_the_policy_allows(attrs: dict[str, Any]) -> None:
    s = session_with(attrs)
    back = SessionSerializer().loads(SessionSerializer().dumps(s), distributable=True)
    assert back.attributes == s.attributes and back.id == s.id


@settings(max_examples=40, deadline=None)
@given(attributes)
def test_cookie_seal_round_trips(attrs: dict[str, Any]) -> None:
    m = CookieManager([KEY])
    s = session_with(attrs)
    plain = m.policy.packb(m.serializer.session_dict(s))
    back = m.open(m.sealer.seal(plain), 1001.0)
    assert back is not None and back.attributes == s.attributes


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_random_cookie_values_never_open(value: str) -> None:
    assert CookieManager([KEY]).open(value, 0.0) is None


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_single_byte_corruption_is_detected(pos: int, flip: int) -> None:
    import base64
    m = CookieManager([KEY])
    sealed = m.sealer.seal(b"payload" * 5)
    raw = bytearray(base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4)))
    raw[pos % len(raw)] ^= flip
    mangled = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert m.sealer.open(mangled) is None
