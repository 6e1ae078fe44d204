"""Advert acceptance rules, notify script arguments, the health probe."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path

from pyvrrp.check import main as check_main
from pyvrrp.config import VirtualAddress, VrrpInstance
from pyvrrp.notify import Notifier
from pyvrrp.packet import AUTH_PASS, Advert, pass_auth_data
from pyvrrp.validate import NOT_OURS, reject_reason


def inst(**kw: object) -> VrrpInstance:
    v = VrrpInstance("VI_1", interface="lo", virtual_router_id=51,
                     virtual_ipaddress=[VirtualAddress("10.99.0.88", 24)])
    for k, val in kw.items():
        setattr(v, k, val)
    return v


def adv(**kw: object) -> Advert:
    base: dict[str, object] = dict(version=2, vrid=51, priority=100, addresses=("10.99.0.88",),
                                   advert_int=1.0, auth_type=AUTH_PASS,
                                   auth_data=pass_auth_data("1111"))
    base.update(kw)
    return Advert(**base)  # type: ignore[arg-type]


def test_acceptance_rules() -> None:
    assert reject_reason(adv(), inst(), 255) is None
    assert reject_reason(adv(), inst(), None) is None          # loopback: TTL not visible
    assert reject_reason(adv(), inst(), 64) == "TTL 64 != 255"
    assert reject_reason(adv(vrid=52), inst(), 255) == NOT_OURS
    assert "configured for v3" in str(reject_reason(adv(), inst(version=3), 255))
    assert "advert_int 2 != 1" in str(reject_reason(adv(advert_int=2.0), inst(), 255))
    other = adv(addresses=("10.99.0.89",))
    assert "addresses" in str(reject_reason(other, inst(), 255))
    assert reject_reason(other, inst(), 255, skip_check_adv_addr=True) is None
    assert reject_reason(adv(priority=0, addresses=()), inst(), 255) is None
    v3 = adv(version=3, advert_int=0.5, auth_type=0, auth_data=b"")
    assert reject_reason(v3, inst(version=3, advert_int=0.1), 255) is None  # v3 learns it


def test_notify_scripts_get_keepalived_arguments(tmp_path: Path) -> None:
    out = tmp_path / "calls"
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\necho "$@" >> {out}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)

    async def go() -> None:
        n = Notifier("VI_1", {"MASTER": f"{script} became-master", "BACKUP": ""}, str(script))
        n.fire("BACKUP", 90)
        n.fire("MASTER", 90)
        await n.drain(5)

    asyncio.run(go())
    lines = sorted(out.read_text().splitlines())
    assert lines == ["INSTANCE VI_1 BACKUP 90", "INSTANCE VI_1 MASTER 90", "became-master"]


def test_check_probe() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert check_main([f"127.0.0.1:{port}"]) == 0
    assert check_main([f"127.0.0.1:{port}", "--timeout", "0.2"]) == 1
