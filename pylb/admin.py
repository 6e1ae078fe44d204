"""pylb's admin listener (aiohttp): manager page, JSON API, Prometheus metrics, health.

The httpd balancer-manager / mod_jk status worker / HAProxy Runtime API role: every member's
state, weight, requests in flight and in total, failures and sticky hits; state and weight
changeable at runtime. Protection, in order: an address allow-list (403), HTTP basic
credentials (401), and for every change a CSRF token bound to this process (403 without it),
as httpd's balancer-manager nonce. Without configured credentials, or with `read_only`, the
manager only shows (403 on changes): safe by default. `/-/health` and `/metrics` only need
the allow-list, so probes and scrapers work without the password.

    GET  /manager                          HTML page (forms carry the CSRF token)
    POST /manager                          form: upstream, member, state, weight, csrf
    GET  /api/upstreams                    JSON: {"csrf": ..., "upstreams": {...}}
    POST /api/upstreams/{up}/members/{m}   JSON {"state": "drain", "weight": 3}
                                           header X-CSRF-Token
    GET  /metrics                          Prometheus text format
    GET  /-/health                         {"status": "ok", ...}
"""

from __future__ import annotations

import base64
import binascii
import html
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pylb.balancing import STATES
from pylb.config import AdminConfig
from pylb.manager import Manager

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Metrics(Collector):
    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr

    def collect(self) -> Iterator[Any]:
        table = self.mgr.table()
        labels = ["upstream", "member"]
        req = CounterMetricFamily("pylb_member_requests", "Requests sent to a member",
                                  labels=labels)
        fail = CounterMetricFamily("pylb_member_failures", "Failed attempts to a member",
                                   labels=labels)
        sticky = CounterMetricFamily("pylb_member_sticky_hits",
                                     "Requests that followed a sticky route", labels=labels)
        active = GaugeMetricFamily("pylb_member_active", "Requests in flight to a member",
                                   labels=labels)
        weight = GaugeMetricFamily("pylb_member_weight", "Member weight", labels=labels)
        up = GaugeMetricFamily("pylb_member_up", "1 when the member takes new requests",
                               labels=labels)
        for gname, members in table.items():
            for m in members:
                lv = [gname, m["name"]]
                req.add_metric(lv, m["requests"])
                fail.add_metric(lv, m["failures"])
                sticky.add_metric(lv, m["sticky_hits"])
                active.add_metric(lv, m["active"])
                weight.add_metric(lv, m["weight"])
                up.add_metric(lv, 1.0 if m["usable"] and m["state"] == "active" else 0.0)
        s = self.mgr.server_stats()
        yield CounterMetricFamily("pylb_requests", "Client requests", value=s["requests"])
        yield CounterMetricFamily("pylb_connections", "Client connections accepted",
                                  value=s["connections"])
        yield CounterMetricFamily("pylb_responses_5xx", "Error answers made by pylb",
                                  value=s["responses_5xx"])
        yield from (req, fail, sticky, active, weight, up)


def build_app(mgr: Manager, cfg: AdminConfig) -> web.Application:
    csrf = secrets.token_urlsafe(24)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Metrics(mgr))
    can_write = bool(cfg.user) and not cfg.read_only

    def allowed(request: web.Request) -> bool:
        try:
            addr = ipaddress.ip_address((request.remote or "").split("%")[0])
        except ValueError:
            return False
        return any(addr in net for net in cfg.allow)

    def authorized(request: web.Request) -> bool:
        if not cfg.user:
            return True  # no credentials configured: read-only manager
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok_user = secrets.compare_digest(user.encode(), (cfg.user or "").encode())
        ok_pw = secrets.compare_digest(pw.encode(), (cfg.password or "").encode())
        return ok_user and ok_pw

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not allowed(request):
            return web.Response(status=403, text="403 address not allowed\n")
        if request.path in ("/-/health", "/metrics"):
            return await handler(request)
        if not authorized(request):
            return web.Response(status=401, text="401 credentials required\n",
                                headers={"WWW-Authenticate": 'Basic realm="pylb manager"'})
        if request.method not in ("GET", "HEAD"):
            if not can_write:
                return web.Response(status=403, text="403 the manager is read-only\n")
            token = request.headers.get("X-CSRF-Token", "")
            if not token and request.content_type == "application/x-www-form-urlencoded":
                token = str((await request.post()).get("csrf", ""))
            if not token or not secrets.compare_digest(token, csrf):
                return web.Response(status=403, text="403 missing or wrong CSRF token\n")
        return await handler(request)

    def change(up: str, member: str, state: str | None, weight: int | None) -> str | None:
        try:
            mgr.change(up, member, state=state, weight=weight)
        except (KeyError, ValueError) as exc:
            return str(exc).strip("'\"")
        return None

    async def health(_req: web.Request) -> web.Response:
        return web.json_response({"status": "stopping" if mgr.stopping else "ok",
                                  **mgr.server_stats(), "upstreams": mgr.table()})

    async def metrics(_req: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    async def api_list(_req: web.Request) -> web.Response:
        return web.json_response({"csrf": csrf if can_write else None, "read_only": not can_write,
                                  **mgr.server_stats(), "upstreams": mgr.table()})

    async def api_change(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "expected a JSON object"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        weight = body.get("weight")
        if weight is not None and (not isinstance(weight, int) or isinstance(weight, bool)):
            return web.json_response({"error": "weight must be an integer"}, status=400)
        state = body.get("state")
        err = change(request.match_info["up"], request.match_info["member"],
                     None if state is None else str(state), weight)
        if err:
            return web.json_response({"error": err}, status=400)
        return web.json_response({"ok": True, "upstreams": mgr.table()})

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=render_page(mgr, csrf, can_write,
                                             request.query.get("msg", "")),
                            content_type="text/html")

    async def page_post(request: web.Request) -> web.Response:
        form = await request.post()
        weight_s = str(form.get("weight", "")).strip()
        weight = int(weight_s) if weight_s.isdigit() else None
        if weight_s and weight is None:
            raise web.HTTPSeeOther("/manager?msg=weight+must+be+a+number")
        state = str(form.get("state", "")) or None
        err = change(str(form.get("upstream", "")), str(form.get("member", "")), state, weight)
        raise web.HTTPSeeOther("/manager?msg=" + ("error:+" + err if err else "saved")
                               .replace(" ", "+"))

    async def root(_req: web.Request) -> web.Response:
        raise web.HTTPFound("/manager")

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", root)
    app.router.add_get("/-/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/manager", page)
    app.router.add_post("/manager", page_post)
    app.router.add_get("/api/upstreams", api_list)
    app.router.add_post("/api/upstreams/{up}/members/{member}", api_change)
    return app


def render_page(mgr: Manager, csrf: str, can_write: bool, msg: str) -> str:
    e = html.escape
    rows = []
    for gname, members in mgr.table().items():
        for m in members:
            form = ""
            if can_write:
                opts = "".join(f'<option value="{s}"{" selected" if s == m["state"] else ""}>'
                               f"{s}</option>" for s in STATES)
                mid = e(f"{gname}-{m['name']}")
                form = (f'<form method="post" action="/manager" id="f-{mid}">'
                        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
                        f'<input type="hidden" name="upstream" value="{e(gname)}">'
                        f'<input type="hidden" name="member" value="{e(m["name"])}">'
                        f'<select name="state" id="state-{mid}">{opts}</select> '
                        f'<input name="weight" id="weight-{mid}" size="3" value="{m["weight"]}">'
                        f' <button type="submit" id="save-{mid}">save</button></form>')
            health = "up" if m["usable"] else "DOWN"
            rows.append(
                f'<tr id="row-{e(gname)}-{e(m["name"])}"><td>{e(gname)}</td><td>{e(m["name"])}'
                f'</td><td>{e(m["address"])}</td><td>{e(str(m["route"] or ""))}</td>'
                f'<td class="state">{e(m["state"])}</td><td class="weight">{m["weight"]}</td>'
                f'<td>{health}</td><td>{m["active"]}</td><td>{m["requests"]}</td>'
                f'<td>{m["failures"]}</td><td>{m["sticky_hits"]}</td><td>{form}</td></tr>')
    note = "" if can_write else "<p id=\"ro\">read-only</p>"
    flash = f'<p id="msg">{e(msg)}</p>' if msg else ""
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>pylb manager</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
            "</style></head><body><h1>pylb balancer manager</h1>" + note + flash +
            "<table><tr><th>upstream</th><th>member</th><th>address</th><th>route</th>"
            "<th>state</th><th>weight</th><th>health</th><th>active</th><th>requests</th>"
            "<th>failures</th><th>sticky hits</th><th>change</th></tr>" + "".join(rows) +
            "</table></body></html>")


async def start_admin(mgr: Manager, cfg: AdminConfig) -> tuple[web.AppRunner, int]:
    assert cfg.listen is not None
    host, port = cfg.listen
    runner = web.AppRunner(build_app(mgr, cfg), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, bound
