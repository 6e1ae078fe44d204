"""Helpers shared by the pylb integration tests (no tests here).

Raw-socket HTTP so the tests control every byte, the source address and the timing.
"""

from __future__ import annotations

import socket
import time
import weakref
from pathlib import Path

from pylab.supervisor import free_port
from pylab.topology import ProcessSpec
from tests.conftest import make_lab

NGINX = "/usr/sbin/nginx"


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


_LEFTOVER: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def recv_response(sock: socket.socket, timeout: float = 5.0,
                  head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Read one Content-Length or chunked response (or to EOF) from `sock`; bytes of the
    next (pipelined) response are kept for the next call."""
    status, headers, body, rest = _recv_response(sock, timeout, head_only)
    _LEFTOVER[sock] = rest
    return status, headers, body


def _recv_response(sock: socket.socket, timeout: float,
                   head_only: bool) -> tuple[int, dict[str, str], bytes, bytes]:
    sock.settimeout(timeout)
    buf = _LEFTOVER.pop(sock, b"")
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        key = k.strip().lower()
        headers[key] = f"{headers[key]}, {v.strip()}" if key in headers else v.strip()
    if head_only:
        return status, headers, b"", rest
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, headers, rest[:n], rest[n:]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            size_s, _, rest = rest.partition(b"\r\n")
            size = int(size_s.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return status, headers, body, rest
    if status in (101, 204, 304) or 100 <= status < 200:
        return status, headers, b"", rest
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return status, headers, rest, b""
        rest += chunk


def get(addr: tuple[str, int], path: str = "/", src: str | None = None,
        headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, dict[str, str],
                                                                            bytes]:
    """One request on a fresh connection, optionally from source address `src`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if src is not None:
            sock.bind((src, 0))
        sock.settimeout(timeout)
        sock.connect(addr)
        hs = {"Host": "test", "Connection": "close", **(headers or {})}
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items())
        sock.sendall(req.encode() + b"\r\n")
        return recv_response(sock, timeout)
    finally:
        sock.close()


ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"


def nginx_spec(name: str, conf: str, run_dir: Path | None = None, echo: bool = False,
               files: dict[str, str] | None = None) -> ProcessSpec:
    """Real nginx as a supervised foreground process; `conf` may use {port} and {rundir}."""
    prefix = "{rundir}/" + name
    head = ((f"load_module {ECHO_MODULE};\n" if echo else "") + "worker_processes 1;\n"
            f"error_log {prefix}/error.log warn;\npid {prefix}/nginx.pid;\n"
            "events { worker_connections 1024; }\n")
    temps = "".join(f"  {t}_temp_path {prefix}/{t}_temp;\n"
                    for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    full = head + "http {\n  access_log off;\n" + temps + conf + "\n}\n"
    return ProcessSpec(name, "command", [NGINX, "-p", prefix, "-c", "{file:nginx.conf}", "-g",
                                         "daemon off; user root;"],
                       ready="tcp", files={"nginx.conf": full, **(files or {})})


def pylb_spec(name: str, toml: str, after: list[str] | None = None) -> ProcessSpec:
    return ProcessSpec(name, "pylb", ["serve", "-c", "{file:lb.toml}"], after=after or [],
                       files={"lb.toml": toml})


def wait_until(pred: object, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False


__all__ = ["free_ports", "get", "make_lab", "nginx_spec", "pylb_spec", "recv_response",
           "wait_until"]
