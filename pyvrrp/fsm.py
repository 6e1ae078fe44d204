"""The VRRP state machine (RFC 5798 §6.4, keepalived's choices where the RFC leaves room).

Sans-IO: every method takes `now` (seconds, any monotonic origin) and returns the actions the
shell must carry out — send an advert with some priority, and state transitions (the shell
takes the VIP on →MASTER, releases it on MASTER→, runs notify scripts). One deadline is pending
at a time (`deadline`): the Adver_Timer in MASTER, the Master_Down_Timer in BACKUP; the shell
calls `tick(now)` when it passes. Durations are computed in whole microseconds like keepalived,
so a timeline replay can state exact values:

    v2: Skew = (256 - prio) / 256 s            Master_Down = 3 * advert_int + Skew
    v3: Skew = (256 - prio) * Master_Adver_Interval / 256    Master_Down = 3 * MAI + Skew

keepalived choices followed here:
  * only priority 255 (the address owner) becomes master at once; `state MASTER` with a
    lower priority starts in BACKUP with the full Master_Down, exactly like keepalived 2.2.7
    (observed: "Entering BACKUP STATE (init)", then "Receive advertisement timeout" 3.6 s
    later). `want_master` is kept in the params for reporting only.
  * `preempt_delay`: the first lower-priority advert starts a delay during which such adverts
    still hold us in BACKUP; after it, they are ignored and the Master_Down timer preempts.
  * Tracked scripts/interfaces with weight 0 put the instance in FAULT; a master entering FAULT
    sends a priority-0 advert so the backups take over after Skew only.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

US = 1_000_000


class State(enum.Enum):
    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOP = "STOP"


@dataclass(frozen=True)
class SendAdvert:
    priority: int


@dataclass(frozen=True)
class Transition:
    old: State
    new: State
    priority: int
    reason: str = ""


Action = SendAdvert | Transition


@dataclass
class RouterParams:
    vrid: int
    priority: int = 100
    advert_int: float = 1.0
    version: int = 2
    primary_ip: str = "0.0.0.0"
    preempt: bool = True
    preempt_delay: float = 0.0
    want_master: bool = False  # `state MASTER` in keepalived.conf


def _us(seconds: float) -> int:
    return round(seconds * US)


def skew_us(version: int, priority: int, master_adver_us: int) -> int:
    if version == 2:
        return (256 - priority) * US // 256
    return (256 - priority) * master_adver_us // 256


class VrrpRouter:
    """One VRRP instance (one VRID on one interface)."""

    __slots__ = ("_deadline_us", "_faults", "_preempt_at_us", "_weight", "master_adver_us",
                 "master_ip", "p", "state")

    def __init__(self, params: RouterParams) -> None:
        if not 0 < params.priority <= 255:
            raise ValueError("priority must be 1..255")
        self.p = params
        self.state = State.INIT
        self.master_adver_us = _us(params.advert_int)
        self.master_ip: str | None = None
        self._deadline_us: int | None = None
        self._preempt_at_us: int | None = None
        self._weight = 0
        self._faults: set[str] = set()

    # -- derived values -----------------------------------------------------------------
    @property
    def priority(self) -> int:
        """Effective priority: base + tracked weights, kept in 1..254 (255 never moves)."""
        if self.p.priority == 255:
            return 255
        return max(1, min(254, self.p.priority + self._weight))

    @property
    def advert_us(self) -> int:
        return _us(self.p.advert_int)

    @property
    def skew(self) -> float:
        return skew_us(self.p.version, self.priority, self.master_adver_us) / US

    @property
    def master_down(self) -> float:
        return self._master_down_us() / US

    def _master_down_us(self) -> int:
        return 3 * self.master_adver_us + skew_us(self.p.version, self.priority,
                                                  self.master_adver_us)

    @property
    def deadline(self) -> float | None:
        """When `tick` has work to do next (None: nothing pending)."""
        return None if self._deadline_us is None else self._deadline_us / US

    @property
    def faulty(self) -> bool:
        return bool(self._faults)

    # -- transitions --------------------------------------------------------------------
    def _go(self, new: State, reason: str) -> Transition:
        old, self.state = self.state, new
        return Transition(old, new, self.priority, reason)

    def _to_master(self, now_us: int, reason: str) -> list[Action]:
        self._deadline_us = now_us + self.advert_us
        self._preempt_at_us = None
        self.master_ip = self.p.primary_ip
        return [SendAdvert(self.priority), self._go(State.MASTER, reason)]

    def _to_backup(self, now_us: int, reason: str, down_us: int | None = None) -> list[Action]:
        self._deadline_us = now_us + (self._master_down_us() if down_us is None else down_us)
        return [self._go(State.BACKUP, reason)]

    def start(self, now: float) -> list[Action]:
        """Leave INIT: FAULT if a tracked object already failed, MASTER if owner, else BACKUP."""
        n = _us(now)
        self.master_adver_us = self.advert_us
        if self._faults:
            self._deadline_us = None
            return [self._go(State.FAULT, "tracked object down at start")]
        if self.p.priority == 255:
            return self._to_master(n, "address owner (priority 255)")
        return self._to_backup(n, "init")

    def tick(self, now: float) -> list[Action]:
        """Fire the pending timer if it is due."""
        n = _us(now)
        if self._deadline_us is None or n < self._deadline_us:
            return []
        if self.state == State.BACKUP:
            return self._to_master(n, "master down timer expired")
        if self.state == State.MASTER:
            nxt = self._deadline_us + self.advert_us
            self._deadline_us = nxt if nxt > n else n + self.advert_us
            return [SendAdvert(self.priority)]
        self._deadline_us = None
        return []

    def receive(self, now: float, adv_priority: int, src_ip: str,
                adv_interval: float | None = None) -> list[Action]:
        """An authenticated advert for our VRID from `src_ip` (not our own)."""
        n = _us(now)
        if self.state == State.BACKUP:
            if adv_priority == 0:
                self._deadline_us = n + skew_us(self.p.version, self.priority,
                                                self.master_adver_us)
                self.master_ip = None
                return []
            lower = adv_priority < self.priority
            if lower and self.p.preempt and self.p.preempt_delay > 0:
                if self._preempt_at_us is None:
                    self._preempt_at_us = n + _us(self.p.preempt_delay)
                if n < self._preempt_at_us:
                    lower = False  # still holding back: treat it as a valid master
            if not self.p.preempt or not lower:
                if self.p.version == 3 and adv_interval:
                    self.master_adver_us = _us(adv_interval)
                self._deadline_us = n + self._master_down_us()
                self.master_ip = src_ip
            return []
        if self.state == State.MASTER:
            if adv_priority == 0:
                self._deadline_us = n + self.advert_us
                return [SendAdvert(self.priority)]
            if adv_priority > self.priority or (
                    adv_priority == self.priority and _ip(src_ip) > _ip(self.p.primary_ip)):
                if self.p.version == 3 and adv_interval:
                    self.master_adver_us = _us(adv_interval)
                self.master_ip = src_ip
                why = ("higher priority" if adv_priority > self.priority
                       else "equal priority, higher primary IP")
                return self._to_backup(n, f"{why} advert from {src_ip} ({adv_priority})")
            return []
        return []

    def shutdown(self, now: float) -> list[Action]:
        """Graceful stop: a master resigns with priority 0 (backups take over after Skew)."""
        out: list[Action] = []
        if self.state == State.MASTER:
            out.append(SendAdvert(0))
        self._deadline_us = None
        out.append(self._go(State.STOP, "shutdown"))
        return out

    # -- tracking -----------------------------------------------------------------------
    def set_weight(self, now: float, weight: int) -> list[Action]:
        """Sum of the weights of tracked objects now counted; a master advertises it at once
        (keepalived does the same so a lowered master is preempted without waiting)."""
        if weight == self._weight:
            return []
        self._weight = weight
        if self.state == State.MASTER:
            return [SendAdvert(self.priority)]
        return []

    def set_fault(self, now: float, name: str, failed: bool) -> list[Action]:
        """A weight-0 tracked object (`name`) failed or recovered."""
        was = bool(self._faults)
        if failed:
            self._faults.add(name)
        else:
            self._faults.discard(name)
        if was == bool(self._faults) or self.state in (State.INIT, State.STOP):
            return []
        n = _us(now)
        if self._faults:
            out: list[Action] = []
            if self.state == State.MASTER:
                out.append(SendAdvert(0))
            self._deadline_us = None
            self.master_ip = None
            out.append(self._go(State.FAULT, f"tracked {name} down"))
            return out
        self.master_adver_us = self.advert_us
        if self.p.priority == 255:
            return self._to_master(n, f"tracked {name} up (address owner)")
        return self._to_backup(n, f"tracked {name} up")


def _ip(a: str) -> int:
    return int(ipaddress.IPv4Address(a))
