"""keepalived.conf parsing: the fixtures and the seed parse; errors name file:line and token."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycommon.config import ConfigError
from pyvrrp import config
from pyvrrp.cli import main

FIX = Path("/work/shared/fixtures/vrrp")
SEED = Path("/work/shared/seeds")


@pytest.mark.skipif(not FIX.exists(), reason="fixtures not present")
def test_fixture_configs_parse() -> None:
    c2 = config.load(FIX / "lb1-v2.conf")
    v = c2.instances[0]
    assert (v.name, v.state, v.interface, v.virtual_router_id, v.priority, v.advert_int,
            v.version) == ("VI_1", "MASTER", "veth0", 51, 100, 1.0, 2)
    assert (v.authentication.auth_type, v.authentication.auth_pass) == ("PASS", "1111")
    assert [a.cidr for a in v.virtual_ipaddress] == ["10.99.0.88/24"]
    assert c2.global_defs.router_id == "LB1" and c2.global_defs.skip_check_adv_addr
    v3 = config.load(FIX / "lb2-v3.conf").instances[0]
    assert (v3.version, v3.advert_int, v3.priority, v3.state) == (3, 0.1, 90, "BACKUP")


FULL = """\
! comment
global_defs {
   router_id LB1        # trailing comment
   notification_email {
     ops@example.com
   }
}
vrrp_script chk_lb {
    script "/usr/bin/curl -sf http://127.0.0.1:8080/-/health"
    interval 2
    weight -20
    rise 3
    fall 2
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 90
    advert_int 1
    nopreempt
    preempt_delay 10
    authentication {
        auth_type HMAC
        auth_pass "long secret"
    }
    unicast_src_ip 127.0.0.12
    unicast_peer {
        127.0.0.11
    }
    virtual_ipaddress {
        127.0.0.88/8 dev lo label lo:vip
    }
    track_script {
        chk_lb weight -30
    }
    track_interface {
        eth0
    }
    notify "/etc/keepalived/notify.sh"
    notify_master /bin/true
}
"""


def test_full_subset(tmp_path: Path) -> None:
    f = tmp_path / "k.conf"
    f.write_text(FULL)
    c = config.load(f)
    s = c.scripts["chk_lb"]
    assert (s.script, s.interval, s.weight, s.rise, s.fall) == (
        "/usr/bin/curl -sf http://127.0.0.1:8080/-/health", 2.0, -20, 3, 2)
    v = c.instance("VI_1")
    assert v.nopreempt and v.preempt_delay == 10
    assert v.authentication.auth_type == "HMAC" and v.authentication.auth_pass == "long secret"
    assert v.unicast_src_ip == "127.0.0.12" and v.unicast_peer == ["127.0.0.11"]
    assert v.virtual_ipaddress[0].dev == "lo" and v.virtual_ipaddress[0].label == "lo:vip"
    assert [(t.name, t.weight) for t in v.track_script] == [("chk_lb", -30)]
    assert [(t.name, t.weight) for t in v.track_interface] == [("eth0", None)]
    assert v.notify == "/etc/keepalived/notify.sh" and v.notify_master == "/bin/true"
    assert any("notification_email" in w for w in c.warnings)


@pytest.mark.parametrize(("text", "line", "message", "token"), [
    ("vrrp_instance V {\n interface eth0\n virtual_router_id 51\n priorty 100\n}\n", 4,
     "unknown keyword 'priorty' in vrrp_instance V (did you mean 'priority'?)", "priorty"),
    ("vrrp_instance V {\n interface eth0\n virtual_router_id 300\n}\n", 3,
     "'virtual_router_id' must be an integer in 1..255", "300"),
    ("vrrp_instance V {\n interface eth0\n virtual_router_id 5\n priority high\n}\n", 4,
     "'priority' must be an integer in 1..255", "high"),
    ("vrrp_instance V {\n interface eth0\n virtual_router_id 5\n advert_int x\n}\n", 4,
     "'advert_int' must be a number", "x"),
    ("vrrp_instance V {\n interface eth0\n virtual_router_id 5\n state LEADER\n}\n", 4,
     "state must be MASTER or BACKUP", "LEADER"),
    ("vrrp_instance V {\n interface eth0\n virtual_router_id 5\n"
     " virtual_ipaddress {\n  10.0.0.300/24\n }\n}\n", 5, "expected an IPv4 address", None),
    ("vrrp_instance V {\n interface eth0\n virtual_router_id 5\n"
     " track_script {\n  nope\n }\n}\n", 5, "track_script 'nope' is not a defined", "nope"),
    ("vrrp_instance V {\n interface eth0\n", 1, "block 'vrrp_instance' is never closed", None),
    ("vrrp_instance V {\n interface eth0\n virtual_router_id 5\n}\n}\n", 5,
     "'}' without a matching '{'", None),
    ("vrrp_instnce V {\n}\n", 1, "unknown keyword 'vrrp_instnce' at the top level", None),
    ("vrrp_instance V {\n virtual_router_id 5\n}\n", 1, "missing interface", None),
])
def test_errors_name_the_line(tmp_path: Path, text: str, line: int, message: str,
                              token: str | None) -> None:
    f = tmp_path / "bad.conf"
    f.write_text(text)
    with pytest.raises(ConfigError) as ei:
        config.load(f)
    e = ei.value
    assert e.file == str(f) and e.line == line, str(e)
    assert message in e.message
    if token:
        assert e.token == token
    assert str(e).startswith(f"{f}:{line}: ")


def test_seed_typo_is_caught_with_a_suggestion(tmp_path: Path) -> None:
    seed = next(iter(SEED.glob("004_*.txt")), None) if SEED.exists() else None
    if seed is None:
        pytest.skip("seeds not present")
    text = seed.read_text()
    start = text.index("global_defs {")
    end = text.index("backup的配置")
    f = tmp_path / "seed.conf"
    f.write_text(text[start:end])
    _, errors = config.check(f)
    assert len(errors) == 1
    assert "unknown keyword 'auto_type' in authentication (did you mean 'auth_type'?)" in \
        str(errors[0])
    fixed = tmp_path / "fixed.conf"
    fixed.write_text(text[start:end].replace("auto_type", "auth_type"))
    assert config.load(fixed).instances[0].virtual_ipaddress[0].address == "192.168.50.88"


def test_cli_config_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.conf"
    good.write_text(FULL)
    assert main(["-t", "-f", str(good)]) == 0
    out = capsys.readouterr()
    assert "ok" in out.out and "warning" in out.err
    bad = tmp_path / "bad.conf"
    bad.write_text(FULL.replace("priority 90", "priority 900").replace("nopreempt", "nopremept"))
    assert main(["-t", "-f", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:19:" in err and f"{bad}:21:" in err
    assert main(["-t", "-f", str(tmp_path / "missing.conf")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_v2_fractional_advert_int_is_rounded_with_a_warning(tmp_path: Path) -> None:
    f = tmp_path / "k.conf"
    f.write_text("vrrp_instance V {\n interface lo\n virtual_router_id 5\n advert_int 0.5\n}\n")
    c = config.load(f)
    assert c.instances[0].advert_int == 1.0 and any("rounded" in w for w in c.warnings)
