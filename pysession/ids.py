"""Session ids in Tomcat's format: 32 uppercase hex from 16 `secrets` bytes, then optional
`-nodeId` (memcached-session-manager) and `.jvmRoute` suffixes: `4DD0...39EC-n1.node1`."""

from __future__ import annotations

import re
import secrets
from typing import NamedTuple

ID_BYTES = 16
_ID_RE = re.compile(r"^([0-9A-F]{32})(?:-([A-Za-z0-9_]+))?(?:\.([A-Za-z0-9_\-]+))?$")


class SessionIdParts(NamedTuple):
    base: str
    node_id: str | None
    route: str | None


def new_session_id(route: str | None = None, node_id: str | None = None) -> str:
    sid = secrets.token_bytes(ID_BYTES).hex().upper()
    return format_session_id(sid, node_id, route)


def format_session_id(base: str, node_id: str | None = None, route: str | None = None) -> str:
    out = base
    if node_id:
        out += f"-{node_id}"
    if route:
        out += f".{route}"
    return out


def parse_session_id(sid: str) -> SessionIdParts | None:
    """Split an id; None when it is not of our format (then it is never adopted)."""
    m = _ID_RE.match(sid)
    if not m:
        return None
    return SessionIdParts(m.group(1), m.group(2), m.group(3))


def with_route(sid: str, route: str | None) -> str:
    """The same session under another jvmRoute (JvmRouteBinderValve's rewrite)."""
    parts = parse_session_id(sid)
    if parts is None:
        raise ValueError(f"not a session id: {sid!r}")
    return format_session_id(parts.base, parts.node_id, route)
