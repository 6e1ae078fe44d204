"""The lab dashboard against a real lab: its JSON API, its guards, and a real browser.

The dashboard is a process like any other, started through the supervisor (kind `command`,
READY line), pointed at the run directory of a lab the `start_lab` fixture started.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pylab.supervisor import Supervisor, SupervisorError
from pylab.topology import LAB_DIR, ProcessSpec
from tests.conftest import StartLab, make_lab

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def start_dashboard(start_lab: StartLab, lab: Supervisor) -> str:
    spec = ProcessSpec("dashboard", "command", args=[
        sys.executable, "-m", "pylab", "--run-dir", str(lab.run_dir), "dashboard",
        "--port", "{port}"], ready="line")
    dash = start_lab(make_lab("dashboard", [spec]))
    return dash.url("dashboard")


DashboardOn = Callable[[str], tuple[Supervisor, str]]


@pytest.fixture
def dashboard_on(start_lab: StartLab) -> Iterator[DashboardOn]:
    """`dashboard_on("basic")` → (lab, dashboard URL). At teardown each lab is also stopped
    through its state file: a process the dashboard restarted is its child, not ours."""
    labs: list[Supervisor] = []

    def start(name: str) -> tuple[Supervisor, str]:
        lab = start_lab(name)
        labs.append(lab)
        return lab, start_dashboard(start_lab, lab)

    yield start
    for lab in labs:
        with contextlib.suppress(SupervisorError):
            Supervisor.attach(lab.run_dir).down(timeout=5)


def state_of(lab: Supervisor, name: str) -> str:
    """The process state as `pylab status` in another shell sees it."""
    procs = {p["name"]: p for p in Supervisor.attach(lab.run_dir).status()["processes"]}
    return str(procs[name]["state"])


def call(url: str, method: str = "GET", body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def wait_state(base: str, ok: Callable[[dict[str, Any]], bool],
               timeout: float = 15) -> dict[str, Any]:
    """Poll /api/state until `ok(state)` (bounded); returns the last state either way."""
    deadline = time.monotonic() + timeout
    while True:
        _, state = call(base + "api/state")
        if ok(state) or time.monotonic() > deadline:
            return dict(state)
        time.sleep(0.1)


def token_of(base: str) -> str:
    _, page = call(base)
    m = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert m, page[:300]
    return m.group(1)


def test_state_tracer_and_actions_over_the_api(dashboard_on: DashboardOn) -> None:
    lab, base = dashboard_on("basic")
    token = token_of(base)
    hdr = {"X-CSRF-Token": token, "Content-Type": "application/json"}

    status, state = call(base + "api/state")
    assert status == 200 and state["lab"] == "basic" and state["entry"] == "lb"
    procs = {p["name"]: p for p in state["processes"]}
    assert {n: p["state"] for n, p in procs.items()} == {
        "node1": "running", "node2": "running", "lb": "running"}
    assert procs["node1"]["health"]["node"] == "node1"
    assert state["vip"] is None  # no pyvrrp in this lab

    status, _ = call(base + "api/trace", "POST", {"count": 4}, hdr)
    assert status == 200
    _, state = call(base + "api/state")
    records = state["trace"]["records"]
    assert [r["seq"] for r in records] == [4, 3, 2, 1]
    assert {r["node"] for r in records} == {"node1", "node2"}  # round robin, no stickiness
    assert all(r["path"][:2] == ["client", "lb"] and r["status"] == 200 for r in records)
    # basic replicates (DeltaManager): one session, counting on both nodes (the id's route
    # may follow the node that answered: JvmRouteBinderValve)
    assert records[-1]["outcome"] == "new session"
    assert all(r["outcome"].startswith("kept") for r in records[:-1]), records
    assert [r["value"] for r in records] == [4, 3, 2, 1]
    procs = {p["name"]: p for p in state["processes"]}
    assert procs["node1"]["requests"] == 2 and procs["node2"]["requests"] == 2
    assert procs["node1"]["manager"]["kind"] == "delta"
    alice = state["trace"]["visitors"][0]
    assert alice["name"] == "alice" and alice["home"] in ("node1", "node2")
    assert alice["session_id"].endswith("." + alice["home"]) and alice["lost"] == 0
    assert alice["backup"] == ("node2" if alice["home"] == "node1" else "node1")

    # guards: no token, wrong origin, wrong Host
    assert call(base + "api/process/node1/kill", "POST", {})[0] == 403
    assert call(base + "api/process/node1/kill", "POST", {},
                dict(hdr, Origin="http://evil.example"))[0] == 403
    assert call(base + "api/state", headers={"Host": "evil.example"})[0] == 421
    assert call(base + "api/process/nope/kill", "POST", {}, hdr)[0] == 404
    assert lab.is_alive("node1")

    status, answer = call(base + "api/process/node1/kill", "POST", {}, hdr)
    assert status == 200 and "SIGKILL" in answer["message"]
    deadline = time.monotonic() + 5
    while lab.is_alive("node1") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lab.is_alive("node1")
    _, state = call(base + "api/state")
    assert {p["name"]: p["state"] for p in state["processes"]}["node1"] == "killed"
    call(base + "api/trace", "POST", {"count": 3, "new_visitor": True}, hdr)
    _, state = call(base + "api/state")
    assert [r["node"] for r in state["trace"]["records"][:3]] == ["node2"] * 3

    status, answer = call(base + "api/process/node1/restart", "POST", {}, hdr)
    assert status == 200, answer
    _, state = call(base + "api/state")
    assert {p["name"]: p["state"] for p in state["processes"]}["node1"] == "running"
    assert state_of(lab, "node1") == "running"


def test_tracer_sees_a_lost_session(start_lab: StartLab) -> None:
    """rr-no-sharing: the other node does not know the session; the tracer says LOST."""
    lab = start_lab("rr-no-sharing")
    base = start_dashboard(start_lab, lab)
    call(base + "api/trace", "POST", {"count": 3},
         {"X-CSRF-Token": token_of(base), "Content-Type": "application/json"})
    _, state = call(base + "api/state")
    outcomes = [r["outcome"] for r in state["trace"]["records"]]
    assert outcomes[-1] == "new session" and all(o.startswith("LOST") for o in outcomes[:-1])
    assert state["trace"]["visitors"][0]["lost"] == 2


def test_dashboard_with_no_lab_running(start_lab: StartLab, tmp_path: Path) -> None:
    empty = Supervisor(make_lab("none", [ProcessSpec("x", "command")]), tmp_path / "empty")
    base = start_dashboard(start_lab, empty)
    status, state = call(base + "api/state")
    assert status == 200 and state["lab"] is None and "no lab is running" in state["message"]
    token = token_of(base)
    status, answer = call(base + "api/trace", "POST", {}, {"X-CSRF-Token": token})
    assert status == 409 and "no lab" in answer["error"]


def test_browser_kills_node1_and_the_session_survives(dashboard_on: DashboardOn,
                                                      tmp_path: Path) -> None:
    """Headless Chromium opens the dashboard of lab `delta-replication`, traces a visitor's
    requests (sticky to node1), clicks kill on node1, sees node1 killed and the session carry
    on elsewhere with every hit, then restarts node1 with its button. Saves screenshots under
    the test's tmp dir."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (./run test installs Debian's chromium)")
    lab, base = dashboard_on("delta-replication")
    expect = sync_api.expect
    expect.set_options(timeout=20_000)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base)
            expect(page.get_by_test_id("lab")).to_have_text("delta-replication")
            for n in ("node1", "node2", "node3"):
                expect(page.get_by_test_id(f"state-{n}")).to_have_text("running")

            page.get_by_test_id("send10").click()
            rows = page.get_by_test_id("trace-row")
            expect(rows).to_have_count(10)
            alice = page.get_by_test_id("session-alice").locator("td")
            # columns: visitor, id, home, backup, store, last node, hits, requests, lost
            expect(alice).to_have_text([
                "alice", re.compile(r"[0-9A-F]{32}\.node1"), "node1", "node2, node3", "\u2013",
                "node1", "10", "10", "0"])  # a fresh pylb's first pick is node1, then sticky
            page.screenshot(path=str(tmp_path / "dashboard-before-kill.png"), full_page=True)

            page.get_by_test_id("kill-node1").click()
            expect(page.get_by_test_id("state-node1")).to_have_text("killed")
            expect(page.get_by_test_id("message")).to_contain_text("SIGKILL to node1")
            assert state_of(lab, "node1") == "killed"

            page.get_by_test_id("send10").click()
            expect(rows).to_have_count(20)
            latest = [rows.nth(i).inner_text() for i in range(10)]
            assert all("\t200\t" in r and "node1" not in r.split("\t")[3] for r in latest), \
                latest
            assert all("\tkept" in r for r in latest), latest  # never LOST
            hits = [int(r.split("\t")[6]) for r in reversed(latest)]
            assert hits == list(range(11, 21)), hits  # every increment survived
            expect(alice.nth(6)).to_have_text("20")
            expect(alice.nth(8)).to_have_text("0")  # lost: none
            page.screenshot(path=str(tmp_path / "dashboard-node1-killed.png"), full_page=True)

            page.get_by_test_id("restart-node1").click()
            expect(page.get_by_test_id("state-node1")).to_have_text("running")
            assert state_of(lab, "node1") == "running"
        finally:
            browser.close()
    assert (tmp_path / "dashboard-node1-killed.png").stat().st_size > 10_000


def test_dashboard_shows_who_holds_the_vip(start_lab: StartLab) -> None:
    """Lab ha-vip (issue 7): the MASTER pyvrrp and the balancer it fronts are marked, and the
    tracer's path goes through that balancer; kill -9 the master: the backup's side."""
    if "ha-vip" not in {p.stem for p in LAB_DIR.glob("*.toml")}:
        pytest.skip("lab ha-vip is not there")
    lab = start_lab("ha-vip")
    base = start_dashboard(start_lab, lab)
    hdr = {"X-CSRF-Token": token_of(base), "Content-Type": "application/json"}
    state = wait_state(base, lambda st: (st["vip"] or {}).get("holder") == "vip")
    assert state["vip"]["holder"] == "vip" and state["vip"]["balancer"] == "lb1"
    procs = {p["name"]: p for p in state["processes"]}
    assert procs["lb1"]["holds_vip"] and not procs["lb2"]["holds_vip"]
    assert procs["vip-backup"]["vrrp"]["state"] == "BACKUP"
    call(base + "api/trace", "POST", {"count": 2}, hdr)
    _, state = call(base + "api/state")
    assert all(r["path"][:3] == ["client", "vip", "lb1"] for r in state["trace"]["records"])

    assert call(base + "api/process/vip/kill", "POST", {}, hdr)[0] == 200
    # Master_Down = 3 * advert_int + skew, about 3.6 s
    state = wait_state(base, lambda st: (st["vip"] or {}).get("holder") == "vip-backup")
    assert state["vip"]["holder"] == "vip-backup" and state["vip"]["balancer"] == "lb2"
    procs = {p["name"]: p for p in state["processes"]}
    assert procs["vip"]["vrrp"]["state"] == "DOWN" and procs["lb2"]["holds_vip"]
