"""What the dashboard shows: one snapshot of a running lab, built from outside.

The process table comes from the supervisor's `RUN/state.json` (re-read on every poll, so a
`pylab kill` from another shell shows up at once); the numbers come from the daemons' own
health endpoints:

- pynode `GET /-/health` → `{"status", "node", "sessions", ...}`;
- pylb admin `GET /-/health` (address from its READY line, `admin=HOST:PORT`) →
  `{"status", "requests", "upstreams": {NAME: [{"name", "address", "requests", "fails",
  "down", "route", ...}]}}` — the per-member `requests` are the requests per node;
- pyvrrp: its `--state-file` JSON (MASTER / BACKUP / FAULT, priority, VIPs) and
  `--forward` (the balancer it fronts) — see `vrrp_view`.

Nothing here keeps state between polls except the previous counters (for requests/s).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp

from pycommon.config import ConfigError
from pylab.supervisor import ProcessState, Supervisor, SupervisorError, _alive

HEALTH_PATH = "/-/health"
HEALTH_TIMEOUT = aiohttp.ClientTimeout(total=0.8)

# Tomcat's id shape (DESIGN.md, Sessions): 32 uppercase hex, memcached-session-manager's
# `-n1` store-node infix, then `.route` (the jvmRoute of the node that made it).
_SESSION_ID = re.compile(r"^(?P<base>[0-9A-Fa-f]+)(?:-(?P<store>[A-Za-z0-9_]+))?"
                         r"(?:\.(?P<route>.+))?$")

TIERS = {"pyvrrp": 0, "pylb": 1, "pynode": 2, "command": 3}


def parse_session_id(sid: str) -> dict[str, str | None]:
    """`4DD0…39EC-n2.node1` → base, store node (`n2`), home route (`node1`)."""
    m = _SESSION_ID.match(sid)
    if not m:
        base, _, route = sid.partition(".")
        return {"base": base, "store": None, "route": route or None}
    return {"base": m.group("base"), "store": m.group("store"), "route": m.group("route")}


def _flag(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            return argv[i + 1]
    return None


def vrrp_status(proc: ProcessState) -> dict[str, Any]:
    """The live status pyvrrp writes to its `--state-file` (first instance), if any."""
    path = _flag(proc.argv, "--state-file")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
        first = next(iter((data.get("instances") or {}).values()))
    except (OSError, ValueError, StopIteration, AttributeError):
        return {}
    return first if isinstance(first, dict) else {}


def vrrp_view(proc: ProcessState, health: dict[str, Any] | None,
              procs: list[ProcessState] | None = None) -> dict[str, Any]:
    """The VRRP role of one pyvrrp process.

    Sources, later ones winning: the READY line's extras (`state=` at start), the JSON
    pyvrrp keeps in its `--state-file` (`{"instances": {NAME: {"state", "priority",
    "vips", ...}}}`), then a health JSON when the READY line names an `admin=`/`health=`
    address. Recognised keys: `state` (MASTER | BACKUP | FAULT | INIT), `vips` / `vip`,
    `priority`, and `balancer`: the process this instance fronts — otherwise the process
    whose address is the daemon's `--forward HOST:PORT`. A process that says nothing shows
    `state: ?`; one that is not running shows DOWN.
    """
    src: dict[str, Any] = dict(proc.ready_info)
    src.pop("log_offset", None)
    src.update(vrrp_status(proc))
    if health:
        src.update(health)
    state = str(src.get("state", "?")).upper()
    if display_state(proc) not in ("running", "starting"):
        state = "DOWN"
    vip = src.get("vip", src.get("vips", src.get("virtual_ipaddress")))
    if isinstance(vip, list):
        vip = ", ".join(str(v) for v in vip)
    balancer = src.get("balancer")
    forward = _flag(proc.argv, "--forward")
    if balancer is None and forward:
        balancer = next((p.name for p in procs or [] if _hp(p.host, p.port) == forward
                         or f"{p.host}:{p.port}" == forward), None)
    return {"state": state, "vip": vip, "priority": src.get("priority"),
            "balancer": balancer}


def health_url(proc: ProcessState) -> str | None:
    if proc.kind == "pynode":
        return f"http://{_hp(proc.host, proc.port)}{HEALTH_PATH}"
    for key in ("admin", "health"):
        addr = proc.ready_info.get(key)
        if addr:
            return f"http://{addr}{HEALTH_PATH}"
    return None


def _hp(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def display_state(proc: ProcessState) -> str:
    """The recorded state, corrected when the process died since it was written."""
    if proc.state in ("running", "starting") and not _alive(proc.pid, proc.proc_start):
        return "exited"
    return proc.state


def manager_view(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """The session manager of the node's root context, from its health JSON
    (`{"contexts": {"/": {"kind", "active", ...stats}}}`), cut to what the page shows."""
    contexts = (health or {}).get("contexts")
    if not isinstance(contexts, dict) or not contexts:
        return None
    stats = contexts.get("/") or next(iter(contexts.values()))
    if not isinstance(stats, dict):
        return None
    keep = ("kind", "active", "send", "mode", "members", "primary", "proxies")
    return {k: stats[k] for k in keep if k in stats}


def place_session(sid: str, processes: list[dict[str, Any]]) -> dict[str, str | None]:
    """Where copies of session `sid` live, as far as the outside can tell.

    Exact when a node's health lists `backup_ids` (the hook for replicating managers);
    otherwise from the home node's manager kind: DeltaManager copies every session to every
    member; BackupManager keeps one backup on one of the others; memcached-session-manager
    names its store node in the id (`-n1`); the redis manager keeps it in redis.
    """
    parts = parse_session_id(sid)
    home = parts["route"]
    nodes = {p["name"]: p for p in processes if p["kind"] == "pynode"}
    exact = [n for n, p in nodes.items()
             if sid in ((p.get("health") or {}).get("backup_ids") or [])]
    store = f"memcached {parts['store']}" if parts["store"] else None
    home_row = nodes.get(home or "")
    kind = ((home_row or {}).get("manager") or {}).get("kind")
    if kind is None:  # the home node is down: ask any node running the same lab
        kind = next((p["manager"]["kind"] for p in nodes.values() if p.get("manager")), None)
    others = [n for n, p in nodes.items() if n != home and p["state"] == "running"]
    backup: str | None = None
    if exact:
        backup = ", ".join(exact)
    elif kind == "delta":
        backup = ", ".join(others) or None
    elif kind == "backup":
        backup = f"one of {', '.join(others)}" if others else None
    if kind == "redis":
        store = "redis"
    return {"backup": backup, "store": store}


class LabView:
    """Builds `/api/state` snapshots of the lab whose state lives in `run_dir`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._prev: dict[str, tuple[float, int]] = {}
        self._rates: dict[str, float] = {}

    def attach(self) -> Supervisor | None:
        try:
            return Supervisor.attach(self.run_dir)
        except (SupervisorError, ConfigError, KeyError, ValueError, TypeError, OSError):
            return None

    async def _fetch(self, http: aiohttp.ClientSession,
                     proc: ProcessState) -> tuple[dict[str, Any] | None, str | None]:
        url = health_url(proc)
        if url is None or display_state(proc) != "running":
            return None, None
        try:
            async with http.get(url, timeout=HEALTH_TIMEOUT) as r:
                if r.status != 200:
                    return None, f"health answered {r.status}"
                data = await r.json(content_type=None)
                return (data if isinstance(data, dict) else None), None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return None, f"health: {type(exc).__name__}"

    async def snapshot(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        sup = self.attach()
        if sup is None:
            return {"lab": None, "message": f"no lab is running in {self.run_dir} "
                    "(start one: pylab up basic)", "processes": []}
        procs = list(sup.procs.values())
        fetched = await asyncio.gather(*(self._fetch(http, p) for p in procs))
        health = {p.name: h for p, (h, _) in zip(procs, fetched, strict=True)}
        errors = {p.name: e for p, (_, e) in zip(procs, fetched, strict=True)}
        now = time.monotonic()

        # requests per node, as the balancers count them (matched by address, then name)
        by_addr = {_hp(p.host, p.port): p.name for p in procs if p.kind == "pynode"}
        node_requests: dict[str, int] = {}
        members_of: dict[str, list[dict[str, Any]]] = {}
        for p in procs:
            h = health.get(p.name)
            if p.kind != "pylb" or not h:
                continue
            rows: list[dict[str, Any]] = []
            for group in (h.get("upstreams") or {}).values():
                for m in group:
                    target = by_addr.get(str(m.get("address")), str(m.get("name")))
                    node_requests[target] = node_requests.get(target, 0) + int(
                        m.get("requests") or 0)
                    rows.append({"name": m.get("name"), "node": target,
                                 "requests": m.get("requests"), "fails": m.get("fails"),
                                 "down": m.get("down"), "route": m.get("route"),
                                 "weight": m.get("weight")})
            members_of[p.name] = rows

        vrrp = {p.name: vrrp_view(p, health.get(p.name), procs) for p in procs
                if p.kind == "pyvrrp"}
        holder = next((n for n, v in vrrp.items() if v["state"] == "MASTER"), None)
        vip_balancer = vrrp[holder]["balancer"] if holder else None

        out = []
        for p in procs:
            h = health.get(p.name)
            row: dict[str, Any] = {
                "name": p.name, "kind": p.kind, "state": display_state(p), "pid": p.pid,
                "host": p.host, "port": p.port, "tier": TIERS.get(p.kind, 3),
                "entry": p.name == sup.lab.entry, "health": h, "health_error": errors[p.name],
                "exit_code": p.exit_code}
            if p.kind == "pynode":
                count = node_requests.get(p.name)
                row["manager"] = manager_view(h)
                row["requests"] = count
                row["sessions"] = h.get("sessions") if h else None
                row["route"] = (h or {}).get("node") or p.ready_info.get("route")
                row["rps"] = self._rate(p.name, count, now)
            elif p.kind == "pylb":
                row["requests"] = h.get("requests") if h else None
                row["members"] = members_of.get(p.name, [])
                row["rps"] = self._rate(p.name, row["requests"], now)
                row["holds_vip"] = vip_balancer == p.name
            elif p.kind == "pyvrrp":
                row["vrrp"] = vrrp[p.name]
                row["holds_vip"] = p.name == holder
            out.append(row)
        return {"lab": sup.lab.name, "description": sup.lab.description,
                "entry": sup.lab.entry, "entry_url": sup.url(),
                "vip": {"holder": holder, "balancer": vip_balancer,
                        "vip": vrrp[holder]["vip"] if holder else None} if vrrp else None,
                "processes": out}

    def _rate(self, name: str, count: int | None, now: float) -> float | None:
        """Requests/s since the previous poll (kept when polls come faster than 0.5 s)."""
        if count is None:
            self._prev.pop(name, None)
            return None
        prev = self._prev.get(name)
        if prev is None or count < prev[1]:  # first sight, or the process restarted
            self._prev[name] = (now, count)
            self._rates[name] = 0.0
            return 0.0
        dt = now - prev[0]
        if dt >= 0.5:
            self._rates[name] = round((count - prev[1]) / dt, 1)
            self._prev[name] = (now, count)
        return self._rates.get(name, 0.0)
