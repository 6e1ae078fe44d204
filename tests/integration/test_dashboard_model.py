"""The dashboard's bookkeeping without processes: session ids, the tracer's verdicts, where
copies live, the VRRP view. (The same code against real labs: test_dashboard.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pylab.dashboard.state import parse_session_id, place_session, vrrp_view
from pylab.dashboard.tracer import Tracer, Visitor
from pylab.supervisor import ProcessState

BASE = "4DD0340CE6294FF2BBE802CD4CD039EC"


def test_session_id_parts() -> None:
    assert parse_session_id(f"{BASE}.node1") == {"base": BASE, "store": None,
                                                  "route": "node1"}
    assert parse_session_id(f"{BASE}-n2.node1") == {"base": BASE, "store": "n2",
                                                     "route": "node1"}
    assert parse_session_id(BASE) == {"base": BASE, "store": None, "route": None}


def test_tracer_verdicts() -> None:
    t, v = Tracer(), Visitor("alice")
    assert t._account(v, 200, "node1", f"{BASE}.node1", 1, None) == "new session"
    assert t._account(v, 200, "node1", f"{BASE}.node1", 2, None) == "kept"
    # JvmRouteBinderValve: same base, new route, the count goes on
    assert t._account(v, 200, "node2", f"{BASE}.node2", 3, None) == "kept, id now .node2"
    # msm: the store node changed
    assert t._account(v, 200, "node2", f"{BASE}-n1.node2", 4, None) == \
        "kept, id now -n1.node2"
    # another node that never heard of it
    other = "0" * 32 + ".node3"
    assert t._account(v, 200, "node3", other, 1, None) == "LOST (had 4 hits) — new session"
    assert t._account(v, 503, None, None, None, None) == "error 503"
    assert t._account(v, None, None, None, None, "ClientConnectorError") == \
        "ClientConnectorError"
    assert (v.requests, v.lost, v.moved, v.home, v.session_id) == (7, 1, 2, "node3", other)


def test_cookies_kept_and_dropped() -> None:
    v = Visitor("alice")
    Tracer._keep_cookie(v, "JSESSIONID=ABC.node1; Path=/; HttpOnly")
    Tracer._keep_cookie(v, "ROUTEID=.node1; Path=/")
    assert v.cookies == {"JSESSIONID": "ABC.node1", "ROUTEID": ".node1"}
    Tracer._keep_cookie(v, "ROUTEID=; Max-Age=0")
    assert v.cookies == {"JSESSIONID": "ABC.node1"}


def node(name: str, kind: str | None, state: str = "running",
         health: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "kind": "pynode", "state": state, "health": health,
            "manager": {"kind": kind} if kind else None}


def test_where_copies_live() -> None:
    sid = f"{BASE}.node1"
    delta = [node("node1", "delta"), node("node2", "delta"), node("node3", "delta")]
    assert place_session(sid, delta) == {"backup": "node2, node3", "store": None}
    delta[2]["state"] = "killed"
    assert place_session(sid, delta)["backup"] == "node2"
    backup = [node("node1", "backup"), node("node2", "backup"), node("node3", "backup")]
    assert place_session(sid, backup)["backup"] == "one of node2, node3"
    exact = [*backup[:2], node("node3", "backup", health={"backup_ids": [sid]})]
    assert place_session(sid, exact)["backup"] == "node3"
    msm = [node("node1", "memcached"), node("node2", "memcached")]
    assert place_session(f"{BASE}-n2.node1", msm) == {"backup": None, "store": "memcached n2"}
    redis = [node("node1", None, state="killed"), node("node2", "redis")]
    assert place_session(sid, redis) == {"backup": None, "store": "redis"}
    assert place_session(sid, [node("node1", "standard")]) == {"backup": None, "store": None}


def test_vrrp_view_reads_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"pid": 1, "instances": {"VI_1": {
        "state": "MASTER", "priority": 100, "vips": ["127.0.0.88/8"]}}}))
    vip = ProcessState("vip", "pyvrrp", ["python", "-m", "pyvrrp", "--forward",
                                         "127.0.0.1:9001", "--state-file", str(state)],
                       "127.0.0.88", 8080, "log", state="running", pid=0)
    lb1 = ProcessState("lb1", "pylb", [], "127.0.0.1", 9001, "log")
    view = vrrp_view(vip, None, [vip, lb1])
    # pid 0 is never alive: the view says DOWN whatever the file says
    assert view == {"state": "DOWN", "vip": "127.0.0.88/8", "priority": 100,
                    "balancer": "lb1"}
    vip.pid = os.getpid()  # a live process: now the file speaks
    assert vrrp_view(vip, None, [vip, lb1])["state"] == "MASTER"
    assert vrrp_view(vip, {"state": "backup"}, [vip, lb1])["state"] == "BACKUP"  # health wins
    vip.state = "stopped"
    assert vrrp_view(vip, {"state": "backup"}, [vip, lb1])["state"] == "DOWN"
