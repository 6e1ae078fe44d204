"""Session stickiness (sans-IO): route from the session id, or a balancer-inserted cookie.

Three ways, as the anchors do it:

* **route** (httpd `stickysession=JSESSIONID|jsessionid`, mod_jk): the route is the text after
  the first `.` of the session id, read from `;jsessionid=` in the path first, then from the
  `JSESSIONID` cookie (`ABC.node1` → `node1`).
* **inserted cookie** (httpd's `ROUTEID=.node1` recipe; HAProxy `cookie SERVERID insert
  indirect nocache`): when the client has no valid cookie the balancer sets one naming the
  chosen member's route; `indirect` strips it before the member sees the request; `nocache`
  adds `Cache-Control: private` to responses that set it.
* **force** (`nofailover=On`, `sticky_session_force=1`): the route's member unusable → 503.
  Without force the request fails over through the balancer and the inserted cookie is
  re-issued for the new member.

Members in `drain`/`disabled` state still take requests stuck to them; `stopped` ones do not.
"""

from __future__ import annotations

from dataclasses import dataclass

from pylb.balancing.base import Balancer, Peer, Pick


@dataclass
class StickyConfig:
    cookie: str | None = "JSESSIONID"  # session cookie whose suffix names the route
    path_param: str | None = "jsessionid"  # ;jsessionid=ID.route (checked first)
    force: bool = False  # nofailover / sticky_session_force → 503
    insert: str | None = None  # name of the balancer-inserted cookie (ROUTEID, SERVERID)
    prefix: str = "."  # inserted value = prefix + route (httpd recipe ".node1")
    indirect: bool = False
    nocache: bool = False
    httponly: bool = False
    secure: bool = False
    samesite: str | None = None
    max_age: int | None = None
    path: str = "/"
    domain: str | None = None


def route_of(value: bytes) -> str | None:
    """`ABC.node1` → `node1` (the text after the first dot), else None."""
    dot = value.find(b".")
    if dot < 0 or dot == len(value) - 1:
        return None
    return value[dot + 1:].decode("latin-1")


def path_param(target: bytes, name: bytes) -> bytes | None:
    """The value of `;name=` in the path part of `target`."""
    path = target.split(b"?", 1)[0]
    key = b";" + name + b"="
    i = path.lower().find(key)
    if i < 0:
        return None
    rest = path[i + len(key):]
    for sep in (b";", b"/", b"#"):
        j = rest.find(sep)
        if j >= 0:
            rest = rest[:j]
    return rest


def cookie_value(cookie_headers: list[bytes], name: bytes) -> bytes | None:
    for header in cookie_headers:
        for part in header.split(b";"):
            k, eq, v = part.strip().partition(b"=")
            if eq and k == name:
                return v.strip().strip(b'"')
    return None


def strip_cookie(header: bytes, name: bytes) -> bytes:
    """Remove `name=...` from a Cookie header value (HAProxy `indirect`); the other cookies
    go on as they came (HAProxy cuts only that cookie out)."""
    if name not in header:
        return header
    parts = header.split(b";")
    kept = [p for p in parts if p.strip().partition(b"=")[0] != name]
    if len(kept) == len(parts):
        return header
    return b";".join(kept).strip()


class Decision:
    __slots__ = ("peer", "set_cookie", "status", "stuck")

    def __init__(self, peer: Peer | None, status: int = 0, set_cookie: bytes | None = None,
                 stuck: bool = False) -> None:
        self.peer = peer
        self.status = status  # 503 when force and the route's member is unusable
        self.set_cookie = set_cookie  # a Set-Cookie value to add to the response
        self.stuck = stuck  # the request followed an existing route


class Sticky:
    """Route lookup + the failover decision around a balancer."""

    def __init__(self, cfg: StickyConfig, peers: list[Peer]) -> None:
        self.cfg = cfg
        self.by_route = {(p.route or p.name): p for p in peers}
        self._cookie = cfg.cookie.encode() if cfg.cookie else None
        self._param = cfg.path_param.encode() if cfg.path_param else None
        self._insert = cfg.insert.encode() if cfg.insert else None

    def routes(self, target: bytes, cookies: list[bytes]) -> tuple[str | None, str | None]:
        """(route from the session id, route from the inserted cookie)."""
        route = None
        if self._param is not None:
            v = path_param(target, self._param)
            if v:
                route = route_of(v)
        if route is None and self._cookie is not None and cookies:
            v = cookie_value(cookies, self._cookie)
            if v:
                route = route_of(v)
        inserted = None
        if self._insert is not None and cookies:
            v = cookie_value(cookies, self._insert)
            if v:
                pre = self.cfg.prefix.encode()
                inserted = (v[len(pre):] if pre and v.startswith(pre) else v).decode("latin-1")
        return route, inserted

    def set_cookie(self, peer: Peer) -> bytes:
        c = self.cfg
        assert c.insert is not None
        out = f"{c.insert}={c.prefix}{peer.route or peer.name}; Path={c.path}"
        if c.domain:
            out += f"; Domain={c.domain}"
        if c.max_age is not None:
            out += f"; Max-Age={c.max_age}"
        if c.httponly:
            out += "; HttpOnly"
        if c.secure:
            out += "; Secure"
        if c.samesite:
            out += f"; SameSite={c.samesite}"
        return out.encode()

    def choose(self, bal: Balancer, pick: Pick, now: float,
               inserted: str | None = None) -> Decision:
        route = pick.route or inserted
        if route is not None:
            bal.sync()  # passive health failed by another worker counts here too
            peer = self.by_route.get(route)
            if peer is not None and peer.index not in pick.tried and peer.usable(now):
                peer.sticky_hits += 1
                cookie = None
                if self._insert is not None and inserted != (peer.route or peer.name):
                    cookie = self.set_cookie(peer)
                return Decision(peer, set_cookie=cookie, stuck=True)
            if self.cfg.force and peer is not None:  # unknown route: balance normally
                return Decision(None, status=503)
        peer = bal.select(pick, now)
        if peer is None:
            return Decision(None)
        cookie = None
        if self._insert is not None and inserted != (peer.route or peer.name):
            cookie = self.set_cookie(peer)
        return Decision(peer, set_cookie=cookie)
