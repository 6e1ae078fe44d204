"""pysession for any aiohttp app: the same managers, the same Tomcat rules.

    from aiohttp import web
    from pysession import StandardManager
    from pysession.aiohttp import get_session, setup_sessions

    async def hello(request):
        session = get_session(request)            # created on first use, new id
        session.set_attribute("n", session.get_attribute("n", 0) + 1)
        return web.json_response({"n": session.get_attribute("n")})

    app = web.Application()
    setup_sessions(app, StandardManager(route="app1"))
    app.router.add_get("/", hello)

`setup_sessions` installs the middleware and ties the manager's lifecycle to the app's:
`start` on startup, `background` every `sweep_interval` seconds, `stop` on cleanup (save
files, store connections). The cycle per request is `pysession.binding.SessionBinding`
(docs/sessions.md): the presented id is looked up before the handler, a session is created
lazily with a fresh id, the commit runs after the handler (also when it raises an
`HTTPException`, which aiohttp treats as a response) and the Set-Cookie is added then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from pysession.binding import CookieSettings, SessionBinding
from pysession.manager import Manager, RequestInfo
from pysession.session import Session

log = logging.getLogger("pysession.aiohttp")

BINDING_KEY = "pysession.binding"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def session_middleware(manager: Manager, cookie: CookieSettings | None = None,
                       clock: Callable[[], float] = time.time) -> Any:
    settings = cookie or CookieSettings(manager.cookie_name)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        binding = SessionBinding(manager, settings, clock,
                                 RequestInfo(request.method, request.path,
                                             request.remote or ""),
                                 request.cookies.get(settings.name))
        request[BINDING_KEY] = binding
        try:
            await binding.begin()
            resp = await handler(request)
        except web.HTTPException as exc:
            header = await binding.end()
            if header is not None:
                exc.headers.add("Set-Cookie", header)
            raise
        except Exception as exc:
            status = getattr(exc, "http_status", None)
            await binding.end()
            if not isinstance(status, int):
                raise
            return web.Response(status=status, text=f"{exc}\n")
        except BaseException:
            await binding.end()
            raise
        try:
            header = await binding.end()
        except Exception as exc:
            status = getattr(exc, "http_status", None)
            if not isinstance(status, int):
                raise
            return web.Response(status=status, text=f"session could not be saved: {exc}\n")
        if header is not None:
            resp.headers.add("Set-Cookie", header)
        return resp

    return middleware


def _binding(request: web.Request) -> SessionBinding:
    try:
        b: SessionBinding = request[BINDING_KEY]
    except KeyError:
        raise RuntimeError("pysession middleware is not installed (setup_sessions)") from None
    return b


def get_session(request: web.Request, create: bool = True) -> Session | None:
    """The request's session; with `create`, a new one (new id) when there is none."""
    return _binding(request).get(create)


def new_session(request: web.Request) -> Session:
    """get_session that is never None (for type checkers)."""
    s = _binding(request).get(True)
    assert s is not None
    return s


def change_session_id(request: web.Request) -> str:
    """Call at login: the session keeps its attributes under a new id."""
    return _binding(request).change_id()


def setup_sessions(app: web.Application, manager: Manager,
                   cookie: CookieSettings | None = None,
                   clock: Callable[[], float] = time.time,
                   sweep_interval: float = 60.0) -> None:
    app.middlewares.append(session_middleware(manager, cookie, clock))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await manager.start(clock())

        async def sweeper() -> None:
            while True:
                await asyncio.sleep(sweep_interval)
                try:
                    await manager.background(clock())
                except Exception:
                    log.exception("session background processing failed")

        task = asyncio.get_running_loop().create_task(sweeper())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await manager.stop(clock())

    app.cleanup_ctx.append(lifecycle)
