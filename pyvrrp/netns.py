"""Network-namespace topologies for real-mode tests and the failover benchmark (root only).

    ns <prefix>-c : the "switch and client": bridge br0 with 10.99.0.1/24
    ns <prefix>-a : veth0 10.99.0.11/24 ─┐
    ns <prefix>-b : veth0 10.99.0.12/24 ─┴─ bridged in -c

Everything lives inside namespaces this module creates (names carry a random token), so the
host's own interfaces are never touched, and `destroy` removes it all (deleting a namespace
deletes its veth ends). Processes run inside with `argv(member, [...])`, which prefixes
`ip netns exec NS` — the pylab supervisor starts them like any other command.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from pathlib import Path

SUBNET = "10.99.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if check and r.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def unavailable_reason() -> str | None:
    """None when namespaces can be made here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    name = f"pyvrrp-probe-{secrets.token_hex(3)}"
    r = _ip("netns", "add", name, check=False)
    if r.returncode != 0:
        return f"`ip netns add` fails here: {r.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


class NetnsLab:
    def __init__(self, members: tuple[str, ...] = ("a", "b"), prefix: str = "") -> None:
        self.prefix = prefix or f"pyvrrp-{secrets.token_hex(3)}"
        self.members = members
        self.created: list[str] = []

    def ns(self, member: str) -> str:
        return f"{self.prefix}-{member}"

    def address(self, member: str) -> str:
        return f"{SUBNET}.{11 + self.members.index(member)}"

    def create(self) -> NetnsLab:
        try:
            c = self.ns("c")
            _ip("netns", "add", c)
            self.created.append(c)
            _ip("-n", c, "link", "set", "lo", "up")
            _ip("-n", c, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
            _ip("-n", c, "addr", "add", f"{SUBNET}.1/24", "dev", "br0")
            _ip("-n", c, "link", "set", "br0", "up")
            for m in self.members:
                ns = self.ns(m)
                _ip("netns", "add", ns)
                self.created.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "add", "veth0", "type", "veth", "peer", "name", f"v{m}",
                    "netns", c)
                _ip("-n", ns, "addr", "add", f"{self.address(m)}/24", "dev", "veth0")
                _ip("-n", ns, "link", "set", "veth0", "up")
                _ip("-n", c, "link", "set", f"v{m}", "master", "br0")
                _ip("-n", c, "link", "set", f"v{m}", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)
        self.created.clear()

    def __enter__(self) -> NetnsLab:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def argv(self, member: str, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(member), *cmd]

    def run(self, member: str, cmd: list[str], timeout: float = 10) -> str:
        r = subprocess.run(self.argv(member, cmd), capture_output=True, text=True,
                           timeout=timeout, check=False)
        return r.stdout + r.stderr

    def has_address(self, member: str, ip: str, dev: str = "veth0") -> bool:
        out = _ip("-n", self.ns(member), "-4", "-o", "addr", "show", "dev", dev,
                  check=False).stdout
        return any(part.split("/")[0] == ip for part in out.split())

    def mac(self, member: str, dev: str = "veth0") -> str:
        out = _ip("-n", self.ns(member), "-o", "link", "show", "dev", dev).stdout
        words = out.split()
        return words[words.index("link/ether") + 1]

    def neighbour_mac(self, ip: str, member: str = "c") -> str:
        out = _ip("-n", self.ns(member), "neigh", "show", ip, check=False).stdout.split()
        return out[out.index("lladdr") + 1] if "lladdr" in out else ""

    def del_address(self, member: str, cidr: str, dev: str = "veth0") -> None:
        _ip("-n", self.ns(member), "addr", "del", cidr, "dev", dev, check=False)


def keepalived_argv(lab: NetnsLab, member: str, conf: str | Path, run_dir: str | Path
                    ) -> list[str]:
    """keepalived in the foreground, VRRP only, logging to the console, own pid files."""
    d = Path(run_dir)
    with contextlib.suppress(OSError):
        d.mkdir(parents=True, exist_ok=True)
    return lab.argv(member, ["keepalived", "-n", "-l", "-D", "-P", "-f", str(conf),
                             "-p", str(d / f"keepalived-{member}.pid"),
                             "-r", str(d / f"vrrp-{member}.pid")])
