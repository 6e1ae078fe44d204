"""Session bytes: msgpack under the pycommon.wire type policy. Never pickle.

One format for every store, the save-on-stop file, the cookie payload and the cluster's
full-session messages:

    {"v": 1, "id": str, "created": float, "last_accessed": float, "this_accessed": float,
     "max_inactive": int, "principal": str | None, "attributes": {name: value}}

Attribute values are what the policy allows (str, int, float, bool, None, bytes, list, dict,
datetime, plus types registered on the policy with an ext code). A non-distributable session
may hold anything in memory; when such a session is saved, values outside the policy are
left out and named in the log (Tomcat drops non-serialisable attributes the same way), never
turned into an error for the user.
"""

from __future__ import annotations

import logging
from typing import Any

from pycommon.wire import DEFAULT_POLICY, TypeNotAllowed, TypePolicy, WireError
from pysession.session import Session

log = logging.getLogger("pysession.serializer")

FORMAT_VERSION = 1


class SessionSerializer:
    """`dumps(session) -> bytes`, `loads(bytes) -> Session`, and the same for attributes."""

    def __init__(self, policy: TypePolicy = DEFAULT_POLICY) -> None:
        self.policy = policy

    def session_dict(self, session: Session) -> dict[str, Any]:
        d = session.to_dict()
        d["v"] = FORMAT_VERSION
        if not session.distributable:
            d["attributes"] = self._serialisable(session)
        return d

    def dumps(self, session: Session) -> bytes:
        return self.policy.packb(self.session_dict(session))

    def loads(self, data: bytes, distributable: bool = False) -> Session:
        """Raises WireError for bytes that are not a session under this policy."""
        d = self.policy.unpackb(data)
        return self.from_dict(d, distributable)

    def from_dict(self, d: Any, distributable: bool = False) -> Session:
        if not isinstance(d, dict) or d.get("v") != FORMAT_VERSION:
            raise WireError("not a session record (format version)")
        try:
            s = Session.from_dict(d, distributable, self.policy)
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"bad session record: {exc}") from None
        if not isinstance(s.id, str) or not isinstance(s.max_inactive, int):
            raise WireError("bad session record: id / max_inactive")
        return s

    def dumps_many(self, sessions: list[Session]) -> bytes:
        return self.policy.packb({"v": FORMAT_VERSION,
                                  "sessions": [self.session_dict(s) for s in sessions]})

    def loads_many(self, data: bytes, distributable: bool = False) -> list[Session]:
        d = self.policy.unpackb(data)
        if not isinstance(d, dict) or d.get("v") != FORMAT_VERSION:
            raise WireError("not a session file (format version)")
        return [self.from_dict(x, distributable) for x in d.get("sessions") or []]

    def dumps_value(self, value: Any) -> bytes:
        """One attribute value (deltas, redis hash fields)."""
        return self.policy.packb(value)

    def loads_value(self, data: bytes) -> Any:
        return self.policy.unpackb(data)

    def _serialisable(self, session: Session) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in session.attribute_names():
            value = session.get_attribute(name)
            try:
                self.policy.check(value)
            except TypeNotAllowed as exc:
                log.warning("session %s: attribute %r not saved: %s", session.id, name, exc)
                continue
            out[name] = value
        return out


DEFAULT_SERIALIZER = SessionSerializer()
