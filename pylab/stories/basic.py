"""Lab basic: round robin across two nodes with the embedded DeltaManager (sync-ack): a
killed node costs no request and no session, and a restarted node gets every session back by
state transfer."""

from __future__ import annotations

import time

from pylab.client import Browser
from pylab.stories import Story
from pylab.stories.common import alternation


def story(s: Story) -> None:
    alternation(s)
    user = Browser()
    values = [user.post(s.probe, {"incr": "n"}).json() for _ in range(4)]
    seen = {v["node"] for v in values}
    # kill node1 in the middle of the session
    s.sup.kill("node1")
    after = [user.post(s.probe, {"incr": "n"}) for _ in range(4)]
    ok = all(r.status == 200 for r in after)
    bodies = [r.json() for r in after] if ok else []
    counted = [v["value"] for v in values] + [b["value"] for b in bodies]
    s.check("kill -9 node1: every request is still answered, by node2, and the session "
            "(incremented on both nodes before) keeps counting",
            ok and seen == {"node1", "node2"} and counted == list(range(1, 9))
            and all(b["node"] == "node2" for b in bodies),
            f"values {counted}, nodes before {sorted(seen)}, "
            f"after {[r.status for r in after]}")
    s.sup.start("node1")
    deadline = time.monotonic() + 15
    back: dict[str, object] | None = None
    while time.monotonic() < deadline and back is None:
        r = user.get(s.probe)
        if r.status == 200 and r.json()["node"] == "node1":
            back = r.json()
    attrs = back["attributes"] if isinstance(back, dict) else {}
    s.check("restart node1: it takes requests again and already has the session "
            "(state transfer from node2)",
            isinstance(attrs, dict) and attrs.get("n") == 8, f"node1 answered {back}")
