"""The store-backed managers in real pynodes, against real memcached x2 and redis: a session
survives kill -9 of its node, a dead memcached node's sessions move with their backup,
concurrent increments, TTLs, store outage and recovery.

The test plays the balancer: it sends each request to the node it chooses, carrying the
session cookie like a browser.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pylab.client import Browser, HttpResult
from pylab.supervisor import Supervisor
from pylab.topology import ProcessSpec
from pysession.stores.memcached import MemcachedStore
from tests.conftest import StartLab, make_lab
from tests.stores_fixtures import MEMCACHED, REDIS, kill_stores, memcached_spec, need, redis_spec

pytestmark = [pytest.mark.integration, pytest.mark.interop]

MSM = '''type = "memcached"
memcached_nodes = "n1:{m1.host}:{m1.port},n2:{m2.host}:{m2.port}"
node_retry = 0.5
'''
REDIS_MGR = '''type = "redis"
host = "{redis.host}"
port = {redis.port}
store_retry = 0.5
'''


@pytest.fixture
def start_lab(start_lab: StartLab) -> Iterator[StartLab]:
    """The shared fixture, plus a quick end for the scratch memcached / redis processes."""
    started: list[Supervisor] = []

    def start(*a: Any, **kw: Any) -> Supervisor:
        sup = start_lab(*a, **kw)
        started.append(sup)
        return sup

    yield start
    for sup in started:
        kill_stores(sup)


def node_spec(name: str, manager: str, after: list[str], timeout_min: int = 30) -> ProcessSpec:
    conf = (f'[[context]]\npath = "/"\nwebapp = "demo"\nsession_timeout = {timeout_min}\n'
            f"[context.manager]\n{manager}")
    return ProcessSpec(name, "pynode", ["--route", name, "--port", "{port}", "--config",
                                        "{file:node.toml}"],
                       files={"node.toml": conf}, after=after)


def msm_lab(start_lab: StartLab, extra: str = "", timeout_min: int = 30,
            extra2: str | None = None) -> Supervisor:
    need(MEMCACHED)
    stores = [memcached_spec("m1"), memcached_spec("m2")]
    nodes = [node_spec("node1", MSM + extra, ["m1", "m2"], timeout_min),
             node_spec("node2", MSM + (extra if extra2 is None else extra2), ["m1", "m2"],
                       timeout_min)]
    return start_lab(make_lab("msm", stores + nodes))


def redis_lab(start_lab: StartLab, extra: str = "", timeout_min: int = 30,
              extra2: str | None = None) -> Supervisor:
    need(REDIS)
    nodes = [node_spec("node1", REDIS_MGR + extra, ["redis"], timeout_min),
             node_spec("node2", REDIS_MGR + (extra if extra2 is None else extra2), ["redis"],
                       timeout_min)]
    return start_lab(make_lab("redis", [redis_spec("redis"), *nodes]))


def probe(sup: Supervisor, node: str) -> str:
    return sup.url(node, "/api/session")


def incr(b: Browser, sup: Supervisor, node: str) -> HttpResult:
    return b.post(probe(sup, node), {"incr": "n"})


def settle(sup: Supervisor, node: str) -> None:
    """Bounded wait until `node` has no sticky backup in flight."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        h = json.loads(Browser().get(sup.url(node, "/-/health")).body)
        if all(c.get("pending_backups", 0) == 0 for c in h["contexts"].values()):
            return
        time.sleep(0.01)
    raise AssertionError(f"{node} still has backups in flight")


@pytest.mark.parametrize("kind", ["memcached-sticky", "memcached-nonsticky", "redis"])
def test_session_survives_kill9_of_its_node(start_lab: StartLab, kind: str) -> None:
    if kind == "redis":
        sup = redis_lab(start_lab)
    else:
        sup = msm_lab(start_lab, "sticky = false\n" if kind.endswith("nonsticky") else "")
    b = Browser()
    values = [incr(b, sup, "node1").json()["value"] for _ in range(3)]
    sid = b.cookies["JSESSIONID"]
    assert values == [1, 2, 3] and sid.endswith(".node1")
    if kind == "memcached-sticky":
        settle(sup, "node1")
    sup.kill("node1")
    r = incr(b, sup, "node2")
    assert r.status == 200, r.body
    d = r.json()
    assert d["value"] == 4 and d["node"] == "node2"
    assert d["session_id"].split(".")[0] == sid.split(".")[0]
    if kind == "memcached-sticky":  # msm re-keys a session taken over by another Tomcat
        assert d["session_id"].endswith(".node2") and b.cookies["JSESSIONID"] == d["session_id"]
    else:
        assert d["session_id"] == sid


@pytest.mark.parametrize("mode", ["sticky", "nonsticky"])
def test_dead_memcached_node_relocates_sessions(start_lab: StartLab, mode: str) -> None:
    sup = msm_lab(start_lab, "sticky = false\n" if mode == "nonsticky" else "")
    browsers = []
    for _ in range(6):
        b = Browser()
        incr(b, sup, "node1")
        incr(b, sup, "node1")
        browsers.append(b)
    on_n1 = [b for b in browsers if "-n1." in b.cookies["JSESSIONID"]]
    assert on_n1 and len(on_n1) < 6  # round robin over n1 and n2
    settle(sup, "node1")
    sup.kill("m1")  # memcached node n1 dies
    # non-sticky: node2 holds nothing in memory; the session comes from its bak: copy on n2.
    # sticky: node1 holds it and writes it to n2 from the first request that notices.
    target = "node2" if mode == "nonsticky" else "node1"
    for b in on_n1:
        old = b.cookies["JSESSIONID"]
        vals = [incr(b, sup, target).json()["value"]]
        settle(sup, target)  # sticky: the failed backup is what tells the node n1 is dead
        vals.append(incr(b, sup, target).json()["value"])
        assert vals == [3, 4], vals
        new = b.cookies["JSESSIONID"]
        assert new == old.replace("-n1.", "-n2."), (old, new)  # cookie re-issued
    for b in browsers:  # every session still answers with its count, on either node
        settle(sup, "node1")
        r = incr(b, sup, "node1")
        assert r.json()["value"] in (3, 5)
        assert "-n2." in b.cookies["JSESSIONID"]


class Client(threading.Thread):
    """A keep-alive client doing `count` increments, alternating nodes (no stickiness)."""

    def __init__(self, sup: Supervisor, sid: str, count: int, retry: bool) -> None:
        super().__init__(daemon=True)
        self.addrs = [sup.address("node1"), sup.address("node2")]
        self.sid = sid
        self.count = count
        self.retry = retry
        self.acked = 0
        self.refused = 0
        self.statuses: set[int] = set()
        self.error: BaseException | None = None

    def run(self) -> None:
        conns = [http.client.HTTPConnection(h, p, timeout=10) for h, p in self.addrs]
        body = json.dumps({"incr": "n"})
        headers = {"Cookie": f"JSESSIONID={self.sid}", "Content-Type": "application/json"}
        try:
            i = 0
            deadline = time.monotonic() + 60
            while self.acked < self.count and time.monotonic() < deadline:
                c = conns[i % 2]
                i += 1
                c.request("POST", "/api/session", body=body, headers=headers)
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    self.acked += 1
                else:
                    self.refused += 1
                    self.statuses.add(r.status)
                    if not self.retry:
                        self.count -= 1
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            for c in conns:
                c.close()


def hammer(sup: Supervisor, clients: int = 8, each: int = 200, retry: bool = True
           ) -> dict[str, Any]:
    b = Browser()
    incr(b, sup, "node1")
    sid = b.cookies["JSESSIONID"]
    threads = [Client(sup, sid, each, retry) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.error for t in threads), [t.error for t in threads if t.error]
    final = incr(b, sup, "node2").json()["value"] - 1
    acked = 1 + sum(t.acked for t in threads)
    return {"final": final, "acked": acked, "refused": sum(t.refused for t in threads),
            "lost": acked - final, "statuses": sorted(set().union(*(t.statuses for t in threads)))}


@pytest.mark.parametrize("kind", ["memcached-lock-all", "redis-lock", "redis-optimistic"])
def test_concurrent_increments_lose_nothing(start_lab: StartLab, kind: str,
                                            record_property: Any) -> None:
    if kind == "memcached-lock-all":
        sup = msm_lab(start_lab, 'sticky = false\nlock_mode = "all"\nlock_wait = 10\n')
    elif kind == "redis-lock":
        sup = redis_lab(start_lab, 'concurrency = "lock"\nlock_wait = 10\n')
    else:
        sup = redis_lab(start_lab, 'concurrency = "optimistic"\n')
    res = hammer(sup)
    record_property("result", res)
    print(f"\n{kind}: {res}")
    assert res["lost"] == 0, res
    assert res["final"] == res["acked"]
    if kind != "redis-optimistic":
        assert res["final"] == 1601 and res["refused"] == 0
    else:  # refused (409 Conflict) requests were retried by the clients: all 1600 landed
        assert res["final"] == 1601 and set(res["statuses"]) <= {409}


@pytest.mark.parametrize("kind", ["memcached-nonsticky-lock-none", "redis-none"])
def test_concurrent_increments_without_locking_measured(start_lab: StartLab, kind: str,
                                                        record_property: Any) -> None:
    """The baseline the anchors give: last write wins. Measured, not asserted."""
    if kind.startswith("memcached"):
        sup = msm_lab(start_lab, 'sticky = false\nlock_mode = "none"\n')
    else:
        sup = redis_lab(start_lab, 'concurrency = "none"\n')
    res = hammer(sup, 8, 100)
    record_property("result", res)
    print(f"\n{kind}: {res} ({100 * res['lost'] / res['acked']:.0f} % of acknowledged "
          "increments lost)")
    assert res["final"] <= res["acked"]


def test_redis_ttl_is_the_timeout_and_moves(start_lab: StartLab) -> None:
    import asyncio

    from pysession.stores.redis import RedisSettings, RedisStore

    sup = redis_lab(start_lab, timeout_min=2)
    b = Browser()
    incr(b, sup, "node1")
    sid = b.cookies["JSESSIONID"]
    h, p = sup.address("redis")

    async def ttl(shorten: bool = False) -> float:
        st = RedisStore.connect(RedisSettings(host=h, port=p))
        try:
            if shorten:
                await st.client.pexpire(st.key(sid), 5_000)
            return await st.ttl_of(sid) or 0.0
        finally:
            await st.close()

    assert 119 <= asyncio.run(ttl()) <= 120
    assert asyncio.run(ttl(shorten=True)) <= 5
    r = b.get(probe(sup, "node2"))  # a read-only request on the other node
    assert r.json()["attributes"] == {"n": 1}
    assert 119 <= asyncio.run(ttl()) <= 120


def test_memcached_item_expiry_sticky_and_nonsticky(start_lab: StartLab) -> None:
    import asyncio

    sup = msm_lab(start_lab, timeout_min=2)
    b = Browser()
    incr(b, sup, "node1")
    settle(sup, "node1")
    sid = b.cookies["JSESSIONID"]
    node = sid.split("-")[1].split(".")[0]
    h, p = sup.address("m1" if node == "n1" else "m2")

    async def ttl() -> float | None:
        st = MemcachedStore(h, p)
        try:
            return await st.ttl_of(sid)
        finally:
            await st.close()

    assert 115 <= (asyncio.run(ttl()) or 0) <= 120  # sticky: max-inactive


@pytest.mark.parametrize("kind", ["memcached", "redis"])
def test_store_outage_keeps_serving_and_recovers(start_lab: StartLab, kind: str) -> None:
    closed = "fail_closed = true\n"
    if kind == "memcached":
        sup = msm_lab(start_lab, "sticky = false\n", extra2="sticky = false\n" + closed)
        stores = ["m1", "m2"]
    else:
        sup = redis_lab(start_lab, "", extra2=closed)
        stores = ["redis"]
    b = Browser()
    assert incr(b, sup, "node1").json()["value"] == 1
    for s in stores:
        sup.kill(s)
    vals = [incr(b, sup, "node1") for _ in range(3)]
    assert [r.status for r in vals] == [200] * 3
    assert [r.json()["value"] for r in vals] == [2, 3, 4]  # served from node1's memory
    r = incr(b, sup, "node2")
    assert r.status == 503, (r.status, r.body)  # fail_closed
    log = sup.tail("node1", 200)
    assert log.count("is down") <= len(stores), log  # logged once per store, not per request
    for s in stores:
        sup.start(s)
    deadline = time.monotonic() + 10
    while True:  # recovers once the store answers again (bounded)
        r = incr(b, sup, "node1")
        r2 = Browser()
        r2.cookies = dict(b.cookies)
        got = r2.get(probe(sup, "node2"))
        if got.status == 200 and got.json()["attributes"].get("n") == r.json()["value"]:
            break
        assert time.monotonic() < deadline, (r.body, got.status, got.body)
        time.sleep(0.1)
    assert r.json()["value"] >= 5
