"""`pylab` from "another shell": up --detach, status --json, kill, restart, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pylab.client import Browser
from pylab.supervisor import _alive

pytestmark = pytest.mark.integration


def pylab(run_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pylab", "--run-dir", str(run_dir), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def status(run_dir: Path) -> dict[str, dict[str, object]]:
    r = pylab(run_dir, "status", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["lab"] == "basic"
    return {p["name"]: p for p in data["processes"]}


def test_detached_lab_driven_from_another_shell(tmp_path: Path) -> None:
    run = tmp_path / "run"
    pids: list[int] = []
    try:
        up = pylab(run, "up", "basic", "--detach", "--free-ports")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "lab basic is up: http://127.0.0.1:" in up.stdout
        procs = status(run)
        assert set(procs) == {"node1", "node2", "lb"}
        assert all(p["state"] == "running" for p in procs.values())
        assert {p["kind"] for p in procs.values()} == {"pynode", "pylb"}
        pids = [int(str(p["pid"])) for p in procs.values()]
        lb = procs["lb"]
        url = f"http://{lb['host']}:{lb['port']}/api/session"
        assert Browser().get(url).status == 200

        again = pylab(run, "up", "basic", "--detach", "--free-ports")
        assert again.returncode == 1 and "already running" in again.stderr

        k = pylab(run, "kill", "node1")
        assert k.returncode == 0, k.stderr
        assert status(run)["node1"]["state"] == "killed"
        assert not _alive(int(str(procs["node1"]["pid"])), "")
        nodes = {Browser().get(url).json()["node"] for _ in range(4)}
        assert nodes == {"node2"}

        r = pylab(run, "restart", "node1")
        assert r.returncode == 0, r.stderr
        after = status(run)
        assert after["node1"]["state"] == "running"
        assert after["node1"]["port"] == procs["node1"]["port"]  # same port: lb finds it
        pids.append(int(str(after["node1"]["pid"])))
        # pylb marked node1 failed (max_fails=1); it gets a trial after fail_timeout (2 s)
        deadline = time.monotonic() + 15
        seen: set[str] = set()
        while time.monotonic() < deadline and seen != {"node1", "node2"}:
            seen.add(Browser().get(url).json()["node"])
            time.sleep(0.05)
        assert seen == {"node1", "node2"}

        d = pylab(run, "down")
        assert d.returncode == 0, d.stderr
        assert not any(_alive(p, "") for p in pids)
        gone = pylab(run, "status")
        assert gone.returncode == 1 and "no lab is running" in gone.stderr
    finally:
        pylab(run, "down", timeout=30)
        for p in pids:
            if _alive(p, ""):
                os.killpg(p, 9)


def test_unknown_names_get_clear_errors(tmp_path: Path) -> None:
    r = pylab(tmp_path, "up", "nope", "--detach")
    assert r.returncode == 1 and "unknown lab 'nope'" in r.stderr and "basic" in r.stderr
    r = pylab(tmp_path, "kill", "node1")
    assert r.returncode == 1 and "no lab is running" in r.stderr


def test_list_and_check(tmp_path: Path) -> None:
    r = pylab(tmp_path, "list")
    assert r.returncode == 0 and "basic" in r.stdout and "rr-no-sharing" in r.stdout
    r = pylab(tmp_path, "check", "rr-no-sharing", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[PASS]" in r.stdout and "result: PASS" in r.stdout
