"""`[context.manager]` tables for the memcached and redis managers: built through the registry,
bad values answered as `file:line: message (near 'token')`."""

from __future__ import annotations

import asyncio

import pytest

from pycommon.config import ConfigError, TomlSource
from pysession.manager import Manager
from pysession.managers.memcached import MemcachedSessionManager
from pysession.managers.redis import RedisSessionManager
from pysession.options import ManagerEnv, Options
from pysession.registry import build_manager


def build(body: str) -> Manager:
    src = TomlSource.parse(f'[[context]]\npath = "/"\n[context.manager]\n{body}', "node.toml")
    opts = Options(src.data["context"][0]["manager"], src, "context.manager", 0)
    m = build_manager(opts, ManagerEnv(route="node1", max_inactive=600, distributable=True))
    return m


def close(m: Manager) -> None:
    asyncio.run(m.stop(0))


def test_memcached_table_as_seed_003() -> None:
    m = build('type = "memcached"\nmemcached_nodes = "n1:10.0.0.9:11211,n2:10.0.0.10:11211"\n'
              'failover_nodes = "n1"\n'
              "request_uri_ignore_pattern = '.*\\.(ico|png|gif|jpg|css|js)$'\n"
              'sticky = false\nlock_mode = "uriPattern:/api/.*"\n')
    try:
        assert isinstance(m, MemcachedSessionManager)
        assert m.ring.regular == ["n2"] and m.ring.failover == ["n1"]
        assert not m.sticky and m.lock.mode == "uriPattern" and m.route == "node1"
        assert m.ignore is not None and m.ignore.match("/img/a.png")
        assert m.new_id().endswith("-n2.node1")
    finally:
        close(m)


@pytest.mark.parametrize("body, message, line", [
    ('memcached_nodes = "n1:host"', "bad memcached node 'n1:host'", 5),
    ('memcached_nodes = "n1:h:1"\nfailover_nodes = "n9"', "'n9' is not a memcached node", 6),
    ('memcached_nodes = "n1:h:1"\nlock_mode = "sometimes"', "lock_mode: expected", 6),
    ('memcached_nodes = "n1:h:1"\nstickyy = true', "unknown memcached manager option", 6),
    ('failover_nodes = "n1"', "memcached_nodes is required", 0),
])
def test_memcached_table_errors(body: str, message: str, line: int) -> None:
    with pytest.raises(ConfigError) as e:
        build('type = "memcached"\n' + body)
    text = str(e.value)
    assert message in text and "node.toml" in text, text
    if line:
        assert f"node.toml:{line}:" in text, text


def test_redis_table_as_seed_004() -> None:
    m = build('type = "redis"\nhost = "192.168.50.140"\nport = 6379\ndatabase = 0\n'
              'save_policy = "always"\nconcurrency = "lock"\n')
    try:
        assert isinstance(m, RedisSessionManager)
        assert m.save_policy == "always" and m.concurrency == "lock"
        assert m.store.label == "redis 192.168.50.140:6379/0" and m.max_inactive == 600
    finally:
        close(m)


@pytest.mark.parametrize("body, message", [
    ('mode = "sentinel"', "needs sentinels"),
    ('mode = "cluster"', "needs cluster_nodes"),
    ('mode = "sentinel"\nsentinels = ["nohost"]', "sentinels: expected host:port"),
    ('save_policy = "sometimes"', "save_policy: expected one of"),
    ('port = "x"', "port: expected an integer"),
])
def test_redis_table_errors(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        build('type = "redis"\n' + body)
    assert message in str(e.value) and "node.toml:" in str(e.value), str(e.value)
