"""BackupManager: one primary and one backup copy per session (Tomcat's BackupManager over a
LazyReplicatedMap), for clusters beyond the ≤ 4 nodes all-to-all replication suits.

* The creating node is the session's **primary** and picks one **backup** round-robin among
  the other members; it sends the backup the whole session (at creation and whenever a
  request changed it) and tells every other member a **proxy** entry: where primary and
  backup live.
* A request on a node holding only the proxy **fetches** the session (from the backup, else
  the primary) and makes this node the primary: the old backup stays backup (or the old
  primary becomes it), everyone learns the new map, the old primary drops to a proxy.
* A request on the backup node promotes it the same way.
* A lost backup is replaced (the primary picks another and sends it a copy); a lost primary
  is replaced by its backup, which picks a new backup.
* A node starting late asks the oldest member for the map (every id with its primary and
  backup), so it can fetch any session on first use.

Ids follow JvmRouteBinder: the node that becomes primary gives the id its route.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pycommon.wire import WireError
from pysession.cluster.base import SEND_MODES, ReplicatedManager, base_id, replicated_options
from pysession.cluster.membership import Member, MemberEvent
from pysession.cluster.merge import load_snapshot, snapshot
from pysession.manager import RequestInfo
from pysession.options import ManagerEnv, Options
from pysession.session import Session

log = logging.getLogger("pysession.cluster.backup")


class BackupManager(ReplicatedManager):
    kind = "backup"

    def __init__(self, *args: Any, send: str = "async", **kw: Any) -> None:
        super().__init__(*args, **kw)
        if send not in SEND_MODES:
            raise ValueError(f"send must be one of {SEND_MODES}")
        self.send_mode = send
        #: base id → [full id, primary uuid, backup uuid | None] for sessions held elsewhere
        self.proxies: dict[str, list[Any]] = {}
        self.rr = 0
        self.counts = {"fetched": 0, "promoted": 0, "backups_sent": 0, "replaced_backup": 0,
                       "lost": 0}

    @classmethod
    def from_options(cls, opts: Options, env: ManagerEnv) -> BackupManager:
        return cls(**replicated_options(opts, env))

    @property
    def me(self) -> str:
        return self.service.uuid

    # -- roles ------------------------------------------------------------------------
    def is_primary(self, s: Session) -> bool:
        return s.notes.get("primary", self.me) == self.me

    def pick_backup(self, exclude: set[str]) -> Member | None:
        """Round robin over the other live members (Tomcat's default backup selection)."""
        cands = [m for m in self.members() if m.uuid not in exclude]
        if not cands:
            return None
        self.rr += 1
        return cands[self.rr % len(cands)]

    def entry(self, s: Session) -> dict[str, Any]:
        return {"id": s.id, "primary": s.notes.get("primary", self.me),
                "backup": s.notes.get("backup")}

    # -- request hooks ----------------------------------------------------------------
    async def begin_request(self, sid: str, now: float, info: RequestInfo) -> Session | None:
        bid = base_id(sid)
        s = self.find(sid, now)
        if s is None and bid in self.proxies:
            s = await self.fetch(bid, now)
        if s is None:
            return None
        if not self.is_primary(s):
            self.become_primary(s)
        elif self.jvm_route_binder and self.route and not s.id.endswith("." + self.route):
            self.rebind(s)
            s.notes["dirty_map"] = True
        s.access(now)
        return s

    def become_primary(self, s: Session) -> None:
        """This node serves the session now: it is primary, the backup is kept when it is
        another node, else the old primary backs it up."""
        old_primary = s.notes.get("primary")
        old_backup = s.notes.get("backup")
        s.notes["primary"] = self.me
        live = {m.uuid for m in self.members()}
        if old_backup in live and old_backup != self.me:
            s.notes["backup"] = old_backup
        elif old_primary in live and old_primary != self.me:
            s.notes["backup"] = old_primary
        else:
            b = self.pick_backup({self.me})
            s.notes["backup"] = b.uuid if b is not None else None
        if self.jvm_route_binder and self.route:
            self.rebind(s)
        s.notes["dirty_map"] = True
        s.notes["dirty_copy"] = True
        self.counts["promoted"] += 1

    async def fetch(self, bid: str, now: float) -> Session | None:
        sid, primary, backup = self.proxies[bid]
        for uuid in (backup, primary):
            m = self.service.member(uuid) if uuid else None
            if m is None:
                continue
            try:
                snap = await self.service.ask(m, {"t": "fetch", "ctx": self.context,
                                                  "id": sid}, self.cfg.ack_timeout)
            except (TimeoutError, ConnectionError) as exc:
                self.warn_once(f"fetch:{uuid}", "fetching %s from %s failed: %s", sid,
                               m.route, exc.__class__.__name__)
                continue
            if not snap:
                continue
            try:
                s = load_snapshot(snap, self.serializer, self.distributable)
            except (WireError, KeyError, TypeError) as exc:
                log.warning("bad session fetched from %s: %s", m.route, exc)
                continue
            s.events = self.events
            s.notes["primary"], s.notes["backup"] = primary, backup
            self.proxies.pop(bid, None)
            self.sessions[bid] = s
            self.counts["fetched"] += 1
            return s
        self.proxies.pop(bid, None)
        self.counts["lost"] += 1
        return None

    async def end_request(self, session: Session, now: float, info: RequestInfo) -> None:
        old = session.notes.pop("old_id", None)
        if not session.valid:
            self.expire_local(session, now)
            if not session.is_new:
                self.broadcast({"t": "expired", "id": old or session.id})
            return
        new = session.is_new
        changed = new or session.is_dirty or session.notes.pop("dirty_copy", False)
        map_changed = new or session.notes.pop("dirty_map", False) or old is not None
        self.commit(session, now)
        if new:
            b = self.pick_backup({self.me})
            session.notes["primary"] = self.me
            session.notes["backup"] = b.uuid if b is not None else None
        if old is not None and base_id(old) != base_id(session.id):
            self.broadcast({"t": "chid", "old": old, "new": session.id})
        await self.replicate(session, changed, map_changed)

    async def replicate(self, s: Session, copy: bool, announce: bool) -> None:
        """Send the backup its copy and (when the map changed) everyone the new entry."""
        entry = self.entry(s)
        backup = self.service.member(entry["backup"]) if entry["backup"] else None
        if announce:
            for m in self.members():
                if backup is None or m.uuid != backup.uuid:
                    self.service.post(m, {"t": "map", "ctx": self.context, **entry})
        if backup is None or not copy:
            return
        msg = {"t": "backup", "ctx": self.context, "s": snapshot(s, self.serializer), **entry}
        self.counts["backups_sent"] += 1
        if self.send_mode == "async":
            self.service.post(backup, msg)
            return
        msg["ack"] = "applied" if self.send_mode == "sync-ack" else "recv"
        try:
            await self.service.ask(backup, msg, self.cfg.ack_timeout)
        except (TimeoutError, ConnectionError) as exc:
            self.send_failures += 1
            self.warn_once(f"ack:{backup.uuid}", "backup %s did not acknowledge (%s)",
                           backup.route, exc.__class__.__name__)

    def expire_idle(self, s: Session, now: float) -> None:
        primary = self.is_primary(s)
        self.expire_local(s, now)
        if primary:
            self.broadcast({"t": "expired", "id": s.id})

    def limit(self, s: Session) -> float:
        return s.max_inactive if self.is_primary(s) else 2 * s.max_inactive

    # -- incoming ---------------------------------------------------------------------
    def on_cluster_message(self, sender: Member | None, sender_uuid: str, msg: dict[str, Any],
                           reply: Any) -> None:
        ack = msg.get("ack")
        if ack == "recv":
            reply(True)
        try:
            result = self.apply(msg, time.time())
        except (WireError, KeyError, TypeError, ValueError) as exc:
            log.warning("bad %s message from %s: %s", msg.get("t"), sender_uuid, exc)
            result = None
        if msg.get("t") in ("fetch", "getmap") or ack == "applied":
            reply(result if msg.get("t") in ("fetch", "getmap") else True)

    def apply(self, msg: dict[str, Any], now: float) -> Any:
        """One message from another member (sans-IO given `now`); returns a reply body."""
        t = msg["t"]
        if t == "backup":
            s = load_snapshot(msg["s"], self.serializer, self.distributable)
            s.events = self.events
            s.notes["primary"], s.notes["backup"] = msg["primary"], msg["backup"]
            bid = base_id(s.id)
            self.proxies.pop(bid, None)
            have = self.sessions.get(bid)
            if have is not None and have.in_use:
                return None      # a request here holds it: the next copy will do
            self.sessions[bid] = s
        elif t == "map":
            self.set_entry(str(msg["id"]), msg["primary"], msg.get("backup"))
        elif t == "fetch":
            held = self.sessions.get(base_id(str(msg["id"])))
            return snapshot(held, self.serializer) if held is not None and held.valid else None
        elif t == "expired":
            bid = base_id(str(msg["id"]))
            self.proxies.pop(bid, None)
            gone = self.sessions.get(bid)
            if gone is not None and gone.in_use == 0:
                self.expire_local(gone, now)
        elif t == "chid":
            old, new = base_id(str(msg["old"])), str(msg["new"])
            if old in self.proxies:
                self.proxies[base_id(new)] = [new, *self.proxies.pop(old)[1:]]
            else:
                self.rekey(str(msg["old"]), new)
        elif t == "getmap":
            return [[e["id"], e["primary"], e["backup"]] for e in
                    (self.entry(s) for s in self.sessions.values() if s.valid)] + \
                [list(v) for v in self.proxies.values()]
        return None

    def set_entry(self, sid: str, primary: str, backup: str | None) -> None:
        bid = base_id(sid)
        s = self.sessions.get(bid)
        if primary == self.me:
            return
        if backup == self.me and s is not None:
            s.notes["primary"], s.notes["backup"] = primary, backup
            s.id = sid
            return
        if s is not None:
            if s.in_use:
                return
            del self.sessions[bid]          # moved away: keep only where it lives
        self.proxies[bid] = [sid, primary, backup]

    # -- membership -------------------------------------------------------------------
    def on_member_event(self, event: MemberEvent) -> None:
        if event.kind not in ("dropped", "left"):
            return
        gone = event.member.uuid
        for s in list(self.sessions.values()):
            primary, backup = s.notes.get("primary", self.me), s.notes.get("backup")
            if primary == self.me and backup == gone:
                b = self.pick_backup({self.me, gone})
                s.notes["backup"] = b.uuid if b is not None else None
                self.counts["replaced_backup"] += 1
                asyncio.get_running_loop().create_task(self.replicate(s, True, True))
            elif primary == gone and backup == self.me:
                s.notes["primary"] = self.me
                b = self.pick_backup({self.me, gone})
                s.notes["backup"] = b.uuid if b is not None else None
                self.counts["promoted"] += 1
                asyncio.get_running_loop().create_task(self.replicate(s, True, True))
        for entry in self.proxies.values():
            if entry[1] == gone:
                entry[1], entry[2] = entry[2], None
            elif entry[2] == gone:
                entry[2] = None

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, now: float) -> None:
        await super().start(now)
        await self.service.wait_for_members(self.cfg.join_wait)
        assert self.service.membership is not None
        oldest = self.service.membership.oldest()
        if oldest is None:
            return
        try:
            entries = await self.service.ask(oldest, {"t": "getmap", "ctx": self.context},
                                             self.cfg.state_transfer_timeout)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("%s: map transfer from %s failed (%s)", self.context, oldest.route,
                        exc.__class__.__name__)
            return
        for e in entries or []:
            if isinstance(e, list) and len(e) == 3 and e[1] != self.me:
                self.proxies.setdefault(base_id(str(e[0])), [str(e[0]), e[1], e[2]])
        log.info("%s: map of %d sessions received from %s", self.context,
                 len(self.proxies), oldest.route)

    def stats(self) -> dict[str, Any]:
        d = super().stats()
        d.update({"send": self.send_mode, "proxies": len(self.proxies),
                  "primary": sum(1 for s in self.sessions.values() if self.is_primary(s)),
                  "backup": dict(self.counts)})
        return d
