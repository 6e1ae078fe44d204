"""`set_headers` values: nginx `proxy_set_header` variables, checked at load time.

A value is text with variables in it, as in nginx: `"$host"`, `"$scheme://$host"`,
`"for=$remote_addr"`. Known variables: `$host` (nginx's: the request line's host or the Host
header, lower-cased, without the port), `$remote_addr`, `$proxy_add_x_forwarded_for`,
`$scheme`, `$request_uri`, `$http_NAME` (a request header, `_` for `-`); `${name}` also works.
An unknown variable is a config error (nginx refuses one too). A header whose value comes out
empty is not sent (nginx's rule; an empty literal removes the client's header of that name).
`Content-Length` and `Transfer-Encoding` cannot be set: the body's framing is the proxy's, and
a second value would be a request-smuggling vector.

`compile_value` runs once per config; the proxy keeps a fast path for values that are one
variable and uses `render` for the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable

FIXED = ("host", "remote_addr", "proxy_add_x_forwarded_for", "scheme", "request_uri")
FORBIDDEN = frozenset({"content-length", "transfer-encoding"})
_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")

# one part of a compiled value: (kind, argument); kind "" = literal text in the argument
Part = tuple[str, bytes]


def compile_value(value: str, scheme: str = "http") -> list[Part]:
    """Split `value` into literal and variable parts; ValueError names an unknown one."""
    parts: list[Part] = []
    pos = 0
    for m in _VAR.finditer(value):
        name = m.group(1) or m.group(2)
        if m.start() > pos:
            parts.append(("", value[pos:m.start()].encode()))
        if name == "scheme":
            parts.append(("", scheme.encode()))
        elif name in FIXED:
            parts.append((name, b""))
        elif name.startswith("http_") and len(name) > 5:
            parts.append(("http", name[5:].replace("_", "-").lower().encode()))
        else:
            raise ValueError(f"unknown variable ${name} (known: $"
                             + ", $".join(FIXED) + ", $http_NAME)")
        pos = m.end()
    if pos < len(value):
        parts.append(("", value[pos:].encode()))
    # adjacent literals (e.g. around $scheme) become one
    merged: list[Part] = []
    for kind, arg in parts:
        if kind == "" and merged and merged[-1][0] == "":
            merged[-1] = ("", merged[-1][1] + arg)
        else:
            merged.append((kind, arg))
    return merged


def check_name(name: str) -> None:
    if name.lower() in FORBIDDEN:
        raise ValueError(f"{name} cannot be set: the proxy frames request bodies itself")


def host_variable(host: bytes) -> bytes:
    """nginx's `$host` from a Host value or a request-line authority: lower-cased, without
    the port (an IPv6 literal keeps its brackets) and a trailing dot."""
    if host[:1] == b"[":
        end = host.find(b"]")
        h = host[:end + 1] if end > 0 else host
    else:
        h = host.partition(b":")[0]
    return h.rstrip(b".").lower()


def split_absolute(target: bytes) -> tuple[bytes, bytes] | None:
    """`http://Host:8080/p?q` -> (b"Host:8080", b"/p?q"); None for origin-form targets."""
    low = target[:8].lower()
    if low.startswith(b"http://"):
        rest = target[7:]
    elif low.startswith(b"https://"):
        rest = target[8:]
    else:
        return None
    cut = len(rest)
    for sep in (b"/", b"?"):
        i = rest.find(sep)
        if 0 <= i < cut:
            cut = i
    path = rest[cut:]
    if path[:1] != b"/":
        path = b"/" + path
    return rest[:cut].rpartition(b"@")[2], path


def render(parts: list[Part], host: bytes, peer: bytes, xff: bytes | None,
           target: bytes, header: Callable[[bytes], bytes | None]) -> bytes:
    """The value of a compiled multi-part value for one request. `header(name)` gives the
    first value of a request header (lower-case name) or None."""
    out = []
    for kind, arg in parts:
        if kind == "":
            out.append(arg)
        elif kind == "host":
            out.append(host)
        elif kind == "remote_addr":
            out.append(peer)
        elif kind == "proxy_add_x_forwarded_for":
            out.append(xff + b", " + peer if xff else peer)
        elif kind == "request_uri":
            out.append(target)
        else:  # http
            out.append(header(arg) or b"")
    return b"".join(out)
