"""Every balancing method pinned against nginx's algorithms (sans-IO, replayed timelines)."""

from __future__ import annotations

import ipaddress
import random
import zlib
from typing import Any

import pytest

from pylb.balancing import METHODS, Balancer, Peer, Pick
from pylb.balancing.base import DRAIN, STANDBY, STOPPED
from pylb.balancing.hash import ConsistentHash, Hash, ketama_points
from pylb.balancing.ip_hash import IpHash, hash_bytes, ip_hash_step
from pylb.balancing.least_conn import LeastConn
from pylb.balancing.random_two import RandomTwo
from pylb.balancing.round_robin import RoundRobin


def peers(*weights: int, backup: tuple[int, ...] = ()) -> list[Peer]:
    return [Peer("abcdefghijklmnopqrstuvwxyz"[i], "127.0.0.1", 9000 + i, w,
                 backup=i in backup) for i, w in enumerate(weights)]


def seq(bal: Balancer, n: int, now: float = 0.0, **pick: Any) -> str:
    out = []
    for _ in range(n):
        p = bal.select(Pick(**pick), now)
        out.append(p.name if p else "-")
    return " ".join(out)


def test_registry_has_every_method() -> None:
    assert set(METHODS) >= {"round_robin", "ip_hash", "hash", "hash_consistent", "least_conn",
                            "random", "random_two"}


# --- smooth weighted round robin ----------------------------------------------------------

def test_smooth_wrr_nginx_sequence_5_1_1() -> None:
    assert seq(RoundRobin(peers(5, 1, 1)), 7) == "a a b a c a a"
    assert seq(RoundRobin(peers(5, 1, 1)), 14) == "a a b a c a a a a b a c a a"


@pytest.mark.parametrize(("weights", "expect"), [
    ((1, 1, 1), "a b c a b c"),
    ((2, 1), "a b a a b a"),
    ((3, 2, 1), "a b a c b a"),
    ((4, 2, 1), "a b a c a b a"),
])
def test_smooth_wrr_sequences(weights: tuple[int, ...], expect: str) -> None:
    assert seq(RoundRobin(peers(*weights)), len(expect.split())) == expect


def test_wrr_is_exact_over_a_period() -> None:
    bal = RoundRobin(peers(7, 3, 2, 1))
    names = seq(bal, 13 * 5).split()
    assert {n: names.count(n) for n in "abcd"} == {"a": 35, "b": 15, "c": 10, "d": 5}


# --- passive health (nginx max_fails / fail_timeout) --------------------------------------

def test_failed_peer_skipped_until_fail_timeout_then_one_trial() -> None:
    ps = peers(1, 1)
    bal = RoundRobin(ps)
    a = bal.select(Pick(), 0.0)
    assert a is ps[0]
    bal.report(a, False, 0.0)  # max_fails=1 → a is out for fail_timeout=10
    assert seq(bal, 4, now=5.0) == "b b b b"
    # after fail_timeout a gets a trial request (and checked moves to now)
    picks = seq(bal, 4, now=10.5).split()
    assert "a" in picks
    bal.report(ps[0], False, 10.5)  # trial failed: out again
    assert seq(bal, 3, now=11.0) == "b b b"
    # a successful trial resets fails
    got = [bal.select(Pick(), 21.0) for _ in range(3)]
    assert ps[0] in got
    bal.report(ps[0], True, 21.0)
    assert ps[0].fails == 0


def test_failure_lowers_effective_weight_and_it_recovers() -> None:
    ps = peers(4, 4)
    for p in ps:
        p.max_fails = 2
    bal = RoundRobin(ps)
    bal.report(ps[0], False, 0.0)
    assert ps[0].effective == 2 and ps[0].fails == 1
    for _ in range(4):
        bal.select(Pick(), 0.0)
    assert ps[0].effective == 4


def test_single_peer_is_never_marked_failed() -> None:
    ps = peers(1)
    bal = RoundRobin(ps)
    for _ in range(5):
        bal.report(ps[0], False, 0.0)
    assert bal.select(Pick(), 1.0) is ps[0]
    assert ps[0].failures == 5


def test_backup_only_when_no_primary_usable() -> None:
    ps = peers(1, 1, 1, backup=(2,))
    bal = RoundRobin(ps)
    assert "c" not in seq(bal, 6)
    ps[0].down = True
    bal.report(ps[1], False, 0.0)
    assert seq(bal, 3, now=1.0) == "c c c"
    ps[2].down = True
    assert bal.select(Pick(), 1.0) is None  # nothing usable → the proxy answers 502


def test_tried_peers_are_skipped_for_retries() -> None:
    ps = peers(1, 1, 1)
    bal = RoundRobin(ps)
    pick = Pick()
    got = []
    for _ in range(4):
        p = bal.select(pick, 0.0)
        if p is None:
            break
        pick.tried.add(p.index)
        got.append(p.name)
    assert sorted(got) == ["a", "b", "c"]


def test_runtime_states_and_weight() -> None:
    ps = peers(1, 1, 1)
    bal = RoundRobin(ps)
    bal.set_state(ps[0], DRAIN)
    bal.set_state(ps[1], STOPPED)
    assert seq(bal, 3) == "c c c"
    assert ps[0].usable(0.0) and not ps[1].usable(0.0)  # drain still takes stuck clients
    bal.set_state(ps[2], STANDBY)
    assert seq(bal, 2) == "c c"  # hot standby: used because nothing else is active
    bal.set_state(ps[0], "active")
    assert seq(bal, 2) == "a a"
    bal.set_state(ps[1], "active")
    bal.set_weight(ps[1], 3)
    assert seq(bal, 4) == "b a b b"
    with pytest.raises(ValueError):
        bal.set_state(ps[0], "bogus")


# --- ip_hash -------------------------------------------------------------------------------

def _ip(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


def reference_ip_hash(addr: str, weights: list[int], usable: list[bool]) -> int | None:
    """An independent transcription of ngx_http_upstream_get_ip_hash_peer."""
    packed = _ip(addr)
    data = packed[:3] if len(packed) == 4 else packed
    h, tries = 89, 0
    total = sum(weights)
    while True:
        for b in data:
            h = (h * 113 + b) % 6271
        w = h % total
        i = 0
        while w >= weights[i]:
            w -= weights[i]
            i += 1
        if usable[i]:
            return i
        tries += 1
        if tries > 20:
            return None


def test_ip_hash_vectors() -> None:
    assert hash_bytes(_ip("127.0.0.1")) == bytes([127, 0, 0])
    assert hash_bytes(_ip("::ffff:10.1.2.3")) == bytes([10, 1, 2])
    assert len(hash_bytes(_ip("2001:db8::1"))) == 16
    # hand-computed: 89 → 3913 → 3199 → 4040 for 127.0.0.0/24
    assert ip_hash_step(89, bytes([127, 0, 0])) == 4040
    assert ip_hash_step(89, bytes([192, 168, 1])) == 154  # 3978 → 4441 → 154
    bal = IpHash(peers(1, 1))
    # the whole /24 goes to one peer: 4040 % 2 == 0 → a
    assert {bal.select(Pick(client=_ip(f"127.0.0.{i}")), 0).name  # type: ignore[union-attr]
            for i in range(256)} == {"a"}
    assert bal.select(Pick(client=_ip("127.0.1.9")), 0).name == "b"  # type: ignore[union-attr]


def test_ip_hash_matches_reference_with_weights_and_down() -> None:
    weights = [3, 1, 2, 5]
    ps = peers(*weights)
    ps[2].down = True
    bal = IpHash(ps)
    rng = random.Random(7)
    for _ in range(2000):
        addr = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        want = reference_ip_hash(addr, weights, [True, True, False, True])
        got = bal.select(Pick(client=_ip(addr)), 0.0)
        assert got is not None and got.index == want, addr
    for _ in range(300):
        addr = str(ipaddress.IPv6Address(rng.getrandbits(128)))
        want = reference_ip_hash(addr, weights, [True, True, False, True])
        got = bal.select(Pick(client=_ip(addr)), 0.0)
        assert got is not None and got.index == want, addr


def test_ip_hash_retry_continues_the_walk_and_falls_back_to_rr() -> None:
    ps = peers(1, 1, 1)
    bal = IpHash(ps)
    pick = Pick(client=_ip("10.0.0.1"))
    first = bal.select(pick, 0.0)
    assert first is not None
    pick.tried.add(first.index)
    second = bal.select(pick, 0.0)
    assert second is not None and second is not first
    for p in ps:
        p.down = True
    ps[1].down = False
    pick = Pick(client=_ip("10.0.0.1"))
    assert bal.select(pick, 0.0) is ps[1]


def test_ip_hash_refuses_backup() -> None:
    assert IpHash.allows_backup is False


# --- hash KEY ------------------------------------------------------------------------------

def reference_hash(key: bytes, weights: list[int]) -> int:
    h = (zlib.crc32(key) >> 16) & 0x7FFF
    w = h % sum(weights)
    i = 0
    while w >= weights[i]:
        w -= weights[i]
        i += 1
    return i


def test_hash_first_try_is_cache_memcached_compatible() -> None:
    weights = [1, 2, 3]
    bal = Hash(peers(*weights))
    for k in range(500):
        key = b"/item/%d" % k
        p = bal.select(Pick(key=key), 0.0)
        assert p is not None and p.index == reference_hash(key, weights)


def test_hash_rehash_uses_decimal_prefix() -> None:
    ps = peers(1, 1)
    bal = Hash(ps)
    key = b"abc"
    first = reference_hash(key, [1, 1])
    ps[first].down = True
    h = (zlib.crc32(key) >> 16) & 0x7FFF
    h += (zlib.crc32(b"1" + key) >> 16) & 0x7FFF
    # the second try lands on h % 2; if that is the down peer too, later tries continue
    p = bal.select(Pick(key=key), 0.0)
    assert p is ps[1 - first]
    assert h % 2 == 1 - first or p is ps[1 - first]


def test_ketama_points_and_stability() -> None:
    ps = peers(1, 1, 1, 1)
    pts = ketama_points(ps)
    assert len(pts) == 640
    base = zlib.crc32(b"127.0.0.1\x009000")
    first = zlib.crc32(b"\0\0\0\0", base)
    assert (first, "127.0.0.1:9000") in pts
    assert len(ketama_points(peers(2, 1))) == 480
    bal = ConsistentHash(ps)
    keys = [b"user%d" % i for i in range(2000)]
    before = {k: bal.select(Pick(key=k), 0.0).index for k in keys}  # type: ignore[union-attr]
    assert len(set(before.values())) == 4
    ps[3].down = True
    after = {k: bal.select(Pick(key=k), 0.0).index for k in keys}  # type: ignore[union-attr]
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == 3 for k in moved)  # only d's keys move
    assert all(after[k] != 3 for k in keys)


# --- least_conn / random two ---------------------------------------------------------------

def test_least_conn_picks_lowest_ratio_ties_by_wrr() -> None:
    ps = peers(1, 1, 2)
    bal = LeastConn(ps)
    ps[0].conns, ps[1].conns, ps[2].conns = 3, 1, 4
    assert bal.select(Pick(), 0.0) is ps[1]  # 1/1 < 4/2 < 3/1
    ps[1].conns = 2  # b 2/1 == c 4/2: tie → weighted round robin between b and c
    got = [bal.select(Pick(), 0.0).name for _ in range(6)]  # type: ignore[union-attr]
    assert got.count("c") == 4 and got.count("b") == 2
    ps[0].conns = ps[1].conns = ps[2].conns = 0
    assert seq(bal, 4) == "c a b c"


def test_random_two_prefers_fewer_connections() -> None:
    ps = peers(1, 1, 1)
    bal = RandomTwo(ps, rng=random.Random(1))
    ps[0].conns = 50
    ps[1].conns = 50
    got = seq(bal, 60).split()
    assert got.count("c") > 30  # c is in ~2/3 of the pairs and always wins them
    assert got.count("c") + got.count("a") + got.count("b") == 60
    bal2 = RandomTwo(peers(1, 1, 1), rng=random.Random(1))
    bal3 = RandomTwo(peers(1, 1, 1), rng=random.Random(1))
    assert seq(bal2, 30) == seq(bal3, 30)  # injected rng: replayable


def _reference_wrr(weights: list[int], events: list[tuple[str, int]]) -> list[int]:
    """Plain nginx smooth WRR with failures/downs, no fast path (a transcription)."""
    cur = [0] * len(weights)
    eff = list(weights)
    down = [False] * len(weights)
    out = []
    for kind, arg in events:
        if kind == "pick":
            best, total = None, 0
            for i, w in enumerate(weights):
                if down[i]:
                    continue
                cur[i] += eff[i]
                total += eff[i]
                if eff[i] < w:
                    eff[i] += 1
                if best is None or cur[i] > cur[best]:
                    best = i
            if best is None:
                out.append(-1)
                continue
            cur[best] -= total
            out.append(best)
        elif kind == "fail":  # max_fails=1: effective drops by weight, the peer is out
            eff[arg] = max(eff[arg] - weights[arg], 0)
            down[arg] = True
        elif kind == "down":
            down[arg] = True
        elif kind == "up":
            down[arg] = False
    return out


@pytest.mark.parametrize("seed", range(8))
def test_equal_weight_fast_path_matches_plain_walk(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([2, 3, 7, 50])
    w = rng.choice([1, 2])
    weights = [w] * n
    ps = [Peer(f"p{i}", "h", i, w, max_fails=1, fail_timeout=1e9) for i in range(n)]
    bal = RoundRobin(ps)
    events: list[tuple[str, int]] = []
    got = []
    for _ in range(600):
        r = rng.random()
        if r < 0.01:
            i = rng.randrange(n)
            events.append(("fail", i))
            bal.report(ps[i], False, 0.0)
        elif r < 0.015:
            i = rng.randrange(n)
            events.append(("down", i))
            ps[i].down = True
            bal.refresh()  # flags changed outside the balancer are announced
        elif r < 0.03:
            i = rng.randrange(n)
            events.append(("up", i))
            ps[i].down = False
            ps[i].fails = 0
            bal.refresh()
        else:
            events.append(("pick", 0))
            p = bal.select(Pick(), 0.0)
            got.append(p.index if p else -1)
    assert got == _reference_wrr(weights, events)


def test_fast_path_engages_for_large_equal_groups() -> None:
    ps = [Peer(f"p{i}", "h", i) for i in range(1000)]
    bal = RoundRobin(ps)
    names = [bal.select(Pick(), 0.0).index for _ in range(3000)]  # type: ignore[union-attr]
    assert names == list(range(1000)) * 3
    assert bal.fast
