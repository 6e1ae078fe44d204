"""`pylab check LAB` passes for every lab that has a story.

Parametrised over the lab files, so a new `pylab/labs/X.toml` with its `pylab/stories/X.py`
is picked up without touching this file. Each check runs the real CLI on free ports in its own
temporary run directory, bounded in time.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from pylab.topology import LAB_DIR, load_lab

pytestmark = pytest.mark.integration

LABS = sorted(p.stem for p in LAB_DIR.glob("*.toml"))
CHECK_TIMEOUT = 150.0


def story_module(lab: str) -> str:
    return "pylab.stories." + load_lab(lab).name.replace("-", "_")


def has_story(lab: str) -> bool:
    return importlib.util.find_spec(story_module(lab)) is not None


def test_the_seed_labs_are_here() -> None:
    assert {"basic", "rr-no-sharing", "ip-hash", "cookie-sticky"} <= set(LABS)


@pytest.mark.parametrize("lab", LABS)
@pytest.mark.timeout(CHECK_TIMEOUT + 30)
def test_pylab_check(lab: str, tmp_path: Path) -> None:
    if not has_story(lab):
        pytest.skip(f"lab {lab} has no story yet ({story_module(lab)})")
    r = subprocess.run([sys.executable, "-m", "pylab", "--run-dir", str(tmp_path), "check",
                        lab], capture_output=True, text=True, timeout=CHECK_TIMEOUT,
                       check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "[FAIL]" not in out and "result: PASS" in out, out
    assert out.count("[PASS]") >= 2, out  # a story checks a before and an after
