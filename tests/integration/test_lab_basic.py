"""The walking skeleton end to end: pylb round-robins over two real pynodes; rr-no-sharing
shows the seeds' starting problem (the session is lost on the other node)."""

from __future__ import annotations

import itertools

import pytest

from pylab.client import Browser
from pylab.stories import Step, run_story
from tests.conftest import StartLab

pytestmark = pytest.mark.integration


def test_requests_alternate_between_nodes(start_lab: StartLab) -> None:
    sup = start_lab("basic")
    url = sup.url(None, "/api/session")
    nodes = [Browser().get(url).json()["node"] for _ in range(6)]
    assert set(nodes) == {"node1", "node2"}
    assert all(a != b for a, b in itertools.pairwise(nodes)), nodes


def test_probe_contract_through_the_balancer(start_lab: StartLab) -> None:
    sup = start_lab("basic")
    url = sup.url(None, "/api/session")
    b = Browser()
    first = b.get(url)
    assert first.status == 200
    body = first.json()
    assert set(body) >= {"node", "session_id", "new", "attributes"} and body["new"] is True
    base, _, route = body["session_id"].partition(".")
    assert len(base) == 32 and base == base.upper() and route == body["node"]
    cookie = first.header("Set-Cookie") or ""
    assert cookie.startswith(f"JSESSIONID={body['session_id']}") and "HttpOnly" in cookie
    # a forged id is never adopted
    forged = Browser()
    forged.cookies["JSESSIONID"] = "0" * 32 + ".node1"
    answer = forged.get(url).json()
    assert answer["new"] is True and answer["session_id"] != "0" * 32 + ".node1"


def test_rr_no_sharing_loses_the_session(start_lab: StartLab) -> None:
    sup = start_lab("rr-no-sharing")
    steps: list[Step] = []
    run_story(sup, steps.append)
    assert steps and all(s.ok for s in steps), steps
    assert "other node" in steps[-1].text


def test_kill_one_node_costs_no_request(start_lab: StartLab) -> None:
    sup = start_lab("basic")
    steps: list[Step] = []
    run_story(sup, steps.append)
    assert [s.ok for s in steps] == [True, True, True], steps


def test_seed_002_page_through_the_balancer(start_lab: StartLab) -> None:
    sup = start_lab("basic")
    b = Browser()
    page = b.get(sup.url(None, "/index.jsp?dataName=color&dataValue=blue")).body.decode()
    assert "Cluster App Test" in page and "color = blue" in page and " ID " in page
