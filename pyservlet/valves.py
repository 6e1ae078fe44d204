"""Built-in node valves (Tomcat's engine-level valves), installed from the node config:

    [[valve]]
    class = "pyservlet.valves:AccessLogValve"     # any Filter subclass, "module:Class"
    init = { format = "combined" }

A valve sees every request before the context is chosen (except `/-/health`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from pyservlet.api import Request, Response
from pyservlet.context import Context
from pyservlet.filters import Filter, Next

access_log = logging.getLogger("pynode.access")


class AccessLogValve(Filter):
    """One line per request on the `pynode.access` logger: `combined`-like text or JSON."""

    def init(self, params: dict[str, Any], context: Context | None = None) -> None:
        super().init(params, context)
        fmt = params.get("format", "common")
        if fmt not in ("common", "json"):
            raise ValueError("format: common or json")
        self.json = fmt == "json"

    async def do_filter(self, request: Request, chain: Next) -> Response:
        start = time.perf_counter()
        response = await chain(request)
        ms = (time.perf_counter() - start) * 1000
        session = request.session
        if self.json:
            access_log.info(json.dumps({
                "remote": request.remote_addr, "method": request.method,
                "target": request.target, "status": response.status,
                "bytes": len(response.body), "ms": round(ms, 3),
                "session": session.id if session is not None else None}))
        else:
            access_log.info('%s - - "%s %s" %d %d %.3fms %s', request.remote_addr,
                            request.method, request.target, response.status,
                            len(response.body), ms, session.id if session else "-")
        return response
