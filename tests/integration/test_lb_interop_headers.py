"""pylb against real nginx: the same request gives the member the same headers.

One nginx process hosts an echoing member and an nginx front configured as the seeds do
(`proxy_set_header Host $host; X-Real-IP $remote_addr; X-Forwarded-For
$proxy_add_x_forwarded_for`, plus one value with a variable inside); pylb runs with the same
`set_headers`. Each raw request goes to both fronts and the member's view (Host, request URI,
X-Real-IP, X-Forwarded-For, the interpolated header), the status and the Connection answer
must agree: nginx's `$host` (lower-cased, port and trailing dot dropped, absolute-form
targets win), 400 for HTTP/1.1 without Host or with two, keep-alive announced to HTTP/1.0.
"""

from __future__ import annotations

import os
import socket

import pytest

from tests.integration.test_lb_support import (
    NGINX,
    free_ports,
    make_lab,
    nginx_spec,
    pylb_spec,
    recv_response,
)

pytestmark = [pytest.mark.integration, pytest.mark.interop,
              pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed")]

FIELDS = ("host=$http_host|uri=$request_uri|xri=$http_x_real_ip|xff=$http_x_forwarded_for"
          "|mixed=$http_x_mixed")

REQUESTS = [
    b"GET /a?b=1 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: dot.example.\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1]:81\r\n\r\n",
    b"GET http://Abs.Example:81/p?q=2 HTTP/1.1\r\nHost: other.example\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: ten.example\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
]


def _ask(addr: tuple[str, int], raw: bytes) -> tuple[int, dict[str, str], str]:
    """(status, the Connection answer, the member's view). nginx also says `Connection:
    keep-alive` to HTTP/1.1 clients, where it is the default anyway (pylb does not): that
    one value is compared for HTTP/1.0 only."""
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(raw)
        status, headers, body = recv_response(s, timeout=5)
    view = body.decode() if status == 200 else ""
    conn = {k: v for k, v in headers.items() if k == "connection"}
    if b" HTTP/1.1\r\n" in raw and conn == {"connection": "keep-alive"}:
        conn = {}
    return status, conn, view


@pytest.fixture
def fronts(start_lab, tmp_path):
    member, front = free_ports(2)
    conf = (f'  server {{ listen 127.0.0.1:{member}; location / {{ return 200 "{FIELDS}"; }} }}\n'
            f"  server {{ listen 127.0.0.1:{front}; location / {{\n"
            f"    proxy_pass http://127.0.0.1:{member}; proxy_http_version 1.1;\n"
            '    proxy_set_header Connection "";\n'
            "    proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr;\n"
            "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
            '    proxy_set_header X-Mixed "for=$remote_addr;host=$host";\n  } }\n'
            "  server { listen 127.0.0.1:{port}; return 200; }\n")
    toml = ('[server]\nlisten = ["127.0.0.1:{port}"]\n'
            'set_headers = { Host = "$host", X-Real-IP = "$remote_addr", '
            'X-Forwarded-For = "$proxy_add_x_forwarded_for", '
            'X-Mixed = "for=$remote_addr;host=$host" }\n'
            f'[upstream.app]\nmembers = [ {{ address = "127.0.0.1:{member}" }} ]\n')
    sup = start_lab(make_lab("lb-interop-headers", [
        nginx_spec("nginx", conf, tmp_path), pylb_spec("lb", toml, after=["nginx"])]))
    return ("127.0.0.1", front), sup.address("lb")


def test_members_see_the_same_request_through_nginx_and_pylb(fronts) -> None:
    nginx, pylb = fronts
    for raw in REQUESTS:
        want = _ask(nginx, raw)
        got = _ask(pylb, raw)
        assert got == want, raw
    # the cases are not vacuous: what nginx itself did
    assert _ask(nginx, REQUESTS[0])[2].startswith("host=example.com|uri=/a?b=1|")
    assert _ask(nginx, REQUESTS[3])[2].startswith("host=abs.example|uri=/p?q=2|")
    assert _ask(nginx, REQUESTS[4])[1] == {"connection": "keep-alive"}
    assert [_ask(nginx, r)[0] for r in REQUESTS[5:]] == [400, 400]
