"""`pylb` — the balancer CLI: `pylb serve -c FILE [--workers N]`, `pylb check -c FILE`.

Signals: SIGTERM/SIGINT drain gracefully (stop accepting, finish in-flight requests, close
idle keep-alive connections); SIGHUP reloads the config in place — listeners that stay are
kept open, in-flight and keep-alive client connections continue, runtime member state
(drain, weights set on the manager) is re-applied (pylb.runtime). A config that fails to
load is logged and the old one stays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from pycommon.config import ConfigError
from pycommon.lifecycle import (
    StopSignal,
    add_common_args,
    announce_ready,
    describe_oserror,
    parse_ready_line,
    run_daemon,
    serve_until_stopped,
    setup_logging,
)
from pylb import config as lbconfig

log = logging.getLogger("pylb")

BOARD = "health.shm"  # the shared passive-health board in the run dir (pylb.shared_health)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pylb", description="pycluster reverse proxy and "
                                "balancer (nginx upstream / httpd mod_proxy_balancer role)")
    add_common_args(p, "pylb")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the balancer")
    serve.add_argument("-c", "--config", required=True, help="TOML config file")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes sharing the port via SO_REUSEPORT (default 1)")
    serve.add_argument("--run-dir", help="where workers share state (default: a temp dir)")
    serve.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    add_common_args(serve, "pylb")
    check = sub.add_parser("check", help="check a config file and exit (like nginx -t)")
    check.add_argument("-c", "--config", required=True, help="TOML config file")
    comp = sub.add_parser("compile", help="build the mypyc-compiled hot path (pylb.compiled); "
                          "run with PYLB_COMPILED=<printed dir>")
    comp.add_argument("--out", default=".build/mypyc", help="where builds go "
                      "(default .build/mypyc)")
    return p


def _health_groups(groups: dict[str, Any]) -> dict[str, Any]:
    return {name: (g.cfg.health, g.peers, g.balancer) for name, g in groups.items()}


def _balancers(groups: dict[str, Any]) -> dict[str, Any]:
    return {name: g.balancer for name, g in groups.items()}


def _open_board(run_dir: Path | None) -> Any:
    """A worker's view of the master's passive-health board (None: stay per worker)."""
    from pylb.shared_health import BoardError, SharedHealth

    if run_dir is None:
        return None
    try:
        return SharedHealth(run_dir / BOARD)
    except (OSError, BoardError) as exc:
        log.error("passive health stays per worker: %s", exc)
        return None


def _reload_config(path: str) -> lbconfig.LbConfig | None:
    try:
        return lbconfig.load(path)
    except ConfigError as exc:
        log.error("reload refused, keeping the running config: %s", exc)
        return None


async def serve_one(args: argparse.Namespace, stop: StopSignal) -> int:
    """One process: the proxy, plus (unless a worker) admin listener and health checks."""
    from pylb.admin import start_admin
    from pylb.health import HealthChecker
    from pylb.manager import Manager, worker_snapshot
    from pylb.proxy import Proxy
    from pylb.runtime import RuntimeState

    worker = args.worker_index is not None
    cfg = lbconfig.load(args.config)
    run_dir = Path(args.run_dir) if args.run_dir else None
    runtime = RuntimeState(run_dir / "state.json" if worker and run_dir else None)
    proxy = Proxy(cfg)
    runtime.poll()
    runtime.apply(proxy.groups, with_health=worker)
    board = _open_board(run_dir) if worker else None
    if board is not None:
        board.bind(_balancers(proxy.groups))
    try:
        bound = await proxy.start(reuse_port=worker)
    except OSError as exc:
        addrs = ",".join(f"{h}:{p}" for h, p in cfg.server.listen)
        print(f"pylb: {describe_oserror(exc, addrs)}", file=sys.stderr)
        return 1
    mgr = Manager(proxy.groups, runtime, proxy.stats)
    health = HealthChecker()
    extra: dict[str, object] = {}
    from pylb.compiled import active

    if active():
        extra["compiled"] = "mypyc"
    runner = None
    if not worker:
        health.start(_health_groups(proxy.groups))
        if cfg.admin.listen is not None:
            try:
                runner, aport = await start_admin(mgr, cfg.admin)
            except OSError as exc:
                print(f"pylb: admin: {describe_oserror(exc, str(cfg.admin.listen))}",
                      file=sys.stderr)
                await proxy.stop(0)
                return 1
            extra["admin"] = f"{cfg.admin.listen[0]}:{aport}"
    loop = asyncio.get_running_loop()

    async def reload() -> None:
        new = _reload_config(args.config)
        if new is None:
            return
        proxy.apply_config(new)
        runtime.apply(proxy.groups, with_health=worker)
        if board is not None:
            board.bind(_balancers(proxy.groups))
        mgr.groups = proxy.groups
        if not worker:
            health.start(_health_groups(proxy.groups))
        try:
            await proxy.bind(new.server.listen)
        except OSError as exc:
            log.error("reload: cannot listen: %s", exc)
        log.info("reloaded %s", args.config)

    async def worker_sync() -> None:
        assert run_dir is not None
        out = run_dir / f"worker-{args.worker_index}.json"
        n = 0
        while True:
            if runtime.poll():
                runtime.apply(proxy.groups, with_health=True)
            n += 1
            if n % 3 == 0:
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps(worker_snapshot(proxy.groups, proxy.stats)))
                os.replace(tmp, out)
            await asyncio.sleep(0.15)

    sync_task = loop.create_task(worker_sync()) if worker and run_dir else None
    host, port = bound[0]
    log.info("listening on %s", ", ".join(f"{h}:{p}" for h, p in bound))
    # Long-lived objects (config, groups, code) leave the collector's view, and young-object
    # collections run less often: per-request objects are (nearly) acyclic, and full
    # collections over a large heap are the usual source of Python proxies' p99 spikes.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10000, 20, 20)
    sig = await serve_until_stopped(stop, reload,
                                    lambda: announce_ready("pylb", host, port, **extra))
    log.info("stopping (signal %s): draining connections", sig)
    mgr.stopping = True
    if sync_task is not None:
        sync_task.cancel()
    await health.aclose()
    await proxy.stop()
    if runner is not None:
        await runner.cleanup()
    log.info("stopped")
    return 0


async def serve_master(args: argparse.Namespace, stop: StopSignal) -> int:
    """`--workers N`: N proxy processes on one SO_REUSEPORT port; admin + health here."""
    from pylb.admin import start_admin
    from pylb.health import HealthChecker
    from pylb.manager import Manager
    from pylb.runtime import RuntimeState
    from pylb.shared_health import SharedHealth, group_keys, layout
    from pylb.upstream import UpstreamGroup

    cfg = lbconfig.load(args.config)
    if any(p == 0 for _, p in cfg.server.listen):
        print("pylb: --workers needs fixed listen ports (SO_REUSEPORT)", file=sys.stderr)
        return 1
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="pylb-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    for f in run_dir.glob("worker-*.json"):
        f.unlink()
    runtime = RuntimeState(run_dir / "state.json")
    groups = {name: UpstreamGroup(u) for name, u in cfg.upstreams.items()}
    runtime.capture_health(groups)
    runtime.save()
    # the passive-health board: laid out here (fresh), re-laid out on reload, shared by all
    board_path = run_dir / BOARD
    layout(board_path, group_keys({n: g.peers for n, g in groups.items()}), fresh=True)
    board = SharedHealth(board_path)
    board.bind(_balancers(groups))  # the manager page shows the shared fails / usable
    loop = asyncio.get_running_loop()
    workers: dict[int, asyncio.subprocess.Process] = {}

    async def spawn(i: int) -> str | None:
        argv = [sys.executable, "-m", "pylb", "serve", "-c", args.config, "--run-dir",
                str(run_dir), "--worker-index", str(i), "--log-format", args.log_format,
                "--log-level", args.log_level]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        workers[i] = proc
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(20):
                while True:
                    line = await proc.stdout.readline()
                    if not line:
                        return None
                    if parse_ready_line(line.decode()):
                        return line.decode()
        except TimeoutError:
            return None

    for i in range(args.workers):
        if await spawn(i) is None:
            print(f"pylb: worker {i} did not start", file=sys.stderr)
            for p in workers.values():
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            return 1

    def publish() -> None:
        runtime.capture_health(groups)
        runtime.save()

    health = HealthChecker(on_change=publish)
    health.start(_health_groups(groups))
    mgr = Manager(groups, runtime, None, worker_dir=run_dir)
    extra: dict[str, object] = {"workers": args.workers}
    runner = None
    if cfg.admin.listen is not None:
        runner, aport = await start_admin(mgr, cfg.admin)
        extra["admin"] = f"{cfg.admin.listen[0]}:{aport}"
    async def reload_all() -> None:
        nonlocal groups
        new = _reload_config(args.config)
        if new is None:
            return
        old = groups
        groups = {name: UpstreamGroup(u) for name, u in new.upstreams.items()}
        for name, g in groups.items():
            if name in old:
                g.carry_over(old[name])
        runtime.apply(groups)
        layout(board_path, group_keys({n: g.peers for n, g in groups.items()}))
        board.bind(_balancers(groups))
        mgr.groups = groups
        health.start(_health_groups(groups))
        publish()
        for p in workers.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGHUP)
        log.info("reloaded %s (and %d workers)", args.config, len(workers))

    async def babysit() -> None:
        while True:
            for i, p in list(workers.items()):
                if p.returncode is not None and not mgr.stopping:
                    log.error("worker %d exited with %s; restarting it", i, p.returncode)
                    await spawn(i)
            board.sync_all()
            await asyncio.sleep(0.5)

    sitter = loop.create_task(babysit())
    host, port = cfg.server.listen[0]
    await serve_until_stopped(stop, reload_all,
                              lambda: announce_ready("pylb", host, port, **extra))
    mgr.stopping = True
    sitter.cancel()
    for p in workers.values():
        with contextlib.suppress(ProcessLookupError):
            p.terminate()
    for p in workers.values():
        try:
            await asyncio.wait_for(p.wait(), 15)
        except TimeoutError:
            p.kill()
    await health.aclose()
    board.close()
    if runner is not None:
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        try:
            cfg = lbconfig.check(args.config)
        except ConfigError as exc:
            print(f"pylb: {exc}", file=sys.stderr)
            return 1
        n = sum(len(u.members) for u in cfg.upstreams.values())
        print(f"pylb: {args.config}: ok ({len(cfg.upstreams)} upstreams, {n} members)")
        return 0
    if args.command == "compile":
        from pylb.compiled import CompiledError, build

        try:
            built = build(Path(args.out).resolve())
        except CompiledError as exc:
            print(f"pylb: compile: {exc}", file=sys.stderr)
            return 1
        print(f"PYLB_COMPILED={built}")
        return 0
    setup_logging(args.log_format, args.log_level)
    if args.workers > 1 and args.worker_index is None:
        return run_daemon(lambda stop: serve_master(args, stop), "pylb")
    return run_daemon(lambda stop: serve_one(args, stop), "pylb")


if __name__ == "__main__":
    sys.exit(main())
