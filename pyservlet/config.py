"""The node config (`pynode --config node.toml`): parsed into a typed model, errors as
`file:line: message (near 'token')`.

    [node]
    route = "node1"                 # jvmRoute; --route overrides
    work_dir = "work"               # relative to this file; save files, file stores

    [[connector]]
    listen = "127.0.0.1:8081"       # --port overrides the first connector's port
    protocol = "http"               # "ajp" later
    keepalive_timeout = 20          # seconds (Tomcat connectionTimeout)
    max_body_size = "2m"

    [[context]]
    path = "/"                      # default: the webapp's own context_path
    webapp = "demo"                 # built-in name, a Python package with web.toml, or
    # docbase = "webapps/test"      # a folder with web.toml (relative to this file)
    distributable = true            # overrides web.toml
    session_timeout = 30            # minutes; overrides web.toml
    cookie_secure = false
    cookie_same_site = "Lax"        # Strict | Lax | None
    [context.manager]               # one manager per context; see docs/sessions.md
    type = "standard"
    max_active_sessions = -1

    [[valve]]                       # node-wide filters (Tomcat's engine valves)
    class = "pyservlet.valves:AccessLogValve"
    init = { format = "json" }

    [cluster]                       # raw table handed to cluster managers (issue 5)

Without a config file pynode serves the built-in `demo` webapp at `/` and `seed003` at
`/test` with a StandardManager each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycommon.config import ConfigError, TomlSource, parse_hostport
from pysession.options import Options

BUILTIN_WEBAPPS = {
    "demo": "pyservlet.webapps.demo",
    "seed003": "pyservlet.webapps.seed003",
}

_NODE_KEYS = {"route", "work_dir"}
_CONNECTOR_KEYS = {"listen", "protocol", "keepalive_timeout", "max_body_size"}
_CONTEXT_KEYS = {"path", "webapp", "docbase", "distributable", "session_timeout",
                 "cookie_name", "cookie_secure", "cookie_same_site", "cookie_http_only",
                 "manager"}
_TOP_KEYS = {"node", "connector", "context", "cluster", "valve"}


@dataclass
class ValveConfig:
    cls: str
    init: dict[str, Any]
    nth: int = 0


@dataclass
class ConnectorConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    protocol: str = "http"
    keepalive_timeout: float = 20.0
    max_body_size: int = 2 * 1024 * 1024


@dataclass
class ContextConfig:
    webapp: str | None = "pyservlet.webapps.demo"  # package name (built-ins resolved)
    docbase: Path | None = None          # or a folder
    path: str | None = None              # None = the webapp's own context_path
    distributable: bool | None = None    # None = as web.toml says
    session_timeout: int | None = None   # minutes; None = as web.toml says
    cookie_name: str = "JSESSIONID"
    cookie_secure: bool = False
    cookie_same_site: str | None = None
    cookie_http_only: bool = True
    manager: Options = field(default_factory=lambda: Options({}))


@dataclass
class NodeConfig:
    route: str = "node1"
    work_dir: Path = field(default_factory=lambda: Path("."))
    connectors: list[ConnectorConfig] = field(default_factory=lambda: [ConnectorConfig()])
    contexts: list[ContextConfig] = field(default_factory=list)
    cluster: dict[str, Any] = field(default_factory=dict)
    valves: list[ValveConfig] = field(default_factory=list)
    source: TomlSource | None = None

    @classmethod
    def default(cls, route: str = "node1") -> NodeConfig:
        return cls(route=route,
                   contexts=[ContextConfig(BUILTIN_WEBAPPS["demo"], path="/"),
                             ContextConfig(BUILTIN_WEBAPPS["seed003"], path="/test")])


def _size(src: TomlSource, v: Any, key: str, table: str, nth: int) -> int:
    return Options({key: v}, src, table, nth).size(key, 0)


def _check_keys(src: TomlSource, data: dict[str, Any], allowed: set[str], table: str | None,
                nth: int = 0) -> None:
    for k in data:
        if k not in allowed:
            where = f"[{table}]" if table else "top level"
            raise src.error(f"unknown key {k!r} in {where}", k, table, nth, k)


def parse_node_config(src: TomlSource) -> NodeConfig:
    d = src.data
    _check_keys(src, d, _TOP_KEYS, None)
    base = Path(src.path).resolve().parent
    cfg = NodeConfig(contexts=[], source=src)
    node = d.get("node", {})
    if not isinstance(node, dict):
        raise src.error("[node] must be a table", "node")
    _check_keys(src, node, _NODE_KEYS, "node")
    route = node.get("route", "node1")
    if not isinstance(route, str) or not route.replace("_", "").replace("-", "").isalnum():
        raise src.error("route: letters, digits, '-' and '_' only", "route", "node", 0, route)
    cfg.route = route
    wd = node.get("work_dir", ".")
    if not isinstance(wd, str):
        raise src.error("work_dir: expected a path string", "work_dir", "node", 0, wd)
    cfg.work_dir = base / wd

    conns = d.get("connector", [])
    if not isinstance(conns, list):
        raise src.error("use [[connector]] (an array of tables)", "connector")
    cfg.connectors = []
    for i, c in enumerate(conns):
        _check_keys(src, c, _CONNECTOR_KEYS, "connector", i)
        cc = ConnectorConfig()
        try:
            cc.host, cc.port = parse_hostport(str(c.get("listen", "127.0.0.1:8081")))
        except ValueError as exc:
            raise src.error(f"listen: {exc}", "listen", "connector", i,
                            c.get("listen")) from None
        cc.protocol = c.get("protocol", "http")
        if cc.protocol != "http":
            raise src.error("protocol: only \"http\" is supported so far", "protocol",
                            "connector", i, cc.protocol)
        ka = c.get("keepalive_timeout", 20)
        if isinstance(ka, bool) or not isinstance(ka, int | float) or ka < 0:
            raise src.error("keepalive_timeout: expected seconds >= 0", "keepalive_timeout",
                            "connector", i, ka)
        cc.keepalive_timeout = float(ka)
        if "max_body_size" in c:
            cc.max_body_size = _size(src, c["max_body_size"], "max_body_size", "connector", i)
        cfg.connectors.append(cc)
    if not cfg.connectors:
        cfg.connectors.append(ConnectorConfig())

    ctxs = d.get("context", [])
    if not isinstance(ctxs, list):
        raise src.error("use [[context]] (an array of tables)", "context")
    seen: set[str] = set()
    for i, c in enumerate(ctxs):
        _check_keys(src, c, _CONTEXT_KEYS, "context", i)
        cx = ContextConfig(webapp=None)
        if "docbase" in c:
            if "webapp" in c:
                raise src.error("give either webapp or docbase, not both", "docbase",
                                "context", i)
            cx.docbase = base / str(c["docbase"])
            if not (cx.docbase / "web.toml").is_file():
                raise src.error("docbase: no web.toml in that folder", "docbase", "context",
                                i, c["docbase"])
        else:
            w = c.get("webapp", "demo")
            if not isinstance(w, str):
                raise src.error("webapp: expected a name", "webapp", "context", i, w)
            cx.webapp = BUILTIN_WEBAPPS.get(w, w)
        if "path" in c:
            p = c["path"]
            if not isinstance(p, str) or (p and not p.startswith("/")):
                raise src.error("path: must start with '/' (or be \"\" for the root)",
                                "path", "context", i, p)
            cx.path = "/" if p in ("", "/") else "/" + p.strip("/")
            if cx.path in seen:
                raise src.error(f"context path {cx.path} is used twice", "path", "context", i,
                                p)
            seen.add(cx.path)
        if "distributable" in c:
            if not isinstance(c["distributable"], bool):
                raise src.error("distributable: expected true or false", "distributable",
                                "context", i, c["distributable"])
            cx.distributable = c["distributable"]
        if "session_timeout" in c:
            st = c["session_timeout"]
            if isinstance(st, bool) or not isinstance(st, int):
                raise src.error("session_timeout: expected minutes (an integer)",
                                "session_timeout", "context", i, st)
            cx.session_timeout = st
        cx.cookie_name = str(c.get("cookie_name", "JSESSIONID"))
        for key in ("cookie_secure", "cookie_http_only"):
            if key in c and not isinstance(c[key], bool):
                raise src.error(f"{key}: expected true or false", key, "context", i, c[key])
        cx.cookie_secure = c.get("cookie_secure", False)
        cx.cookie_http_only = c.get("cookie_http_only", True)
        ss = c.get("cookie_same_site")
        if ss is not None and ss not in ("Strict", "Lax", "None"):
            raise src.error("cookie_same_site: expected Strict, Lax or None",
                            "cookie_same_site", "context", i, ss)
        cx.cookie_same_site = ss
        mgr = c.get("manager", {})
        if not isinstance(mgr, dict):
            raise src.error("manager: expected a table [context.manager]", "manager",
                            "context", i)
        cx.manager = Options(mgr, src, "context.manager", _manager_nth(src, i))
        cfg.contexts.append(cx)
    if not cfg.contexts:
        cfg.contexts = NodeConfig.default(cfg.route).contexts

    valves = d.get("valve", [])
    if not isinstance(valves, list):
        raise src.error("use [[valve]] (an array of tables)", "valve")
    for i, v in enumerate(valves):
        _check_keys(src, v, {"class", "init"}, "valve", i)
        cls = v.get("class")
        if not isinstance(cls, str) or ":" not in cls:
            raise src.error("class: expected \"module:Class\"", "class", "valve", i, cls)
        init = v.get("init", {})
        if not isinstance(init, dict):
            raise src.error("init: expected a table", "init", "valve", i)
        cfg.valves.append(ValveConfig(cls, init, i))

    cluster = d.get("cluster", {})
    if not isinstance(cluster, dict):
        raise src.error("[cluster] must be a table", "cluster")
    cfg.cluster = cluster
    return cfg


def _manager_nth(src: TomlSource, context_index: int) -> int:
    """Which `[context.manager]` header belongs to the `context_index`-th context."""
    nth = 0
    for i, c in enumerate(src.data.get("context", [])):
        if i == context_index:
            return nth
        if isinstance(c, dict) and isinstance(c.get("manager"), dict) and c["manager"]:
            nth += 1
    return nth


def load_node_config(path: str | Path) -> NodeConfig:
    """Parse and validate; raises ConfigError."""
    src = TomlSource.load(path)
    try:
        return parse_node_config(src)
    except ConfigError:
        raise
    except (TypeError, AttributeError) as exc:
        raise ConfigError(f"unexpected structure: {exc}", src.path) from None
