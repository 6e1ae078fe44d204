"""pynode behind pylb with route stickiness (JSESSIONID=ID.nodeN → member with route nodeN):
a session stays on the node that made it, and the seed pages show node, session id,
created-on and attributes as the seeds do. Real processes through the supervisor."""

from __future__ import annotations

import re

import pytest

from pylab.client import Browser
from pylab.topology import ProcessSpec
from tests.conftest import StartLab, make_lab

pytestmark = pytest.mark.integration

LB_TOML = """
[server]
listen = ["{host}:{port}"]
upstream = "tomcats"

[admin]
listen = "127.0.0.1:0"

[upstream.tomcats]
balance = "round_robin"
members = [
  { name = "node1", address = "{node1.host}:{node1.port}", route = "node1" },
  { name = "node2", address = "{node2.host}:{node2.port}", route = "node2" },
]

[upstream.tomcats.sticky]
cookie = "JSESSIONID"
"""


def grab(page: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}">([^<]+)<', page)
    assert m, f"no #{element_id} in the page"
    return m.group(1)


def sticky_lab() -> list[ProcessSpec]:
    nodes = [ProcessSpec(n, "pynode", ["--route", n, "--port", "{port}"])
             for n in ("node1", "node2")]
    lb = ProcessSpec("lb", "pylb", ["serve", "-c", "{file:lb.toml}"], after=["node1", "node2"],
                     files={"lb.toml": LB_TOML})
    return [*nodes, lb]


def test_session_stays_on_its_node_and_seed_pages_show_it(start_lab: StartLab) -> None:
    sup = start_lab(make_lab("node-sticky", sticky_lab(), entry="lb"))
    probe = sup.url("lb", "/api/session")

    # several clients: each sticks to the node that created its session
    homes = set()
    for _ in range(4):
        b = Browser()
        first = b.get(probe).json()
        assert first["new"] is True and first["session_id"].endswith("." + first["node"])
        homes.add(first["node"])
        for i in range(1, 9):
            r = b.post(probe, {"incr": "n"}).json()
            assert (r["node"], r["session_id"], r["value"]) == (first["node"],
                                                                first["session_id"], i)
    assert homes == {"node1", "node2"}       # round robin places new sessions on both

    # seed 002's page: node, session id, created on, the attribute list and the form
    b = Browser()
    page = b.get(sup.url("lb", "/index.jsp?dataName=color&dataValue=blue")).body.decode()
    node, sid, created = grab(page, "node"), grab(page, "session-id"), grab(page, "created")
    assert sid.endswith("." + node) and "color = blue" in page and "<form" in page
    page2 = b.request("POST", sup.url("lb", "/index.jsp"), b"dataName=size&dataValue=L",
                      {"Content-Type": "application/x-www-form-urlencoded"}).body.decode()
    assert f'id="session-id">{sid}<' in page2 and f'id="created">{created}<' in page2
    assert "color = blue" in page2 and "size = L" in page2

    # seed 003's /test page: same Session ID and Created on across reloads
    t = Browser()
    p1 = t.get(sup.url("lb", "/test/")).body.decode()
    p2 = t.get(sup.url("lb", "/test/index.jsp")).body.decode()
    assert grab(p1, "session-id") == grab(p2, "session-id")
    assert grab(p1, "created") == grab(p2, "created")
    assert re.search(r"<title>Tomcat node[12]</title>", p1)

    # seed 004's line
    s = Browser()
    line1 = s.get(sup.url("lb", "/sessionid.jsp")).body.decode()
    line2 = s.get(sup.url("lb", "/sessionid.jsp")).body.decode()
    m = re.search(r"sessionID= ([0-9A-F]{32}\.node[12])", line1)
    assert m and m.group(1) in line2


def test_failover_to_the_other_node_gives_a_new_session_not_an_adopted_id(
        start_lab: StartLab) -> None:
    """In-memory sessions: when its node dies the balancer fails over and the other node
    answers with a NEW session id (it never adopts the presented one)."""
    sup = start_lab(make_lab("node-sticky-failover", sticky_lab(), entry="lb"))
    probe = sup.url("lb", "/api/session")
    b = Browser()
    first = b.get(probe).json()
    sup.kill(first["node"])
    after = b.get(probe).json()
    assert after["node"] != first["node"] and after["new"] is True
    assert after["session_id"] != first["session_id"]
    assert after["session_id"].endswith("." + after["node"])
