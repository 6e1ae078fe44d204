"""Filters (per webapp, by URL pattern) and valves (per node): one middleware shape.

    class Timing(Filter):
        async def do_filter(self, request, chain):
            t = time.perf_counter()
            response = await chain(request)
            response.set_header("X-Time", f"{time.perf_counter() - t:.6f}")
            return response

A filter may answer without calling `chain` (an auth check), change the request before, or
the response after. Valves are the same objects installed on the node (Tomcat's Engine
valves: access log, JvmRouteBinder) and run before the context is chosen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from pyservlet.api import Request, Response

if TYPE_CHECKING:
    from pyservlet.context import Context

Next = Callable[[Request], Awaitable[Response]]


class Filter:
    """Override `do_filter`; `init` gets the web.toml `init` table."""

    params: dict[str, Any]

    def init(self, params: dict[str, Any], context: Context | None = None) -> None:
        self.params = params

    async def do_filter(self, request: Request, chain: Next) -> Response:
        return await chain(request)

    def destroy(self) -> None: ...


Valve = Filter


def url_matches(pattern: str, path: str) -> bool:
    """Servlet URL patterns: `/*`, `/prefix/*`, `*.ext`, `/exact`."""
    if pattern in ("/*", "/"):
        return True
    if pattern.endswith("/*"):
        base = pattern[:-2]
        return path == base or path.startswith(base + "/")
    if pattern.startswith("*."):
        return path.endswith(pattern[1:])
    return path == pattern


def compose(filters: Sequence[Filter], last: Next) -> Next:
    """Build the chain once: filters[0] runs first."""
    handler = last
    for f in reversed(filters):
        handler = _link(f, handler)
    return handler


def _link(f: Filter, nxt: Next) -> Next:
    async def step(request: Request) -> Response:
        return await f.do_filter(request, nxt)
    return step
