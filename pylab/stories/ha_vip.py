"""Lab ha-vip: the virtual IP keeps answering when its MASTER dies, resigns or loses its pylb.

A client polls the VIP every 20 ms throughout (like the failover benchmark) and each step
reports the gap it saw. Bounds are VRRP's own timers plus slack: Master_Down for a crash,
Skew for a graceful stop; the pairing is advert_int 1 s, priorities 100 / 90.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

from pylab.stories import Story

MASTER_DOWN_90 = 3 + 166 / 256   # backup priority 90, advert_int 1 s (v2)
SKEW_90 = 166 / 256
SLACK = 0.5                      # scheduling, poll period, process start: a story, not a bench


class VipPoller:
    """Polls http://VIP/PATH every `period` seconds on a thread; records (time, ok, who)."""

    def __init__(self, host: str, port: int, path: str = "/api/session",
                 period: float = 0.02, timeout: float = 0.25) -> None:
        self.host, self.port, self.path = host, port, path
        self.period, self.timeout = period, timeout
        self.samples: list[tuple[float, bool, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> VipPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _one(self) -> tuple[bool, str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", self.path)
            r = conn.getresponse()
            body = r.read()
            who = ""
            if r.status == 200 and body.startswith(b"{"):
                who = str(json.loads(body).get("node", ""))
            return r.status == 200, who
        except (OSError, http.client.HTTPException, ValueError):
            return False, ""
        finally:
            conn.close()

    def _run(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            ok, who = self._one()
            self.samples.append((time.monotonic(), ok, who))
            nxt += self.period
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def first_ok_after(self, t: float, limit: float) -> float | None:
        """Seconds from `t` to the first success after the first failure following `t`
        (or to the first success at all if nothing failed); None if none within `limit`."""
        deadline = t + limit
        while time.monotonic() < deadline:
            failed = False
            for ts, ok, _ in list(self.samples):
                if ts < t:
                    continue
                if not ok:
                    failed = True
                elif failed:
                    return ts - t
            time.sleep(0.02)
        failed_any = any(not ok for ts, ok, _ in self.samples if ts >= t)
        return 0.0 if not failed_any and self.samples and self.samples[-1][0] >= t else None

    def wait_ok(self, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1][1]:
                return True
            time.sleep(0.02)
        return False


def vrrp_state(s: Story, name: str) -> str:
    try:
        data = json.loads((Path(s.sup.run_dir) / name / "state.json").read_text())
    except (OSError, ValueError):
        return "?"
    return str(data["instances"]["VI_1"]["state"])


def wait_state(s: Story, name: str, want: str, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if vrrp_state(s, name) == want:
            return True
        time.sleep(0.05)
    return False


def story(s: Story) -> None:
    host, port = s.sup.address()
    with VipPoller(host, port) as poll:
        s.check("the VIP answers through the MASTER (vip, priority 100)",
                wait_state(s, "vip", "MASTER", 10) and poll.wait_ok(5),
                f"vip is {vrrp_state(s, 'vip')}, vip-backup is {vrrp_state(s, 'vip-backup')}")

        t0 = time.monotonic()
        s.sup.kill("vip")
        gap = poll.first_ok_after(t0, MASTER_DOWN_90 + SLACK + 2)
        s.check(f"kill -9 the MASTER: the VIP answers again within Master_Down "
                f"({MASTER_DOWN_90:.3f} s) + slack", gap is not None
                and gap <= MASTER_DOWN_90 + SLACK, f"gap {gap if gap is None else round(gap, 3)} s")

        s.sup.start("vip")
        s.check("restart vip: it preempts (priority 100 > 90) and the VIP still answers",
                wait_state(s, "vip", "MASTER", 8) and wait_state(s, "vip-backup", "BACKUP", 3)
                and poll.wait_ok(3), f"vip is {vrrp_state(s, 'vip')}")

        t0 = time.monotonic()
        s.sup.stop("vip")
        gap = poll.first_ok_after(t0, SKEW_90 + SLACK + 2)
        s.check(f"graceful stop (priority 0): the backup takes over within Skew "
                f"({SKEW_90:.3f} s) + slack", gap is not None and gap <= SKEW_90 + SLACK,
                f"gap {gap if gap is None else round(gap, 3)} s")

        s.sup.start("vip")
        wait_state(s, "vip", "MASTER", 8)
        s.sup.kill("lb1")
        s.check("kill lb1: its check fails twice, vip goes FAULT and the VIP moves to lb2",
                wait_state(s, "vip", "FAULT", 6) and wait_state(s, "vip-backup", "MASTER", 3)
                and poll.wait_ok(3), f"vip is {vrrp_state(s, 'vip')}")
        s.sup.start("lb1")
        s.check("restart lb1: vip recovers (rise 2) and takes the VIP back",
                wait_state(s, "vip", "MASTER", 12) and poll.wait_ok(3),
                f"vip is {vrrp_state(s, 'vip')}")
