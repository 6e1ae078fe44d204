"""Config errors that name file, line and token, and TOML loading that can point at a line.

`tomllib` gives no positions, so `TomlSource.line_of` finds the line of a key (optionally
inside a given table header) by scanning the text. That is enough to answer
`lb.toml:12: weight: expected a positive integer, got 'heavy'` the way nginx -t and
keepalived -t do.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration problem, rendered as `file:line: message` (line 0 = whole file)."""

    def __init__(self, message: str, file: str | Path = "<config>", line: int = 0,
                 token: str | None = None) -> None:
        self.message = message
        self.file = str(file)
        self.line = line
        self.token = token
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        tok = f" (near {self.token!r})" if self.token else ""
        return f"{where}: {self.message}{tok}"


def read_config_text(path: str | Path) -> str:
    """A config file's text, or a one-line ConfigError (missing, unreadable)."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", p) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", p) from None


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


@dataclass
class TomlSource:
    """A parsed TOML file that can still say where things are."""

    path: str
    text: str
    data: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> TomlSource:
        return cls.parse(read_config_text(path), str(Path(path)))

    @classmethod
    def parse(cls, text: str, path: str = "<config>") -> TomlSource:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
            line = int(m.group(1)) if m else 0
            msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
            token = None
            if line:
                lines = text.splitlines()
                if 0 < line <= len(lines):
                    token = lines[line - 1].strip()[:40] or None
            raise ConfigError(f"invalid TOML: {msg}", path, line, token) from None
        return cls(path, text, data)

    def line_of(self, key: str, table: Sequence[str] | str | None = None, nth: int = 0) -> int:
        """Line (1-based) of `key = ...`, searched after the `nth` header matching `table`."""
        lines = self.text.splitlines()
        start = 0
        if table is not None:
            want = table if isinstance(table, str) else ".".join(table)
            seen = -1
            found = False
            for i, raw in enumerate(lines):
                m = _HEADER.match(raw)
                if m and m.group(1).replace(" ", "") == want.replace(" ", ""):
                    seen += 1
                    if seen == nth:
                        start, found = i, True
                        break
            if not found:
                return 0
            if not key:
                return start + 1
        pat = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
        for i in range(start, len(lines)):
            if i > start and table is not None and _HEADER.match(lines[i]):
                break
            if pat.match(lines[i]):
                return i + 1
        return start + 1 if table is not None else 0

    def line_containing(self, needle: str, start_line: int = 1) -> int:
        """First line at or after `start_line` (1-based) whose text contains `needle`."""
        lines = self.text.splitlines()
        for i in range(max(start_line - 1, 0), len(lines)):
            if needle in lines[i]:
                return i + 1
        return start_line

    def error(self, message: str, key: str = "", table: Sequence[str] | str | None = None,
              nth: int = 0, token: object = None) -> ConfigError:
        line = self.line_of(key, table, nth) if (key or table) else 0
        return ConfigError(message, self.path, line, None if token is None else str(token))


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """`host:port`, `[v6]:port` or bare `port` → (host, port); ValueError with a clear text."""
    v = value.strip()
    if v.startswith("["):
        host, _, rest = v[1:].partition("]")
        port_s = rest.lstrip(":")
    elif v.count(":") == 1:
        host, port_s = v.split(":")
    elif v.isdigit():
        host, port_s = default_host, v
    else:
        raise ValueError(f"expected host:port, got {value!r}")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"bad port in {value!r}")
    return host or default_host, int(port_s)
