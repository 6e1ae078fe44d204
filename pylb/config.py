"""pylb's config model (dataclasses) and its TOML loader.

    [server]
    listen = ["127.0.0.1:8080"]
    upstream = "app"                  # where requests go
    client_max_body_size = "1m"

    [admin]
    listen = "127.0.0.1:8090"         # health (and later the manager page)

    [upstream.app]
    balance = "round_robin"
    members = [
      { name = "node1", address = "127.0.0.1:8081", weight = 1 },
      { name = "node2", address = "127.0.0.1:8082" },
    ]

Every other config format (nginx.conf, httpd, workers.properties) is to be parsed into these
same dataclasses. Errors name file, line and token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycommon.config import ConfigError, TomlSource, parse_hostport
from pylb.balancing import METHODS


@dataclass
class MemberConfig:
    name: str
    host: str
    port: int
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    backup: bool = False
    down: bool = False
    route: str | None = None


@dataclass
class UpstreamConfig:
    name: str
    balance: str = "round_robin"
    members: list[MemberConfig] = field(default_factory=list)
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    keepalive: int = 32  # idle connections kept per member (nginx `keepalive N`)


@dataclass
class ServerConfig:
    listen: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", 8080)])
    upstream: str = ""
    client_max_body_size: int = 1024 * 1024
    keepalive_timeout: float = 75.0
    keepalive_requests: int = 1000
    set_headers: dict[str, str] = field(default_factory=lambda: {
        "Host": "$host", "X-Real-IP": "$remote_addr",
        "X-Forwarded-For": "$proxy_add_x_forwarded_for"})


@dataclass
class AdminConfig:
    listen: tuple[str, int] | None = None


@dataclass
class LbConfig:
    path: str
    server: ServerConfig
    admin: AdminConfig
    upstreams: dict[str, UpstreamConfig]


_SIZE = re.compile(r"^(\d+)\s*([kKmMgG]?)$")


def parse_size(v: Any) -> int:
    """nginx sizes: 1024, "8k", "1m", "2g"."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    m = _SIZE.match(str(v).strip())
    if not m:
        raise ValueError(f"expected a size like 1m, got {v!r}")
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    return int(m.group(1)) * mult


def parse_duration(v: Any) -> float:
    """nginx times: 10 (seconds), "10s", "500ms", "1m"."""
    if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0:
        return float(v)
    m = re.match(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$", str(v).strip())
    if not m:
        raise ValueError(f"expected a duration like 10s, got {v!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


_MEMBER_KEYS = {"name", "address", "weight", "max_fails", "fail_timeout", "backup", "down",
                "route"}
_UPSTREAM_KEYS = {"balance", "members", "connect_timeout", "read_timeout", "keepalive"}
_SERVER_KEYS = {"listen", "upstream", "client_max_body_size", "keepalive_timeout",
                "keepalive_requests", "set_headers"}


def _check_keys(src: TomlSource, table: dict[str, Any], allowed: set[str], where: str) -> None:
    for k in table:
        if k not in allowed:
            raise src.error(f"unknown key {k!r} in [{where}]", k, where, token=k)


def _member(src: TomlSource, up: str, i: int, raw: Any) -> MemberConfig:
    where = f"upstream.{up}"
    if not isinstance(raw, dict):
        raise src.error(f"member #{i + 1} must be a table", "members", where)
    for k in raw:
        if k not in _MEMBER_KEYS:
            raise src.error(f"unknown member key {k!r}", k, where, token=k)
    if "address" not in raw:
        raise src.error(f"member #{i + 1} has no address", "members", where)
    line = src.line_containing(str(raw["address"]), src.line_of("members", where))

    def bad(message: str, token: object) -> ConfigError:
        return ConfigError(message, src.path, line, str(token))

    try:
        host, port = parse_hostport(str(raw["address"]))
    except ValueError as exc:
        raise bad(str(exc), raw["address"]) from None
    name = str(raw.get("name") or f"{host}:{port}")
    weight = raw.get("weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
        raise bad("weight: expected a positive integer", weight)
    max_fails = raw.get("max_fails", 1)
    if not isinstance(max_fails, int) or max_fails < 0:
        raise bad("max_fails: expected an integer >= 0", max_fails)
    try:
        fail_timeout = parse_duration(raw.get("fail_timeout", 10))
    except ValueError as exc:
        raise bad(str(exc), raw.get("fail_timeout")) from None
    route = raw.get("route")
    return MemberConfig(name, host, port, weight, max_fails, fail_timeout,
                        bool(raw.get("backup", False)), bool(raw.get("down", False)),
                        None if route is None else str(route))


def load(path: str | Path) -> LbConfig:
    return from_source(TomlSource.load(path))


def from_source(src: TomlSource) -> LbConfig:
    data = src.data
    for k in data:
        if k not in ("server", "admin", "upstream"):
            raise src.error(f"unknown section [{k}]", "", k, token=k)
    ups: dict[str, UpstreamConfig] = {}
    raw_ups = data.get("upstream", {})
    if not isinstance(raw_ups, dict) or not raw_ups:
        raise src.error("at least one [upstream.NAME] section is required")
    for name, raw in raw_ups.items():
        where = f"upstream.{name}"
        _check_keys(src, raw, _UPSTREAM_KEYS, where)
        balance = str(raw.get("balance", "round_robin"))
        if balance not in METHODS:
            raise src.error(f"unknown balance method {balance!r} (known: "
                            f"{', '.join(sorted(METHODS))})", "balance", where, token=balance)
        members = [_member(src, name, i, m) for i, m in enumerate(raw.get("members", []))]
        if not members:
            raise src.error(f"upstream {name!r} has no members", "", where)
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise src.error("member names must be unique", "members", where)
        try:
            ct = parse_duration(raw.get("connect_timeout", 5))
            rt = parse_duration(raw.get("read_timeout", 60))
        except ValueError as exc:
            raise src.error(str(exc), "connect_timeout", where) from None
        ups[name] = UpstreamConfig(name, balance, members, ct, rt,
                                   int(raw.get("keepalive", 32)))
    rs = data.get("server", {})
    _check_keys(src, rs, _SERVER_KEYS, "server")
    server = ServerConfig()
    listen = rs.get("listen", ["127.0.0.1:8080"])
    if isinstance(listen, str):
        listen = [listen]
    try:
        server.listen = [parse_hostport(str(x)) for x in listen]
    except ValueError as exc:
        raise src.error(str(exc), "listen", "server", token=listen) from None
    server.upstream = str(rs.get("upstream", next(iter(ups))))
    if server.upstream not in ups:
        raise src.error(f"unknown upstream {server.upstream!r}", "upstream", "server",
                        token=server.upstream)
    try:
        server.client_max_body_size = parse_size(rs.get("client_max_body_size", "1m"))
        server.keepalive_timeout = parse_duration(rs.get("keepalive_timeout", 75))
    except ValueError as exc:
        raise src.error(str(exc), "client_max_body_size", "server") from None
    server.keepalive_requests = int(rs.get("keepalive_requests", 1000))
    if "set_headers" in rs:
        server.set_headers = {str(k): str(v) for k, v in rs["set_headers"].items()}
    admin = AdminConfig()
    ra = data.get("admin", {})
    _check_keys(src, ra, {"listen"}, "admin")
    if "listen" in ra:
        try:
            admin.listen = parse_hostport(str(ra["listen"]))
        except ValueError as exc:
            raise src.error(str(exc), "listen", "admin", token=ra["listen"]) from None
    return LbConfig(src.path, server, admin, ups)


def check(path: str | Path) -> LbConfig:
    """Load and validate; raises ConfigError."""
    return load(path)


__all__ = ["ConfigError", "LbConfig", "MemberConfig", "UpstreamConfig", "check", "load"]
