"""Load generation and result plumbing shared by every benchmark.

Load comes from wrk (Debian package) — a C load generator, so the client is never the
bottleneck we measure. `wrk_run` returns rps, p50/p99 latency and error counts;
`tree_cpu` reads the CPU time a server's whole process tree has used, so a benchmark can
report CPU per request (steadier than rps on a shared machine).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

# A session-writing client: POST {"incr": "n"} to the probe, keeping the session cookie it is
# given. wrk keeps one Lua state per thread, so all connections of a thread share one session.
KEEP_COOKIE_LUA = """
local cookie = nil
wrk.method = "POST"
wrk.body = '{"incr": "n"}'
wrk.headers["Content-Type"] = "application/json"
request = function()
  if cookie then wrk.headers["Cookie"] = cookie end
  return wrk.format()
end
response = function(status, headers, body)
  local c = headers["Set-Cookie"]
  if c then cookie = string.match(c, "^([^;]+)") end
end
"""

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


class BenchError(RuntimeError):
    pass


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    res: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = round(float(m.group(1)), 1) if m else 0.0
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[key] = round(_ms(m.group(1)), 3) if m else None
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    res["errors"] = errors
    return res


def wrk_run(url: str, duration: float = 10.0, connections: int = 32, threads: int = 1,
            script: str | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
    """Run wrk with keep-alive against `url`; `script` is Lua source (optional)."""
    exe = shutil.which("wrk")
    if exe is None:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    argv = [exe, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, int(duration))}s",
            "--latency", "--timeout", f"{int(timeout_s)}s"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        if script:
            f.write(script)
            argv += ["-s", f.name]
    argv.append(url)
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False,
                             timeout=duration + 30).stdout
    finally:
        Path(f.name).unlink(missing_ok=True)
    return parse_wrk(out)


_TICK = os.sysconf("SC_CLK_TCK")


def parse_proc_stat(text: str) -> tuple[int, int, int]:
    """`/proc/PID/stat` → (ppid, user ticks, system ticks), children already reaped included.

    The command name (field 2) may hold spaces and parentheses, so fields are counted from
    the last ")". utime/stime/cutime/cstime are fields 14-17: a worker that dies and is reaped
    mid-run moves its time into its parent's c-fields, so the tree's sum stays monotonic.
    """
    f = text.rsplit(")", 1)[-1].split()
    return int(f[1]), int(f[11]) + int(f[13]), int(f[12]) + int(f[14])


def tree_cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of `pid` and all its live descendants (all threads).

    One scan of /proc per call (children found by ppid: works without CONFIG_PROC_CHILDREN,
    and catches grandchildren). Take it before and after a load run; the difference is what
    the server spent on that run (nginx: master + worker; pylb --workers: master + workers).
    """
    stats: dict[int, tuple[int, int, int]] = {}
    for d in os.scandir("/proc"):
        if d.name.isdigit():
            try:
                with open(f"/proc/{d.name}/stat") as fh:
                    stats[int(d.name)] = parse_proc_stat(fh.read())
            except (OSError, ValueError, IndexError):
                continue  # exited between scandir and open
    kids: dict[int, list[int]] = {}
    for p, (ppid, _, _) in stats.items():
        kids.setdefault(ppid, []).append(p)
    user = system = 0
    todo = [pid] if pid in stats else []
    while todo:
        p = todo.pop()
        user += stats[p][1]
        system += stats[p][2]
        todo += kids.get(p, [])
    return user / _TICK, system / _TICK


def ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 3)


def flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            rows += flatten(v, key)
        else:
            rows.append((key, v))
    return rows


def print_table(name: str, result: dict[str, Any]) -> None:
    rows = flatten(result)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(f"== benchmark {name}")
        for k, v in rows:
            print(f"{k:<50} {v}")
        return
    t = Table(title=f"benchmark {name}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, "—" if v is None else str(v))
    Console().print(t)


def write_json(path: str | Path, result: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
