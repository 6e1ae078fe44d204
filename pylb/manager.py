"""What the admin listener shows and changes: one view over the upstream groups.

In one process the groups are the proxy's own. With `--workers N` the master keeps groups
built from the same config (no traffic goes through them: they hold states, weights and
health) and adds up the counters each worker publishes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pylb.runtime import RuntimeState
from pylb.upstream import UpstreamGroup

COUNTERS = ("requests", "failures", "sticky_hits", "active")


class Manager:
    def __init__(self, groups: dict[str, UpstreamGroup], runtime: RuntimeState,
                 stats: Any = None, worker_dir: Path | None = None) -> None:
        self.groups = groups
        self.runtime = runtime
        self.stats = stats  # ProxyStats of the in-process proxy, if any
        self.worker_dir = worker_dir
        self.stopping = False

    def change(self, upstream: str, member: str, *, state: str | None = None,
               weight: int | None = None) -> None:
        g = self.groups.get(upstream)
        if g is None:
            raise KeyError(f"no upstream {upstream!r}")
        if member not in g.by_name:
            raise KeyError(f"no member {member!r} in upstream {upstream!r}")
        if state is None and weight is None:
            raise ValueError("nothing to change (give state and/or weight)")
        self.runtime.set(upstream, member, state=state, weight=weight)
        self.runtime.apply(self.groups)
        self.runtime.save()

    def _worker_stats(self) -> list[dict[str, Any]]:
        if self.worker_dir is None:
            return []
        out = []
        for f in sorted(self.worker_dir.glob("worker-*.json")):
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                continue
        return out

    def table(self) -> dict[str, list[dict[str, Any]]]:
        workers = self._worker_stats()
        out: dict[str, list[dict[str, Any]]] = {}
        now = time.monotonic()
        for gname, g in self.groups.items():
            rows = []
            for p in g.peers:
                row: dict[str, Any] = {
                    "name": p.name, "address": p.server, "route": p.route,
                    "state": p.state, "weight": p.weight, "backup": p.backup, "down": p.down,
                    "healthy": p.healthy, "usable": p.usable(now),
                    "fails": p.fails, "active": p.conns, "requests": p.requests,
                    "failures": p.failures, "sticky_hits": p.sticky_hits}
                for w in workers:
                    c = w.get("members", {}).get(gname, {}).get(p.name)
                    if c:
                        for k in COUNTERS:
                            row[k] += c.get(k, 0)
                rows.append(row)
            out[gname] = rows
        return out

    def server_stats(self) -> dict[str, int]:
        s = {"requests": 0, "connections": 0, "responses_5xx": 0}
        if self.stats is not None:
            s = {k: getattr(self.stats, k) for k in s}
        for w in self._worker_stats():
            for k in s:
                s[k] += int(w.get("server", {}).get(k, 0))
        return s


def worker_snapshot(groups: dict[str, UpstreamGroup], stats: Any) -> dict[str, Any]:
    return {"server": {k: getattr(stats, k) for k in ("requests", "connections",
                                                       "responses_5xx")},
            "members": {gname: {p.name: {"requests": p.requests, "failures": p.failures,
                                         "sticky_hits": p.sticky_hits, "active": p.conns}
                                for p in g.peers} for gname, g in groups.items()}}
