"""A pynode process: its contexts, the reserved `/-/health` endpoint, the session sweeper."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from pyservlet.api import Request, Response
from pyservlet.context import Context

log = logging.getLogger("pynode")

HEALTH_PATH = "/-/health"
SWEEP_INTERVAL = 60.0


class Node:
    def __init__(self, route: str) -> None:
        self.route = route
        self.contexts: list[Context] = []
        self.started = time.time()
        self._sweeper: asyncio.Task[None] | None = None

    def add_context(self, ctx: Context) -> None:
        self.contexts.append(ctx)
        self.contexts.sort(key=lambda c: -len(c.path))

    async def handle(self, request: Request) -> Response:
        if request.path == HEALTH_PATH:
            return Response(200, json.dumps({"status": "ok", "node": self.route,
                                             "sessions": sum(len(c.manager)
                                                             for c in self.contexts)}),
                            "application/json")
        for ctx in self.contexts:
            if ctx.matches(request.path):
                return await ctx.handle(request)
        return Response(404, "Not Found\n", "text/plain")

    def start_background(self, interval: float = SWEEP_INTERVAL) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(interval))

    async def _sweep_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for ctx in self.contexts:
                n = ctx.manager.sweep(ctx.clock())
                if n:
                    log.info("expired %d idle sessions in %s", n, ctx.path)

    def stop_background(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
