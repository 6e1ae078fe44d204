"""Cluster messages without the key, or replayed, are rejected by a real pynode; messages
sealed with the key are applied (the control)."""

from __future__ import annotations

import socket
import time

import pytest

from pylab.client import Browser
from pysession.cluster.frames import FrameCodec
from tests.conftest import StartLab
from tests.integration.test_cluster_replication import KEY, cluster_lab, health, read

pytestmark = pytest.mark.integration


def send_raw(addr: str, data: bytes) -> bool:
    """Write one frame; True when the node kept the connection open afterwards."""
    host, _, port = addr.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=3) as s:
        s.sendall(data)
        s.settimeout(0.5)
        try:
            return s.recv(1) != b""        # b"" = closed by the node
        except TimeoutError:
            return True


def delta_frame(codec: FrameCodec, sid: str, n: int) -> bytes:
    msg = {"t": "delta", "ctx": "/", "id": sid,
           "d": {"o": "intruder", "n": n, "l": 1000 + n, "ops": [["n", "n", 100, 100]],
                 "meta": {}, "ta": time.time()}}
    return codec.frame(msg, time.time())


def test_unauthenticated_and_replayed_messages_are_rejected(start_lab: StartLab) -> None:
    sup = start_lab(cluster_lab("sec", n=1, send="async"))
    b = Browser()
    sid = b.post(sup.url("node1", "/api/session"), {"incr": "n"}).json()["session_id"]
    receiver = health(sup, "node1")["receiver"]

    wrong = FrameCodec("intruder", time.time_ns(), "not the cluster key")
    assert not send_raw(receiver, delta_frame(wrong, sid, 1))
    assert read(sup, "node1", sid)["attributes"]["n"] == 1
    assert health(sup, "node1")["frames_rejected"] == 1

    good = FrameCodec("intruder", time.time_ns(), KEY)
    frame = delta_frame(good, sid, 1)
    assert send_raw(receiver, frame)                       # with the key: applied
    assert read(sup, "node1", sid)["attributes"]["n"] == 101

    assert not send_raw(receiver, frame)                   # the same bytes again: replay
    assert read(sup, "node1", sid)["attributes"]["n"] == 101
    assert health(sup, "node1")["frames_rejected"] == 2
