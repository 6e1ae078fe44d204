"""pyvrrp in real mode (IP protocol 112, `ip addr`, gratuitous ARP) inside network namespaces
this test creates, and against the real keepalived in both roles.

Topology (pyvrrp.netns): namespaces -a (10.99.0.11) and -b (10.99.0.12) on a bridge in -c
(10.99.0.1, the "client"). VIP 10.99.0.88/24, VRID 51. The keepalived configs are the ones the
fixture captures were made with (../shared/fixtures/vrrp/lb*-v*.conf); pyvrrp runs the same
files, which is the point: one keepalived.conf, either daemon.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pylab.supervisor import Supervisor
from pylab.topology import ProcessSpec
from pyvrrp.netns import NetnsLab, keepalived_argv, unavailable_reason
from tests.conftest import StartLab, make_lab

pytestmark = [pytest.mark.integration, pytest.mark.interop]

_reason = unavailable_reason()
if _reason:
    pytestmark.append(pytest.mark.skip(reason=_reason))

VIP = "10.99.0.88"


def conf(router: str, state: str, prio: int, version: int) -> str:
    """The fixture configs (lb1/lb2, v2/v3), as keepalived 2.2.7 ran them."""
    auth = ("    authentication {\n        auth_type PASS\n        auth_pass 1111\n    }\n"
            if version == 2 else "")
    return (f"global_defs {{\n   router_id {router}\n   vrrp_skip_check_adv_addr\n"
            + ("   vrrp_version 3\n" if version == 3 else "") + "}\n\n"
            f"vrrp_instance VI_1 {{\n    state {state}\n    interface veth0\n"
            f"    virtual_router_id 51\n    priority {prio}\n"
            f"    advert_int {1 if version == 2 else 0.1}\n{auth}"
            f"    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n")


LB1 = {2: conf("LB1", "MASTER", 100, 2), 3: conf("LB1", "MASTER", 100, 3)}
LB2 = {2: conf("LB2", "BACKUP", 90, 2), 3: conf("LB2", "BACKUP", 90, 3)}


@pytest.fixture
def netlab() -> Iterator[NetnsLab]:
    with NetnsLab() as lab:
        yield lab


def pyvrrp_spec(lab: NetnsLab, member: str, text: str) -> ProcessSpec:
    return ProcessSpec(
        name=f"pyvrrp-{member}", kind="command", ready="line",
        args=lab.argv(member, [sys.executable, "-m", "pyvrrp", "--transport", "real",
                               "-f", "{file:k.conf}", "--log-level", "debug"]),
        files={"k.conf": text})


def keepalived_spec(lab: NetnsLab, member: str, text: str, run_dir: Path) -> ProcessSpec:
    return ProcessSpec(name=f"keepalived-{member}", kind="command", ready="none",
                       args=keepalived_argv(lab, member, "{file:k.conf}", run_dir),
                       files={"k.conf": text})


def wait(cond: Callable[[], bool], limit: float, what: str, sup: Supervisor | None = None
         ) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.01)
    tails = "\n".join(sup.tail(n, 25) for n in sup.procs) if sup else ""
    raise AssertionError(f"not within {limit}s: {what}\n{tails}")


def holder(lab: NetnsLab) -> str:
    return "".join(m for m in lab.members if lab.has_address(m, VIP))


def touch_vip(lab: NetnsLab) -> None:
    """A TCP attempt from the client namespace, so its ARP cache holds the VIP's MAC."""
    lab.run("c", [sys.executable, "-c", "import socket\ntry:\n socket.create_connection("
                  f"('{VIP}', 9), 0.5)\nexcept OSError: pass"])


def send_advert(lab: NetnsLab, prio: int, ttl: int, member: str = "a") -> None:
    """A crafted v3 advert from `member`'s namespace, with a chosen TTL."""
    src = lab.address(member)
    code = ("import socket\nfrom pyvrrp.packet import Advert\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)\n"
            f"s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, {ttl})\n"
            f"s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton('{src}'))\n"
            f"s.bind(('{src}', 0))\n"
            f"a = Advert(3, 51, {prio}, ('{VIP}',), 0.1)\n"
            f"for _ in range(3):\n    s.sendto(a.encode('{src}', '224.0.0.18'), "
            "('224.0.0.18', 0))\n")
    out = lab.run(member, [sys.executable, "-c", code])
    assert "Error" not in out, out


def test_real_mode_takeover_garp_and_ttl_check(start_lab: StartLab, netlab: NetnsLab) -> None:
    sup = start_lab(make_lab("vrrp-real", [pyvrrp_spec(netlab, "a", LB1[3]),
                                           pyvrrp_spec(netlab, "b", LB2[3])]))
    wait(lambda: holder(netlab) == "a", 3, "a (priority 100) holds the VIP alone", sup)
    touch_vip(netlab)
    assert netlab.neighbour_mac(VIP) == netlab.mac("a")

    t0 = time.monotonic()
    sup.stop("pyvrrp-a")                                  # priority 0, `ip addr del`
    took = wait(lambda: holder(netlab) == "b", 2, "b takes the VIP", sup)
    print(f"\nreal v3 0.1 s graceful: b holds the VIP {time.monotonic() - t0:.3f} s after "
          f"SIGTERM ({took:.3f} s after stop() returned)")
    wait(lambda: netlab.neighbour_mac(VIP) == netlab.mac("b"), 7,
         "the client's ARP cache follows (gratuitous ARP)", sup)

    # a's daemon is gone; its namespace now plays a rogue router
    send_advert(netlab, 254, ttl=64)                      # wrong TTL: dropped, logged once
    wait(lambda: "TTL 64 != 255" in sup.tail("pyvrrp-b", 80), 2, "TTL check logged", sup)
    assert holder(netlab) == "b"
    send_advert(netlab, 254, ttl=255)                     # the same advert, valid: b yields
    wait(lambda: holder(netlab) == "", 2, "b yields to the priority-254 advert", sup)


needs_keepalived = pytest.mark.skipif(shutil.which("keepalived") is None,
                                      reason="keepalived is not installed")


@needs_keepalived
def test_keepalived_master_pyvrrp_backup_v2_pass(start_lab: StartLab, netlab: NetnsLab,
                                                 tmp_path: Path) -> None:
    sup = start_lab(make_lab("vrrp-ka1", [keepalived_spec(netlab, "a", LB1[2], tmp_path / "ka")]))
    wait(lambda: holder(netlab) == "a", 6, "keepalived (priority 100) becomes master", sup)
    sup2 = start_lab(make_lab("vrrp-py1", [pyvrrp_spec(netlab, "b", LB2[2])]))
    wait(lambda: "Entering BACKUP STATE" in sup2.tail("pyvrrp-b", 50), 3, "pyvrrp backup", sup2)
    time.sleep(1.5 * 3.65)  # bounded: longer than pyvrrp's Master_Down — it must not take over
    assert holder(netlab) == "a", sup2.tail("pyvrrp-b", 30)

    t0 = time.monotonic()
    sup.stop("keepalived-a")                              # keepalived sends priority 0
    took = wait(lambda: holder(netlab) == "b", 3, "pyvrrp takes over from keepalived", sup2)
    print(f"\nkeepalived → pyvrrp (v2 PASS) graceful: {took:.3f} s (skew 0.648 s)")
    assert time.monotonic() - t0 < 0.648 + 0.5

    sup.start("keepalived-a")                             # keepalived preempts back (100 > 90)
    wait(lambda: holder(netlab) == "a", 6, "keepalived preempts pyvrrp", sup2)
    assert "Entering BACKUP STATE (higher priority advert from 10.99.0.11 (100))" in \
        sup2.tail("pyvrrp-b", 50)


@needs_keepalived
def test_pyvrrp_master_keepalived_backup_v3(start_lab: StartLab, netlab: NetnsLab,
                                            tmp_path: Path) -> None:
    sup = start_lab(make_lab("vrrp-py2", [pyvrrp_spec(netlab, "a", LB1[3])]))
    wait(lambda: holder(netlab) == "a", 2, "pyvrrp (priority 100) becomes master", sup)
    sup2 = start_lab(make_lab("vrrp-ka2", [keepalived_spec(netlab, "b", LB2[3],
                                                           tmp_path / "kb")]))
    wait(lambda: "Entering BACKUP STATE" in sup2.tail("keepalived-b", 50), 3,
         "keepalived backup", sup2)
    time.sleep(1.0)  # bounded: ~3 times keepalived's Master_Down (0.365 s) — it must stay backup
    assert holder(netlab) == "a", sup2.tail("keepalived-b", 30)
    assert "Entering MASTER" not in sup2.tail("keepalived-b", 50)

    t0 = time.monotonic()
    sup.stop("pyvrrp-a")                                  # pyvrrp sends priority 0
    took = wait(lambda: holder(netlab) == "b", 2, "keepalived takes over from pyvrrp", sup2)
    print(f"\npyvrrp → keepalived (v3 0.1 s) graceful: {took:.3f} s (skew 0.065 s)")
    assert time.monotonic() - t0 < 0.065 + 0.5

    sup.start("pyvrrp-a")                                 # pyvrrp preempts back
    wait(lambda: holder(netlab) == "a", 3, "pyvrrp preempts keepalived", sup2)
    wait(lambda: "Entering BACKUP STATE" in sup2.tail("keepalived-b", 8), 2,
         "keepalived back to BACKUP", sup2)


def test_real_mode_tracked_interface_fault_and_crash(start_lab: StartLab,
                                                     netlab: NetnsLab) -> None:
    """track_interface (weight 0): link down → FAULT (priority 0 sent) → b takes over;
    link up → a preempts back; kill -9 of a → b takes over after Master_Down and its
    gratuitous ARP moves the client even though a's kernel still has the address."""
    # an uplink to track: a veth pair inside a (no `dummy` module on every kernel)
    netlab.run("a", ["ip", "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy1"])
    netlab.run("a", ["ip", "link", "set", "dummy1", "up"])
    netlab.run("a", ["ip", "link", "set", "dummy0", "up"])
    tracked = LB1[3].replace("    virtual_ipaddress", "    track_interface {\n        dummy0\n"
                             "    }\n    virtual_ipaddress")
    sup = start_lab(make_lab("vrrp-track", [pyvrrp_spec(netlab, "a", tracked),
                                            pyvrrp_spec(netlab, "b", LB2[3])]))
    wait(lambda: holder(netlab) == "a", 3, "a holds the VIP", sup)
    touch_vip(netlab)

    netlab.run("a", ["ip", "link", "set", "dummy0", "down"])
    wait(lambda: holder(netlab) == "b", 1.5, "dummy0 down: a goes FAULT, b takes over", sup)
    assert "Entering FAULT STATE (tracked interface dummy0 down)" in sup.tail("pyvrrp-a", 20)

    netlab.run("a", ["ip", "link", "set", "dummy0", "up"])
    wait(lambda: holder(netlab) == "a", 3, "dummy0 up: a recovers and preempts", sup)

    time.sleep(0.3)
    t0 = time.monotonic()
    sup.kill("pyvrrp-a")                                  # no priority 0, address left behind
    wait(lambda: netlab.has_address("b", VIP), 0.365 + 0.1 + 0.4, "b takes over", sup)
    gap = time.monotonic() - t0
    print(f"\nreal v3 0.1 s kill -9: b holds the VIP after {gap:.3f} s "
          f"(Master_Down 0.365 s)")
    assert gap >= 0.365 - 0.1 - 0.05  # it did wait for Master_Down (minus one interval)
    wait(lambda: netlab.neighbour_mac(VIP) == netlab.mac("b"), 7,
         "gratuitous ARP moves the client to b", sup)


@needs_keepalived
def test_equal_priority_split_brain_heals_by_ip(start_lab: StartLab, netlab: NetnsLab,
                                                tmp_path: Path) -> None:
    """Both priority 100, v3 0.1 s. A backup accepts an equal-priority master (RFC 5798), so
    the tie-break only shows when both are master: cut a's link (split brain: both hold the
    VIP), heal it, and the higher primary IP — pyvrrp on 10.99.0.12 — must keep the VIP while
    keepalived on 10.99.0.11 yields."""
    sup = start_lab(make_lab("vrrp-tie-ka", [keepalived_spec(netlab, "a", LB1[3],
                                                             tmp_path / "ka")]))
    wait(lambda: holder(netlab) == "a", 3, "keepalived master alone", sup)
    sup2 = start_lab(make_lab("vrrp-tie-py", [pyvrrp_spec(netlab, "b", LB1[3])]))
    wait(lambda: "Entering BACKUP STATE" in sup2.tail("pyvrrp-b", 10), 2, "pyvrrp backup")
    time.sleep(0.5)  # bounded: > Master_Down — an equal-priority master is accepted
    assert holder(netlab) == "a"

    # split brain: take a's port off the bridge, its link stays up (a link down would put
    # keepalived in FAULT: it tracks its own interface)
    netlab.run("c", ["ip", "link", "set", "va", "nomaster"])
    wait(lambda: holder(netlab) == "ab", 2, "both masters while split", sup2)
    netlab.run("c", ["ip", "link", "set", "va", "master", "br0"])  # heal
    wait(lambda: holder(netlab) == "b", 3, "keepalived (lower IP) yields to pyvrrp", sup)
    assert "Entering BACKUP STATE" in sup.tail("keepalived-a", 15)
    time.sleep(0.5)  # bounded: several advert intervals — the outcome must be stable
    assert holder(netlab) == "b"
