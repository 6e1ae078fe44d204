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
