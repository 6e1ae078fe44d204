"""The dashboard's aiohttp application and its daemon shell.

Safe by default, because its buttons kill processes:
- it binds 127.0.0.1 only (there is no option to change that);
- requests whose Host is not 127.0.0.1/localhost/[::1] are refused (DNS rebinding);
- every POST needs the per-process CSRF token (served inside the page, sent back in
  `X-CSRF-Token`) and, when the browser sends an Origin, the same origin;
- the page may not be framed (clickjacking) and loads scripts only from itself (CSP).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from pycommon.lifecycle import (
    StopSignal,
    announce_ready,
    describe_oserror,
    parse_ready_line,
    run_daemon,
)
from pylab.dashboard.state import LabView, place_session
from pylab.dashboard.tracer import Tracer
from pylab.supervisor import Supervisor, SupervisorError, _die_with_parent

log = logging.getLogger("pylab.dashboard")

DEFAULT_PORT = 8099
HOST = "127.0.0.1"
STATIC = Path(str(resources.files("pylab.dashboard") / "static"))
ACTIONS = ("kill", "term", "restart", "start")
MAX_TRACE_BATCH = 50
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")

RUN_DIR: web.AppKey[Path] = web.AppKey("run_dir", Path)
TOKEN: web.AppKey[str] = web.AppKey("csrf_token", str)
VIEW: web.AppKey[LabView] = web.AppKey("view", LabView)
TRACER: web.AppKey[Tracer] = web.AppKey("tracer", Tracer)
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("http", aiohttp.ClientSession)
LOCK: web.AppKey[asyncio.Lock] = web.AppKey("action_lock", asyncio.Lock)
BUSY = web.AppKey("busy", dict[str, str])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _host_ok(request: web.Request) -> bool:
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return host in _LOCAL_HOSTS


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _host_ok(request):
        return web.json_response({"error": "the dashboard answers only to 127.0.0.1 / "
                                  "localhost"}, status=421)
    if request.method == "POST":
        sent = request.headers.get("X-CSRF-Token", "")
        if not hmac.compare_digest(sent.encode(), request.app[TOKEN].encode()):
            return web.json_response({"error": "missing or wrong CSRF token (reload the "
                                      "page)"}, status=403)
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return web.json_response({"error": f"cross-origin request from {origin} "
                                      "refused"}, status=403)
    resp = await handler(request)
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Content-Security-Policy",
                            "default-src 'self'; frame-ancestors 'none'")
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


async def index(request: web.Request) -> web.Response:
    page = (STATIC / "index.html").read_text()
    return web.Response(text=page.replace("__CSRF_TOKEN__", request.app[TOKEN]),
                        content_type="text/html")


async def api_state(request: web.Request) -> web.Response:
    app = request.app
    snap = await app[VIEW].snapshot(app[HTTP])
    snap["busy"] = app[BUSY].copy()
    snap["trace"] = app[TRACER].view()
    for v in snap["trace"]["visitors"]:
        if v["session_id"]:
            v.update(place_session(v["session_id"], snap["processes"]))
    return web.json_response(snap)


async def api_action(request: web.Request) -> web.Response:
    name, action = request.match_info["name"], request.match_info["action"]
    if action not in ACTIONS:
        return web.json_response({"error": f"unknown action {action!r} (known: "
                                  f"{', '.join(ACTIONS)})"}, status=404)
    app = request.app
    if app[LOCK].locked():
        return web.json_response({"error": "another action is still running: "
                                  + ", ".join(f"{k} {v}" for k, v in app[BUSY].items())},
                                 status=409)
    async with app[LOCK]:
        app[BUSY][name] = action
        try:
            message = await asyncio.to_thread(_act, app[RUN_DIR], name, action)
        except KeyError:
            return web.json_response({"error": f"no process named {name!r}"}, status=404)
        except SupervisorError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        finally:
            app[BUSY].pop(name, None)
    log.info("%s", message)
    return web.json_response({"ok": True, "message": message})


# Popen handles of the processes this dashboard (re)started, reaped on the next action
_children: list[subprocess.Popen[bytes]] = []


def _act(run_dir: Path, name: str, action: str) -> str:
    """Blocking: runs in a worker thread. Each action attaches afresh, like `pylab kill`."""
    for pop in list(_children):  # reap what we started and what has exited since
        if pop.poll() is not None:
            _children.remove(pop)
    sup = Supervisor.attach(run_dir)
    if name not in sup.procs:
        raise KeyError(name)
    if action == "kill":
        sup.kill(name, signal.SIGKILL)
        return f"sent SIGKILL to {name}"
    if action == "term":
        sup.stop(name)
        return f"stopped {name} (SIGTERM)"
    st = sup.restart(name) if action == "restart" else sup.start(name)
    _children.extend(sup._popen.values())
    return f"{name} running again (pid {st.pid}, {st.host}:{st.port})"


async def api_trace(request: web.Request) -> web.Response:
    app = request.app
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    tracer = app[TRACER]
    if body.get("reset"):
        tracer.reset()
        return web.json_response({"ok": True})
    visitor = str(body.get("visitor") or "alice")
    if body.get("new_visitor"):
        visitor = tracer.new_visitor().name
    try:
        count = max(1, min(int(body.get("count", 1)), MAX_TRACE_BATCH))
    except (TypeError, ValueError):
        return web.json_response({"error": "count must be an integer"}, status=400)
    sup = app[VIEW].attach()
    if sup is None:
        return web.json_response({"error": "no lab is running"}, status=409)
    entry = sup.lab.entry
    via = ["client", entry]
    if sup.procs[entry].kind == "pyvrrp":
        # the balancer hop behind a VIP is inferred from who holds it when the batch starts
        holder = await _vip_balancer(app)
        via = [*via, holder] if holder else via
    records = []
    for _ in range(count):
        rec = await tracer.probe(app[HTTP], sup.url(), visitor, via)
        records.append(rec.seq)
    return web.json_response({"ok": True, "visitor": visitor, "sent": len(records)})


async def _vip_balancer(app: web.Application) -> str | None:
    snap = await app[VIEW].snapshot(app[HTTP])
    vip = snap.get("vip") or {}
    return vip.get("balancer") or vip.get("holder")


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = (STATIC / name).resolve()
    if path.parent != STATIC.resolve() or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)


def build_app(run_dir: Path, token: str | None = None) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[RUN_DIR] = Path(run_dir)
    app[TOKEN] = token or secrets.token_urlsafe(32)
    app[VIEW] = LabView(Path(run_dir))
    app[TRACER] = Tracer()
    app[LOCK] = asyncio.Lock()
    app[BUSY] = {}

    async def client(app: web.Application) -> Any:
        # cookies are kept per visitor by the tracer, never shared through a jar
        app[HTTP] = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        yield
        await app[HTTP].close()

    app.cleanup_ctx.append(client)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/api/state", api_state)
    app.router.add_post("/api/process/{name}/{action}", api_action)
    app.router.add_post("/api/trace", api_trace)
    return app


async def _watch_lab(run_dir: Path, stop: StopSignal) -> None:
    """`--exit-with-lab`: stop once the lab's state file is gone (after `pylab down`)."""
    state = run_dir / "state.json"
    seen = state.exists()
    while not stop.event.is_set():
        exists = state.exists()
        if seen and not exists:
            log.info("the lab is down: the dashboard stops too")
            stop.event.set()
            return
        seen = seen or exists
        await asyncio.sleep(0.5)


def serve(run_dir: Path, port: int = DEFAULT_PORT, exit_with_lab: bool = False) -> int:
    """Run the dashboard until SIGTERM/SIGINT (or the lab goes down, with exit_with_lab)."""

    async def main(stop: StopSignal) -> int:
        runner = web.AppRunner(build_app(run_dir), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, HOST, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            print(f"pylab dashboard: {describe_oserror(exc, f'{HOST}:{port}')}")
            await runner.cleanup()
            return 1
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        watcher = asyncio.create_task(_watch_lab(run_dir, stop)) if exit_with_lab else None
        print(f"dashboard on http://{HOST}:{bound}/ (lab state from {run_dir})", flush=True)
        announce_ready("dashboard", HOST, bound, url=f"http://{HOST}:{bound}/")
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
        await runner.cleanup()
        return 0

    return run_daemon(main, "pylab dashboard")


def launch(run_dir: Path, port: int, tie_to_parent: bool, timeout: float = 15.0) -> str:
    """Start `pylab dashboard --exit-with-lab` beside a lab (for `pylab up --dashboard`).

    A separate process, so the lab's supervisor stays simple; it ends by itself when the lab
    goes down (and with its parent in the foreground). Returns its URL.
    """
    log_path = run_dir / "logs" / "dashboard.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as logf:
        offset = logf.tell()
        pop = subprocess.Popen(
            [sys.executable, "-m", "pylab", "--run-dir", str(run_dir), "dashboard",
             "--port", str(port), "--exit-with-lab"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent if tie_to_parent else None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pop.poll() is not None:
            raise SupervisorError("the dashboard did not start:\n"
                                  + log_path.read_text("utf-8", "replace")[offset:][-2000:])
        with open(log_path, "rb") as f:
            f.seek(offset)
            for line in f.read().decode("utf-8", "replace").splitlines():
                ready = parse_ready_line(line)
                if ready is not None:
                    return ready[3].get("url", f"http://{HOST}:{ready[2]}/")
        time.sleep(0.1)
    pop.kill()
    raise SupervisorError(f"the dashboard was not ready within {timeout:.0f}s "
                          f"(log: {log_path})")

