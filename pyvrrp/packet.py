"""VRRP advertisement codec (RFC 3768 v2, RFC 5798 v3) — sans-IO, byte-exact with keepalived.

Layout (IPv4):

    v2: ver<<4|type, vrid, priority, count, auth_type, adver_int (s), checksum, addrs, auth (8)
    v3: ver<<4|type, vrid, priority, count, rsvd(4)|max_adver_int (12 bits, cs), checksum, addrs

The v2 checksum covers the VRRP message only; the v3 checksum also covers the IPv4
pseudo-header (src, dst, 0, proto 112, length), which is why v3 decoding needs the addresses.
`Advert.raw_checksum` keeps what was on the wire so re-encoding a captured packet gives the
same bytes even when we would not have produced them (a test asserts both agree).

`Ipv4Header` is here too because raw sockets hand us the IP header on receive, and the TTL 255
check (RFC 5798 §7.1) lives in it; `EthernetFrame` only exists for the pcap round-trip tests.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field, replace

VRRP_PROTO = 112
VRRP_GROUP = "224.0.0.18"
VRRP_TTL = 255
TYPE_ADVERT = 1

AUTH_NONE = 0
AUTH_PASS = 1
AUTH_AH = 2
AUTH_HMAC = 254  # pyvrrp's own: v2 auth type field value when the HMAC trailer is used


class PacketError(ValueError):
    """A packet that must be dropped; the text says why (logged once per reason)."""


def inet_checksum(data: bytes) -> int:
    """RFC 1071 ones'-complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: str, dst: str, length: int) -> bytes:
    return (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
            + struct.pack("!BBH", 0, VRRP_PROTO, length))


@dataclass(frozen=True)
class Advert:
    """One VRRP advertisement. `advert_int` is in seconds (v2 whole, v3 centisecond steps)."""

    version: int
    vrid: int
    priority: int
    addresses: tuple[str, ...]
    advert_int: float
    auth_type: int = AUTH_NONE      # v2 only
    auth_data: bytes = b""          # v2 only: 8 bytes on the wire
    type: int = TYPE_ADVERT
    raw_checksum: int | None = field(default=None, compare=False)

    @property
    def centiseconds(self) -> int:
        return round(self.advert_int * 100)

    def encode(self, src: str = "0.0.0.0", dst: str = VRRP_GROUP,
               keep_checksum: bool = False) -> bytes:
        """Wire bytes. v3 needs `src`/`dst` for the pseudo-header checksum."""
        addrs = b"".join(ipaddress.IPv4Address(a).packed for a in self.addresses)
        head = bytes([(self.version << 4) | self.type, self.vrid, self.priority,
                      len(self.addresses)])
        if self.version == 2:
            secs = int(self.advert_int)
            if secs != self.advert_int or not 1 <= secs <= 255:
                raise PacketError(f"VRRPv2 advert_int must be 1..255 whole seconds, "
                                  f"got {self.advert_int}")
            auth = (self.auth_data + b"\0" * 8)[:8]
            body = head + bytes([self.auth_type, secs]) + b"\0\0" + addrs + auth
            csum = inet_checksum(body)
        elif self.version == 3:
            cs = self.centiseconds
            if not 1 <= cs <= 0xFFF:
                raise PacketError(f"VRRPv3 advert_int must be 0.01..40.95 s, got "
                                  f"{self.advert_int}")
            body = head + struct.pack("!H", cs) + b"\0\0" + addrs
            csum = inet_checksum(_pseudo_header(src, dst, len(body)) + body)
        else:
            raise PacketError(f"unsupported VRRP version {self.version}")
        if keep_checksum and self.raw_checksum is not None:
            csum = self.raw_checksum
        return body[:6] + struct.pack("!H", csum) + body[8:]

    @classmethod
    def decode(cls, data: bytes, src: str = "0.0.0.0", dst: str = VRRP_GROUP,
               verify: bool = True) -> Advert:
        """Parse a VRRP message; `verify` checks the checksum (v3: with the pseudo-header)."""
        if len(data) < 8:
            raise PacketError(f"short packet ({len(data)} bytes)")
        version, typ = data[0] >> 4, data[0] & 0x0F
        if version not in (2, 3):
            raise PacketError(f"unsupported VRRP version {version}")
        if typ != TYPE_ADVERT:
            raise PacketError(f"unknown VRRP type {typ}")
        vrid, prio, count = data[1], data[2], data[3]
        need = 8 + 4 * count + (8 if version == 2 else 0)
        if len(data) < need:
            raise PacketError(f"truncated: {count} addresses need {need} bytes, got "
                              f"{len(data)}")
        msg = data[:need]
        (csum,) = struct.unpack_from("!H", msg, 6)
        addrs = tuple(str(ipaddress.IPv4Address(msg[8 + 4 * i:12 + 4 * i]))
                      for i in range(count))
        if version == 2:
            if verify and inet_checksum(msg) != 0:
                raise PacketError("bad VRRPv2 checksum")
            return cls(2, vrid, prio, addrs, float(msg[5]), msg[4], msg[8 + 4 * count:need],
                       typ, csum)
        if verify and inet_checksum(_pseudo_header(src, dst, need) + msg) != 0:
            raise PacketError("bad VRRPv3 checksum")
        (word,) = struct.unpack_from("!H", msg, 4)
        return cls(3, vrid, prio, addrs, (word & 0x0FFF) / 100, type=typ, raw_checksum=csum)

    def with_priority(self, priority: int) -> Advert:
        return replace(self, priority=priority, raw_checksum=None)


def pass_auth_data(password: str) -> bytes:
    """keepalived's PASS auth data: the password truncated / zero-padded to 8 bytes."""
    return (password.encode() + b"\0" * 8)[:8]


@dataclass(frozen=True)
class Ipv4Header:
    """A 20-byte IPv4 header (no options), as raw sockets return it."""

    src: str
    dst: str
    ttl: int = VRRP_TTL
    proto: int = VRRP_PROTO
    tos: int = 0xC0
    ident: int = 0
    flags_frag: int = 0
    total_length: int = 20
    raw_checksum: int | None = field(default=None, compare=False)

    def encode(self, keep_checksum: bool = False) -> bytes:
        head = struct.pack("!BBHHHBBH4s4s", 0x45, self.tos, self.total_length, self.ident,
                           self.flags_frag, self.ttl, self.proto, 0,
                           ipaddress.IPv4Address(self.src).packed,
                           ipaddress.IPv4Address(self.dst).packed)
        csum = inet_checksum(head)
        if keep_checksum and self.raw_checksum is not None:
            csum = self.raw_checksum
        return head[:10] + struct.pack("!H", csum) + head[12:]

    @classmethod
    def decode(cls, data: bytes) -> tuple[Ipv4Header, bytes]:
        """(header, payload). Options are skipped; the payload is cut to total_length."""
        if len(data) < 20 or data[0] >> 4 != 4:
            raise PacketError("not an IPv4 packet")
        ihl = (data[0] & 0x0F) * 4
        (_vihl, tos, total, ident, ff, ttl, proto, csum, s, d) = struct.unpack_from(
            "!BBHHHBBH4s4s", data)
        hdr = cls(str(ipaddress.IPv4Address(s)), str(ipaddress.IPv4Address(d)), ttl, proto,
                  tos, ident, ff, total, csum)
        return hdr, data[ihl:total]


@dataclass(frozen=True)
class EthernetFrame:
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes

    def encode(self) -> bytes:
        return self.dst + self.src + struct.pack("!H", self.ethertype) + self.payload

    @classmethod
    def decode(cls, data: bytes) -> EthernetFrame:
        if len(data) < 14:
            raise PacketError("short Ethernet frame")
        return cls(data[0:6], data[6:12], struct.unpack_from("!H", data, 12)[0], data[14:])


def multicast_mac(group: str = VRRP_GROUP) -> bytes:
    """01:00:5e + the low 23 bits of the group address."""
    g = ipaddress.IPv4Address(group).packed
    return bytes([0x01, 0x00, 0x5E, g[1] & 0x7F, g[2], g[3]])


def garp_frame(mac: bytes, ip: str) -> bytes:
    """The gratuitous ARP keepalived sends on becoming master: who-has VIP tell VIP, broadcast.

    Byte-exact with keepalived 2.2.7 (fixture vrrp-v2-garp-hex.txt): target MAC ff:ff:ff:ff:ff:ff.
    """
    bcast = b"\xff" * 6
    addr = ipaddress.IPv4Address(ip).packed
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + addr + bcast + addr
    return EthernetFrame(bcast, mac, 0x0806, arp).encode()
