"""A webapp context: a path, servlets by URL pattern, filters, static files and one session
manager.

Sessions are bound the Tomcat way through `pysession.binding.SessionBinding`: the
`;jsessionid=` path parameter first, then the session cookie; an unknown or forged id is
never adopted (a new session gets a new id); the cookie carries `Path=/ctx; HttpOnly` (Secure
and SameSite when configured) and is sent when the session is new or its id changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from pyservlet.api import HttpServlet, Request, Response
from pyservlet.filters import Filter, Next, compose, url_matches
from pyservlet.static import StaticFiles
from pysession.binding import CookieSettings, SessionBinding
from pysession.cookie_manager import SessionTooLarge
from pysession.manager import Manager, RequestInfo
from pysession.session import NotSerializableError

log = logging.getLogger("pynode.context")

SESSION_COOKIE = "JSESSIONID"


class Context:
    def __init__(self, path: str, manager: Manager, clock: Callable[[], float] = time.time,
                 cookie_secure: bool = False, cookie_same_site: str | None = None,
                 cookie_name: str | None = None, cookie_http_only: bool = True,
                 route: str | None = None, name: str = "") -> None:
        self.path = "/" if path in ("", "/") else "/" + path.strip("/")
        self.name = name or self.path
        self.manager = manager
        self.clock = clock
        self.route = route if route is not None else manager.route
        self.cookie = CookieSettings(cookie_name or manager.cookie_name, self.path,
                                     cookie_http_only, cookie_secure, cookie_same_site)
        self.exact: dict[str, HttpServlet] = {}
        self.prefix: list[tuple[str, HttpServlet]] = []
        self.suffix: list[tuple[str, HttpServlet]] = []
        self.default: HttpServlet | None = None
        self.filters: list[tuple[list[str], Filter]] = []
        self.servlets: list[HttpServlet] = []
        self.static: StaticFiles | None = None
        self.welcome_files: list[str] = []
        self.attributes: dict[str, object] = {}  # ServletContext attributes

    @property
    def cookie_secure(self) -> bool:
        return self.cookie.secure

    # -- deployment -------------------------------------------------------------------
    def add_servlet(self, pattern: str, servlet: HttpServlet) -> None:
        """`/exact`, `/prefix/*`, `*.ext`, or `/` (the default servlet)."""
        if servlet not in self.servlets:
            self.servlets.append(servlet)
        if pattern == "/":
            self.default = servlet
        elif pattern.endswith("/*"):
            self.prefix.append((pattern[:-2], servlet))
            self.prefix.sort(key=lambda p: -len(p[0]))
        elif pattern.startswith("*."):
            self.suffix.append((pattern[1:], servlet))
        else:
            self.exact[pattern] = servlet

    def add_filter(self, patterns: list[str], f: Filter) -> None:
        self.filters.append((patterns, f))

    def set_static(self, root: Path) -> None:
        self.static = StaticFiles(root)

    def matches(self, path: str) -> bool:
        return self.path == "/" or path == self.path or path.startswith(self.path + "/")

    def servlet_for(self, rel: str) -> HttpServlet | None:
        s = self.exact.get(rel)
        if s is not None:
            return s
        for prefix, servlet in self.prefix:
            if rel == prefix or rel.startswith(prefix + "/"):
                return servlet
        for ext, servlet in self.suffix:
            if rel.endswith(ext):
                return servlet
        if rel.endswith("/"):
            for wf in self.welcome_files:
                s = self.exact.get(rel + wf)
                if s is not None:
                    return s
        return self.default

    # -- requests ---------------------------------------------------------------------
    def requested_session_id(self, request: Request) -> str | None:
        if request.path_session_id and self.manager.url_rewriting:
            return request.path_session_id
        sid = request.cookies.get(self.cookie.name)
        if sid:
            request.session_id_from_cookie = True
        return sid

    async def handle(self, request: Request) -> Response:
        request.context = self
        rel = request.path[len(self.path):] if self.path != "/" else request.path
        rel = rel or "/"
        request.servlet_path = rel
        presented = self.requested_session_id(request)
        alternatives: list[str] = []
        if request.session_id_from_cookie and request.cookie_count(self.cookie.name) > 1:
            alternatives = request.cookie_values(self.cookie.name)[1:]
        binding = SessionBinding(self.manager, self.cookie, self.clock,
                                 RequestInfo(request.method, request.path, request.remote_addr),
                                 presented, alternatives)
        request._binding = binding
        try:
            await binding.begin()
            if self.filters:
                chain = compose([f for pats, f in self.filters
                                 if any(url_matches(p, rel) for p in pats)], self._dispatch)
                resp = await chain(request)
            else:
                resp = await self._dispatch(request)
        except (NotSerializableError, SessionTooLarge) as exc:
            resp = Response(500, f"{exc}\n", "text/plain")
        except Exception as exc:
            # SessionError (503 max active, store down with fail_closed, lock timeout...) or
            # any manager exception that says its status
            status = getattr(exc, "http_status", None)
            if isinstance(status, int):
                resp = Response(status, f"{exc}\n", "text/plain")
            else:
                # answered here, not by the connector, so the session is still committed
                # (and released: its in-use count must not leak)
                log.exception("unhandled error for %s %s", request.method, request.target)
                resp = Response(500, "Internal Server Error\n", "text/plain")
        try:
            cookie = await binding.end()
        except Exception as exc:
            log.warning("session commit failed for %s %s: %s", request.method, request.path,
                        exc)
            # a store-backed manager may say which status fits (409 conflict, 503 store down)
            code = getattr(exc, "http_status", 500)
            return Response(code if isinstance(code, int) else 500,
                            f"session could not be saved: {exc}\n", "text/plain")
        if cookie is not None:
            resp.cookies.append(cookie)
        return resp

    async def _dispatch(self, request: Request) -> Response:
        rel = request.servlet_path
        servlet = self.servlet_for(rel)
        if servlet is None:
            if self.static is not None:
                return self.static.serve(request, rel, self.welcome_files)
            if self.path != "/" and rel == "/" and request.path == self.path:
                r = Response(302, "")
                r.set_header("Location", self.path + "/")
                return r
            return Response(404, "Not Found\n", "text/plain")
        return await servlet.service(request)

    def chain_for(self, rel: str) -> Next:
        return compose([f for pats, f in self.filters
                        if any(url_matches(p, rel) for p in pats)], self._dispatch)
