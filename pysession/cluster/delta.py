"""DeltaManager: every session on every node (Tomcat's DeltaManager, all-to-all, ≤ 4 nodes).

At request end a session that changed sends a DELTA (set / remove attribute, max-inactive,
principal; see `merge.py` for how concurrent deltas merge); a new session sends CREATED with
its whole state, on the same ordered stream, so the attributes of the creating request are
never applied before the session exists (Tomcat's 20-33 % loss with async send); a clean
session used on a node that is not its primary sends ACCESSED; expiry and id changes are
broadcast (EXPIRED, CHANGE_SESSION_ID). Send modes:

* `async` (Tomcat 8): written to each member's ordered stream, the response does not wait;
  a crash loses only what was in flight.
* `ack` (2): the response waits until every member has *received* the messages.
* `sync-ack` (2|4): the response waits until every member has *applied* them.

A joining node asks the oldest member for every session (GET_ALL_SESSIONS), queues the live
messages meanwhile and applies them afterwards (the version vectors skip those already in the
snapshot), bounded by `state_transfer_timeout`. Copies expire after 2x max-inactive on nodes
that are not the session's primary. JvmRouteBinder: a request whose id names another node,
for a session this node has, gets `ID.thisnode` (cookie re-issued, change broadcast).

`lock = "session"` (for non-sticky balancers) serialises the requests of one session across
the cluster: the oldest member grants per-session locks, the holder's changes are sent
sync-ack before its lock is released, so the next holder reads them. Each lock request carries
a token: a requester that stops waiting after `lock_timeout` withdraws exactly that request
(granted meanwhile or not), and a grant expires after `lock_lease` (a hung holder).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pycommon.wire import WireError
from pysession.cluster.base import (
    SEND_MODES,
    ReplicatedManager,
    base_id,
    replicated_options,
)
from pysession.cluster.locks import LockKey, SessionLocks
from pysession.cluster.membership import Member, MemberEvent
from pysession.cluster.merge import apply_delta, load_snapshot, make_delta, snapshot, state
from pysession.manager import RequestInfo
from pysession.options import ManagerEnv, Options
from pysession.session import Session

log = logging.getLogger("pysession.cluster.delta")

LIVE = ("created", "delta", "accessed", "expired", "chid", "relay")
RELAY_DEPTH = 3
TRANSFER_CHUNK = 500


class DeltaManager(ReplicatedManager):
    kind = "delta"

    def __init__(self, *args: Any, send: str = "async", lock: str = "none",
                 state_transfer: bool = True, lock_timeout: float = 10.0,
                 lock_lease: float = 30.0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if send not in SEND_MODES:
            raise ValueError(f"send must be one of {SEND_MODES}")
        self.send_mode = send
        self.lock_mode = lock
        self.lock_timeout = lock_timeout
        self.lock_lease = lock_lease
        self.state_transfer = state_transfer
        self.transferring = False
        self.queued: list[tuple[str, dict[str, Any]]] = []
        self.locks = SessionLocks(lock_lease)      # used when this node is the coordinator
        self._lock_waits: dict[tuple[str, LockKey], Callable[[], object]] = {}
        self._lock_tokens = itertools.count(1)
        self._lease_timer: asyncio.TimerHandle | None = None
        self.lock_counts = {"granted": 0, "not_granted": 0, "leases_expired": 0}
        self.counts = {"sent": 0, "applied": 0, "duplicate": 0, "gap": 0, "unknown": 0,
                       "transferred": 0}
        self.transfer_seconds: float | None = None

    @classmethod
    def from_options(cls, opts: Options, env: ManagerEnv) -> DeltaManager:
        lease = opts.number("lock_lease", 30.0)
        if lease <= 0:
            raise opts.error("lock_lease: must be > 0 (seconds)", "lock_lease", lease)
        return cls(**replicated_options(opts, env),
                   lock=opts.choice("lock", ("none", "session"), "none"),
                   lock_timeout=opts.number("lock_timeout", 10.0), lock_lease=lease,
                   state_transfer=opts.boolean("state_transfer", True))

    @property
    def me(self) -> str:
        return self.service.uuid

    # -- request hooks ----------------------------------------------------------------
    async def begin_request(self, sid: str, now: float, info: RequestInfo) -> Session | None:
        held: tuple[str, Member | None, int] | None = None
        if self.lock_mode == "session" and base_id(sid) in self.sessions:
            held = await self._lock(base_id(sid))
            now = time.time()
        s = self.find(sid, now)
        if s is None:
            if held is not None:
                await self._unlock(*held)
            return None
        if held is not None:
            s.notes["locked"] = held
        primary = self.is_primary(s)
        if not primary and self.jvm_route_binder and self.route:
            self.rebind(s)
        elif not primary:
            s.notes["nonprimary"] = True
        s.access(now)
        return s

    async def end_request(self, session: Session, now: float, info: RequestInfo) -> None:
        held = session.notes.pop("locked", None)
        try:
            msgs = self.outgoing(session, now)
            if not session.valid:
                self.expire_local(session, now)
            else:
                self.commit(session, now)
            deferred = session.notes.pop("deferred", None) if session.in_use <= 1 else None
            if deferred and session.valid:
                for m in deferred:
                    self.counts[apply_delta(session, m["d"], self.policy)] += 1
                    self.remember(session, str(m["d"]["o"]), m)
            if msgs:
                await self.send(msgs, force_sync=held is not None)
        finally:
            if held is not None:
                await self._unlock(*held)

    # -- sans-IO: what to send --------------------------------------------------------
    def outgoing(self, s: Session, now: float) -> list[dict[str, Any]]:
        """The messages a finished request produces (in order)."""
        out: list[dict[str, Any]] = []
        old = s.notes.pop("old_id", None)
        created = s.is_new
        if not s.valid:
            if not created:
                out.append({"t": "expired", "id": old or s.id})
            return out
        if old is not None and not created:
            out.append({"t": "chid", "old": old, "new": s.id})
        if created:
            st = state(s)
            st.lam += 1
            st.vv[self.me] = st.vv.get(self.me, 0) + 1
            st.rebase(s.attributes)
            out.append({"t": "created", "o": self.me, "s": snapshot(s, self.serializer)})
        else:
            d = make_delta(s, self.me, self.serializer)
            if d is not None:
                out.append({"t": "delta", "id": s.id, "d": d})
            elif s.notes.pop("nonprimary", False) and old is None:
                out.append({"t": "accessed", "id": s.id, "ta": s.this_accessed})
        s.notes.pop("nonprimary", None)
        return out

    async def send(self, msgs: list[dict[str, Any]], force_sync: bool = False) -> None:
        self.counts["sent"] += len(msgs)
        mode = "sync-ack" if force_sync else self.send_mode
        if mode == "async":
            for m in msgs:
                self.broadcast(m)
            return
        for m in msgs[:-1]:
            self.broadcast(m)
        await self.broadcast_wait(msgs[-1], applied=mode == "sync-ack")

    def expire_idle(self, s: Session, now: float) -> None:
        """Background expiry: the primary tells the others; a copy only forgets."""
        primary = self.is_primary(s)
        self.expire_local(s, now)
        if primary:
            self.broadcast({"t": "expired", "id": s.id})

    # -- incoming ---------------------------------------------------------------------
    def on_cluster_message(self, sender: Member | None, sender_uuid: str, msg: dict[str, Any],
                           reply: Any) -> None:
        t = msg.get("t")
        ack = msg.get("ack")
        if ack == "recv":
            reply(True)
        if t in LIVE and self.transferring:
            self.queued.append((sender_uuid, msg))
            if ack == "applied":
                reply(True)
            return
        if t in LIVE:
            try:
                self.apply(msg, time.time())
            except (WireError, KeyError, TypeError, ValueError) as exc:
                log.warning("bad %s message from %s: %s", t, sender_uuid, exc)
        elif t == "getall":
            self._send_all(reply, time.time())
            return
        elif t == "lock":
            self._coord_acquire(str(msg.get("id")), (sender_uuid, _token(msg)),
                                lambda: reply(True))
            return
        elif t == "unlock":       # a release, or a requester giving up (granted or not)
            self._coord_release(str(msg.get("id")), (sender_uuid, _token(msg)))
        if ack == "applied":
            reply(True)

    def apply(self, msg: dict[str, Any], now: float) -> None:
        """Apply one live message (sans-IO given `now`)."""
        t = msg["t"]
        if t == "created":
            s = load_snapshot(msg["s"], self.serializer, self.distributable)
            have = self.sessions.get(base_id(s.id))
            if have is None:
                s.events = self.events
                self.sessions[base_id(s.id)] = s
                self.counts["applied"] += 1
                if self.events:
                    self.events.session_created(s)
            else:
                self.counts["duplicate"] += 1
            self.remember(have or s, str(msg.get("o", "")), msg)
            return
        if t == "relay":
            for m in msg.get("msgs") or []:
                if isinstance(m, dict) and m.get("t") in ("created", "delta"):
                    self.apply(m, now)
            return
        sid = str(msg["id"]) if t != "chid" else str(msg["old"])
        found = self.sessions.get(base_id(sid))
        if found is None:
            self.counts["unknown"] += 1
            return
        s = found
        if t == "delta":
            if s.in_use > 0:
                # a request here is between reading and writing this session: its delta
                # must be computed against what it read, so remote ones wait for its end
                s.notes.setdefault("deferred", []).append(msg)
                return
            self.counts[apply_delta(s, msg["d"], self.policy)] += 1
            self.remember(s, str(msg["d"]["o"]), msg)
            if s.id != sid and s.in_use == 0:
                s.id = sid  # the sender is where the session lives now
        elif t == "accessed":
            ta = float(msg["ta"])
            if ta > s.this_accessed:
                s.last_accessed, s.this_accessed = s.this_accessed, ta
        elif t == "expired":
            if s.in_use == 0 or base_id(s.id) == base_id(sid):
                self.expire_local(s, now)
        elif t == "chid":
            self.rekey(sid, str(msg["new"]))

    def _send_all(self, reply: Any, now: float) -> None:
        """GET_ALL_SESSIONS: every live session, in parts (the joiner loads as they come)."""
        live = [s for s in self.sessions.values() if s.valid and not self.expired(s, now)]
        for i in range(0, len(live), TRANSFER_CHUNK):
            reply([snapshot(s, self.serializer) for s in live[i:i + TRANSFER_CHUNK]], True)
        reply({"count": len(live)})

    def _load_part(self, part: Any) -> None:
        if not isinstance(part, list):
            return
        for snap in part:
            try:
                s = load_snapshot(snap, self.serializer, self.distributable)
            except (WireError, KeyError, TypeError) as exc:
                log.warning("bad session in state transfer: %s", exc)
                continue
            s.events = self.events
            self.sessions[base_id(s.id)] = s       # the snapshot wins over anything earlier
            self.counts["transferred"] += 1

    def remember(self, s: Session, origin: str, msg: dict[str, Any]) -> None:
        """Keep the last few messages each origin sent about `s`: if that origin crashes
        after reaching only some members, the survivors relay them (deduplicated by the
        version vectors), so the cluster agrees on what the crash left behind."""
        recv = s.notes.setdefault("recv", {})
        dq = recv.get(origin)
        if dq is None:
            dq = recv[origin] = deque(maxlen=RELAY_DEPTH)
        dq.append(msg)

    def on_member_event(self, event: MemberEvent) -> None:
        if event.kind not in ("dropped", "left"):
            return
        gone = event.member.uuid
        if self.locks.holders:      # coordinator: its locks and waits go (waits need a lock)
            for key in [k for k in self._lock_waits if k[1][0] == gone]:
                del self._lock_waits[key]
            for sid, nxt in self.locks.release_all(gone, self._lock_clock()):
                self._granted(sid, nxt)
        if event.kind != "dropped":
            return
        relayed = 0
        for s in self.sessions.values():
            dq = s.notes.get("recv", {}).pop(gone, None)
            if dq:
                self.broadcast({"t": "relay", "msgs": list(dq)})
                relayed += 1
        if relayed:
            log.info("%s: relayed the last messages of %s for %d sessions", self.context,
                     event.member.route, relayed)

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, now: float) -> None:
        # queue live messages from the moment the receiver opens: nothing (a relay from a
        # dead incarnation of this node, an early delta) may land before the snapshot
        self.transferring = self.state_transfer
        try:
            await super().start(now)
            if self.state_transfer:
                await self._transfer()
        finally:
            queued, self.queued = self.queued, []
            self.transferring = False
            now = time.time()
            for _, msg in queued:
                try:
                    self.apply(msg, now)
                except (WireError, KeyError, TypeError, ValueError) as exc:
                    log.warning("bad queued message: %s", exc)

    async def _transfer(self) -> None:
        await self.service.wait_for_members(self.cfg.join_wait)
        assert self.service.membership is not None
        oldest = self.service.membership.oldest()
        if oldest is None:
            log.info("%s: no older member: starting with no sessions", self.context)
            return
        t0 = time.monotonic()
        try:
            res = await self.service.ask(oldest, {"t": "getall", "ctx": self.context},
                                         self.cfg.state_transfer_timeout, self._load_part)
            log.info("%s: received %d sessions from %s in %.2fs", self.context,
                     res.get("count", 0) if isinstance(res, dict) else 0, oldest.route,
                     time.monotonic() - t0)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("%s: state transfer from %s failed (%s); serving with the %d sessions "
                        "received", self.context, oldest.route, exc.__class__.__name__,
                        len(self.sessions))
        finally:
            self.transfer_seconds = time.monotonic() - t0   # GET_ALL_SESSIONS to the last part

    async def stop(self, now: float) -> None:
        if self._lease_timer is not None:
            self._lease_timer.cancel()
            self._lease_timer = None
        await super().stop(now)

    def stats(self) -> dict[str, Any]:
        d = super().stats()
        d.update({"send": self.send_mode, "replication": dict(self.counts),
                  "transfer_seconds": self.transfer_seconds})
        if self.lock_mode == "session":
            coord = self._coordinator() if self.service.membership is not None else None
            d["lock"] = {**self.lock_counts,
                         "coordinator": coord.route if coord is not None else self.route,
                         "held": len(self.locks.holders),
                         "waiting": sum(len(q) for q in self.locks.waiters.values())}
        return d

    # -- cluster-wide session lock ----------------------------------------------------
    def _coordinator(self) -> Member | None:
        """The oldest member grants locks (None: this node is the oldest)."""
        assert self.service.membership is not None
        return self.service.membership.oldest()

    async def _lock(self, sid: str) -> tuple[str, Member | None, int] | None:
        coord = self._coordinator()
        tok = next(self._lock_tokens)
        try:
            if coord is None:
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._coord_acquire(sid, (self.me, tok), functools.partial(_resolve, fut))
                await asyncio.wait_for(fut, self.lock_timeout)
            else:
                await self.service.ask(coord, {"t": "lock", "ctx": self.context, "id": sid,
                                               "k": tok}, self.lock_timeout)
        except (TimeoutError, ConnectionError, asyncio.CancelledError) as exc:
            # withdraw this request: the coordinator drops it from the queue or, if the
            # grant crossed our timeout, passes the lock on (never held by nobody)
            self.lock_counts["not_granted"] += 1
            await self._unlock(sid, coord, tok)
            self.warn_once("lock", "session lock for %s not granted (%s): going on unlocked",
                           sid, exc.__class__.__name__)
            return None
        self.lock_counts["granted"] += 1
        return (sid, coord, tok)

    async def _unlock(self, sid: str, coord: Member | None, tok: int) -> None:
        if coord is None:
            self._coord_release(sid, (self.me, tok))
        else:
            self.service.post(coord, {"t": "unlock", "ctx": self.context, "id": sid,
                                      "k": tok})

    # the coordinator's side: SessionLocks decides, this shell tells the new holders
    @staticmethod
    def _lock_clock() -> float:
        return asyncio.get_running_loop().time()    # the clock of call_at (lease timer)

    def _coord_acquire(self, sid: str, key: LockKey, grant: Callable[[], object]) -> None:
        if self.locks.acquire(sid, key, self._lock_clock()):
            self._arm_lease()
            grant()
        else:
            self._lock_waits[(sid, key)] = grant

    def _coord_release(self, sid: str, key: LockKey) -> None:
        self._lock_waits.pop((sid, key), None)
        self._granted(sid, self.locks.release(sid, key, self._lock_clock()))

    def _granted(self, sid: str, key: LockKey | None) -> None:
        if key is None:
            return
        self._arm_lease()
        grant = self._lock_waits.pop((sid, key), None)
        if grant is not None:
            grant()

    def _arm_lease(self) -> None:
        """One timer, at the earliest lease end (no polling while no lock is held)."""
        due = self.locks.next_deadline()
        if due is None:
            return
        if self._lease_timer is not None:
            if self._lease_timer.when() <= due:
                return
            self._lease_timer.cancel()
        self._lease_timer = asyncio.get_running_loop().call_at(due, self._expire_leases)

    def _expire_leases(self) -> None:
        self._lease_timer = None
        for sid, old, nxt in self.locks.expire(self._lock_clock()):
            self.lock_counts["leases_expired"] += 1
            m = self.service.member(old[0]) if old[0] != self.me else None
            self.warn_once("lease", "session lock for %s held by %s for more than lock_lease "
                           "(%.1fs): released", sid,
                           self.route if old[0] == self.me else (m.route if m else old[0]),
                           self.lock_lease)
            self._granted(sid, nxt)
        self._arm_lease()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _token(msg: dict[str, Any]) -> int:
    tok = msg.get("k")
    return tok if isinstance(tok, int) and not isinstance(tok, bool) else 0
