"""Lab rr-no-sharing: the seeds' starting problem — the session is lost on the other node."""

from __future__ import annotations

from pylab.client import Browser
from pylab.stories import Story
from pylab.stories.common import alternation


def story(story: Story) -> None:
    alternation(story)
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
