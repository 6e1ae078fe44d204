"""`pylb` — the balancer CLI: `pylb serve -c FILE`, `pylb check -c FILE`."""

from __future__ import annotations

import argparse
import logging
import sys

from pycommon.config import ConfigError
from pycommon.lifecycle import (
    StopSignal,
    add_common_args,
    announce_ready,
    describe_oserror,
    run_daemon,
    setup_logging,
)
from pylb import config as lbconfig

log = logging.getLogger("pylb")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pylb", description="pycluster reverse proxy and "
                                "balancer (nginx upstream / httpd mod_proxy_balancer role)")
    add_common_args(p, "pylb")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the balancer")
    serve.add_argument("-c", "--config", required=True, help="TOML config file")
    add_common_args(serve, "pylb")
    check = sub.add_parser("check", help="check a config file and exit (like nginx -t)")
    check.add_argument("-c", "--config", required=True, help="TOML config file")
    return p


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
    setup_logging(args.log_format, args.log_level)

    async def serve(stop: StopSignal) -> int:
        from pylb.admin import start_admin
        from pylb.proxy import Proxy

        cfg = lbconfig.load(args.config)
        proxy = Proxy(cfg)
        try:
            bound = await proxy.start()
        except OSError as exc:
            addrs = ",".join(f"{h}:{p}" for h, p in cfg.server.listen)
            print(f"pylb: {describe_oserror(exc, addrs)}", file=sys.stderr)
            return 1
        extra: dict[str, object] = {}
        runner = None
        if cfg.admin.listen is not None:
            try:
                runner, aport = await start_admin(proxy, *cfg.admin.listen)
            except OSError as exc:
                print(f"pylb: admin: {describe_oserror(exc, str(cfg.admin.listen))}",
                      file=sys.stderr)
                await proxy.stop(0)
                return 1
            extra["admin"] = f"{cfg.admin.listen[0]}:{aport}"
        host, port = bound[0]
        log.info("listening on %s", ", ".join(f"{h}:{p}" for h, p in bound))
        announce_ready("pylb", host, port, **extra)
        sig = await stop.wait()
        log.info("stopping (signal %s): draining connections", sig)
        await proxy.stop()
        if runner is not None:
            await runner.cleanup()
        log.info("stopped")
        return 0

    return run_daemon(serve, "pylb")


if __name__ == "__main__":
    sys.exit(main())
