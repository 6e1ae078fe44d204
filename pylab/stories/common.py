"""Steps several stories share."""

from __future__ import annotations

import itertools
import time

from pylab.client import Browser
from pylab.stories import Story


def alternation(story: Story) -> None:
    nodes = [Browser().get(story.probe).json()["node"] for _ in range(4)]
    story.check("round robin alternates node1 / node2", set(nodes) == {"node1", "node2"}
                and all(a != b for a, b in itertools.pairwise(nodes)),
                f"answers: {nodes}")


def survives_kill(story: Story, victim: str = "node1") -> None:
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
