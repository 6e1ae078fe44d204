"""`python -m pyvrrp.check HOST:PORT [PATH]` — a health check for `vrrp_script`.

keepalived setups track their balancer with `killall -0 nginx` or `curl -f`; this is the same
for a pylb on any port: exit 0 when a TCP connect (or, with PATH, an HTTP GET answering below
500) succeeds within --timeout, 1 otherwise. No shell, no external tools.
"""

from __future__ import annotations

import argparse
import socket
import sys

from pycommon.config import parse_hostport


def check(host: str, port: int, path: str | None, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if path is None:
                return True
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                      .encode())
            head = s.recv(64).split(b" ", 2)
            return len(head) >= 2 and head[1].isdigit() and int(head[1]) < 500
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pyvrrp.check", description=__doc__)
    p.add_argument("target", help="HOST:PORT")
    p.add_argument("path", nargs="?", help="HTTP path to GET (default: TCP connect only)")
    p.add_argument("--timeout", type=float, default=0.5)
    a = p.parse_args(argv)
    host, port = parse_hostport(a.target)
    return 0 if check(host, port, a.path, a.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
