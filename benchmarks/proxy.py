"""`python -m benchmarks proxy`: pylb, nginx and HAProxy side by side, same backend, same load.

Backend: one nginx worker answering `return 200 "ok"` (a static responder, never the
bottleneck we measure). Fronts, each one process / one worker, keep-alive pools to the backend:
nginx (`upstream { keepalive 64; }`), HAProxy (`nbthread 1`, `http-reuse always`), pylb
(uvloop), and a reference Python proxy (`aiohttp_proxy`: aiohttp server + one shared
ClientSession with a 64-connection keep-alive pool, uvloop — benchmarks/_aiohttp_proxy.py),
which is what "faster than a Python proxy has been" is measured against, and the floor
under any Python proxy on uvloop (`relay_floor`: a byte relay pairing each client with its
own upstream connection, parsing nothing — benchmarks/_relay_floor.py), and pylb from its
mypyc-compiled build (`pylb_compiled`: `pylb compile`, then `PYLB_COMPILED=...`; left out
where mypyc or a C compiler is missing). Load: wrk, 2
threads, 64 keep-alive connections, `--duration` seconds per run. Then pylb with
`--workers 2`, and pylb's rps with 2, 10, 100 and 1000 members (all on the backend's address,
distinct names, so only the balancer's bookkeeping grows).

The machine is shared (2 cores for wrk, the front and the backend, and whatever else runs):
each front is measured in ROUNDS interleaved slices of `duration / ROUNDS` seconds
(nginx, pylb, haproxy, pylb --workers 2, nginx with 2 workers, aiohttp_proxy,
relay_floor, then again ...) and the median slice
(by rps) gives rps/p50/p99, so a burst of outside load does not land on one contender only.
Read ratios from the same run, not absolute numbers.

CPU per request is the steadier figure (rps swings ±15 % between slices here; the CPU a
front spends per request barely moves): around every slice the CPU time of the front's whole
process tree is read from /proc (nginx master + worker, pylb --workers master + workers) and
divided by the requests wrk completed. `cpu_us_per_req` is the median slice by that total,
`user_us_per_req` / `sys_us_per_req` its split (so they add up), `cpu_busy` the share of one
core the tree used during that slice (1.0 = a core saturated; a front near 1.0 is CPU-bound).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.load import BenchError, ratio, tree_cpu, wrk_run
from pylab.supervisor import Supervisor, free_port
from pylab.topology import Lab, ProcessSpec

CONNECTIONS = 64
THREADS = 2
ROUNDS = 3


def _nginx_conf(body: str, workers: int = 1) -> str:
    prefix = "{rundir}/{name}"
    temps = "".join(f"  {t}_temp_path {prefix}/{t}_temp;\n"
                    for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"worker_processes {workers};\nerror_log {prefix}/error.log error;\n"
            f"pid {prefix}/nginx.pid;\nevents {{ worker_connections 8192; }}\n"
            f"http {{\n  access_log off;\n{temps}{body}\n}}\n")


def _nginx(name: str, body: str, after: list[str] | None = None,
           workers: int = 1) -> ProcessSpec:
    return ProcessSpec(name, "command", ["/usr/sbin/nginx", "-p", "{rundir}/{name}", "-c",
                                         "{file:nginx.conf}", "-g", "daemon off; user root;"],
                       ready="tcp", after=after or [],
                       files={"nginx.conf": _nginx_conf(body, workers)})


def _pylb(name: str, members: int, backend: int, port: int | None = None,
          workers: int = 1) -> ProcessSpec:
    ms = ",\n".join(f'  {{ name = "m{i}", address = "127.0.0.1:{backend}" }}'
                    for i in range(members))
    listen = str(port) if port else "{port}"
    toml = (f'[server]\nlisten = ["127.0.0.1:{listen}"]\nkeepalive_requests = 1000000\n'
            f'[upstream.app]\nkeepalive = 64\nmembers = [\n{ms}\n]\n')
    args = ["serve", "-c", "{file:lb.toml}", "--log-level", "warning"]
    if workers > 1:
        args += ["--workers", str(workers), "--run-dir", "{rundir}/{name}/run"]
    return ProcessSpec(name, "pylb", args, files={"lb.toml": toml}, after=["backend"])


def _haproxy(backend: int) -> ProcessSpec:
    cfg = ("global\n  nbthread 1\n  maxconn 8192\n"
           "defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n"
           "  timeout server 60s\n  http-reuse always\n"
           "frontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n"
           f"backend b\n  server s1 127.0.0.1:{backend}\n")
    return ProcessSpec("haproxy", "command", ["/usr/sbin/haproxy", "-db", "-f",
                                              "{file:haproxy.cfg}"],
                       ready="tcp", after=["backend"], files={"haproxy.cfg": cfg})


def _aiohttp_proxy(backend: int) -> ProcessSpec:
    return ProcessSpec("aiohttp_proxy", "command",
                       ["{python}", "-m", "benchmarks._aiohttp_proxy", "--listen",
                        "127.0.0.1:{port}", "--upstream", f"http://127.0.0.1:{backend}"],
                       ready="tcp", after=["backend"])


def _compile(tmp: Path) -> str | None:
    """`pylb compile` (mypyc) into `tmp`; the build directory, or None where mypyc or a C
    compiler is missing (the contender is then left out)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pylb", "compile", "--out", str(tmp)],
                              capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = proc.stdout.strip().rpartition("PYLB_COMPILED=")[2]
    return line if proc.returncode == 0 and line else None


def _relay_floor(backend: int) -> ProcessSpec:
    return ProcessSpec("relay_floor", "command",
                       ["{python}", "-m", "benchmarks._relay_floor", "--listen",
                        "127.0.0.1:{port}", "--upstream", f"127.0.0.1:{backend}"],
                       ready="tcp", after=["backend"])


def _keys(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "requests", "errors")}


def _url(sup: Supervisor, name: str, port: int | None = None) -> str:
    return f"http://127.0.0.1:{port}/" if port else sup.url(name, "/")


def _slice(url: str, pid: int, duration: float) -> dict[str, Any]:
    """One wrk run, with the CPU the process tree of `pid` spent during it."""
    u0, s0 = tree_cpu(pid)
    t0 = time.monotonic()
    r = _keys(wrk_run(url, duration, CONNECTIONS, THREADS))
    wall = time.monotonic() - t0
    u1, s1 = tree_cpu(pid)
    n = r["requests"]
    r["user_us_per_req"] = round((u1 - u0) / n * 1e6, 2) if n else None
    r["sys_us_per_req"] = round((s1 - s0) / n * 1e6, 2) if n else None
    r["cpu_us_per_req"] = round((u1 - u0 + s1 - s0) / n * 1e6, 2) if n else None
    r["cpu_busy"] = round((u1 - u0 + s1 - s0) / wall, 2)
    return r


def _median(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """rps/p50/p99 from the median slice by rps; the CPU figures from the median by CPU.

    The per-slice lists stay in the order measured, so a drift over the run shows.
    """
    by_rps = sorted(rs, key=lambda r: r["rps"])
    med = dict(by_rps[len(rs) // 2])
    with_cpu = sorted((r for r in rs if r["cpu_us_per_req"] is not None),
                      key=lambda r: r["cpu_us_per_req"])
    cpu = with_cpu[len(with_cpu) // 2] if with_cpu else {}
    for k in ("cpu_us_per_req", "user_us_per_req", "sys_us_per_req", "cpu_busy"):
        med[k] = cpu.get(k)
    med["requests"] = sum(r["requests"] for r in rs)
    med["errors"] = sum(r["errors"] for r in rs)
    med["rps_slices"] = [r["rps"] for r in rs]
    med["cpu_us_slices"] = [r["cpu_us_per_req"] for r in rs]
    return med


def _measure(sup: Supervisor, name: str, pid: int, duration: float) -> dict[str, Any]:
    url = _url(sup, name)
    wrk_run(url, 1, CONNECTIONS, THREADS)  # warm-up: pools filled, code paths hot
    r = _slice(url, pid, duration)
    return {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "requests", "errors",
                              "user_us_per_req", "sys_us_per_req", "cpu_us_per_req",
                              "cpu_busy")}


def _interleaved(fronts: dict[str, tuple[str, int]], duration: float) -> dict[str, dict[
        str, Any]]:
    """ROUNDS slices per contender (name → (url, pid)), interleaved; medians of each."""
    for url, _ in fronts.values():
        wrk_run(url, 1, CONNECTIONS, THREADS)  # warm-up
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in fronts}
    piece = max(duration / ROUNDS, 2.0)
    for _ in range(ROUNDS):
        for name, (url, pid) in fronts.items():
            runs[name].append(_slice(url, pid, piece))
    return {name: _median(rs) for name, rs in runs.items()}


def run(duration: float) -> dict[str, Any]:
    if not shutil.which("wrk") or not Path("/usr/sbin/nginx").exists():
        raise BenchError("needs wrk and nginx")
    backend = free_port()
    back = _nginx("backend", f"  server {{ listen 127.0.0.1:{backend} backlog=4096; "
                  "keepalive_requests 1000000; location / { return 200 \"ok\"; } }\n")
    back.port = backend
    # the supervisor picks ports for processes; readiness uses that port, so the backend
    # answers on both (its own {port} and the fixed one the fronts point at)
    back.files["nginx.conf"] = back.files["nginx.conf"].replace(
        "backlog=4096;", "backlog=4096; listen 127.0.0.1:{port};")
    front = (f"  upstream b {{ server 127.0.0.1:{backend}; keepalive 64; }}\n"
             "  server { listen 127.0.0.1:{port}; keepalive_requests 1000000; "
             "location / { proxy_pass http://b; proxy_http_version 1.1; "
             "proxy_set_header Connection \"\"; } }\n")
    w2_port = free_port()
    # nginx with 2 workers: how far the anchor itself scales on this box (wrk and the
    # backend share the same 2 cores), the yardstick for pylb --workers 2
    procs = [back, _nginx("nginx", front, after=["backend"]),
             _nginx("nginx_w2", front, after=["backend"], workers=2),
             _pylb("pylb", 2, backend), _pylb("pylb_w2", 2, backend, w2_port, workers=2)]
    have_haproxy = Path("/usr/sbin/haproxy").exists()
    if have_haproxy:
        procs.append(_haproxy(backend))
    procs.append(_aiohttp_proxy(backend))
    procs.append(_relay_floor(backend))
    curve_ns = (2, 10, 100, 1000)
    procs += [_pylb(f"pylb_{n}", n, backend) for n in curve_ns]
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        compiled = _compile(Path(tmp) / "mypyc")
        if compiled is not None:
            spec = _pylb("pylb_compiled", 2, backend)
            spec.env = {"PYLB_COMPILED": compiled}
            procs.append(spec)
        sup = Supervisor(Lab("bench-proxy", "proxies side by side", "pylb", procs, "<bench>"),
                         Path(tmp) / "run", free_ports=True)
        try:
            sup.up()
            pid = {p["name"]: p["pid"] for p in sup.status()["processes"]}
            result["backend_direct"] = _measure(sup, "backend", pid["backend"], duration / 2)
            fronts = {"nginx": (_url(sup, "nginx"), pid["nginx"]),
                      "pylb": (_url(sup, "pylb"), pid["pylb"])}
            if have_haproxy:
                fronts["haproxy"] = (_url(sup, "haproxy"), pid["haproxy"])
            fronts["pylb_workers2"] = (_url(sup, "pylb_w2", w2_port), pid["pylb_w2"])
            fronts["nginx_workers2"] = (_url(sup, "nginx_w2"), pid["nginx_w2"])
            fronts["aiohttp_proxy"] = (_url(sup, "aiohttp_proxy"), pid["aiohttp_proxy"])
            fronts["relay_floor"] = (_url(sup, "relay_floor"), pid["relay_floor"])
            if compiled is not None:
                fronts["pylb_compiled"] = (_url(sup, "pylb_compiled"), pid["pylb_compiled"])
            result.update(_interleaved(fronts, duration))
            result.setdefault("haproxy", None)
            result.setdefault("pylb_compiled", None)
            curve = _interleaved({str(n): (_url(sup, f"pylb_{n}"), pid[f"pylb_{n}"])
                                  for n in curve_ns}, max(duration / 2, 2))
            result["members_curve"] = {n: r["rps"] for n, r in curve.items()}
            result["members_curve_cpu_us_per_req"] = {n: r["cpu_us_per_req"]
                                                      for n, r in curve.items()}
        finally:
            sup.down(timeout=5)
    nginx_rps = result["nginx"]["rps"]
    pylb_cpu = result["pylb"]["cpu_us_per_req"]
    result["ratio"] = {
        "pylb_over_nginx_rps": ratio(result["pylb"]["rps"], nginx_rps),
        "pylb_over_nginx_p99": ratio(result["pylb"]["p99_ms"], result["nginx"]["p99_ms"]),
        "pylb_workers2_over_nginx_rps": ratio(result["pylb_workers2"]["rps"], nginx_rps),
        "nginx_workers2_over_nginx_rps": ratio(result["nginx_workers2"]["rps"], nginx_rps),
        "pylb_workers2_over_nginx_workers2_rps": ratio(result["pylb_workers2"]["rps"],
                                                       result["nginx_workers2"]["rps"]),
        "pylb_over_haproxy_rps": ratio(result["pylb"]["rps"],
                                       result["haproxy"]["rps"] if result["haproxy"] else None),
        "pylb_over_nginx_cpu": ratio(pylb_cpu, result["nginx"]["cpu_us_per_req"]),
        "pylb_over_aiohttp_proxy_rps": ratio(result["pylb"]["rps"],
                                             result["aiohttp_proxy"]["rps"]),
        "pylb_over_aiohttp_proxy_cpu": ratio(pylb_cpu, result["aiohttp_proxy"]["cpu_us_per_req"]),
        "pylb_over_relay_floor_cpu": ratio(pylb_cpu, result["relay_floor"]["cpu_us_per_req"]),
        "relay_floor_over_nginx_cpu": ratio(result["relay_floor"]["cpu_us_per_req"],
                                            result["nginx"]["cpu_us_per_req"]),
        "relay_floor_over_nginx_rps": ratio(result["relay_floor"]["rps"], nginx_rps),
        "pylb_compiled_over_nginx_rps": ratio(
            result["pylb_compiled"]["rps"] if result["pylb_compiled"] else None, nginx_rps),
        "pylb_compiled_over_nginx_cpu": ratio(
            result["pylb_compiled"]["cpu_us_per_req"] if result["pylb_compiled"] else None,
            result["nginx"]["cpu_us_per_req"]),
        "pylb_compiled_over_pylb_rps": ratio(
            result["pylb_compiled"]["rps"] if result["pylb_compiled"] else None,
            result["pylb"]["rps"]),
        "members_1000_over_2": ratio(result["members_curve"]["1000"],
                                     result["members_curve"]["2"]),
        "members_1000_over_2_cpu": ratio(result["members_curve_cpu_us_per_req"]["1000"],
                                         result["members_curve_cpu_us_per_req"]["2"]),
    }
    result["setup"] = (f"wrk -t{THREADS} -c{CONNECTIONS} keep-alive; backend nginx return 200 "
                       f"(1 worker); fronts 1 process each; median of {ROUNDS} interleaved "
                       "slices; CPU = the front's process tree, /proc utime+stime; "
                       "shared 2-core machine")
    return result
