"""pysession inside a plain aiohttp app: a counter, a login that changes the session id
(fixation protection) and a logout — with the in-memory StandardManager, or the whole
session in an encrypted cookie with `--cookie-key BASE64`.

    python examples/aiohttp_app.py --port 8088
    curl -c jar -b jar localhost:8088/count           # {"count": 1, "session_id": "..."}
    curl -c jar -b jar -XPOST localhost:8088/login?user=alice
    curl -c jar -b jar -XPOST localhost:8088/logout

tests/integration/test_node_aiohttp_example.py runs it as a real process.
"""

from __future__ import annotations

import argparse
import base64
import sys

from aiohttp import web

from pysession import CookieSettings, Manager, StandardManager
from pysession.aiohttp import change_session_id, get_session, new_session, setup_sessions
from pysession.cookie_manager import CookieManager


async def count(request: web.Request) -> web.Response:
    s = new_session(request)
    n = int(s.get_attribute("count", 0)) + 1
    s.set_attribute("count", n)
    return web.json_response({"count": n, "session_id": s.id, "new": s.is_new,
                              "user": s.get_attribute("user")})


async def login(request: web.Request) -> web.Response:
    user = request.query.get("user", "")
    if not user:
        raise web.HTTPBadRequest(text="user= is required\n")
    s = new_session(request)
    old = s.id
    change_session_id(request)       # the pre-login id is now worthless
    s.set_attribute("user", user)
    return web.json_response({"user": user, "old_id": old, "session_id": s.id})


async def logout(request: web.Request) -> web.Response:
    s = get_session(request, create=False)
    if s is not None:
        s.invalidate()
    return web.json_response({"logged_out": s is not None})


def make_app(manager: Manager | None = None, secure_cookie: bool = False) -> web.Application:
    if manager is None:
        manager = StandardManager(route="app1", distributable=True)
    app = web.Application()
    setup_sessions(app, manager, CookieSettings(manager.cookie_name, "/", secure=secure_cookie,
                                                same_site="Lax"))
    app.router.add_get("/count", count)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8088)
    p.add_argument("--cookie-key", default=None,
                   help="base64 AES key: keep the whole session in an encrypted cookie")
    args = p.parse_args(argv)
    manager: Manager | None = None
    if args.cookie_key:
        manager = CookieManager([base64.b64decode(args.cookie_key)], route="app1")
    web.run_app(make_app(manager), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
