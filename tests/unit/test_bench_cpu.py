"""CPU-per-request plumbing of the proxy benchmark: /proc/PID/stat parsing, process-tree
sums, and the median that keeps user + system equal to the reported total."""

from __future__ import annotations

import os
import time

from benchmarks.__main__ import available
from benchmarks.load import parse_proc_stat, tree_cpu
from benchmarks.proxy import _median

# comm with spaces and ")" — fields must be counted from the last ")"
STAT = ("4242 (nginx: worker) (x) S 4241 4241 4241 0 -1 4194624 100 0 0 0 "
        "700 300 5 2 20 0 1 0 12345 1000 200 18446744073709551615")


def test_parse_proc_stat_counts_from_last_paren_and_adds_reaped_children() -> None:
    assert parse_proc_stat(STAT) == (4241, 700 + 5, 300 + 2)


def test_tree_cpu_grows_with_work_done() -> None:
    u0, s0 = tree_cpu(os.getpid())
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    u1, s1 = tree_cpu(os.getpid())
    assert (u1 + s1) - (u0 + s0) >= 0.1  # clock ticks are 10 ms
    assert tree_cpu(2**22 + 7) == (0.0, 0.0)  # no such pid


def _slice(rps: float, user: float, system: float) -> dict[str, float | int]:
    return {"rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "requests": 10, "errors": 0,
            "user_us_per_req": user, "sys_us_per_req": system,
            "cpu_us_per_req": user + system, "cpu_busy": 1.0}


def test_median_takes_rps_and_cpu_from_their_own_median_slices() -> None:
    med = _median([_slice(100, 10, 10), _slice(300, 5, 5), _slice(200, 30, 1)])
    assert med["rps"] == 200 and med["rps_slices"] == [100, 300, 200]  # as measured
    assert med["cpu_us_per_req"] == 20
    assert med["user_us_per_req"] + med["sys_us_per_req"] == med["cpu_us_per_req"]
    assert med["requests"] == 30


def test_reference_proxy_is_not_listed_as_a_benchmark() -> None:
    assert "proxy" in available() and not any("aiohttp" in n for n in available())
