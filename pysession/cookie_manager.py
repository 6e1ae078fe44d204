"""Cookie-held sessions (seed 000, item 3): the whole session sealed in the cookie.

Nothing is kept on the server, so any node can serve any request — at the price of a size
limit and of the client holding (encrypted) state. Sealing is AES-GCM from `cryptography`
with a list of keys: the first seals, every key opens (rotation: put the new key first, keep
the old one until the longest session has expired). The cookie value is

    base64url( 0x01 | key id (1 byte) | nonce (12) | AES-GCM(msgpack session) + tag (16) )

with the context path as associated data, so a cookie of one context is refused by another.
A cookie that does not open (tampered, foreign key, garbage, expired) gives a fresh, empty
session with a new id — never an error, never the presented state. A session that would seal
to more than `max_cookie_size` (4096 bytes, the browsers' per-cookie limit, name included) is
refused with `SessionTooLarge` at `set_attribute` time, and again at commit for mutations made
without `set_attribute`.

The payload is msgpack under the type policy, so cookie sessions are always distributable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pycommon.wire import DEFAULT_POLICY, TypeNotAllowed, TypePolicy, WireError
from pysession.manager import Manager, RequestInfo, SetCookie
from pysession.session import DEFAULT_MAX_INACTIVE, Session

if TYPE_CHECKING:
    from pysession.options import ManagerEnv, Options

FORMAT = 1
NONCE = 12
TAG = 16
MAX_COOKIE_SIZE = 4096
_OVERHEAD = 2 + NONCE + TAG


class SessionTooLarge(ValueError):
    """The sealed session would not fit in a cookie."""


def _kid(key: bytes) -> int:
    return hashlib.sha256(key).digest()[0]


def sealed_length(plain_len: int) -> int:
    """Length of the base64url (unpadded) cookie value for a payload of `plain_len` bytes."""
    n = plain_len + _OVERHEAD
    return (n * 4 + 2) // 3


class CookieSealer:
    """AES-GCM seal/open with key rotation."""

    def __init__(self, keys: Sequence[bytes], aad: bytes = b"") -> None:
        if not keys:
            raise ValueError("cookie sessions need at least one key")
        for k in keys:
            if len(k) not in (16, 24, 32):
                raise ValueError("an AES key is 16, 24 or 32 bytes")
        self.keys = [(k, _kid(k), AESGCM(k)) for k in keys]
        self.aad = aad

    def seal(self, plain: bytes) -> str:
        _, kid, aead = self.keys[0]
        nonce = os.urandom(NONCE)
        blob = bytes((FORMAT, kid)) + nonce + aead.encrypt(nonce, plain, self.aad)
        return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")

    def open(self, value: str) -> bytes | None:
        """The plaintext, or None for anything that does not authenticate."""
        try:
            blob = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(blob) < _OVERHEAD or blob[0] != FORMAT:
            return None
        kid, nonce, ct = blob[1], blob[2:2 + NONCE], blob[2 + NONCE:]
        for _, k_id, aead in self.keys:
            if k_id != kid:
                continue
            try:
                return aead.decrypt(nonce, ct, self.aad)
            except InvalidTag:
                continue
        return None


class CookieManager(Manager):
    kind = "cookie"
    url_rewriting = False
    cookie_name = "PYSESSION"

    def __init__(self, keys: Sequence[bytes], route: str | None = None,
                 max_inactive: int = DEFAULT_MAX_INACTIVE, policy: TypePolicy = DEFAULT_POLICY,
                 max_cookie_size: int = MAX_COOKIE_SIZE, cookie_name: str = "PYSESSION",
                 context_path: str = "/") -> None:
        super().__init__(route, max_inactive, True, policy)
        self.sealer = CookieSealer(keys, b"pysession-cookie:" + context_path.encode())
        self.max_cookie_size = max_cookie_size
        self.cookie_name = cookie_name
        self.tampered_count = 0

    # -- core -------------------------------------------------------------------------
    def _payload(self, session: Session, extra: tuple[str, Any] | None = None) -> bytes:
        d = self.serializer.session_dict(session)
        if extra is not None:
            d["attributes"] = {**d["attributes"], extra[0]: extra[1]}
        return self.policy.packb(d)

    def cookie_size(self, plain_len: int) -> int:
        """Bytes of `name=value` as the browser counts them."""
        return len(self.cookie_name) + 1 + sealed_length(plain_len)

    def _check_size(self, session: Session, plain_len: int) -> None:
        size = self.cookie_size(plain_len)
        if size > self.max_cookie_size:
            raise SessionTooLarge(
                f"session {session.id} would need a {size}-byte cookie, over the "
                f"{self.max_cookie_size}-byte limit of cookie-held sessions: keep less in the "
                "session or use a server-side manager")

    def _guard(self, session: Session, name: str, value: Any) -> None:
        try:
            n = len(self._payload(session, (name, value)))
        except TypeNotAllowed:
            return  # the distributable check reports it
        self._check_size(session, n)

    def create(self, now: float) -> Session:
        s = self.new_session(self.new_id(), now)
        s.guard = self._guard
        self.created_count += 1
        if self.events:
            self.events.session_created(s)
        return s

    def find(self, sid: str, now: float) -> Session | None:
        return None  # nothing is held server-side; see begin_request

    def open(self, value: str, now: float) -> Session | None:
        """The session sealed in `value`, or None (tampered / foreign / expired)."""
        plain = self.sealer.open(value)
        if plain is None:
            self.tampered_count += 1
            return None
        try:
            s = self.serializer.from_dict(self.policy.unpackb(plain), True)
        except WireError:
            self.tampered_count += 1
            return None
        if s.is_expired(now):
            return None
        s.events = self.events
        s.guard = self._guard
        return s

    def expire(self, session: Session, now: float) -> None:
        session.valid = False
        self.expired_count += 1
        if self.events:
            self.events.session_destroyed(session)

    def change_id(self, session: Session, now: float) -> str:
        old = session.id
        session.id = self.new_id()
        if self.events:
            self.events.session_id_changed(session, old)
        return session.id

    def sweep(self, now: float) -> int:
        return 0  # expiry is checked when a cookie is opened

    def __len__(self) -> int:
        return 0

    def session_cookie(self, session: Session, presented: str | None) -> SetCookie | None:
        """Reseal on every request that used the session (the access time slides); delete
        the cookie of an invalidated session."""
        if not session.valid:
            return SetCookie("", 0) if presented else None
        plain = self._payload(session)
        self._check_size(session, len(plain))
        return SetCookie(self.sealer.seal(plain))

    # -- hooks ------------------------------------------------------------------------
    async def begin_request(self, sid: str, now: float, info: RequestInfo) -> Session | None:
        s = self.open(sid, now)
        if s is not None:
            s.access(now)
        return s

    def stats(self) -> dict[str, Any]:
        d = super().stats()
        d["tampered"] = self.tampered_count
        return d

    @classmethod
    def from_options(cls, opts: Options, env: ManagerEnv) -> CookieManager:
        keys: list[bytes] = []
        for k in opts.list_of_str("keys"):
            try:
                keys.append(base64.b64decode(k, validate=True))
            except (binascii.Error, ValueError):
                raise opts.error("keys: each key is base64 of 16, 24 or 32 bytes", "keys",
                                 k[:8] + "...") from None
        kf = opts.path("keys_file", env.work_dir)
        if kf is not None:
            try:
                for line in kf.read_text().split():
                    keys.append(base64.b64decode(line, validate=True))
            except (OSError, binascii.Error, ValueError) as exc:
                raise opts.error(f"keys_file: {exc}", "keys_file", str(kf)) from None
        if not keys:
            raise opts.error("cookie manager: give keys = [\"base64...\"] or keys_file "
                             "(generate one: python -c 'import os,base64;"
                             "print(base64.b64encode(os.urandom(32)).decode())')", "type",
                             "cookie")
        try:
            return cls(keys, route=env.route, max_inactive=env.max_inactive,
                       policy=env.policy,
                       max_cookie_size=opts.size("max_cookie_size", MAX_COOKIE_SIZE),
                       cookie_name=opts.string("cookie_name", "PYSESSION"),
                       context_path=env.context_path)
        except ValueError as exc:
            raise opts.error(str(exc), "keys") from None
