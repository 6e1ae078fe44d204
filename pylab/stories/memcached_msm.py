"""Lab memcached-msm (seed 003): memcached-session-manager in sticky mode.

A session lives in its node's memory and is backed up to memcached after every request that
changed it; n1 is the failover node, so ids end in `-n2.nodeX`. Kill the node that owns a
session: the balancer fails over, the other node loads the session from memcached and re-keys
it to its own route. Kill memcached n2: the sessions move to n1 (id `-n1`), nothing lost.
"""

from __future__ import annotations

import json
import time

from pylab.client import Browser
from pylab.stories import Story


def settle(s: Story, node: str, timeout: float = 5.0) -> bool:
    """Wait (bounded) until `node` has no backup in flight (its /-/health counters)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = json.loads(Browser().get(s.sup.url(node, "/-/health")).body)
        if all(c.get("pending_backups", 0) == 0 for c in h["contexts"].values()):
            return True
        time.sleep(0.02)
    return False


def story(s: Story) -> None:
    url = s.probe
    b = Browser()
    rs = [b.post(url, {"incr": "hits"}) for _ in range(3)]
    first = rs[0].json()
    sid, owner = first["session_id"], first["node"]
    s.check("a new session's id carries memcached node n2 and the jvmRoute (ID-n2.nodeX): "
            "n1 is only the failover node",
            sid.endswith(f"-n2.{owner}"), sid)
    s.check("sticky: the same node answers, hits 1..3",
            [r.json()["node"] for r in rs] == [owner] * 3
            and [r.json()["value"] for r in rs] == [1, 2, 3],
            str([(r.json()["node"], r.json()["value"]) for r in rs]))
    s.check(f"{owner} backed the session up to memcached", settle(s, owner))

    other = "node2" if owner == "node1" else "node1"
    s.sup.kill(owner)
    r = b.post(url, {"incr": "hits"})
    d = r.json() if r.status == 200 else {}
    s.check(f"kill -9 {owner}: {other} loads the session from memcached, hits = 4, id "
            f"re-keyed to .{other} (cookie re-issued)",
            r.status == 200 and d.get("node") == other and d.get("value") == 4
            and d.get("session_id") == sid.rsplit(".", 1)[0] + "." + other
            and b.cookies.get("JSESSIONID") == d.get("session_id"), f"{r.status} {d}")
    s.sup.start(owner)

    settle(s, other)
    s.sup.kill("m2")
    vals = []
    for _ in range(3):
        r = b.post(url, {"incr": "hits"})
        vals.append((r.status, r.json().get("value"), r.json().get("session_id")))
        # the backup runs after the answer: let it fail (n2 marked down) before the next
        # request, as a person typing the guide's commands does; bounded
        settle(s, other)
    last_id = vals[-1][2] or ""
    s.check("kill memcached n2: the session moves to n1 (id -n1), hits 5..7, nothing lost",
            [v[1] for v in vals] == [5, 6, 7] and "-n1." in last_id
            and b.cookies.get("JSESSIONID") == last_id, str(vals))
    s.sup.start("m2")
