"""`pynode` — the app-server node CLI (Tomcat's role)."""

from __future__ import annotations

import argparse
import logging
import sys

from pycommon.lifecycle import (
    StopSignal,
    add_common_args,
    announce_ready,
    describe_oserror,
    run_daemon,
    setup_logging,
)
from pyservlet.connector import HttpConnector
from pyservlet.context import Context
from pyservlet.node import Node
from pyservlet.webapps import demo
from pysession.manager import StandardManager

log = logging.getLogger("pynode")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pynode", description="pycluster app-server node "
                                "(Tomcat's role): serves the demo webapp and the session probe")
    p.add_argument("--route", default="node1", help="jvmRoute: suffix of session ids (node1)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8081, help="HTTP connector port (0 = any free)")
    p.add_argument("--session-timeout", type=int, default=30,
                   help="session timeout in minutes (default 30)")
    p.add_argument("--max-active-sessions", type=int, default=-1,
                   help="refuse new sessions beyond this many (-1 = unlimited)")
    add_common_args(p, "pynode")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    if not args.route.replace("_", "").replace("-", "").isalnum():
        print(f"pynode: bad --route {args.route!r}: letters, digits, '-' and '_' only",
              file=sys.stderr)
        return 2

    async def serve(stop: StopSignal) -> int:
        node = Node(args.route)
        manager = StandardManager(route=args.route, max_inactive=args.session_timeout * 60,
                                  max_active=args.max_active_sessions)
        node.add_context(demo.build(Context("/", manager), args.route))
        connector = HttpConnector(node.handle, args.host, args.port)
        try:
            host, port = await connector.start()
        except OSError as exc:
            print(f"pynode: {describe_oserror(exc, f'{args.host}:{args.port}')}",
                  file=sys.stderr)
            return 1
        node.start_background()
        log.info("node %s listening on %s:%d", args.route, host, port)
        announce_ready("pynode", host, port, route=args.route)
        sig = await stop.wait()
        log.info("stopping (signal %s): finishing in-flight requests", sig)
        node.stop_background()
        await connector.stop()
        log.info("stopped")
        return 0

    return run_daemon(serve, "pynode")


if __name__ == "__main__":
    sys.exit(main())
