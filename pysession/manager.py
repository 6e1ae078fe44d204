"""Managers: the decision side of sessions. `Manager` is the interface every session manager
implements (standard, persistent, cookie, delta, backup, memcached, redis); `StandardManager`
keeps sessions in this process's memory.

Two layers, as everywhere in pycluster:

* the **sans-IO core** — `create`, `find`, `commit`, `expire`, `change_id`, `sweep` — plain
  synchronous methods that take `now` (seconds) and never read a clock, a socket or a file;
* the **async hooks** — `begin_request`, `end_request`, `start`, `stop`, `background` — where
  a manager may await a store, a cluster acknowledgement or a lock. Their default bodies do no
  IO, so StandardManager pays nothing for them.

A request goes: `begin_request(presented_id)` (only when the client presented an id) → the
application calls `create` lazily if it needs a session → `session_cookie(...)` decides the
Set-Cookie → `end_request(session)` (commit point: replicate, store, expire invalidated).
`pysession.binding.SessionBinding` drives that cycle for pyservlet and the aiohttp middleware.
See docs/sessions.md.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pycommon.wire import DEFAULT_POLICY, TypePolicy, WireError
from pysession.events import SessionEvents
from pysession.ids import new_session_id, parse_session_id, with_route
from pysession.serializer import SessionSerializer
from pysession.session import DEFAULT_MAX_INACTIVE, Session

if TYPE_CHECKING:
    from pysession.options import ManagerEnv, Options

log = logging.getLogger("pysession.manager")


class SessionError(RuntimeError):
    """A session operation that fails the request. Hosts answer `http_status` with the
    message (pynode: text/plain). Any exception raised by a manager hook that carries an
    `http_status` attribute is answered the same way."""

    http_status = 500


class SessionLimitExceeded(SessionError):
    """maxActiveSessions reached: creation is refused (Tomcat's TooManyActiveSessions)."""

    http_status = 503


@dataclass(slots=True)
class RequestInfo:
    """What a manager may want to know about the request (msm's requestUriIgnorePattern,
    lock modes by URI)."""

    method: str = "GET"
    path: str = "/"
    remote_addr: str = ""


class SetCookie(NamedTuple):
    """The session cookie value to send; `max_age=0` deletes it."""

    value: str
    max_age: int | None = None


class Manager(abc.ABC):
    """What pynode (and the aiohttp middleware) asks of any session manager."""

    #: registry name, shown on /-/health and admin pages
    kind = "abstract"
    #: the cookie carrying the id (or, for the cookie manager, the whole session)
    cookie_name = "JSESSIONID"
    #: whether `;jsessionid=` in the path may carry the id (off for cookie-held sessions)
    url_rewriting = True

    def __init__(self, route: str | None = None, max_inactive: int = DEFAULT_MAX_INACTIVE,
                 distributable: bool = False, policy: TypePolicy = DEFAULT_POLICY) -> None:
        self.route = route
        self.max_inactive = max_inactive
        self.distributable = distributable
        self.policy = policy
        self.serializer = SessionSerializer(policy)
        self.events = SessionEvents()
        self.expired_count = 0
        self.created_count = 0
        self.rejected_count = 0

    #: maxActiveSessions (-1: unlimited); see check_capacity
    max_active = -1

    # -- sans-IO core -----------------------------------------------------------------
    def check_capacity(self, now: float) -> None:
        """Refuse a new session past `max_active` (after sweeping the expired ones), like
        Tomcat's TooManyActiveSessionsException."""
        if 0 <= self.max_active <= len(self):
            self.sweep(now)
            if len(self) >= self.max_active:
                self.rejected_count += 1
                raise SessionLimitExceeded(
                    f"createSession: too many active sessions (maxActiveSessions="
                    f"{self.max_active})")

    @abc.abstractmethod
    def create(self, now: float) -> Session:
        """A new session with a fresh id; raises SessionLimitExceeded when refused."""

    @abc.abstractmethod
    def find(self, sid: str, now: float) -> Session | None:
        """The live session with this id held here, with lazy expiry; never does IO."""

    @abc.abstractmethod
    def expire(self, session: Session, now: float) -> None:
        """Invalidate and forget `session` (fires session_destroyed)."""

    @abc.abstractmethod
    def change_id(self, session: Session, now: float) -> str:
        """Give `session` a new id (login: fixation protection); returns the new id."""

    @abc.abstractmethod
    def sweep(self, now: float) -> int:
        """Expire idle sessions; return how many were expired."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Sessions active in this process's memory."""

    def __bool__(self) -> bool:
        """A manager is always truthy, even with no session (`manager or default` is safe)."""
        return True

    def new_id(self) -> str:
        """A fresh id in Tomcat's format (override to add msm's `-n1` infix)."""
        return new_session_id(self.route)

    def new_session(self, sid: str, now: float) -> Session:
        """A Session wired to this manager (events, policy); not yet registered."""
        s = Session(sid, now, self.max_inactive, self.distributable, self.policy)
        s.events = self.events
        return s

    def commit(self, session: Session, now: float) -> None:
        """Request-end bookkeeping once the changes are saved/sent: not new, not dirty."""
        session.is_new = False
        session.clear_dirty()

    def session_cookie(self, session: Session, presented: str | None) -> SetCookie | None:
        """The Set-Cookie to send at request end, decided before `end_request` commits.

        Default (Tomcat): the id, when the session is new or its id differs from what the
        client presented (change_id, JvmRouteBinder); nothing once invalidated.
        """
        if session.valid and (session.is_new or presented != session.id):
            return SetCookie(session.id)
        return None

    # -- async hooks (IO shell) -------------------------------------------------------
    async def begin_request(self, sid: str, now: float, info: RequestInfo) -> Session | None:
        """The session for the id the client presented, or None (then a new one is made
        when the application asks). May await a store / cluster (load, lock)."""
        s = self.find(sid, now)
        if s is not None:
            s.access(now)
        return s

    async def end_request(self, session: Session, now: float, info: RequestInfo) -> None:
        """Commit point, once per session used by a request: save / replicate what changed,
        expire it when the request invalidated it."""
        if not session.valid:
            self.expire(session, now)
        else:
            self.commit(session, now)

    async def start(self, now: float) -> None:
        """Node start: load saved sessions, join a cluster, connect to a store."""
        return None

    async def stop(self, now: float) -> None:
        """Graceful node stop: save sessions, leave the cluster, close stores."""
        return None

    async def background(self, now: float) -> int:
        """Periodic work (Tomcat's backgroundProcess, ~60 s): expiry, swaps; returns how
        many sessions expired."""
        return self.sweep(now)

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "active": len(self), "created": self.created_count,
                "expired": self.expired_count, "rejected": self.rejected_count}


class StandardManager(Manager):
    """Sessions in this process's memory (Tomcat's StandardManager).

    With `save_file` set, `stop` writes every live session to that file and `start` reads it
    back, dropping the ones that expired meanwhile, then deletes the file (Tomcat's
    SESSIONS.ser, but msgpack under the type policy).
    """

    kind = "standard"

    def __init__(self, route: str | None = None, max_inactive: int = DEFAULT_MAX_INACTIVE,
                 max_active: int = -1, distributable: bool = False,
                 policy: TypePolicy = DEFAULT_POLICY, save_file: str | Path | None = None
                 ) -> None:
        super().__init__(route, max_inactive, distributable, policy)
        self.max_active = max_active
        self.save_file = Path(save_file) if save_file else None
        self.sessions: dict[str, Session] = {}

    # -- core -------------------------------------------------------------------------
    def _unused_id(self) -> str:
        while True:
            sid = self.new_id()
            if sid not in self.sessions:
                return sid

    def create(self, now: float) -> Session:
        self.check_capacity(now)
        s = self.new_session(self._unused_id(), now)
        self.sessions[s.id] = s
        self.created_count += 1
        if self.events:
            self.events.session_created(s)
        return s

    def add(self, session: Session) -> None:
        """Adopt a session that exists elsewhere (loaded, swapped in, replicated)."""
        session.events = self.events
        self.sessions[session.id] = session

    def find(self, sid: str, now: float) -> Session | None:
        s = self.sessions.get(sid)
        if s is None:
            return None
        if not s.valid or s.is_expired(now):
            if s.in_use == 0:
                self.expire(s, now)
            return None
        return s

    def expire(self, session: Session, now: float) -> None:
        session.valid = False
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            self.expired_count += 1
            if self.events:
                self.events.session_destroyed(session)

    def remove(self, session: Session) -> None:
        """Forget `session` without expiring it (swapped out, moved to another node)."""
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    def change_id(self, session: Session, now: float) -> str:
        old = session.id
        if self.sessions.get(old) is session:
            del self.sessions[old]
        session.id = self._unused_id()
        self.sessions[session.id] = session
        if self.events:
            self.events.session_id_changed(session, old)
        return session.id

    def rebind_route(self, session: Session) -> str:
        """Give an existing session this node's route (JvmRouteBinderValve)."""
        old = session.id
        self.sessions.pop(old, None)
        session.id = with_route(old, self.route)
        self.sessions[session.id] = session
        if self.events and old != session.id:
            self.events.session_id_changed(session, old)
        return session.id

    def sweep(self, now: float) -> int:
        dead = [s for s in self.sessions.values()
                if s.in_use == 0 and (not s.valid or s.is_expired(now))]
        for s in dead:
            self.expire(s, now)
        return len(dead)

    def __len__(self) -> int:
        return len(self.sessions)

    # -- save / reload (sans-IO halves) -----------------------------------------------
    def dump(self, now: float) -> bytes:
        """Every live session as bytes (for save-on-stop)."""
        live = [s for s in self.sessions.values() if s.valid and not s.is_expired(now)]
        return self.serializer.dumps_many(live)

    def load(self, data: bytes, now: float) -> int:
        """Adopt saved sessions, dropping expired ones and ids not of our format."""
        n = 0
        for s in self.serializer.loads_many(data, self.distributable):
            if parse_session_id(s.id) is None or s.is_expired(now):
                continue
            self.add(s)
            n += 1
        return n

    # -- shell ------------------------------------------------------------------------
    async def start(self, now: float) -> None:
        if self.save_file is None or not self.save_file.exists():
            return
        try:
            n = self.load(self.save_file.read_bytes(), now)
            log.info("reloaded %d sessions from %s", n, self.save_file)
        except (OSError, WireError) as exc:
            log.warning("cannot reload sessions from %s: %s", self.save_file, exc)
        try:
            self.save_file.unlink()
        except OSError:
            pass

    async def stop(self, now: float) -> None:
        if self.save_file is None:
            return
        tmp = self.save_file.with_name(self.save_file.name + ".tmp")
        try:
            self.save_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(self.dump(now))
            tmp.replace(self.save_file)
            log.info("saved %d sessions to %s", len(self.sessions), self.save_file)
        except OSError as exc:
            log.error("cannot save sessions to %s: %s", self.save_file, exc)

    @classmethod
    def from_options(cls, opts: Options, env: ManagerEnv) -> StandardManager:
        return cls(route=env.route, max_inactive=env.max_inactive,
                   max_active=opts.integer("max_active_sessions", -1),
                   distributable=env.distributable, policy=env.policy,
                   save_file=opts.path("save_file", env.work_dir))
