"""Active health check state machine: rise/fall and slow start (sans-IO)."""

from __future__ import annotations

from pylb.balancing import Peer, Pick
from pylb.balancing.round_robin import RoundRobin
from pylb.health import HealthState


def test_fall_then_rise() -> None:
    st = HealthState(rise=2, fall=3)
    assert st.healthy
    assert not st.record(False, 0) and not st.record(False, 1)
    assert st.record(False, 2) and not st.healthy
    assert not st.record(True, 3)
    assert not st.record(False, 4)  # a failure resets the rise count
    assert not st.record(True, 5)
    assert st.record(True, 6) and st.healthy and st.since == 6


def test_slow_start_ramps_the_weight_cap() -> None:
    st = HealthState(rise=1, fall=1, slow_start=10.0)
    st.record(False, 0)
    st.record(True, 100)
    assert st.weight_cap(10, 100) == 1
    assert st.weight_cap(10, 105) == 5
    assert st.weight_cap(10, 110) == 10
    assert HealthState(1, 1).weight_cap(7, 0) == 7


def test_unhealthy_member_is_not_selected_and_cap_limits_share() -> None:
    ps = [Peer("a", "h", 1, weight=4), Peer("b", "h", 2, weight=4)]
    bal = RoundRobin(ps)
    ps[0].healthy = False
    assert {bal.select(Pick(), 0).name for _ in range(4)} == {"b"}  # type: ignore[union-attr]
    ps[0].healthy = True
    ps[0].cap = ps[0].effective = 1  # slow start: a carries 1 of its 4
    names = [bal.select(Pick(), 0).name for _ in range(50)]  # type: ignore[union-attr]
    assert names.count("a") == 10
