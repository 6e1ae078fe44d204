"""`python -m benchmarks stores`: session-writing requests on one pynode per session store.

Each case starts its own stores (memcached / redis-server) and one pynode whose `/` context
uses the manager under test, then runs wrk (one thread, 32 keep-alive connections) with a
Lua script that cycles through 64 pre-made sessions, each request a POST /api/session
`{"incr": "n"}` carrying that session's cookie (64 sessions > 32 connections: requests on one
session rarely overlap, as with real users):

* `memory`              — StandardManager (the baseline: no store);
* `memcached_sticky`    — msm sticky mode, backup async (one `set` per changed request);
* `memcached_nonsticky` — msm non-sticky, lock_mode none (msm's default): load + store +
  `bak:` copy on the other node;
* `redis`               — hash per session, changed fields + TTL in one Lua call, optimistic.

Besides rps / p50 / p99, each case reports `round_trips_per_request` (store calls counted by
the manager, read from the node's /-/health) and `overhead_us` = 1e6/rps - 1e6/rps(memory):
the extra time per request the store path costs at saturation on this machine.

`concurrent_increments_8x200`: 8 client threads x 200 increments on ONE session, each client
alternating two pynodes (no stickiness), refused requests not retried: how many acknowledged
increments the session really holds, per concurrency mode (`lost` = acknowledged - held).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.load import BenchError, wrk_run
from pylab.supervisor import Supervisor
from pylab.topology import Lab, ProcessSpec

SESSIONS = 64

CYCLE_LUA = """
local cookies = {%s}
local i = 0
wrk.method = "POST"
wrk.body = '{"incr": "n"}'
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #cookies + 1
  wrk.headers["Cookie"] = "JSESSIONID=" .. cookies[i]
  return wrk.format()
end
"""

MSM = '''type = "memcached"
memcached_nodes = "n1:{m1.host}:{m1.port},n2:{m2.host}:{m2.port}"
'''
CASES: dict[str, tuple[list[str], str]] = {
    "memory": ([], 'type = "standard"\n'),
    "memcached_sticky": (["m1", "m2"], MSM + "sticky = true\n"),
    "memcached_nonsticky": (["m1", "m2"], MSM + 'sticky = false\nlock_mode = "none"\n'),
    "redis": (["redis"], 'type = "redis"\nhost = "{redis.host}"\nport = {redis.port}\n'),
}


def _store_spec(name: str) -> ProcessSpec:
    if name == "redis":
        exe = shutil.which("redis-server")
        if exe is None:
            raise BenchError("redis-server is not installed")
        return ProcessSpec(name, "command", [exe, "--port", "{port}", "--bind", "{host}",
                                             "--save", "", "--appendonly", "no"], ready="tcp")
    exe = shutil.which("memcached")
    if exe is None:
        raise BenchError("memcached is not installed")
    args = [exe, "-l", "{host}", "-p", "{port}", "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    return ProcessSpec(name, "command", args, ready="tcp")


def _node_spec(manager: str, after: list[str], name: str = "node1") -> ProcessSpec:
    conf = f'[[context]]\npath = "/"\nwebapp = "demo"\n[context.manager]\n{manager}'
    return ProcessSpec(name, "pynode", ["--route", name, "--port", "{port}", "--config",
                                        "{file:node.toml}", "--log-level", "error"],
                       files={"node.toml": conf}, after=after)


def _post(url: str, cookie: str | None = None) -> tuple[str, dict[str, Any]]:
    req = urllib.request.Request(url, data=b'{"incr": "n"}', method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Cookie": f"JSESSIONID={cookie}"} if cookie
                                             else {})})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.headers.get("Set-Cookie", ""), json.loads(r.read())


def _round_trips(sup: Supervisor) -> int:
    with urllib.request.urlopen(sup.url("node1", "/-/health"), timeout=5) as r:
        h = json.loads(r.read())
    return int(sum(c.get("round_trips", 0) for c in h["contexts"].values()))


def _case(name: str, duration: float, tmp: Path) -> dict[str, Any]:
    stores, manager = CASES[name]
    procs = [_store_spec(s) for s in stores] + [_node_spec(manager, stores)]
    sup = Supervisor(Lab(f"bench-{name}", name, "node1", procs, "<bench>"), tmp / name,
                     free_ports=True)
    try:
        sup.up()
        url = sup.url("node1", "/api/session")
        ids = [_post(url)[1]["session_id"] for _ in range(SESSIONS)]
        script = CYCLE_LUA % ", ".join(f'"{i}"' for i in ids)
        wrk_run(url, 1, 32, 1, script=script)  # warm-up
        before = _round_trips(sup)
        r = wrk_run(url, duration, 32, 1, script=script)
        trips = _round_trips(sup) - before
    finally:
        sup.down(timeout=5)
    out = {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "requests", "errors")}
    out["round_trips_per_request"] = round(trips / r["requests"], 3) if r["requests"] else None
    return out


CONCURRENCY_CASES: dict[str, tuple[list[str], str]] = {
    "memcached_nonsticky_lock_none": (["m1", "m2"], MSM + 'sticky = false\nlock_mode = "none"\n'),
    "memcached_nonsticky_lock_all": (["m1", "m2"], MSM + 'sticky = false\nlock_mode = "all"\n'),
    "redis_none": (["redis"], CASES["redis"][1] + 'concurrency = "none"\n'),
    "redis_optimistic": (["redis"], CASES["redis"][1] + 'concurrency = "optimistic"\n'),
    "redis_lock": (["redis"], CASES["redis"][1] + 'concurrency = "lock"\n'),
}


def _hammer(addrs: list[tuple[str, int]], sid: str, clients: int, each: int
            ) -> tuple[int, int]:
    """`clients` threads x `each` increments on one session, alternating nodes; a refused
    request (409 / 503) is not retried. Returns (acknowledged, refused)."""
    acked = [0] * clients
    refused = [0] * clients

    def client(i: int) -> None:
        conns = [http.client.HTTPConnection(h, p, timeout=10) for h, p in addrs]
        hs = {"Cookie": f"JSESSIONID={sid}", "Content-Type": "application/json"}
        try:
            for n in range(each):
                c = conns[n % len(conns)]
                c.request("POST", "/api/session", body='{"incr": "n"}', headers=hs)
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    acked[i] += 1
                else:
                    refused[i] += 1
        finally:
            for c in conns:
                c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return sum(acked), sum(refused)


def _concurrency(name: str, tmp: Path, clients: int = 8, each: int = 200) -> dict[str, Any]:
    stores, manager = CONCURRENCY_CASES[name]
    procs = [_store_spec(s) for s in stores] + [_node_spec(manager, stores, n)
                                                 for n in ("node1", "node2")]
    sup = Supervisor(Lab(f"bench-{name}", name, "node1", procs, "<bench>"), tmp / name,
                     free_ports=True)
    try:
        sup.up()
        sid = _post(sup.url("node1", "/api/session"))[1]["session_id"]
        acked, refused = _hammer([sup.address("node1"), sup.address("node2")], sid, clients,
                                 each)
        final = _post(sup.url("node2", "/api/session"), sid)[1]["value"] - 2
    finally:
        sup.down(timeout=5)
    lost = acked - final
    return {"requests": clients * each, "acknowledged": acked, "refused": refused,
            "in_session": final, "lost": lost,
            "lost_pct": round(100 * lost / acked, 1) if acked else None}


def run(duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-stores-") as d:
        result: dict[str, Any] = {name: _case(name, duration, Path(d)) for name in CASES}
        result["concurrent_increments_8x200"] = {
            name: _concurrency(name, Path(d)) for name in CONCURRENCY_CASES}
    base = result["memory"]["rps"]
    for name in CASES:
        rps = result[name]["rps"]
        result[name]["overhead_us"] = round(1e6 / rps - 1e6 / base, 1) if rps and base \
            else None
    result["setup"] = (f"wrk -t1 -c32 keep-alive, {SESSIONS} sessions cycled, POST "
                       "/api/session incr; one pynode (uvloop); stores on loopback")
    return result
