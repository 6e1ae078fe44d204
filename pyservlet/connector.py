"""The HTTP/1.1 connector: an asyncio.Protocol on the shared httptools codec.

Requests on one connection are handled strictly in order (pipelining-safe); a response head
and body go out in one `transport.write`. Keep-alive idle connections, and clients that stop
sending in the middle of a request, are closed after `keepalive_timeout` without data
(Tomcat's connectionTimeout, 20 s) — checked by one connector-wide timer every second instead
of a timer per request. A client that does not read its responses is
not fed more: reading pauses while the transport is over its write buffer limit. A graceful
stop closes the listener, finishes in-flight (and already received) requests, then closes
idle connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast

from pycommon.http import (
    Body,
    EndOfMessage,
    HttpError,
    Limits,
    RequestHead,
    RequestParser,
    encode_response_head,
    simple_response,
)
from pyservlet.api import Request, Response

log = logging.getLogger("pynode.connector")

Handler = Callable[[Request], Awaitable[Response]]

IDLE_CHECK = 1.0


class ConnectorStats:
    __slots__ = ("connections", "requests")

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0


class HttpConnection(asyncio.Protocol):
    __slots__ = ("_body", "_busy", "_closing", "_head", "_last", "_paused", "_queue",
                 "_server", "_task", "loop", "parser", "peer", "sock", "transport")

    def __init__(self, server: HttpConnector) -> None:
        self._server = server
        self.loop = asyncio.get_running_loop()
        self.parser = RequestParser(server.limits)
        self.transport: asyncio.Transport | None = None
        self._queue: deque[tuple[RequestHead, bytes]] = deque()
        self._head: RequestHead | None = None
        self._body: list[bytes] = []
        self._busy = False
        self._closing = False
        self._paused = False
        self._last = self.loop.time()
        self._task: asyncio.Task[None] | None = None
        self.peer = ""
        self.sock: tuple[str, int] = ("", 0)

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        sock = transport.get_extra_info("sockname")
        self.sock = (sock[0], sock[1]) if sock else ("", 0)
        self._server.connections.add(self)
        self._server.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self._last = self.loop.time()
        try:
            events = self.parser.feed(data)
        except HttpError as exc:
            self._fail(exc.status)
            return
        for ev in events:
            if isinstance(ev, RequestHead):
                self._head = ev
                self._body = []
            elif isinstance(ev, Body):
                self._body.append(ev.data)
            elif isinstance(ev, EndOfMessage):
                if self._head is not None:
                    body = self._body
                    self._queue.append((self._head,
                                        body[0] if len(body) == 1 else b"".join(body)))
                    self._head = None
            else:  # Upgrade: not supported by the app node
                self._fail(400)
                return
        if self._queue and not self._busy:
            self._busy = True
            self._task = self.loop.create_task(self._run())

    # -- request loop -----------------------------------------------------------------
    async def _run(self) -> None:
        server = self._server
        try:
            while self._queue and self.transport is not None:
                head, body = self._queue.popleft()
                req = Request(head.method.decode("latin-1"), head.target.decode("latin-1"),
                              head.headers, body, self.peer, self.sock)
                server.stats.requests += 1
                try:
                    resp = await server.handler(req)
                except Exception:
                    log.exception("unhandled error for %s %s", req.method, req.target)
                    resp = Response(500, "Internal Server Error\n", "text/plain")
                keep = head.keep_alive and not server.stopping
                self._write(resp, keep, head.method == b"HEAD")
                if not keep:
                    self._close()
                    return
        finally:
            self._busy = False
            self._task = None
            self._last = self.loop.time()
        if server.stopping and self.transport is not None:
            self._close()

    def _write(self, resp: Response, keep_alive: bool, head_only: bool) -> None:
        t = self.transport
        if t is None:
            return
        hs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
        for c in resp.cookies:
            hs.append((b"Set-Cookie", c.encode("latin-1")))
        body = resp.body
        hs.append((b"Content-Length", b"%d" % len(body)))
        if not keep_alive:
            hs.append((b"Connection", b"close"))
        head = encode_response_head(resp.status, hs, resp.reason.encode("latin-1"))
        t.write(head if head_only or not body else head + body)

    def _fail(self, status: int) -> None:
        if self.transport is not None:
            self.transport.write(simple_response(status, b"", keep_alive=False))
        self._close()

    def _close(self) -> None:
        if self.transport is not None and not self._closing:
            self._closing = True
            self.transport.close()

    @property
    def idle(self) -> bool:
        return not self._busy and not self._queue and self._head is None

    def idle_since(self) -> float | None:
        """When this connection last did something, unless a request is being handled.
        A half-sent request counts as idle too (slow clients are closed, like Tomcat's
        connectionTimeout), measured from the last bytes received."""
        return self._last if not self._busy and not self._queue else None


class HttpConnector:
    """Listens and owns the connections; `stop()` is the graceful shutdown."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 8081,
                 limits: Limits | None = None, keepalive_timeout: float = 20.0) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.limits = limits or Limits(max_body_size=2 * 1024 * 1024)
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[HttpConnection] = set()
        self.stats = ConnectorStats()
        self.stopping = False
        self.server: asyncio.Server | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: HttpConnection(self), self.host,
                                              self.port, reuse_address=True, backlog=1024)
        sockname = self.server.sockets[0].getsockname()
        self.port = sockname[1]
        if self.keepalive_timeout > 0:
            self._idle_timer = loop.call_later(IDLE_CHECK, self._close_idle)
        return sockname[0], sockname[1]

    def _close_idle(self) -> None:
        loop = asyncio.get_running_loop()
        limit = loop.time() - self.keepalive_timeout
        for c in list(self.connections):
            since = c.idle_since()
            if since is not None and since < limit:
                c._close()
        if not self.stopping:
            self._idle_timer = loop.call_later(IDLE_CHECK, self._close_idle)

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self.server is not None:
            self.server.close()
        for c in list(self.connections):
            if c.idle:
                c._close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for c in list(self.connections):
            c._close()
