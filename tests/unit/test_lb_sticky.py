"""Stickiness: route from ;jsessionid / JSESSIONID, inserted cookies, force vs failover."""

from __future__ import annotations

from pylb.balancing import Peer, Pick
from pylb.balancing.base import DRAIN, STOPPED
from pylb.balancing.round_robin import RoundRobin
from pylb.sticky import (
    Sticky,
    StickyConfig,
    cookie_value,
    path_param,
    route_of,
    strip_cookie,
)


def nodes() -> list[Peer]:
    return [Peer(f"node{i}", "127.0.0.1", 9000 + i, route=f"node{i}") for i in (1, 2, 3)]


def test_route_parsing() -> None:
    assert route_of(b"4DD0340CE6294FF2BBE802CD4CD039EC.node1") == "node1"
    assert route_of(b"ABC-n1.node2.extra") == "node2.extra"  # after the FIRST dot
    assert route_of(b"ABC") is None
    assert route_of(b"ABC.") is None
    assert route_of(b".node1") == "node1"  # the ROUTEID=.node1 recipe
    assert path_param(b"/app/x;jsessionid=AB.node2?q=1", b"jsessionid") == b"AB.node2"
    assert path_param(b"/app/x;JSESSIONID=AB.node2;foo=1/y", b"jsessionid") == b"AB.node2"
    assert path_param(b"/app/x?;jsessionid=AB.node2", b"jsessionid") is None
    assert cookie_value([b"a=1; JSESSIONID=X.node3", b"b=2"], b"JSESSIONID") == b"X.node3"
    assert cookie_value([b"xJSESSIONID=1"], b"JSESSIONID") is None
    assert strip_cookie(b"a=1; SERVERID=.n1; b=2", b"SERVERID") == b"a=1; b=2"


def test_path_param_checked_before_cookie() -> None:
    ps = nodes()
    st = Sticky(StickyConfig(), ps)
    route, ins = st.routes(b"/x;jsessionid=A.node2", [b"JSESSIONID=B.node3"])
    assert (route, ins) == ("node2", None)
    assert st.routes(b"/x", [b"JSESSIONID=B.node3"]) == ("node3", None)
    assert st.routes(b"/x", []) == (None, None)


def test_route_followed_and_counted() -> None:
    ps = nodes()
    bal = RoundRobin(ps)
    st = Sticky(StickyConfig(), ps)
    for _ in range(5):
        d = st.choose(bal, Pick(route="node3"), 0.0)
        assert d.peer is ps[2] and d.stuck and d.set_cookie is None
    assert ps[2].sticky_hits == 5


def test_failover_without_force_and_503_with_force() -> None:
    ps = nodes()
    bal = RoundRobin(ps)
    ps[1].down = True
    d = Sticky(StickyConfig(), ps).choose(bal, Pick(route="node2"), 0.0)
    assert d.peer is not None and d.peer is not ps[1] and not d.stuck
    d = Sticky(StickyConfig(force=True), ps).choose(bal, Pick(route="node2"), 0.0)
    assert d.peer is None and d.status == 503
    # unknown route: just balance
    d = Sticky(StickyConfig(force=True), ps).choose(bal, Pick(route="nodeX"), 0.0)
    assert d.peer is not None


def test_drained_member_keeps_stuck_clients_only() -> None:
    ps = nodes()
    bal = RoundRobin(ps)
    st = Sticky(StickyConfig(), ps)
    bal.set_state(ps[0], DRAIN)
    assert st.choose(bal, Pick(route="node1"), 0.0).peer is ps[0]
    assert all(st.choose(bal, Pick(), 0.0).peer is not ps[0] for _ in range(6))
    bal.set_state(ps[0], STOPPED)
    assert st.choose(bal, Pick(route="node1"), 0.0).peer is not ps[0]


def test_inserted_cookie_httpd_recipe_and_haproxy_options() -> None:
    ps = nodes()
    bal = RoundRobin(ps)
    cfg = StickyConfig(cookie=None, path_param=None, insert="ROUTEID", httponly=True,
                       secure=True, samesite="Lax", max_age=3600)
    st = Sticky(cfg, ps)
    d = st.choose(bal, Pick(), 0.0)
    assert d.peer is ps[0]
    assert d.set_cookie == (b"ROUTEID=.node1; Path=/; Max-Age=3600; HttpOnly; Secure; "
                            b"SameSite=Lax")
    route, ins = st.routes(b"/", [b"ROUTEID=.node2"])
    assert ins == "node2"
    d = st.choose(bal, Pick(route=route), 0.0, inserted=ins)
    assert d.peer is ps[1] and d.set_cookie is None  # valid cookie: not re-inserted
    ps[1].down = True
    d = st.choose(bal, Pick(route=route), 0.0, inserted=ins)
    assert d.peer is not None and d.peer is not ps[1]
    assert d.set_cookie is not None  # failover re-issues it
    assert d.set_cookie.startswith(b"ROUTEID=." + (d.peer.route or "").encode())
    haproxy = Sticky(StickyConfig(cookie=None, insert="SERVERID", prefix=""), ps)
    assert haproxy.set_cookie(ps[2]) == b"SERVERID=node3; Path=/"
    assert haproxy.routes(b"/", [b"SERVERID=node3"]) == (None, "node3")


def test_indirect_cuts_only_the_inserted_cookie() -> None:
    assert strip_cookie(b"a=1;  ROUTEID=.n1 ;b=2;", b"ROUTEID") == b"a=1;b=2;"
    assert strip_cookie(b"ROUTEID=.n1; a=1", b"ROUTEID") == b"a=1"
    assert strip_cookie(b"ROUTEID=.n1", b"ROUTEID") == b""
    assert strip_cookie(b"a=1;;  b=2", b"ROUTEID") == b"a=1;;  b=2"  # untouched, verbatim
    assert strip_cookie(b"XROUTEID=1; ROUTEIDX=2", b"ROUTEID") == b"XROUTEID=1; ROUTEIDX=2"
