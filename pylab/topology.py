"""Lab topologies: declarative TOML files of processes.

    [lab]
    name = "basic"
    description = "pylb in front of two pynodes"
    entry = "lb"                       # the client entry point (`vip` in the HA lab)

    [[process]]
    name = "node1"
    kind = "pynode"                    # pylb | pynode | pyvrrp | command
    args = ["--route", "node1", "--port", "{port}"]
    # port = 8081                      # omitted or 0: a free port is picked
    # ready = "line"                   # line (READY on stdout) | tcp | none
    # after = ["other"]                # start order; default: file order

    [process.files]                    # rendered into the run directory
    "lb.toml" = '''...{node1.port}...'''

Placeholders: {port} {host} {name} {rundir} {python}, {NAME.port} / {NAME.host} of another
process, and {file:NAME} for the path of a rendered file. TOML inline tables never match
(they contain spaces or `=`), so configs can be written as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pycommon.config import ConfigError, TomlSource

KINDS = ("pylb", "pynode", "pyvrrp", "command")
READY_MODES = ("line", "tcp", "none")
LAB_DIR = Path(str(resources.files("pylab") / "labs"))

_PLACEHOLDER = re.compile(r"\{(file:[\w.\-]+|[A-Za-z_][\w\-]*(?:\.(?:port|host))?)\}")


@dataclass
class ProcessSpec:
    name: str
    kind: str
    args: list[str] = field(default_factory=list)
    port: int = 0
    host: str = "127.0.0.1"
    ready: str = "line"
    after: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 20.0


@dataclass
class Lab:
    name: str
    description: str
    entry: str
    processes: list[ProcessSpec]
    path: str = ""
    hints: list[str] = field(default_factory=list)

    def process(self, name: str) -> ProcessSpec:
        for p in self.processes:
            if p.name == name:
                return p
        raise KeyError(name)

    def start_order(self) -> list[ProcessSpec]:
        """File order, moved only as far as `after` requires (stable topological sort)."""
        done: list[str] = []
        pending = list(self.processes)
        while pending:
            for p in pending:
                if all(a in done for a in p.after):
                    done.append(p.name)
                    pending.remove(p)
                    break
            else:
                raise ConfigError("processes depend on each other in a cycle: "
                                  + ", ".join(p.name for p in pending), self.path)
        return [self.process(n) for n in done]


def render(template: str, values: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(key)
        return values[key]

    return _PLACEHOLDER.sub(sub, template)


def lab_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.exists():
        return p
    cand = LAB_DIR / f"{name_or_path}.toml"
    if cand.exists():
        return cand
    known = ", ".join(sorted(x.stem for x in LAB_DIR.glob("*.toml")))
    raise ConfigError(f"unknown lab {name_or_path!r} (known: {known})")


def list_labs() -> list[Lab]:
    return [load_lab(str(p)) for p in sorted(LAB_DIR.glob("*.toml"))]


def load_lab(name_or_path: str) -> Lab:
    path = lab_path(name_or_path)
    src = TomlSource.load(path)
    d = src.data
    meta: dict[str, Any] = d.get("lab", {})
    procs: list[ProcessSpec] = []
    names: set[str] = set()
    for i, raw in enumerate(d.get("process", [])):
        for k in raw:
            if k not in ProcessSpec.__dataclass_fields__:
                raise src.error(f"unknown process key {k!r}", k, "process", i, token=k)
        name = raw.get("name")
        if not name or not re.fullmatch(r"[A-Za-z_][\w\-]*", str(name)):
            raise src.error("process needs a name (letters, digits, - and _)", "name",
                            "process", i, token=name)
        if name in names:
            raise src.error(f"duplicate process name {name!r}", "name", "process", i)
        names.add(name)
        kind = raw.get("kind", "")
        if kind not in KINDS:
            raise src.error(f"unknown kind {kind!r} (known: {', '.join(KINDS)})", "kind",
                            "process", i, token=kind)
        ready = raw.get("ready", "line" if kind != "command" else "tcp")
        if ready not in READY_MODES:
            raise src.error(f"unknown ready mode {ready!r}", "ready", "process", i, token=ready)
        for a in raw.get("after", []):
            if a not in names:
                raise src.error(f"'after' names {a!r}, which is not defined before it",
                                "after", "process", i, token=a)
        procs.append(ProcessSpec(
            name=name, kind=kind, args=[str(a) for a in raw.get("args", [])],
            port=int(raw.get("port", 0)), host=str(raw.get("host", "127.0.0.1")),
            ready=ready, after=list(raw.get("after", [])),
            files={str(k): str(v) for k, v in raw.get("files", {}).items()},
            env={str(k): str(v) for k, v in raw.get("env", {}).items()},
            ready_timeout=float(raw.get("ready_timeout", 20.0))))
    if not procs:
        raise src.error("a lab needs at least one [[process]]")
    entry = str(meta.get("entry", "lb"))
    if entry not in names:
        raise src.error(f"entry {entry!r} is not a process of this lab", "entry", "lab")
    return Lab(str(meta.get("name", path.stem)), str(meta.get("description", "")), entry,
               procs, str(path), [str(h) for h in meta.get("hints", [])])
