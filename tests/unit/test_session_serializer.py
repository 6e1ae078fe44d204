"""The type policy: what a distributable session accepts, what the bytes look like, and that
nothing but the policy's types ever comes back out (no pickle)."""

from __future__ import annotations

import datetime as dt
import decimal
import pickle
from dataclasses import dataclass

import msgpack
import pytest

from pycommon.wire import TypePolicy, WireError
from pysession.serializer import SessionSerializer
from pysession.session import NotSerializableError, Session


@dataclass
class Money:
    cents: int


def money_policy() -> TypePolicy:
    p = TypePolicy()
    p.register(Money, 10, lambda m: m.cents.to_bytes(8, "big", signed=True),
               lambda b: Money(int.from_bytes(b, "big", signed=True)))
    return p


ALLOWED = ["s", 1, 1.5, True, None, b"\x00\xff", [1, "a"], {"k": [1, {"x": b"y"}]},
           dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)]


@pytest.mark.parametrize("value", ALLOWED[:4] + ALLOWED[5:])
def test_distributable_accepts_policy_types_and_round_trips(value: object) -> None:
    ser = SessionSerializer()
    s = Session("A" * 32, 0.0, distributable=True)
    s.set_attribute("v", value)
    back = ser.loads(ser.dumps(s), distributable=True)
    assert back.get_attribute("v") == value and back.id == s.id


@pytest.mark.parametrize("value", [object(), {1, 2}, decimal.Decimal("1.5"), Money(5),
                                   [1, object()], {"k": frozenset()}])
def test_distributable_refuses_other_types_at_set_time(value: object) -> None:
    s = Session("A" * 32, 0.0, distributable=True)
    with pytest.raises(NotSerializableError, match="Non-serializable attribute 'v'"):
        s.set_attribute("v", value)
    assert "v" not in s


def test_registered_type_is_allowed_and_round_trips() -> None:
    p = money_policy()
    ser = SessionSerializer(p)
    s = Session("A" * 32, 0.0, distributable=True, policy=p)
    s.set_attribute("price", Money(1999))
    assert ser.loads(ser.dumps(s), True).get_attribute("price") == Money(1999)
    # a policy without the registration refuses the ext code when decoding
    with pytest.raises(WireError, match="unknown ext type 10"):
        SessionSerializer().loads(ser.dumps(s))


def test_non_distributable_keeps_anything_but_saves_only_policy_types() -> None:
    s = Session("A" * 32, 0.0, distributable=False)
    s.set_attribute("lock", object())
    s.set_attribute("name", "alice")
    back = SessionSerializer().loads(SessionSerializer().dumps(s))
    assert back.attributes == {"name": "alice"}


def test_pickle_and_garbage_are_refused() -> None:
    ser = SessionSerializer()
    for data in (pickle.dumps({"v": 1}), b"", b"\xc1", msgpack.packb([1, 2]),
                 msgpack.packb({"v": 99, "id": "x"})):
        with pytest.raises(WireError):
            ser.loads(data)


def test_many_round_trip() -> None:
    ser = SessionSerializer()
    ss = [Session(f"{i:032X}", float(i), distributable=True) for i in range(3)]
    ss[1].set_attribute("n", 7)
    back = ser.loads_many(ser.dumps_many(ss))
    assert [b.id for b in back] == [s.id for s in ss] and back[1].get_attribute("n") == 7
