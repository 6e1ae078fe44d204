"""The cluster wire format (sans-IO): authenticated, optionally encrypted msgpack frames with a
replay window. Used for TCP messages between members and for UDP membership heartbeats.

    frame    = u32 length (big endian) + envelope + HMAC-SHA256(key, envelope)   (TCP)
    datagram = envelope + HMAC                                                    (UDP)
    envelope = msgpack [version, sender, epoch, seq, sent_at, encrypted, body]
    body     = msgpack(message)  or  AES-GCM(key2, nonce=(epoch, seq), msgpack(message))

Why each field: `sender` names the member (its uuid); `epoch` is the sender's start time in
nanoseconds, so a restarted member starting again at seq 1 is told apart from a replay of its
previous life (frames of an epoch older than the newest seen from that sender are refused);
`seq` increases by one per frame per sender and is checked against a sliding window (a frame
seen before, or older than the window, is refused); `sent_at` bounds how stale a frame may be
(clock skew allowance `max_age`). Without the key no frame verifies; messages are msgpack under
the pycommon.wire type policy (never pickle).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pycommon.wire import DEFAULT_POLICY, TypePolicy, WireError

VERSION = 1
MAC_LEN = 32
HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


class FrameRejected(WireError):
    """A frame that failed authentication, decryption, or the replay checks."""


def derive_keys(secret: str | bytes) -> tuple[bytes, bytes]:
    """(mac_key, aes_key) from the shared secret: two independent SHA-256 derivations."""
    s = secret.encode() if isinstance(secret, str) else secret
    return (hashlib.sha256(b"pycluster-mac\0" + s).digest(),
            hashlib.sha256(b"pycluster-aes\0" + s).digest())


@dataclass(frozen=True, slots=True)
class Received:
    sender: str
    epoch: int
    seq: int
    message: Any


class ReplayWindow:
    """Per sender: the newest epoch seen, the highest seq of that epoch and a window of the
    seqs recently accepted (IPsec-style anti-replay, window `size`)."""

    __slots__ = ("epoch", "high", "seen", "size")

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.epoch = -1
        self.high = 0
        self.seen: set[int] = set()

    def check(self, epoch: int, seq: int) -> str | None:
        """None when (epoch, seq) is fresh, else why it is refused. Does not record."""
        if epoch < self.epoch:
            return "frame from an older epoch of this sender (replay)"
        if epoch == self.epoch:
            if seq <= self.high - self.size:
                return "frame older than the replay window"
            if seq in self.seen:
                return "frame already received (replay)"
        return None

    def record(self, epoch: int, seq: int) -> None:
        if epoch > self.epoch:
            self.epoch, self.high, self.seen = epoch, 0, set()
        self.seen.add(seq)
        if seq > self.high:
            self.high = seq
            if len(self.seen) > 2 * self.size:
                floor = self.high - self.size
                self.seen = {s for s in self.seen if s > floor}


class FrameCodec:
    """Seals outgoing messages and opens incoming ones for one member."""

    def __init__(self, sender: str, epoch: int, secret: str | bytes, encrypt: bool = False,
                 policy: TypePolicy = DEFAULT_POLICY, max_age: float = 60.0,
                 window: int = 4096) -> None:
        if not secret:
            raise ValueError("the cluster needs a shared key")
        self.sender = sender
        self.epoch = epoch
        self.mac_key, aes_key = derive_keys(secret)
        self.aead = AESGCM(aes_key) if encrypt else None
        self.policy = policy
        self.max_age = max_age
        self.window = window
        self.seq = 0
        self.windows: dict[str, ReplayWindow] = {}
        self.rejected = 0

    # -- sealing ----------------------------------------------------------------------
    def _nonce(self, epoch: int, seq: int) -> bytes:
        return struct.pack(">QI", epoch & 0xFFFFFFFFFFFFFFFF, seq & 0xFFFFFFFF)

    def seal(self, message: Any, now: float) -> bytes:
        """Envelope + MAC (a datagram); see `frame` for the TCP form."""
        self.seq += 1
        body = self.policy.packb(message)
        if self.aead is not None:
            aad = self.sender.encode()
            body = self.aead.encrypt(self._nonce(self.epoch, self.seq), body, aad)
        env = self.policy.packb([VERSION, self.sender, self.epoch, self.seq, now,
                                 self.aead is not None, body])
        return env + hmac.digest(self.mac_key, env, "sha256")

    def frame(self, message: Any, now: float) -> bytes:
        data = self.seal(message, now)
        return HEADER.pack(len(data)) + data

    # -- opening ----------------------------------------------------------------------
    def open(self, data: bytes, now: float) -> Received:
        """Verify and decode one datagram / frame body; raises FrameRejected."""
        try:
            return self._open(data, now)
        except FrameRejected:
            self.rejected += 1
            raise

    def _open(self, data: bytes, now: float) -> Received:
        if len(data) <= MAC_LEN:
            raise FrameRejected("frame too short")
        env, mac = data[:-MAC_LEN], data[-MAC_LEN:]
        want = hmac.digest(self.mac_key, env, "sha256")
        if not hmac.compare_digest(mac, want):
            raise FrameRejected("bad MAC (wrong or missing cluster key)")
        try:
            fields = self.policy.unpackb(env)
            version, sender, epoch, seq, sent_at, encrypted, body = fields
        except (WireError, ValueError, TypeError) as exc:
            raise FrameRejected(f"bad envelope: {exc}") from None
        if version != VERSION or not isinstance(sender, str) or not isinstance(body, bytes):
            raise FrameRejected("bad envelope fields")
        if not isinstance(epoch, int) or not isinstance(seq, int):
            raise FrameRejected("bad envelope fields")
        if abs(now - float(sent_at)) > self.max_age:
            raise FrameRejected(f"stale frame (sent {now - float(sent_at):.1f}s ago)")
        win = self.windows.get(sender)
        if win is None:
            win = self.windows[sender] = ReplayWindow(self.window)
        why = win.check(epoch, seq)
        if why is not None:
            raise FrameRejected(why)
        if encrypted:
            if self.aead is None:
                raise FrameRejected("encrypted frame but encryption is off here")
            try:
                body = self.aead.decrypt(self._nonce(epoch, seq), body, sender.encode())
            except Exception:
                raise FrameRejected("AES-GCM decryption failed") from None
        elif self.aead is not None:
            raise FrameRejected("plaintext frame but encryption is required here")
        try:
            message = self.policy.unpackb(body)
        except WireError as exc:
            raise FrameRejected(f"bad message: {exc}") from None
        win.record(epoch, seq)
        return Received(sender, epoch, seq, message)


class FrameReader:
    """Splits a TCP byte stream into frames (length prefix)."""

    __slots__ = ("buf", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out: list[bytes] = []
        while len(self.buf) >= 4:
            (n,) = HEADER.unpack_from(self.buf)
            if n > self.max_frame:
                raise FrameRejected(f"frame of {n} bytes is over the limit")
            if len(self.buf) < 4 + n:
                break
            out.append(bytes(self.buf[4:4 + n]))
            del self.buf[:4 + n]
        return out
