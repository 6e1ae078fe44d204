"""Servlets of the demo webapp: the `/api/session` probe (DESIGN.md, 'Contracts'), seed 002's
cluster test page, seed 004's session-id line and a session-free hello (benchmarks)."""

from __future__ import annotations

import html
from typing import Any

from pyservlet.api import HttpServlet, Request, Response
from pysession.cookie_manager import SessionTooLarge
from pysession.session import NotSerializableError, Session


class DemoServlet(HttpServlet):
    @property
    def node(self) -> str:
        return (self.config.route if self.config is not None else None) or "-"


def probe_body(node: str, s: Session, new: bool, **extra: Any) -> dict[str, Any]:
    return {"node": node, "session_id": s.id, "new": new, "attributes": s.attributes,
            "created": s.get_creation_time(), **extra}


class SessionProbe(DemoServlet):
    """GET: the session (made when absent or unknown). POST JSON: {"set": {...}},
    {"incr": "name"}, {"invalidate": true}, {"login": "user"} (new id: fixation protection)."""

    async def do_get(self, request: Request) -> Response:
        s = request.get_session(True)
        assert s is not None
        return Response.json(probe_body(self.node, s, s.is_new))

    async def do_post(self, request: Request) -> Response:
        try:
            cmd = request.json()
        except (ValueError, UnicodeDecodeError):
            return Response.json({"error": "body must be JSON"}, 400)
        if not isinstance(cmd, dict):
            return Response.json({"error": "body must be a JSON object"}, 400)
        s = request.get_session(True)
        assert s is not None
        new = s.is_new
        if cmd.get("invalidate"):
            sid = s.id
            s.invalidate()
            return Response.json({"node": self.node, "session_id": sid, "invalidated": True})
        try:
            user = cmd.get("login")
            if isinstance(user, str):
                request.change_session_id()
                s.set_principal(user)
                s.set_attribute("user", user)
            sets = cmd.get("set")
            if isinstance(sets, dict):
                for k, v in sets.items():
                    s.set_attribute(str(k), v)
            name = cmd.get("incr")
            if isinstance(name, str):
                cur = s.get_attribute(name, 0)
                value = (cur if isinstance(cur, int) else 0) + 1
                s.set_attribute(name, value)
                return Response.json({"value": value, "node": self.node, "session_id": s.id,
                                      "new": new})
        except (NotSerializableError, SessionTooLarge) as exc:
            return Response.json({"error": str(exc)}, 400)
        return Response.json(probe_body(self.node, s, new))


class Hello(DemoServlet):
    """Seed 002's first test page: no session at all (the benchmark's `nosession`)."""

    async def do_get(self, request: Request) -> Response:
        return Response(200, f"Hello, www.17rumen.com ({self.node})\n", "text/plain")


class ClusterTestPage(DemoServlet):
    """Seed 002's index.jsp: server info, session id, attribute list, a form to add one."""

    async def do_get(self, request: Request) -> Response:
        s = request.get_session(True)
        assert s is not None
        name = request.param("dataName")
        error = ""
        if name:
            try:
                s.set_attribute(name, request.param("dataValue", ""))
            except (NotSerializableError, SessionTooLarge) as exc:
                error = f"<p class=error>{html.escape(str(exc))}</p>\n"
        host, port = request.local_addr
        rows = "".join(f"{html.escape(k)} = {html.escape(str(s.get_attribute(k)))}<br>\n"
                       for k in sorted(s.attribute_names()))
        page = f"""<html><head><title>Cluster App Test</title></head>
<body>
Server Info: {html.escape(host)} : {port}<br>
Node: <span id="node">{html.escape(self.node)}</span><br>
<br> ID <span id="session-id">{html.escape(s.id)}</span><br>
Created on <span id="created">{s.get_creation_time()}</span><br>
{error}<b>Session list</b><br>
{rows}<form action="index.jsp" method="POST">
Name: <input type=text size=20 name="dataName"><br>
Value: <input type=text size=20 name="dataValue"><br>
<input type=submit>
</form>
</body>
</html>
"""
        return Response(200, page)

    do_post = do_get


class SessionIdLine(DemoServlet):
    """Seed 004: `sessionID= <%=session.getId()%>` added to the body of index.jsp."""

    async def do_get(self, request: Request) -> Response:
        s = request.get_session(True)
        assert s is not None
        return Response(200, f"<html><body>\nsessionID= {html.escape(s.id)}\n"
                             f"<br>node= {html.escape(self.node)}\n</body></html>\n")
