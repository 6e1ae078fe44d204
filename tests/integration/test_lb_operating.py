"""Operating pylb: SIGHUP reload under load, drain surviving it, graceful stop, workers,
manager JSON API protections and /metrics."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_lb_support import (
    free_ports,
    get,
    make_lab,
    nginx_spec,
    pylb_spec,
    wait_until,
)

pytestmark = pytest.mark.integration

AUTH = "Basic " + base64.b64encode(b"admin:s3cret").decode()


def members_conf(ports: list[int]) -> str:
    return "".join(
        f'  server {{ listen 127.0.0.1:{p}; keepalive_requests 100000; '
        f'location /slow {{ echo_sleep 1; echo "m{i + 1} slow"; }} '
        f'location / {{ return 200 "m{i + 1}"; }} }}\n'
        for i, p in enumerate(ports)) + "  server { listen 127.0.0.1:{port}; return 200; }\n"


def lb_conf(ports: list[int], keepalive_timeout: str = "75s", listen: str = "{port}") -> str:
    ms = ",\n".join(f'  {{ name = "m{i + 1}", address = "127.0.0.1:{p}" }}'
                    for i, p in enumerate(ports))
    return f'''[server]
listen = ["127.0.0.1:{listen}"]
keepalive_timeout = "{keepalive_timeout}"

[admin]
listen = "127.0.0.1:0"
user = "admin"
password = "s3cret"

[upstream.app]
members = [
{ms}
]
'''


def admin_addr(sup: Any) -> tuple[str, int]:
    host, port = sup.procs["lb"].ready_info["admin"].rsplit(":", 1)
    return host, int(port)


def api(sup: Any, method: str = "GET", path: str = "/api/upstreams",
        body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*admin_addr(sup), timeout=5)
    hs = {"Authorization": AUTH, **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hs["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=hs)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode()


def set_member(sup: Any, member: str, **change: Any) -> None:
    _, listing = api(sup)
    st, out = api(sup, "POST", f"/api/upstreams/app/members/{member}", change,
                  {"X-CSRF-Token": listing["csrf"]})
    assert st == 200, out


def state_of(sup: Any, member: str) -> dict[str, Any]:
    _, listing = api(sup)
    return next(m for m in listing["upstreams"]["app"] if m["name"] == member)


def load(addr: tuple[str, int], stop: threading.Event, out: list[tuple[int, str]],
         limit: int = 20000) -> None:
    conn = http.client.HTTPConnection(*addr, timeout=5)
    for _ in range(limit):
        if stop.is_set():
            break
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            out.append((resp.status, resp.read().decode()))
            if (resp.getheader("connection") or "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(*addr, timeout=5)
        except (OSError, http.client.HTTPException) as exc:
            out.append((0, repr(exc)))
            conn.close()
            conn = http.client.HTTPConnection(*addr, timeout=5)
    conn.close()


@pytest.fixture
def lab(start_lab, tmp_path):
    ports = free_ports(2)
    sup = start_lab(make_lab("lb-ops", [nginx_spec("nginx", members_conf(ports), echo=True),
                                         pylb_spec("lb", lb_conf(ports), after=["nginx"])]))
    sup.member_ports = ports
    return sup


def test_reload_under_load_drops_nothing_and_keeps_drain(lab) -> None:
    addr = lab.address("lb")
    set_member(lab, "m1", state="drain", weight=3)
    stop = threading.Event()
    results: list[tuple[int, str]] = []
    threads = [threading.Thread(target=load, args=(addr, stop, results)) for _ in range(3)]
    for t in threads:
        t.start()
    conf = Path(lab.run_dir) / "lb" / "lb.toml"
    try:
        for i in range(4):
            mark = len(results)
            conf.write_text(lb_conf(lab.member_ports, keepalive_timeout=f"{60 + i}s",
                                    listen=str(addr[1])))
            lab.kill("lb", signal.SIGHUP)
            assert wait_until(lambda m=mark: len(results) > m + 150, 15)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert lab.is_alive("lb")
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    assert {body for _, body in results} == {"m2"}  # drained m1 took nothing new
    m1 = state_of(lab, "m1")
    assert (m1["state"], m1["weight"]) == ("drain", 3)
    assert "reloaded" in Path(lab.procs["lb"].log).read_text()


def test_bad_config_on_reload_keeps_running(lab) -> None:
    conf = Path(lab.run_dir) / "lb" / "lb.toml"
    conf.write_text("[server]\nlisten = 12\n")
    lab.kill("lb", signal.SIGHUP)
    assert wait_until(lambda: "reload refused" in Path(lab.procs["lb"].log).read_text(), 10)
    assert get(lab.address("lb"), "/")[0] == 200


def test_sigterm_finishes_in_flight_request(lab) -> None:
    addr = lab.address("lb")
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(get(addr, "/slow", timeout=10)))
    t.start()
    assert wait_until(lambda: state_of(lab, "m1")["active"] + state_of(lab, "m2")["active"]
                      > 0, 5)
    lab.kill("lb", signal.SIGTERM)
    t.join(10)
    assert out and out[0][0] == 200 and out[0][2].endswith(b"slow\n")


def test_admin_api_protections_and_metrics(lab) -> None:
    host, port = admin_addr(lab)
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", "/api/upstreams")
    assert conn.getresponse().status == 401  # no credentials
    conn.close()
    st, _ = api(lab, headers={"Authorization": "Basic " +
                              base64.b64encode(b"admin:wrong").decode()})
    assert st == 401
    st, out = api(lab, "POST", "/api/upstreams/app/members/m1", {"state": "drain"})
    assert st == 403 and "CSRF" in out  # credentials but no token
    st, out = api(lab, "POST", "/api/upstreams/app/members/m1", {"state": "drain"},
                  {"X-CSRF-Token": "forged"})
    assert st == 403
    _, listing = api(lab)
    st, out = api(lab, "POST", "/api/upstreams/app/members/m1", {"state": "bogus"},
                  {"X-CSRF-Token": listing["csrf"]})
    assert st == 400 and "unknown state" in out["error"]
    st, out = api(lab, "POST", "/api/upstreams/app/members/nope", {"state": "drain"},
                  {"X-CSRF-Token": listing["csrf"]})
    assert st == 400
    for _ in range(4):
        get(lab.address("lb"), "/")
    st, text = api(lab, path="/metrics", headers={"Authorization": ""})
    assert st == 200
    assert 'pylb_member_requests_total{member="m1",upstream="app"} 2.0' in text
    assert "pylb_requests_total 4.0" in text
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", "/-/health")
    assert conn.getresponse().status == 200
    conn.close()


def test_workers_share_drain_state(start_lab) -> None:
    ports = free_ports(3)
    lb = pylb_spec("lb", lb_conf(ports[:2], listen=str(ports[2])), after=["nginx"])
    lb.args += ["--workers", "2", "--run-dir", "{rundir}/lbrun"]
    sup = start_lab(make_lab("lb-workers", [nginx_spec("nginx", members_conf(ports[:2]),
                                                       echo=True), lb]))
    addr = ("127.0.0.1", ports[2])
    assert sup.procs["lb"].ready_info.get("workers") == "2"
    bodies = [get(addr, "/")[2] for _ in range(40)]  # new connections: both workers serve
    assert set(bodies) == {b"m1", b"m2"}
    set_member(sup, "m1", state="drain")
    assert wait_until(lambda: all(get(addr, "/")[2] == b"m2" for _ in range(10)), 5)
    assert {get(addr, "/")[2] for _ in range(40)} == {b"m2"}
    # counters from both workers add up on the master's manager
    assert wait_until(lambda: sum(m["requests"] for m in api(sup)[1]["upstreams"]["app"])
                      >= 90, 5)
    sup.kill("lb", signal.SIGHUP)  # reload reaches the workers; drain still holds
    assert wait_until(lambda: "reloaded" in Path(sup.procs["lb"].log).read_text(), 5)
    assert {get(addr, "/")[2] for _ in range(20)} == {b"m2"}
