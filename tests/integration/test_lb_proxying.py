"""Proxying completeness with raw sockets: headers, pipelining, bodies, limits, smuggling,
retries, error pages, keep-alive limits, timeouts, WebSocket pass-through.

Members are real nginx servers (with the echo module to reflect request bodies) whose access
logs prove what did, and did not, reach them.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import struct
import time
from pathlib import Path

import pytest

from pylab.supervisor import Supervisor
from pylab.topology import ProcessSpec
from tests.integration.test_lb_support import (
    ECHO_MODULE,
    free_ports,
    get,
    make_lab,
    nginx_spec,
    pylb_spec,
    recv_response,
    wait_until,
)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists(ECHO_MODULE),
                                 reason="nginx echo module not installed")]

BIG = "0123456789abcdef" * (4 * 1024 * 1024 // 16)  # 4 MiB

WS_SERVER = '''
import hashlib
import sys
from aiohttp import web

async def upload(request):
    h = hashlib.sha256()
    n = 0
    async for chunk in request.content.iter_chunked(65536):
        h.update(chunk)
        n += len(chunk)
    return web.Response(text="%d %s" % (n, h.hexdigest()))

async def ws(request):
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    async for msg in sock:
        await sock.send_str("echo:" + msg.data)
    return sock

app = web.Application()
app.router.add_get("/ws", ws)
app.router.add_post("/upload", upload)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
'''


ECHO_FIELDS = ("host=$http_host|xri=$http_x_real_ip|xff=$http_x_forwarded_for"
               "|xfp=$http_x_forwarded_proto|ka=$http_keep_alive|te=$http_te|up=$http_upgrade"
               "|pc=$http_proxy_connection|cookie=$http_cookie|expect=$http_expect")


def member(name: str, port: int, flaky: bool) -> str:
    flaky_loc = ("location /flaky { return 444; }" if flaky else
                 f'location /flaky {{ return 200 "{name}"; }}')
    return f'''
  server {{
    listen 127.0.0.1:{port};
    access_log {{rundir}}/nginx/{name}.log;
    client_max_body_size 10m;
    location /echo {{
      return 200 "{ECHO_FIELDS}";
    }}
    location /body {{ echo_read_request_body; echo -n "$request_body"; }}
    location /big {{ alias {{rundir}}/nginx/big.txt; }}
    location /slow {{ echo_sleep 3; echo "late"; }}
    {flaky_loc}
    location / {{ return 200 "{name}:$uri"; }}
  }}
'''


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One topology for the whole module (each test leaves it as it found it)."""
    m1, m2, dead = free_ports(3)
    conf = member("m1", m1, True) + member("m2", m2, False) + \
        "  server { listen 127.0.0.1:{port}; return 200; }\n"
    toml = f'''[server]
listen = ["127.0.0.1:{{port}}"]
upstream = "app"
client_max_body_size = "1k"
keepalive_requests = 3
client_header_timeout = "400ms"
client_body_timeout = "500ms"
keepalive_timeout = "1s"
access_log = "access.log"
set_headers = {{ Host = "$host", X-Real-IP = "$remote_addr", \
X-Forwarded-For = "$proxy_add_x_forwarded_for", X-Forwarded-Proto = "$scheme" }}

[upstream.app]
read_timeout = "1s"
members = [
  {{ name = "m1", address = "127.0.0.1:{m1}", max_fails = 0 }},
  {{ name = "m2", address = "127.0.0.1:{m2}", max_fails = 0 }},
]
'''
    ws_toml = '''[server]
listen = ["127.0.0.1:{port}"]
client_max_body_size = "64m"
[upstream.ws]
members = [ { address = "127.0.0.1:{ws.port}" } ]
'''
    ws0_toml = ws_toml.replace('"64m"', "0")  # no body limit: chunked bodies stream too
    dead_toml = f'''[server]
listen = ["127.0.0.1:{{port}}"]
error_page = {{ "502 504" = "50x.html" }}
[upstream.none]
members = [ {{ address = "127.0.0.1:{dead}" }}, {{ address = "127.0.0.1:{dead}", name = "again" }} ]
'''
    dead_spec = pylb_spec("lbdead", dead_toml)
    dead_spec.files["50x.html"] = "<h1>we are sorry</h1>"
    specs = [
        nginx_spec("nginx", conf, echo=True, files={"big.txt": BIG}),
        ProcessSpec("ws", "command", ["{python}", "{file:ws.py}", "{port}"],
                    ready="tcp", files={"ws.py": WS_SERVER}),
        pylb_spec("lb", toml, after=["nginx"]),
        pylb_spec("lbws", ws_toml, after=["ws"]),
        pylb_spec("lbws0", ws0_toml, after=["ws"]),
        dead_spec,
    ]
    sup = Supervisor(make_lab("lb-proxying", specs), tmp_path_factory.mktemp("lbproxy"),
                     free_ports=True)
    sup.up()
    yield sup
    sup.down(timeout=5)


def logs(sup, name: str) -> str:
    p = Path(sup.run_dir) / "nginx" / f"{name}.log"
    return p.read_text() if p.exists() else ""


def connect(addr: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(addr, timeout=5)
    return s


def closed(s: socket.socket, timeout: float = 3.0) -> bool:
    """The peer closes (whatever bytes come first are read and dropped)."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if s.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def test_forwarded_headers_and_hop_by_hop(lab) -> None:
    st, hs, body = get(lab.address("lb"), "/echo", headers={
        "Host": "www.example.test", "X-Forwarded-For": "10.9.8.7", "Keep-Alive": "timeout=5",
        "TE": "trailers", "Proxy-Connection": "keep-alive", "Connection": "close, TE"})
    fields = dict(kv.split("=", 1) for kv in body.decode().split("|"))
    assert st == 200
    assert fields["host"] == "www.example.test"
    assert fields["xri"] == "127.0.0.1"
    assert fields["xff"] == "10.9.8.7, 127.0.0.1"
    assert fields["xfp"] == "http"
    assert fields["ka"] == fields["te"] == fields["pc"] == fields["up"] == ""
    assert "keep-alive" not in {k.lower() for k in hs}


def test_pipelined_requests_answered_in_order(lab) -> None:
    s = connect(lab.address("lb"))
    s.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)))
    got = [recv_response(s)[2].split(b":")[1] for _ in range(3)]
    assert got == [b"/p0", b"/p1", b"/p2"]
    s.close()


def test_chunked_request_body_and_expect_continue(lab) -> None:
    s = connect(lab.address("lb"))
    s.sendall(b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    st, _, body = recv_response(s)
    assert (st, body) == (200, b"hello world")
    s.sendall(b"PUT /body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
              b"Expect: 100-continue\r\n\r\n")
    s.settimeout(5)
    interim = s.recv(100)
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(b"data")
    st, _, body = recv_response(s)
    assert (st, body) == (200, b"data")
    s.close()


def test_head_then_get_on_the_same_connections(lab) -> None:
    for _ in range(4):  # both members' pooled connections see a HEAD, then a GET
        s = connect(lab.address("lb"))  # (keepalive_requests = 3 here)
        s.sendall(b"HEAD /big HTTP/1.1\r\nHost: x\r\n\r\n")
        st, hs, body = recv_response(s, head_only=True)
        assert st == 200 and body == b"" and int(hs["content-length"]) == len(BIG)
        s.sendall(b"GET /after-head HTTP/1.1\r\nHost: x\r\n\r\n")
        st, _, body = recv_response(s)
        assert st == 200 and body.endswith(b":/after-head")
        s.close()


def test_large_response_streamed_intact(lab) -> None:
    s = connect(lab.address("lb"))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)  # let pylb hit its write high-water mark: it must pause, not drop
    st, _, body = recv_response(s, timeout=10)
    assert st == 200 and len(body) == len(BIG)
    assert hashlib.sha256(body).digest() == hashlib.sha256(BIG.encode()).digest()
    s.close()


def test_body_over_limit_is_413_and_never_reaches_a_member(lab) -> None:
    s = connect(lab.address("lb"))
    s.sendall(b"POST /upload-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    assert recv_response(s)[0] == 413
    assert closed(s)
    s = connect(lab.address("lb"))
    s.sendall(b"POST /upload-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"10\r\n" + b"y" * 16 + b"\r\n0\r\n\r\n")
    assert recv_response(s)[0] == 413
    assert closed(s)
    get(lab.address("lb"), "/marker")  # flushes through a member's log
    get(lab.address("lb"), "/marker")
    assert wait_until(lambda: "/marker" in logs(lab, "m1") + logs(lab, "m2"), 5)
    assert "/upload" not in logs(lab, "m1") + logs(lab, "m2")


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"c" * 4000)
                                                   for i in range(10)) + b"\r\n", 400),
    (b"POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n"
     b"abcde", 400),
    (b"POST /smuggle HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n"
     b"0\r\n\r\n", 400),
    (b"POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET /smuggle HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", 400),
])
def test_malformed_and_smuggling_inputs(lab, raw: bytes, status: int) -> None:
    s = connect(lab.address("lb"))
    s.sendall(raw)
    st, _, _ = recv_response(s)
    assert st == status
    assert closed(s)
    assert "/smuggle" not in logs(lab, "m1") + logs(lab, "m2")
    # the proxy is still sane for the next client
    assert get(lab.address("lb"), "/ok")[0] == 200


def test_error_after_a_good_pipelined_request_comes_after_it(lab) -> None:
    s = connect(lab.address("lb"))
    s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
              b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    st1, _, body = recv_response(s)
    st2, _, _ = recv_response(s)
    assert (st1, st2) == (200, 400) and body.endswith(b"/first")
    assert closed(s)


def test_keepalive_requests_limit(lab) -> None:
    s = connect(lab.address("lb"))
    for i in range(3):
        s.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        st, hs, _ = recv_response(s)
        assert st == 200
        assert (hs.get("connection") == "close") == (i == 2)
    assert closed(s)


def test_client_header_timeout_closes_without_answer(lab) -> None:
    s = connect(lab.address("lb"))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    s.settimeout(3)
    assert s.recv(100) == b""


def test_client_body_timeout_is_408(lab) -> None:
    s = connect(lab.address("lb"))
    s.sendall(b"POST /slowbody HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    st, _, _ = recv_response(s, timeout=5)
    assert st == 408
    assert closed(s)
    assert "/slowbody" not in logs(lab, "m1") + logs(lab, "m2")


def test_keepalive_timeout_closes_idle_connection(lab) -> None:
    s = connect(lab.address("lb"))
    s.sendall(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
    assert recv_response(s)[0] == 200
    started = time.monotonic()
    assert closed(s, 4)
    assert 0.8 < time.monotonic() - started < 3.5


def test_idempotent_retried_post_never_resent(lab) -> None:
    addr = lab.address("lb")
    for _ in range(4):  # m1 drops /flaky without answering; GETs go on to m2
        st, _, body = get(addr, "/flaky")
        assert (st, body) == (200, b"m2")
    statuses = []
    for _ in range(6):
        s = connect(addr)
        s.sendall(b"POST /flaky HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                  b"Connection: close\r\n\r\nhi")
        statuses.append(recv_response(s)[0])
        s.close()
    assert set(statuses) == {200, 502}
    get(addr, "/marker")
    get(addr, "/marker")
    assert wait_until(lambda: logs(lab, "m1").count("/marker") and
                      logs(lab, "m2").count("/marker"), 5)
    assert logs(lab, "m1").count("POST /flaky") == statuses.count(502)
    assert logs(lab, "m2").count("POST /flaky") == statuses.count(200)


def test_read_timeout_is_504(lab) -> None:
    st, _, _ = get(lab.address("lb"), "/slow", timeout=10)
    assert st == 504


def test_error_page_config_and_502_when_nothing_answers(lab) -> None:
    st, _, body = get(lab.address("lbdead"), "/")
    assert st == 502 and body == b"<h1>we are sorry</h1>"


def _ws_frame(text: str) -> bytes:
    payload = text.encode()
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def test_websocket_upgrade_pass_through(lab) -> None:
    s = connect(lab.address("lbws"))
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    st, hs, _ = recv_response(s)
    assert st == 101 and hs["upgrade"].lower() == "websocket"
    assert hs["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    for word in ("one", "two"):
        s.sendall(_ws_frame(word))
        s.settimeout(5)
        head = s.recv(2)
        assert head[0] == 0x81
        n = head[1] & 0x7F
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
        assert data == f"echo:{word}".encode()
    s.sendall(bytes([0x88, 0x82]) + b"\0\0\0\0" + struct.pack("!H", 1000))
    assert closed(s, 5)


def test_access_log_combined(lab) -> None:
    get(lab.address("lb"), "/logged?x=1", headers={"User-Agent": "probe/1.0",
                                                   "Referer": "http://r.test/"})
    path = Path(lab.run_dir) / "lb" / "access.log"

    def line() -> str:
        text = path.read_text() if path.exists() else ""
        return next((ln for ln in text.splitlines() if "/logged" in ln), "")

    # buffered: flushed at most every second, and at stop; a later request triggers it
    assert wait_until(lambda: bool(get(lab.address("lb"), "/tick") and line()), 5)
    assert re.match(r'^127\.0\.0\.1 - - \[[^\]]+\] "GET /logged\?x=1 HTTP/1\.1" 200 \d+ '
                    r'"http://r\.test/" "probe/1\.0"$', line()), line()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_large_request_body_streamed_with_bounded_memory(lab) -> None:
    size = 24 * 1024 * 1024
    block = bytes(range(256)) * 256  # 64 KiB
    pid = lab.procs["lbws"].pid
    before = _rss_kb(pid)
    s = connect(lab.address("lbws"))
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
              b"Expect: 100-continue\r\n\r\n" % size)
    s.settimeout(5)
    assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    digest = hashlib.sha256()
    for _ in range(size // len(block)):
        s.sendall(block)
        digest.update(block)
    st, _, body = recv_response(s, timeout=20)
    assert st == 200 and body.decode() == f"{size} {digest.hexdigest()}"
    assert _rss_kb(pid) - before < 12 * 1024  # streamed, not held whole (24 MiB)
    s.close()


def test_unlimited_chunked_body_streamed_with_bounded_memory(lab) -> None:
    """`client_max_body_size = 0`: a chunked upload is re-chunked to the member as it
    arrives instead of being held whole (nginx would spill it to a temp file)."""
    size = 24 * 1024 * 1024
    block = bytes(range(256)) * 256  # 64 KiB
    pid = lab.procs["lbws0"].pid
    before = _rss_kb(pid)
    s = connect(lab.address("lbws0"))
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    digest = hashlib.sha256()
    frame = b"%x\r\n" % len(block) + block + b"\r\n"
    for _ in range(size // len(block)):
        s.sendall(frame)
        digest.update(block)
    s.sendall(b"0\r\n\r\n")
    st, _, body = recv_response(s, timeout=20)
    assert st == 200 and body.decode() == f"{size} {digest.hexdigest()}"
    assert _rss_kb(pid) - before < 12 * 1024  # streamed, not held whole (24 MiB)
    # the connection goes on: a small chunked body after it is buffered and sent whole
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n0\r\n\r\n")
    st, _, body = recv_response(s, timeout=10)
    assert st == 200 and body.decode() == f"5 {hashlib.sha256(b'hello').hexdigest()}"
    s.close()
