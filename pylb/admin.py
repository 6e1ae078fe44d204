"""pylb's admin listener (aiohttp): health and member state as JSON.

The manager page (balancer-manager / HAProxy runtime API) grows here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pylb.proxy import Proxy


def member_table(proxy: Proxy) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name, g in proxy.groups.items():
        out[name] = [{"name": p.name, "address": f"{p.host}:{p.port}", "weight": p.weight,
                      "fails": p.fails, "active": p.active, "requests": p.requests,
                      "down": p.down, "backup": p.backup, "route": p.route}
                     for p in g.balancer.peers]
    return out


def build_app(proxy: Proxy) -> web.Application:
    async def health(_req: web.Request) -> web.Response:
        return web.json_response({"status": "stopping" if proxy.stopping else "ok",
                                  "requests": proxy.stats.requests,
                                  "upstreams": member_table(proxy)})

    app = web.Application()
    app.router.add_get("/-/health", health)
    return app


async def start_admin(proxy: Proxy, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(build_app(proxy), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, bound
