"""The ha-vip lab end to end: its story (kill -9 / graceful / lost balancer) passes."""

from __future__ import annotations

import pytest

from pylab.stories import Step, run_story
from tests.conftest import StartLab

pytestmark = pytest.mark.integration


def test_ha_vip_story(start_lab: StartLab) -> None:
    sup = start_lab("ha-vip")
    assert sup.lab.entry == "vip"
    status = sup.status()
    vip = next(p for p in status["processes"] if p["name"] == "vip")
    assert vip["host"] == "127.0.0.88" and vip["kind"] == "pyvrrp"
    steps: list[Step] = []
    run_story(sup, steps.append)
    assert len(steps) == 6 and all(s.ok for s in steps), steps
