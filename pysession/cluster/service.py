"""The cluster service of one pynode process: membership heartbeats over UDP (multicast group
or static unicast list), the TCP channel, and the routing of messages to the replicating
managers by context path. Tomcat's SimpleTcpCluster: one per engine, shared by the managers
of every distributable context.

This is the thin asyncio shell: the decisions are in `membership.Membership` (sans-IO) and the
managers' cores; here we only move datagrams, frames and timers, reading the clock once per
event and passing it in.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import struct
import time
from typing import Any, Protocol

from pysession.cluster.channel import Channel, ChannelError
from pysession.cluster.config import ClusterConfig
from pysession.cluster.frames import FrameCodec, FrameRejected
from pysession.cluster.membership import Member, MemberEvent, Membership

log = logging.getLogger("pysession.cluster")


class ClusterListener(Protocol):
    """What a replicating manager implements to hear the cluster."""

    def on_cluster_message(self, sender: Member | None, sender_uuid: str, msg: dict[str, Any],
                           reply: Any) -> None: ...

    def on_member_event(self, event: MemberEvent) -> None: ...


class _Heartbeats(asyncio.DatagramProtocol):
    def __init__(self, service: ClusterService) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.service.heartbeat_received(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("heartbeat socket error: %s", exc)


def multicast_socket(group: str, port: int, iface: str) -> socket.socket:
    """A UDP socket joined to `group` on the interface with address `iface` (loopback by
    default), sending there too, with loop-back of our own datagrams on (several members
    share one host)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((group, port))
    mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(iface))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.setblocking(False)
    return s


class ClusterService:
    _shared: dict[tuple[Any, ...], ClusterService] = {}

    @classmethod
    def shared(cls, cfg: ClusterConfig, route: str) -> ClusterService:
        """One service per process and cluster settings, whatever the number of contexts."""
        key = (*cfg.identity(), route)
        svc = cls._shared.get(key)
        if svc is None:
            svc = cls._shared[key] = cls(cfg, route)
        return svc

    def __init__(self, cfg: ClusterConfig, route: str) -> None:
        self.cfg = cfg
        self.route = route
        self.uuid = secrets.token_hex(8)
        self.epoch = time.time_ns()
        self.codec = FrameCodec(self.uuid, self.epoch, cfg.key, cfg.encrypt)
        self.hb_codec = FrameCodec(self.uuid + "#hb", self.epoch, cfg.key, cfg.encrypt,
                                   max_age=max(30.0, cfg.drop_time * 4))
        self.channel = Channel(self.codec, self._on_frame, cfg.receiver_host,
                               cfg.receiver_ports)
        self.membership: Membership | None = None
        self.channel.on_link_lost = self._link_lost
        self.listeners: dict[str, ClusterListener] = {}
        self.users = 0
        self.started = False
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._confirming: set[str] = set()
        self._start_lock: asyncio.Lock | None = None
        self.rejected_hb = 0
        self._backlog: dict[str, list[tuple[dict[str, Any], Any, Any]]] = {}

    # -- wiring -----------------------------------------------------------------------
    def register(self, context: str, listener: ClusterListener) -> None:
        self.listeners[context] = listener

    @property
    def local(self) -> Member:
        assert self.membership is not None
        return self.membership.local

    def members(self) -> list[Member]:
        return self.membership.alive() if self.membership is not None else []

    def member(self, uuid: str) -> Member | None:
        return self.membership.members.get(uuid) if self.membership is not None else None

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Idempotent; the first manager's start opens the receiver and joins."""
        self.users += 1
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.started:
                return
            port = await self.channel.start()
            local = Member(self.uuid, self.route, self.cfg.receiver_host, port, time.time())
            self.membership = Membership(local, self.cfg.frequency, self.cfg.drop_time)
            loop = asyncio.get_running_loop()
            if self.cfg.membership == "multicast":
                sock = multicast_socket(self.cfg.address, self.cfg.port, self.cfg.bind)
                tr, _ = await loop.create_datagram_endpoint(lambda: _Heartbeats(self),
                                                            sock=sock)
            else:
                tr, _ = await loop.create_datagram_endpoint(
                    lambda: _Heartbeats(self), local_addr=(self.cfg.bind, self.cfg.port),
                    reuse_port=True)
            self._transport = tr
            self.started = True
            self._task = loop.create_task(self._run())
            log.info("cluster %s: member %s (%s) receiver %s:%d, membership %s", self.cfg.name,
                     self.uuid, self.route, self.cfg.receiver_host, port,
                     f"multicast {self.cfg.address}:{self.cfg.port} on {self.cfg.bind}"
                     if self.cfg.membership == "multicast" else
                     f"static {self.cfg.members}")

    async def stop(self) -> None:
        self.users -= 1
        if self.users > 0 or not self.started:
            return
        self.started = False
        if self._task is not None:
            self._task.cancel()
        if self.membership is not None:
            self._send_heartbeat(self.membership.heartbeat(time.time(), leaving=True))
        if self._transport is not None:
            self._transport.close()
        await self.channel.stop()

    async def wait_for_members(self, seconds: float) -> None:
        """Listen for heartbeats a while before deciding we are alone (join)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, seconds))

    # -- heartbeats -------------------------------------------------------------------
    def _send_heartbeat(self, hb: dict[str, Any] | None) -> None:
        if hb is None or self._transport is None:
            return
        hb["c"] = self.cfg.name
        data = self.hb_codec.seal(hb, time.time())
        targets = [(self.cfg.address, self.cfg.port)] if self.cfg.membership == "multicast" \
            else self.cfg.members
        for addr in targets:
            try:
                self._transport.sendto(data, addr)
            except OSError as exc:
                log.debug("heartbeat to %s failed: %s", addr, exc)

    def heartbeat_received(self, data: bytes) -> None:
        if self.membership is None:
            return
        now = time.time()
        try:
            rec = self.hb_codec.open(data, now)
        except FrameRejected as exc:
            self.rejected_hb += 1
            if self.rejected_hb == 1:
                log.warning("heartbeat rejected (%s)", exc)
            return
        msg = rec.message
        if not isinstance(msg, dict) or msg.get("c") != self.cfg.name:
            return
        if not rec.sender.endswith("#hb") or msg.get("m", {}).get("uuid") != rec.sender[:-3]:
            return
        for ev in self.membership.receive(msg, now):
            self._event(ev)

    async def _run(self) -> None:
        assert self.membership is not None
        tick = min(0.1, self.cfg.frequency / 2)
        while True:
            now = time.time()
            self._send_heartbeat(self.membership.heartbeat(now))
            for ev in self.membership.tick(now):
                if ev.kind == "suspect" and ev.member.uuid not in self._confirming:
                    self._confirming.add(ev.member.uuid)
                    asyncio.get_running_loop().create_task(self._confirm(ev.member))
            await asyncio.sleep(tick)

    def _link_lost(self, uuid: str) -> None:
        """A broken connection is a hint, not a verdict: confirm over TCP at once (Tomcat's
        TcpFailureDetector), so a killed member is dropped in milliseconds, not 3 s."""
        m = self.member(uuid)
        if m is not None and self.started and uuid not in self._confirming:
            self._confirming.add(uuid)
            asyncio.get_running_loop().create_task(self._confirm(m))

    async def _confirm(self, m: Member) -> None:
        """Failure detector: a silent member is dropped only when its receiver is dead too."""
        try:
            alive = await self.channel.probe(m.address, timeout=1.0)
            assert self.membership is not None
            if alive and m.uuid in self.membership.members:
                log.info("member %s (%s) silent but its receiver answers: kept", m.route,
                         m.uuid)
                self.membership.confirmed_alive(m.uuid, time.time())
            else:
                ev = self.membership.confirmed_dead(m.uuid)
                if ev is not None:
                    self._event(ev)
        finally:
            self._confirming.discard(m.uuid)

    def _event(self, ev: MemberEvent) -> None:
        log.info("member %s: %s (%s at %s:%d)", ev.kind, ev.member.route, ev.member.uuid,
                 ev.member.host, ev.member.port)
        if ev.kind in ("dropped", "left"):
            self.channel.drop(ev.member.uuid)
        elif ev.kind == "added" and self.membership is not None:
            self.membership.next_beat = 0.0  # answer a newcomer at once: joins are quick
        for lst in list(self.listeners.values()):
            try:
                lst.on_member_event(ev)
            except Exception:
                log.exception("member event handler failed")

    # -- messages ---------------------------------------------------------------------
    def _on_frame(self, sender: str, msg: Any, reply: Any) -> None:
        ctx = msg.get("ctx")
        lst = self.listeners.get(ctx) if isinstance(ctx, str) else None
        if lst is None:
            if msg.get("rid") is not None:
                reply({"error": f"no replicating context {ctx!r} here"})
            return
        lst.on_cluster_message(self.member(sender), sender, msg, reply)

    def post(self, m: Member, msg: dict[str, Any]) -> None:
        """Fire and forget, in order with everything else sent to `m` (connects if needed)."""
        self._enqueue(m, msg, None, None)

    async def ask(self, m: Member, msg: dict[str, Any], timeout: float,
                  on_part: Any = None) -> Any:
        """Send in order and wait for the reply; ChannelError / TimeoutError on failure."""
        fut = self.ask_future(m, msg, on_part)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.channel.forget(fut)
            raise

    def ask_future(self, m: Member, msg: dict[str, Any], on_part: Any = None
                   ) -> asyncio.Future[Any]:
        """Send in order; the future resolves with the reply (no timeout of its own)."""
        conn = self.channel.link_now(m.uuid)
        if conn is not None and m.uuid not in self._backlog:
            return self.channel.start_request(conn, msg, on_part)
        outer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(m, msg, outer, on_part)
        return outer

    def _enqueue(self, m: Member, msg: dict[str, Any], outer: asyncio.Future[Any] | None,
                 on_part: Any) -> None:
        conn = self.channel.link_now(m.uuid)
        if conn is not None and m.uuid not in self._backlog:
            self._write(conn, msg, outer, on_part)
            return
        q = self._backlog.setdefault(m.uuid, [])
        q.append((msg, outer, on_part))
        if len(q) == 1:
            asyncio.get_running_loop().create_task(self._flush(m))

    def _write(self, conn: Any, msg: dict[str, Any], outer: asyncio.Future[Any] | None,
               on_part: Any) -> None:
        if outer is None:
            try:
                conn.send(msg)
            except ChannelError:
                pass
            return
        inner = self.channel.start_request(conn, msg, on_part)

        def done(f: asyncio.Future[Any]) -> None:
            if outer.done():
                return
            if f.exception() is not None:
                outer.set_exception(f.exception())  # type: ignore[arg-type]
            else:
                outer.set_result(f.result())

        inner.add_done_callback(done)

    async def _flush(self, m: Member) -> None:
        try:
            conn = await self.channel.link(m.uuid, m.address)
        except ChannelError as exc:
            items = self._backlog.pop(m.uuid, [])
            log.debug("cannot reach %s: %s (%d messages dropped)", m.route, exc, len(items))
            for _, outer, _ in items:
                if outer is not None and not outer.done():
                    outer.set_exception(exc)
            return
        for msg, outer, on_part in self._backlog.pop(m.uuid, []):
            self._write(conn, msg, outer, on_part)
