"""Lab delta-replication: three DeltaManager nodes behind a sticky pylb. A session lives on
every node; kill the node it sticks to and it carries on elsewhere with every increment."""

from __future__ import annotations

import time

from pylab.client import Browser
from pylab.stories import Story


def sessions_on(s: Story, node: str) -> int:
    """How many sessions a node holds (its /-/health), without touching any session."""
    return int(Browser().get(s.sup.url(node, "/-/health")).json()["sessions"])


def wait_replicated(s: Story, nodes: list[str], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(sessions_on(s, n) >= 1 for n in nodes):
            return True
        time.sleep(0.05)
    return False


def story(s: Story) -> None:
    user = Browser()
    first = [user.post(s.probe, {"incr": "n"}).json() for _ in range(5)]
    home = first[0]["node"]
    s.check("a session sticks to one node (route in the JSESSIONID) and counts 1..5",
            [v["value"] for v in first] == [1, 2, 3, 4, 5]
            and all(v["node"] == home for v in first), str(first))
    sid = first[-1]["session_id"]
    others = [p for p in ("node1", "node2", "node3") if p != home]
    copies = wait_replicated(s, others)
    s.check(f"the other nodes ({', '.join(others)}) hold a copy of the session", copies,
            f"session {sid}")
    s.sup.kill(home)
    after = [user.post(s.probe, {"incr": "n"}) for _ in range(3)]
    bodies = [r.json() for r in after if r.status == 200]
    s.check(f"kill -9 {home}: the session carries on elsewhere at 6, 7, 8 (id re-routed to "
            "the new node)", len(bodies) == 3 and [b["value"] for b in bodies] == [6, 7, 8]
            and all(b["node"] != home for b in bodies)
            and bodies[-1]["session_id"].endswith("." + bodies[-1]["node"]),
            str([(r.status, r.body[:120]) for r in after]))
