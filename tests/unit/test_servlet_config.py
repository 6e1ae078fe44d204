"""Node config and web.toml: typed models, and errors that name file, line and token."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycommon.config import ConfigError
from pyservlet.config import load_node_config
from pyservlet.node import build_node
from pyservlet.webapp import load_descriptor


def write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_full_config_parses(tmp_path: Path) -> None:
    cfg = load_node_config(write(tmp_path, """
[node]
route = "tomcatA"
work_dir = "work"

[[connector]]
listen = "127.0.0.1:0"
keepalive_timeout = 5
max_body_size = "64k"

[[context]]
path = "/"
webapp = "demo"
session_timeout = 1

[context.manager]
type = "standard"
max_active_sessions = 10
save_file = "root.sessions"

[[context]]
path = "/test"
webapp = "seed003"
cookie_secure = true
cookie_same_site = "Strict"

[context.manager]
type = "persistent"
store = "sqlite"
max_idle_swap = 60

[cluster]
anything = "goes to the cluster managers"
"""))
    assert cfg.route == "tomcatA" and cfg.work_dir == tmp_path / "work"
    c = cfg.connectors[0]
    assert (c.host, c.port, c.keepalive_timeout, c.max_body_size) == ("127.0.0.1", 0, 5.0,
                                                                     65536)
    assert [x.path for x in cfg.contexts] == ["/", "/test"]
    assert cfg.contexts[1].manager.type == "persistent" and cfg.cluster["anything"]
    node = build_node(cfg)
    root = next(x for x in node.contexts if x.path == "/")
    test = next(x for x in node.contexts if x.path == "/test")
    assert root.manager.kind == "standard" and root.manager.max_inactive == 60
    assert root.manager.max_active == 10
    assert test.manager.kind == "persistent" and test.cookie.secure
    assert test.cookie.header(__import__("pysession").SetCookie("X")).endswith(
        "Secure; HttpOnly; SameSite=Strict")


@pytest.mark.parametrize("text, line, needle", [
    ("[node]\nroute = 'a b'\n", 2, "route"),
    ("[node]\nrout = 'x'\n", 2, "unknown key 'rout'"),
    ("[[connector]]\nlisten = 'nowhere'\n", 2, "listen"),
    ("[[connector]]\nprotocol = 'spdy'\n", 2, "protocol"),
    ("[[context]]\npath = 'x'\n", 2, "path"),
    ("[[context]]\nwebapp = 'demo'\nsession_timeout = 'long'\n", 3, "session_timeout"),
    ("[[context]]\nwebapp = 'demo'\n[context.manager]\ntype = 'magic'\n", 4,
     "unknown session manager type 'magic'"),
    ("[[context]]\nwebapp = 'demo'\n\n[context.manager]\ntype = 'standard'\n"
     "max_actve_sessions = 3\n", 6, "unknown standard manager option"),
    ("[[context]]\nwebapp = 'demo'\n[context.manager]\nmax_active_sessions = 'many'\n", 4,
     "expected an integer"),
    ("[[context]]\nwebapp='demo'\n[[context]]\nwebapp='seed003'\n[context.manager]\n"
     "type='cookie'\n", 6, "keys"),
    ("[node\n", 1, "invalid TOML"),
])
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        build_node(load_node_config(p))
    assert f"{p}:{line}:" in str(ei.value) and needle in str(ei.value)


def test_webapp_descriptor_errors(tmp_path: Path) -> None:
    (tmp_path / "web.toml").write_text("[webapp]\ncontext_path = '/x'\n\n[[servlet]]\n"
                                       "class = 'nocolon'\nurls = ['/a']\n")
    with pytest.raises(ConfigError, match=r"web.toml:5: class"):
        load_descriptor(tmp_path)
    (tmp_path / "web.toml").write_text("[[servlet]]\nclass = '.m:S'\nurls = ['nope']\n")
    with pytest.raises(ConfigError, match=r"web.toml:3: urls"):
        load_descriptor(tmp_path)


def test_valves_from_the_node_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import json
    import logging

    from pyservlet.api import Request

    cfg = load_node_config(write(tmp_path, """
[[valve]]
class = "pyservlet.valves:AccessLogValve"
init = { format = "json" }
"""))
    node = build_node(cfg)
    with caplog.at_level(logging.INFO, logger="pynode.access"):
        asyncio.run(node.handle(Request("GET", "/api/session?x=1", [])))
    line = json.loads(caplog.records[-1].getMessage())
    assert line["target"] == "/api/session?x=1" and line["status"] == 200
    assert line["session"].endswith(".node1")
    bad = write(tmp_path, '\n[[valve]]\nclass = "pyservlet.valves:Nope"\n', "bad.toml")
    with pytest.raises(ConfigError, match=r"bad.toml:3: class: cannot load"):
        build_node(load_node_config(bad))
    bad2 = write(tmp_path, '[[valve]]\nclass = "pyservlet.valves:AccessLogValve"\n'
                 'init = { format = "xml" }\n', "bad2.toml")
    with pytest.raises(ConfigError, match=r"bad2.toml:2: init: format"):
        build_node(load_node_config(bad2))
