"""`pylab check LAB`: the scripted story of each lab, printed as pass/fail per step.

Each lab's story is the function `story(s: Story)` in `pylab/stories/<lab>.py` (dashes become
underscores). A story drives a running lab only through its contracts (the `/api/session` probe, the
supervisor's kill/restart), exactly as a student following the guide would.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from pylab.supervisor import Supervisor


@dataclass
class Step:
    text: str
    ok: bool
    detail: str = ""


class StoryFailed(AssertionError):
    pass


class Story:
    def __init__(self, sup: Supervisor, report: Callable[[Step], None]) -> None:
        self.sup = sup
        self.report = report
        self.steps: list[Step] = []

    def check(self, text: str, ok: bool, detail: str = "") -> None:
        step = Step(text, ok, detail)
        self.steps.append(step)
        self.report(step)
        if not ok:
            raise StoryFailed(f"{text}: {detail}")

    @property
    def probe(self) -> str:
        return self.sup.url(None, "/api/session")


def run_story(sup: Supervisor, report: Callable[[Step], None]) -> list[Step]:
    """Run the story of `sup.lab`: module `pylab.stories.<lab name, - as _>`, function `story`."""
    story = Story(sup, report)
    modname = "pylab.stories." + sup.lab.name.replace("-", "_")
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name != modname:
            raise
        story.check(f"lab {sup.lab.name} has a story", False, f"no module {modname}")
        return story.steps
    mod.story(story)
    return story.steps
