"""The mypyc-compiled hot path (pylb.compiled) behaves exactly like the source.

One build per module (~20 s of compiling): the byte-for-byte rewrite model, the balancing
sequences and the codec run again in a subprocess that imports the compiled modules, and a
real pylb started from the build proxies to a real nginx member. A build from other sources
is refused. Skipped where mypyc or a C compiler is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pylb.compiled import ENV, CompiledError, build
from tests.integration.test_lb_support import (
    NGINX,
    free_ports,
    get,
    make_lab,
    nginx_spec,
    pylb_spec,
)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                                 reason="no C compiler"),
              pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed")]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mypyc")
    try:
        return build(tmp_path_factory.mktemp("mypyc"))
    except CompiledError as exc:  # pragma: no cover - a broken toolchain
        pytest.fail(str(exc))


def test_unit_suites_pass_against_the_compiled_modules(compiled: Path) -> None:
    code = textwrap.dedent("""
        import sys
        import pylb  # activates the build before anything imports pycommon
        import pylb.proxy, pycommon.http
        assert pylb.proxy.__file__.endswith(".so"), pylb.proxy.__file__
        assert pycommon.http.__file__.endswith(".so"), pycommon.http.__file__
        import pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                              "tests/unit/test_lb_rewrite_model.py",
                              "tests/unit/test_lb_balancing.py",
                              "tests/unit/test_lb_sticky.py",
                              "tests/unit/test_lb_keepalive_cache.py",
                              "tests/unit/test_http_codec.py"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, **{ENV: str(compiled)}))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-500:]


def test_a_compiled_pylb_proxies(compiled: Path, start_lab) -> None:
    (member,) = free_ports(1)
    conf = (f'  server {{ listen 127.0.0.1:{member}; location / {{ return 200 '
            '"host=$http_host|xff=$http_x_forwarded_for|uri=$request_uri"; } }\n'
            "  server { listen 127.0.0.1:{port}; return 200; }\n")
    toml = ('[server]\nlisten = ["127.0.0.1:{port}"]\n'
            f'[upstream.app]\nmembers = [ {{ address = "127.0.0.1:{member}" }} ]\n')
    lb = pylb_spec("lb", toml, after=["nginx"])
    lb.env = {ENV: str(compiled)}
    sup = start_lab(make_lab("lb-compiled", [nginx_spec("nginx", conf), lb]))
    log = Path(sup.run_dir, "logs", "lb.log").read_text()
    assert "compiled=mypyc" in log, log  # the READY line says what runs
    st, _, body = get(sup.address("lb"), "/a?b=1", headers={"Host": "Shop.Example:81",
                                                             "X-Forwarded-For": "10.0.0.1"})
    assert (st, body) == (200, b"host=shop.example|xff=10.0.0.1, 127.0.0.1|uri=/a?b=1")


def test_a_stale_build_is_refused(compiled: Path, tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    shutil.copytree(compiled, stale)
    (stale / "STAMP").write_text("0000000000000000\n")
    proc = subprocess.run([sys.executable, "-m", "pylb", "check", "-c", "x.toml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **{ENV: str(stale)}))
    assert proc.returncode == 2
    assert "built from other sources" in proc.stderr and "pylb compile" in proc.stderr
