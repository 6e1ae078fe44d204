"""`python -m benchmarks replication`: session writes with replication, replication lag, and
state transfer to a joining node.

* `delta_async` / `delta_sync` — two pynodes with DeltaManager (send = async / sync-ack);
  wrk (one thread, 32 keep-alive connections) POSTs {"incr": "n"} to node1 with the
  JSESSIONID cookie kept by a Lua script, so every request changes the session and node1
  sends a DELTA to node2. `lag_p50_ms` / `lag_p99_ms`: a separate client sets an attribute on
  node1 and polls node2 (keep-alive) until it shows the value; the lag runs from the start of
  the write to the first read that sees it (200 samples, no other load). Both nodes run with
  `jvm_route_binder = false` so reading on node2 does not move the session.
* `backup` — the same with BackupManager (async): node1 primary, node2 its backup. Reading on
  node2 makes it primary (that is what BackupManager does), so the lag includes a takeover.
* `state_transfer_20k_s` — node1 holds 20,000 sessions (made by wrk without a cookie); node2
  starts and is ready once GET_ALL_SESSIONS finished: the seconds node2's manager reports for
  the transfer (and the wall time of its start, for reference).

Tomcat 10 DeltaManager measured on this machine: 23-26k rps writing with replication to a
second node (p99 5-6 ms); Tomcat is not installed everywhere, so that figure is a recorded
reference and the ratio is against its midpoint.
"""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.load import KEEP_COOKIE_LUA, BenchError, ratio, wrk_run
from pylab.supervisor import Supervisor
from pylab.topology import Lab, ProcessSpec

TOMCAT_REFERENCE = {"delta_async": {"rps": 24500.0, "p99_ms": 5.5}}
SESSIONS = 20_000

# every request without a cookie makes a new session; stop after SESSIONS answers
MAKE_SESSIONS_LUA = f"""
local done = 0
response = function(status, headers, body)
  done = done + 1
  if done >= {SESSIONS} then wrk.thread:stop() end
end
"""


def node_toml(manager: str, send: str) -> str:
    return f'''
[node]
route = "{{name}}"
[[connector]]
listen = "{{host}}:{{port}}"
[[context]]
path = "/"
webapp = "demo"
[context.manager]
type = "{manager}"
send = "{send}"
jvm_route_binder = false
[cluster]
name = "{{rundir}}"
key = "benchmark-key"
join_wait = 0.6
state_transfer_timeout = 120
'''


def lab(manager: str, send: str) -> Lab:
    procs = [ProcessSpec(f"node{i}", "pynode", ["-c", "{file:node.toml}", "--log-level",
                                                "warning"],
                         files={"node.toml": node_toml(manager, send)}, ready_timeout=150)
             for i in (1, 2)]
    return Lab(f"bench-{manager}-{send}", "two replicating pynodes", "node1", procs,
               "<bench>")


class KeepAlive:
    """A blocking keep-alive HTTP client (lag probes must not pay a connect each)."""

    def __init__(self, url: str) -> None:
        host, _, port = url.split("//", 1)[1].split("/", 1)[0].partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=5)
        self.cookie = ""

    def call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        hs = {"Content-Type": "application/json"}
        if self.cookie:
            hs["Cookie"] = self.cookie
        self.conn.request(method, "/api/session", json.dumps(body) if body else None, hs)
        r = self.conn.getresponse()
        data = r.read()
        sc = r.getheader("Set-Cookie")
        if sc:
            self.cookie = sc.split(";", 1)[0]
        out: dict[str, Any] = json.loads(data)
        return out


def measure_lag(sup: Supervisor, samples: int = 200) -> dict[str, float]:
    w = KeepAlive(sup.url("node1", "/"))
    r = KeepAlive(sup.url("node2", "/"))
    w.call("POST", {"set": {"lag": -1}})
    lags = []
    for i in range(samples):
        t0 = time.perf_counter()
        w.call("POST", {"set": {"lag": i}})
        r.cookie = w.cookie
        deadline = t0 + 2.0
        while time.perf_counter() < deadline:
            if r.call("GET")["attributes"].get("lag") == i:
                break
        lags.append((time.perf_counter() - t0) * 1000)
        if w.cookie != r.cookie and r.cookie:   # BackupManager moved the session: follow it
            w.cookie = r.cookie
    lags.sort()
    return {"lag_p50_ms": round(statistics.median(lags), 3),
            "lag_p99_ms": round(lags[int(len(lags) * 0.99) - 1], 3)}


def writes(manager: str, send: str, duration: float, run_dir: Path) -> dict[str, Any]:
    sup = Supervisor(lab(manager, send), run_dir, free_ports=True)
    try:
        sup.up()
        url = sup.url("node1", "/api/session")
        wrk_run(url, 1, 32, 1, script=KEEP_COOKIE_LUA)  # warm-up
        load = wrk_run(url, duration, 32, 1, script=KEEP_COOKIE_LUA)
        lag = measure_lag(sup)
    finally:
        sup.down(timeout=5)
    return {"rps": load["rps"], "p50_ms": load["p50_ms"], "p99_ms": load["p99_ms"],
            "errors": load["errors"], **lag}


def state_transfer(run_dir: Path) -> dict[str, Any]:
    sup = Supervisor(lab("delta", "async"), run_dir, free_ports=True)
    try:
        sup.up()
        sup.kill("node2")
        wrk_run(sup.url("node1", "/api/session"), 60, 16, 1, script=MAKE_SESSIONS_LUA)
        held = _health(sup, "node1")["active"]
        if held < SESSIONS:
            raise BenchError(f"node1 holds only {held} sessions")
        t0 = time.monotonic()
        sup.start("node2")
        wall = time.monotonic() - t0
        h = _health(sup, "node2")
    finally:
        sup.down(timeout=5)
    return {"seconds": h["transfer_seconds"], "sessions": h["replication"]["transferred"],
            "node_start_wall_s": round(wall, 3)}


def _health(sup: Supervisor, node: str) -> dict[str, Any]:
    c = KeepAlive(sup.url(node, "/"))
    c.conn.request("GET", "/-/health")
    ctx: dict[str, Any] = json.loads(c.conn.getresponse().read())["contexts"]["/"]
    return ctx


def run(duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-repl-") as tmp:
        base = Path(tmp)
        delta_async = writes("delta", "async", duration, base / "async")
        delta_sync = writes("delta", "sync-ack", duration, base / "sync")
        backup = writes("backup", "async", duration, base / "backup")
        st = state_transfer(base / "transfer")
    ref = TOMCAT_REFERENCE["delta_async"]["rps"]
    return {
        "delta_async": delta_async,
        "delta_sync": delta_sync,
        "backup": backup,
        "state_transfer_20k_s": round(st["seconds"], 3) if st["seconds"] else None,
        "state_transfer": st,
        "tomcat_reference": TOMCAT_REFERENCE,
        "ratio_over_tomcat_delta": {"delta_async": ratio(delta_async["rps"], ref),
                                    "delta_sync": ratio(delta_sync["rps"], ref)},
        "setup": "two pynodes (uvloop), multicast membership on loopback; wrk -t1 -c32 "
                 "keep-alive against node1, one session per wrk thread; Tomcat figure: "
                 "reference measured earlier on this machine (DeltaManager, async)",
    }
