"""Lab backup-manager: three BackupManager nodes behind a sticky pylb. Kill the session's
primary: its backup takes over. Kill the new backup: a new backup is chosen."""

from __future__ import annotations

import time
from typing import Any

from pylab.client import Browser
from pylab.stories import Story


def health(s: Story, node: str) -> dict[str, Any]:
    r = Browser().get(s.sup.url(node, "/-/health"))
    ctx: dict[str, Any] = r.json()["contexts"]["/"]
    return ctx


def story(s: Story) -> None:
    user = Browser()
    first = [user.post(s.probe, {"incr": "n"}).json() for _ in range(3)]
    home = first[0]["node"]
    s.check("a session is made on one node (its primary) and counts 1..3",
            [v["value"] for v in first] == [1, 2, 3], str(first))
    nodes = ["node1", "node2", "node3"]
    held = {n: health(s, n)["active"] for n in nodes if n != home}
    s.check("exactly one other node holds a backup copy; the third only a proxy entry",
            sorted(held.values()) == [0, 1], str(held))
    s.sup.kill(home)
    after = [user.post(s.probe, {"incr": "n"}) for _ in range(3)]
    bodies = [r.json() for r in after if r.status == 200]
    s.check(f"kill -9 the primary {home}: the session continues at 4, 5, 6",
            [b.get("value") for b in bodies] == [4, 5, 6], str(bodies))
    now_home = bodies[-1]["node"] if bodies else ""
    survivors = [n for n in nodes if n not in (home, now_home)]
    deadline = time.monotonic() + 10
    ok = False
    while time.monotonic() < deadline and not ok:
        ok = all(health(s, n)["active"] == 1 for n in survivors)
        time.sleep(0.2)
    s.check(f"{now_home} is primary and {', '.join(survivors)} holds the new backup", ok,
            str({n: health(s, n) for n in survivors}))
    if survivors:
        s.sup.kill(survivors[0])
        r = user.post(s.probe, {"incr": "n"})
        s.check(f"kill -9 the backup {survivors[0]}: the session still counts (7)",
                r.status == 200 and r.json().get("value") == 7, r.body[:200].decode())
