"""Real memcached / redis processes for the store tests, started through the pylab supervisor.

Bind the fixtures you need in a test module:

    from tests import stores_fixtures
    memcached_pair = stores_fixtures.memcached_pair

`memcached_spec` / `redis_spec` give the ProcessSpec alone, to put a store beside pynodes in one
ad-hoc lab (`make_lab("x", [memcached_spec("m1"), ..., pynode specs])`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pylab.supervisor import Supervisor
from pylab.topology import ProcessSpec
from pysession.binding import CookieSettings, SessionBinding
from pysession.manager import Manager, RequestInfo
from pysession.session import Session
from tests.conftest import make_lab

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def memcached_spec(name: str) -> ProcessSpec:
    """memcached on a free port of 127.0.0.1, 64 MB; `-u` because root may run the tests."""
    args = [MEMCACHED, "-l", "{host}", "-p", "{port}", "-U", "0", "-m", "64", "-t", "2"]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    return ProcessSpec(name, "command", args, ready="tcp", ready_timeout=10)


def redis_spec(name: str) -> ProcessSpec:
    """redis-server on a free port, no persistence (tests own their data)."""
    return ProcessSpec(name, "command", [
        REDIS, "--port", "{port}", "--bind", "{host}", "--save", "", "--appendonly", "no",
        "--protected-mode", "no", "--dir", "{rundir}"], ready="tcp", ready_timeout=10)


def need(binary: str) -> None:
    if not os.path.exists(binary):
        pytest.skip(f"{binary} is not installed (./run test installs it)")


@dataclass
class Stores:
    """A running set of store processes and where they listen."""

    sup: Supervisor

    def addr(self, name: str) -> tuple[str, int]:
        return self.sup.address(name)

    def nodes_option(self, *names: str) -> str:
        """msm's `memcached_nodes` string: `m1:127.0.0.1:11211,m2:...` (ids = process names)."""
        return ",".join(f"{n}:{h}:{p}" for n in names for h, p in [self.addr(n)])


StartLab = Callable[..., Supervisor]


def kill_stores(sup: Supervisor) -> None:
    """memcached takes ~0.7 s to stop on SIGTERM; a test's scratch cache can just be killed."""
    for name, st in sup.procs.items():
        if st.kind == "command" and sup.is_alive(name):
            sup.kill(name)


@pytest.fixture
def memcached_pair(start_lab: StartLab) -> Iterator[Stores]:
    """Two memcached processes, `n1` and `n2` (msm's node ids)."""
    need(MEMCACHED)
    sup = start_lab(make_lab("memcached-pair", [memcached_spec("n1"), memcached_spec("n2")]))
    yield Stores(sup)
    kill_stores(sup)


@pytest.fixture
def redis_server(start_lab: StartLab) -> Stores:
    """One redis-server named `redis`."""
    need(REDIS)
    return Stores(start_lab(make_lab("redis", [redis_spec("redis")])))


async def request(mgr: Manager, sid: str | None, fn: Callable[[Session], Any] | None = None,
                  path: str = "/api/session", method: str = "POST", at: float | None = None
                  ) -> tuple[Session, str | None]:
    """One request's session cycle in-process, as pynode drives it: (session, Set-Cookie).
    `at`: the manager's clock for this request (default: now)."""
    clock: Callable[[], float] = time.time if at is None else (lambda: at)
    b = SessionBinding(mgr, CookieSettings(), clock, RequestInfo(method, path, "127.0.0.1"),
                       sid)
    await b.begin()
    s = b.get(create=True)
    assert s is not None
    if fn is not None:
        fn(s)
    return s, await b.end()


def incr(s: Session) -> None:
    s.set_attribute("n", (s.get_attribute("n") or 0) + 1)
