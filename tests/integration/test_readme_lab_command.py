"""The README's lab command, as a user runs it: `./run lab` brings up pylb on 127.0.0.1:8080
in front of node1 and node2; Ctrl-C (SIGINT to the foreground group) stops everything."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from pylab.client import Browser
from pylab.supervisor import Supervisor, _alive
from pylab.topology import ProcessSpec
from tests.conftest import make_lab

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_run_lab_serves_8080_and_ctrl_c_stops_all(tmp_path: Path) -> None:
    if not port_free(8080):
        pytest.skip("127.0.0.1:8080 is taken on this machine (a lab already running?)")
    lab = make_lab("readme", [ProcessSpec(
        "lab", "command", [str(REPO / "run"), "lab"], port=8080, ready="tcp",
        env={"PYLAB_RUN_DIR": str(tmp_path / "state")}, ready_timeout=90)])
    sup = Supervisor(lab, tmp_path / "run", free_ports=False)
    try:
        sup.up()
        nodes = {Browser().get("http://127.0.0.1:8080/api/session").json()["node"]
                 for _ in range(4)}
        assert nodes == {"node1", "node2"}
        # 8080 accepts a moment before pylab prints its banner: poll the log, bounded
        log, banner = Path(sup.procs["lab"].log), "lab basic is up: http://127.0.0.1:8080/"
        deadline = time.monotonic() + 20
        while banner not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert banner in log.read_text()
        children = [p for p in sup.attach(tmp_path / "state").procs.values()]
        assert {c.name for c in children} == {"node1", "node2", "lb"}
        sup.kill("lab", signal.SIGINT)
        assert sup._reap("lab", 20), "pylab did not stop on Ctrl-C"
        assert sup.procs["lab"].exit_code == 0
        assert not any(_alive(c.pid, c.proc_start) for c in children)
        assert "stopped." in Path(sup.procs["lab"].log).read_text()
    finally:
        sup.down(timeout=10)
