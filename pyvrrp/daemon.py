"""The asyncio shell around the sans-IO state machine: timers, sockets, VIP, scripts.

One `InstanceRuntime` per vrrp_instance. It owns a `VrrpRouter`, feeds it adverts (after the
checks RFC 5798 §7.1 asks for: TTL 255 in real mode, version, VRID, auth, interval, addresses)
and the loop's monotonic time, and carries out what it returns: send an advert, take or release
the VIP, run notify scripts, write the state file. Tracked scripts and interfaces are polled
here and turned into weights / faults for the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyvrrp.auth import Authenticator
from pyvrrp.config import KeepalivedConfig, VrrpInstance, VrrpScript
from pyvrrp.fsm import Action, RouterParams, SendAdvert, State, Transition, VrrpRouter
from pyvrrp.notify import Notifier, run_script
from pyvrrp.packet import VRRP_TTL, Advert, PacketError
from pyvrrp.track import Hysteresis, Tracked, total_weight
from pyvrrp.transport import LoopbackTransport, RawTransport, Transport, interface_addresses
from pyvrrp.validate import reject_reason
from pyvrrp.vip import LoopbackVip, RealVip, VipHolder

log = logging.getLogger("pyvrrp")


@dataclass
class Options:
    transport: str = "loopback"      # loopback | real
    advert_port: int = 5798          # loopback: UDP port of the adverts
    vip_port: int = 8080             # loopback: TCP port the master listens on at the VIP
    forward: tuple[str, int] | None = None  # loopback: where VIP connections go (local pylb)
    state_file: str = ""
    instances: list[str] = field(default_factory=list)  # empty: all


class ScriptRunner:
    """Runs one vrrp_script every `interval`; results go to every instance tracking it."""

    def __init__(self, script: VrrpScript) -> None:
        self.script = script
        self.listeners: list[tuple[InstanceRuntime, Tracked]] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        s = self.script
        while True:
            rc = await run_script(s.script, timeout=s.timeout or s.interval)
            ok = rc == 0
            for inst, tracked in self.listeners:
                changed = tracked.state.record(ok)
                if changed is not None:
                    log.info("%s: script %s is now %s", inst.cfg.name, s.name,
                             "OK" if changed else "KO")
                    inst.tracking_changed(tracked)
            await asyncio.sleep(s.interval)


def _operstate_up(ifname: str) -> bool:
    try:
        state = Path(f"/sys/class/net/{ifname}/operstate").read_text().strip()
    except OSError:
        return False
    return state in ("up", "unknown")


class InstanceRuntime:
    def __init__(self, cfg: VrrpInstance, kc: KeepalivedConfig, opts: Options,
                 on_state: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self.kc = kc
        self.opts = opts
        self.on_state = on_state
        self.loop = asyncio.get_running_loop()
        real = opts.transport == "real"
        primary = cfg.unicast_src_ip or cfg.mcast_src_ip
        vip_set = {va.address for va in cfg.virtual_ipaddress}
        if real and not primary:
            addrs = [a for a, _ in interface_addresses(cfg.interface) if a not in vip_set]
            if not addrs:
                raise OSError(f"{cfg.interface}: no IPv4 address to send adverts from")
            primary = addrs[0]
        if not primary:
            primary = "127.0.0.1"
        self.primary_ip = primary
        self.router = VrrpRouter(RouterParams(
            vrid=cfg.virtual_router_id, priority=cfg.priority, advert_int=cfg.advert_int,
            version=cfg.version, primary_ip=primary, preempt=not cfg.nopreempt,
            preempt_delay=cfg.preempt_delay, want_master=cfg.state == "MASTER"))
        self.auth = Authenticator(cfg.authentication.auth_type, cfg.authentication.auth_pass)
        self.transport: Transport
        self.vip: VipHolder
        if real:
            self.transport = RawTransport(cfg.interface, primary, cfg.unicast_peer)
            self.vip = RealVip(cfg.virtual_ipaddress, cfg.interface)
        else:
            self.transport = LoopbackTransport(primary, opts.advert_port, cfg.unicast_peer)
            self.vip = LoopbackVip(cfg.virtual_ipaddress, opts.vip_port, opts.forward)
        self.notifier = Notifier(cfg.name, {"MASTER": cfg.notify_master,
                                            "BACKUP": cfg.notify_backup,
                                            "FAULT": cfg.notify_fault,
                                            "STOP": cfg.notify_stop}, cfg.notify)
        self.tracked: list[Tracked] = []
        self._timer: asyncio.TimerHandle | None = None
        self._warned: set[str] = set()
        self._vip_ops: asyncio.Task[None] | None = None
        self._vip_queue: list[bool] = []
        self.transitions: list[tuple[float, str]] = []

    @property
    def where(self) -> str:
        if isinstance(self.transport, LoopbackTransport):
            return (f"{self.cfg.name}: adverts on udp {self.primary_ip}:{self.opts.advert_port}")
        return f"{self.cfg.name}: VRRP on {self.cfg.interface} from {self.primary_ip}"

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, runners: dict[str, ScriptRunner]) -> None:
        for ref in self.cfg.track_script:
            script = self.kc.scripts[ref.name]
            t = Tracked(ref.name, script.weight if ref.weight is None else ref.weight,
                        Hysteresis(script.rise, script.fall, ok=None))
            self.tracked.append(t)
            runners[ref.name].listeners.append((self, t))
        for ref in self.cfg.track_interface:
            up = _operstate_up(ref.name)
            t = Tracked(f"interface {ref.name}", ref.weight or 0, Hysteresis(1, 1, ok=up))
            self.tracked.append(t)
            if not up:
                self.router.set_fault(self.loop.time(), t.name, True)
        if self.cfg.track_interface:
            self.loop.create_task(self._watch_interfaces())
        if isinstance(self.vip, RealVip):
            self.vip.clear_stale()
        await self.transport.open(self._received)
        if self._scripts_known():
            self._apply(self.router.start(self.loop.time()))
        else:
            log.info("(%s) waiting for the first result of its track scripts", self.cfg.name)

    def _scripts_known(self) -> bool:
        return all(t.state.ok is not None for t in self.tracked)

    async def stop(self) -> None:
        """Priority 0 first (backups take over after Skew), then let go of the VIP."""
        if self.router.state == State.INIT:  # never started (a socket failed): nothing to undo
            self.transport.close()
            return
        self._apply(self.router.shutdown(self.loop.time()))
        if self._timer:
            self._timer.cancel()
        if self._vip_ops is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._vip_ops, 5)
        self.transport.close()
        await self.notifier.drain()

    # -- the router's inputs --------------------------------------------------------------
    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s: %s", self.cfg.name, msg)

    def _received(self, data: bytes, src: str, dst: str, ttl: int | None) -> None:
        if ttl is not None and ttl != VRRP_TTL:  # before any parsing: RFC 5798 §7.1
            self._warn_once(f"ttl{src}", f"dropping advert from {src}: TTL {ttl} != 255")
            return
        try:
            adv = self.auth.open(data, src, dst)
        except PacketError as exc:
            self._warn_once(f"{exc}{src}", f"dropping advert from {src}: {exc}")
            return
        why = reject_reason(adv, self.cfg, ttl, self.kc.global_defs.skip_check_adv_addr)
        if why is not None:
            if why:
                self._warn_once(f"{why}{src}", f"dropping advert from {src}: {why}")
            return
        self._apply(self.router.receive(self.loop.time(), adv.priority, src, adv.advert_int))

    def tracking_changed(self, t: Tracked) -> None:
        now = self.loop.time()
        acts = self.router.set_weight(now, total_weight(self.tracked))
        acts += self.router.set_fault(now, t.name, t.faulted)
        if self.router.state == State.INIT and self._scripts_known():
            acts += self.router.start(now)
        self._apply(acts)
        if self.on_state is not None:
            self.on_state()  # the priority may have moved without a transition

    async def _watch_interfaces(self) -> None:
        while self.router.state != State.STOP:
            for t in self.tracked:
                if t.name.startswith("interface "):
                    changed = t.state.record(_operstate_up(t.name.split(" ", 1)[1]))
                    if changed is not None:
                        log.info("%s: %s is %s", self.cfg.name, t.name,
                                 "up" if changed else "down")
                        self.tracking_changed(t)
            await asyncio.sleep(min(1.0, self.cfg.advert_int))

    def _fire(self) -> None:
        self._timer = None
        self._apply(self.router.tick(self.loop.time()))

    # -- the router's outputs -------------------------------------------------------------
    def _advert(self, priority: int) -> None:
        t, d = self.auth.stamp_fields(self.cfg.version)
        adv = Advert(self.cfg.version, self.cfg.virtual_router_id, priority,
                     tuple(va.address for va in self.cfg.virtual_ipaddress),
                     self.cfg.advert_int, t, d)
        counter = time.time_ns()

        def encode(src: str, dst: str) -> bytes:
            return self.auth.seal(adv.encode(src, dst), src, counter)

        self.transport.send(encode)

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, SendAdvert):
                self._advert(a.priority)
            elif isinstance(a, Transition):
                self._transition(a)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        dl = self.router.deadline
        if dl is not None:
            self._timer = self.loop.call_at(dl, self._fire)

    def _transition(self, t: Transition) -> None:
        log.info("(%s) Entering %s STATE (%s)", self.cfg.name, t.new.value, t.reason,
                 extra={"instance": self.cfg.name, "state": t.new.value,
                        "priority": t.priority})
        self.transitions.append((time.time(), t.new.value))
        if t.new == State.MASTER:
            self._vip_queue.append(True)
        elif t.old == State.MASTER:
            self._vip_queue.append(False)
        if self._vip_queue and (self._vip_ops is None or self._vip_ops.done()):
            self._vip_ops = self.loop.create_task(self._run_vip_ops())
        if t.new != State.INIT:
            self.notifier.fire(t.new.value, t.priority)
        if self.on_state is not None:
            self.on_state()

    async def _run_vip_ops(self) -> None:
        while self._vip_queue:
            take = self._vip_queue.pop(0)
            try:
                await (self.vip.take() if take else self.vip.release())
            except Exception:
                log.exception("%s: VIP %s failed", self.cfg.name,
                              "take" if take else "release")

    def status(self) -> dict[str, object]:
        r = self.router
        return {"state": r.state.value, "priority": r.priority, "base_priority": r.p.priority,
                "primary_ip": self.primary_ip, "master_ip": r.master_ip,
                "vrid": self.cfg.virtual_router_id, "version": self.cfg.version,
                "advert_int": self.cfg.advert_int,
                "vips": [va.cidr for va in self.cfg.virtual_ipaddress]}


class StartError(Exception):
    """An instance could not open its sockets: the OSError and what it was opening."""

    def __init__(self, exc: OSError, where: str) -> None:
        super().__init__(where)
        self.exc = exc
        self.where = where


class Daemon:
    """All instances of one config, their script runners and the state file."""

    def __init__(self, kc: KeepalivedConfig, opts: Options) -> None:
        self.kc = kc
        self.opts = opts
        self.instances: list[InstanceRuntime] = []
        self.runners: dict[str, ScriptRunner] = {}

    async def start(self) -> None:
        chosen = [i for i in self.kc.instances
                  if not self.opts.instances or i.name in self.opts.instances]
        for name in {r.name for i in chosen for r in i.track_script}:
            self.runners[name] = ScriptRunner(self.kc.scripts[name])
        for cfg in chosen:
            rt = InstanceRuntime(cfg, self.kc, self.opts, self.write_state)
            self.instances.append(rt)
            try:
                await rt.start(self.runners)
            except OSError as exc:
                raise StartError(exc, rt.where) from exc
        for r in self.runners.values():
            r.start()
        self.write_state()

    async def stop(self) -> None:
        for r in self.runners.values():
            if r.task:
                r.task.cancel()
        await asyncio.gather(*(i.stop() for i in self.instances))
        self.write_state()

    def write_state(self) -> None:
        if not self.opts.state_file:
            return
        data = {"pid": os.getpid(), "instances": {i.cfg.name: i.status()
                                                  for i in self.instances}}
        path = Path(self.opts.state_file)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
