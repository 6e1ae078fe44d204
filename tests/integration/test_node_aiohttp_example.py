"""examples/aiohttp_app.py runs as a real process: pysession as aiohttp middleware, with the
in-memory manager and with the whole session in an encrypted cookie."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import pytest

from pylab.client import Browser
from pylab.topology import ProcessSpec
from tests.conftest import StartLab, make_lab

pytestmark = pytest.mark.integration

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "aiohttp_app.py")


def example(*extra: str) -> ProcessSpec:
    return ProcessSpec("app", "command", [sys.executable, EXAMPLE, "--port", "{port}", *extra],
                       ready="tcp")


@pytest.mark.parametrize("mode", ["memory", "cookie"])
def test_aiohttp_example(start_lab: StartLab, mode: str) -> None:
    extra = ("--cookie-key", base64.b64encode(os.urandom(32)).decode()) if mode == "cookie" \
        else ()
    sup = start_lab(make_lab(f"aiohttp-{mode}", [example(*extra)]))
    url = lambda p: sup.url("app", p)  # noqa: E731
    b = Browser()
    first = b.get(url("/count")).json()
    assert first["count"] == 1 and first["new"] is True
    cookie_name = "PYSESSION" if mode == "cookie" else "JSESSIONID"
    assert cookie_name in b.cookies
    r = b.get(url("/count"))
    assert r.json()["count"] == 2 and r.json()["session_id"] == first["session_id"]
    set_cookie = r.header("Set-Cookie")
    if mode == "memory":
        assert set_cookie is None                       # known session: no new cookie
    # login changes the id (fixation protection) and keeps the attributes
    login = b.post(url("/login?user=alice"), b"").json()
    assert login["old_id"] == first["session_id"] and login["session_id"] != login["old_id"]
    after = b.get(url("/count")).json()
    assert (after["count"], after["user"], after["session_id"]) == (3, "alice",
                                                                    login["session_id"])
    if mode == "memory":
        # the pre-login id is dead: presenting it gives a fresh session with a new id
        attacker = Browser()
        attacker.cookies["JSESSIONID"] = first["session_id"]
        stolen = attacker.get(url("/count")).json()
        assert stolen["new"] is True and stolen["session_id"] != first["session_id"]
    # cookie attributes
    fresh = Browser().get(url("/count")).header("Set-Cookie") or ""
    assert "HttpOnly" in fresh and "Path=/" in fresh and "SameSite=Lax" in fresh
    # HTTPException path (400) still commits and logout ends the session
    assert b.post(url("/login"), b"").status == 400
    assert b.post(url("/logout"), b"").json() == {"logged_out": True}
    assert b.get(url("/count")).json()["count"] == 1
