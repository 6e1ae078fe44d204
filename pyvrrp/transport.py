"""How adverts travel: UDP on loopback (default, no root) or raw IP protocol 112 (real mode).

Both deliver `(payload, src_ip, dst_ip, ttl)` to a callback and send an advert built by an
`encode(src, dst)` function (v3 checksums cover the addresses, so unicast adverts are encoded
per peer).

Loopback: every instance owns its own 127.x.y.z address (its `unicast_src_ip`, the "primary IP"
that breaks priority ties). With `unicast_peer` the adverts are UDP datagrams to each peer's
address on the advert port; without, they go to the multicast group 224.0.0.18 on `lo` and
every instance on the port receives them (our own copies are dropped by source address). The
IP TTL is not visible there, so the TTL-255 check only happens in real mode.

Real: a raw socket for protocol 112 bound to the interface, joined to 224.0.0.18, sending with
TTL 255 and TOS 0xc0 like keepalived; packets arrive with their IP header, whose TTL is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

from pyvrrp.packet import VRRP_GROUP, VRRP_PROTO, VRRP_TTL, Ipv4Header, PacketError

log = logging.getLogger("pyvrrp.transport")

Receive = Callable[[bytes, str, str, "int | None"], None]
Encode = Callable[[str, str], bytes]
DEFAULT_ADVERT_PORT = 5798  # loopback mode's UDP port (RFC 5798's number; no root needed)


class Transport:
    primary_ip: str = "0.0.0.0"

    async def open(self, receive: Receive) -> None:
        raise NotImplementedError

    def send(self, encode: Encode) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _Datagrams(asyncio.DatagramProtocol):
    """One UDP socket; every instance using it gets every datagram (they filter by VRID)."""

    def __init__(self, owner: LoopbackTransport, dst: str) -> None:
        self.owners = [owner]
        self.dst = dst
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        for owner in list(self.owners):
            if addr[0] != owner.primary_ip:  # else: our own multicast copy
                owner.receive(data, addr[0], self.dst, None)

    def error_received(self, exc: Exception) -> None:
        for owner in self.owners:
            owner.note_error(exc)


# Unicast sockets by (address, port): several vrrp_instances of one daemon on one address
# share it, as keepalived's instances share a socket per interface.
_UNICAST: dict[tuple[str, int], tuple[_Datagrams, socket.socket]] = {}


class LoopbackTransport(Transport):
    """Adverts as UDP datagrams on 127.0.0.0/8."""

    def __init__(self, primary_ip: str, port: int = DEFAULT_ADVERT_PORT,
                 peers: list[str] | None = None, group: str = VRRP_GROUP) -> None:
        self.primary_ip = primary_ip
        self.port = port
        self.peers = list(peers or [])
        self.group = group
        self.receive: Receive = lambda *_: None
        self._transports: list[asyncio.DatagramTransport] = []
        self._send_sock: socket.socket | None = None
        self._shared: _Datagrams | None = None
        self._errors: set[str] = set()

    def note_error(self, exc: Exception) -> None:
        if str(exc) not in self._errors:
            self._errors.add(str(exc))
            log.warning("advert socket error: %s", exc)

    async def open(self, receive: Receive) -> None:
        self.receive = receive
        loop = asyncio.get_running_loop()
        if self.peers:
            key = (self.primary_ip, self.port)
            if key in _UNICAST:
                proto, sock = _UNICAST[key]
                proto.owners.append(self)
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(key)
                _, proto = await loop.create_datagram_endpoint(
                    lambda: _Datagrams(self, self.primary_ip), sock=sock)
                _UNICAST[key] = (proto, sock)
            self._shared = proto
            self._send_sock = sock
            return
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.bind((self.group, self.port))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton(self.group) + socket.inet_aton("127.0.0.1"))
        t, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self, self.group),
                                                   sock=rx)
        self._transports.append(t)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                      socket.inet_aton(self.primary_ip))
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, VRRP_TTL)
        tx.bind((self.primary_ip, 0))
        tx.setblocking(False)
        self._send_sock = tx

    def send(self, encode: Encode) -> None:
        if self._send_sock is None:
            return
        targets = self.peers or [self.group]
        for dst in targets:
            try:
                self._send_sock.sendto(encode(self.primary_ip, dst), (dst, self.port))
            except OSError as exc:
                self.note_error(exc)

    def close(self) -> None:
        if self._shared is not None:
            self._shared.owners.remove(self)
            if not self._shared.owners:
                _UNICAST.pop((self.primary_ip, self.port), None)
                if self._shared.transport is not None:
                    self._shared.transport.close()
            self._shared = None
        for t in self._transports:
            t.close()  # closes the sockets they own
        if self._send_sock is not None and not self.peers:
            self._send_sock.close()  # multicast: the sending socket is ours alone
        self._transports.clear()
        self._send_sock = None


def interface_addresses(ifname: str) -> list[tuple[str, int]]:
    """IPv4 (address, prefix) of an interface, in `ip addr` order (the primary first)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", ifname],
                         capture_output=True, text=True, check=False, timeout=5)
    addrs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            a, _, p = parts[parts.index("inet") + 1].partition("/")
            addrs.append((a, int(p or 32)))
    return addrs


def interface_mac(ifname: str) -> bytes:
    text = Path(f"/sys/class/net/{ifname}/address").read_text().strip()
    return bytes.fromhex(text.replace(":", ""))


class RawTransport(Transport):
    """Real VRRP: IP protocol 112, multicast 224.0.0.18 (or unicast peers), TTL 255."""

    def __init__(self, ifname: str, primary_ip: str, peers: list[str] | None = None,
                 group: str = VRRP_GROUP) -> None:
        self.ifname = ifname
        self.primary_ip = primary_ip
        self.peers = list(peers or [])
        self.group = group
        self.receive: Receive = lambda *_: None
        self.sock: socket.socket | None = None
        self.tx: socket.socket | None = None
        self._errors: set[str] = set()

    async def open(self, receive: Receive) -> None:
        """Two sockets, like keepalived's fd_in/fd_out: binding a raw socket to our address
        would also filter what it receives to that destination (not 224.0.0.18)."""
        self.receive = receive
        ifindex = socket.if_nametoindex(self.ifname)
        mreqn = socket.inet_aton(self.group) + socket.inet_aton("0.0.0.0") + \
            struct.pack("@i", ifindex)
        rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, VRRP_PROTO)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        rx.setblocking(False)
        tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, VRRP_PROTO)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xC0)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, VRRP_TTL)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, VRRP_TTL)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        tx.bind((self.primary_ip, 0))
        tx.setblocking(False)
        self.sock, self.tx = rx, tx
        asyncio.get_running_loop().add_reader(rx.fileno(), self._readable)

    def _readable(self) -> None:
        assert self.sock is not None
        for _ in range(64):
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._note(str(exc))
                return
            try:
                ip, payload = Ipv4Header.decode(data)
            except PacketError as exc:
                self._note(str(exc))
                continue
            if ip.src == self.primary_ip:
                continue
            self.receive(payload, ip.src, ip.dst, ip.ttl)

    def _note(self, msg: str) -> None:
        if msg not in self._errors:
            self._errors.add(msg)
            log.warning("%s: %s", self.ifname, msg)

    def send(self, encode: Encode) -> None:
        if self.tx is None:
            return
        for dst in self.peers or [self.group]:
            try:
                self.tx.sendto(encode(self.primary_ip, dst), (dst, 0))
            except OSError as exc:
                self._note(f"send to {dst}: {exc}")

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        if self.tx is not None:
            self.tx.close()
            self.tx = None
