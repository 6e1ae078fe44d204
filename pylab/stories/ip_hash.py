"""Lab ip-hash: nginx `ip_hash` pins each client /24 to one node; no session is shared.

Clients are told apart by their source address: every 127.x.y.z is this machine, so the
story binds its requests to 127.0.0.1, 127.0.0.77, 127.0.1.1, … and watches where they land.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

from pylab.stories import Story

SUBNETS = [f"127.0.{k}.1" for k in range(8)]


class ClientAt:
    """A browser at one source address: keeps JSESSIONID, one connection per request."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.session: str | None = None

    def post(self, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        u = urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80,
                                          timeout=5, source_address=(self.source, 0))
        headers = {"Content-Type": "application/json"}
        if self.session:
            headers["Cookie"] = f"JSESSIONID={self.session}"
        try:
            conn.request("POST", u.path, json.dumps(body).encode(), headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        data = json.loads(raw) if resp.status == 200 else {}
        if data.get("session_id"):
            self.session = data["session_id"]
        return resp.status, data

    def node(self, url: str) -> str | None:
        """Where a request without a session lands (the session is not kept)."""
        saved, self.session = self.session, None
        try:
            status, data = self.post(url, {})
        finally:
            self.session = saved
        return data.get("node") if status == 200 else None


def story(s: Story) -> None:
    url = s.probe
    same = {ClientAt(src).node(url) for src in ("127.0.0.1", "127.0.0.2", "127.0.0.77")
            for _ in range(3)}
    s.check("every client of 127.0.0.0/24 lands on the same node, request after request",
            len(same) == 1 and None not in same, f"nodes: {sorted(map(str, same))}")
    home = same.pop()
    assert home is not None
    other = "node2" if home == "node1" else "node1"

    spread = {src: ClientAt(src).node(url) for src in SUBNETS}
    s.check("other /24s hash elsewhere: 127.0.0.x to 127.0.7.x spread over both nodes",
            set(spread.values()) == {"node1", "node2"}, f"{spread}")

    alice = ClientAt("127.0.0.1")
    answers = [alice.post(url, {"incr": "hits"}) for _ in range(5)]
    ok = all(st == 200 and d["node"] == home for st, d in answers) and \
        [d.get("value") for _, d in answers] == [1, 2, 3, 4, 5]
    s.check(f"a session made from 127.0.0.1 stays on {home} with no sharing at all "
            "(hits 1..5)", ok, f"answers: {answers}")

    s.sup.kill(home)
    status, d = alice.post(url, {"incr": "hits"})
    s.check(f"kill -9 {home}: 127.0.0.1 is re-hashed to {other} and still answered",
            status == 200 and d.get("node") == other, f"{status} {d}")
    s.check("… but its session is gone: ip_hash pins clients, it does not share sessions "
            "(hits back to 1, a new id)", d.get("value") == 1 and d.get("new") is True,
            f"{d}")
    more = [alice.post(url, {"incr": "hits"})[1].get("node") for _ in range(3)]
    s.check(f"while {home} is down the /24 stays on {other}", more == [other] * 3,
            f"nodes: {more}")

    s.sup.start(home)
    deadline = time.monotonic() + 15  # pylb retries a failed member after fail_timeout (2 s)
    back = None
    while time.monotonic() < deadline:
        back = ClientAt("127.0.0.1").node(url)
        if back == home:
            break
        time.sleep(0.1)
    status, d = alice.post(url, {"incr": "hits"})
    s.check(f"restart {home}: the /24 hashes back to it — and the session made on {other} "
            "during the outage is lost in turn", back == home and d.get("node") == home
            and d.get("value") == 1, f"node {back}, answer {d}")
