"""The proxy data path (asyncio shell): client connections, exchanges, retries, tunnels.

Decisions (which peer, is it usable, which route) live in `pylb.balancing` and `pylb.sticky`
(sans-IO); this module only moves bytes and timers.

* Requests on one client connection are answered strictly in order (pipelining-safe); parse
  errors found behind a request in flight are answered after it, then the connection closes.
* Request bodies are buffered (bounded by `client_max_body_size`, nginx's default
  `proxy_request_buffering on`), so an over-limit body never reaches a member and a retry
  after a connect failure can resend it. Two exceptions keep memory bounded: Content-Length
  bodies from STREAM_MIN bytes on (the limit is checked on the header), and chunked bodies
  that outgrow STREAM_MIN when there is no limit (`client_max_body_size = 0`, where nothing
  else would bound them) are streamed — the latter re-chunked to the member. Responses are
  streamed: the upstream socket stops being read while the client's socket is over its
  high-water mark (`pause_writing`).
* Retries (nginx `proxy_next_upstream error timeout`): connect error/timeout → next member;
  once a non-idempotent request (POST, PATCH, LOCK, ...) was written to a member it is never
  re-sent. To keep that from turning an upstream's idle-close race into a 502, such requests
  only reuse pooled connections idle for less than `NON_IDEMPOTENT_MAX_IDLE` seconds.
  Give-up: timeout → 504, otherwise 502; nothing usable → 502; sticky force → 503.
* `Upgrade` (WebSocket) requests are forwarded with their Upgrade/Connection headers; on a
  101 answer both sockets become a byte tunnel with backpressure both ways.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

from pycommon.http import (
    HOP_BY_HOP,
    LAST_CHUNK,
    Body,
    EndOfMessage,
    Event,
    HttpError,
    Limits,
    RequestHead,
    RequestParser,
    ResponseHead,
    Upgrade,
    encode_chunk,
    encode_response_head,
    error_page,
    simple_response,
)
from pylb.access_log import AccessLog
from pylb.balancing import Peer, Pick
from pylb.config import LbConfig, ServerConfig
from pylb.set_headers import Part, compile_value, host_variable, render, split_absolute
from pylb.sticky import strip_cookie
from pylb.upstream import UpstreamConnection, UpstreamGone, UpstreamGroup, UpstreamTimeout

log = logging.getLogger("pylb.proxy")

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})
NON_IDEMPOTENT_MAX_IDLE = 2.0
# set_headers value kinds, decided once per config (Proxy._set_ops)
_SET_HOST, _SET_REMOTE, _SET_XFF, _SET_HTTP, _SET_LITERAL, _SET_TEMPLATE = range(6)
SetOp = tuple[int, bytes, bytes, list[Part]]
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MAX_QUEUED = 16  # pipelined requests buffered before we stop reading the client
SWEEP_INTERVAL = 0.1  # read-timeout granularity
STREAM_MIN = 64 * 1024  # Content-Length bodies from this size on are streamed, not buffered
STREAM_HIGH = 256 * 1024  # stop reading the client above this much unsent body


class Exchange:
    """One request in flight to one upstream connection; relays the response to the client."""

    __slots__ = ("body_bytes", "cb", "chunked_out", "client", "conn", "ctx", "done", "extra",
                 "finished", "head_only", "head_written", "keep_client", "out", "peer",
                 "read_timeout", "reused", "status", "upgrade", "upgraded", "upstream_keep")

    def __init__(self, client: ClientConnection, keep_client: bool, head_only: bool,
                 upgrade: bool, extra: list[tuple[bytes, bytes]]) -> None:
        self.client = client
        # the slow path awaits `done`; the fast path gets `cb(exchange, error_or_None)`
        self.done: asyncio.Future[None] | None = None
        self.cb: Callable[[Exchange, BaseException | None], None] | None = None
        self.finished = False
        self.ctx: RequestCtx | None = None
        self.peer: Peer | None = None
        self.reused = False
        self.keep_client = keep_client
        self.head_only = head_only
        self.upgrade = upgrade
        self.extra = extra
        self.head_written = False
        self.chunked_out = False
        self.upstream_keep = True
        self.upgraded = False
        self.status = 0
        self.body_bytes = 0
        self.out: list[bytes] = []  # coalesced: one client write per upstream read
        self.conn: UpstreamConnection | None = None
        self.read_timeout = 60.0

    def on_head(self, h: ResponseHead) -> None:
        status = h.status
        if status < 200 and not (status == 101 and self.upgrade):
            return  # 100 Continue and friends: the body was already sent whole
        self.status = status
        if status == 101:
            self.out.append(encode_response_head(101, h.headers, h.reason or None))
            self.head_written = True
            return
        if self.upgrade:  # refused: the client's parser has switched, so this is the last
            self.keep_client = False
        reason = h.reason
        if reason:
            # the head goes straight into `out` as parts (flush joins head and body once);
            # one lower() per header. A Connection header listing more than hop-by-hop
            # names takes the general path below, which gives the same bytes.
            out = self.out
            mark = len(out)
            out += (b"HTTP/1.1 %d " % status, reason, b"\r\n")
            conn: bytes | None = None
            for k, v in h.headers:
                lk = k.lower()
                if lk in HOP_BY_HOP:
                    if conn is None and lk == b"connection":
                        conn = v
                    continue
                out += (k, b": ", v, b"\r\n")
            if not conn or _only_hop_by_hop(conn):
                for k, v in self.extra:
                    out += (k, b": ", v, b"\r\n")
                if not (self.head_only or status == 204 or status == 304) \
                        and h.content_length is None:
                    if self.client.http11:
                        out.append(b"Transfer-Encoding: chunked\r\n")
                        self.chunked_out = True
                    else:
                        self.keep_client = False
                if not self.keep_client:
                    out.append(b"Connection: close\r\n\r\n")
                elif self.client.http11:
                    out.append(b"\r\n")
                else:  # an HTTP/1.0 client is told it may keep the connection (nginx)
                    out.append(b"Connection: keep-alive\r\n\r\n")
                self.head_written = True
                return
            del out[mark:]
        self._head_general(h, status)

    def _head_general(self, h: ResponseHead, status: int) -> None:
        """`on_head` for an empty reason phrase or a Connection header listing headers."""
        conn_tokens = _connection_tokens(h.get(b"connection"))
        hs = [(k, v) for k, v in h.headers
              if k.lower() not in HOP_BY_HOP and k.lower() not in conn_tokens]
        hs.extend(self.extra)
        no_body = self.head_only or status in (204, 304)
        if not no_body and h.content_length is None:
            if self.client.http11:
                hs.append((b"Transfer-Encoding", b"chunked"))
                self.chunked_out = True
            else:
                self.keep_client = False
        if not self.keep_client:
            hs.append((b"Connection", b"close"))
        elif not self.client.http11:
            hs.append((b"Connection", b"keep-alive"))
        self.out.append(encode_response_head(status, hs, h.reason or None))
        self.head_written = True

    def on_body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        self.out.append(encode_chunk(data) if self.chunked_out else data)

    def flush(self) -> None:
        out = self.out
        if out:
            self.client.write(out[0] if len(out) == 1 else b"".join(out))
            self.out = []

    def on_end(self, keep: bool) -> None:
        self.upstream_keep = keep
        if self.chunked_out:
            self.out.append(LAST_CHUNK)
        self.flush()
        self.finish(None)

    def on_upgrade(self, data: bytes) -> None:
        self.upgraded = True
        self.upstream_keep = False
        if data:
            self.out.append(data)
        self.flush()
        self.finish(None)

    def on_lost(self, exc: BaseException) -> None:
        self.finish(exc)

    def finish(self, exc: BaseException | None) -> None:
        if self.finished:
            return
        self.finished = True
        cb = self.cb
        if cb is not None:
            self.cb = None
            cb(self, exc)
            return
        d = self.done
        if d is not None and not d.done():
            if exc is None:
                d.set_result(None)
            else:
                d.set_exception(exc)



class RequestCtx:
    """One client request across its attempts (fast callback path and slow retry path)."""

    __slots__ = ("body", "client", "data", "group", "head", "head_only", "idempotent",
                 "inserted", "keep", "pick", "stale", "started", "strip", "tries")

    def __init__(self, client: ClientConnection, head: RequestHead, body: bytes | BodyStream,
                 keep: bool, group: UpstreamGroup, started: float) -> None:
        self.client = client
        self.head = head
        self.body = body
        self.keep = keep
        self.group = group
        self.started = started
        bal = group.balancer
        self.pick = pick = Pick(client=client.packed() if bal.wants_client else b"")
        self.inserted: str | None = None
        sticky = group.sticky
        self.strip: bytes | None = None
        if sticky is not None:
            cookies = [v for k, v in head.headers if k.lower() == b"cookie"]
            pick.route, self.inserted = sticky.routes(head.target, cookies)
            if sticky.cfg.indirect and sticky.cfg.insert:
                self.strip = sticky.cfg.insert.encode()
        if group.key is not None:
            pick.key = group.key(head, client.peer)
        self.idempotent = head.method in IDEMPOTENT
        self.head_only = head.method == b"HEAD"
        self.data: bytes | None = None
        self.tries = group.tries
        self.stale = 0


class BodyStream:
    """A request body streamed to the member as it arrives (large Content-Length bodies).

    The client socket stops being read while more than `STREAM_HIGH` bytes wait here, and
    the pump in `Proxy.forward` waits for the member's socket to drain, so memory stays
    bounded whatever the body size. Chunked bodies are streamed only without a body limit:
    their size is unknown up front, and an over-limit one must never reach a member.
    """

    __slots__ = ("chunked", "chunks", "client", "ended", "failed", "paused", "size", "waiter")

    def __init__(self, client: ClientConnection, chunked: bool = False) -> None:
        self.client = client
        self.chunked = chunked  # sent to the member with Transfer-Encoding: chunked
        self.chunks: list[bytes] = []
        self.size = 0
        self.ended = False
        self.failed = False
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        t = self.client.transport
        if self.size > STREAM_HIGH and not self.paused and t is not None:
            t.pause_reading()
            self.paused = True
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def fail(self) -> None:
        self.failed = True
        self._wake()

    async def read(self) -> bytes | None:
        """The next bytes of the body; None at its end. Raises ConnectionError if the
        client went away or sent a bad body."""
        while not self.chunks and not self.ended and not self.failed:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None
        if self.failed:
            raise ConnectionError("client body aborted")
        if not self.chunks:
            return None
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks = []
        self.size = 0
        t = self.client.transport
        if self.paused and t is not None:
            self.paused = False
            if not self.client.reading_paused:
                t.resume_reading()
        return data


def _connection_tokens(value: bytes | None) -> frozenset[bytes]:
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(b","))


def _only_hop_by_hop(value: bytes) -> bool:
    """Does a Connection header list nothing but names that are hop-by-hop anyway?"""
    lv = value.lower()
    if lv == b"keep-alive" or lv == b"upgrade":
        return True
    return _connection_tokens(value) <= HOP_BY_HOP


def _first_sockname(srv: asyncio.Server) -> Any:
    """The address the server's first socket is bound to. (uvloop's `Server.sockets` is a
    list where asyncio's is a tuple: read without committing to either.)"""
    socks: Any = getattr(srv, "sockets")  # noqa: B009
    return socks[0].getsockname()


def _pack_addr(addr: str) -> bytes:
    try:
        return ipaddress.ip_address(addr).packed
    except ValueError:
        return b""


class ClientConnection(asyncio.Protocol):
    __slots__ = ("_body", "_body_size", "_busy", "_deadline", "_head", "_packed", "_queue",
                 "_timer", "_timer_kind",
                 "closing", "http11", "loop", "paused", "peer", "peer_bytes", "parser",
                 "pending_tunnel",
                 "proxy", "reading_paused", "served", "stream", "transport", "tunnel",
                 "upstream")

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        # looked up once per connection: on Python 3.11 every asyncio.get_running_loop()
        # is a getpid() system call (fork check)
        self.loop = asyncio.get_running_loop()
        self.parser = RequestParser(proxy.limits)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.peer_bytes = b""
        self._queue: deque[tuple[RequestHead | None, bytes | int | BodyStream]] = deque()
        self._head: RequestHead | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""
        self._deadline = 0.0
        self._packed: bytes | None = None
        self.closing = False
        self.http11 = True
        self.served = 0
        self.paused = False  # our writes are over the high-water mark
        self.reading_paused = False
        self.upstream: UpstreamConnection | None = None  # the member streaming to us now
        self.tunnel: UpstreamConnection | None = None
        self.pending_tunnel: list[bytes] = []
        self.stream: BodyStream | None = None  # the body being streamed right now

    # -- asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.peer_bytes = self.peer.encode()
        self.proxy.clients.add(self)
        self.proxy.stats.connections += 1
        self._arm("header", self.proxy.server.client_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.clients.discard(self)
        self._cancel_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        if self.stream is not None:
            self.stream.fail()
        up = self.upstream or self.tunnel
        if up is not None:
            up.close()

    def pause_writing(self) -> None:
        self.paused = True
        up = self.upstream or self.tunnel
        if up is not None:
            up.pause()

    def resume_writing(self) -> None:
        self.paused = False
        up = self.upstream or self.tunnel
        if up is not None:
            up.resume()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            if self.tunnel.transport is not None:
                self.tunnel.transport.write(data)
            return
        if self._timer_kind != "body":
            self._deadline = 0.0  # _cancel_timer(), inlined
            self._timer_kind = ""
        try:
            events = self.parser.feed(data)
        except HttpError as exc:
            self._handle(exc.events)
            if self.stream is not None:  # a streamed body went bad: abort it
                self.stream.fail()
                self.stream = None
                self.close()
                return
            self._reject(exc.status)
            return
        self._handle(events)
        if self._head is None and events and events[-1].__class__ is not EndOfMessage \
                and not self.parser.upgraded:
            self._arm("header", self.proxy.server.client_header_timeout)
        elif self._head is None and not events:
            self._arm("header", self.proxy.server.client_header_timeout)
        if self._queue:
            if not self._busy:
                self._busy = True
                self._next()
            if len(self._queue) >= MAX_QUEUED and self.transport is not None:
                self.transport.pause_reading()
                self.reading_paused = True

    def _handle(self, events: list[Event]) -> None:
        for ev in events:
            cls = ev.__class__
            if cls is RequestHead:
                head: RequestHead = ev  # type: ignore[assignment]  # (cast() is a call)
                self._head = head
                self._body = []
                self._body_size = 0
                if head.chunked or head.content_length:  # head.has_body
                    self._arm("body", self.proxy.server.client_body_timeout)
                    expect = head.get(b"expect")
                    if expect is not None and expect.lower() == b"100-continue" and \
                            head.version == "1.1" and not self._queue and not self._busy:
                        self.write(CONTINUE)  # only at the head of the line: never inside
                        # another response; a client kept waiting sends its body anyway
                    cl = head.content_length
                    if cl is not None and cl >= STREAM_MIN and not head.chunked:
                        self.stream = BodyStream(self)
                        self._queue.append((head, self.stream))
            elif cls is Body:
                chunk = ev.data  # type: ignore[union-attr]
                if self.stream is not None:
                    self.stream.feed(chunk)
                else:
                    self._body.append(chunk)
                    self._body_size += len(chunk)
                    if self._body_size >= STREAM_MIN and not self.proxy.limits.max_body_size:
                        self._stream_chunked()
                if self._timer_kind == "body":
                    self._arm("body", self.proxy.server.client_body_timeout)
            elif cls is EndOfMessage:
                if self._head is not None:
                    if self._timer_kind == "body":
                        self._cancel_timer()
                    if self.stream is not None:
                        self.stream.end()  # already queued when its head arrived
                        self.stream = None
                    else:
                        body = self._body[0] if len(self._body) == 1 else \
                            b"".join(self._body)
                        self._queue.append((self._head, body))
                    self._head = None
            elif isinstance(ev, Upgrade):
                if ev.data:
                    self.pending_tunnel.append(ev.data)

    def _stream_chunked(self) -> None:
        """An unlimited chunked body outgrew STREAM_MIN: stream it from here on. Nothing
        behind it can be queued yet (its bytes follow this body), so queueing now keeps
        the order."""
        head = self._head
        assert head is not None
        self.stream = BodyStream(self, chunked=True)
        for part in self._body:
            self.stream.feed(part)
        self._body = []
        self._body_size = 0
        self._queue.append((head, self.stream))

    # -- helpers ---------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _reject(self, status: int) -> None:
        """A bad request: answer it after whatever is in flight, then close (nginx)."""
        if self.transport is not None:
            self.transport.pause_reading()
        self._cancel_timer()
        self._queue.append((None, status))
        if not self._busy:
            self._busy = True
            self._next()

    def close(self) -> None:
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    def _arm(self, kind: str, timeout: float) -> None:
        """Set the one deadline this connection has (header, body or keep-alive idle).

        One timer per connection, re-armed lazily: moving the deadline later costs no new
        timer, so the per-request path does not create and cancel timer handles.
        """
        if timeout <= 0:
            self._cancel_timer()
            return
        loop = self.loop
        deadline = loop.time() + timeout
        self._timer_kind = kind
        self._deadline = deadline
        if self._timer is None or self._timer.when() > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._timeout)

    def _cancel_timer(self) -> None:
        self._deadline = 0.0
        self._timer_kind = ""

    def _timeout(self) -> None:
        self._timer = None
        if not self._deadline or self.transport is None:
            return
        loop = self.loop
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._timeout)
            return
        kind = self._timer_kind
        self._cancel_timer()
        if kind == "body":  # nginx client_body_timeout → 408
            self._reject(408)
        else:  # header timeout or keep-alive idle: close without a response
            self.close()

    def packed(self) -> bytes:
        """The client address as 4/16 bytes (ip_hash), computed once per connection."""
        if self._packed is None:
            self._packed = _pack_addr(self.peer)
        return self._packed

    @property
    def idle(self) -> bool:
        return not self._busy and not self._queue and self._head is None and self.tunnel is None

    def start_tunnel(self, conn: UpstreamConnection) -> None:
        self.tunnel = conn
        self._cancel_timer()

        def to_client(data: bytes) -> None:
            self.write(data)

        conn.tunnel = to_client
        conn.on_close = self.close
        conn.flow = self.transport
        if conn.transport is not None:
            for d in self.pending_tunnel:
                conn.transport.write(d)
        self.pending_tunnel = []
        if self.transport is not None and self.reading_paused:
            self.transport.resume_reading()

    def _next(self) -> None:
        """Start the next queued request, or go idle. Called with `_busy` set."""
        proxy = self.proxy
        while self._queue and self.transport is not None:
            head, body = self._queue.popleft()
            if self.reading_paused and len(self._queue) < MAX_QUEUED // 2 and \
                    head is not None and (self.stream is None or not self.stream.paused):
                self.reading_paused = False
                self.transport.resume_reading()
            if head is None:
                status = cast(int, body)
                self.write(proxy.error_response(status, False, False))
                proxy.access.log_error(self.peer, status)
                self.close()
                break
            self.served += 1
            self.http11 = head.version == "1.1"
            keep = (head.keep_alive and not proxy.stopping and
                    self.served < proxy.server.keepalive_requests)
            try:
                proxy.dispatch(self, head, body, keep)  # type: ignore[arg-type]
            except Exception:
                log.exception("proxy error")
                self.close()
                break
            return  # request_done() continues
        self._busy = False
        if self.transport is not None and self.tunnel is None:
            if proxy.stopping and self._head is None:
                self.close()
            elif not self._deadline:
                self._arm("idle", proxy.server.keepalive_timeout)

    def request_done(self, keep: bool) -> None:
        """The current request is answered (or failed); go on with the next one."""
        if self.tunnel is not None:
            self._busy = False
            return
        if not keep:
            self._busy = False
            self.close()
            return
        self._next()


class ProxyStats:
    __slots__ = ("connections", "requests", "responses_5xx")

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.responses_5xx = 0


class Proxy:
    def __init__(self, cfg: LbConfig) -> None:
        self.clients: set[ClientConnection] = set()
        self.stats = ProxyStats()
        self.stopping = False
        self.servers: dict[tuple[str, int], asyncio.Server] = {}
        self.reuse_port = False
        self.access = AccessLog(cfg.server.access_log, cfg.server.access_log_format)
        self.groups: dict[str, UpstreamGroup] = {}
        self.inflight: set[Exchange] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._fast_done_cb = self._fast_done  # one bound method, not one per request
        self.apply_config(cfg)

    def apply_config(self, cfg: LbConfig) -> None:
        """Install a (new) config; runtime member state is carried over by `pylb.runtime`."""
        self.cfg = cfg
        self.server: ServerConfig = cfg.server
        s = cfg.server
        self.limits = Limits(s.max_request_line, s.max_header_line, s.max_header_size,
                             s.client_max_body_size)
        old = self.groups
        self.groups = {name: UpstreamGroup(u) for name, u in cfg.upstreams.items()}
        self.default = self.groups[cfg.server.upstream]
        for gname, g in old.items():
            new = self.groups.get(gname)
            if new is not None:
                new.carry_over(g)
            g.close()  # idle pooled connections go; in-flight ones finish on the old group
        if (self.access.path, self.access.fmt) != (s.access_log, s.access_log_format):
            self.access.close()
            self.access = AccessLog(s.access_log, s.access_log_format)
        # set_headers decided once: (kind, b"Name: ", argument, compiled parts); values that
        # are one variable take a fast path, the rest are rendered (pylb.set_headers)
        ops: list[SetOp] = []
        names: list[bytes] = []
        for name, value in s.set_headers.items():
            parts = compile_value(value, "http")
            names.append(name.encode())
            prefix = name.encode() + b": "
            if not parts:
                continue  # empty: the client's header of that name is removed, nothing sent
            if len(parts) > 1:
                ops.append((_SET_TEMPLATE, prefix, b"", parts))
                continue
            kind, arg = parts[0]
            code = {"host": _SET_HOST, "remote_addr": _SET_REMOTE,
                    "proxy_add_x_forwarded_for": _SET_XFF, "http": _SET_HTTP,
                    "": _SET_LITERAL}.get(kind, _SET_TEMPLATE)
            ops.append((code, prefix, arg, parts))
        self._set_lower = frozenset(n.lower() for n in names)
        self._set_ops = ops
        # on an upgrade request the proxy's own Upgrade / Connection replace configured ones
        # (nginx's WebSocket recipe sets both; sending them twice would be wrong)
        self._set_ops_upgrade = [op for op in ops if op[1][:-2].lower() not in
                                 (b"upgrade", b"connection")]
        self._host_cache: dict[bytes, bytes] = {}  # Host value -> $host
        self._needs_host = any(op[0] == _SET_HOST or any(k == "host" for k, _ in op[3])
                               for op in ops)

    def error_response(self, status: int, keep: bool, head_only: bool) -> bytes:
        body = self.server.error_pages.get(status) or error_page(status)
        return simple_response(status, body, keep_alive=keep, head_only=head_only)

    def request_bytes(self, client: ClientConnection, head: RequestHead, body: bytes,
                      strip: bytes | None, length: int | None = None,
                      chunked: bool = False) -> bytes:
        """The request as sent to a member: head rewritten (hop-by-hop headers out,
        `set_headers` in, Content-Length for a buffered body, Transfer-Encoding: chunked for
        a streamed chunked one) plus the body, one bytes.

        Built straight into one list of parts (one lower() per header). A Connection header
        listing more than hop-by-hop names (`close`, custom tokens) has the client's headers
        picked again by `_client_headers_listed`. An absolute-form target goes to the member
        as its path (nginx), its host feeding `$host`.
        """
        set_lower = self._set_lower
        target = head.target
        url_host: bytes | None = None
        if target and target[0] != 47:  # not "/": absolute form (or "*")
            absolute = split_absolute(target)
            if absolute is not None:
                url_host, target = absolute
        parts = [head.method, b" ", target, b" HTTP/1.1\r\n", b""]  # [4]: $host lines
        host = b""
        xff: bytes | None = None
        conn: bytes | None = None
        for k, v in head.headers:
            lk = k.lower()
            if lk in HOP_BY_HOP:
                if conn is None and lk == b"connection":
                    conn = v
                continue
            if lk == b"host":
                host = v
            elif lk == b"x-forwarded-for":
                xff = v if xff is None else xff + b", " + v
                continue
            if lk == b"content-length" or lk == b"expect" or lk in set_lower:
                continue
            if strip is not None and lk == b"cookie":
                v = strip_cookie(v, strip)
                if not v:
                    continue
            parts += (k, b": ", v, b"\r\n")
        if conn and not _only_hop_by_hop(conn):
            del parts[5:]
            self._client_headers_listed(parts, head, strip)
        peer = client.peer_bytes
        if self._needs_host:
            if url_host is not None:
                host = url_host
            hv = self._host_cache.get(host)  # a few distinct Host values, seen again and again
            if hv is None:
                hv = host_variable(host) or b"localhost"
                if len(self._host_cache) >= 256:
                    self._host_cache.clear()
                self._host_cache[host] = hv
            host = hv
        for kind, prefix, arg, tmpl in (self._set_ops_upgrade if head.upgrade
                                        else self._set_ops):
            if kind == _SET_HOST:
                parts[4] += prefix + host + b"\r\n"
            elif kind == _SET_REMOTE:
                parts += (prefix, peer, b"\r\n")
            elif kind == _SET_XFF:
                parts += (prefix, xff + b", " + peer if xff else peer, b"\r\n")
            elif kind == _SET_HTTP:
                hv = head.get(arg)
                if hv:  # an empty value is not sent (nginx)
                    parts += (prefix, hv, b"\r\n")
            elif kind == _SET_LITERAL:
                parts += (prefix, arg, b"\r\n")
            else:
                value = render(tmpl, host, peer, xff, target, head.get)
                if value:
                    parts += (prefix, value, b"\r\n")
        if xff is not None and b"x-forwarded-for" not in set_lower:
            parts += (b"X-Forwarded-For: ", xff, b"\r\n")
        if head.upgrade:
            up = head.get(b"upgrade")
            if up is not None:
                parts += (b"Upgrade: ", up, b"\r\nConnection: upgrade\r\n")
        if length is not None:
            parts.append(b"Content-Length: %d\r\n\r\n" % length)
        elif chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
        elif body or head.method in (b"POST", b"PUT", b"PATCH"):
            parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
        else:
            parts.append(b"\r\n")
        if body:
            parts.append(body)
        return b"".join(parts)

    def _client_headers_listed(self, parts: list[bytes], head: RequestHead,
                               strip: bytes | None) -> None:
        """The client's headers for a Connection header that lists other headers to drop."""
        conn_tokens = _connection_tokens(head.get(b"connection"))
        set_lower = self._set_lower
        for k, v in head.headers:
            lk = k.lower()
            if lk in HOP_BY_HOP or lk in conn_tokens or lk == b"content-length" \
                    or lk == b"expect" or lk == b"x-forwarded-for" or lk in set_lower:
                continue
            if strip is not None and lk == b"cookie":
                v = strip_cookie(v, strip)
                if not v:
                    continue
            parts += (k, b": ", v, b"\r\n")

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)  # a reference, so the task is not collected mid-flight
        task.add_done_callback(self.tasks.discard)

    def _choose(self, ctx: RequestCtx, now: float) -> tuple[Peer | None,
                                                             list[tuple[bytes, bytes]], int]:
        """(peer, extra response headers, give-up status when no peer)."""
        group = ctx.group
        sticky = group.sticky
        extra: list[tuple[bytes, bytes]] = []
        if sticky is not None:
            d = sticky.choose(group.balancer, ctx.pick, now, ctx.inserted)
            if d.status:
                return None, extra, d.status
            if d.set_cookie is not None:
                extra.append((b"Set-Cookie", d.set_cookie))
                if sticky.cfg.nocache:
                    extra.append((b"Cache-Control", b"private"))
            peer = d.peer
        else:
            peer = group.balancer.select(ctx.pick, now)
        if peer is not None:
            ctx.pick.tried.add(peer.index)
        return peer, extra, 502

    def _request_data(self, ctx: RequestCtx) -> bytes:
        if ctx.data is None:
            if isinstance(ctx.body, BodyStream):
                chunked = ctx.body.chunked
                ctx.data = self.request_bytes(ctx.client, ctx.head, b"", ctx.strip,
                                              None if chunked else ctx.head.content_length,
                                              chunked)
            else:
                ctx.data = self.request_bytes(ctx.client, ctx.head, ctx.body, ctx.strip)
        return ctx.data

    def dispatch(self, client: ClientConnection, head: RequestHead, body: bytes | BodyStream,
                 keep: bool) -> None:
        """Proxy one request; `client.request_done(keep)` is called when it is answered.

        Fast path (the steady state of a keep-alive load): the member is chosen and a pooled
        connection is ready, so the exchange runs on callbacks alone — no task, no future.
        Everything else (connecting, retries, streamed bodies, upgrades) runs in a task.
        """
        now = client.loop.time()
        self.stats.requests += 1
        ctx = RequestCtx(client, head, body, keep, self.default, now)
        if body.__class__ is BodyStream or head.upgrade:
            self._spawn(self._slow(ctx, None))
            return
        peer, extra, give_up = self._choose(ctx, now)
        if peer is None:
            self._give_up(ctx, give_up)
            client.request_done(keep)
            return
        group = ctx.group
        conn = group.take_idle(peer, now,
                               None if ctx.idempotent else NON_IDEMPOTENT_MAX_IDLE)
        if conn is None:
            self._spawn(self._slow(ctx, (peer, extra)))
            return
        ctx.tries -= 1
        ex = Exchange(client, keep, ctx.head_only, False, extra)
        ex.cb = self._fast_done_cb
        ex.ctx = ctx
        ex.peer = peer
        ex.reused = True
        self._start(ctx, ex, peer, conn, now)

    def _start(self, ctx: RequestCtx, ex: Exchange, peer: Peer, conn: UpstreamConnection,
               now: float) -> None:
        peer.conns += 1
        peer.requests += 1
        client = ctx.client
        client.upstream = conn
        ex.conn = conn
        ex.read_timeout = ctx.group.cfg.read_timeout
        self.inflight.add(ex)
        conn.start(ex, self._request_data(ctx), ctx.head_only, now)
        if client.paused:
            conn.pause()

    def _end(self, ex: Exchange, peer: Peer) -> None:
        peer.conns -= 1
        ex.client.upstream = None
        self.inflight.discard(ex)

    def _fast_done(self, ex: Exchange, exc: BaseException | None) -> None:
        ctx = ex.ctx
        peer = ex.peer
        conn = ex.conn
        assert ctx is not None and peer is not None and conn is not None
        client = ctx.client
        peer.conns -= 1  # _end(), inlined: this runs once per request
        client.upstream = None
        self.inflight.discard(ex)
        group = ctx.group
        if exc is None:
            now = client.loop.time()
            group.balancer.report(peer, True, now)
            access = self.access
            if access.enabled:
                access.log(client, ctx.head, ex.status, ex.body_bytes, ctx.started, peer)
            group.release(conn, ex.upstream_keep, now)
            client.request_done(ex.keep_client)
            return
        retry = self._failed(ctx, ex, peer, conn, exc)
        if retry is None:
            client.request_done(False)
        elif retry:
            self._spawn(self._slow(ctx, None))
        else:
            client.request_done(ctx.keep)

    def _failed(self, ctx: RequestCtx, ex: Exchange, peer: Peer, conn: UpstreamConnection,
                exc: BaseException) -> bool | None:
        """After a failed attempt: None = client connection is done for, True = try the
        next member, False = the give-up answer was written."""
        conn.close()
        client = ctx.client
        if client.transport is None:  # the client went away: not the member's fault
            return None
        loop = asyncio.get_running_loop()
        group = ctx.group
        timeout = isinstance(exc, UpstreamTimeout)
        stale_conn = isinstance(exc, UpstreamGone) and ex.reused and not exc.got_bytes
        if not stale_conn:
            group.balancer.report(peer, False, loop.time())
            log.warning("%s (%s:%d): %s", peer.name, peer.host, peer.port,
                        "read timed out" if timeout else exc)
        if ex.head_written:  # mid-response: nothing to do but cut the client
            self.access.log(client, ctx.head, ex.status, ex.body_bytes, ctx.started, peer)
            return None
        give_up = 504 if timeout else 502
        if not ctx.idempotent or isinstance(exc, HttpError):
            self._give_up(ctx, give_up)  # sent once: never re-send; a bad answer neither
            return False
        if stale_conn and ctx.stale < group.cfg.keepalive + 1:
            ctx.stale += 1
            ctx.tries += 1  # an idle-closed pooled connection does not count as a try
            ctx.pick.tried.discard(peer.index)
        if ctx.tries <= 0:
            self._give_up(ctx, give_up)
            return False
        return True

    def _give_up(self, ctx: RequestCtx, status: int) -> None:
        self.stats.responses_5xx += 1
        ctx.client.write(self.error_response(status, ctx.keep, ctx.head_only))
        self.access.log(ctx.client, ctx.head, status, 0, ctx.started, None)

    async def _slow(self, ctx: RequestCtx,
                    first: tuple[Peer, list[tuple[bytes, bytes]]] | None) -> None:
        try:
            keep = await self.forward(ctx, first)
        except Exception:
            log.exception("proxy error")
            ctx.client.close()
            keep = False
        ctx.client.request_done(keep)

    async def forward(self, ctx: RequestCtx,
                      first: tuple[Peer, list[tuple[bytes, bytes]]] | None = None) -> bool:
        """Proxy one request with connects and retries; return whether the client
        connection stays open."""
        loop = asyncio.get_running_loop()
        client = ctx.client
        group = ctx.group
        bal = group.balancer
        give_up = 502
        while ctx.tries > 0:
            now = loop.time()
            if first is not None:
                peer, extra = first
                first = None
            else:
                choice, extra, give_up_now = self._choose(ctx, now)
                if choice is None:
                    give_up = give_up_now if give_up_now != 502 else give_up
                    break
                peer = choice
            ctx.tries -= 1
            conn = group.take_idle(peer, now,
                                   None if ctx.idempotent else NON_IDEMPOTENT_MAX_IDLE)
            reused = conn is not None
            if conn is None:
                try:
                    conn = await group.connect(peer)
                except TimeoutError:
                    bal.report(peer, False, loop.time())
                    give_up = 504
                    log.warning("connect to %s (%s:%d) timed out", peer.name, peer.host,
                                peer.port)
                    continue
                except OSError as exc:
                    bal.report(peer, False, loop.time())
                    give_up = 502
                    log.warning("connect to %s (%s:%d) failed: %s", peer.name, peer.host,
                                peer.port, exc.strerror or exc)
                    continue
                if client.transport is None:
                    group.release(conn, True, loop.time())
                    return False
            ex = Exchange(client, ctx.keep, ctx.head_only, ctx.head.upgrade, extra)
            ex.done = loop.create_future()
            ex.reused = reused
            try:
                self._start(ctx, ex, peer, conn, loop.time())
                if isinstance(ctx.body, BodyStream):
                    ctx.idempotent = False  # its bytes are consumed as they go: never re-sent
                    await self._pump(ctx.body, conn, ex)
                await ex.done
            except (UpstreamGone, UpstreamTimeout, HttpError) as exc:
                self._end(ex, peer)
                retry = self._failed(ctx, ex, peer, conn, exc)
                if retry is None:
                    return False
                if not retry:
                    return ctx.keep
                continue
            self._end(ex, peer)
            bal.report(peer, True, loop.time())
            self.access.log(client, ctx.head, ex.status, ex.body_bytes, ctx.started, peer)
            if ex.upgraded:
                client.start_tunnel(conn)
                return True
            group.release(conn, ex.upstream_keep, loop.time())
            if ctx.head.upgrade:
                return False  # refused upgrade: the client's parser already switched
            return ex.keep_client
        self._give_up(ctx, give_up)
        return ctx.keep

    async def _pump(self, stream: BodyStream, conn: UpstreamConnection, ex: Exchange) -> None:
        """Send a streamed body to the member, waiting for its socket to drain."""
        try:
            while not ex.finished:
                data = await stream.read()
                if data is None:
                    if stream.chunked:
                        await conn.send(LAST_CHUNK)
                    return
                conn.last_read = asyncio.get_running_loop().time()  # sending is progress
                await conn.send(encode_chunk(data) if stream.chunked else data)
        except ConnectionError:
            conn.close()  # the client's body broke off: the member must not take half

    async def start(self, reuse_port: bool = False) -> list[tuple[str, int]]:
        self.reuse_port = reuse_port
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return await self.bind(self.server.listen)

    async def _sweep(self) -> None:
        """nginx `proxy_read_timeout` for every exchange in flight: the longest gap between
        two reads from the member. One periodic task instead of a timer per request."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = loop.time()
            for ex in list(self.inflight):
                conn = ex.conn
                if conn is not None and now - conn.last_read >= ex.read_timeout \
                        and not ex.finished:
                    ex.finish(UpstreamTimeout())

    async def bind(self, addrs: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Listen on `addrs`, keeping sockets that are already open (SIGHUP reload)."""
        loop = asyncio.get_running_loop()
        bound = []
        for addr in addrs:
            srv = self.servers.get(addr)
            if srv is None:
                srv = await loop.create_server(lambda: ClientConnection(self), addr[0], addr[1],
                                               reuse_address=True, backlog=1024,
                                               reuse_port=self.reuse_port or None)
                self.servers[addr] = srv
            name = _first_sockname(srv)
            bound.append((name[0], name[1]))
        for addr in list(self.servers):
            if addr not in addrs:
                self.servers.pop(addr).close()
        return bound

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping = True
        for srv in self.servers.values():
            srv.close()
        for c in list(self.clients):
            if c.idle:
                c.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.clients and loop.time() < deadline:
            for c in list(self.clients):
                if c.idle:
                    c.close()
            await asyncio.sleep(0.02)
        for c in list(self.clients):
            c.close()
        for g in self.groups.values():
            g.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.access.close()
