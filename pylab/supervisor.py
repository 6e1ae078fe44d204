"""The one process harness: labs from the CLI, fixtures in the tests, benchmarks.

Each process gets its own process group and a log file in the run directory
(`RUN/logs/NAME.log`, stdout and stderr together). Readiness is the daemon's READY line
(found by reading that log from the offset where this start began), or a TCP connect for
third-party servers. State is written to `RUN/state.json` after every change, so a second
`Supervisor.attach(RUN)` — another shell, `pylab status` — sees and drives the same processes.
Stopping is SIGTERM to the group, then SIGKILL after a bound; nothing waits unbounded.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pycommon.lifecycle import parse_ready_line
from pylab.topology import Lab, ProcessSpec, load_lab, render

STOP_TIMEOUT = 8.0
_PR_SET_PDEATHSIG = 1


class SupervisorError(RuntimeError):
    pass


@dataclass
class ProcessState:
    name: str
    kind: str
    argv: list[str]
    host: str
    port: int
    log: str
    env: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    started_at: float = 0.0
    proc_start: str = ""  # /proc/PID/stat starttime: guards against PID reuse
    state: str = "stopped"  # stopped | starting | running | exited | killed
    ready_info: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None


def free_port(host: str = "127.0.0.1") -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _proc_start(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def _alive(pid: int, start: str) -> bool:
    """True when `pid` runs and is the same process (same start time), not a zombie."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    tail = stat.rsplit(")", 1)[-1].split()
    if not tail or tail[0] in ("Z", "X"):
        return False
    return not start or (len(tail) > 19 and tail[19] == start)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def command_for(spec: ProcessSpec) -> list[str]:
    """The daemons run as `python -P -m PACKAGE`: `-P` keeps the working directory (the run
    directory, where a process named `pylb` has a `pylb/` folder) off `sys.path`, so it can
    never shadow the installed package as an empty namespace package."""
    if spec.kind == "pylb":
        return [sys.executable, "-P", "-m", "pylb"]
    if spec.kind == "pynode":
        return [sys.executable, "-P", "-m", "pyservlet"]
    if spec.kind == "pyvrrp":
        return [sys.executable, "-P", "-m", "pyvrrp"]
    return []  # "command": args[0] is the executable


class Supervisor:
    """Start, watch and stop the processes of one lab, with state in `run_dir`."""

    def __init__(self, lab: Lab, run_dir: str | Path, free_ports: bool = False,
                 tie_to_parent: bool = True,
                 echo: Callable[[str], None] | None = None) -> None:
        self.lab = lab
        self.run_dir = Path(run_dir)
        self.free_ports = free_ports
        self.tie_to_parent = tie_to_parent
        self.echo = echo
        self.procs: dict[str, ProcessState] = {}
        self._popen: dict[str, subprocess.Popen[bytes]] = {}

    # -- construction -----------------------------------------------------------------
    @classmethod
    def for_lab(cls, name: str, run_dir: str | Path, **kw: Any) -> Supervisor:
        return cls(load_lab(name), run_dir, **kw)

    @classmethod
    def attach(cls, run_dir: str | Path) -> Supervisor:
        """A supervisor over processes started by another `pylab` (another shell)."""
        path = Path(run_dir) / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SupervisorError(f"no lab is running (no {path})") from None
        sup = cls(load_lab(data["lab_path"]), run_dir, tie_to_parent=False)
        sup.procs = {p["name"]: ProcessState(**p) for p in data["processes"]}
        return sup

    # -- state file -------------------------------------------------------------------
    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = {"lab": self.lab.name, "lab_path": self.lab.path, "entry": self.lab.entry,
                "supervisor_pid": os.getpid(),
                "processes": [asdict(p) for p in self.procs.values()]}
        tmp = self.run_dir / "state.json.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.run_dir / "state.json")

    def status(self) -> dict[str, Any]:
        self.refresh()
        return {"lab": self.lab.name, "entry": self.lab.entry,
                "processes": [{"name": p.name, "kind": p.kind, "pid": p.pid, "state": p.state,
                               "host": p.host, "port": p.port} for p in self.procs.values()]}

    def refresh(self) -> None:
        changed = False
        for name, p in self.procs.items():
            pop = self._popen.get(name)
            if pop is not None and pop.poll() is not None and p.state in ("running",
                                                                           "starting"):
                p.state, p.exit_code = "exited", pop.returncode
                changed = True
            elif pop is None and p.state in ("running", "starting") and \
                    not _alive(p.pid, p.proc_start):
                p.state = "exited"
                changed = True
        if changed:
            self.save()

    # -- placeholders -----------------------------------------------------------------
    def _values(self, spec: ProcessSpec, port: int) -> dict[str, str]:
        vals = {"port": str(port), "host": spec.host, "name": spec.name,
                "rundir": str(self.run_dir), "python": sys.executable}
        for other in self.procs.values():
            vals[f"{other.name}.port"] = str(other.port)
            vals[f"{other.name}.host"] = other.host
        for fname in spec.files:
            vals[f"file:{fname}"] = str(self.run_dir / spec.name / fname)
        return vals

    def _prepare(self, spec: ProcessSpec) -> ProcessState:
        port = spec.port
        if port == 0 or self.free_ports:
            port = free_port(spec.host)
        vals = self._values(spec, port)
        try:
            d = self.run_dir / spec.name
            d.mkdir(parents=True, exist_ok=True)
            for fname, template in spec.files.items():
                (d / fname).write_text(render(template, vals))
            argv = command_for(spec) + [render(a, vals) for a in spec.args]
            env = {k: render(v, vals) for k, v in spec.env.items()}
        except KeyError as exc:
            raise SupervisorError(f"{self.lab.path}: process {spec.name}: unknown "
                                  f"placeholder {{{exc.args[0]}}}") from None
        log = self.run_dir / "logs" / f"{spec.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        return ProcessState(spec.name, spec.kind, argv, spec.host, port, str(log), env)

    # -- lifecycle --------------------------------------------------------------------
    def up(self, timeout: float | None = None) -> None:
        """Start every process in dependency order, each ready before the next starts."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            for spec in self.lab.start_order():
                st = self._prepare(spec)
                self.procs[spec.name] = st
                self._spawn(st)
                self.save()
                self._wait_ready(st, spec, timeout or spec.ready_timeout)
                self.save()
        except BaseException:
            self.down()
            raise

    def _spawn(self, st: ProcessState) -> None:
        logf = open(st.log, "ab")
        st.ready_info = {"log_offset": str(logf.tell())}
        env = dict(os.environ, PYTHONUNBUFFERED="1", **st.env)
        try:
            pop = subprocess.Popen(
                st.argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                env=env, cwd=str(self.run_dir), start_new_session=True,
                preexec_fn=_die_with_parent if self.tie_to_parent else None)
        except OSError as exc:
            st.state = "exited"
            raise SupervisorError(f"{st.name}: cannot start {st.argv[0]}: {exc}") from None
        finally:
            logf.close()
        self._popen[st.name] = pop
        st.pid = pop.pid
        st.proc_start = _proc_start(pop.pid)
        st.started_at = time.time()
        st.state = "starting"
        st.exit_code = None

    def _wait_ready(self, st: ProcessState, spec: ProcessSpec, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        offset = int(st.ready_info.get("log_offset", "0"))
        delay = 0.01
        while time.monotonic() < deadline:
            pop = self._popen.get(st.name)
            if pop is not None and pop.poll() is not None:
                st.state, st.exit_code = "exited", pop.returncode
                raise SupervisorError(f"{st.name} exited with code {pop.returncode} before "
                                      f"it was ready:\n{self.tail(st.name, 15)}")
            if spec.ready == "none":
                break
            if spec.ready == "tcp":
                with contextlib.suppress(OSError), socket.create_connection(
                        (st.host, st.port), timeout=0.5):
                    break
            else:
                with open(st.log, "rb") as f:
                    f.seek(offset)
                    found = None
                    for line in f.read().decode("utf-8", "replace").splitlines():
                        found = parse_ready_line(line) or found
                if found is not None:
                    _, host, port, extras = found
                    st.host, st.port = host, port
                    st.ready_info = dict(extras, log_offset=str(offset))
                    break
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)
        else:
            self.kill(st.name)
            raise SupervisorError(f"{st.name} was not ready within {timeout:.0f}s:\n"
                                  f"{self.tail(st.name, 15)}")
        st.state = "running"
        if self.echo:
            self.echo(f"{st.name} ready on {st.host}:{st.port} (pid {st.pid})")

    def start(self, name: str, timeout: float | None = None) -> ProcessState:
        """(Re)start one process with its previous argv and port."""
        spec = self.lab.process(name)
        st = self.procs.get(name)
        if st is None:
            st = self._prepare(spec)
            self.procs[name] = st
        elif self.is_alive(name):
            raise SupervisorError(f"{name} is already running (pid {st.pid})")
        self._spawn(st)
        self.save()
        try:
            self._wait_ready(st, spec, timeout or spec.ready_timeout)
        finally:
            self.save()
        return st

    def restart(self, name: str, timeout: float | None = None) -> ProcessState:
        self.stop(name)
        return self.start(name, timeout)

    def is_alive(self, name: str) -> bool:
        st = self.procs[name]
        pop = self._popen.get(name)
        if pop is not None:
            return pop.poll() is None
        return _alive(st.pid, st.proc_start)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the process group of `name` (default: kill -9)."""
        st = self.procs[name]
        if self.is_alive(name):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(st.pid, sig)
        if sig == signal.SIGKILL:
            self._reap(name, 2.0)
            st.state = "killed"
        self.save()

    def stop(self, name: str, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code if known."""
        st = self.procs[name]
        if not self.is_alive(name):
            if st.state in ("running", "starting"):
                st.state = "exited"
            self._reap(name, 0)
            self.save()
            return st.exit_code
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(st.pid, signal.SIGTERM)
        if not self._reap(name, timeout):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(st.pid, signal.SIGKILL)
            self._reap(name, 2.0)
            st.state = "killed"
        else:
            st.state = "stopped"
        self.save()
        return st.exit_code

    def _reap(self, name: str, timeout: float) -> bool:
        st = self.procs[name]
        pop = self._popen.get(name)
        deadline = time.monotonic() + timeout
        if pop is not None:
            try:
                st.exit_code = pop.wait(timeout=max(timeout, 0.001))
                return True
            except subprocess.TimeoutExpired:
                return False
        while _alive(st.pid, st.proc_start):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def down(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop everything, in reverse start order."""
        for name in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(name, timeout)

    # -- conveniences -----------------------------------------------------------------
    def address(self, name: str | None = None) -> tuple[str, int]:
        st = self.procs[name or self.lab.entry]
        return st.host, st.port

    def url(self, name: str | None = None, path: str = "/") -> str:
        host, port = self.address(name)
        h = f"[{host}]" if ":" in host else host
        return f"http://{h}:{port}{path}"

    def tail(self, name: str, lines: int = 20) -> str:
        try:
            text = Path(self.procs[name].log).read_text("utf-8", "replace")
        except (OSError, KeyError):
            return ""
        return "\n".join(f"  {name}| {ln}" for ln in text.splitlines()[-lines:])
