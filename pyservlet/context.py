"""A webapp context: a path, servlets by URL pattern, and a session manager.

The context binds sessions to requests the Tomcat way: the `;jsessionid=` path parameter
first, then the `JSESSIONID` cookie; an unknown or forged id is never adopted (a new session
gets a new id); the cookie is set with `Path=/ctx; HttpOnly` when the session is new or its id
changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pyservlet.api import HttpServlet, Request, Response
from pysession.manager import Manager, SessionLimitExceeded

SESSION_COOKIE = "JSESSIONID"


class Context:
    def __init__(self, path: str, manager: Manager, clock: Callable[[], float] = time.time,
                 cookie_secure: bool = False, cookie_same_site: str | None = None) -> None:
        self.path = "/" if path in ("", "/") else "/" + path.strip("/")
        self.manager = manager
        self.clock = clock
        self.cookie_secure = cookie_secure
        self.cookie_same_site = cookie_same_site
        self.exact: dict[str, HttpServlet] = {}
        self.prefix: list[tuple[str, HttpServlet]] = []

    def add_servlet(self, pattern: str, servlet: HttpServlet) -> None:
        """`/exact`, `/prefix/*`, or `/` (default servlet)."""
        if pattern.endswith("/*"):
            self.prefix.append((pattern[:-2], servlet))
            self.prefix.sort(key=lambda p: -len(p[0]))
        elif pattern == "/":
            self.prefix.append(("", servlet))
            self.prefix.sort(key=lambda p: -len(p[0]))
        else:
            self.exact[pattern] = servlet

    def matches(self, path: str) -> bool:
        return self.path == "/" or path == self.path or path.startswith(self.path + "/")

    def _servlet_for(self, rel: str) -> HttpServlet | None:
        s = self.exact.get(rel)
        if s is not None:
            return s
        for prefix, servlet in self.prefix:
            if rel == prefix or rel.startswith(prefix + "/") or prefix == "":
                return servlet
        return None

    # -- sessions ---------------------------------------------------------------------
    def requested_session_id(self, request: Request) -> str | None:
        if request.path_session_id:
            return request.path_session_id
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            request.session_id_from_cookie = True
        return sid

    def session_for(self, request: Request, create: bool):  # type: ignore[no-untyped-def]
        now = self.clock()
        sid = self.requested_session_id(request)
        if sid:
            s = self.manager.find(sid, now)
            if s is not None:
                s.access(now)
                return s
        if not create:
            return None
        return self.manager.create(now)

    async def handle(self, request: Request) -> Response:
        request.context = self
        rel = request.path[len(self.path):] if self.path != "/" else request.path
        servlet = self._servlet_for(rel or "/")
        if servlet is None:
            return Response(404, "Not Found\n", "text/plain")
        request.servlet_path = rel
        try:
            resp = await servlet.service(request)
        except SessionLimitExceeded as exc:
            resp = Response(503, f"{exc}\n", "text/plain")
        self._finish_session(request, resp)
        return resp

    def _finish_session(self, request: Request, resp: Response) -> None:
        s = request.session
        if s is None:
            return
        presented = request.path_session_id or request.cookies.get(SESSION_COOKIE)
        now = self.clock()
        if s.valid and (s.is_new or presented != s.id):
            resp.add_cookie(SESSION_COOKIE, s.id, path=self.path, secure=self.cookie_secure,
                            same_site=self.cookie_same_site)
        self.manager.end_request(s, now)
