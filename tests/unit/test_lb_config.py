"""pylb config model: defaults, errors naming file/line/token, and the access log formats."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pycommon.config import ConfigError, TomlSource
from pycommon.http import RequestHead, RequestParser
from pylb.access_log import AccessLog
from pylb.config import LbConfig, from_source


def parse(text: str) -> LbConfig:
    return from_source(TomlSource.parse(text, "lb.toml"))


def test_defaults_are_the_seeds_nginx() -> None:
    cfg = parse('[upstream.a]\nmembers = [ { address = "127.0.0.1:1" } ]\n')
    assert cfg.server.set_headers == {"Host": "$host", "X-Real-IP": "$remote_addr",
                                      "X-Forwarded-For": "$proxy_add_x_forwarded_for"}
    m = cfg.upstreams["a"].members[0]
    assert (m.weight, m.max_fails, m.fail_timeout) == (1, 1, 10.0)
    assert cfg.server.client_max_body_size == 1024 * 1024


@pytest.mark.parametrize(("text", "where"), [
    ('[upstream.a]\nbalance = "ip_hash"\nmembers = [\n { address = "h:1" },\n'
     ' { address = "h:2", backup = true },\n]\n', "lb.toml:3: balancing method 'ip_hash'"),
    ('[upstream.a]\nmembers = [\n { address = "h:1", weigth = 2 },\n]\n',
     "lb.toml:3: unknown member key 'weigth'"),
    ('[upstream.a]\nmembers = [ { address = "h:1", state = "sleepy" } ]\n', "lb.toml:2: state"),
    ('[upstream.a]\nbalance = "fastest"\nmembers = [ { address = "h:1" } ]\n',
     "lb.toml:2: unknown balance method 'fastest'"),
    ('[upstream.a]\nmembers = [ { address = "h:1" } ]\n[upstream.a.sticky]\nsamesite = "x"\n',
     "lb.toml:4: samesite"),
    ('[server]\nclient_max_body_size = "lots"\n[upstream.a]\nmembers = [ { address = "h:1" } ]\n',
     "lb.toml:2: client_max_body_size"),
    ('[server]\n[server.set_headers]\nHost = "$host"\nX-Who = "$remote_user"\n'
     '[upstream.a]\nmembers = [ { address = "h:1" } ]\n',
     "lb.toml:4: set_headers: unknown variable $remote_user"),
    ('[server]\nset_headers = { Content-Length = "9" }\n'
     '[upstream.a]\nmembers = [ { address = "h:1" } ]\n',
     "lb.toml:2: set_headers: Content-Length cannot be set"),
])
def test_errors_name_file_line_and_token(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value).startswith(where), str(err.value)


def test_hash_consistent_and_sticky_and_health() -> None:
    cfg = parse('[upstream.a]\nbalance = "hash"\nconsistent = true\nhash_key = "$cookie_u"\n'
                'members = [ { address = "h:1" }, { address = "h:2" } ]\n'
                '[upstream.a.health]\ninterval = "500ms"\nexpect_status = [200, 204]\n')
    up = cfg.upstreams["a"]
    assert up.balance == "hash_consistent" and up.hash_key == "$cookie_u"
    assert up.health is not None and up.health.interval == 0.5
    assert up.health.expect_status == [200, 204]


class _Client:
    peer = "10.0.0.7"


def _head() -> RequestHead:
    ev = RequestParser().feed(b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: ua\r\n\r\n")[0]
    assert isinstance(ev, RequestHead)
    return ev


@pytest.mark.parametrize("fmt", ["combined", "json"])
def test_access_log_formats(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "access.log"

    async def go() -> None:
        log = AccessLog(str(path), fmt)
        log.log(_Client(), _head(), 200, 12, asyncio.get_running_loop().time(),  # type: ignore[arg-type]
                None)
        log.close()

    asyncio.run(go())
    line = path.read_text().strip()
    if fmt == "json":
        rec = json.loads(line)
        assert (rec["remote_addr"], rec["status"], rec["uri"], rec["user_agent"]) == \
            ("10.0.0.7", 200, "/x?y=1", "ua")
    else:
        assert line.startswith("10.0.0.7 - - [")
        assert line.endswith('"GET /x?y=1 HTTP/1.1" 200 12 "-" "ua"')


def test_force_aliases_of_httpd_and_mod_jk() -> None:
    for key in ("force", "nofailover", "sticky_session_force"):
        cfg = parse(f'[upstream.a]\nmembers = [ {{ address = "h:1" }} ]\n'
                    f'[upstream.a.sticky]\n{key} = true\n')
        sticky = cfg.upstreams["a"].sticky
        assert sticky is not None and sticky.force
