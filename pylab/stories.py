"""`pylab check LAB`: the scripted story of each lab, printed as pass/fail per step.

A story drives a running lab only through its contracts (the `/api/session` probe, the
supervisor's kill/restart), exactly as a student following the guide would.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from pylab.client import Browser
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


def _alternation(story: Story) -> None:
    nodes = [Browser().get(story.probe).json()["node"] for _ in range(4)]
    story.check("round robin alternates node1 / node2", set(nodes) == {"node1", "node2"}
                and all(a != b for a, b in itertools.pairwise(nodes)),
                f"answers: {nodes}")


def _survives_kill(story: Story, victim: str = "node1") -> None:
    story.sup.kill(victim)
    answers = []
    for _ in range(6):
        r = Browser().get(story.probe)
        answers.append((r.status, r.json()["node"] if r.status == 200 else None))
    ok = all(s == 200 for s, _ in answers) and all(n != victim for _, n in answers)
    story.check(f"kill -9 {victim}: every request still answered by the others", ok,
                f"answers: {answers}")
    story.sup.start(victim)
    deadline = time.monotonic() + 15
    seen: set[str] = set()
    while time.monotonic() < deadline and victim not in seen:
        seen.add(Browser().get(story.probe).json()["node"])
    story.check(f"restart {victim}: it takes requests again", victim in seen,
                f"nodes seen: {sorted(seen)}")


def story_basic(story: Story) -> None:
    _alternation(story)
    _survives_kill(story)


def story_rr_no_sharing(story: Story) -> None:
    _alternation(story)
    b = Browser()
    first = b.post(story.probe, {"set": {"user": "alice"}}).json()
    story.check("a session is made and holds user=alice",
                first["attributes"].get("user") == "alice", str(first))
    second = b.get(story.probe).json()
    lost = second["node"] != first["node"] and second["new"] and \
        second["session_id"] != first["session_id"] and "user" not in second["attributes"]
    story.check("the next request lands on the other node, which does not know the session "
                "(a new id, user gone) — the problem the other labs solve", lost,
                f"first on {first['node']}, then {second['node']} new={second['new']}")


STORIES: dict[str, Callable[[Story], None]] = {
    "basic": story_basic,
    "rr-no-sharing": story_rr_no_sharing,
}


def run_story(sup: Supervisor, report: Callable[[Step], None]) -> list[Step]:
    fn = STORIES.get(sup.lab.name)
    story = Story(sup, report)
    if fn is None:
        story.check(f"lab {sup.lab.name} has a story", False, "no story written yet")
    else:
        fn(story)
    return story.steps
