"""A folder webapp deployed from web.toml, driven in-process through Node.handle: servlet
mapping, filters, listeners, static files, the session rules, and the servlet API."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from pyservlet.api import Request, Response
from pyservlet.config import ContextConfig, NodeConfig
from pyservlet.node import Node, build_node

SERVLETS = '''
from pyservlet.api import HttpServlet, Response
from pyservlet.filters import Filter


class Counter(HttpServlet):
    async def do_get(self, request):
        s = request.get_session(True)
        s.set_attribute("n", s.get_attribute("n", 0) + 1)
        return Response.json({"n": s.get_attribute("n"), "id": s.id,
                              "greeting": self.config.params.get("greeting")})

    async def do_post(self, request):
        s = request.get_session(False)
        if s is None:
            return Response(401, "login first")
        if request.param("action") == "login":
            request.change_session_id()
            s.set_attribute("user", request.param("user"))
        return Response.json({"id": s.id, "user": s.get_attribute("user")})


class Echo(HttpServlet):
    async def do_get(self, request):
        return Response(200, f"echo {request.servlet_path} {request.param('q')}",
                        "text/plain")


class Tag(Filter):
    async def do_filter(self, request, chain):
        if request.header("x-block"):
            return Response(403, "blocked by filter", "text/plain")
        response = await chain(request)
        response.set_header("X-Filtered", self.params.get("tag", "yes"))
        return response


class Audit:
    events = []

    def session_created(self, session):
        Audit.events.append(("created", session.id))

    def attribute_added(self, session, name, value):
        Audit.events.append(("added", name))
'''

WEB_TOML = '''
[webapp]
display_name = "shop"
context_path = "/shop"
distributable = true
session_timeout = 1
static = "static"
welcome_files = ["index.html"]

[[servlet]]
name = "counter"
class = ".servlets:Counter"
urls = ["/count", "/api/*"]
init = { greeting = "hi" }

[[servlet]]
class = ".servlets:Echo"
urls = ["*.do"]

[[filter]]
class = ".servlets:Tag"
urls = ["/api/*", "*.do"]
init = { tag = "api" }

[[listener]]
class = ".servlets:Audit"
'''


@pytest.fixture
def node(tmp_path: Path) -> Node:
    app = tmp_path / "shop"
    (app / "static" / "css").mkdir(parents=True)
    (app / "static" / "index.html").write_text("<h1>shop</h1>")
    (app / "static" / "css" / "a.css").write_text("body{}")
    (tmp_path / "secret.txt").write_text("secret")
    (app / "servlets.py").write_text(textwrap.dedent(SERVLETS))
    (app / "web.toml").write_text(WEB_TOML)
    clock = iter(float(i) for i in range(0, 10_000, 10))
    cfg = NodeConfig(route="n1", contexts=[ContextConfig(None, docbase=app)])
    return build_node(cfg, clock=lambda: next(clock))


def call(node: Node, method: str, target: str, headers: list[tuple[str, str]] | None = None,
         body: bytes = b"") -> Response:
    return asyncio.run(node.handle(Request(method, target, headers or [], body)))


def cookie_of(r: Response) -> str:
    return r.cookies[0].split(";")[0]


def test_servlet_mapping_session_and_cookie(node: Node) -> None:
    r = call(node, "GET", "/shop/count")
    data = json.loads(r.body)
    assert data["n"] == 1 and data["greeting"] == "hi" and data["id"].endswith(".n1")
    assert r.cookies == [f"JSESSIONID={data['id']}; Path=/shop; HttpOnly"]
    r2 = call(node, "GET", "/shop/api/x", [("Cookie", f"a=b; {cookie_of(r)}")])
    assert json.loads(r2.body)["n"] == 2 and r2.cookies == []
    assert dict(r2.headers)["X-Filtered"] == "api"
    r3 = call(node, "GET", f"/shop/count;jsessionid={data['id']}")   # URL rewriting
    assert json.loads(r3.body)["n"] == 3


def test_filters_only_on_their_patterns_and_can_answer(node: Node) -> None:
    assert "X-Filtered" not in dict(call(node, "GET", "/shop/count").headers)
    r = call(node, "GET", "/shop/x/y.do?q=1")
    assert r.body == b"echo /x/y.do 1" and dict(r.headers)["X-Filtered"] == "api"
    assert call(node, "GET", "/shop/a.do", [("X-Block", "1")]).status == 403


def test_listeners_from_web_toml(node: Node) -> None:
    audit = node.contexts[0].manager.events.listeners[0]
    audit.events.clear()
    call(node, "GET", "/shop/count")
    assert [e[0] for e in audit.events] == ["created", "added"]


def test_static_files_and_traversal(node: Node) -> None:
    r = call(node, "GET", "/shop/css/a.css")
    assert r.status == 200 and r.body == b"body{}" and "text/css" in dict(r.headers)[
        "Content-Type"]
    assert call(node, "GET", "/shop/").body == b"<h1>shop</h1>"
    assert call(node, "GET", "/shop/../secret.txt").status == 404
    assert call(node, "GET", "/shop/%2e%2e/%2e%2e/secret.txt").status == 404
    assert call(node, "GET", "/shop/nothing").status == 404
    assert call(node, "POST", "/shop/css/a.css").status == 405
    assert call(node, "GET", "/elsewhere").status == 404


def test_unknown_id_gets_new_id_and_login_changes_id(node: Node) -> None:
    forged = "4DD0340CE6294FF2BBE802CD4CD039EC.n1"
    r = call(node, "GET", "/shop/count", [("Cookie", f"JSESSIONID={forged}")])
    sid = json.loads(r.body)["id"]
    assert sid != forged and r.cookies[0].startswith(f"JSESSIONID={sid};")
    login = call(node, "POST", "/shop/count", [("Cookie", f"JSESSIONID={sid}"), (
        "Content-Type", "application/x-www-form-urlencoded")], b"action=login&user=alice")
    new = json.loads(login.body)["id"]
    assert new != sid and login.cookies[0].startswith(f"JSESSIONID={new};")
    # the pre-login id no longer names the session
    r2 = call(node, "POST", "/shop/count", [("Cookie", f"JSESSIONID={sid}")])
    assert r2.status == 401


def test_session_timeout_from_web_toml_expires(node: Node) -> None:
    r = call(node, "GET", "/shop/count")      # t=0; timeout 1 min, the clock steps 10 s
    c = cookie_of(r)
    for _ in range(3):
        assert json.loads(call(node, "GET", "/shop/count", [("Cookie", c)]).body)["n"] > 1
    m = node.contexts[0].manager
    assert m.sweep(10_000.0) == 1


def test_405_lists_allowed_methods_and_head_uses_get(node: Node) -> None:
    r = call(node, "DELETE", "/shop/count")
    assert r.status == 405 and dict(r.headers)["Allow"] == "GET, POST"
    assert call(node, "HEAD", "/shop/x.do").status == 200


def test_health_endpoint(node: Node) -> None:
    h = json.loads(call(node, "GET", "/-/health").body)
    assert h["status"] == "ok" and h["node"] == "n1" and "/shop" in h["contexts"]


def test_demo_probe_contract() -> None:
    node = build_node(NodeConfig.default("node7"))
    r = call(node, "GET", "/api/session")
    d = json.loads(r.body)
    assert d["node"] == "node7" and d["new"] is True and d["attributes"] == {}
    c = cookie_of(r)
    h = [("Cookie", c)]
    assert json.loads(call(node, "POST", "/api/session", h, b'{"set": {"k": "v"}}').body)[
        "attributes"] == {"k": "v"}
    assert json.loads(call(node, "POST", "/api/session", h, b'{"incr": "n"}').body)[
        "value"] == 1
    assert json.loads(call(node, "GET", "/api/session", h).body)["new"] is False
    assert call(node, "POST", "/api/session", h, b"[1]").status == 400
    assert call(node, "POST", "/api/session", h, b'{"invalidate": true}').status == 200
    assert json.loads(call(node, "GET", "/api/session", h).body)["new"] is True


def test_seed_pages() -> None:
    node = build_node(NodeConfig.default("tomcatA"))
    r = call(node, "GET", "/index.jsp?dataName=color&dataValue=red")
    page = r.body.decode()
    assert "Cluster App Test" in page and "color = red" in page and "tomcatA" in page
    sid = cookie_of(r).split("=", 1)[1]
    assert f"ID <span id=\"session-id\">{sid}</span>" in page
    t = call(node, "GET", "/test/index.jsp").body.decode()
    assert "<title>Tomcat tomcatA</title>" in t and "Created on" in t and "Session ID" in t
    line = call(node, "GET", "/sessionid.jsp").body.decode()
    assert "sessionID= " in line and ".tomcatA" in line


def test_max_active_sessions_answers_503() -> None:
    cfg = NodeConfig.default("n1")
    cfg.contexts[0].manager.data["max_active_sessions"] = 1
    node = build_node(cfg)
    assert call(node, "GET", "/api/session").status == 200
    r = call(node, "GET", "/api/session")
    assert r.status == 503 and b"too many active sessions" in r.body
    assert call(node, "GET", "/api/hello").status == 200   # no session needed: served


def test_node_valves_wrap_every_context_and_errors_release_the_session() -> None:
    from pyservlet.api import HttpServlet
    from pyservlet.filters import Filter

    seen: list[str] = []

    class AccessLog(Filter):
        async def do_filter(self, request: Request, chain):
            response = await chain(request)
            seen.append(f"{request.method} {request.path} {response.status}")
            return response

    class Boom(HttpServlet):
        async def do_get(self, request: Request) -> Response:
            request.get_session(True)
            raise ZeroDivisionError("bug in the app")

    node = build_node(NodeConfig.default("n1"))
    node.add_valve(AccessLog())
    root = next(c for c in node.contexts if c.path == "/")
    root.add_servlet("/boom", Boom())
    call(node, "GET", "/api/hello")
    call(node, "GET", "/test/")
    r = call(node, "GET", "/boom")
    assert r.status == 500 and seen == ["GET /api/hello 200", "GET /test/ 200",
                                        "GET /boom 500"]
    m = root.manager
    assert all(s.in_use == 0 for s in m.sessions.values())  # type: ignore[attr-defined]
    assert call(node, "GET", "/-/health").status == 200       # health is not logged
    assert len(seen) == 3


def test_response_splitting_is_refused() -> None:
    r = Response()
    with pytest.raises(ValueError):
        r.set_header("X-A", "1\r\nSet-Cookie: evil=1")
    with pytest.raises(ValueError):
        r.add_cookie("a", "b\r\nX: y")
    with pytest.raises(ValueError):
        r.add_cookie("a;b", "c")
    r.add_cookie("theme", "dark", "/shop", same_site="Lax")
    assert r.cookies == ["theme=dark; Path=/shop; HttpOnly; SameSite=Lax"]


def test_first_valid_of_several_session_cookies_wins(node: Node) -> None:
    r = call(node, "GET", "/shop/count")
    sid = json.loads(r.body)["id"]
    stale = "4DD0340CE6294FF2BBE802CD4CD039EC.n1"
    r2 = call(node, "GET", "/shop/count", [("Cookie", f"JSESSIONID={stale}; x=1"),
                                           ("Cookie", f"JSESSIONID={sid}")])
    assert json.loads(r2.body) == {"n": 2, "id": sid, "greeting": "hi"}
    assert r2.cookies == []                    # the valid one was presented: no new cookie
