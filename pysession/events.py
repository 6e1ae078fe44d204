"""Session and attribute listeners (HttpSessionListener, HttpSessionAttributeListener,
HttpSessionIdListener).

A listener is any object with some of the methods of `SessionListener`; missing methods are
simply not called. A listener that raises is logged and does not break the request or the
other listeners (Tomcat logs and carries on the same way).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pysession.session import Session

log = logging.getLogger("pysession.events")


class SessionListener:
    """Base class with no-op hooks: override the ones you need."""

    def session_created(self, session: Session) -> None: ...

    def session_destroyed(self, session: Session) -> None:
        """Called before the attributes are dropped, so they can still be read."""

    def session_id_changed(self, session: Session, old_id: str) -> None: ...

    def attribute_added(self, session: Session, name: str, value: Any) -> None: ...

    def attribute_replaced(self, session: Session, name: str, old_value: Any) -> None: ...

    def attribute_removed(self, session: Session, name: str, old_value: Any) -> None: ...


class SessionEvents:
    """The listener list a manager owns; sessions call into it."""

    __slots__ = ("listeners",)

    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def add(self, listener: Any) -> None:
        self.listeners.append(listener)

    def __bool__(self) -> bool:
        return bool(self.listeners)

    def _fire(self, method: str, *args: Any) -> None:
        for lst in self.listeners:
            fn = getattr(lst, method, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception:
                log.exception("session listener %r failed in %s", lst, method)

    def session_created(self, session: Session) -> None:
        self._fire("session_created", session)

    def session_destroyed(self, session: Session) -> None:
        self._fire("session_destroyed", session)

    def session_id_changed(self, session: Session, old_id: str) -> None:
        self._fire("session_id_changed", session, old_id)

    def attribute_added(self, session: Session, name: str, value: Any) -> None:
        self._fire("attribute_added", session, name, value)

    def attribute_replaced(self, session: Session, name: str, old_value: Any) -> None:
        self._fire("attribute_replaced", session, name, old_value)

    def attribute_removed(self, session: Session, name: str, old_value: Any) -> None:
        self._fire("attribute_removed", session, name, old_value)
