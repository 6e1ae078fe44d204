"""The shared passive-health board (nginx `zone`): two processes' views over one file behave
as one balancer's bookkeeping. Time is injected; the two "workers" are two boards and two
balancers over the same file, as two processes would have."""

from __future__ import annotations

from pathlib import Path

import pytest

from pylb.balancing import Balancer, Peer, Pick
from pylb.balancing.round_robin import RoundRobin
from pylb.shared_health import SharedHealth, group_keys, layout


def peers(names: str = "ab", **kw: object) -> list[Peer]:
    return [Peer(n, "127.0.0.1", 8000 + i, **kw) for i, n in enumerate(names)]  # type: ignore[arg-type]


def worker(path: Path, names: str = "ab", **kw: object) -> tuple[SharedHealth, Balancer]:
    board = SharedHealth(path)
    bal = RoundRobin(peers(names, **kw))
    board.bind({"app": bal})
    return board, bal


def picks(bal: Balancer, n: int, now: float) -> list[str]:
    out = []
    for _ in range(n):
        p = bal.select(Pick(), now)
        out.append(p.name if p is not None else "-")
    return out


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "health.shm"
    layout(p, group_keys({"app": peers()}), fresh=True)
    return p


def test_failure_in_one_worker_takes_the_member_out_of_the_other(path: Path) -> None:
    _, a = worker(path, max_fails=1, fail_timeout=10.0)
    _, b = worker(path, max_fails=1, fail_timeout=10.0)
    assert sorted(picks(b, 4, 100.0)) == ["a", "a", "b", "b"]
    a.report(a.peers[0], False, 100.0)
    assert picks(b, 6, 101.0) == ["b"] * 6  # b never saw a failure itself
    assert b.peers[0].fails == 1 and b.peers[0].checked == 100.0
    assert not b.peers[0].usable(110.0) and b.peers[0].usable(110.5)


def test_after_fail_timeout_exactly_one_worker_gets_the_trial(path: Path) -> None:
    _, a = worker(path, fail_timeout=10.0)
    _, b = worker(path, fail_timeout=10.0)
    a.report(a.peers[0], False, 100.0)
    # 10.5 s later: a takes the trial; b must not send a second one meanwhile
    assert "a" in picks(a, 2, 110.5)
    assert picks(b, 6, 110.6) == ["b"] * 6
    assert picks(a, 4, 110.7) == ["b"] * 4  # and a itself waits for the outcome
    # the trial succeeds: fails reset for everyone
    a.report(a.peers[0], True, 110.8)
    assert sorted(picks(b, 4, 110.9)) == ["a", "a", "b", "b"]
    assert b.peers[0].fails == 0


def test_failed_trial_takes_it_out_for_another_fail_timeout(path: Path) -> None:
    _, a = worker(path, fail_timeout=10.0)
    _, b = worker(path, fail_timeout=10.0)
    a.report(a.peers[0], False, 100.0)
    assert "a" in picks(b, 2, 111.0)  # this time b takes the trial ...
    b.report(b.peers[0], False, 111.1)  # ... and it fails
    assert picks(a, 4, 115.0) == ["b"] * 4
    assert a.peers[0].fails == 2 and a.peers[0].checked == 111.1
    assert "a" in picks(a, 2, 121.2)


def test_max_fails_counts_failures_from_all_workers(path: Path) -> None:
    _, a = worker(path, max_fails=2, fail_timeout=10.0)
    _, b = worker(path, max_fails=2, fail_timeout=10.0)
    a.report(a.peers[0], False, 100.0)
    assert "a" in picks(b, 2, 100.1)  # one failure of two: still in
    b.report(b.peers[0], False, 100.2)
    assert picks(a, 4, 100.3) == ["b"] * 4
    assert picks(b, 4, 100.3) == ["b"] * 4


def test_a_success_does_not_wipe_a_newer_failure_from_another_worker(path: Path) -> None:
    _, a = worker(path, max_fails=3, fail_timeout=10.0)
    _, b = worker(path, max_fails=3, fail_timeout=10.0)
    a.report(a.peers[0], False, 100.0)
    picks(b, 2, 111.0)  # b's view: fails=1, and the trial moved checked past accessed
    a.report(a.peers[0], False, 111.5)  # a newer failure lands on the board
    b.report(b.peers[0], True, 111.6)  # b's success from its older view
    assert SharedHealth(path).state(a.peers[0]) == (2, 111.5, 111.5)
    assert b.peers[0].fails == 2


def test_plain_success_writes_nothing(path: Path) -> None:
    board, a = worker(path)
    gen = board.gen[0]
    for t in range(50):
        p = a.select(Pick(), 100.0 + t)
        assert p is not None
        a.report(p, True, 100.0 + t)
    assert board.gen[0] == gen


def test_active_check_recovery_clears_fails_for_everyone(path: Path) -> None:
    _, a = worker(path, fail_timeout=10.0)
    _, b = worker(path, fail_timeout=10.0)
    a.report(a.peers[0], False, 100.0)
    a.clear_fails(a.peers[0])  # what the master's health checker does on "up again"
    assert sorted(picks(b, 2, 101.0)) == ["a", "b"]


def test_a_restarted_worker_sees_the_state(path: Path) -> None:
    board, a = worker(path, fail_timeout=30.0)
    a.report(a.peers[0], False, 100.0)
    board.close()
    _, fresh = worker(path, fail_timeout=30.0)
    assert picks(fresh, 4, 105.0) == ["b"] * 4


def test_relayout_keeps_members_that_stay_and_moves_everyone_over(path: Path) -> None:
    _, a = worker(path, fail_timeout=30.0)
    _, b = worker(path, fail_timeout=30.0)
    a.report(a.peers[0], False, 100.0)
    b.report(b.peers[1], False, 100.0)
    # reload: "b" removed, "c" added (the master re-lays out and retires the old file)
    layout(path, group_keys({"app": peers("ac")}))
    _, c = worker(path, "ac", fail_timeout=30.0)  # a worker after its own reload
    assert picks(c, 4, 101.0) == ["c"] * 4  # "a" is still out, "c" starts clean
    # a worker still on the old file follows to the new one, for reads and writes
    a.report(a.peers[1], False, 102.0)  # "b": no longer on the board, stays local
    assert SharedHealth(path).state(a.peers[1]) is None and a.peers[1].fails >= 1
    a.report(a.peers[0], False, 103.0)
    assert picks(c, 2, 103.1) == ["c", "c"] and c.peers[0].fails == 2


def test_a_member_whose_address_changed_starts_clean(path: Path) -> None:
    _, a = worker(path, fail_timeout=30.0)
    a.report(a.peers[0], False, 100.0)
    moved = [Peer("a", "127.0.0.2", 9000), Peer("b", "127.0.0.1", 8001)]
    layout(path, group_keys({"app": moved}))
    board = SharedHealth(path)
    bal = RoundRobin(moved)
    board.bind({"app": bal})
    assert sorted(picks(bal, 2, 101.0)) == ["a", "b"]


def test_without_a_board_passive_health_is_per_process() -> None:
    a, b = RoundRobin(peers()), RoundRobin(peers())
    a.report(a.peers[0], False, 100.0)
    assert sorted(picks(b, 2, 101.0)) == ["a", "b"]


def test_the_trial_is_a_compare_and_set(path: Path) -> None:
    """Two workers that both saw the member's fail_timeout expire (each pulled before the
    other claimed): only the first claim wins, the second finds `checked` moved."""
    board_a, a = worker(path, fail_timeout=10.0)
    board_b, b = worker(path, fail_timeout=10.0)
    a.report(a.peers[0], False, 100.0)
    b.sync()
    assert b.peers[0].usable(110.5) and a.peers[0].usable(110.5)
    assert board_a.claim(a.peers[0], 110.5)
    assert not board_b.claim(b.peers[0], 110.6)
    assert b.peers[0].checked == 110.5 and not b.peers[0].usable(110.6)


def test_a_worker_that_loses_the_trial_picks_another_member(path: Path) -> None:
    board_a, a = worker(path, fail_timeout=10.0)
    _, b = worker(path, fail_timeout=10.0)
    a.report(a.peers[0], False, 100.0)
    b.sync()
    assert board_a.claim(a.peers[0], 110.5)
    b.board_seen = board_a.gen[0]  # b's view is from just before a's claim landed
    assert picks(b, 4, 110.6) == ["b"] * 4
