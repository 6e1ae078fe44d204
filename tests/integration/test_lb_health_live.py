"""Health through real processes: passive health shared by `--workers` (nginx `zone`), and
slow start after an active check brings a member back."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from pylab.supervisor import Supervisor
from pylab.topology import ProcessSpec
from tests.integration.test_lb_support import (
    free_ports,
    get,
    make_lab,
    nginx_spec,
    pylb_spec,
    wait_until,
)

pytestmark = pytest.mark.integration


def member(name: str) -> ProcessSpec:
    """One nginx per member, so one can be killed alone; it answers its own name."""
    return nginx_spec(name, f'  server {{ listen 127.0.0.1:{{port}}; '
                            f'location / {{ return 200 "{name}"; }} }}\n')


def lb_toml(listen: str, member_opts: str = "", extra: str = "") -> str:
    ms = ",\n".join(f'  {{ name = "{m}", address = "{{{m}.host}}:{{{m}.port}}"{member_opts} }}'
                    for m in ("m1", "m2"))
    return f'''[server]
listen = ["127.0.0.1:{listen}"]

[admin]
listen = "127.0.0.1:0"

[upstream.app]
members = [
{ms}
]
{extra}'''


def admin_members(sup: Supervisor) -> dict[str, dict[str, Any]]:
    host, port = sup.procs["lb"].ready_info["admin"].rsplit(":", 1)
    body = json.loads(get((host, int(port)), "/-/health")[2])
    return {m["name"]: m for m in body["upstreams"]["app"]}


# --- passive health shared between workers ----------------------------------------------------

def worker_counters(run: Path) -> dict[str, dict[str, dict[str, int]]]:
    """{"worker-0": {"m1": {"requests": .., "failures": ..}, ...}, ...} from the snapshots
    each worker publishes in the run dir."""
    out = {}
    for f in sorted(run.glob("worker-*.json")):
        try:
            out[f.stem] = json.loads(f.read_text())["members"]["app"]
        except (OSError, ValueError, KeyError):
            continue
    return out


def total(counters: dict[str, dict[str, dict[str, int]]], m: str, k: str) -> int:
    return sum(w[m][k] for w in counters.values())


def settled(run: Path, m2_requests: int) -> dict[str, dict[str, dict[str, int]]]:
    """The snapshots once both workers have published `m2_requests` requests to m2."""
    got: dict[str, dict[str, dict[str, int]]] = {}

    def check() -> bool:
        nonlocal got
        got = worker_counters(run)
        return len(got) == 2 and total(got, "m2", "requests") == m2_requests
    assert wait_until(check, 10), got
    return got


def workers_of(master: int) -> dict[int, int]:
    """{worker index: pid} of the master's live children."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if fields[1] == str(master) and fields[0] not in ("Z", "X") and \
                b"--worker-index" in argv:
            out[int(argv[argv.index(b"--worker-index") + 1])] = int(stat.parent.name)
    return out


def gets(addr: tuple[str, int], n: int) -> list[bytes]:
    """`n` GETs one after another, each on a fresh connection (so SO_REUSEPORT spreads them
    over the workers); every one must succeed."""
    out = []
    for _ in range(n):
        status, _, body = get(addr, "/")
        assert status == 200, (status, body)
        out.append(body)
    return out


def test_workers_share_passive_health(start_lab) -> None:
    """max_fails=1, fail_timeout=30s, two workers, m1 killed with -9.

    The client sends its GETs strictly one after another, and pylb records a failed attempt
    on the board before it retries on m2 and answers, so no request is ever in flight in one
    worker while the first failure is recorded in the other. Hence exactly one failed attempt
    on m1 in total (max_fails times 1, no in-flight allowance needed). Without the shared board it
    would be one per worker: each worker's round robin offers m1 one of its first two picks,
    and the test checks both workers served at least two requests afterwards.
    """
    listen = free_ports(1)[0]
    lb = pylb_spec("lb", lb_toml(str(listen), ', max_fails = 1, fail_timeout = "30s"'),
                   after=["m1", "m2"])
    lb.args += ["--workers", "2", "--run-dir", "{rundir}/lbrun"]
    sup = start_lab(make_lab("lb-shared-health", [member("m1"), member("m2"), lb]))
    run = sup.run_dir / "lbrun"
    addr = ("127.0.0.1", listen)
    assert set(gets(addr, 20)) == {b"m1", b"m2"}
    assert wait_until(lambda: sum(total(worker_counters(run), m, "requests")
                                  for m in ("m1", "m2")) == 20, 10)
    before = worker_counters(run)
    m2_before = total(before, "m2", "requests")

    sup.kill("m1")  # kill -9
    assert gets(addr, 40) == [b"m2"] * 40  # 0 failed client requests
    after = settled(run, m2_before + 40)
    served = {w: after[w]["m2"]["requests"] - before[w]["m2"]["requests"] for w in after}
    assert all(n >= 2 for n in served.values()), served  # both workers had their chances
    assert total(after, "m1", "failures") - total(before, "m1", "failures") == 1, after
    # the master's view (manager page / API) reads the same board
    assert wait_until(lambda: admin_members(sup)["m1"]["usable"] is False, 5)
    assert admin_members(sup)["m1"]["fails"] == 1

    # SIGHUP reload (the master re-lays out the board, workers re-bind): still out
    sup.kill("lb", signal.SIGHUP)
    assert wait_until(lambda: "(and 2 workers)" in Path(sup.procs["lb"].log).read_text(), 5)
    assert gets(addr, 20) == [b"m2"] * 20
    after_reload = settled(run, m2_before + 60)
    assert total(after_reload, "m1", "failures") == total(after, "m1", "failures")

    # a worker killed and restarted by the master starts from the board, not from scratch
    pids = workers_of(sup.procs["lb"].pid)
    assert sorted(pids) == [0, 1], pids
    os.kill(pids[0], signal.SIGKILL)
    snapshot = run / "worker-0.json"
    gone = snapshot.stat().st_mtime
    assert wait_until(lambda: workers_of(sup.procs["lb"].pid).get(0) not in (None, pids[0])
                      and snapshot.stat().st_mtime > gone + 0.2, 10)
    survivor = worker_counters(run)["worker-1"]
    assert gets(addr, 30) == [b"m2"] * 30
    final: dict[str, dict[str, dict[str, int]]] = {}

    def restarted_counted() -> bool:
        nonlocal final
        final = worker_counters(run)
        return (final["worker-0"]["m2"]["requests"] + final["worker-1"]["m2"]["requests"]
                - survivor["m2"]["requests"]) == 30
    assert wait_until(restarted_counted, 10), final
    assert final["worker-0"]["m2"]["requests"] >= 2, final  # the new worker served some
    assert final["worker-0"]["m1"]["failures"] == 0, final
    assert final["worker-1"]["m1"]["failures"] == survivor["m1"]["failures"], final


# --- slow start ---------------------------------------------------------------------------------

SLOW_START = 6.0
WINDOW = 20


def workers_polled_since_state(run: Path) -> bool:
    """Each worker polls `state.json` just before it writes its `worker-I.json`: a snapshot
    newer than the state means that worker has applied it."""
    state = (run / "state.json").stat().st_mtime_ns
    snaps = list(run.glob("worker-*.json"))
    return len(snaps) == 2 and all(f.stat().st_mtime_ns > state for f in snaps)


def share_of_m1(addr: tuple[str, int], n: int = WINDOW) -> float:
    conn = http.client.HTTPConnection(*addr, timeout=5)
    try:
        bodies = []
        for _ in range(n):
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 200
            bodies.append(resp.read())
    finally:
        conn.close()
    return bodies.count(b"m1") / n


@pytest.mark.parametrize("workers", [1, 2])
def test_slow_start_ramps_a_recovered_member_back_up(start_lab, workers: int) -> None:
    """weights 10:10, slow_start 6 s (with `--workers 2` the master's checks publish the cap
    with the member's health, and each worker ramps it the same way). Right after m1 is back
    its cap is ceil(10·t/6) of 10, so a window of 20 requests gives it about cap/(cap+10) of
    them; after slow_start it is back at its full half. Windows of 20 keep-alive GETs go out
    every 0.25 s during the ramp (the `effective` weight climbs back by one per pick, as
    nginx's, so the ramp needs traffic). The bound for the first window is computed from how
    long after the restart that window actually ended (a loaded box only makes the bound
    looser), and the test insists that bound is still well under the full share."""
    health = (f'\n[upstream.app.health]\ninterval = "100ms"\ntimeout = "1s"\nrise = 1\n'
              f'fall = 1\npath = "/"\nslow_start = "{SLOW_START}s"\n')
    listen = str(free_ports(1)[0]) if workers > 1 else "{port}"
    lb = pylb_spec("lb", lb_toml(listen, ", weight = 10", health), after=["m1", "m2"])
    if workers > 1:
        lb.args += ["--workers", str(workers), "--run-dir", "{rundir}/lbrun"]
    sup = start_lab(make_lab("lb-slow-start", [member("m1"), member("m2"), lb]))
    addr = sup.address("lb")
    assert share_of_m1(addr) == 0.5
    sup.stop("m1")
    assert wait_until(lambda: admin_members(sup)["m1"]["healthy"] is False, 5)
    if workers > 1:  # every worker has applied "m1 down" (else it never sees it come back)
        assert wait_until(lambda: workers_polled_since_state(sup.run_dir / "lbrun"), 5)
    assert share_of_m1(addr) == 0.0

    t0 = time.monotonic()  # m1 cannot be seen healthy before this
    sup.start("m1")
    assert wait_until(lambda: admin_members(sup)["m1"]["healthy"] is True, 5, interval=0.02)
    windows: list[tuple[float, float]] = []  # (seconds since t0 at the window's end, share)
    while not windows or windows[-1][0] < SLOW_START + 1.0:
        windows.append((0.0, share_of_m1(addr)))
        windows[-1] = (time.monotonic() - t0, windows[-1][1])
        due = t0 + windows[-1][0] + 0.25
        assert wait_until(lambda: time.monotonic() >= due, 1)  # noqa: B023
    elapsed, early = windows[0]
    cap = -(-10 * min(elapsed, SLOW_START) // SLOW_START)  # ceil: the largest cap possible
    bound = cap / (cap + 10) + 0.1  # + 2 of 20 for the rounding of a short window
    assert bound < 0.45, f"box too slow: the first window ended {elapsed:.1f}s after restart"
    assert early <= bound, windows  # (0 too, if a worker has not seen it back yet)
    # the first 40 % of the ramp: caps of at most 4 of 10, i.e. at most ~0.3 of the requests
    ramp = sorted(share for at, share in windows if at < SLOW_START * 0.4)
    assert ramp and ramp[len(ramp) // 2] <= 0.35, windows
    assert any(0 < share for at, share in windows if at < SLOW_START), windows
    late = [share for at, share in windows if at > SLOW_START + 0.5]
    assert late and min(late) >= 0.45, windows
