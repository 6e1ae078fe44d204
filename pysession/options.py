"""Manager configuration: the `[context.manager]` table of a node config, with typed getters
that fail as `file:line: message (near 'token')`, and the environment the node gives a
manager (route, timeout, distributable, cluster settings, work directory).

A manager factory reads its keys through `Options` and finally calls `opts.done()`, which
refuses keys nobody read (typos are config errors, not silent defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycommon.config import ConfigError, TomlSource
from pycommon.wire import DEFAULT_POLICY, TypePolicy
from pysession.session import DEFAULT_MAX_INACTIVE

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


@dataclass
class ManagerEnv:
    """What the hosting node (or an aiohttp app) provides to a manager it builds."""

    route: str | None = None
    context_path: str = "/"
    max_inactive: int = DEFAULT_MAX_INACTIVE
    distributable: bool = False
    policy: TypePolicy = DEFAULT_POLICY
    #: the node config's `[cluster]` table, raw (its schema belongs to the cluster managers)
    cluster: dict[str, Any] = field(default_factory=dict)
    #: where file-based state goes by default (save files, FileStore directories)
    work_dir: Path = field(default_factory=lambda: Path("."))
    #: the parsed config file, for errors in the `[cluster]` table
    source: TomlSource | None = None


class Options:
    """A TOML table of manager options that remembers where it came from."""

    def __init__(self, data: dict[str, Any], source: TomlSource | None = None,
                 table: str | None = None, nth: int = 0) -> None:
        self.data = dict(data)
        self.source = source
        self.table = table
        self.nth = nth
        self._read: set[str] = {"type"}

    @property
    def type(self) -> str:
        return str(self.data.get("type", "standard"))

    def error(self, message: str, key: str = "", token: object = None) -> ConfigError:
        if self.source is None:
            return ConfigError(message, "<manager>", 0, None if token is None else str(token))
        return self.source.error(message, key, self.table, self.nth, token)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        return self.data.get(key, default)

    def string(self, key: str, default: str | None = None) -> Any:
        v = self.raw(key, default)
        if v is not None and not isinstance(v, str):
            raise self.error(f"{key}: expected a string", key, v)
        return v

    def integer(self, key: str, default: int | None = None, minimum: int | None = None) -> Any:
        v = self.raw(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(f"{key}: expected an integer", key, v)
        if minimum is not None and v < minimum:
            raise self.error(f"{key}: must be >= {minimum}", key, v)
        return v

    def number(self, key: str, default: float | None = None) -> Any:
        v = self.raw(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.error(f"{key}: expected a number", key, v)
        return float(v)

    def boolean(self, key: str, default: bool = False) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.error(f"{key}: expected true or false", key, v)
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        v = self.string(key, default)
        if v not in choices:
            raise self.error(f"{key}: expected one of {', '.join(choices)}", key, v)
        return str(v)

    def list_of_str(self, key: str, default: list[str] | None = None) -> list[str]:
        v = self.raw(key, default if default is not None else [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.error(f"{key}: expected a list of strings", key, v)
        return list(v)

    def size(self, key: str, default: int) -> int:
        """`4096`, `"4k"`, `"2m"`."""
        v = self.raw(key, default)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, str):
            s = v.strip().lower()
            unit = s[-1:] if s[-1:] in _SIZE_UNITS and not s[-1:].isdigit() else ""
            num = s[:-1] if unit else s
            if num.isdigit():
                return int(num) * _SIZE_UNITS[unit]
        raise self.error(f"{key}: expected a size like 4096, \"4k\" or \"2m\"", key, v)

    def path(self, key: str, base: Path | None = None) -> Path | None:
        v = self.string(key)
        if v is None:
            return None
        p = Path(v)
        if not p.is_absolute() and base is not None:
            p = base / p
        return p

    def done(self) -> None:
        """Refuse keys no getter asked for (typos)."""
        for k in self.data:
            if k not in self._read:
                raise self.error(f"unknown {self.type} manager option {k!r}", k, k)
