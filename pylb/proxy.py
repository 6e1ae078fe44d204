"""The proxy data path: client connections, upstream keep-alive pools, retries (asyncio shell).

Decisions (which peer, is it usable) live in `pylb.balancing` (sans-IO); this module only moves
bytes. Requests on one client connection are proxied strictly in order (pipelining-safe). The
request body is read whole (bounded by client_max_body_size) before the upstream is chosen, so
a retry on connect failure can resend it; a non-idempotent request is never re-sent once its
bytes went out. Give-up: timeout → 504, anything else → 502.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import deque
from typing import cast

from pycommon.http import (
    HOP_BY_HOP,
    LAST_CHUNK,
    Body,
    EndOfMessage,
    HttpError,
    Limits,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    Upgrade,
    encode_chunk,
    encode_request_head,
    encode_response_head,
    error_page,
    simple_response,
)
from pylb.balancing import METHODS, Balancer, Peer, Pick
from pylb.config import LbConfig, ServerConfig, UpstreamConfig

log = logging.getLogger("pylb.proxy")

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class UpstreamGone(Exception):
    def __init__(self, sent: bool, got_bytes: bool) -> None:
        self.sent = sent
        self.got_bytes = got_bytes
        super().__init__("upstream connection lost")


class Exchange:
    """One request in flight to one upstream connection; relays the response to the client."""

    __slots__ = ("chunked_out", "client", "done", "got_bytes", "head_written", "keep_client",
                 "upstream_keep")

    def __init__(self, client: ClientConnection, keep_client: bool) -> None:
        self.client = client
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.keep_client = keep_client
        self.head_written = False
        self.chunked_out = False
        self.got_bytes = False
        self.upstream_keep = True

    def on_head(self, h: ResponseHead, head_only: bool) -> None:
        if h.status < 200:  # 100 Continue and friends: the body was already buffered
            return
        hs = [(k, v) for k, v in h.headers if k.lower() not in HOP_BY_HOP]
        no_body = head_only or h.status in (204, 304)
        if not no_body and h.content_length is None:
            if self.client.http11:
                hs.append((b"Transfer-Encoding", b"chunked"))
                self.chunked_out = True
            else:
                self.keep_client = False
        if not self.keep_client:
            hs.append((b"Connection", b"close"))
        self.upstream_keep = h.keep_alive
        self.client.write(encode_response_head(h.status, hs, h.reason or None))
        self.head_written = True

    def on_body(self, data: bytes) -> None:
        self.client.write(encode_chunk(data) if self.chunked_out else data)

    def on_end(self) -> None:
        if self.chunked_out:
            self.client.write(LAST_CHUNK)
        if not self.done.done():
            self.done.set_result(None)

    def on_lost(self, sent: bool) -> None:
        if not self.done.done():
            self.done.set_exception(UpstreamGone(sent, self.got_bytes))


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("alive", "exchange", "head_only", "parser", "peer", "sent", "transport")

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.alive = True
        self.head_only = False
        self.sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        ex = self.exchange
        if ex is not None:
            for ev in self.parser.feed_eof():
                if isinstance(ev, EndOfMessage):
                    ex.upstream_keep = False
                    ex.on_end()
                    return
            ex.on_lost(self.sent)

    def start(self, ex: Exchange, data: bytes, head_only: bool) -> None:
        self.exchange = ex
        self.head_only = head_only
        if head_only:
            self.parser.expect_head_only()
        assert self.transport is not None
        self.transport.write(data)
        self.sent = True

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:  # bytes while idle: the upstream is confused; drop the connection
            self.close()
            return
        ex.got_bytes = True
        try:
            events = self.parser.feed(data)
        except HttpError:
            self.close()
            ex.on_lost(True)
            return
        for ev in events:
            if isinstance(ev, ResponseHead):
                ex.on_head(ev, self.head_only)
            elif isinstance(ev, Body):
                ex.on_body(ev.data)
            elif isinstance(ev, EndOfMessage):
                if not ex.head_written:  # end of an interim 1xx response
                    continue
                self.exchange = None
                ex.on_end()
            elif isinstance(ev, Upgrade):
                self.close()
                ex.on_lost(True)

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()


class UpstreamGroup:
    """A balancer plus per-peer pools of idle keep-alive connections."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.cfg = cfg
        peers = [Peer(m.name, m.host, m.port, m.weight, m.max_fails, m.fail_timeout, m.backup,
                      m.down, m.route) for m in cfg.members]
        self.balancer: Balancer = METHODS[cfg.balance](peers)
        self.idle: dict[int, deque[UpstreamConnection]] = {p.index: deque() for p in peers}

    async def acquire(self, peer: Peer) -> tuple[UpstreamConnection, bool]:
        pool = self.idle[peer.index]
        while pool:
            conn = pool.pop()
            if conn.alive:
                return conn, True
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(peer), peer.host, peer.port),
            self.cfg.connect_timeout)
        return proto, False

    def release(self, conn: UpstreamConnection, keep: bool) -> None:
        conn.exchange = None
        conn.sent = False
        pool = self.idle[conn.peer.index]
        if keep and conn.alive and len(pool) < self.cfg.keepalive:
            pool.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for pool in self.idle.values():
            while pool:
                pool.pop().close()


class ProxyStats:
    __slots__ = ("connections", "requests", "responses_5xx")

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.responses_5xx = 0


def _pack_addr(addr: str) -> bytes:
    try:
        return ipaddress.ip_address(addr).packed
    except ValueError:
        return b""


class ClientConnection(asyncio.Protocol):
    __slots__ = ("_body", "_busy", "_head", "_queue", "_timer", "closing", "http11", "peer",
                 "parser", "proxy", "served", "transport")

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.parser = RequestParser(proxy.limits)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._queue: deque[tuple[RequestHead, bytes]] = deque()
        self._head: RequestHead | None = None
        self._body: list[bytes] = []
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self.closing = False
        self.http11 = True
        self.served = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.proxy.clients.add(self)
        self.proxy.stats.connections += 1
        self._arm(self.proxy.server.keepalive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.clients.discard(self)
        if self._timer:
            self._timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer = None
        try:
            events = self.parser.feed(data)
        except HttpError as exc:
            self._fail(exc.status)
            return
        for ev in events:
            if isinstance(ev, RequestHead):
                self._head = ev
                self._body = []
                expect = ev.get(b"expect")
                if expect is not None and expect.lower() == b"100-continue" and not self._queue \
                        and not self._busy:
                    self.write(CONTINUE)
            elif isinstance(ev, Body):
                self._body.append(ev.data)
            elif isinstance(ev, EndOfMessage) and self._head is not None:
                self._queue.append((self._head, b"".join(self._body)))
                self._head = None
            elif isinstance(ev, Upgrade):
                self._fail(501)  # WebSocket pass-through: not in the skeleton
                return
        if self._queue and not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._run())

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _fail(self, status: int) -> None:
        self.write(simple_response(status, error_page(status), keep_alive=False))
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    def _arm(self, timeout: float) -> None:
        if timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(timeout, self.close)

    @property
    def idle(self) -> bool:
        return not self._busy and not self._queue and self._head is None

    async def _run(self) -> None:
        try:
            while self._queue and self.transport is not None:
                head, body = self._queue.popleft()
                self.served += 1
                self.http11 = head.version == "1.1"
                keep = (head.keep_alive and not self.proxy.stopping and
                        self.served < self.proxy.server.keepalive_requests)
                keep = await self.proxy.forward(self, head, body, keep)
                if not keep:
                    self.close()
                    return
        except Exception:
            log.exception("proxy error")
            self.close()
        finally:
            self._busy = False
        if self.transport is not None:
            if self.proxy.stopping:
                self.close()
            else:
                self._arm(self.proxy.server.keepalive_timeout)


class Proxy:
    def __init__(self, cfg: LbConfig) -> None:
        self.cfg = cfg
        self.server: ServerConfig = cfg.server
        self.limits = Limits(max_body_size=cfg.server.client_max_body_size)
        self.groups = {name: UpstreamGroup(u) for name, u in cfg.upstreams.items()}
        self.default = self.groups[cfg.server.upstream]
        self.clients: set[ClientConnection] = set()
        self.stats = ProxyStats()
        self.stopping = False
        self.servers: list[asyncio.Server] = []

    def request_bytes(self, client: ClientConnection, head: RequestHead, body: bytes) -> bytes:
        conn_tokens = {t.strip().lower() for v in [head.get(b"connection") or b""]
                       for t in v.split(b",")}
        sets = self.server.set_headers
        hs: list[tuple[bytes, bytes]] = []
        host = head.get(b"host") or b""
        xff = None
        for k, v in head.headers:
            lk = k.lower()
            if lk in HOP_BY_HOP or lk in conn_tokens or lk == b"content-length" \
                    or lk == b"expect":
                continue
            if lk == b"x-forwarded-for":
                xff = v if xff is None else xff + b", " + v
                continue
            if lk in (b"host", b"x-real-ip") and k.decode("latin-1").title() in sets:
                continue
            hs.append((k, v))
        for name, value in sets.items():
            if value == "$host":
                hs.insert(0, (name.encode(), host or b"localhost"))
            elif value == "$remote_addr":
                hs.append((name.encode(), client.peer.encode()))
            elif value == "$proxy_add_x_forwarded_for":
                peer = client.peer.encode()
                hs.append((name.encode(), xff + b", " + peer if xff else peer))
            else:
                hs.append((name.encode(), value.encode()))
        if xff is not None and "X-Forwarded-For" not in sets:
            hs.append((b"X-Forwarded-For", xff))
        if body or head.method in (b"POST", b"PUT", b"PATCH"):
            hs.append((b"Content-Length", b"%d" % len(body)))
        return encode_request_head(head.method, head.target, hs) + body

    async def forward(self, client: ClientConnection, head: RequestHead, body: bytes,
                      keep: bool) -> bool:
        """Proxy one request; return whether the client connection stays open."""
        group = self.default
        bal = group.balancer
        self.stats.requests += 1
        pick = Pick(client=_pack_addr(client.peer))
        data = self.request_bytes(client, head, body)
        idempotent = head.method in IDEMPOTENT
        give_up = 502
        for _attempt in range(len(bal.peers) + 1):
            now = time.monotonic()
            peer = bal.select(pick, now)
            if peer is None:
                break
            pick.tried.add(peer.index)
            try:
                conn, reused = await group.acquire(peer)
            except TimeoutError:
                bal.report(peer, False, time.monotonic())
                give_up = 504
                log.warning("connect to %s (%s:%d) timed out", peer.name, peer.host, peer.port)
                continue
            except OSError as exc:
                bal.report(peer, False, time.monotonic())
                give_up = 502
                log.warning("connect to %s (%s:%d) failed: %s", peer.name, peer.host,
                            peer.port, exc.strerror or exc)
                continue
            ex = Exchange(client, keep)
            peer.active += 1
            peer.requests += 1
            try:
                conn.start(ex, data, head.method == b"HEAD")
                await asyncio.wait_for(asyncio.shield(ex.done), group.cfg.read_timeout)
            except UpstreamGone as gone:
                conn.close()
                if ex.head_written:  # mid-response: nothing to do but cut the client
                    bal.report(peer, False, time.monotonic())
                    return False
                if reused and not gone.got_bytes:
                    # a kept-alive upstream connection closed under us: not the peer's fault
                    pick.tried.discard(peer.index)
                else:
                    bal.report(peer, False, time.monotonic())
                if not idempotent and not (reused and not gone.got_bytes):
                    break
                continue
            except TimeoutError:
                conn.close()
                bal.report(peer, False, time.monotonic())
                if ex.head_written:
                    return False
                give_up = 504
                if not idempotent:
                    break
                continue
            finally:
                peer.active -= 1
            bal.report(peer, True, time.monotonic())
            group.release(conn, ex.upstream_keep)
            return ex.keep_client
        self.stats.responses_5xx += 1
        client.write(simple_response(give_up, error_page(give_up), keep_alive=keep,
                                     head_only=head.method == b"HEAD"))
        return keep

    async def start(self) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        bound = []
        for host, port in self.server.listen:
            srv = await loop.create_server(lambda: ClientConnection(self), host, port,
                                           reuse_address=True, backlog=1024)
            self.servers.append(srv)
            name = srv.sockets[0].getsockname()
            bound.append((name[0], name[1]))
        return bound

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping = True
        for srv in self.servers:
            srv.close()
        for c in list(self.clients):
            if c.idle:
                c.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.clients and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for c in list(self.clients):
            c.close()
        for g in self.groups.values():
            g.close()
