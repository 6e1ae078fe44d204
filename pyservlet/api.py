"""The servlet-style API: requests, responses and `HttpServlet` with do_get / do_post / ...

Handlers are coroutines so a servlet may await a store; the connector calls
`Context.handle(request)` and writes what comes back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from pycommon.http import reason_phrase

if TYPE_CHECKING:
    from pyservlet.context import Context
    from pysession.binding import SessionBinding
    from pysession.session import Session


def parse_cookie_header(value: str, into: dict[str, str]) -> None:
    """`a=1; b="2"` → into (first occurrence wins). Lenient like browsers and Tomcat's
    RFC 6265 parser: a malformed pair is skipped, never an error."""
    for part in value.split(";"):
        name, eq, val = part.partition("=")
        if not eq:
            continue
        name = name.strip()
        if not name or name in into:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
            val = val[1:-1]
        into[name] = val


class Request:
    """One HTTP request as a servlet sees it.

    Headers arrive as bytes from the connector and are decoded only when asked for; cookies
    are parsed on first access (the hot path of a session request reads one cookie).
    """

    __slots__ = ("_binding", "_cookies", "_form", "_headers", "_raw_headers", "body", "context",
                 "local_addr", "method", "path", "path_session_id", "query_string",
                 "remote_addr", "servlet_path", "session_id_from_cookie", "target")

    def __init__(self, method: str, target: str,
                 headers: list[tuple[str, str]] | list[tuple[bytes, bytes]], body: bytes = b"",
                 remote_addr: str = "", local_addr: tuple[str, int] = ("", 0)) -> None:
        self.method = method
        self.target = target
        raw_path, _, self.query_string = target.partition("?")
        self.path_session_id: str | None = None
        if ";" in raw_path:
            # ;jsessionid=ID.route path parameter (Tomcat's URL rewriting)
            raw_path, _, param = raw_path.partition(";")
            if param[:11].lower() == "jsessionid=":
                self.path_session_id = param[11:]
        self.path = (unquote(raw_path) if "%" in raw_path else raw_path) or "/"
        if headers and isinstance(headers[0][0], str):
            headers = [(str(k).encode("latin-1"), str(v).encode("latin-1"))
                       for k, v in headers]
        self._raw_headers: list[tuple[bytes, bytes]] = headers  # type: ignore[assignment]
        self._headers: list[tuple[str, str]] | None = None
        self.body = body
        self.remote_addr = remote_addr
        self.local_addr = local_addr
        self._cookies: dict[str, str] | None = None
        self.context: Context | None = None
        self.servlet_path = ""
        self.session_id_from_cookie = False
        self._binding: SessionBinding | None = None
        self._form: dict[str, list[str]] | None = None

    @property
    def headers(self) -> list[tuple[str, str]]:
        h = self._headers
        if h is None:
            h = self._headers = [(k.decode("latin-1"), v.decode("latin-1"))
                                 for k, v in self._raw_headers]
        return h

    @property
    def cookies(self) -> dict[str, str]:
        c = self._cookies
        if c is None:
            c = self._cookies = {}
            for k, v in self._raw_headers:
                if len(k) == 6 and k.lower() == b"cookie":
                    parse_cookie_header(v.decode("latin-1"), c)
        return c

    def cookie_values(self, name: str) -> list[str]:
        """Every value of cookie `name`, in the order sent (browsers send the most specific
        path first)."""
        out: list[str] = []
        for k, v in self._raw_headers:
            if len(k) == 6 and k.lower() == b"cookie":
                for part in v.decode("latin-1").split(";"):
                    n, eq, val = part.partition("=")
                    if eq and n.strip() == name:
                        out.append(val.strip().strip('"'))
        return out

    def cookie_count(self, name: str) -> int:
        """How many times `name=` appears in the Cookie headers (cheap; may over-count a
        cookie whose name ends with `name`, never under-count)."""
        needle = name.encode("latin-1") + b"="
        return sum(v.count(needle) for k, v in self._raw_headers
                   if len(k) == 6 and k.lower() == b"cookie")

    def header(self, name: str, default: str | None = None) -> str | None:
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    @property
    def params(self) -> dict[str, list[str]]:
        """Query parameters plus an urlencoded form body."""
        if self._form is None:
            form = parse_qs(self.query_string, keep_blank_values=True)
            ctype = (self.header("content-type") or "").lower()
            if self.body and ctype.startswith("application/x-www-form-urlencoded"):
                for k, vs in parse_qs(self.body.decode("utf-8", "replace"),
                                      keep_blank_values=True).items():
                    form.setdefault(k, []).extend(vs)
            self._form = form
        return self._form

    def param(self, name: str, default: str | None = None) -> str | None:
        vs = self.params.get(name)
        return vs[0] if vs else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def get_session(self, create: bool = True) -> Session | None:
        """The request's session (servlet getSession); with `create`, a new one (new id)
        when the request has none or presented an unknown/expired id."""
        b = self._binding
        if b is None:
            return None
        return b.get(create)

    @property
    def session(self) -> Session | None:
        """The session already bound to this request, without creating one."""
        b = self._binding
        if b is None or b.session is None or not b.session.valid:
            return None
        return b.session

    def change_session_id(self) -> str:
        """Servlet changeSessionId: call at login (session fixation protection)."""
        if self._binding is None:
            raise RuntimeError("change_session_id: no session support in this context")
        return self._binding.change_id()

    @property
    def requested_session_id(self) -> str | None:
        return self._binding.presented if self._binding is not None else None

    @property
    def requested_session_id_valid(self) -> bool:
        return self._binding is not None and self._binding.requested_id_valid


_JSON = json.JSONEncoder(default=str)


def _check_header(name: str, value: str) -> None:
    if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
        raise ValueError(f"header {name!r}: CR, LF (and ':' in the name) are not allowed")


class Response:
    __slots__ = ("body", "cookies", "headers", "reason", "status")

    def __init__(self, status: int = 200, body: bytes | str = b"",
                 content_type: str = "text/html; charset=utf-8") -> None:
        self.status = status
        self.reason = reason_phrase(status)
        self.body = body.encode() if isinstance(body, str) else body
        self.headers: list[tuple[str, str]] = [("Content-Type", content_type)]
        self.cookies: list[str] = []

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, _JSON.encode(data), "application/json")

    def set_header(self, name: str, value: str) -> None:
        """Replace header `name`; CR/LF in a name or value is refused (response splitting)."""
        _check_header(name, value)
        n = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != n]
        self.headers.append((name, value))

    def add_cookie(self, name: str, value: str, path: str = "/", http_only: bool = True,
                   secure: bool = False, same_site: str | None = None,
                   max_age: int | None = None) -> None:
        _check_header(name, value + path + (same_site or ""))
        if any(c in name for c in "=;, \t"):
            raise ValueError(f"bad cookie name {name!r}")
        parts = [f"{name}={value}", f"Path={path}"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if secure:
            parts.append("Secure")
        if http_only:
            parts.append("HttpOnly")
        if same_site:
            parts.append(f"SameSite={same_site}")
        self.cookies.append("; ".join(parts))


class ServletConfig:
    """What a servlet gets at `init`: its name, the web.toml `init` table, its context."""

    __slots__ = ("context", "name", "params")

    def __init__(self, name: str, params: dict[str, Any] | None = None,
                 context: Context | None = None) -> None:
        self.name = name
        self.params = params or {}
        self.context = context

    @property
    def route(self) -> str | None:
        """The node's jvmRoute (what the demo pages print as the node name)."""
        return self.context.route if self.context is not None else None


class HttpServlet:
    """Subclass and override do_get / do_post / ...; unknown methods answer 405.

    `init(config)` runs once at deployment, `destroy()` at undeploy / node stop.
    """

    config: ServletConfig | None = None

    def init(self, config: ServletConfig) -> None:
        self.config = config

    def destroy(self) -> None:
        return None

    async def service(self, request: Request) -> Response:
        handler = getattr(self, "do_" + request.method.lower(), None)
        if handler is None:
            get = getattr(self, "do_get", None)
            if request.method == "HEAD" and get is not None:
                head: Response = await get(request)
                return head
            allowed = sorted(m[3:].upper() for m in dir(self) if m.startswith("do_"))
            r = Response(405, "Method Not Allowed\n", "text/plain")
            r.set_header("Allow", ", ".join(allowed))
            return r
        resp: Response = await handler(request)
        return resp
