"""Lab redis-session (seed 004): sessions in redis, no stickiness needed.

Round robin alternates the nodes and the session follows (every request loads it from redis
and saves what changed). Kill the node that created it: the other keeps serving it.
"""

from __future__ import annotations

from pylab.client import Browser
from pylab.stories import Story


def story(s: Story) -> None:
    url = s.probe
    b = Browser()
    rs = [b.post(url, {"incr": "hits"}) for _ in range(4)]
    nodes = [r.json()["node"] for r in rs]
    sid = rs[0].json()["session_id"]
    s.check("round robin alternates the nodes and one session counts 1..4 across both",
            set(nodes) == {"node1", "node2"}
            and [r.json()["value"] for r in rs] == [1, 2, 3, 4]
            and {r.json()["session_id"] for r in rs} == {sid},
            str([(r.json()["node"], r.json()["value"]) for r in rs]))
    owner = sid.rsplit(".", 1)[1]
    s.sup.kill(owner)
    rs = [b.post(url, {"incr": "hits"}) for _ in range(3)]
    s.check(f"kill -9 {owner} (it created the session): the other node serves it, hits 5..7, "
            "same id",
            all(r.status == 200 for r in rs)
            and [r.json()["value"] for r in rs] == [5, 6, 7]
            and {r.json()["session_id"] for r in rs} == {sid},
            str([(r.status, r.body[:80]) for r in rs]))
    s.sup.start(owner)
