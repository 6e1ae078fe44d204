"""`pyvrrp` — the VRRP failover daemon (keepalived's role).

    pyvrrp -f keepalived.conf [--transport loopback|real] [--vip-port 8080 --forward HOST:PORT]
    pyvrrp -t -f keepalived.conf      # check the config like `keepalived -t`

Loopback (the default, no root) emulates the VIP on 127.0.0.0/8: the MASTER listens on
VIP:--vip-port and forwards to --forward (its local pylb). Real mode speaks IP protocol 112 on
the configured interface and moves the address with `ip addr` (root, or a network namespace).
The READY line names the VIP address and port clients should use.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pycommon.config import ConfigError, parse_hostport
from pycommon.lifecycle import (
    StopSignal,
    add_common_args,
    announce_ready,
    describe_oserror,
    run_daemon,
    setup_logging,
)
from pyvrrp import config
from pyvrrp.transport import DEFAULT_ADVERT_PORT

log = logging.getLogger("pyvrrp")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyvrrp", description="pycluster VRRP failover daemon "
                                "(keepalived's role)")
    p.add_argument("-f", "--use-file", default="/etc/keepalived/keepalived.conf",
                   help="keepalived.conf to run (default: %(default)s)")
    p.add_argument("-t", "--config-test", action="store_true",
                   help="check the config file and exit (like keepalived -t)")
    p.add_argument("--transport", choices=("loopback", "real"), default="loopback",
                   help="loopback: UDP adverts and a TCP VIP on 127.0.0.0/8 (no root); "
                   "real: IP protocol 112, `ip addr`, gratuitous ARP (default: loopback)")
    p.add_argument("--advert-port", type=int, default=DEFAULT_ADVERT_PORT,
                   help="loopback: UDP port of the adverts (default: %(default)s)")
    p.add_argument("--vip-port", type=int, default=8080,
                   help="loopback: TCP port the master serves on the VIP (default: 8080)")
    p.add_argument("--forward", metavar="HOST:PORT",
                   help="loopback: forward VIP connections here (this node's pylb)")
    p.add_argument("--state-file", default="",
                   help="write the instances' state as JSON here on every change")
    p.add_argument("--instance", action="append", default=[],
                   help="run only this vrrp_instance (repeatable; default: all)")
    add_common_args(p, "pyvrrp")
    return p


def config_test(path: str) -> int:
    try:
        cfg, errors = config.check(path)
    except ConfigError as exc:
        print(f"pyvrrp: {exc}", file=sys.stderr)
        return 1
    for w in cfg.warnings:
        print(w, file=sys.stderr)
    for e in errors:
        print(f"{e}", file=sys.stderr)
    if errors:
        print(f"pyvrrp: {path}: {len(errors)} error(s)", file=sys.stderr)
        return 1
    names = ", ".join(f"{i.name} (vrid {i.virtual_router_id}, v{i.version})"
                      for i in cfg.instances)
    print(f"pyvrrp: {path}: ok ({len(cfg.instances)} instances: {names}; "
          f"{len(cfg.scripts)} scripts)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config_test:
        return config_test(args.use_file)
    setup_logging(args.log_format, args.log_level)
    forward = None
    if args.forward:
        try:
            forward = parse_hostport(args.forward)
        except ValueError as exc:
            print(f"pyvrrp: --forward: {exc}", file=sys.stderr)
            return 2

    async def serve(stop: StopSignal) -> int:
        from pyvrrp.daemon import Daemon, Options, StartError

        kc = config.load(args.use_file)
        for w in kc.warnings:
            log.warning("%s", w)
        unknown = set(args.instance) - {i.name for i in kc.instances}
        if unknown:
            raise ConfigError(f"--instance {sorted(unknown)[0]}: no such vrrp_instance",
                              args.use_file)
        opts = Options(args.transport, args.advert_port, args.vip_port, forward,
                       args.state_file, args.instance)
        daemon = Daemon(kc, opts)
        try:
            await daemon.start()
        except StartError as err:
            print(f"pyvrrp: {describe_oserror(err.exc, err.where)}", file=sys.stderr)
            await daemon.stop()
            return 1
        except OSError as exc:
            print(f"pyvrrp: {describe_oserror(exc, 'starting')}", file=sys.stderr)
            await daemon.stop()
            return 1
        first = daemon.instances[0]
        vips = first.cfg.virtual_ipaddress
        host = vips[0].address if vips else first.primary_ip
        port = args.vip_port if args.transport == "loopback" else 0
        announce_ready("pyvrrp", host, port, instance=first.cfg.name,
                       state=first.router.state.value, transport=args.transport,
                       primary=first.primary_ip, vrid=first.cfg.virtual_router_id)
        sig = await stop.wait()
        log.info("signal %s: resigning (priority 0) and releasing the VIP", sig)
        await daemon.stop()
        return 0

    return run_daemon(serve, "pyvrrp")


if __name__ == "__main__":
    sys.exit(main())
