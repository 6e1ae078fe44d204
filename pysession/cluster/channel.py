"""The cluster channel: asyncio TCP between members (Tomcat's NioReceiver / PooledSender).

One outgoing connection per peer carries everything this member sends it, in order: that is
the "one ordered stream per peer" the replication relies on. Every connection is two-way:
replies (acks, state-transfer parts, fetched sessions) go back on the connection that carried
the request. Frames are length-prefixed, HMAC-authenticated (optionally AES-GCM) msgpack — see
`frames.py`; a frame that fails the checks is dropped and counted, and a peer that sends one
is disconnected.

The receiver listens on the first free port of a range (4000-4100 by default).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from pysession.cluster.frames import FrameCodec, FrameReader, FrameRejected

log = logging.getLogger("pysession.cluster.channel")

#: handler(sender_uuid, message, reply) — reply(message) answers on the same connection
Handler = Callable[[str, Any, Callable[[Any], None]], None]


class ChannelError(ConnectionError):
    pass


class _Conn(asyncio.Protocol):
    """One TCP connection, either direction."""

    def __init__(self, channel: Channel, outgoing_to: str | None = None) -> None:
        self.channel = channel
        self.outgoing_to = outgoing_to
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader()
        self.closed = asyncio.get_running_loop().create_future()
        self.pending: set[int] = set()
        self.paused = False
        self.drained: asyncio.Future[None] | None = None
        self.out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.channel.conns.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except FrameRejected as exc:
            self.channel.reject(exc, self)
            return
        now = time.time()
        for raw in frames:
            try:
                rec = self.channel.codec.open(raw, now)
            except FrameRejected as exc:
                self.channel.reject(exc, self)
                return
            self.channel.dispatch(rec.sender, rec.message, self)

    def send(self, message: Any) -> None:
        """Frames sent in one loop iteration leave in one write (one syscall for the deltas
        of every request that finished meanwhile); order is kept."""
        if self.transport is None or self.transport.is_closing():
            raise ChannelError("connection closed")
        if not self.out:
            asyncio.get_running_loop().call_soon(self.flush)
        self.out.append(self.channel.codec.frame(message, time.time()))

    def flush(self) -> None:
        out, self.out = self.out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    async def wait_drained(self) -> None:
        if self.paused:
            if self.drained is None:
                self.drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self.drained)

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.conns.discard(self)
        if self.outgoing_to is not None and \
                self.channel.links.get(self.outgoing_to) is self:
            del self.channel.links[self.outgoing_to]
            if self.channel.on_link_lost is not None:
                self.channel.on_link_lost(self.outgoing_to)
        for rid in list(self.pending):
            self.channel.fail_request(rid, ChannelError("connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)


class Channel:
    def __init__(self, codec: FrameCodec, handler: Handler, host: str = "127.0.0.1",
                 ports: tuple[int, int] = (4000, 4100)) -> None:
        self.codec = codec
        self.handler = handler
        self.host = host
        self.ports = ports
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: dict[str, _Conn] = {}
        self.connecting: dict[str, asyncio.Future[_Conn]] = {}
        self.conns: set[_Conn] = set()
        self.requests: dict[int, tuple[asyncio.Future[Any], Callable[[Any], None] | None]] = {}
        self.ids = itertools.count(1)
        self.rejected_logged = False
        #: called with the peer's uuid when an outgoing link breaks (failure detector hint)
        self.on_link_lost: Callable[[str], None] | None = None

    # -- receiver ---------------------------------------------------------------------
    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        lo, hi = self.ports
        last: OSError | None = None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for port in range(lo, hi + 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, port))
                sock.listen(128)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            self.port = int(sock.getsockname()[1])
            self.server = await loop.create_server(lambda: _Conn(self), sock=sock)
            return self.port
        raise ChannelError(f"no free receiver port in {lo}-{hi} on {self.host}: {last}")

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.close()
        for rid in list(self.requests):
            self.fail_request(rid, ChannelError("channel stopped"))

    def reject(self, exc: FrameRejected, conn: _Conn) -> None:
        level = logging.WARNING if not self.rejected_logged else logging.DEBUG
        log.log(level, "cluster frame rejected (%s); closing that connection", exc)
        self.rejected_logged = True
        if conn.transport is not None:
            conn.transport.close()

    def dispatch(self, sender: str, msg: Any, conn: _Conn) -> None:
        if not isinstance(msg, dict):
            return
        t = msg.get("t")
        if t == "reply":
            rid = msg.get("id")
            entry = self.requests.get(rid) if isinstance(rid, int) else None
            if entry is None:
                return
            fut, on_part = entry
            if msg.get("more"):
                if on_part is not None:
                    on_part(msg.get("body"))
                return
            self.requests.pop(rid, None)  # type: ignore[arg-type]
            conn.pending.discard(rid)
            if not fut.done():
                fut.set_result(msg.get("body"))
            return

        def reply(body: Any, more: bool = False) -> None:
            rid = msg.get("rid")
            if rid is None:
                return
            try:
                conn.send({"t": "reply", "id": rid, "body": body, "more": more})
            except ChannelError:
                pass

        try:
            self.handler(sender, msg, reply)
        except Exception:
            log.exception("cluster message %r from %s failed", t, sender)

    # -- sender -----------------------------------------------------------------------
    async def link(self, uuid: str, address: tuple[str, int], timeout: float = 2.0) -> _Conn:
        c = self.links.get(uuid)
        if c is not None:
            return c
        fut = self.connecting.get(uuid)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self.connecting[uuid] = fut
            try:
                _, proto = await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                    lambda: _Conn(self, uuid), *address), timeout)
                self.links[uuid] = proto
                fut.set_result(proto)
            except (OSError, TimeoutError) as exc:
                fut.set_exception(ChannelError(f"cannot reach {address[0]}:{address[1]}: "
                                               f"{exc}"))
                fut.exception()  # mark retrieved
            finally:
                self.connecting.pop(uuid, None)
        return await asyncio.shield(fut)

    def link_now(self, uuid: str) -> _Conn | None:
        return self.links.get(uuid)

    async def send(self, uuid: str, address: tuple[str, int], msg: Any) -> None:
        conn = self.links.get(uuid) or await self.link(uuid, address)
        conn.send(msg)

    async def request(self, uuid: str, address: tuple[str, int], msg: Any, timeout: float,
                      on_part: Callable[[Any], None] | None = None) -> Any:
        """Send `msg` and wait for the reply (an ack, a session, the last part)."""
        conn = self.links.get(uuid) or await self.link(uuid, address)
        return await self.request_on(conn, msg, timeout, on_part)

    def start_request(self, conn: _Conn, msg: Any,
                      on_part: Callable[[Any], None] | None = None) -> asyncio.Future[Any]:
        rid = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.requests[rid] = (fut, on_part)
        conn.pending.add(rid)
        msg = dict(msg)
        msg["rid"] = rid
        try:
            conn.send(msg)
        except ChannelError as exc:
            self.fail_request(rid, exc)
        return fut

    async def request_on(self, conn: _Conn, msg: Any, timeout: float,
                         on_part: Callable[[Any], None] | None = None) -> Any:
        fut = self.start_request(conn, msg, on_part)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            for rid, (f, _) in list(self.requests.items()):
                if f is fut:
                    self.requests.pop(rid, None)
                    conn.pending.discard(rid)

    def forget(self, fut: asyncio.Future[Any]) -> None:
        """Drop the bookkeeping of a request nobody waits for any more (timed out)."""
        for rid, (f, _) in list(self.requests.items()):
            if f is fut:
                del self.requests[rid]
                for c in self.conns:
                    c.pending.discard(rid)
                return

    def fail_request(self, rid: int, exc: Exception) -> None:
        entry = self.requests.pop(rid, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(exc)
            entry[0].exception()

    async def probe(self, address: tuple[str, int], timeout: float = 1.0) -> bool:
        """The failure detector's TCP confirmation: does the member's receiver answer?"""
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
        except (OSError, TimeoutError):
            return False
        w.close()
        return True

    def drop(self, uuid: str) -> None:
        self.connecting.pop(uuid, None)
        c = self.links.pop(uuid, None)
        if c is not None and c.transport is not None:
            c.transport.close()
