"""pylb's config model (dataclasses) and its TOML loader.

    [server]
    listen = ["127.0.0.1:8080"]
    upstream = "app"                  # where requests go
    client_max_body_size = "1m"       # 413 above; 0 = unlimited
    keepalive_timeout = "75s"
    keepalive_requests = 1000
    client_header_timeout = "60s"     # head not complete in time → close without answer
    client_body_timeout = "60s"       # no body bytes for this long → 408 and close
    set_headers = { Host = "$host", X-Real-IP = "$remote_addr",
                    X-Forwarded-For = "$proxy_add_x_forwarded_for" }   # the seeds' defaults
    error_page = { "500 502 503 504" = "50x.html" }   # files, relative to this config
    access_log = "access.log"         # path, "-" (stderr) or "off" (default)
    access_log_format = "combined"    # or "json"

    [admin]
    listen = "127.0.0.1:8090"         # manager page, JSON API, /metrics, /-/health
    user = "admin"                    # credentials for the manager (HTTP basic)
    password = "secret"
    allow = ["127.0.0.0/8", "::1"]    # address allow-list
    read_only = false

    [upstream.app]
    balance = "round_robin"           # ip_hash | hash | least_conn | random | random_two
    hash_key = "$request_uri"         # for balance = "hash"
    consistent = false                # hash ... consistent (ketama)
    members = [
      { name = "node1", address = "127.0.0.1:8081", weight = 1, route = "node1" },
      { name = "node2", address = "127.0.0.1:8082", max_fails = 1, fail_timeout = "10s" },
    ]

    [upstream.app.sticky]             # route from JSESSIONID / ;jsessionid, inserted cookie
    cookie = "JSESSIONID"
    insert = "ROUTEID"                # httpd's ROUTEID=.node1 recipe
    force = false                     # nofailover / sticky_session_force → 503

    [upstream.app.health]             # active checks
    interval = "2s"
    path = "/-/health"

Every other config format (nginx.conf, httpd, workers.properties) is to be parsed into these
same dataclasses. Errors name file, line and token.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycommon.config import ConfigError, TomlSource, parse_hostport
from pylb.balancing import METHODS, STATES
from pylb.set_headers import check_name, compile_value
from pylb.sticky import StickyConfig


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
    state: str = "active"


@dataclass
class HealthConfig:
    """Active health checks (nginx plus `health_check`, HAProxy `check inter rise fall`)."""

    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    path: str = "/"
    expect_status: list[int] = field(default_factory=lambda: list(range(200, 400)))
    slow_start: float = 0.0  # seconds to ramp a recovered member's weight up from 1


@dataclass
class UpstreamConfig:
    name: str
    balance: str = "round_robin"
    members: list[MemberConfig] = field(default_factory=list)
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    send_timeout: float = 60.0
    keepalive: int = 32  # idle connections cached for the upstream, LRU (nginx `keepalive N`)
    hash_key: str = ""
    next_upstream_tries: int = 0  # 0 = every member once (nginx default)
    sticky: StickyConfig | None = None
    health: HealthConfig | None = None


DEFAULT_SET_HEADERS = {"Host": "$host", "X-Real-IP": "$remote_addr",
                       "X-Forwarded-For": "$proxy_add_x_forwarded_for"}


@dataclass
class ServerConfig:
    listen: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", 8080)])
    upstream: str = ""
    client_max_body_size: int = 1024 * 1024
    keepalive_timeout: float = 75.0
    keepalive_requests: int = 1000
    client_header_timeout: float = 60.0
    client_body_timeout: float = 60.0
    max_request_line: int = 8192
    max_header_line: int = 8192
    max_header_size: int = 32768
    set_headers: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SET_HEADERS))
    error_pages: dict[int, bytes] = field(default_factory=dict)
    access_log: str = "off"
    access_log_format: str = "combined"


@dataclass
class AdminConfig:
    listen: tuple[str, int] | None = None
    user: str | None = None
    password: str | None = None
    allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(
        default_factory=lambda: [ipaddress.ip_network("127.0.0.0/8"),
                                 ipaddress.ip_network("::1/128")])
    read_only: bool = False


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
                "route", "state"}
_UPSTREAM_KEYS = {"balance", "members", "connect_timeout", "read_timeout", "send_timeout",
                  "keepalive", "hash_key", "consistent", "next_upstream_tries", "sticky",
                  "health"}
_SERVER_KEYS = {"listen", "upstream", "client_max_body_size", "keepalive_timeout",
                "keepalive_requests", "set_headers", "client_header_timeout",
                "client_body_timeout", "max_request_line", "max_header_line",
                "max_header_size", "error_page", "access_log", "access_log_format"}
_STICKY_KEYS = {"cookie", "path_param", "force", "insert", "prefix", "indirect", "nocache",
                "httponly", "secure", "samesite", "max_age", "path", "domain",
                "nofailover", "sticky_session_force"}  # the anchors' names for `force`
_HEALTH_KEYS = {"interval", "timeout", "rise", "fall", "path", "expect_status", "slow_start"}
_ADMIN_KEYS = {"listen", "user", "password", "allow", "read_only"}


def _check_keys(src: TomlSource, table: dict[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise src.error(f"[{where}] must be a table", "", where)
    for k in table:
        if k not in allowed:
            raise src.error(f"unknown key {k!r} in [{where}]", k, where, token=k)


def _int(src: TomlSource, raw: dict[str, Any], key: str, default: int, where: str,
         minimum: int = 0) -> int:
    v = raw.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise src.error(f"{key}: expected an integer >= {minimum}", key, where, token=v)
    return v


def _dur(src: TomlSource, raw: dict[str, Any], key: str, default: float, where: str) -> float:
    try:
        return parse_duration(raw.get(key, default))
    except ValueError as exc:
        raise src.error(f"{key}: {exc}", key, where, token=raw.get(key)) from None


def _member(src: TomlSource, up: str, i: int, raw: Any) -> MemberConfig:
    where = f"upstream.{up}"
    if not isinstance(raw, dict):
        raise src.error(f"member #{i + 1} must be a table", "members", where)
    line = src.line_containing(str(raw.get("address", "")), src.line_of("members", where))
    for k in raw:
        if k not in _MEMBER_KEYS:
            raise ConfigError(f"unknown member key {k!r}", src.path, line, k)
    if "address" not in raw:
        raise src.error(f"member #{i + 1} has no address", "members", where)
    try:
        host, port = parse_hostport(str(raw["address"]))
    except ValueError as exc:
        raise ConfigError(str(exc), src.path, line, str(raw["address"])) from None
    name = str(raw.get("name") or f"{host}:{port}")
    weight = raw.get("weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
        raise ConfigError("weight: expected a positive integer", src.path, line, str(weight))
    max_fails = raw.get("max_fails", 1)
    if not isinstance(max_fails, int) or isinstance(max_fails, bool) or max_fails < 0:
        raise ConfigError("max_fails: expected an integer >= 0", src.path, line,
                          str(max_fails))
    try:
        fail_timeout = parse_duration(raw.get("fail_timeout", 10))
    except ValueError as exc:
        raise ConfigError(str(exc), src.path, line, str(raw.get("fail_timeout"))) from None
    state = str(raw.get("state", "active"))
    if state not in STATES:
        raise ConfigError(f"state: expected one of {', '.join(STATES)}", src.path, line, state)
    route = raw.get("route")
    return MemberConfig(name, host, port, weight, max_fails, fail_timeout,
                        bool(raw.get("backup", False)), bool(raw.get("down", False)),
                        None if route is None else str(route), state)


def _sticky(src: TomlSource, raw: dict[str, Any], where: str) -> StickyConfig:
    _check_keys(src, raw, _STICKY_KEYS, where)
    c = StickyConfig()
    for k in ("cookie", "path_param", "insert", "samesite", "domain"):
        if k in raw:
            v = raw[k]
            setattr(c, k, str(v) if v not in ("", False) else None)
    for k in ("force", "indirect", "nocache", "httponly", "secure"):
        if k in raw:
            setattr(c, k, bool(raw[k]))
    for alias in ("nofailover", "sticky_session_force"):  # httpd / mod_jk spelling
        if alias in raw:
            c.force = bool(raw[alias])
    if "prefix" in raw:
        c.prefix = str(raw["prefix"])
    if "path" in raw:
        c.path = str(raw["path"])
    if "max_age" in raw:
        c.max_age = _int(src, raw, "max_age", 0, where)
    if c.samesite is not None and c.samesite not in ("Strict", "Lax", "None"):
        raise src.error("samesite: expected Strict, Lax or None", "samesite", where,
                        token=c.samesite)
    return c


def _health(src: TomlSource, raw: dict[str, Any], where: str) -> HealthConfig:
    _check_keys(src, raw, _HEALTH_KEYS, where)
    h = HealthConfig()
    h.interval = _dur(src, raw, "interval", h.interval, where)
    h.timeout = _dur(src, raw, "timeout", h.timeout, where)
    h.slow_start = _dur(src, raw, "slow_start", h.slow_start, where)
    h.rise = _int(src, raw, "rise", h.rise, where, 1)
    h.fall = _int(src, raw, "fall", h.fall, where, 1)
    h.path = str(raw.get("path", h.path))
    if "expect_status" in raw:
        v = raw["expect_status"]
        vals = v if isinstance(v, list) else [v]
        try:
            h.expect_status = [int(x) for x in vals]
        except (TypeError, ValueError):
            raise src.error("expect_status: expected a status or a list of statuses",
                            "expect_status", where, token=v) from None
    return h


def _upstream(src: TomlSource, name: str, raw: Any) -> UpstreamConfig:
    where = f"upstream.{name}"
    _check_keys(src, raw, _UPSTREAM_KEYS, where)
    balance = str(raw.get("balance", "round_robin"))
    if balance == "hash" and raw.get("consistent", False):
        balance = "hash_consistent"
    if balance not in METHODS:
        raise src.error(f"unknown balance method {balance!r} (known: "
                        f"{', '.join(sorted(METHODS))})", "balance", where, token=balance)
    members = [_member(src, name, i, m) for i, m in enumerate(raw.get("members", []))]
    if not members:
        raise src.error(f"upstream {name!r} has no members", "", where)
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise src.error("member names must be unique", "members", where)
    if not METHODS[balance].allows_backup and any(m.backup for m in members):
        raise src.error(f"balancing method {balance!r} does not allow backup members "
                        "(as nginx)", "members", where, token="backup")  # noqa: S106
    hash_key = str(raw.get("hash_key", "$request_uri" if balance.startswith("hash") else ""))
    up = UpstreamConfig(
        name, balance, members,
        connect_timeout=_dur(src, raw, "connect_timeout", 5, where),
        read_timeout=_dur(src, raw, "read_timeout", 60, where),
        send_timeout=_dur(src, raw, "send_timeout", 60, where),
        keepalive=_int(src, raw, "keepalive", 32, where),
        hash_key=hash_key,
        next_upstream_tries=_int(src, raw, "next_upstream_tries", 0, where))
    if "sticky" in raw:
        up.sticky = _sticky(src, raw["sticky"], f"{where}.sticky")
        routes = [m.route or m.name for m in members]
        if len(set(routes)) != len(routes):
            raise src.error("sticky: member routes must be unique", "members", where)
    if "health" in raw:
        up.health = _health(src, raw["health"], f"{where}.health")
    return up


def _error_pages(src: TomlSource, raw: Any) -> dict[int, bytes]:
    if not isinstance(raw, dict):
        raise src.error("error_page: expected a table like { \"502 504\" = \"50x.html\" }",
                        "error_page", "server")
    out: dict[int, bytes] = {}
    base = Path(src.path).parent
    for codes, file in raw.items():
        path = base / str(file)
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise src.error(f"error_page: cannot read {path}: {exc.strerror}", "error_page",
                            "server", token=file) from None
        for c in str(codes).split():
            if not c.isdigit() or not 300 <= int(c) <= 599:
                raise src.error("error_page: expected status codes 300-599", "error_page",
                                "server", token=c)
            out[int(c)] = body
    return out


def load(path: str | Path) -> LbConfig:
    return from_source(TomlSource.load(path))


def from_source(src: TomlSource) -> LbConfig:
    data = src.data
    for k in data:
        if k not in ("server", "admin", "upstream"):
            raise src.error(f"unknown section [{k}]", "", k, token=k)
    raw_ups = data.get("upstream", {})
    if not isinstance(raw_ups, dict) or not raw_ups:
        raise src.error("at least one [upstream.NAME] section is required")
    ups = {name: _upstream(src, name, raw) for name, raw in raw_ups.items()}
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
    for key in ("client_max_body_size", "max_request_line", "max_header_line",
                "max_header_size"):
        if key in rs:
            try:
                setattr(server, key, parse_size(rs[key]))
            except ValueError as exc:
                raise src.error(f"{key}: {exc}", key, "server", token=rs[key]) from None
    for key in ("keepalive_timeout", "client_header_timeout", "client_body_timeout"):
        setattr(server, key, _dur(src, rs, key, getattr(server, key), "server"))
    server.keepalive_requests = _int(src, rs, "keepalive_requests", 1000, "server", 1)
    if "set_headers" in rs:
        if not isinstance(rs["set_headers"], dict):
            raise src.error("set_headers: expected a table", "set_headers", "server")
        server.set_headers = {str(k): str(v) for k, v in rs["set_headers"].items()}
        at = src.line_of("set_headers", "server")
        for k, v in server.set_headers.items():
            try:
                check_name(k)
                compile_value(v)
            except ValueError as exc:
                raise ConfigError(f"set_headers: {exc}", src.path,
                                  src.line_containing(k, at), k) from None
    if "error_page" in rs:
        server.error_pages = _error_pages(src, rs["error_page"])
    server.access_log = str(rs.get("access_log", "off"))
    server.access_log_format = str(rs.get("access_log_format", "combined"))
    if server.access_log_format not in ("combined", "json"):
        raise src.error("access_log_format: expected combined or json", "access_log_format",
                        "server", token=server.access_log_format)
    if server.access_log not in ("off", "-"):
        server.access_log = str(Path(src.path).parent / server.access_log)
    admin = AdminConfig()
    ra = data.get("admin", {})
    _check_keys(src, ra, _ADMIN_KEYS, "admin")
    if "listen" in ra:
        try:
            admin.listen = parse_hostport(str(ra["listen"]))
        except ValueError as exc:
            raise src.error(str(exc), "listen", "admin", token=ra["listen"]) from None
    if "user" in ra or "password" in ra:
        if not ra.get("user") or not ra.get("password"):
            raise src.error("admin: user and password go together", "user", "admin")
        admin.user, admin.password = str(ra["user"]), str(ra["password"])
    if "allow" in ra:
        try:
            admin.allow = [ipaddress.ip_network(str(a), strict=False) for a in ra["allow"]]
        except ValueError as exc:
            raise src.error(f"allow: {exc}", "allow", "admin") from None
    admin.read_only = bool(ra.get("read_only", False))
    return LbConfig(src.path, server, admin, ups)


def check(path: str | Path) -> LbConfig:
    """Load and validate; raises ConfigError."""
    return load(path)


__all__ = ["ConfigError", "HealthConfig", "LbConfig", "MemberConfig", "UpstreamConfig", "check",
           "load"]
