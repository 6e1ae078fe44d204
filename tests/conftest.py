"""Shared fixtures. Real processes only ever come from the pylab supervisor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pylab.supervisor import Supervisor
from pylab.topology import Lab, ProcessSpec, load_lab

StartLab = Callable[..., Supervisor]


def make_lab(name: str, processes: list[ProcessSpec], entry: str | None = None) -> Lab:
    """An ad-hoc topology for one test (same model as the lab files)."""
    return Lab(name, f"test topology {name}", entry or processes[-1].name, processes,
               path=f"<test:{name}>")


@pytest.fixture
def start_lab(tmp_path: Path) -> Iterator[StartLab]:
    """`start_lab("basic")` or `start_lab(make_lab(...))` → a ready Supervisor on free ports.

    Every process is stopped (TERM, then KILL after a bound) at teardown, whatever happened.
    """
    sups: list[Supervisor] = []

    def start(lab: str | Lab, **kw: Any) -> Supervisor:
        model = lab if isinstance(lab, Lab) else load_lab(lab)
        sup = Supervisor(model, tmp_path / f"run{len(sups)}", free_ports=True, **kw)
        sups.append(sup)
        sup.up()
        return sup

    yield start
    for sup in reversed(sups):
        sup.down(timeout=5)


def _live_children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            out.append(int(stat.parent.name))
    return out


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fail the run if any test left a child process of this pytest worker running."""
    yield
    import os
    import signal
    import time

    deadline = time.monotonic() + 5
    left = _live_children(os.getpid())
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _live_children(os.getpid())
    import contextlib

    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind by the tests: {left}"
