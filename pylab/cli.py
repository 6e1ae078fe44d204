"""`pylab` — start, inspect and break whole topologies.

    pylab list                      the labs
    pylab up LAB [--detach]         start (foreground: Ctrl-C stops all; --detach: return
                                    once every process is ready)
    pylab status [--json]           processes, pids, states, ports
    pylab kill NAME [--signal KILL|TERM]
    pylab restart NAME
    pylab down
    pylab check LAB                 start LAB on free ports, run its story, stop it
    pylab logs NAME [-n N]
    pylab dashboard [--port 8099]   the live dashboard on 127.0.0.1 (also: up LAB --dashboard)

State lives in the run directory (`--run-dir`, `$PYLAB_RUN_DIR`, default
~/.local/state/pylab), so every verb works from another shell.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from pycommon.config import ConfigError
from pycommon.version import __version__
from pylab.stories import Step, StoryFailed, run_story
from pylab.supervisor import Supervisor, SupervisorError, _alive
from pylab.topology import list_labs, load_lab


def default_run_dir() -> Path:
    env = os.environ.get("PYLAB_RUN_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pylab"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pylab", description="pycluster labs: whole topologies "
                                "of real processes you can start, break and measure")
    p.add_argument("--version", action="version", version=f"pylab {__version__}")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="state and logs directory (default $PYLAB_RUN_DIR or "
                   "~/.local/state/pylab)")
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("list", help="list the labs")
    up = sub.add_parser("up", help="start a lab")
    up.add_argument("lab")
    up.add_argument("--detach", action="store_true", help="return once every process is ready")
    up.add_argument("--free-ports", action="store_true",
                    help="ignore fixed ports in the lab and pick free ones")
    up.add_argument("--dashboard", action="store_true",
                    help="also start the live dashboard (127.0.0.1, see --dashboard-port)")
    up.add_argument("--dashboard-port", type=int, default=8099,
                    help="dashboard port (default 8099; 0 = any free port)")
    st = sub.add_parser("status", help="show the running lab")
    st.add_argument("--json", action="store_true")
    k = sub.add_parser("kill", help="send a signal to one process (default KILL)")
    k.add_argument("name")
    k.add_argument("--signal", default="KILL", choices=("KILL", "TERM", "INT", "STOP", "CONT"))
    r = sub.add_parser("restart", help="stop and start one process (same port)")
    r.add_argument("name")
    s = sub.add_parser("start", help="start one stopped process again")
    s.add_argument("name")
    sub.add_parser("down", help="stop every process of the running lab")
    c = sub.add_parser("check", help="run LAB's story on free ports and print pass/fail")
    c.add_argument("lab")
    lg = sub.add_parser("logs", help="print the log of one process")
    lg.add_argument("name")
    lg.add_argument("-n", type=int, default=50)
    db = sub.add_parser("dashboard", help="serve the live dashboard of the running lab "
                        "on 127.0.0.1")
    db.add_argument("--port", type=int, default=8099, help="default 8099; 0 = any free port")
    db.add_argument("--exit-with-lab", action="store_true",
                    help="stop once the lab is down (used by `pylab up --dashboard`)")
    return p


def _running_elsewhere(run_dir: Path) -> str | None:
    try:
        sup = Supervisor.attach(run_dir)
    except (SupervisorError, ConfigError, KeyError, ValueError, OSError):
        return None
    live = [p.name for p in sup.procs.values() if _alive(p.pid, p.proc_start)]
    return sup.lab.name if live else None


def _print_hints(sup: Supervisor) -> None:
    url = sup.url()
    print(f"\nlab {sup.lab.name} is up: {url}")
    if sup.lab.description:
        print(f"  {sup.lab.description}")
    for h in sup.lab.hints:
        print("  " + h.replace("{url}", url))
    print()


def _follow(sup: Supervisor) -> int:
    """Foreground: print every process's new log lines with a name prefix until Ctrl-C."""
    offsets = {n: Path(p.log).stat().st_size if Path(p.log).exists() else 0
               for n, p in sup.procs.items()}
    width = max(len(n) for n in sup.procs)
    stop = {"now": False}

    def on_signal(_signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    reported: set[str] = set()
    while not stop["now"]:
        for name, p in sup.procs.items():
            try:
                with open(p.log, "rb") as f:
                    f.seek(offsets[name])
                    chunk = f.read()
            except OSError:
                continue
            if chunk:
                cut = chunk.rfind(b"\n") + 1
                offsets[name] += cut
                for line in chunk[:cut].decode("utf-8", "replace").splitlines():
                    print(f"{name:>{width}} | {line}", flush=True)
        sup.refresh()
        for name, p in sup.procs.items():
            if p.state in ("exited", "killed") and name not in reported:
                reported.add(name)
                print(f"{name:>{width}} | -- process {p.state} (pylab restart {name})",
                      flush=True)
            elif p.state == "running":
                reported.discard(name)
                # a restart from another shell: pick up its pid
        try:
            fresh = Supervisor.attach(sup.run_dir)
            for name, p in fresh.procs.items():
                if name in sup.procs and p.pid != sup.procs[name].pid:
                    sup.procs[name] = p
                    sup._popen.pop(name, None)
        except (SupervisorError, ValueError, KeyError):
            break
        time.sleep(0.2)
    print("\nstopping the lab ...", flush=True)
    sup.down()
    (sup.run_dir / "state.json").unlink(missing_ok=True)
    print("stopped.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir: Path = args.run_dir or default_run_dir()
    try:
        return _dispatch(args, run_dir)
    except (SupervisorError, ConfigError) as exc:
        print(f"pylab: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"pylab: no process named {exc.args[0]!r} in this lab", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, run_dir: Path) -> int:
    if args.verb == "list":
        for lab in list_labs():
            print(f"{lab.name:<20} {lab.description}")
        return 0
    if args.verb == "up":
        other = _running_elsewhere(run_dir)
        if other:
            print(f"pylab: lab {other!r} is already running in {run_dir} (pylab down first)",
                  file=sys.stderr)
            return 1
        sup = Supervisor(load_lab(args.lab), run_dir, free_ports=args.free_ports,
                         tie_to_parent=not args.detach, echo=lambda s: print(s, flush=True))
        sup.up()
        _print_hints(sup)
        if args.dashboard:
            from pylab.dashboard.app import launch

            try:
                url = launch(run_dir, args.dashboard_port, tie_to_parent=not args.detach)
                print(f"dashboard: {url}  (stops when the lab goes down)\n", flush=True)
            except SupervisorError as exc:  # the lab is fine without it
                print(f"pylab: dashboard not started: {exc}", file=sys.stderr)
        if args.detach:
            print(f"detached; state in {run_dir}. `pylab status`, `pylab down`.")
            return 0
        print("Ctrl-C stops everything.\n", flush=True)
        return _follow(sup)
    if args.verb == "check":
        with tempfile.TemporaryDirectory(prefix="pylab-check-") as tmp:
            sup = Supervisor(load_lab(args.lab), tmp, free_ports=True)
            print(f"pylab check {sup.lab.name}")
            try:
                sup.up()

                def report(step: Step) -> None:
                    mark = "PASS" if step.ok else "FAIL"
                    extra = f" — {step.detail}" if (step.detail and not step.ok) else ""
                    print(f"  [{mark}] {step.text}{extra}", flush=True)

                steps = run_story(sup, report)
            except StoryFailed:
                print("result: FAIL")
                return 1
            finally:
                sup.down()
            print(f"result: PASS ({len(steps)} steps)")
            return 0
    if args.verb == "dashboard":
        from pylab.dashboard import serve

        return serve(run_dir, args.port, exit_with_lab=args.exit_with_lab)
    sup = Supervisor.attach(run_dir)
    if args.verb == "status":
        st = sup.status()
        if args.json:
            print(json.dumps(st))
        else:
            print(f"lab {st['lab']} (entry: {st['entry']} {sup.url()})")
            for p in st["processes"]:
                print(f"  {p['name']:<10} {p['kind']:<8} {p['state']:<8} pid {p['pid']:<8} "
                      f"{p['host']}:{p['port']}")
        return 0
    if args.verb == "kill":
        sup.kill(args.name, getattr(signal, "SIG" + args.signal))
        print(f"sent SIG{args.signal} to {args.name}")
        return 0
    if args.verb in ("restart", "start"):
        ps = sup.restart(args.name) if args.verb == "restart" else sup.start(args.name)
        print(f"{args.name} running again (pid {ps.pid}, {ps.host}:{ps.port})")
        return 0
    if args.verb == "down":
        sup.down()
        (run_dir / "state.json").unlink(missing_ok=True)
        print(f"lab {sup.lab.name} stopped")
        return 0
    if args.verb == "logs":
        print(sup.tail(args.name, args.n))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
