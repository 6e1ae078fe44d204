"""A tiny blocking HTTP client for stories, tests and the CLI (stdlib only).

Keeps a cookie jar per `Browser`, like a user's browser in the seeds' tutorials.
"""

from __future__ import annotations

import http.client
import json
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit


class HttpResult:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Browser:
    """Sends requests with the cookies it was given, one connection per request."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.cookies: dict[str, str] = {}
        self.timeout = timeout

    def request(self, method: str, url: str, body: Any = None,
                headers: dict[str, str] | None = None) -> HttpResult:
        u = urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80,
                                          timeout=self.timeout)
        hs = dict(headers or {})
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hs.setdefault("Content-Type", "application/json")
        if self.cookies:
            hs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, (u.path or "/") + (f"?{u.query}" if u.query else ""),
                         body=data, headers=hs)
            resp = conn.getresponse()
            payload = resp.read()
            headers_out = resp.getheaders()
        finally:
            conn.close()
        for k, v in headers_out:
            if k.lower() == "set-cookie":
                jar: SimpleCookie = SimpleCookie()
                jar.load(v)
                for name, morsel in jar.items():
                    self.cookies[name] = morsel.value
        return HttpResult(resp.status, headers_out, payload)

    def get(self, url: str) -> HttpResult:
        return self.request("GET", url)

    def post(self, url: str, body: Any) -> HttpResult:
        return self.request("POST", url, body)
