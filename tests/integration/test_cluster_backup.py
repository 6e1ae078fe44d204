"""BackupManager with three real pynodes: the session survives the kill of its primary and,
separately, of its backup (which is replaced)."""

from __future__ import annotations

import pytest

from pylab.client import Browser
from pylab.supervisor import Supervisor
from tests.conftest import StartLab
from tests.integration.test_cluster_replication import (
    cluster_lab,
    health,
    wait_members,
    wait_until,
)

pytestmark = pytest.mark.integration

NODES = ["node1", "node2", "node3"]


def incr(sup: Supervisor, node: str, b: Browser) -> dict[str, object]:
    r = b.post(sup.url(node, "/api/session"), {"incr": "n"})
    assert r.status == 200, r.body
    body: dict[str, object] = r.json()
    return body


def roles(sup: Supervisor, nodes: list[str]) -> dict[str, str]:
    """node → primary | backup | proxy, for the one session of the test."""
    out = {}
    for n in nodes:
        h = health(sup, n)
        out[n] = "primary" if h["primary"] else "backup" if h["active"] else \
            "proxy" if h["proxies"] else "none"
    return out


def started(start_lab: StartLab) -> tuple[Supervisor, Browser, str, str]:
    sup = start_lab(cluster_lab("backup", manager="backup", send="sync-ack"))
    wait_members(sup, NODES, 2)
    b = Browser()
    for _ in range(3):
        incr(sup, "node1", b)
    r = roles(sup, NODES)
    assert sorted(r.values()) == ["backup", "primary", "proxy"] and r["node1"] == "primary", r
    backup = next(n for n, role in r.items() if role == "backup")
    proxy = next(n for n, role in r.items() if role == "proxy")
    return sup, b, backup, proxy


def test_survives_the_kill_of_its_primary(start_lab: StartLab) -> None:
    sup, b, backup, proxy = started(start_lab)
    sup.kill("node1")
    # the proxy node fetches it (from the backup) and becomes primary
    body = incr(sup, proxy, b)
    assert body["value"] == 4 and body["node"] == proxy and body["new"] is False, body
    assert wait_until(lambda: roles(sup, [backup, proxy]) == {proxy: "primary",
                                                               backup: "backup"})
    assert incr(sup, backup, b)["value"] == 5          # and the backup can serve it too


def test_survives_the_kill_of_its_backup(start_lab: StartLab) -> None:
    sup, b, backup, proxy = started(start_lab)
    sup.kill(backup)
    # the primary picks the remaining node as the new backup and sends it a copy
    assert wait_until(lambda: roles(sup, ["node1", proxy]) == {"node1": "primary",
                                                                proxy: "backup"}), \
        roles(sup, ["node1", proxy])
    assert incr(sup, "node1", b)["value"] == 4
    sup.kill("node1")                                   # and now the new backup carries it
    assert incr(sup, proxy, b)["value"] == 5
