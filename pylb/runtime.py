"""Runtime member state that outlives a config reload and is shared between workers.

The manager page / JSON API changes a member's state (active, drain, disabled, stopped,
standby) or weight at runtime. Those changes are kept here as *overrides* keyed by
(upstream, member) and re-applied whenever the proxy (re)builds its upstream groups, so a
SIGHUP reload keeps a drained member drained and a re-weighted member re-weighted (a member
removed from the config loses its override; one whose weight was set at runtime keeps that
weight until it is changed again at runtime).

With `--workers N` the master owns the overrides and the active health checks and publishes
them (health: up/down and the slow-start weight cap of a member ramping up again) as one
small JSON file (`state.json`, replaced atomically) in the run directory; each
worker polls its mtime a few times a second and applies it. Counters flow the other way: each
worker writes `worker-I.json` and the master's manager page adds them up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pylb.balancing import STATES
from pylb.upstream import UpstreamGroup


class RuntimeState:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.overrides: dict[str, dict[str, dict[str, Any]]] = {}
        self.health: dict[str, dict[str, bool]] = {}
        self.caps: dict[str, dict[str, int]] = {}  # slow start: weight a member may use now
        self.mtime = 0.0

    def set(self, upstream: str, member: str, *, state: str | None = None,
            weight: int | None = None) -> None:
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r} (known: {', '.join(STATES)})")
        if weight is not None and not 1 <= weight <= 1000:
            raise ValueError("weight must be between 1 and 1000")
        o = self.overrides.setdefault(upstream, {}).setdefault(member, {})
        if state is not None:
            o["state"] = state
        if weight is not None:
            o["weight"] = weight

    def apply(self, groups: dict[str, UpstreamGroup], with_health: bool = False) -> None:
        for gname, g in groups.items():
            changed = False
            for mname, o in self.overrides.get(gname, {}).items():
                p = g.by_name.get(mname)
                if p is None:
                    continue
                if "state" in o and p.state != o["state"]:
                    p.state = o["state"]
                    changed = True
                if "weight" in o and p.weight != o["weight"]:
                    p.weight = p.effective = p.cap = int(o["weight"])
                    p.current = 0
                    changed = True
            if with_health:
                for mname, ok in self.health.get(gname, {}).items():
                    p = g.by_name.get(mname)
                    if p is not None and p.healthy != ok:
                        p.healthy = ok
                        changed = True
                caps = self.caps.get(gname, {})
                for p in g.peers:
                    cap = min(caps.get(p.name, p.weight), p.weight)
                    if p.cap != cap:
                        p.cap = cap
                        p.effective = min(p.effective, cap)
                        changed = True
            if changed:
                g.balancer.refresh()

    def capture_health(self, groups: dict[str, UpstreamGroup]) -> None:
        self.health = {gname: {p.name: p.healthy for p in g.peers}
                       for gname, g in groups.items()}
        self.caps = {gname: {p.name: p.cap for p in g.peers if p.cap < p.weight}
                     for gname, g in groups.items()}

    # -- sharing between processes ----------------------------------------------------------
    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"overrides": self.overrides, "health": self.health,
                                   "caps": self.caps}))
        os.replace(tmp, self.path)

    def poll(self) -> bool:
        """Reload from the file when it changed; True when it did."""
        if self.path is None:
            return False
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self.mtime:
            return False
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        self.mtime = mtime
        self.overrides = data.get("overrides", {})
        self.health = data.get("health", {})
        self.caps = data.get("caps", {})
        return True
