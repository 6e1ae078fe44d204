"""A pynode process: contexts (each with its manager), node valves, the reserved `/-/health`
endpoint and the background processor (Tomcat's: session expiry and swaps every ~60 s).

`build_node(config)` turns the parsed NodeConfig into a Node: each context's webapp is
located and its web.toml parsed, its manager built from `[context.manager]` through
pysession's registry (so a config error names file and line), then servlets are deployed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from pycommon.config import ConfigError
from pyservlet.api import Request, Response
from pyservlet.config import NodeConfig, ValveConfig
from pyservlet.context import Context
from pyservlet.filters import Filter, Next, compose
from pyservlet.webapp import deploy, load_descriptor, locate
from pysession.options import ManagerEnv
from pysession.registry import build_manager

log = logging.getLogger("pynode")

HEALTH_PATH = "/-/health"
SWEEP_INTERVAL = 60.0


class Node:
    def __init__(self, route: str, clock: Callable[[], float] = time.time) -> None:
        self.route = route
        self.clock = clock
        self.contexts: list[Context] = []
        self.valves: list[Filter] = []
        self.started = time.time()
        self._sweeper: asyncio.Task[None] | None = None
        self._handler: Next = self._route_request

    def add_context(self, ctx: Context) -> None:
        self.contexts.append(ctx)
        self.contexts.sort(key=lambda c: -len(c.path))

    def add_valve(self, valve: Filter) -> None:
        self.valves.append(valve)
        self._handler = compose(self.valves, self._route_request)

    async def handle(self, request: Request) -> Response:
        if request.path == HEALTH_PATH:
            return Response(200, json.dumps(self.health()), "application/json")
        return await self._handler(request)

    async def _route_request(self, request: Request) -> Response:
        path = request.path
        for ctx in self.contexts:
            if ctx.path == "/" or path == ctx.path or path.startswith(ctx.path + "/"):
                return await ctx.handle(request)
        return Response(404, "Not Found\n", "text/plain")

    def health(self) -> dict[str, object]:
        return {"status": "ok", "node": self.route,
                "sessions": sum(len(c.manager) for c in self.contexts),
                "contexts": {c.path: c.manager.stats() for c in self.contexts}}

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, interval: float = SWEEP_INTERVAL) -> None:
        for ctx in self.contexts:
            await ctx.manager.start(ctx.clock())
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(interval))

    def start_background(self, interval: float = SWEEP_INTERVAL) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(interval))

    async def _sweep_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for ctx in self.contexts:
                try:
                    n = await ctx.manager.background(ctx.clock())
                except Exception:
                    log.exception("background processing failed in %s", ctx.path)
                    continue
                if n:
                    log.info("expired %d idle sessions in %s", n, ctx.path)

    def stop_background(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def stop(self) -> None:
        """After the connectors drained: stop managers (save sessions), destroy servlets."""
        self.stop_background()
        for ctx in self.contexts:
            try:
                await ctx.manager.stop(ctx.clock())
            except Exception:
                log.exception("stopping the session manager of %s failed", ctx.path)
            for s in ctx.servlets:
                s.destroy()


def build_node(cfg: NodeConfig, clock: Callable[[], float] = time.time) -> Node:
    """Deploy every context of `cfg`; raises ConfigError naming file and line."""
    node = Node(cfg.route, clock)
    for cx in cfg.contexts:
        root, package = locate(cx.webapp, cx.docbase)
        spec = load_descriptor(root, package)
        path = cx.path if cx.path is not None else spec.context_path
        distributable = spec.distributable if cx.distributable is None else cx.distributable
        timeout_min = spec.session_timeout if cx.session_timeout is None else cx.session_timeout
        env = ManagerEnv(route=cfg.route, context_path=path,
                         max_inactive=timeout_min * 60 if timeout_min >= 0 else -1,
                         distributable=distributable, cluster=cfg.cluster,
                         work_dir=cfg.work_dir, source=cfg.source)
        manager = build_manager(cx.manager, env)
        ctx = Context(path, manager, clock, cookie_secure=cx.cookie_secure,
                      cookie_same_site=cx.cookie_same_site,
                      cookie_name=cx.cookie_name if cx.cookie_name != "JSESSIONID" else None,
                      cookie_http_only=cx.cookie_http_only, route=cfg.route)
        node.add_context(deploy(spec, ctx))
    for vc in cfg.valves:
        node.add_valve(_load_valve(cfg, vc))
    return node


def _load_valve(cfg: NodeConfig, vc: ValveConfig) -> Filter:
    def err(msg: str) -> ConfigError:
        if cfg.source is None:
            return ConfigError(msg, "<node>", 0, vc.cls)
        return cfg.source.error(msg, "class", "valve", vc.nth, vc.cls)

    mod_name, _, attr = vc.cls.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise err(f"class: cannot load {vc.cls!r}: {exc}") from None
    valve = obj()
    if not isinstance(valve, Filter):
        raise err("class: a valve must subclass pyservlet.filters.Filter")
    try:
        valve.init(vc.init, None)
    except (ValueError, KeyError, TypeError) as exc:
        raise err(f"init: {exc}") from None
    return valve
