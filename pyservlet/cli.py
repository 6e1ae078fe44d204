"""`pynode` — the app-server node CLI (Tomcat's role).

    pynode --route node1 --port 8081 [--config node.toml]

Without --config: the demo webapp at `/` (the /api/session probe, seed 002's page, seed 004's
line) and seed 003's page at `/test`, each with a StandardManager. `--route` and `--port`
override the config's route and first connector's port. `pynode check -c node.toml`
validates a config and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pycommon.config import ConfigError
from pycommon.http import Limits
from pycommon.lifecycle import (
    StopSignal,
    add_common_args,
    announce_ready,
    describe_oserror,
    run_daemon,
    setup_logging,
)
from pyservlet.config import NodeConfig, load_node_config
from pyservlet.connector import HttpConnector
from pyservlet.node import build_node

log = logging.getLogger("pynode")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pynode", description="pycluster app-server node "
                                "(Tomcat's role): webapps, session managers, HTTP connector")
    p.add_argument("--config", "-c", default=None, help="node config (TOML, see docs/pynode.md)")
    p.add_argument("--route", default=None, help="jvmRoute: suffix of session ids (node1)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="HTTP connector port (0 = any free)")
    p.add_argument("--session-timeout", type=int, default=None,
                   help="session timeout in minutes for every context (default: web.toml's)")
    p.add_argument("--max-active-sessions", type=int, default=None,
                   help="refuse new sessions beyond this many (-1 = unlimited)")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    add_common_args(p, "pynode")
    return p


def _valid_route(route: str) -> bool:
    return bool(route) and route.replace("_", "").replace("-", "").isalnum()


def resolve_config(args: argparse.Namespace) -> NodeConfig:
    cfg = load_node_config(args.config) if args.config else NodeConfig.default()
    if args.route is not None:
        cfg.route = args.route
    c0 = cfg.connectors[0]
    if args.port is not None:
        c0.port = args.port
    if args.host is not None:
        c0.host = args.host
    for cx in cfg.contexts:
        if args.session_timeout is not None:
            cx.session_timeout = args.session_timeout
        if (args.max_active_sessions is not None and cx.manager.type in ("standard", "persistent")
                and not cx.manager.has("max_active_sessions")):
            cx.manager.data["max_active_sessions"] = args.max_active_sessions
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    if args.route is not None and not _valid_route(args.route):
        print(f"pynode: bad --route {args.route!r}: letters, digits, '-' and '_' only",
              file=sys.stderr)
        return 2
    try:
        cfg = resolve_config(args)
        node = build_node(cfg)
    except ConfigError as exc:
        print(f"pynode: {exc}", file=sys.stderr)
        return 1
    if args.check:
        print(f"pynode: {args.config or 'default config'}: ok "
              f"({len(node.contexts)} contexts)")
        return 0

    async def serve(stop: StopSignal) -> int:
        connectors = [HttpConnector(node.handle, c.host, c.port,
                                    Limits(max_body_size=c.max_body_size), c.keepalive_timeout)
                      for c in cfg.connectors]
        # Managers first (reload saved sessions, join the cluster), then the connectors, as
        # Tomcat starts contexts before connectors: no request meets a half-started manager.
        await node.start()
        bound: list[tuple[str, int]] = []
        for conn, c in zip(connectors, cfg.connectors, strict=True):
            try:
                bound.append(await conn.start())
            except OSError as exc:
                print(f"pynode: {describe_oserror(exc, f'{c.host}:{c.port}')}",
                      file=sys.stderr)
                for started in connectors[:len(bound)]:
                    await started.stop(0)
                await node.stop()  # saves again what start() reloaded
                return 1
        host, port = bound[0]
        for ctx in sorted(node.contexts, key=lambda c: c.path):
            m = ctx.manager
            log.info("context %s (%s): %s manager, timeout %s, %sdistributable", ctx.path,
                     ctx.name, m.kind,
                     f"{m.max_inactive // 60} min" if m.max_inactive >= 0 else "never",
                     "" if m.distributable else "not ")
        log.info("node %s listening on %s", cfg.route,
                 ", ".join(f"{h}:{p}" for h, p in bound))
        announce_ready("pynode", host, port, route=cfg.route)
        sig = await stop.wait()
        log.info("stopping (signal %s): finishing in-flight requests", sig)
        await asyncio.gather(*(c.stop() for c in connectors))
        await node.stop()
        log.info("stopped")
        return 0

    return run_daemon(serve, "pynode")


if __name__ == "__main__":
    sys.exit(main())
