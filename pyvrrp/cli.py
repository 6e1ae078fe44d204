"""`pyvrrp` — placeholder CLI until the VRRP daemon lands (issue: pyvrrp)."""

from __future__ import annotations

import argparse
import sys

from pycommon.lifecycle import add_common_args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pyvrrp", description="pycluster VRRP failover daemon "
                                "(keepalived's role)")
    p.add_argument("-f", "--use-file", default="/etc/keepalived/keepalived.conf")
    p.add_argument("-t", "--config-test", action="store_true")
    add_common_args(p, "pyvrrp")
    p.parse_args(argv)
    print("pyvrrp: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
