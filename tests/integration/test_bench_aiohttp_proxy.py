"""The benchmark's reference aiohttp proxy forwards faithfully, so its figures compare a real
proxy: method, path and query, end-to-end headers and bodies pass both ways, hop-by-hop
headers do not, X-Forwarded-For is added, and keep-alive holds on the client side."""

from __future__ import annotations

import hashlib
import http.client
import json

import pytest

from pylab.supervisor import Supervisor
from pylab.topology import ProcessSpec
from tests.conftest import StartLab, make_lab

pytestmark = pytest.mark.integration

ECHO = '''
import hashlib, json, sys
from aiohttp import web

async def echo(request):
    body = await request.read()
    return web.json_response(
        {"method": request.method, "path": request.rel_url.raw_path_qs,
         "headers": {k.lower(): v for k, v in request.headers.items()},
         "sha": hashlib.sha256(body).hexdigest(), "n": len(body)},
        headers={"X-Member": "echo", "Keep-Alive": "timeout=99"})

app = web.Application(client_max_size=4 << 20)
app.router.add_route("*", "/{tail:.*}", echo)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''


@pytest.fixture
def proxy(start_lab: StartLab) -> Supervisor:
    return start_lab(make_lab("ref-proxy", [
        ProcessSpec("echo", "command", ["{python}", "{file:echo.py}", "{port}"], ready="tcp",
                    files={"echo.py": ECHO}),
        ProcessSpec("ref", "command", ["{python}", "-m", "benchmarks._aiohttp_proxy",
                                       "--listen", "127.0.0.1:{port}",
                                       "--upstream", "http://127.0.0.1:{echo.port}"],
                    ready="tcp", after=["echo"]),
    ]))


def test_forwards_requests_and_responses(proxy: Supervisor) -> None:
    host, port = proxy.address("ref")
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/a/b?x=1&y=%20", headers={"X-Custom": "v", "TE": "trailers"})
        r = conn.getresponse()
        got = json.loads(r.read())
        assert r.status == 200 and r.getheader("X-Member") == "echo"
        assert r.getheader("Keep-Alive") is None  # hop-by-hop from the member: dropped
        assert got["method"] == "GET" and got["path"] == "/a/b?x=1&y=%20"
        assert got["headers"]["x-custom"] == "v" and "te" not in got["headers"]
        assert got["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert got["headers"]["host"] == f"{host}:{port}"

        body = b"0123456789" * 200_000  # 2 MB, same client connection (keep-alive)
        conn.request("PUT", "/up", body=body)
        r = conn.getresponse()
        got = json.loads(r.read())
        assert r.status == 200 and got["method"] == "PUT"
        assert got["n"] == len(body) and got["sha"] == hashlib.sha256(body).hexdigest()
    finally:
        conn.close()
