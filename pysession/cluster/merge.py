"""The replication state of a session and the merge rule (sans-IO).

Tomcat's DeltaManager replays attribute sets in whatever order they arrive and the last writer
wins; two requests on one session handled by two nodes at once overwrite each other. Here
every session carries, in `session.notes["repl"]` (never serialised with the session):

* `vv` — per origin node, the number of that node's deltas applied (a version vector). Each
  delta carries its origin's next number; one already applied is skipped, so a delta that is
  both in a state-transfer snapshot and in the live queue is applied once.
* `lam` — a Lamport clock; `ver[name] = (lamport, origin)` is the version of each attribute.
* `base[name]` — the value of an *integer* attribute as last shipped (or received).

**The merge rule, per attribute:**

1. *Integers are counters.* When an attribute held an integer (or nothing) at the last ship
   and holds an integer now, the delta carries the *difference* (`("n", name, diff, value)`)
   and every receiver adds it to its own value. Additions commute, so concurrent increments
   on different nodes all survive and every node converges to the same sum (the probe's
   `incr`, counters, quotas). The price: two concurrent *plain sets* of an integer also add
   up (set 5 and set 7 from 3 → 9); use a string or a one-key dict when you mean a label.
2. *Everything else is last-writer-wins by version*: sets and removes carry `(lamport,
   origin)`; a receiver applies one only when it is newer than the version it holds, so all
   nodes keep the same winner whatever the arrival order (ties broken by origin id).
3. Metadata (max-inactive, principal) follows rule 2; the access time takes the maximum.

A mutation without set (`s.get_attribute("cart").append(x)`) is not in `dirty` and is not
replicated; call set_attribute again (docs/clustering.md).
"""

from __future__ import annotations

from typing import Any

from pycommon.wire import TypePolicy
from pysession.serializer import SessionSerializer
from pysession.session import Session

NONINT = "~"          # base marker: the attribute held a non-integer at the last ship
_ABSENT: Any = object()


def is_int(v: Any) -> bool:
    return type(v) is int


class ReplState:
    __slots__ = ("base", "lam", "ver", "vv")

    def __init__(self) -> None:
        self.vv: dict[str, int] = {}
        self.lam = 0
        self.ver: dict[str, tuple[int, str]] = {}
        self.base: dict[str, Any] = {}

    def to_wire(self) -> dict[str, Any]:
        return {"vv": dict(self.vv), "lam": self.lam,
                "ver": {k: [v[0], v[1]] for k, v in self.ver.items()}}

    @classmethod
    def from_wire(cls, d: Any, attributes: dict[str, Any]) -> ReplState:
        st = cls()
        if isinstance(d, dict):
            st.vv = {str(k): int(v) for k, v in (d.get("vv") or {}).items()}
            st.lam = int(d.get("lam") or 0)
            st.ver = {str(k): (int(v[0]), str(v[1])) for k, v in (d.get("ver") or {}).items()}
        st.rebase(attributes)
        return st

    def rebase(self, attributes: dict[str, Any]) -> None:
        self.base = {k: (v if is_int(v) else NONINT) for k, v in attributes.items()}


def state(session: Session) -> ReplState:
    st = session.notes.get("repl")
    if not isinstance(st, ReplState):
        st = session.notes["repl"] = ReplState()
    return st


def attrs(session: Session) -> dict[str, Any]:
    """The session's live attribute dict: replicated changes are applied here directly, so
    they do not mark the session dirty (which would echo them back)."""
    return session._attributes


# -- outgoing --------------------------------------------------------------------------
def make_delta(session: Session, origin: str, ser: SessionSerializer,
               force: bool = False) -> dict[str, Any] | None:
    """The delta of what changed since the last ship, or None when nothing did."""
    st = state(session)
    a = attrs(session)
    ops: list[list[Any]] = []
    stamp = (st.lam + 1, origin)
    for name in sorted(session.dirty):
        cur = a.get(name, _ABSENT)
        b = st.base.get(name, _ABSENT)
        if is_int(cur) and (b is _ABSENT or is_int(b)):
            diff = cur - (b if b is not _ABSENT else 0)
            if diff == 0 and b is not _ABSENT:
                continue
            ops.append(["n", name, diff, cur])
            st.base[name] = cur
        elif cur is _ABSENT:
            ops.append(["r", name])
            st.base.pop(name, None)
        else:
            ops.append(["s", name, ser.dumps_value(cur)])
            st.base[name] = NONINT
        st.ver[name] = stamp
    meta: dict[str, Any] = {}
    if "max_inactive" in session.dirty_meta:
        meta["mi"] = session.max_inactive
        st.ver["\0mi"] = stamp
    if "principal" in session.dirty_meta:
        meta["p"] = session.principal
        st.ver["\0p"] = stamp
    if not ops and not meta and not force:
        return None
    st.lam += 1
    n = st.vv.get(origin, 0) + 1
    st.vv[origin] = n
    return {"o": origin, "n": n, "l": st.lam, "ops": ops, "meta": meta,
            "ta": session.this_accessed}


def snapshot(session: Session, ser: SessionSerializer) -> dict[str, Any]:
    """The whole session and its replication state (CREATED, state transfer, backup)."""
    return {"rec": ser.dumps(session), "repl": state(session).to_wire()}


def load_snapshot(snap: Any, ser: SessionSerializer, distributable: bool) -> Session:
    """Raises WireError on a malformed snapshot."""
    s = ser.loads(snap["rec"], distributable)
    s.notes["repl"] = ReplState.from_wire(snap.get("repl"), attrs(s))
    return s


# -- incoming --------------------------------------------------------------------------
def apply_delta(session: Session, d: dict[str, Any], policy: TypePolicy) -> str:
    """Apply a delta from another node. Returns "applied", "duplicate" or "gap" (applied,
    but deltas from that origin were missed — a connection dropped while they were in
    flight)."""
    st = state(session)
    origin, n, lam = str(d["o"]), int(d["n"]), int(d["l"])
    have = st.vv.get(origin, 0)
    if n <= have:
        return "duplicate"
    result = "applied" if n == have + 1 else "gap"
    st.vv[origin] = n
    stamp = (lam, origin)
    a = attrs(session)
    for op in d.get("ops") or []:
        kind, name = op[0], str(op[1])
        newer = stamp > st.ver.get(name, (0, ""))
        if kind == "n":
            diff, value = int(op[2]), int(op[3])
            cur = a.get(name, _ABSENT)
            if cur is _ABSENT or is_int(cur):
                a[name] = (0 if cur is _ABSENT else cur) + diff
                b = st.base.get(name, _ABSENT)
                st.base[name] = (b if is_int(b) else 0) + diff
            elif newer:
                a[name] = value
                st.base[name] = value
            if newer:
                st.ver[name] = stamp
        elif kind == "s":
            if newer:
                v = policy.unpackb(op[2])
                a[name] = v
                st.base[name] = v if is_int(v) else NONINT
                st.ver[name] = stamp
        elif kind == "r":
            if newer:
                a.pop(name, None)
                st.base.pop(name, None)
                st.ver[name] = stamp
    meta = d.get("meta") or {}
    for key, vkey in (("mi", "\0mi"), ("p", "\0p")):
        if key in meta and stamp > st.ver.get(vkey, (0, "")):
            st.ver[vkey] = stamp
            if key == "mi":
                session.max_inactive = int(meta[key])
            else:
                session.principal = meta[key]
    ta = d.get("ta")
    if isinstance(ta, int | float) and ta > session.this_accessed:
        session.last_accessed, session.this_accessed = session.this_accessed, float(ta)
    st.lam = max(st.lam, lam)
    return result
