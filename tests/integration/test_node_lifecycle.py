"""pynode as a process: sessions saved on graceful stop and reloaded on start, graceful
shutdown finishing in-flight requests, keep-alive with pipelining, config errors as one
`file:line: message` line, persistent (SQLite) and cookie-held managers over HTTP."""

from __future__ import annotations

import base64
import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pylab.client import Browser
from pylab.topology import ProcessSpec
from tests.conftest import StartLab, make_lab

pytestmark = pytest.mark.integration

SLOW_SERVLET = '''
import asyncio
from pathlib import Path
from typing import Any
from pyservlet.api import HttpServlet, Response


class Slow(HttpServlet):
    async def do_get(self, request):
        Path(self.config.params["marker"]).write_text("started")
        await asyncio.sleep(float(request.param("s", "1.5")))
        return Response(200, "finished", "text/plain")
'''


def node_spec(config: str, files: dict[str, str] | None = None) -> ProcessSpec:
    return ProcessSpec("node1", "pynode",
                       ["--route", "node1", "--port", "{port}", "--config", "{file:node.toml}"],
                       files={"node.toml": config, **(files or {})})


def test_sessions_survive_a_graceful_restart(start_lab: StartLab) -> None:
    config = """
[[context]]
path = "/"
webapp = "demo"
[context.manager]
type = "standard"
save_file = "sessions-root.msgpack"
"""
    sup = start_lab(make_lab("node-restart", [node_spec(config)]))
    probe = sup.url("node1", "/api/session")
    b = Browser()
    sid = b.get(probe).json()["session_id"]
    b.post(probe, {"set": {"user": "alice", "cart": [1, 2, 3]}})
    assert sup.stop("node1") == 0                   # SIGTERM: graceful, sessions saved
    sup.start("node1")
    again = b.get(probe).json()
    assert again["session_id"] == sid and again["new"] is False
    assert again["attributes"] == {"user": "alice", "cart": [1, 2, 3]}
    sup.kill("node1")                               # kill -9: nothing saved, file consumed
    sup.start("node1")
    assert b.get(probe).json()["new"] is True


def test_graceful_shutdown_finishes_in_flight_requests(start_lab: StartLab,
                                                       tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    app = f"""
[webapp]
context_path = "/slow"
[[servlet]]
class = ".servlets:Slow"
urls = ["/"]
init = {{ marker = "{marker}" }}
"""
    appdir = tmp_path / "slowapp"
    appdir.mkdir()
    (appdir / "web.toml").write_text(app)
    (appdir / "servlets.py").write_text(SLOW_SERVLET)
    config = f"""
[[context]]
webapp = "demo"
path = "/"
[[context]]
docbase = "{appdir}"
"""
    spec = node_spec(config)
    sup = start_lab(make_lab("node-graceful", [spec]))
    host, port = sup.address("node1")
    result: dict[str, Any] = {}

    def slow_request() -> None:
        c = http.client.HTTPConnection(host, port, timeout=10)
        c.request("GET", "/slow/?s=1.5")
        r = c.getresponse()
        result["status"], result["body"] = r.status, r.read()
        result["connection"] = r.getheader("Connection")
        result["done_at"] = time.monotonic()
        c.close()

    t = threading.Thread(target=slow_request)
    t.start()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), "the slow request never reached the servlet"
    stopped = time.monotonic()
    code = sup.stop("node1", timeout=10)
    t.join(10)
    assert code == 0 and result["status"] == 200 and result["body"] == b"finished"
    assert result["connection"] == "close"
    assert result["done_at"] > stopped             # answered after SIGTERM: it waited
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1).close()


def test_keep_alive_and_pipelining_answer_in_order(start_lab: StartLab) -> None:
    sup = start_lab(make_lab("node-pipeline", [
        ProcessSpec("node1", "pynode", ["--route", "node1", "--port", "{port}"])]))
    host, port = sup.address("node1")
    with socket.create_connection((host, port), timeout=5) as s:
        reqs = b"".join(b"GET /api/hello?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i
                        for i in range(5))
        s.sendall(reqs + b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"200"] * 5 + [b"404"]
    # a malformed request gets 400 and the connection is closed
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 400")


def test_config_error_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "node.toml"
    bad.write_text('[[context]]\nwebapp = "demo"\n\n[context.manager]\ntype = "standard"\n'
                   'max_active_sessions = "lots"\n')
    r = subprocess.run([sys.executable, "-m", "pyservlet", "--config", str(bad)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"pynode: {bad}:6: max_active_sessions: expected an integer "
                                "(near 'lots')")
    ok = tmp_path / "ok.toml"
    ok.write_text('[[context]]\nwebapp = "demo"\n')
    r2 = subprocess.run([sys.executable, "-m", "pyservlet", "--config", str(ok), "--check"],
                        capture_output=True, text=True, timeout=30, check=False)
    assert r2.returncode == 0 and "ok" in r2.stdout


def test_persistent_sqlite_manager_keeps_sessions_across_restart(start_lab: StartLab) -> None:
    """A graceful stop saves every session to the SQLite table (save_on_stop); after the
    restart the session is swapped back in on its next request."""
    config = """
[[context]]
path = "/"
webapp = "demo"
[context.manager]
type = "persistent"
store = "sqlite"
database = "sessions.sqlite3"
"""
    sup = start_lab(make_lab("node-persistent", [node_spec(config)]))
    probe = sup.url("node1", "/api/session")
    b = Browser()
    sid = b.get(probe).json()["session_id"]
    assert b.post(probe, {"incr": "n"}).json()["value"] == 1
    assert sup.stop("node1") == 0
    sup.start("node1")
    r = b.post(probe, {"incr": "n"}).json()
    assert (r["session_id"], r["value"]) == (sid, 2)
    health = Browser().get(sup.url("node1", "/-/health")).json()
    assert health["contexts"]["/"]["swapped_in"] == 1


def test_cookie_manager_over_http(start_lab: StartLab) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    config = f"""
[[context]]
path = "/"
webapp = "demo"
[context.manager]
type = "cookie"
keys = ["{key}"]
"""
    sup = start_lab(make_lab("node-cookie", [node_spec(config)]))
    probe = sup.url("node1", "/api/session")
    b = Browser()
    first = b.post(probe, {"set": {"user": "alice"}}).json()
    assert "PYSESSION" in b.cookies and "JSESSIONID" not in b.cookies
    sup.restart("node1")                       # nothing on the server: survives anything
    again = b.get(probe).json()
    assert again["session_id"] == first["session_id"]
    assert again["attributes"] == {"user": "alice"}
    # tampered → fresh, empty session
    v = b.cookies["PYSESSION"]
    b.cookies["PYSESSION"] = v[:-3] + ("AAA" if v[-3:] != "AAA" else "BBB")
    fresh = b.get(probe).json()
    assert fresh["new"] is True and fresh["attributes"] == {}
    # over 4 KB: refused with a clear error, the session is unchanged
    big = b.post(probe, {"set": {"blob": "x" * 5000}})
    assert big.status == 400 and "4096-byte limit" in big.json()["error"]


def test_idle_and_half_sent_requests_are_closed_after_the_timeout(start_lab: StartLab) -> None:
    config = """
[[connector]]
listen = "127.0.0.1:0"
keepalive_timeout = 1
"""
    sup = start_lab(make_lab("node-timeout", [node_spec(config)]))
    host, port = sup.address("node1")

    def closed_within(s: socket.socket, limit: float) -> float | None:
        start = time.monotonic()
        s.settimeout(limit)
        try:
            while s.recv(65536):
                pass
        except TimeoutError:
            return None
        return time.monotonic() - start

    with socket.create_connection((host, port), timeout=5) as idle:
        idle.sendall(b"GET /api/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        took = closed_within(idle, 5)
        assert took is not None and took >= 0.5
    with socket.create_connection((host, port), timeout=5) as slow:
        slow.sendall(b"GET /api/hello HTTP/1.1\r\nHost: x\r\n")   # never finishes the head
        assert closed_within(slow, 5) is not None
