"""Managers: the decision side of sessions. StandardManager keeps them in memory.

Sans-IO: every method takes `now`; a shell runs `sweep(now)` about every 60 s (Tomcat's
backgroundProcessor) and expiry is also checked lazily on each `find`.
"""

from __future__ import annotations

import abc

from pysession.ids import new_session_id, parse_session_id, with_route
from pysession.session import DEFAULT_MAX_INACTIVE, Session


class SessionLimitExceeded(RuntimeError):
    """maxActiveSessions reached: creation is refused (Tomcat's TooManyActiveSessions)."""


class Manager(abc.ABC):
    """What pynode asks of any session manager."""

    route: str | None
    max_inactive: int
    distributable: bool

    @abc.abstractmethod
    def create(self, now: float) -> Session: ...

    @abc.abstractmethod
    def find(self, sid: str, now: float) -> Session | None: ...

    @abc.abstractmethod
    def end_request(self, session: Session, now: float) -> None:
        """Called once per request that used `session` (commit point)."""

    @abc.abstractmethod
    def expire(self, session: Session, now: float) -> None: ...

    @abc.abstractmethod
    def change_id(self, session: Session, now: float) -> str: ...

    @abc.abstractmethod
    def sweep(self, now: float) -> int:
        """Expire idle sessions; return how many were expired."""

    @abc.abstractmethod
    def __len__(self) -> int: ...


class StandardManager(Manager):
    """Sessions in this process's memory (Tomcat's StandardManager)."""

    def __init__(self, route: str | None = None, max_inactive: int = DEFAULT_MAX_INACTIVE,
                 max_active: int = -1, distributable: bool = False) -> None:
        self.route = route
        self.max_inactive = max_inactive
        self.max_active = max_active
        self.distributable = distributable
        self.sessions: dict[str, Session] = {}
        self.expired_count = 0
        self.rejected_count = 0

    def _new_id(self) -> str:
        while True:
            sid = new_session_id(self.route)
            if sid not in self.sessions:
                return sid

    def create(self, now: float) -> Session:
        if 0 <= self.max_active <= len(self.sessions):
            self.sweep(now)
            if len(self.sessions) >= self.max_active:
                self.rejected_count += 1
                raise SessionLimitExceeded(
                    f"createSession: too many active sessions ({self.max_active})")
        s = Session(self._new_id(), now, self.max_inactive, self.distributable)
        self.sessions[s.id] = s
        return s

    def find(self, sid: str, now: float) -> Session | None:
        if parse_session_id(sid) is None:
            return None
        s = self.sessions.get(sid)
        if s is None:
            return None
        if not s.valid or s.is_expired(now):
            self.expire(s, now)
            return None
        return s

    def end_request(self, session: Session, now: float) -> None:
        session.is_new = False
        session.dirty.clear()
        if not session.valid:
            self.expire(session, now)

    def expire(self, session: Session, now: float) -> None:
        session.valid = False
        if self.sessions.pop(session.id, None) is not None:
            self.expired_count += 1

    def change_id(self, session: Session, now: float) -> str:
        self.sessions.pop(session.id, None)
        new = self._new_id()
        session.id = new
        self.sessions[new] = session
        return new

    def rebind_route(self, session: Session) -> str:
        """Give an existing session this node's route (JvmRouteBinderValve)."""
        self.sessions.pop(session.id, None)
        session.id = with_route(session.id, self.route)
        self.sessions[session.id] = session
        return session.id

    def sweep(self, now: float) -> int:
        dead = [s for s in self.sessions.values() if not s.valid or s.is_expired(now)]
        for s in dead:
            self.expire(s, now)
        return len(dead)

    def __len__(self) -> int:
        return len(self.sessions)
