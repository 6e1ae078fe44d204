"""Holding the virtual IP: a TCP forwarder on loopback, or `ip addr` + gratuitous ARP for real.

Loopback emulation: "holding" 127.0.0.88 means listening on 127.0.0.88:PORT and forwarding each
connection to this node's own balancer. Only the MASTER listens, so a client of the VIP reaches
whichever pylb is behind the current master — the same effect as the address moving between
hosts. A former master that was killed -9 frees the port with its process; if the port is still
busy when we become master (the old master is between its priority-0 advert and its exit), the
bind is retried every 10 ms while we stay master.

Real mode: `ip addr add VIP/prefix dev IF [label L]`, then gratuitous ARPs (5, like keepalived's
vrrp_garp_master_repeat) so neighbours update their caches, and another burst 5 s later
(keepalived's garp_master_delay); `ip addr del` on release.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import subprocess

from pyvrrp.config import VirtualAddress
from pyvrrp.packet import garp_frame
from pyvrrp.transport import interface_mac

log = logging.getLogger("pyvrrp.vip")
GARP_REPEAT = 5
GARP_DELAY = 5.0


class VipHolder:
    async def take(self) -> None:
        raise NotImplementedError

    async def release(self) -> None:
        raise NotImplementedError


class _Pipe(asyncio.Protocol):
    """One direction-pair of a forwarded connection, with flow control both ways."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.pending.append(data)

    def eof_received(self) -> bool | None:
        if self.peer is not None and self.peer.transport is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Client(_Pipe):
    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__()
        self.target = target

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, up = await loop.create_connection(_Pipe, *self.target)
        except OSError as exc:
            log.warning("VIP forward to %s:%d failed: %s", *self.target, exc)
            if self.transport is not None:
                self.transport.abort()
            return
        self.peer, up.peer = up, self
        if self.transport is None or self.transport.is_closing():
            up.transport.close()  # type: ignore[union-attr]
            return
        assert up.transport is not None
        for chunk in self.pending:
            up.transport.write(chunk)
        self.pending.clear()
        self.transport.resume_reading()


class _Refuse(asyncio.Protocol):
    """No --forward: the VIP is held (connectable) but has nothing behind it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class LoopbackVip(VipHolder):
    """Listen on each VIP address:port while master; forward to `target`."""

    def __init__(self, addresses: list[VirtualAddress], port: int,
                 target: tuple[str, int] | None) -> None:
        self.addresses = addresses
        self.port = port
        self.target = target
        self.servers: list[asyncio.Server] = []
        self._task: asyncio.Task[None] | None = None
        self.held = asyncio.Event()

    def _protocol(self) -> asyncio.Protocol:
        return _Refuse() if self.target is None else _Client(self.target)

    async def take(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._bind_all())

    async def _bind_all(self) -> None:
        loop = asyncio.get_running_loop()
        warned = False
        todo = list(self.addresses)
        while todo:
            va = todo[0]
            try:
                server = await loop.create_server(self._protocol, va.address, self.port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    log.error("cannot hold VIP %s:%d: %s", va.address, self.port, exc)
                    return
                if not warned:
                    log.info("VIP %s:%d still busy (old master leaving); retrying",
                             va.address, self.port)
                    warned = True
                await asyncio.sleep(0.01)
                continue
            self.servers.append(server)
            todo.pop(0)
        self.held.set()
        log.info("holding VIP %s port %d", ",".join(a.address for a in self.addresses),
                 self.port)

    async def release(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        for s in self.servers:
            s.close()
        self.servers.clear()
        self.held.clear()


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False,
                          timeout=5)


class RealVip(VipHolder):
    """`ip addr add/del` on the interface, gratuitous ARP after taking it."""

    def __init__(self, addresses: list[VirtualAddress], ifname: str) -> None:
        self.addresses = addresses
        self.ifname = ifname
        self._garp_later: asyncio.TimerHandle | None = None

    def _dev(self, va: VirtualAddress) -> str:
        return va.dev or self.ifname

    def clear_stale(self) -> None:
        """At start: remove VIPs a crashed predecessor left behind (keepalived does too)."""
        for va in self.addresses:
            _ip("addr", "del", va.cidr, "dev", self._dev(va))

    async def take(self) -> None:
        for va in self.addresses:
            cmd = ["addr", "add", va.cidr, "dev", self._dev(va)]
            if va.label:
                cmd += ["label", va.label]
            r = _ip(*cmd)
            if r.returncode != 0 and "File exists" not in r.stderr:
                log.error("ip %s: %s", " ".join(cmd), r.stderr.strip())
        self.send_garp()
        loop = asyncio.get_running_loop()
        self._garp_later = loop.call_later(GARP_DELAY, self.send_garp)

    def send_garp(self) -> None:
        for va in self.addresses:
            dev = self._dev(va)
            try:
                frame = garp_frame(interface_mac(dev), va.address)
                with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
                    s.bind((dev, 0))
                    for _ in range(GARP_REPEAT):
                        s.send(frame)
            except OSError as exc:
                log.warning("gratuitous ARP for %s on %s failed: %s", va.address, dev, exc)

    async def release(self) -> None:
        if self._garp_later is not None:
            self._garp_later.cancel()
            self._garp_later = None
        for va in self.addresses:
            r = _ip("addr", "del", va.cidr, "dev", self._dev(va))
            if r.returncode != 0 and "Cannot assign" not in r.stderr:
                log.warning("ip addr del %s: %s", va.cidr, r.stderr.strip())
