"""Conventions shared by the four CLIs: --help, --version, config check, one-line errors,
JSON logs, graceful SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pylab.topology import ProcessSpec
from tests.conftest import StartLab, make_lab

pytestmark = pytest.mark.integration

MODULES = {"pylb": "pylb", "pynode": "pyservlet", "pyvrrp": "pyvrrp", "pylab": "pylab"}


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=30, check=False)


@pytest.mark.parametrize("prog", sorted(MODULES))
def test_help_and_version(prog: str) -> None:
    h = run(MODULES[prog], "--help")
    assert h.returncode == 0 and "usage:" in h.stdout
    v = run(MODULES[prog], "--version")
    assert v.returncode == 0 and v.stdout.startswith(f"{prog} ")


def test_pylb_check_reports_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "lb.toml"
    bad.write_text('[upstream.app]\nbalance = "fastest"\nmembers = []\n')
    r = run("pylb", "check", "-c", str(bad))
    assert r.returncode == 1
    assert r.stderr.strip() == (f"pylb: {bad}:2: unknown balance method 'fastest' (known: "
                                f"round_robin) (near 'fastest')") or \
        r.stderr.startswith(f"pylb: {bad}:2: unknown balance method 'fastest'")
    assert len(r.stderr.strip().splitlines()) == 1
    missing = run("pylb", "check", "-c", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    good = tmp_path / "good.toml"
    good.write_text('[upstream.app]\nmembers = [{ address = "127.0.0.1:1" }]\n')
    ok = run("pylb", "check", "-c", str(good))
    assert ok.returncode == 0 and "ok" in ok.stdout


def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("pyservlet", "--port", str(port))
    assert r.returncode == 1
    assert f"127.0.0.1:{port}: address already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_value_is_a_usage_error() -> None:
    r = run("pyservlet", "--port", "eighty")
    assert r.returncode == 2 and "invalid int value" in r.stderr


def test_json_logs_and_graceful_stop(start_lab: StartLab) -> None:
    sup = start_lab(make_lab("jsonlog", [ProcessSpec(
        "node1", "pynode", ["--route", "node1", "--port", "{port}", "--log-format", "json"])]))
    sup.kill("node1", signal.SIGTERM)
    assert sup._reap("node1", 10)
    assert sup.procs["node1"].exit_code == 0
    lines = [ln for ln in Path(sup.procs["node1"].log).read_text().splitlines()
             if ln.startswith("{")]
    records = [json.loads(ln) for ln in lines]
    assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert any("stopped" in r["msg"] for r in records)
