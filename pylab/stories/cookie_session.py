"""Lab cookie-session (seed 000, item 3): the session travels in a sealed cookie.

Round robin alternates the nodes and the session follows without any shared store; a killed
node costs nothing; a tampered cookie gives a fresh empty session (never an error, never the
forged content); a session grown past 4 KB is refused with a clear error, keeping the old one.
"""

from __future__ import annotations

from pylab.client import Browser
from pylab.stories import Story

COOKIE = "PYSESSION"


def story(s: Story) -> None:
    url = s.probe
    b = Browser()
    rs = [b.post(url, {"incr": "hits"}) for _ in range(4)]
    answers = [(r.json()["node"], r.json()["value"]) for r in rs]
    s.check("round robin alternates the nodes and one cookie session counts 1..4 across both",
            {n for n, _ in answers} == {"node1", "node2"}
            and [v for _, v in answers] == [1, 2, 3, 4] and COOKIE in b.cookies,
            str(answers))
    s.sup.kill("node1")
    rs = [b.post(url, {"incr": "hits"}) for _ in range(3)]
    s.check("kill -9 node1: node2 serves the same session, hits 5..7 (nothing lived on node1)",
            all(r.status == 200 for r in rs) and [r.json()["value"] for r in rs] == [5, 6, 7],
            str([(r.status, r.body[:80]) for r in rs]))
    s.sup.start("node1")
    big = b.post(url, {"set": {"blob": "x" * 5000}})
    after = b.get(url).json()
    s.check("a session past 4 KB is refused with a clear error; the session keeps its hits",
            big.status >= 400 and b"4096" in big.body and after["attributes"].get("hits") == 7
            and "blob" not in after["attributes"],
            f"{big.status} {big.body[:120]!r} then {after['attributes']}")
    forged = Browser()
    value = b.cookies[COOKIE]
    forged.cookies[COOKIE] = value[:-6] + ("AAAAAA" if not value.endswith("AAAAAA") else "BBBBBB")
    r = forged.get(url)
    s.check("a tampered cookie gives a fresh, empty session (new id, no attributes)",
            r.status == 200 and r.json()["new"] is True and r.json()["attributes"] == {},
            f"{r.status} {r.body[:120]!r}")
