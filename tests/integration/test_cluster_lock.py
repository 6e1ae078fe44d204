"""The cluster-wide per-session lock (`lock = "session"`) with three real pynode processes:
a lock request that times out is withdrawn, so the lock is usable again at once.

The long holder is made the way it happens in production: a member hangs (SIGSTOP: its
receiver still accepts connections, so the failure detector keeps it), and a holder's
sync-ack of its changes waits `ack_timeout` for that member before releasing the lock.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pylab.client import Browser
from pylab.supervisor import Supervisor
from pylab.topology import ProcessSpec
from tests.conftest import StartLab, make_lab
from tests.integration.test_cluster_replication import health, node_toml, wait_members, wait_until

pytestmark = pytest.mark.integration

ACK_TIMEOUT = 5.0       # how long the holder keeps the lock while a member hangs
LOCK_TIMEOUT = 1.0      # how long the other request waits for it


def lock_lab(name: str, lock_timeout: float = LOCK_TIMEOUT, lock_lease: float = 60.0) -> Any:
    toml = node_toml("delta", send="async", lock="session", lock_timeout=lock_timeout,
                     lock_lease=lock_lease)
    toml = toml.replace("ack_timeout = 3.0", f"ack_timeout = {ACK_TIMEOUT}")
    assert f"ack_timeout = {ACK_TIMEOUT}" in toml
    procs = [ProcessSpec(f"node{i}", "pynode", ["-c", "{file:node.toml}"],
                         files={"node.toml": toml}) for i in (1, 2, 3)]
    return make_lab(name, procs, entry="node1")


def incr(url: str, sid: str) -> int:
    b = Browser(timeout=ACK_TIMEOUT * 3)
    b.cookies["JSESSIONID"] = sid
    r = b.post(url, {"incr": "n"})
    assert r.status == 200, r.status
    return int(r.json()["value"])


def roles(sup: Supervisor) -> tuple[str, str, str]:
    """(coordinator, asker, hung): the asker's lock requests are messages to the coordinator."""
    nodes = ["node1", "node2", "node3"]
    wait_members(sup, nodes, 2)
    coord = health(sup, "node1")["lock"]["coordinator"]
    assert all(health(sup, n)["lock"]["coordinator"] == coord for n in nodes)
    asker, hung = [n for n in nodes if n != coord]
    return coord, asker, hung


def new_session(sup: Supervisor, node: str) -> str:
    sid = str(Browser().post(sup.url(node, "/api/session"), {"incr": "n"}).json()["session_id"])
    assert wait_until(lambda: all(health(sup, n)["active"] == 1
                                  for n in ("node1", "node2", "node3")))
    return sid


@contextmanager
def coordinator_holding_the_lock(sup: Supervisor, coord: str, hung: str,
                                 sid: str) -> Iterator[None]:
    """`hung` is stopped and the coordinator's own request takes the session's lock, which
    its sync-ack to `hung` keeps ~ACK_TIMEOUT; on leaving, that request has finished."""
    sup.kill(hung, signal.SIGSTOP)
    try:
        holder = threading.Thread(target=incr, args=(sup.url(coord, "/api/session"), sid))
        holder.start()
        assert wait_until(lambda: health(sup, coord)["lock"]["held"] == 1, timeout=5)
        yield
        holder.join(ACK_TIMEOUT * 3)
        assert not holder.is_alive()
    finally:
        sup.kill(hung, signal.SIGCONT)


def test_timed_out_lock_request_is_withdrawn_and_the_lock_is_free_again(
        start_lab: StartLab) -> None:
    sup = start_lab(lock_lab("lockcancel"))   # lease 60 s: what frees the lock is the cancel
    coord, asker, hung = roles(sup)
    sid = new_session(sup, asker)

    with coordinator_holding_the_lock(sup, coord, hung, sid):
        # the asker waits LOCK_TIMEOUT, gives up, goes on unlocked and withdraws its request
        incr(sup.url(asker, "/api/session"), sid)
        assert health(sup, asker)["lock"]["not_granted"] == 1
        assert health(sup, coord)["lock"]["waiting"] == 0      # withdrawn, not left queued

    # the holder released: nobody holds the lock (before the fix the coordinator granted
    # it to the asker's abandoned request, and every later request waited LOCK_TIMEOUT)
    assert wait_until(lambda: health(sup, coord)["lock"]["held"] == 0, timeout=5), \
        health(sup, coord)["lock"]
    before = health(sup, asker)["lock"]
    for node in (asker, coord, asker):
        incr(sup.url(node, "/api/session"), sid)
    after = health(sup, asker)["lock"]
    assert after["not_granted"] == before["not_granted"] == 1, after
    assert after["granted"] == before["granted"] + 2, after
    assert health(sup, coord)["lock"]["not_granted"] == 0
    assert health(sup, coord)["lock"]["leases_expired"] == 0


def test_lock_held_past_its_lease_passes_to_the_waiting_request(start_lab: StartLab) -> None:
    """lock_lease 1.5 s < the holder's 5 s: the waiting request is granted by the lease
    expiry (not after its 4 s lock_timeout); the holders' late unlocks are ignored and the
    lock is free afterwards."""
    sup = start_lab(lock_lab("locklease", lock_timeout=4.0, lock_lease=1.5))
    coord, asker, hung = roles(sup)
    sid = new_session(sup, asker)
    with coordinator_holding_the_lock(sup, coord, hung, sid):
        incr(sup.url(asker, "/api/session"), sid)
        asked = health(sup, asker)["lock"]
        assert asked["granted"] == 1 and asked["not_granted"] == 0, asked
        # two expiries: the holder's, then the asker's own (its sync-ack waits for `hung` too)
        assert health(sup, coord)["lock"]["leases_expired"] == 2
    assert wait_until(lambda: health(sup, coord)["lock"]["held"] == 0, timeout=5), \
        health(sup, coord)["lock"]
    incr(sup.url(asker, "/api/session"), sid)
    assert health(sup, asker)["lock"]["not_granted"] == 0
