"""The node config's `[cluster]` table, parsed into `ClusterConfig` (errors name file:line).

    [cluster]
    name = "lab"                    # cluster domain: heartbeats of other clusters are ignored
    key = "change-me"               # shared secret: HMAC-SHA256 on every frame (required)
    # key_file = "cluster.key"      # or read it from a file (relative to the node config)
    encrypt = false                 # AES-GCM on top (key derived from the same secret)
    membership = "multicast"        # multicast | static
    address = "228.0.0.4"           # multicast group (McastService default)
    port = 45564                    # multicast port / static: this node's UDP port
    bind = "127.0.0.1"              # interface for multicast (loopback by default)
    members = []                    # static: ["127.0.0.1:45601", ...] heartbeat targets
    frequency = 0.5                 # heartbeat period, seconds
    drop_time = 3.0                 # unheard this long → suspect → TCP check → dropped
    receiver_host = "127.0.0.1"
    receiver_ports = "4000-4100"    # the first free one is used ("0" = any)
    ack_timeout = 5.0               # ack / sync-ack: wait at most this for a member
    state_transfer_timeout = 60.0   # GET_ALL_SESSIONS
    join_wait = 1.5                 # listen this long for members before asking for state
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycommon.config import ConfigError, TomlSource, parse_hostport

_KEYS = {"name", "key", "key_file", "encrypt", "membership", "address", "port", "bind",
         "members", "frequency", "drop_time", "receiver_host", "receiver_ports",
         "ack_timeout", "state_transfer_timeout", "join_wait"}


@dataclass
class ClusterConfig:
    name: str = "pycluster"
    key: str = ""
    encrypt: bool = False
    membership: str = "multicast"
    address: str = "228.0.0.4"
    port: int = 45564
    bind: str = "127.0.0.1"
    members: list[tuple[str, int]] = field(default_factory=list)
    frequency: float = 0.5
    drop_time: float = 3.0
    receiver_host: str = "127.0.0.1"
    receiver_ports: tuple[int, int] = (4000, 4100)
    ack_timeout: float = 5.0
    state_transfer_timeout: float = 60.0
    join_wait: float = 1.5

    def identity(self) -> tuple[Any, ...]:
        """Managers of several contexts with the same settings share one cluster service."""
        return (self.name, self.key, self.encrypt, self.membership, self.address, self.port,
                self.bind, tuple(self.members), self.receiver_host, self.receiver_ports)


def _err(src: TomlSource | None, msg: str, key: str, token: Any = None) -> ConfigError:
    if src is None:
        return ConfigError(msg, "<cluster>", 0, None if token is None else str(token))
    return src.error(msg, key, "cluster", 0, token)


def parse_cluster(raw: dict[str, Any], src: TomlSource | None = None,
                  base: Path | None = None) -> ClusterConfig:
    cfg = ClusterConfig()
    for k in raw:
        if k not in _KEYS:
            raise _err(src, f"unknown key {k!r} in [cluster]", k, k)

    def num(key: str, default: float, minimum: float = 0.0) -> float:
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or v < minimum:
            raise _err(src, f"{key}: expected a number >= {minimum}", key, v)
        return float(v)

    def text(key: str, default: str) -> str:
        v = raw.get(key, default)
        if not isinstance(v, str):
            raise _err(src, f"{key}: expected a string", key, v)
        return v

    cfg.name = text("name", cfg.name)
    cfg.key = text("key", "")
    if "key_file" in raw:
        p = Path(text("key_file", ""))
        if not p.is_absolute() and base is not None:
            p = base / p
        try:
            cfg.key = p.read_text().strip()
        except OSError as exc:
            raise _err(src, f"key_file: {exc.strerror}", "key_file", raw["key_file"]) from None
    if not cfg.key:
        raise _err(src, "the cluster needs a shared key: set key = \"...\" or key_file "
                        "(cluster traffic is always authenticated)", "key")
    enc = raw.get("encrypt", False)
    if not isinstance(enc, bool):
        raise _err(src, "encrypt: expected true or false", "encrypt", enc)
    cfg.encrypt = enc
    cfg.membership = text("membership", cfg.membership)
    if cfg.membership not in ("multicast", "static"):
        raise _err(src, "membership: expected multicast or static", "membership",
                   cfg.membership)
    cfg.address = text("address", cfg.address)
    try:
        if cfg.membership == "multicast" and not ipaddress.ip_address(cfg.address).is_multicast:
            raise ValueError
    except ValueError:
        raise _err(src, "address: expected a multicast group address", "address",
                   cfg.address) from None
    port = raw.get("port", cfg.port)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise _err(src, "port: expected a UDP port 1-65535", "port", port)
    cfg.port = port
    cfg.bind = text("bind", cfg.bind)
    members = raw.get("members", [])
    if not isinstance(members, list):
        raise _err(src, "members: expected a list of \"host:port\"", "members", members)
    for m in members:
        try:
            cfg.members.append(parse_hostport(str(m)))
        except ValueError as exc:
            raise _err(src, f"members: {exc}", "members", m) from None
    if cfg.membership == "static" and not cfg.members:
        raise _err(src, "static membership needs members = [\"host:port\", ...]", "membership")
    cfg.frequency = num("frequency", cfg.frequency, 0.01)
    cfg.drop_time = num("drop_time", cfg.drop_time, 0.05)
    cfg.receiver_host = text("receiver_host", cfg.receiver_host)
    rp = raw.get("receiver_ports", "4000-4100")
    try:
        lo_s, _, hi_s = str(rp).partition("-")
        lo, hi = int(lo_s), int(hi_s or lo_s)
        if not (0 <= lo <= hi < 65536):
            raise ValueError
    except ValueError:
        raise _err(src, "receiver_ports: expected \"4000-4100\" or one port", "receiver_ports",
                   rp) from None
    cfg.receiver_ports = (lo, hi)
    cfg.ack_timeout = num("ack_timeout", cfg.ack_timeout, 0.01)
    cfg.state_transfer_timeout = num("state_transfer_timeout", cfg.state_transfer_timeout, 0.1)
    cfg.join_wait = num("join_wait", cfg.join_wait, 0.0)
    return cfg
