"""Membership (sans-IO): Tomcat's McastService semantics without the sockets.

Every member sends a heartbeat every `frequency` (500 ms) carrying who it is (uuid, route,
the TCP receiver address, its start time). A member unheard for `drop_time` (3000 ms) becomes
*suspect*; the shell then confirms over TCP (a connect to its receiver) before it is dropped —
a member whose datagrams are lost but whose receiver answers stays (`confirmed_alive`). A
graceful stop sends a leave heartbeat and the others drop it at once.

`Membership` is fed heartbeats and the current time and returns `MemberEvent`s; it never
reads a clock or a socket, so a unit test replays any timeline exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_FREQUENCY = 0.5
DEFAULT_DROP_TIME = 3.0


@dataclass(slots=True)
class Member:
    uuid: str
    route: str
    host: str
    port: int
    started: float           # the member's start time: the oldest member serves state transfer
    last_seen: float = 0.0
    suspect: bool = False

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def to_wire(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "route": self.route, "host": self.host, "port": self.port,
                "started": self.started}

    @classmethod
    def from_wire(cls, d: Any) -> Member | None:
        try:
            return cls(str(d["uuid"]), str(d["route"]), str(d["host"]), int(d["port"]),
                       float(d["started"]))
        except (KeyError, TypeError, ValueError):
            return None

    def older_than(self, other: Member) -> bool:
        return (self.started, self.uuid) < (other.started, other.uuid)


@dataclass(frozen=True, slots=True)
class MemberEvent:
    kind: str            # "added" | "suspect" | "dropped" | "left"
    member: Member


@dataclass
class Membership:
    local: Member
    frequency: float = DEFAULT_FREQUENCY
    drop_time: float = DEFAULT_DROP_TIME
    members: dict[str, Member] = field(default_factory=dict)
    next_beat: float = 0.0

    def heartbeat(self, now: float, leaving: bool = False) -> dict[str, Any] | None:
        """The heartbeat to send now, or None when it is not yet time (`leaving`: always)."""
        if leaving:
            return {"t": "hb", "m": self.local.to_wire(), "leave": True}
        if now < self.next_beat:
            return None
        self.next_beat = now + self.frequency
        return {"t": "hb", "m": self.local.to_wire()}

    def receive(self, msg: Any, now: float) -> list[MemberEvent]:
        """A heartbeat arrived (already authenticated by the frame codec)."""
        if not isinstance(msg, dict) or msg.get("t") != "hb":
            return []
        m = Member.from_wire(msg.get("m"))
        if m is None or m.uuid == self.local.uuid:
            return []
        known = self.members.get(m.uuid)
        if msg.get("leave"):
            if known is None:
                return []
            del self.members[m.uuid]
            return [MemberEvent("left", known)]
        if known is None:
            # the same route re-appearing with a new uuid: the old incarnation is gone
            events = [MemberEvent("dropped", old) for old in list(self.members.values())
                      if old.route == m.route and old.address == m.address]
            for e in events:
                del self.members[e.member.uuid]
            m.last_seen = now
            self.members[m.uuid] = m
            return [*events, MemberEvent("added", m)]
        known.last_seen = now
        known.suspect = False
        return []

    def tick(self, now: float) -> list[MemberEvent]:
        """Members unheard for drop_time become suspect (once); the shell confirms them."""
        out = []
        for m in self.members.values():
            if not m.suspect and now - m.last_seen >= self.drop_time:
                m.suspect = True
                out.append(MemberEvent("suspect", m))
        return out

    def confirmed_dead(self, uuid: str) -> MemberEvent | None:
        """The TCP check failed: drop the member."""
        m = self.members.pop(uuid, None)
        return MemberEvent("dropped", m) if m is not None else None

    def confirmed_alive(self, uuid: str, now: float) -> None:
        """The TCP check succeeded: keep it (heartbeats lost, process alive)."""
        m = self.members.get(uuid)
        if m is not None:
            m.suspect = False
            m.last_seen = now

    def alive(self) -> list[Member]:
        """Members in a stable order (oldest first)."""
        if len(self.members) < 2:
            return list(self.members.values())
        return sorted(self.members.values(), key=lambda m: (m.started, m.uuid))

    def oldest(self) -> Member | None:
        """The oldest *other* member if it is older than us (state transfer source)."""
        cands = [m for m in self.members.values() if m.older_than(self.local)]
        return min(cands, key=lambda m: (m.started, m.uuid)) if cands else None

    def by_route(self, route: str) -> Member | None:
        for m in self.members.values():
            if m.route == route:
                return m
        return None
