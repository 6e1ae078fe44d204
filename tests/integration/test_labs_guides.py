"""Every command in the lab guides (docs/labs/*.md) runs, in order, against a live lab.

A guide's commands are the lines of its ```sh blocks. They run in bash, in a scratch
directory, with `$PYLAB_RUN_DIR` pointing at this test's run directory, so nothing touches a
lab you may have running. Three rewrites keep them runnable side by side with other tests,
and nothing else is changed:

- `pylab up LAB …` gets `--detach --free-ports` (and `--dashboard-port 0` with --dashboard);
- an address with a lab's fixed port (`127.0.0.1:8080`, `127.0.0.88:8080`) becomes the
  address that process really got, and `<node2 port>` (the guides' way of saying "the port
  `pylab status` shows for node2") becomes that port;
- `pylab dashboard` (it runs until stopped) starts in the background on a free port; the test
  waits for its READY line and stops it when the guide ends.

A trailing `# expect: REGEX` means the command's output must match REGEX.

`pylab check LAB` lines are the one exception: test_labs_check.py runs exactly that command for
every lab, so here they are only checked to name a lab that has a story (running every story
twice would double this file's cost for nothing).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pycommon.lifecycle import parse_ready_line
from pylab.supervisor import Supervisor, SupervisorError
from pylab.topology import LAB_DIR, load_lab
from tests.integration.test_labs_check import LABS, has_story

pytestmark = pytest.mark.integration

GUIDE_DIR = Path(__file__).resolve().parents[2] / "docs" / "labs"
GUIDES = sorted(p.name for p in GUIDE_DIR.glob("*.md"))
_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)
_ADDRESS = re.compile(r"\b(127\.\d+\.\d+\.\d+|localhost):(\d+)\b")
_PORT_OF = re.compile(r"<([A-Za-z_][\w\-]*) port>")
COMMAND_TIMEOUT = 120.0


@dataclass
class Command:
    line: str
    expect: str | None
    where: str


def commands(guide: Path) -> list[Command]:
    text = guide.read_text()
    out = []
    for block in _SH_BLOCK.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        for i, line in enumerate(block.group(1).splitlines()):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            _, sep, expect = line.partition("# expect: ")
            out.append(Command(line.strip(), expect.strip() if sep else None,
                               f"{guide.name}:{first + i}"))
    return out


def strip_comment(line: str) -> str:
    """The command without its trailing `# comment` (a `#` outside quotes after a blank)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


class GuideRunner:
    def __init__(self, tmp: Path) -> None:
        self.run_dir = tmp / "run"
        self.cwd = tmp / "work"
        self.cwd.mkdir()
        bindir = str(Path(sys.executable).parent)
        self.env = dict(os.environ, PYLAB_RUN_DIR=str(self.run_dir),
                        PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
        self.addresses: dict[str, str] = {}  # "127.0.0.1:8080" → the real address
        self.ports: dict[str, int] = {}  # process name → its real port
        self.background: list[subprocess.Popen[bytes]] = []

    def rewrite(self, line: str) -> str:
        line = strip_comment(line)
        if line.startswith("pylab up "):
            if "--detach" not in line:
                line += " --detach"
            line += " --free-ports"
            if "--dashboard" in line and "--dashboard-port" not in line:
                line += " --dashboard-port 0"
        if line.startswith("pylab dashboard") and "--port" not in line:
            line += " --port 0"

        def sub(m: re.Match[str]) -> str:
            return self.addresses.get(m.group(0), m.group(0))

        def port_of(m: re.Match[str]) -> str:
            assert m.group(1) in self.ports, f"no process {m.group(1)!r} in {line!r}"
            return str(self.ports[m.group(1)])

        return _PORT_OF.sub(port_of, _ADDRESS.sub(sub, line))

    def learn_addresses(self, lab_name: str) -> None:
        """After `pylab up`: map each fixed port of the lab file to where it really is."""
        lab = load_lab(lab_name)
        sup = Supervisor.attach(self.run_dir)
        self.ports = {name: st.port for name, st in sup.procs.items()}
        for spec in lab.processes:
            if spec.port:
                st = sup.procs[spec.name]
                real = f"{st.host}:{st.port}"
                for host in {spec.host, st.host, "127.0.0.1", "localhost"}:
                    self.addresses.setdefault(f"{host}:{spec.port}", real)

    def run(self, cmd: Command) -> str | None:
        """The command's output, or None when another test runs it (`pylab check LAB`)."""
        line = self.rewrite(cmd.line)
        check = re.fullmatch(r"pylab check ([\w\-]+)", line)
        if check:
            lab = check.group(1)
            assert lab in LABS and has_story(lab), f"{cmd.where}: no story for lab {lab!r}"
            return None
        if line.startswith("pylab dashboard"):
            return self.start_background(line, cmd)
        r = subprocess.run(["bash", "-c", line], cwd=self.cwd, env=self.env,
                           capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                           check=False)
        out = r.stdout + r.stderr
        assert r.returncode == 0, f"{cmd.where}: `{line}` exited {r.returncode}:\n{out}"
        if line.startswith("pylab up "):
            self.addresses.clear()
            self.ports.clear()
            self.learn_addresses(line.split()[2])
        return r.stdout

    def start_background(self, line: str, cmd: Command) -> str:
        log = self.cwd / f"background-{len(self.background)}.log"
        with open(log, "wb") as f:
            pop = subprocess.Popen(["bash", "-c", "exec " + line], cwd=self.cwd, env=self.env,
                                   stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append(pop)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and pop.poll() is None:
            text = log.read_text("utf-8", "replace")
            if any(parse_ready_line(x) for x in text.splitlines()):
                return text
            time.sleep(0.05)
        raise AssertionError(f"{cmd.where}: `{line}` never printed READY:\n"
                             f"{log.read_text('utf-8', 'replace')}")

    def close(self) -> None:
        with contextlib.suppress(SupervisorError, ValueError, KeyError, OSError):
            Supervisor.attach(self.run_dir).down(timeout=5)
        for pop in self.background:
            if pop.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pop.pid, 15)
            try:
                pop.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(pop.pid, 9)
                pop.wait(5)


def test_every_lab_has_a_guide_with_commands() -> None:
    labs = sorted(p.stem for p in LAB_DIR.glob("*.toml"))
    missing = [lab for lab in labs if f"{lab}.md" not in GUIDES]
    assert not missing, f"labs without a guide in docs/labs/: {missing}"
    for name in GUIDES:
        cmds = commands(GUIDE_DIR / name)
        assert cmds, f"{name} has no ```sh commands"
        if name != "README.md":
            lab = name.removesuffix(".md")
            assert any(c.line.startswith(f"pylab up {lab}") for c in cmds), name
            # the story last, after `pylab down`: one copy of the lab at a time
            assert cmds[-1].line.startswith(f"pylab check {lab}"), name
            assert cmds[-2].line.startswith("pylab down"), name


def test_commands_are_parsed_with_their_expectations() -> None:
    cmds = commands(GUIDE_DIR / "basic.md")
    kill = next(c for c in cmds if c.line.startswith("pylab kill node1"))
    assert kill.expect == "sent SIGKILL to node1" and kill.where.startswith("basic.md:")
    runner = GuideRunner.__new__(GuideRunner)
    runner.addresses = {"127.0.0.1:8080": "127.0.0.1:41234"}
    runner.ports = {"node2": 40002}
    assert runner.rewrite("curl -s http://127.0.0.1:<node2 port>/-/health") == \
        "curl -s http://127.0.0.1:40002/-/health"
    assert runner.rewrite("curl -s http://127.0.0.1:8080/api/session   # expect: x") == \
        "curl -s http://127.0.0.1:41234/api/session"
    assert runner.rewrite("pylab up basic --dashboard   # start it") == \
        "pylab up basic --dashboard --detach --free-ports --dashboard-port 0"
    assert strip_comment("""curl -d '{"a": "#x"}' u#v  # c # d""") == \
        """curl -d '{"a": "#x"}' u#v"""


@pytest.mark.parametrize("guide", GUIDES)
@pytest.mark.timeout(300)
def test_guide_commands_run(guide: str, tmp_path: Path) -> None:
    runner = GuideRunner(tmp_path)
    try:
        for cmd in commands(GUIDE_DIR / guide):
            out = runner.run(cmd)
            if cmd.expect is not None and out is not None:
                assert re.search(cmd.expect, out), (
                    f"{cmd.where}: `{runner.rewrite(cmd.line)}`: output does not match "
                    f"{cmd.expect!r}:\n{out}")
    finally:
        runner.close()
