"""What DeltaManager and BackupManager share: sessions indexed by the id *without* its route
(so `ID.node1` and `ID.node2` name the same session while a route change travels the
cluster), Tomcat's JvmRouteBinder, the cluster service wiring and send helpers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pycommon.config import ConfigError
from pycommon.wire import DEFAULT_POLICY, TypePolicy
from pysession.cluster.config import ClusterConfig, parse_cluster
from pysession.cluster.membership import Member, MemberEvent
from pysession.cluster.service import ClusterService
from pysession.ids import with_route
from pysession.manager import Manager
from pysession.options import ManagerEnv, Options
from pysession.session import DEFAULT_MAX_INACTIVE, Session

log = logging.getLogger("pysession.cluster")

SEND_MODES = ("async", "ack", "sync-ack")


def base_id(sid: str) -> str:
    """`ABC.node1` → `ABC` (the route is where the session lives now, not what it is)."""
    return sid.partition(".")[0]


def route_of(sid: str) -> str | None:
    _, dot, route = sid.partition(".")
    return route if dot else None


def cluster_config(opts: Options, env: ManagerEnv) -> ClusterConfig:
    src = env.source
    base = None if src is None else _parent(src.path)
    if not env.cluster:
        raise opts.error(f"session manager {opts.type!r} needs a [cluster] table "
                         "(at least key = \"...\")", "type", opts.type)
    return parse_cluster(env.cluster, src, base)


def replicated_options(opts: Options, env: ManagerEnv) -> dict[str, Any]:
    """The constructor arguments every replicated manager reads from its TOML table."""
    return {"route": env.route, "max_inactive": env.max_inactive,
            "distributable": env.distributable, "policy": env.policy,
            "cluster": cluster_config(opts, env), "context": env.context_path,
            "max_active": opts.integer("max_active_sessions", -1),
            "jvm_route_binder": opts.boolean("jvm_route_binder", True),
            "send": opts.choice("send", SEND_MODES, "async")}


def _parent(path: str) -> Any:
    from pathlib import Path

    return Path(path).resolve().parent


class ReplicatedManager(Manager):
    """Sessions in memory, replicated through a ClusterService."""

    context: str = "/"

    def __init__(self, route: str | None = None, max_inactive: int = DEFAULT_MAX_INACTIVE,
                 distributable: bool = True, policy: TypePolicy = DEFAULT_POLICY,
                 cluster: ClusterConfig | None = None, context: str = "/",
                 max_active: int = -1, jvm_route_binder: bool = True,
                 service: ClusterService | None = None) -> None:
        super().__init__(route, max_inactive, distributable, policy)
        if cluster is None and service is None:
            raise ConfigError("a replicated session manager needs cluster settings")
        self.context = context
        self.max_active = max_active
        self.jvm_route_binder = jvm_route_binder
        self.sessions: dict[str, Session] = {}
        self.service = service or ClusterService.shared(cluster, route or "")  # type: ignore[arg-type]
        self.cfg = self.service.cfg
        self.service.register(context, self)
        self.rebound = 0
        self.send_failures = 0
        self._warned: set[str] = set()

    # -- helpers ----------------------------------------------------------------------
    def warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)
        else:
            log.debug(msg, *args)

    def is_primary(self, s: Session) -> bool:
        """The node named in the id holds the primary copy (Tomcat DeltaSession)."""
        r = route_of(s.id)
        return r is None or r == self.route

    def limit(self, s: Session) -> float:
        return s.max_inactive if self.is_primary(s) else 2 * s.max_inactive

    def expired(self, s: Session, now: float) -> bool:
        return s.max_inactive >= 0 and now - s.this_accessed >= self.limit(s)

    def members(self) -> list[Member]:
        return self.service.members()

    # -- sans-IO core -----------------------------------------------------------------
    def create(self, now: float) -> Session:
        self.check_capacity(now)
        while True:
            sid = self.new_id()
            if base_id(sid) not in self.sessions:
                break
        s = self.new_session(sid, now)
        self.sessions[base_id(sid)] = s
        self.created_count += 1
        if self.events:
            self.events.session_created(s)
        return s

    def find(self, sid: str, now: float) -> Session | None:
        s = self.sessions.get(base_id(sid))
        if s is None:
            return None
        if not s.valid or self.expired(s, now):
            if s.in_use == 0:
                self.expire_local(s, now)
            return None
        return s

    def expire_local(self, s: Session, now: float) -> None:
        """Forget without telling the cluster (a replica's own expiry, a remote EXPIRED)."""
        s.valid = False
        if self.sessions.get(base_id(s.id)) is s:
            del self.sessions[base_id(s.id)]
            self.expired_count += 1
            if self.events:
                self.events.session_destroyed(s)

    def expire(self, session: Session, now: float) -> None:
        self.expire_local(session, now)

    def change_id(self, session: Session, now: float) -> str:
        old = session.id
        self.sessions.pop(base_id(old), None)
        while True:
            sid = self.new_id()
            if base_id(sid) not in self.sessions:
                break
        session.id = sid
        self.sessions[base_id(sid)] = session
        session.notes.setdefault("old_id", old)
        if self.events:
            self.events.session_id_changed(session, old)
        return sid

    def rebind(self, s: Session) -> None:
        """JvmRouteBinder: the id names another node → it now names this one."""
        old = s.id
        s.id = with_route(old, self.route)
        if s.id != old:
            self.rebound += 1
            s.notes.setdefault("old_id", old)
            if self.events:
                self.events.session_id_changed(s, old)

    def rekey(self, old: str, new: str) -> Session | None:
        """A CHANGE_SESSION_ID from another node."""
        s = self.sessions.pop(base_id(old), None)
        if s is None:
            return None
        prev = s.id
        s.id = new
        self.sessions[base_id(new)] = s
        if self.events and prev != new:
            self.events.session_id_changed(s, prev)
        return s

    def sweep(self, now: float) -> int:
        dead = [s for s in self.sessions.values()
                if s.in_use == 0 and (not s.valid or self.expired(s, now))]
        for s in dead:
            self.expire_idle(s, now)
        return len(dead)

    def expire_idle(self, s: Session, now: float) -> None:
        self.expire_local(s, now)

    def __len__(self) -> int:
        return len(self.sessions)

    # -- cluster plumbing -------------------------------------------------------------
    def on_member_event(self, event: MemberEvent) -> None:
        return None

    def on_cluster_message(self, sender: Member | None, sender_uuid: str, msg: dict[str, Any],
                           reply: Any) -> None:
        raise NotImplementedError

    def broadcast(self, msg: dict[str, Any]) -> None:
        msg["ctx"] = self.context
        for m in self.members():
            self.service.post(m, msg)

    async def broadcast_wait(self, msg: dict[str, Any], applied: bool) -> int:
        """Send to every member and wait for their acknowledgements (ack: received,
        sync-ack: applied), at most ack_timeout; returns how many acknowledged."""
        msg["ctx"] = self.context
        msg["ack"] = "applied" if applied else "recv"
        members = self.members()
        if not members:
            return 0
        futs = [self.service.ask_future(m, msg) for m in members]
        await asyncio.wait(futs, timeout=self.cfg.ack_timeout)
        ok = 0
        for m, f in zip(members, futs, strict=True):
            if f.done() and not f.cancelled() and f.exception() is None:
                ok += 1
                continue
            why = "timeout" if not f.done() else repr(f.exception())
            if not f.done():
                self.service.channel.forget(f)
                f.cancel()
            self.send_failures += 1
            self.warn_once(f"ack:{m.uuid}", "no acknowledgement from %s within %.1fs (%s): "
                           "carrying on", m.route, self.cfg.ack_timeout, why)
        return ok

    async def start(self, now: float) -> None:
        await self.service.start()

    async def stop(self, now: float) -> None:
        await self.service.stop()

    def stats(self) -> dict[str, Any]:
        d = super().stats()
        d.update({"members": [m.route for m in self.members()], "rebound": self.rebound,
                  "receiver": f"{self.service.channel.host}:{self.service.channel.port}",
                  "send_failures": self.send_failures,
                  "frames_rejected": self.service.codec.rejected,
                  "heartbeats_rejected": self.service.rejected_hb})
        return d

    @staticmethod
    def now() -> float:
        return time.time()
