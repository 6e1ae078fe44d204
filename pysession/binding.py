"""One request's view of sessions: the cycle every host (pyservlet, the aiohttp middleware)
drives, so the Tomcat rules live in one place.

    b = SessionBinding(manager, cookie, clock, info, presented_id)
    await b.begin()          # presented id → manager.begin_request (may await a store)
    s = b.get(create=True)   # lazily: the found session, or a new one with a NEW id
    ...                      # b.change_id() at login (fixation protection)
    header = await b.end()   # Set-Cookie value (or None), after manager.end_request

An unknown, expired or forged id is never adopted: `get` creates a session with a fresh id.
A session invalidated during the request is expired at `end`; a later `get(create=True)` in
the same request makes a new one (the login pattern: invalidate, then getSession(true)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pysession.manager import Manager, RequestInfo, SetCookie
from pysession.session import Session

_SAME_SITE = ("Strict", "Lax", "None")


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """Session cookie attributes (Tomcat: Path=/ctx; HttpOnly; Secure and SameSite optional)."""

    name: str = "JSESSIONID"
    path: str = "/"
    http_only: bool = True
    secure: bool = False
    same_site: str | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.same_site is not None and self.same_site not in _SAME_SITE:
            raise ValueError(f"same_site must be one of {', '.join(_SAME_SITE)}")

    def header(self, sc: SetCookie) -> str:
        """The Set-Cookie header value."""
        parts = [f"{self.name}={sc.value}", f"Path={self.path}"]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if sc.max_age is not None:
            parts.append(f"Max-Age={sc.max_age}")
            if sc.max_age == 0:
                parts.append("Expires=Thu, 01 Jan 1970 00:00:00 GMT")
        if self.secure:
            parts.append("Secure")
        if self.http_only:
            parts.append("HttpOnly")
        if self.same_site:
            parts.append(f"SameSite={self.same_site}")
        return "; ".join(parts)


class SessionBinding:
    __slots__ = ("_done", "_found", "alternatives", "clock", "cookie", "info", "manager",
                 "presented", "session")

    def __init__(self, manager: Manager, cookie: CookieSettings, clock: Callable[[], float],
                 info: RequestInfo, presented: str | None,
                 alternatives: Sequence[str] = ()) -> None:
        """`alternatives`: further ids the client sent (several session cookies of the same
        name, e.g. from an outer context path); as Tomcat does, the first valid one wins."""
        self.manager = manager
        self.cookie = cookie
        self.clock = clock
        self.info = info
        self.presented = presented or None
        self.alternatives = alternatives
        self.session: Session | None = None
        self._found: Session | None = None
        self._done: list[Session] = []  # sessions invalidated earlier in this request

    async def begin(self) -> None:
        if self.presented is None:
            return
        s = await self.manager.begin_request(self.presented, self.clock(), self.info)
        if s is None:
            for alt in self.alternatives:
                if alt and alt != self.presented:
                    s = await self.manager.begin_request(alt, self.clock(), self.info)
                    if s is not None:
                        self.presented = alt
                        break
        if s is not None:
            s.in_use += 1
            self._found = self.session = s

    def get(self, create: bool = True) -> Session | None:
        s = self.session
        if s is not None and s.valid:
            return s
        if s is not None:  # invalidated in this request: expire at end, maybe make another
            self._done.append(s)
            self.session = None
        if not create:
            return None
        s = self.manager.create(self.clock())
        s.in_use += 1
        self.session = s
        return s

    @property
    def requested_id_valid(self) -> bool:
        """Servlet's isRequestedSessionIdValid."""
        return self._found is not None and self._found.valid

    def change_id(self) -> str:
        """Fixation protection: the bound session gets a new id (cookie re-issued)."""
        s = self.get(create=False)
        if s is None:
            raise RuntimeError("change_session_id: the request has no session")
        return self.manager.change_id(s, self.clock())

    async def end(self) -> str | None:
        """Commit through the manager; returns the Set-Cookie header value to send."""
        header: str | None = None
        now = self.clock()
        for old in self._done:
            old.in_use -= 1
            await self.manager.end_request(old, now, self.info)
        s = self.session
        if s is not None:
            sc = self.manager.session_cookie(s, self.presented)
            if sc is not None:
                header = self.cookie.header(sc)
            try:
                await self.manager.end_request(s, now, self.info)
            finally:
                s.in_use -= 1
        return header
