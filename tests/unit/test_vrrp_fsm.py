"""Timeline replays of the VRRP state machine with exact timer values (microseconds)."""

from __future__ import annotations

import pytest

from pyvrrp.fsm import RouterParams, SendAdvert, State, Transition, VrrpRouter
from pyvrrp.track import Hysteresis, Tracked, total_weight

EPS = 1e-6  # timers are whole microseconds, like keepalived


def router(prio: int = 90, ip: str = "10.0.0.12", **kw: object) -> VrrpRouter:
    return VrrpRouter(RouterParams(vrid=51, priority=prio, primary_ip=ip, **kw))  # type: ignore[arg-type]


def states(actions: list) -> list[State]:
    return [a.new for a in actions if isinstance(a, Transition)]


def test_timer_formulas_v2_and_v3() -> None:
    r = router(90)
    assert r.skew == pytest.approx(166 / 256, abs=EPS)            # 0.6484375 s
    assert r.master_down == pytest.approx(3 + 166 / 256, abs=EPS)  # 3.6484375 s
    v3 = router(90, version=3, advert_int=0.1)
    assert v3.skew == pytest.approx(0.064843, abs=EPS)             # 166 * 0.1 / 256
    assert v3.master_down == pytest.approx(0.364843, abs=EPS)
    assert router(255).skew == pytest.approx(1 / 256, abs=EPS)


def test_master_loss_backup_takes_over_after_master_down() -> None:
    b = router(90)
    assert states(b.start(0.0)) == [State.BACKUP]
    assert b.deadline == pytest.approx(3.6484375, abs=EPS)
    for t in (0.5, 1.5, 2.5):                     # master (prio 100) advertising every second
        assert b.receive(t, 100, "10.0.0.11") == []
        assert b.deadline == pytest.approx(t + 3.6484375, abs=EPS)
    assert b.master_ip == "10.0.0.11"
    # the master dies after its advert at 2.5: nothing happens until 6.1484375
    assert b.tick(6.148) == []
    acts = b.tick(6.1484375)
    assert acts == [SendAdvert(90), Transition(State.BACKUP, State.MASTER, 90,
                                               "master down timer expired")]
    assert b.deadline == pytest.approx(7.1484375, abs=EPS)       # next advert one interval on
    assert b.tick(7.1484375) == [SendAdvert(90)]
    assert b.deadline == pytest.approx(8.1484375, abs=EPS)


def test_graceful_resign_backup_takes_over_after_skew_only() -> None:
    m, b = router(100, "10.0.0.11", want_master=True), router(90)
    assert states(m.start(0.0)) == [State.BACKUP]   # keepalived: state MASTER waits too
    assert m.deadline == pytest.approx(3.609375, abs=EPS)
    b.start(0.0)
    assert states(m.tick(3.609375)) == [State.MASTER]
    b.receive(3.61, 100, "10.0.0.11")
    acts = m.shutdown(5.0)
    assert acts[0] == SendAdvert(0) and states(acts) == [State.STOP]
    assert b.receive(5.0002, 0, "10.0.0.11") == []
    assert b.deadline == pytest.approx(5.0002 + 0.6484375, abs=EPS)
    assert states(b.tick(5.6486375)) == [State.MASTER]
    # the same at v3 / 0.1 s: Skew = 64.843 ms (keepalived captured 65 ms)
    b3 = router(90, version=3, advert_int=0.1)
    b3.start(0.0)
    b3.receive(0.05, 100, "10.0.0.11", 0.1)
    b3.receive(0.10, 0, "10.0.0.11", 0.1)
    assert b3.deadline == pytest.approx(0.10 + 0.064843, abs=EPS)


def test_master_answers_a_priority_zero_advert_at_once() -> None:
    m = router(100, "10.0.0.11")
    m.start(0.0)
    m.tick(m.deadline or 0)
    assert m.state == State.MASTER
    assert m.receive(1.0, 0, "10.0.0.12") == [SendAdvert(100)]
    assert m.deadline == pytest.approx(2.0, abs=EPS)


def test_preemption_higher_priority_returns_and_takes_over() -> None:
    b = router(90)                  # lb2 is master while lb1 is away
    b.start(0.0)
    b.tick(3.6484375)
    assert b.state == State.MASTER
    lb1 = router(100, "10.0.0.11")  # lb1 comes back (preempt is the default)
    lb1.start(10.0)
    lb1.receive(10.2, 90, "10.0.0.12")  # lower priority: ignored, its timer keeps running
    assert lb1.deadline == pytest.approx(10 + 3 + 156 / 256, abs=EPS)
    assert states(lb1.tick(13.609375)) == [State.MASTER]
    # lb2 hears the better master and steps down with a fresh Master_Down
    acts = b.receive(13.61, 100, "10.0.0.11")
    assert states(acts) == [State.BACKUP]
    assert b.deadline == pytest.approx(13.61 + 3.6484375, abs=EPS)


def test_nopreempt_keeps_the_lower_priority_master() -> None:
    lb1 = router(100, "10.0.0.11", preempt=False)
    lb1.start(0.0)
    for t in (0.2, 1.2, 2.2, 3.2, 4.2, 5.2):   # the lower-priority master keeps advertising
        lb1.receive(t, 90, "10.0.0.12")
        assert lb1.tick(t + 0.99) == []
    assert lb1.state == State.BACKUP and lb1.master_ip == "10.0.0.12"
    assert lb1.deadline == pytest.approx(5.2 + 3 + 156 / 256, abs=EPS)


def test_preempt_delay_holds_back_then_preempts() -> None:
    lb1 = router(100, "10.0.0.11", preempt_delay=5.0)
    lb1.start(0.0)
    t = 0.2
    while t < 5.2:                             # inside the delay: adverts reset the timer
        lb1.receive(t, 90, "10.0.0.12")
        assert lb1.state == State.BACKUP
        t += 1.0
    assert lb1.deadline == pytest.approx(4.2 + 3.609375, abs=EPS)
    lb1.receive(5.2, 90, "10.0.0.12")          # past 0.2 + 5: ignored now
    assert lb1.deadline == pytest.approx(4.2 + 3.609375, abs=EPS)
    assert states(lb1.tick(7.809375)) == [State.MASTER]


def test_equal_priority_higher_primary_ip_wins() -> None:
    low, high = router(100, "10.0.0.11"), router(100, "10.0.0.12")
    low.start(0.0)
    high.start(0.0)
    assert states(low.tick(3.609375)) == [State.MASTER]  # both time out together
    assert states(high.tick(3.609375)) == [State.MASTER]
    assert states(low.receive(3.61, 100, "10.0.0.12")) == [State.BACKUP]
    assert high.receive(3.61, 100, "10.0.0.11") == []    # lower IP at equal priority: ignored
    assert high.state == State.MASTER
    # and a backup accepts an equal-priority master
    assert low.receive(4.61, 100, "10.0.0.12") == []
    assert low.deadline == pytest.approx(4.61 + 3.609375, abs=EPS)


def test_owner_priority_255_is_master_at_once_and_keeps_priority() -> None:
    o = router(255, "10.0.0.11")
    assert o.start(0.0) == [SendAdvert(255), Transition(State.INIT, State.MASTER, 255,
                                                        "address owner (priority 255)")]
    o.set_weight(1.0, -50)
    assert o.priority == 255


def test_v3_backup_learns_the_masters_interval() -> None:
    b = router(90, version=3, advert_int=1.0)
    b.start(0.0)
    b.receive(0.1, 100, "10.0.0.11", 0.1)
    assert b.deadline == pytest.approx(0.1 + 0.3 + 166 * 0.1 / 256, abs=EPS)


def test_flapping_tracked_script_with_rise_and_fall() -> None:
    """fall 2 / rise 3, weight 0 → FAULT; a single bad or good result changes nothing."""
    m = router(100, "10.0.0.11")
    m.start(0.0)
    m.tick(3.609375)
    h = Hysteresis(rise=3, fall=2)
    timeline = [(4.0, False, None), (5.0, True, None), (6.0, False, None), (7.0, False, False),
                (8.0, True, None), (9.0, False, None), (10.0, True, None), (11.0, True, None),
                (12.0, True, True)]
    seen = []
    for t, ok, change in timeline:
        got = h.record(ok)
        assert got == change, t
        if got is not None:
            acts = m.set_fault(t, "chk_lb", not got)
            seen.append((t, acts))
    assert seen[0] == (7.0, [SendAdvert(0), Transition(State.MASTER, State.FAULT, 100,
                                                       "tracked chk_lb down")])
    assert m.receive(7.5, 90, "10.0.0.12") == []  # FAULT ignores adverts
    assert states(seen[1][1]) == [State.BACKUP]
    assert m.deadline == pytest.approx(12.0 + 3.609375, abs=EPS)


def test_weighted_script_moves_priority_and_causes_preemption() -> None:
    items = [Tracked("chk", -20, Hysteresis(fall=1)), Tracked("up", 5, Hysteresis())]
    assert total_weight(items) == 5
    items[0].state.record(False)
    assert total_weight(items) == -15
    m = router(100, "10.0.0.11")
    m.start(0.0)
    m.tick(3.609375)
    assert m.set_weight(4.0, -15) == [SendAdvert(85)]     # advertised at once
    b = router(90)
    b.start(0.0)
    b.receive(4.0, 85, "10.0.0.11")                        # lower now: b preempts when due
    assert b.deadline == pytest.approx(3.6484375, abs=EPS)
    assert states(b.tick(3.6484375)) == [State.MASTER]
    assert states(m.receive(4.1, 90, "10.0.0.12")) == [State.BACKUP]


def test_fault_at_start_and_recovery() -> None:
    r = router(90)
    r.set_fault(0.0, "eth0", True)
    assert states(r.start(0.0)) == [State.FAULT] and r.deadline is None
    assert states(r.set_fault(2.0, "eth0", False)) == [State.BACKUP]
    assert r.deadline == pytest.approx(5.6484375, abs=EPS)


def test_script_first_result_decides_at_once() -> None:
    """keepalived starts scripts at `rise - 1`: the first result counts, whatever rise/fall."""
    h = Hysteresis(rise=3, fall=3, ok=None)
    assert h.record(False) is False
    t = Tracked("chk", 0, h)
    assert t.faulted and t.contribution == 0
    assert Tracked("chk", -10, Hysteresis(ok=None)).contribution == 0  # unknown: no weight
    r = router(100)
    r.set_fault(0.0, "chk", t.faulted)                # the instance waited in INIT for it
    assert states(r.start(0.05)) == [State.FAULT]
