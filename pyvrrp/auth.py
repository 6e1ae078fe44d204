"""Advert authentication: keepalived's PASS (compatible, not secure) and pyvrrp's HMAC mode.

PASS puts the password (8 bytes) in clear text in every v2 advert; it only keeps two clusters
on one VRID apart. keepalived's AH mode is deprecated and removed from VRRPv3, so the secure mode
here is our own, for pyvrrp ↔ pyvrrp only:

    VRRP message | counter (8 bytes, big endian) | HMAC-SHA256(key, src ‖ message ‖ counter)[:16]

The counter must grow per sender (we send a nanosecond clock), so a captured advert cannot be
replayed; the source address is covered so an advert cannot be re-sent from another host.
In v2 the auth type field carries 254 and the 8 auth bytes are zero.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass, field

from pyvrrp.packet import AUTH_HMAC, AUTH_NONE, AUTH_PASS, Advert, PacketError, pass_auth_data

TRAILER_LEN = 8 + 16


def _tag(key: bytes, src: str, message: bytes, counter: bytes) -> bytes:
    mac = hmac.new(key, ipaddress.IPv4Address(src).packed + message + counter, hashlib.sha256)
    return mac.digest()[:16]


@dataclass
class Authenticator:
    """Stamps outgoing adverts and checks incoming ones for one instance. Sans-IO."""

    kind: str = "NONE"          # NONE | PASS | HMAC
    password: str = ""
    _last: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("NONE", "PASS", "HMAC"):
            raise ValueError(f"unknown auth type {self.kind!r}")

    def stamp_fields(self, version: int) -> tuple[int, bytes]:
        """(auth_type, auth_data) to put in a v2 advert."""
        if version != 2:
            return AUTH_NONE, b""
        if self.kind == "PASS":
            return AUTH_PASS, pass_auth_data(self.password)
        if self.kind == "HMAC":
            return AUTH_HMAC, b"\0" * 8
        return AUTH_NONE, b"\0" * 8

    def seal(self, message: bytes, src: str, counter: int) -> bytes:
        """The bytes to send: the message, plus the HMAC trailer in HMAC mode."""
        if self.kind != "HMAC":
            return message
        ctr = struct.pack("!Q", counter)
        return message + ctr + _tag(self.password.encode(), src, message, ctr)

    def open(self, data: bytes, src: str, dst: str, verify_checksum: bool = True) -> Advert:
        """Decode and authenticate; PacketError says why a packet is dropped."""
        message = data
        if self.kind == "HMAC":
            if len(data) < 8 + TRAILER_LEN:
                raise PacketError("HMAC trailer missing")
            message, ctr, tag = data[:-TRAILER_LEN], data[-TRAILER_LEN:-16], data[-16:]
            if not hmac.compare_digest(tag, _tag(self.password.encode(), src, message, ctr)):
                raise PacketError("HMAC check failed")
            (counter,) = struct.unpack("!Q", ctr)
            if counter <= self._last.get(src, -1):
                raise PacketError("replayed advert (HMAC counter did not grow)")
            self._last[src] = counter
        adv = Advert.decode(message, src, dst, verify=verify_checksum)
        if adv.version == 2:
            want_type, want_data = self.stamp_fields(2)
            if adv.auth_type != want_type:
                raise PacketError(f"auth type {adv.auth_type} but {self.kind} configured")
            if self.kind == "PASS" and adv.auth_data != want_data:
                raise PacketError("PASS auth data does not match auth_pass")
        return adv
