"""The session object (Tomcat's StandardSession / the servlet HttpSession).

Attributes plus the bookkeeping every manager needs: times, dirtiness (for deltas and
write-behind), an in-use count (a session with a request in flight is never swapped out),
notes (per-manager metadata that is never serialised) and the listener hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pycommon.wire import DEFAULT_POLICY, TypeNotAllowed, TypePolicy

if TYPE_CHECKING:
    from pysession.events import SessionEvents

DEFAULT_MAX_INACTIVE = 30 * 60

#: A guard runs before an attribute is stored and may refuse it by raising (the cookie
#: manager refuses a value that would push the cookie over 4 KB this way).
AttributeGuard = Callable[["Session", str, Any], None]

_MISSING = object()


class NotSerializableError(TypeNotAllowed):
    """Raised by set_attribute in a distributable context for a value outside the type policy
    (Tomcat: `IllegalArgumentException: setAttribute: Non-serializable attribute`)."""


class Session:
    """One HTTP session. Times are seconds on whatever clock the manager is given.

    `dirty` holds the attribute names set or removed since the last commit and `dirty_meta`
    the changed metadata ("max_inactive", "principal"), so a replicating manager can send only
    the delta and a store can write only the changed fields. `in_use` counts requests in flight
    (Tomcat's accessCount). `notes` is transient per-manager state (msm's node id, a lock
    token, the replication version...) and is never serialised.
    """

    __slots__ = ("_attributes", "created", "dirty", "dirty_meta", "distributable", "events",
                 "guard", "id", "in_use", "is_new", "last_accessed", "max_inactive", "notes",
                 "policy", "principal", "this_accessed", "valid")

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
        self.dirty_meta: set[str] = set()
        self.in_use = 0
        self.notes: dict[str, Any] = {}
        self.events: SessionEvents | None = None
        self.guard: AttributeGuard | None = None
        self._attributes: dict[str, Any] = {}

    # -- attributes -------------------------------------------------------------------
    def get_attribute(self, name: str, default: Any = None) -> Any:
        return self._attributes.get(name, default)

    def set_attribute(self, name: str, value: Any) -> None:
        """Store `value`; in a distributable session it must pass the type policy.

        Setting None removes the attribute (servlet spec).
        """
        if not self.valid:
            raise IllegalStateError("setAttribute: session already invalidated")
        if value is None:
            self.remove_attribute(name)
            return
        if self.distributable:
            try:
                self.policy.check(value)
            except TypeNotAllowed as exc:
                raise NotSerializableError(
                    f"setAttribute: Non-serializable attribute {name!r}: {exc}") from None
        if self.guard is not None:
            self.guard(self, name, value)
        old = self._attributes.get(name, _MISSING)
        self._attributes[name] = value
        self.dirty.add(name)
        if self.events is not None:
            if old is _MISSING:
                self.events.attribute_added(self, name, value)
            else:
                self.events.attribute_replaced(self, name, old)

    def remove_attribute(self, name: str) -> None:
        old = self._attributes.pop(name, _MISSING)
        if old is not _MISSING:
            self.dirty.add(name)
            if self.events is not None:
                self.events.attribute_removed(self, name, old)

    def attribute_names(self) -> Iterator[str]:
        return iter(list(self._attributes))

    @property
    def attributes(self) -> dict[str, Any]:
        """A shallow copy: mutate through set_attribute so changes are tracked."""
        return dict(self._attributes)

    # -- for managers: state that came from elsewhere -------------------------------
    def apply_attribute(self, name: str, value: Any) -> None:
        """Set without marking dirty, without the policy check, guard or listeners: for a
        manager applying a replicated delta or a value merged from a store."""
        self._attributes[name] = value

    def apply_removal(self, name: str) -> None:
        """Remove without marking dirty or firing listeners (see apply_attribute)."""
        self._attributes.pop(name, None)

    @property
    def attribute_map(self) -> dict[str, Any]:
        """The live attribute dict, not a copy: read it, do not mutate it."""
        return self._attributes

    def __contains__(self, name: str) -> bool:
        return name in self._attributes

    # -- servlet-style names (HttpSession) --------------------------------------------
    def get_id(self) -> str:
        return self.id

    def get_creation_time(self) -> int:
        """Milliseconds since the epoch, as Java prints it (seed 003's 'Created on')."""
        return int(self.created * 1000)

    def get_last_accessed_time(self) -> int:
        return int(self.last_accessed * 1000)

    def get_max_inactive_interval(self) -> int:
        return self.max_inactive

    def set_max_inactive_interval(self, seconds: int) -> None:
        """Negative = never expires (kept as Tomcat does; use with care)."""
        self.max_inactive = int(seconds)
        self.dirty_meta.add("max_inactive")

    def get_attribute_names(self) -> list[str]:
        return list(self._attributes)

    def set_principal(self, principal: str | None) -> None:
        self.principal = principal
        self.dirty_meta.add("principal")

    # -- lifetime ---------------------------------------------------------------------
    def access(self, now: float) -> None:
        self.last_accessed = self.this_accessed
        self.this_accessed = now

    def idle(self, now: float) -> float:
        return now - self.this_accessed

    def is_expired(self, now: float) -> bool:
        return self.max_inactive >= 0 and now - self.this_accessed >= self.max_inactive

    def invalidate(self) -> None:
        """End the session; the manager expires it (listeners, stores) at request end."""
        if not self.valid:
            raise IllegalStateError("invalidate: session already invalidated")
        self.valid = False

    @property
    def is_dirty(self) -> bool:
        return bool(self.dirty or self.dirty_meta)

    def clear_dirty(self) -> None:
        self.dirty.clear()
        self.dirty_meta.clear()

    # -- persistence (see pysession.serializer for the bytes) -------------------------
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


class IllegalStateError(RuntimeError):
    """Use of an invalidated session (Java's IllegalStateException)."""
