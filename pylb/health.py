"""Active health checks (HAProxy `check inter rise fall`, nginx plus `health_check`).

`HealthState` is the sans-IO core: feed it each probe's outcome with `now`; it says when the
member flips (after `fall` consecutive failures it goes down, after `rise` consecutive
successes it comes back) and, with `slow_start`, how much of its weight it may carry while
ramping up again. `HealthChecker` is the asyncio shell: one small GET per member per
interval, on a fresh connection, status compared with the expected list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable

from pylb.balancing import Balancer, Peer
from pylb.config import HealthConfig

log = logging.getLogger("pylb.health")


class HealthState:
    __slots__ = ("fall", "fails", "healthy", "oks", "rise", "since", "slow_start")

    def __init__(self, rise: int, fall: int, slow_start: float = 0.0) -> None:
        self.rise = rise
        self.fall = fall
        self.slow_start = slow_start
        self.healthy = True  # members start up, as HAProxy's do
        self.oks = 0
        self.fails = 0
        self.since = -math.inf  # when it last came back (slow start origin)

    def record(self, ok: bool, now: float) -> bool:
        """One probe result; True when `healthy` flipped."""
        if ok:
            self.fails = 0
            self.oks += 1
            if not self.healthy and self.oks >= self.rise:
                self.healthy = True
                self.since = now
                return True
        else:
            self.oks = 0
            self.fails += 1
            if self.healthy and self.fails >= self.fall:
                self.healthy = False
                return True
        return False

    def weight_cap(self, weight: int, now: float) -> int:
        """The share of `weight` a member may use `now` (linear ramp over slow_start)."""
        if self.slow_start <= 0 or now - self.since >= self.slow_start:
            return weight
        frac = max(now - self.since, 0.0) / self.slow_start
        return max(1, math.ceil(weight * frac))


async def probe(peer: Peer, cfg: HealthConfig) -> bool:
    req = (f"GET {cfg.path} HTTP/1.1\r\nHost: {peer.server}\r\nConnection: close\r\n"
           "User-Agent: pylb-health\r\n\r\n").encode()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(peer.host, peer.port), cfg.timeout)
        writer.write(req)
        line = await asyncio.wait_for(reader.readline(), cfg.timeout)
        parts = line.split()
        return len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) in cfg.expect_status
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()


class HealthChecker:
    """Probe every member of the groups that have `[upstream.X.health]`."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.states: dict[tuple[str, str], HealthState] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.on_change = on_change

    def start(self, groups: dict[str, tuple[HealthConfig | None, list[Peer], Balancer]]
              ) -> None:
        self.stop()
        for gname, (cfg, peers, bal) in groups.items():
            if cfg is None:
                continue
            for p in peers:
                key = (gname, p.name)
                st = self.states.get(key)
                if st is None:
                    st = self.states[key] = HealthState(cfg.rise, cfg.fall, cfg.slow_start)
                p.healthy = st.healthy
                self.tasks.append(asyncio.get_running_loop().create_task(
                    self._loop(gname, p, cfg, st, bal)))

    async def _loop(self, gname: str, peer: Peer, cfg: HealthConfig, st: HealthState,
                    bal: Balancer) -> None:
        loop = asyncio.get_running_loop()
        while True:
            ok = await probe(peer, cfg)
            now = loop.time()
            flipped = st.record(ok, now)
            if flipped:
                peer.healthy = st.healthy
                if st.healthy:
                    bal.clear_fails(peer)  # shared with the workers when on a board
                log.warning("upstream %s member %s (%s) is %s", gname, peer.name, peer.server,
                            "up again" if st.healthy else "down (health check)")
            cap = st.weight_cap(peer.weight, now)
            capped = cap != peer.cap
            if capped:
                peer.cap = cap
                peer.effective = min(peer.effective, cap)
            if flipped or capped:
                bal.refresh()  # flags changed outside the balancer are announced
                if self.on_change is not None:  # --workers: published with its cap at once
                    self.on_change()
            delay = cfg.interval
            if cap < peer.weight:
                delay = min(delay, max(cfg.slow_start / 10, 0.05))
            await asyncio.sleep(delay)

    def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        self.tasks = []

    async def aclose(self) -> None:
        tasks = self.tasks
        self.stop()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
