"""The demo webapp every pynode serves at `/`: the `/api/session` probe (a contract: labs,
tests and benchmarks drive sessions through it) and seed 002's cluster test page."""

from __future__ import annotations

import html
import json
from typing import Any

from pyservlet.api import HttpServlet, Request, Response
from pyservlet.context import Context
from pysession.session import NotSerializableError, Session


def _probe(node: str, s: Session, new: bool, **extra: Any) -> dict[str, Any]:
    return {"node": node, "session_id": s.id, "new": new, "attributes": s.attributes, **extra}


class SessionProbe(HttpServlet):
    """GET/POST /api/session — see DESIGN.md, 'Contracts'."""

    def __init__(self, node: str) -> None:
        self.node = node

    async def do_get(self, request: Request) -> Response:
        s = request.get_session(True)
        assert s is not None
        return Response.json(_probe(self.node, s, s.is_new))

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
        except NotSerializableError as exc:
            return Response.json({"error": str(exc)}, 400)
        return Response.json(_probe(self.node, s, new))


class ClusterTestPage(HttpServlet):
    """Seed 002's index.jsp: server info, session id, attribute list, a form to add one."""

    def __init__(self, node: str) -> None:
        self.node = node

    async def do_get(self, request: Request) -> Response:
        s = request.get_session(True)
        assert s is not None
        name = request.param("dataName")
        if name:
            s.set_attribute(name, request.param("dataValue", ""))
        host, port = request.local_addr
        rows = "".join(f"{html.escape(k)} = {html.escape(str(v))}<br>\n"
                       for k, v in sorted(s.attributes.items()))
        page = f"""<html><head><title>Cluster App Test</title></head>
<body>
Server Info: {html.escape(host)} : {port} ({html.escape(self.node)})<br>
<br> ID {html.escape(s.id)}<br>
<b>Session list</b><br>
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


def build(context: Context, node: str) -> Context:
    probe = SessionProbe(node)
    context.add_servlet("/api/session", probe)
    page = ClusterTestPage(node)
    context.add_servlet("/", page)
    context.add_servlet("/index.jsp", page)
    return context


def dumps(data: Any) -> str:
    return json.dumps(data)
