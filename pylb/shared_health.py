"""nginx's `zone` for passive health: `fails`/`checked`/`accessed` shared by `--workers`.

Without it each worker counts `max_fails` on its own (nginx without `zone`), so a dead
member costs one failed attempt per worker and a worker that never saw the failure keeps
sending to it. With it, a failure seen by any worker counts for all, a member one worker
marked failed is skipped by every worker until `fail_timeout` passes, and then exactly one
worker gets the trial request.

The board is one small file in the run directory (`RUN/health.shm`), mapped by every process
(`mmap`, MAP_SHARED): a 64-byte header, then one 64-byte slot per (upstream, member, address):

    header  magic "PYLBPH01" | gen u64 | retired u64 | count u64
    slot    key 16 bytes (blake2b of upstream NUL member NUL host:port)
            | seq u64 | fails u64 | checked f64 | accessed f64

Times are the event loop's clock (`loop.time()`, CLOCK_MONOTONIC on Linux for asyncio and
uvloop alike), which is one clock for every process on the machine, so a `checked` written
by one worker means the same instant to the others.

* **Reads are lock-free and cheap.** `gen` moves on every write; a balancer compares it with
  the value it saw last (one integer compare per pick) and only then copies its members'
  slots into its local `Peer` fields (`pull`). Each slot carries a sequence number (odd while
  being written), so a reader never takes a torn record.
* **Writes are rare and locked** (`flock` on the file): a failure (`fails += 1` on the
  board's value, not the local one), the success that resets `fails` after a trial (only if
  the board still says `accessed < checked`, so it cannot wipe a newer failure from another
  worker), the trial itself (`claim`: compare-and-set of `checked`, so one worker wins it),
  and an active check's "member is back". A plain success writes nothing.
* **Layout belongs to the master.** It creates the file at start and re-lays it out on every
  SIGHUP reload (`layout`): slots are keyed by name and address, so members that stay keep
  their state, removed ones vanish, added ones start clean (a member whose address changed
  starts clean too, like `UpstreamGroup.carry_over`). The new file replaces the old one
  atomically; the old one is marked `retired` under its lock, so a reader or writer still on
  it notices and re-opens the path before going on. A restarted worker just opens the file
  and pulls: nothing is lost.

What stays per worker: `effective` (the weight lowered after a failure and grown back) and
the smooth round-robin `current` values — nginx's zone shares those too, we don't need to.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from pylb.balancing import Balancer, Peer

MAGIC = b"PYLBPH01"
HEADER = struct.Struct("<8sQQQ")  # magic, gen, retired, count
SLOT_KEY = struct.Struct("<16s")
STATE = struct.Struct("<QQdd")  # seq, fails, checked, accessed
SEQ = struct.Struct("<Q")
HEADER_SIZE = 64
SLOT_SIZE = 64
_GEN_AT = 8
_RETIRED_AT = 16
_STATE_AT = 16  # within a slot, after the key


def key_of(upstream: str, member: str, server: str) -> bytes:
    return hashlib.blake2b(f"{upstream}\0{member}\0{server}".encode(),
                           digest_size=16).digest()


def group_keys(groups: Mapping[str, Iterable[Peer]]) -> list[bytes]:
    return [key_of(g, p.name, p.server) for g, peers in groups.items() for p in peers]


class BoardError(Exception):
    pass


class SharedHealth:
    """One process's view of the board (implements `pylb.balancing.base.HealthBoard`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.bound: dict[str, Balancer] = {}
        self._open()

    # -- the mapping -------------------------------------------------------------------------
    def _open(self) -> None:
        fd = os.open(self.path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise BoardError(f"{self.path}: too short for a health board")
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        magic, _, _, count = HEADER.unpack_from(mm, 0)
        if magic != MAGIC or size < HEADER_SIZE + count * SLOT_SIZE:
            mm.close()
            os.close(fd)
            raise BoardError(f"{self.path}: not a pylb health board")
        self.fd = fd
        self.mm = mm
        self.gen: memoryview = memoryview(mm)[_GEN_AT:_GEN_AT + 8].cast("Q")
        self.index = {SLOT_KEY.unpack_from(mm, HEADER_SIZE + i * SLOT_SIZE)[0]:
                      HEADER_SIZE + i * SLOT_SIZE + _STATE_AT for i in range(count)}

    def _retired(self) -> bool:
        return bool(SEQ.unpack_from(self.mm, _RETIRED_AT)[0])

    def _reopen(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        self.gen.release()
        self.mm.close()
        os.close(self.fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The file lock, on the current (not retired) board."""
        for _ in range(100):
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            if not self._retired():
                break
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self._reopen()
        else:  # pragma: no cover - a master re-laying out 100 times in a row
            raise BoardError(f"{self.path}: keeps being replaced")
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    # -- slots -------------------------------------------------------------------------------
    def _read(self, off: int) -> tuple[int, float, float]:
        mm = self.mm
        for _ in range(1000):
            seq, fails, checked, accessed = STATE.unpack_from(mm, off)
            if not seq & 1 and SEQ.unpack_from(mm, off)[0] == seq:
                return fails, checked, accessed
        return fails, checked, accessed  # a writer died mid-record: take what is there

    def _write(self, off: int, fails: int, checked: float, accessed: float) -> None:
        """Under the lock: an odd sequence number while the record changes, then even."""
        mm = self.mm
        seq = SEQ.unpack_from(mm, off)[0] | 1
        SEQ.pack_into(mm, off, seq)
        STATE.pack_into(mm, off, seq, fails, checked, accessed)
        SEQ.pack_into(mm, off, seq + 1)
        self.gen[0] += 1

    def _slot(self, peer: Peer) -> int | None:
        return self.index.get(peer.shared_key) if peer.shared_key is not None else None

    def state(self, peer: Peer) -> tuple[int, float, float] | None:
        off = self._slot(peer)
        return None if off is None else self._read(off)

    # -- HealthBoard -------------------------------------------------------------------------
    def pull(self, bal: Balancer) -> None:
        if self._retired():
            self._reopen()
        bal.board_seen = self.gen[0]  # before the reads: a write meanwhile means another pull
        for p in bal.peers:
            off = self._slot(p)
            if off is not None:
                p.fails, p.checked, p.accessed = self._read(off)

    def _update(self, peer: Peer, now: float, op: str) -> bool:
        with self._locked():
            off = self._slot(peer)
            if off is None:  # not on this layout (a reload raced us): keep it local
                if op == "fail":
                    peer.fails += 1
                    peer.checked = peer.accessed = now
                elif op in ("reset", "clear"):
                    peer.fails = 0
                return True
            before = fails, checked, accessed = self._read(off)
            if op == "fail":
                fails += 1
                checked = accessed = now
            elif op == "reset":
                if accessed < checked:  # else a newer failure landed meanwhile: keep it
                    fails = 0
            elif op == "clear":
                fails = 0
            elif now - checked > peer.fail_timeout:  # claim
                checked = now
            else:
                peer.fails, peer.checked, peer.accessed = before
                return False
            if (fails, checked, accessed) != before:
                self._write(off, fails, checked, accessed)
        peer.fails, peer.checked, peer.accessed = fails, checked, accessed
        return True

    def fail(self, peer: Peer, now: float) -> None:
        self._update(peer, now, "fail")

    def reset(self, peer: Peer) -> None:
        self._update(peer, 0.0, "reset")

    def clear(self, peer: Peer) -> None:
        self._update(peer, 0.0, "clear")

    def claim(self, peer: Peer, now: float) -> bool:
        return self._update(peer, now, "claim")

    # -- binding the balancers of one process ------------------------------------------------
    def bind(self, groups: Mapping[str, Balancer]) -> None:
        """Put these upstreams' balancers (by upstream name) on the board and pull; the
        balancers bound before under those names (an old config) are let go."""
        for name, bal in groups.items():
            old = self.bound.get(name)
            if old is not None and old is not bal:
                old.board = None
            for p in bal.peers:
                p.shared_key = key_of(name, p.name, p.server)
            bal.board = self
            self.pull(bal)
            self.bound[name] = bal

    def sync_all(self) -> None:
        for bal in self.bound.values():
            bal.sync()


def layout(path: str | Path, keys: Iterable[bytes], fresh: bool = False) -> None:
    """(Master) write the board for these keys, keeping the state of keys already on the
    current board (unless `fresh`), and retire the old file."""
    path = Path(path)
    keys = list(dict.fromkeys(keys))
    old: SharedHealth | None = None
    if not fresh:
        with contextlib.suppress(FileNotFoundError, BoardError):
            old = SharedHealth(path)
    lock = old._locked() if old is not None else contextlib.nullcontext()
    with lock:
        gen = 1
        buf = bytearray(HEADER_SIZE + len(keys) * SLOT_SIZE)
        if old is not None:
            gen = old.gen[0] + 1
        HEADER.pack_into(buf, 0, MAGIC, gen, 0, len(keys))
        for i, key in enumerate(keys):
            base = HEADER_SIZE + i * SLOT_SIZE
            SLOT_KEY.pack_into(buf, base, key)
            off = old.index.get(key) if old is not None else None
            state = old._read(off) if old is not None and off is not None else (0, 0.0, 0.0)
            STATE.pack_into(buf, base + _STATE_AT, 0, *state)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(bytes(buf))
        os.replace(tmp, path)
        if old is not None:
            SEQ.pack_into(old.mm, _RETIRED_AT, 1)
            old.gen[0] += 1  # readers still on it look, see `retired` and re-open
    if old is not None:
        old.close()
