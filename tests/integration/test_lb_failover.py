"""Members and health through real processes: kill -9 under load, active checks, stickiness."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from pylab.topology import ProcessSpec
from tests.integration.test_lb_support import get, make_lab, pylb_spec, wait_until

pytestmark = pytest.mark.integration


def lb_toml(extra: str = "") -> str:
    return f'''[server]
listen = ["127.0.0.1:{{port}}"]
upstream = "tomcats"

[admin]
listen = "127.0.0.1:0"

[upstream.tomcats]
members = [
  {{ name = "node1", address = "{{node1.host}}:{{node1.port}}", route = "node1" }},
  {{ name = "node2", address = "{{node2.host}}:{{node2.port}}", route = "node2" }},
]
{extra}'''


def nodes() -> list[ProcessSpec]:
    return [ProcessSpec(n, "pynode", ["--route", n, "--port", "{port}"]) for n in
            ("node1", "node2")]


def load(addr: tuple[str, int], stop: threading.Event, results: list[tuple[int, str]],
         max_requests: int = 4000) -> None:
    """Keep-alive GETs until told to stop; records (status, node) or (0, error)."""
    conn = http.client.HTTPConnection(*addr, timeout=5)
    n = 0
    while not stop.is_set() and n < max_requests:
        n += 1
        try:
            conn.request("GET", "/-/health")
            resp = conn.getresponse()
            body = resp.read()
            results.append((resp.status, json.loads(body).get("node", "?")
                            if resp.status == 200 else body[:60].decode("latin-1")))
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(*addr, timeout=5)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            results.append((0, repr(exc)))
            conn.close()
            conn = http.client.HTTPConnection(*addr, timeout=5)
    conn.close()


def test_kill9_member_under_get_load_loses_nothing(start_lab) -> None:
    sup = start_lab(make_lab("lb-kill9", [*nodes(), pylb_spec("lb", lb_toml(),
                                                                after=["node1", "node2"])]))
    addr = sup.address("lb")
    stop = threading.Event()
    results: list[tuple[int, str]] = []
    threads = [threading.Thread(target=load, args=(addr, stop, results)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: len(results) > 200, 15)
        sup.kill("node1")  # kill -9 in the middle of the load
        mark = len(results)
        assert wait_until(lambda: len(results) > mark + 400, 15)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    after = [node for _, node in results[mark + 50:]]
    assert set(after) == {"node2"}


def test_active_health_check_takes_member_out_and_back(start_lab) -> None:
    toml = lb_toml('[upstream.tomcats.health]\ninterval = "100ms"\nrise = 2\nfall = 2\n'
                   'path = "/-/health"\n')
    sup = start_lab(make_lab("lb-health", [*nodes(), pylb_spec("lb", toml,
                                                                 after=["node1", "node2"])]))
    admin = sup.procs["lb"].ready_info["admin"]
    host, port = admin.rsplit(":", 1)

    def node1_state() -> dict[str, object]:
        body = json.loads(get((host, int(port)), "/-/health")[2])
        return next(m for m in body["upstreams"]["tomcats"] if m["name"] == "node1")

    assert node1_state()["healthy"] is True
    sup.stop("node1")
    assert wait_until(lambda: node1_state()["healthy"] is False, 10)
    # no request is even tried on node1 now: no failures are added
    before = node1_state()["failures"]
    for _ in range(10):
        assert json.loads(get(sup.address("lb"), "/-/health")[2])["node"] == "node2"
    assert node1_state()["failures"] == before
    sup.start("node1")
    assert wait_until(lambda: node1_state()["healthy"] is True, 10)
    seen = {json.loads(get(sup.address("lb"), "/-/health")[2])["node"] for _ in range(6)}
    assert seen == {"node1", "node2"}


def test_sticky_route_cookie_and_inserted_cookie(start_lab) -> None:
    toml = lb_toml('[upstream.tomcats.sticky]\ninsert = "ROUTEID"\nhttponly = true\n'
                   'indirect = true\nnocache = true\n')
    sup = start_lab(make_lab("lb-sticky", [*nodes(), pylb_spec("lb", toml,
                                                                 after=["node1", "node2"])]))
    addr = sup.address("lb")
    # route from the session id: JSESSIONID suffix, and ;jsessionid= in the path first
    for _ in range(4):
        st, _, body = get(addr, "/-/health", headers={"Cookie": "JSESSIONID=ABC.node2"})
        assert json.loads(body)["node"] == "node2"
    st, _, body = get(addr, "/api/session;jsessionid=X.node1",
                      headers={"Cookie": "JSESSIONID=ABC.node2"})
    assert json.loads(body)["node"] == "node1"
    # a new client gets ROUTEID=.nodeN and sticks to it
    st, hs, body = get(addr, "/-/health")
    cookie = hs["set-cookie"]
    assert cookie.startswith("ROUTEID=.") and "HttpOnly" in cookie
    assert hs["cache-control"] == "private"
    route = cookie.split(";")[0].split("=.", 1)[1]
    for _ in range(4):
        st, hs, body = get(addr, "/-/health", headers={"Cookie": f"ROUTEID=.{route}"})
        assert json.loads(body)["node"] == route and "set-cookie" not in hs
    # its member dies: fail over and re-issue the cookie
    sup.kill(route)
    st, hs, body = get(addr, "/-/health", headers={"Cookie": f"ROUTEID=.{route}"})
    other = json.loads(body)["node"]
    assert st == 200 and other != route
    assert hs["set-cookie"].startswith(f"ROUTEID=.{other}")


def test_sticky_force_answers_503(start_lab) -> None:
    toml = lb_toml('[upstream.tomcats.sticky]\nforce = true\n')
    sup = start_lab(make_lab("lb-force", [*nodes(), pylb_spec("lb", toml,
                                                                after=["node1", "node2"])]))
    sup.kill("node1")
    time.sleep(0.1)
    st, _, _ = get(sup.address("lb"), "/-/health", headers={"Cookie": "JSESSIONID=A.node1"})
    assert st == 503
    st, _, body = get(sup.address("lb"), "/-/health", headers={"Cookie": "JSESSIONID=A.node2"})
    assert st == 200 and json.loads(body)["node"] == "node2"
