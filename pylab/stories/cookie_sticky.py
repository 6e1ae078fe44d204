"""Lab cookie-sticky: stickiness by route, the httpd ROUTEID recipe and mod_jk's jvmRoute.

`lb` (httpd mod_proxy_balancer, `stickysession=ROUTEID`) sets `ROUTEID=.node1` when it picks a
member for a client without one and follows it afterwards; when that member is down it fails
over and re-issues the cookie. `lbjk` (mod_jk, `sticky_session=1`, `sticky_session_force=1`)
follows the `.node1` suffix of JSESSIONID and answers 503 rather than fail over.
"""

from __future__ import annotations

import itertools
import time

from pylab.client import Browser, HttpResult
from pylab.stories import Story


def set_cookies(r: HttpResult, name: str) -> list[str]:
    return [v.split(";", 1)[0] for k, v in r.headers
            if k.lower() == "set-cookie" and v.startswith(name + "=")]


def browser_on(url: str, node: str, tries: int = 6) -> tuple[Browser, HttpResult]:
    """A fresh browser whose first request (round robin) landed on `node`."""
    for _ in range(tries):
        b = Browser()
        r = b.post(url, {"incr": "hits"})
        if r.status == 200 and r.json()["node"] == node:
            return b, r
    raise AssertionError(f"round robin never chose {node} in {tries} tries")


def story(s: Story) -> None:
    url = s.probe
    jk_url = s.sup.url("lbjk", "/api/session")

    fresh = [Browser().get(url).json()["node"] for _ in range(4)]
    s.check("clients without a cookie are balanced round robin (node1 / node2 alternate)",
            set(fresh) == {"node1", "node2"} and all(
                a != b for a, b in itertools.pairwise(fresh)), f"answers: {fresh}")

    alice, first = browser_on(url, "node1")
    s.check("lb answers a new client with Set-Cookie: ROUTEID=.node1 (the httpd recipe)",
            set_cookies(first, "ROUTEID") == ["ROUTEID=.node1"], str(first.headers))
    rs = [alice.post(url, {"incr": "hits"}) for _ in range(5)]
    s.check("with ROUTEID, every next request stays on node1 and the session lives on "
            "(hits 2..6), no cookie re-issued",
            [r.json()["node"] for r in rs] == ["node1"] * 5
            and [r.json()["value"] for r in rs] == [2, 3, 4, 5, 6]
            and not any(set_cookies(r, "ROUTEID") for r in rs),
            f"{[(r.json()['node'], r.json()['value']) for r in rs]}")

    bob, jfirst = browser_on(jk_url, "node1")
    route = jfirst.json()["session_id"].rpartition(".")[2]
    rs = [bob.post(jk_url, {"incr": "hits"}) for _ in range(4)]
    s.check("lbjk sets no cookie of its own: the .node1 jvmRoute suffix of JSESSIONID keeps "
            "bob on node1 (hits 2..5)",
            route == "node1" and not set_cookies(jfirst, "ROUTEID")
            and [r.json()["node"] for r in rs] == ["node1"] * 4
            and [r.json()["value"] for r in rs] == [2, 3, 4, 5],
            f"route {route}, {[(r.json()['node'], r.json()['value']) for r in rs]}")

    s.sup.kill("node1")
    r = alice.post(url, {"incr": "hits"})
    body = r.json() if r.status == 200 else {}
    s.check("kill -9 node1: lb fails alice over to node2 and re-issues ROUTEID=.node2",
            r.status == 200 and body.get("node") == "node2"
            and set_cookies(r, "ROUTEID") == ["ROUTEID=.node2"], f"{r.status} {body}")
    s.check("… with a new session: stickiness keeps a client on a node, it does not copy "
            "the session (hits back to 1)", body.get("value") == 1, f"{body}")
    r = bob.post(jk_url, {"incr": "hits"})
    s.check("lbjk, sticky_session_force: bob's node is down → 503, no failover",
            r.status == 503, f"status {r.status}")
    r = Browser().post(jk_url, {"incr": "hits"})
    s.check("lbjk still serves a client without a session (on node2)",
            r.status == 200 and r.json()["node"] == "node2", f"status {r.status}")

    s.sup.start("node1")
    deadline = time.monotonic() + 15  # the failed member gets a trial after fail_timeout
    r = bob.post(jk_url, {"incr": "hits"})
    while r.status != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        r = bob.post(jk_url, {"incr": "hits"})
    body = r.json() if r.status == 200 else {}
    s.check("restart node1: bob is served by node1 again, with a new session (node1 kept "
            "nothing in memory)", body.get("node") == "node1" and body.get("value") == 1,
            f"{r.status} {body}")
