"""The session object: attributes plus the bookkeeping managers need (times, dirtiness)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pycommon.wire import DEFAULT_POLICY, TypeNotAllowed, TypePolicy

DEFAULT_MAX_INACTIVE = 30 * 60


class NotSerializableError(TypeNotAllowed):
    """Raised by set_attribute in a distributable context for a value outside the type policy."""


class Session:
    """One HTTP session. Times are seconds on whatever clock the manager is given.

    `dirty` holds the names set or removed since the last commit, so a replicating manager
    can send only the delta and a store can write only the changed fields.
    """

    __slots__ = ("_attributes", "created", "dirty", "distributable", "id", "is_new",
                 "last_accessed", "max_inactive", "policy", "principal", "this_accessed",
                 "valid")

    def __init__(self, sid: str, now: float, max_inactive: int = DEFAULT_MAX_INACTIVE,
                 distributable: bool = False, policy: TypePolicy = DEFAULT_POLICY) -> None:
        self.id = sid
        self.created = now
        self.last_accessed = now
        self.this_accessed = now
        self.max_inactive = max_inactive
        self.is_new = True
        self.valid = True
        self.principal: str | None = None
        self.distributable = distributable
        self.policy = policy
        self.dirty: set[str] = set()
        self._attributes: dict[str, Any] = {}

    # -- attributes -------------------------------------------------------------------
    def get_attribute(self, name: str, default: Any = None) -> Any:
        return self._attributes.get(name, default)

    def set_attribute(self, name: str, value: Any) -> None:
        if self.distributable:
            try:
                self.policy.check(value)
            except TypeNotAllowed as exc:
                raise NotSerializableError(
                    f"Non-serializable attribute {name!r}: {exc}") from None
        self._attributes[name] = value
        self.dirty.add(name)

    def remove_attribute(self, name: str) -> None:
        if self._attributes.pop(name, None) is not None or name in self.dirty:
            self.dirty.add(name)

    def attribute_names(self) -> Iterator[str]:
        return iter(list(self._attributes))

    @property
    def attributes(self) -> dict[str, Any]:
        """A read-only view (a copy): mutate through set_attribute so changes are tracked."""
        return dict(self._attributes)

    # -- lifetime ---------------------------------------------------------------------
    def access(self, now: float) -> None:
        self.last_accessed = self.this_accessed
        self.this_accessed = now

    def idle(self, now: float) -> float:
        return now - self.this_accessed

    def is_expired(self, now: float) -> bool:
        return self.max_inactive >= 0 and now - self.this_accessed >= self.max_inactive

    def invalidate(self) -> None:
        self.valid = False

    # -- persistence ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "last_accessed": self.last_accessed,
                "this_accessed": self.this_accessed, "max_inactive": self.max_inactive,
                "principal": self.principal, "attributes": self._attributes}

    @classmethod
    def from_dict(cls, d: dict[str, Any], distributable: bool = False,
                  policy: TypePolicy = DEFAULT_POLICY) -> Session:
        s = cls(d["id"], d["created"], d["max_inactive"], distributable, policy)
        s.last_accessed = d["last_accessed"]
        s.this_accessed = d["this_accessed"]
        s.principal = d.get("principal")
        s._attributes = dict(d.get("attributes") or {})
        s.is_new = False
        return s

    def __repr__(self) -> str:
        return f"<Session {self.id} attrs={len(self._attributes)}>"
