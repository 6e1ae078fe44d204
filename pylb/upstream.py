"""Upstream side of the proxy: member connections, keep-alive pools, and the choice of peer.

`UpstreamGroup` wraps one `[upstream.NAME]`: its peers, its balancer (sans-IO), the sticky
layer (sans-IO) and per-peer pools of idle keep-alive connections (nginx `keepalive N`).
`UpstreamConnection` is an `asyncio.Protocol` that parses one response at a time and hands
events to the current `Exchange` (defined by the client side).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from pycommon.http import Body, EndOfMessage, HttpError, ResponseHead, ResponseParser, Upgrade
from pylb.balancing import METHODS, Balancer, Peer
from pylb.config import UpstreamConfig
from pylb.sticky import Sticky

if TYPE_CHECKING:
    from pycommon.http import RequestHead


class UpstreamGone(Exception):
    def __init__(self, got_bytes: bool) -> None:
        self.got_bytes = got_bytes
        super().__init__("upstream connection lost")


class UpstreamTimeout(Exception):
    pass


class Sink(Protocol):
    """What an upstream connection reports to (implemented by the client-side Exchange)."""

    def on_head(self, h: ResponseHead) -> None: ...
    def on_body(self, data: bytes) -> None: ...
    def on_end(self, keep: bool) -> None: ...
    def on_upgrade(self, data: bytes) -> None: ...
    def on_lost(self, exc: BaseException) -> None: ...
    def flush(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("alive", "drained", "flow", "got_bytes", "head", "idle_since", "last_read",
                 "loop", "on_close", "parser", "peer", "read_paused", "sink", "transport",
                 "tunnel")

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.loop = asyncio.get_running_loop()  # once: each lookup is a getpid() on 3.11
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.sink: Sink | None = None
        self.alive = True
        self.got_bytes = False
        self.head: ResponseHead | None = None
        self.last_read = 0.0
        self.idle_since = 0.0
        self.tunnel: Callable[[bytes], None] | None = None  # set once upgraded
        self.on_close: Callable[[], None] | None = None  # tunnel: close the client too
        self.flow: asyncio.Transport | None = None  # tunnel: the client side to pause
        self.drained: asyncio.Future[None] | None = None  # set while our writes are paused
        self.read_paused = False  # we stopped reading because the client is slow

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def pause_writing(self) -> None:
        if self.flow is not None:
            self.flow.pause_reading()
        elif self.drained is None:
            self.drained = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.flow is not None and not self.flow.is_closing():
            self.flow.resume_reading()
        d = self.drained
        self.drained = None
        if d is not None and not d.done():
            d.set_result(None)

    def pause(self) -> None:
        """Stop reading the member (its client's socket is full)."""
        if not self.read_paused and self.transport is not None and self.alive:
            self.read_paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.read_paused:
            self.read_paused = False
            if self.transport is not None and self.alive:
                self.transport.resume_reading()

    async def send(self, data: bytes) -> None:
        """Write and wait while the socket is above its high-water mark (streamed bodies)."""
        if self.transport is None or not self.alive:
            return
        self.transport.write(data)
        d = self.drained
        if d is not None:
            await d

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        d = self.drained
        self.drained = None
        if d is not None and not d.done():
            d.set_result(None)
        if self.on_close is not None:
            self.on_close()
        sink = self.sink
        self.sink = None
        if sink is None:
            return
        for ev in self.parser.feed_eof():
            if isinstance(ev, EndOfMessage):
                sink.on_end(False)
                return
        sink.on_lost(UpstreamGone(self.got_bytes))

    def start(self, sink: Sink, data: bytes, head_only: bool, now: float) -> None:
        self.sink = sink
        self.got_bytes = False
        self.last_read = now
        if head_only:
            self.parser.expect_head_only()
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel(data)
            return
        sink = self.sink
        if sink is None:  # bytes while idle: the upstream is confused; drop the connection
            self.close()
            return
        self.got_bytes = True
        self.last_read = self.loop.time()
        try:
            events = self.parser.feed(data)
        except HttpError as exc:
            self.sink = None
            self.close()
            sink.on_lost(exc)
            return
        for ev in events:
            cls = ev.__class__
            if cls is Body:
                sink.on_body(ev.data)  # type: ignore[union-attr]
            elif cls is ResponseHead:
                self.head = ev  # type: ignore[assignment]
                sink.on_head(ev)  # type: ignore[arg-type]
            elif cls is EndOfMessage:
                head = self.head
                if head is None or head.status < 200:
                    continue  # 1xx interim answer, or 101 whose Upgrade event follows
                self.sink = None
                sink.on_end(head.keep_alive)
            elif isinstance(ev, Upgrade):
                self.sink = None
                sink.on_upgrade(ev.data)
        if self.sink is sink:  # mid-response: what arrived goes out now (on_end flushed)
            sink.flush()

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()


_VAR = re.compile(r"\$(request_uri|uri|args|remote_addr|host|cookie_\w+|arg_\w+|http_\w+)")


def key_function(expr: str) -> Callable[[RequestHead, str], bytes]:
    """Compile an nginx-style key (`$request_uri`, `$cookie_user`, `$remote_addr$uri`)."""
    from pylb.sticky import cookie_value

    parts: list[str | tuple[str, str]] = []
    pos = 0
    for m in _VAR.finditer(expr):
        if m.start() > pos:
            parts.append(expr[pos:m.start()])
        name = m.group(1)
        kind, _, arg = name.partition("_") if name.startswith(("cookie_", "arg_", "http_")) \
            else (name, "", "")
        parts.append((kind, arg))
        pos = m.end()
    if pos < len(expr):
        parts.append(expr[pos:])

    def evaluate(head: RequestHead, remote: str) -> bytes:
        out = []
        for p in parts:
            if isinstance(p, str):
                out.append(p.encode())
                continue
            kind, arg = p
            target = head.target
            if kind == "request_uri":
                out.append(target)
            elif kind == "uri":
                out.append(target.split(b"?", 1)[0])
            elif kind == "args":
                out.append(target.partition(b"?")[2])
            elif kind == "remote_addr":
                out.append(remote.encode())
            elif kind == "host":
                out.append(head.get(b"host") or b"")
            elif kind == "cookie":
                cookies = [v for k, v in head.headers if k.lower() == b"cookie"]
                out.append(cookie_value(cookies, arg.encode()) or b"")
            elif kind == "arg":
                for kv in target.partition(b"?")[2].split(b"&"):
                    k, _, v = kv.partition(b"=")
                    if k == arg.encode():
                        out.append(v)
                        break
            elif kind == "http":
                out.append(head.get(arg.replace("_", "-").lower().encode()) or b"")
        return b"".join(out)

    return evaluate


class UpstreamGroup:
    """A balancer, the sticky layer and per-peer pools of idle keep-alive connections."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.peers = [Peer(m.name, m.host, m.port, m.weight, m.max_fails, m.fail_timeout,
                           m.backup, m.down, m.route, m.state) for m in cfg.members]
        self.balancer: Balancer = METHODS[cfg.balance](self.peers)
        self.by_name = {p.name: p for p in self.peers}
        self.sticky = Sticky(cfg.sticky, self.peers) if cfg.sticky else None
        self.key = key_function(cfg.hash_key) if cfg.hash_key else None
        # nginx `keepalive N`: ONE cache of at most N idle connections for the whole upstream,
        # found by the member's address and evicted least-recently-used first. (Per member
        # pools would hold N idle connections per member: 1,000 members x N sockets, each
        # touched once in 1,000 requests.) `lru` is every idle connection, oldest first.
        self.idle: dict[str, list[UpstreamConnection]] = {}
        self.lru: dict[UpstreamConnection, None] = {}
        self.tries = cfg.next_upstream_tries or len(self.peers)
        self.retired = False

    def take_idle(self, peer: Peer, now: float,
                  max_idle: float | None) -> UpstreamConnection | None:
        """The most recently released idle connection to `peer`'s address, if any."""
        pool = self.idle.get(peer.server)
        while pool:
            conn = pool.pop()
            del self.lru[conn]
            if conn.alive and (max_idle is None or now - conn.idle_since < max_idle):
                conn.peer = peer  # members may share an address (and so, connections)
                return conn
            conn.close()
        return None

    async def connect(self, peer: Peer) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(peer), peer.host, peer.port),
            self.cfg.connect_timeout)
        return proto

    def release(self, conn: UpstreamConnection, keep: bool, now: float) -> None:
        conn.sink = None
        if conn.read_paused:
            conn.resume()  # paused for a slow client whose answer is now complete
        if not (keep and conn.alive and not self.retired and self.cfg.keepalive > 0):
            conn.close()
            return
        lru = self.lru
        if len(lru) >= self.cfg.keepalive:  # full: the least recently used one goes
            old = next(iter(lru))
            del lru[old]
            self.idle[old.peer.server].remove(old)
            old.close()
        conn.idle_since = now
        lru[conn] = None
        pool = self.idle.get(conn.peer.server)
        if pool is None:
            pool = self.idle[conn.peer.server] = []
        pool.append(conn)

    def carry_over(self, old: UpstreamGroup) -> None:
        """Keep counters and passive/active health of members that survive a reload."""
        for p in self.peers:
            o = old.by_name.get(p.name)
            if o is None or (o.host, o.port) != (p.host, p.port):
                continue
            p.requests, p.failures, p.sticky_hits = o.requests, o.failures, o.sticky_hits
            p.fails, p.checked, p.accessed, p.healthy = o.fails, o.checked, o.accessed, o.healthy

    def close(self) -> None:
        self.retired = True
        for conn in self.lru:
            conn.close()
        self.lru.clear()
        self.idle.clear()
