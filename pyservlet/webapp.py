"""Webapps: a Python package or a folder holding a `web.toml` deployment descriptor
(WEB-INF/web.xml's role). Parse → `WebAppSpec` → `deploy` into a Context.

    [webapp]
    display_name = "test"
    context_path = "/test"          # used when the node config gives no path
    distributable = true            # <distributable/>: attributes must pass the type policy
    session_timeout = 30            # minutes (<session-config><session-timeout>)
    static = "static"               # folder served for paths no servlet maps
    welcome_files = ["index.jsp", "index.html"]

    [[servlet]]
    name = "probe"
    class = ".servlets:SessionProbe"   # leading "." = a module of this webapp; else absolute
    urls = ["/api/session"]
    init = { greeting = "hello" }

    [[filter]]
    class = ".filters:Timing"
    urls = ["/*"]

    [[listener]]
    class = ".listeners:Counter"       # session / attribute listener (pysession.events)

Modules of a folder webapp are imported as a private package (`_pynode_webapp_<n>`), so two
webapps may both have a `servlets.py`.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pycommon.config import ConfigError, TomlSource
from pyservlet.api import HttpServlet, ServletConfig
from pyservlet.context import Context
from pyservlet.filters import Filter

T = TypeVar("T")

_WEBAPP_KEYS = {"display_name", "context_path", "distributable", "session_timeout", "static",
                "welcome_files"}
_counter = itertools.count(1)


@dataclass
class ServletSpec:
    name: str
    cls: str
    urls: list[str]
    init: dict[str, Any] = field(default_factory=dict)


@dataclass
class FilterSpec:
    cls: str
    urls: list[str]
    init: dict[str, Any] = field(default_factory=dict)


@dataclass
class WebAppSpec:
    root: Path
    package: str | None
    source: TomlSource
    display_name: str = ""
    context_path: str = "/"
    distributable: bool = False
    session_timeout: int = 30
    static: Path | None = None
    welcome_files: list[str] = field(default_factory=list)
    servlets: list[ServletSpec] = field(default_factory=list)
    filters: list[FilterSpec] = field(default_factory=list)
    listeners: list[str] = field(default_factory=list)


def locate(webapp: str | None, docbase: Path | None) -> tuple[Path, str | None]:
    """(root folder, package name or None) of a webapp given by package or folder."""
    if docbase is not None:
        return docbase, None
    assert webapp is not None
    try:
        spec = importlib.util.find_spec(webapp)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"webapp {webapp!r}: no such package (a built-in name, an "
                          "importable package with web.toml, or use docbase = folder)",
                          "<node>", 0, webapp)
    return Path(next(iter(spec.submodule_search_locations))), webapp


def _urls(src: TomlSource, d: dict[str, Any], table: str, nth: int) -> list[str]:
    urls = d.get("urls", [])
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise src.error("urls: expected a non-empty list of URL patterns", "urls", table, nth)
    for u in urls:
        if not (u.startswith("/") or u.startswith("*.")):
            raise src.error("urls: a pattern starts with '/' or '*.'", "urls", table, nth, u)
    return urls


def _cls(src: TomlSource, d: dict[str, Any], table: str, nth: int) -> str:
    c = d.get("class")
    if not isinstance(c, str) or ":" not in c:
        raise src.error("class: expected \"module:Name\" (\".module:Name\" inside the webapp)",
                        "class", table, nth, c)
    return c


def load_descriptor(root: Path, package: str | None = None) -> WebAppSpec:
    src = TomlSource.load(root / "web.toml")
    d = src.data
    w = d.get("webapp", {})
    for k in w:
        if k not in _WEBAPP_KEYS:
            raise src.error(f"unknown key {k!r} in [webapp]", k, "webapp", 0, k)
    spec = WebAppSpec(root, package, src)
    spec.display_name = str(w.get("display_name", root.name))
    cp = w.get("context_path", "/")
    if not isinstance(cp, str) or (cp and not cp.startswith("/")):
        raise src.error("context_path: must start with '/'", "context_path", "webapp", 0, cp)
    spec.context_path = "/" if cp in ("", "/") else "/" + cp.strip("/")
    dist = w.get("distributable", False)
    if not isinstance(dist, bool):
        raise src.error("distributable: expected true or false", "distributable", "webapp", 0,
                        dist)
    spec.distributable = dist
    st = w.get("session_timeout", 30)
    if isinstance(st, bool) or not isinstance(st, int):
        raise src.error("session_timeout: expected minutes (an integer)", "session_timeout",
                        "webapp", 0, st)
    spec.session_timeout = st
    if "static" in w:
        spec.static = root / str(w["static"])
        if not spec.static.is_dir():
            raise src.error("static: no such folder", "static", "webapp", 0, w["static"])
    spec.welcome_files = [str(x) for x in w.get("welcome_files", [])]
    for i, s in enumerate(d.get("servlet", [])):
        spec.servlets.append(ServletSpec(str(s.get("name", f"servlet{i}")),
                                         _cls(src, s, "servlet", i),
                                         _urls(src, s, "servlet", i), dict(s.get("init", {}))))
    for i, f in enumerate(d.get("filter", [])):
        spec.filters.append(FilterSpec(_cls(src, f, "filter", i), _urls(src, f, "filter", i),
                                       dict(f.get("init", {}))))
    for i, lst in enumerate(d.get("listener", [])):
        spec.listeners.append(_cls(src, lst, "listener", i))
    return spec


def _package_for(spec: WebAppSpec) -> str:
    """The importable package name the webapp's own modules live in."""
    if spec.package is not None:
        return spec.package
    name = f"_pynode_webapp_{next(_counter)}"
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(spec.root)]
    sys.modules[name] = pkg
    spec.package = name
    return name


def resolve(spec: WebAppSpec, ref: str, table: str, nth: int) -> Any:
    mod_name, _, attr = ref.partition(":")
    if mod_name.startswith("."):
        mod_name = _package_for(spec) + mod_name
    try:
        mod = importlib.import_module(mod_name)
        obj: Any = mod
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise spec.source.error(f"class: cannot load {ref!r}: {exc}", "class", table, nth,
                                ref) from None
    return obj


def _instance(spec: WebAppSpec, ref: str, table: str, nth: int, base: type[T]) -> T:
    """An instance of the class `ref` names, which must subclass `base` (file:line error)."""
    obj = resolve(spec, ref, table, nth)()
    if not isinstance(obj, base):
        raise spec.source.error(f"class: a {table} must subclass {base.__module__}."
                                f"{base.__qualname__}", "class", table, nth, ref)
    return obj


def deploy(spec: WebAppSpec, ctx: Context) -> Context:
    """Instantiate and initialise servlets, filters and listeners into `ctx`."""
    for i, lst in enumerate(spec.listeners):
        ctx.manager.events.add(resolve(spec, lst, "listener", i)())
    for i, fs in enumerate(spec.filters):
        f = _instance(spec, fs.cls, "filter", i, Filter)
        f.init(fs.init, ctx)
        ctx.add_filter(fs.urls, f)
    for i, ss in enumerate(spec.servlets):
        servlet = _instance(spec, ss.cls, "servlet", i, HttpServlet)
        servlet.init(ServletConfig(ss.name, ss.init, ctx))
        for u in ss.urls:
            ctx.add_servlet(u, servlet)
    if spec.static is not None:
        ctx.set_static(spec.static)
    ctx.welcome_files = spec.welcome_files
    ctx.name = spec.display_name
    return ctx
