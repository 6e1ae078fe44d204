"""`python -m benchmarks failover`: the gap a client sees when the VIP's MASTER goes away.

A client starts a request to the VIP every 20 ms (each on a new connection, 0.5 s timeout,
overlapping when the network swallows packets) and records which node answered. The figure is
the time from the event to the first request *started* after it that the new master's node
answers:

  * graceful — SIGTERM to the master's daemon (priority-0 advert, VIP released);
  * kill     — SIGKILL to the master's daemon and its web server together (a crashed box: the
               old master still owns the address until the backup's gratuitous ARP moves it).

Priorities 100 / 90, advert_int 1 s (VRRPv2, auth PASS) and 0.1 s (VRRPv3). Both daemons run
the same keepalived.conf in network namespaces (pyvrrp.netns: two routers on a bridge, the
client in a third namespace) when we are root; pyvrrp's loopback emulation is measured too.

Result: {"pyvrrp": {"graceful_ms", "kill_ms", "v3_100ms": {...}, "mode", "loopback": {...}},
         "keepalived": {...same, or None when not installed / not root},
         "ratio_pyvrrp_over_keepalived": {...}}
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.load import ratio
from pylab.supervisor import Supervisor, free_port
from pylab.topology import Lab, ProcessSpec
from pyvrrp.netns import NetnsLab, keepalived_argv, unavailable_reason

VIP = "10.99.0.88"
LOOP_VIP = "127.0.0.88"
CLONE_NEWNET = 0x40000000
PERIOD = 0.02


class Poller:
    """Starts GET /who on the VIP every 20 ms from a thread (optionally inside a netns)."""

    def __init__(self, host: str, port: int, netns: str | None = None) -> None:
        self.host, self.port, self.netns = host, port, netns
        self.samples: list[tuple[float, str]] = []   # (start time, who or "")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _main(self) -> None:
        if self.netns:  # setns moves only this thread: its sockets live in the client netns
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            fd = os.open(f"/var/run/netns/{self.netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
        asyncio.run(self._loop())

    async def _one(self, started: float) -> None:
        who = ""
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 0.5)
            w.write(b"GET /who HTTP/1.0\r\nHost: vip\r\n\r\n")
            data = await asyncio.wait_for(r.read(), 0.5)
            w.close()
            if data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200"):
                who = data.rsplit(b"\r\n\r\n", 1)[-1].decode().strip()
        except (OSError, TimeoutError):
            pass
        self.samples.append((started, who))

    async def _loop(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        nxt = time.monotonic()
        while not self._stop.is_set():
            t = asyncio.get_running_loop().create_task(self._one(time.monotonic()))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            nxt += PERIOD
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks, timeout=1)

    def wait_for(self, who: str, after: float, limit: float) -> float | None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            hits = [t for t, w in list(self.samples) if t >= after and w == who]
            if hits:
                return min(hits) - after
            time.sleep(0.02)
        return None


def keepalived_conf(router: str, prio: int, version: int, interface: str = "veth0",
                    vip: str = VIP, src: str = "", peer: str = "") -> str:
    auth = ("    authentication {\n        auth_type PASS\n        auth_pass 1111\n    }\n"
            if version == 2 else "")
    uni = (f"    unicast_src_ip {src}\n    unicast_peer {{\n        {peer}\n    }}\n"
           if src else "")
    state = "MASTER" if prio == 100 else "BACKUP"
    return (f"global_defs {{\n   router_id {router}\n   vrrp_skip_check_adv_addr\n"
            + ("   vrrp_version 3\n" if version == 3 else "") + "}\n"
            f"vrrp_instance VI_1 {{\n    state {state}\n    interface {interface}\n"
            f"    virtual_router_id 51\n    priority {prio}\n"
            f"    advert_int {1 if version == 2 else 0.1}\n{auth}{uni}"
            f"    virtual_ipaddress {{\n        {vip}/24\n    }}\n}}\n")


def _who_dir(root: Path, member: str) -> str:
    d = root / f"www-{member}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "who").write_text(member)
    return str(d)


def _trial(sup: Supervisor, poll: Poller, event: str, daemons: tuple[str, str],
           webs: tuple[str, str], ready: float) -> float | None:
    """One failover: a (priority 100) must serve first; returns the gap in seconds."""
    if poll.wait_for("a", time.monotonic() - 0.05, ready) is None:
        return None
    time.sleep(0.3)
    t0 = time.monotonic()
    if event == "graceful":
        sup.kill(daemons[0], 15)
    else:
        sup.kill(daemons[0])
        sup.kill(webs[0])
    return poll.wait_for("b", t0, 8.0)


def measure_netns(daemon: str, version: int, event: str, root: Path) -> float | None:
    with NetnsLab() as lab:
        specs: list[ProcessSpec] = []
        for m, prio in (("a", 100), ("b", 90)):
            specs.append(ProcessSpec(
                f"web-{m}", "command", ready="none",
                args=lab.argv(m, [sys.executable, "-m", "http.server", "8000", "--bind",
                                  "0.0.0.0", "-d", _who_dir(root, m)])))
            text = keepalived_conf(f"LB{m}", prio, version)
            if daemon == "keepalived":
                argv = keepalived_argv(lab, m, "{file:k.conf}", root / "ka")
                specs.append(ProcessSpec(f"vrrp-{m}", "command", argv, ready="none",
                                         files={"k.conf": text}))
            else:
                argv = lab.argv(m, [sys.executable, "-m", "pyvrrp", "--transport", "real",
                                    "-f", "{file:k.conf}"])
                specs.append(ProcessSpec(f"vrrp-{m}", "command", argv, ready="line",
                                         files={"k.conf": text}))
        sup = Supervisor(Lab("failover", "", "vrrp-a", specs, "<bench>"),
                         root / f"run-{daemon}-{version}-{event}", free_ports=True)
        try:
            sup.up()
            with Poller(VIP, 8000, lab.ns("c")) as poll:
                return _trial(sup, poll, event, ("vrrp-a", "vrrp-b"), ("web-a", "web-b"),
                              ready=8.0)
        finally:
            sup.down(timeout=5)


def measure_loopback(version: int, event: str, root: Path) -> float | None:
    vport, aport = free_port(), free_port()
    specs: list[ProcessSpec] = []
    for m, prio, src, peer in (("a", 100, "127.0.0.11", "127.0.0.12"),
                               ("b", 90, "127.0.0.12", "127.0.0.11")):
        specs.append(ProcessSpec(f"web-{m}", "command", ready="tcp",
                                 args=[sys.executable, "-m", "http.server", "{port}",
                                       "--bind", "127.0.0.1", "-d", _who_dir(root, m)]))
        text = keepalived_conf(f"LB{m}", prio, version, "lo", LOOP_VIP, src, peer)
        specs.append(ProcessSpec(
            f"vrrp-{m}", "pyvrrp", files={"k.conf": text},
            args=["-f", "{file:k.conf}", "--vip-port", str(vport), "--advert-port",
                  str(aport), "--forward", f"127.0.0.1:{{web-{m}.port}}"]))
    sup = Supervisor(Lab("failover-loop", "", "vrrp-a", specs, "<bench>"),
                     root / f"run-loop-{version}-{event}", free_ports=True)
    try:
        sup.up()
        with Poller(LOOP_VIP, vport) as poll:
            return _trial(sup, poll, event, ("vrrp-a", "vrrp-b"), ("web-a", "web-b"), 8.0)
    finally:
        sup.down(timeout=5)


def _ms(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.median(got) * 1000, 1) if got else None


def _series(fn: Any, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for version, key in ((2, ""), (3, "v3_100ms")):
        row = {f"{ev}_ms": _ms([fn(version, ev) for _ in range(repeats)])
               for ev in ("graceful", "kill")}
        if key:
            out[key] = row
        else:
            out.update(row)
    return out


def run(duration: float) -> dict[str, Any]:
    repeats = max(1, round(duration / 10))
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        root = Path(tmp)
        loop = _series(lambda v, ev: measure_loopback(v, ev, root), repeats)
        reason = unavailable_reason()
        result: dict[str, Any] = {"pyvrrp": {}, "keepalived": None}
        if reason is None:
            result["pyvrrp"] = _series(lambda v, ev: measure_netns("pyvrrp", v, ev, root),
                                       repeats)
            result["pyvrrp"]["mode"] = "netns-real"
            if shutil.which("keepalived"):
                result["keepalived"] = _series(
                    lambda v, ev: measure_netns("keepalived", v, ev, root), repeats)
                result["keepalived"]["mode"] = "netns-real"
        else:
            result["pyvrrp"] = dict(loop, mode=f"loopback ({reason})")
        result["pyvrrp"]["loopback"] = loop
        ka = result["keepalived"]
        if ka:
            py = result["pyvrrp"]
            result["ratio_pyvrrp_over_keepalived"] = {
                "graceful": ratio(py["graceful_ms"], ka["graceful_ms"]),
                "kill": ratio(py["kill_ms"], ka["kill_ms"]),
                "v3_graceful": ratio(py["v3_100ms"]["graceful_ms"],
                                     ka["v3_100ms"]["graceful_ms"]),
                "v3_kill": ratio(py["v3_100ms"]["kill_ms"], ka["v3_100ms"]["kill_ms"]),
            }
        result["settings"] = {"priorities": [100, 90], "poll_period_ms": PERIOD * 1000,
                              "repeats": repeats, "host": socket.gethostname()}
        return result
