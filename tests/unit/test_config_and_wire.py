"""Config errors name file, line and token; msgpack policy refuses what it does not know."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgpack
import pytest

from pycommon.config import ConfigError, TomlSource, parse_hostport
from pycommon.lifecycle import parse_ready_line
from pycommon.wire import TypeNotAllowed, TypePolicy, WireError, packb, unpackb
from pylb import config as lbconfig

GOOD = """
[server]
listen = ["127.0.0.1:8080"]
upstream = "app"

[upstream.app]
members = [
  { name = "node1", address = "127.0.0.1:8081", weight = 2 },
  { name = "node2", address = "127.0.0.1:8082" },
]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "lb.toml"
    p.write_text(text)
    return p


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = lbconfig.load(write(tmp_path, GOOD))
    assert [m.weight for m in cfg.upstreams["app"].members] == [2, 1]
    assert cfg.server.listen == [("127.0.0.1", 8080)]


@pytest.mark.parametrize("old,new,line,needle", [
    ('weight = 2', 'weight = "heavy"', 8, "weight"),
    ('upstream = "app"', 'upstream = "nope"', 4, "unknown upstream 'nope'"),
    ('listen = ["127.0.0.1:8080"]', 'listen = ["127.0.0.1:99999"]', 3, "bad port"),
    ('[server]', '[server]\nlisten_typo = 1', 3, "unknown key 'listen_typo'"),
    ('members = [', 'balance = "fastest"\nmembers = [', 7, "unknown balance method"),
    ('{ name = "node2"', '{ name = "node2" ,,', 9, "invalid TOML"),
])
def test_bad_config_names_file_line_token(tmp_path: Path, old: str, new: str, line: int,
                                          needle: str) -> None:
    p = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as exc:
        lbconfig.load(p)
    text = str(exc.value)
    assert text.startswith(f"{p}:{line}: "), text
    assert needle in text


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        lbconfig.load(tmp_path / "absent.toml")


def test_toml_source_finds_keys_in_tables() -> None:
    src = TomlSource.parse("[a]\nx = 1\n[b]\nx = 2\n", "f.toml")
    assert src.line_of("x", "a") == 2 and src.line_of("x", "b") == 4


def test_hostport_forms() -> None:
    assert parse_hostport("8080") == ("127.0.0.1", 8080)
    assert parse_hostport("[::1]:81") == ("::1", 81)
    with pytest.raises(ValueError):
        parse_hostport("host:port")


def test_ready_line_round_trip() -> None:
    assert parse_ready_line("READY pylb 127.0.0.1:8080 admin=127.0.0.1:9") == (
        "pylb", "127.0.0.1", 8080, {"admin": "127.0.0.1:9"})
    assert parse_ready_line("2024 INFO something") is None


def test_wire_allows_the_policy_types() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    value = {"s": "x", "i": 1, "f": 1.5, "b": True, "n": None, "raw": b"\x00",
             "l": [1, [2]], "d": {"k": when}}
    assert unpackb(packb(value)) == value


def test_wire_refuses_unknown_types_both_ways() -> None:
    with pytest.raises(TypeNotAllowed):
        packb({"x": object()})
    with pytest.raises(TypeNotAllowed):
        packb({1, 2})
    evil = msgpack.packb(msgpack.ExtType(42, b"payload"))
    with pytest.raises(WireError):
        unpackb(evil)
    with pytest.raises(WireError):
        unpackb(b"\xc1garbage")


def test_wire_registered_type() -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    policy = TypePolicy()
    policy.register(Point, 7, lambda p: p.x.to_bytes(2, "big"),
                    lambda b: Point(int.from_bytes(b, "big")))
    assert policy.unpackb(policy.packb([Point(513)]))[0].x == 513
