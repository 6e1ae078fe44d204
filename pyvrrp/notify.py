"""Notify scripts and tracked scripts, run the way keepalived runs them.

`notify_master|backup|fault|stop SCRIPT` run as written; `notify SCRIPT` gets keepalived's
arguments appended: `INSTANCE <name> <STATE> <priority>`. Scripts run in the background (a
state change never waits for them) and are killed after a bound. The command line is split
with shlex and executed without a shell, so `"/path/script.sh arg"` works and nothing is eval'd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex

log = logging.getLogger("pyvrrp.notify")
NOTIFY_TIMEOUT = 10.0


async def run_script(cmd: str, *args: str, timeout: float = NOTIFY_TIMEOUT) -> int | None:
    """Exit status, or None if it could not start or timed out (then it is killed)."""
    argv = shlex.split(cmd) + list(args)
    if not argv:
        return None
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
    except OSError as exc:
        log.warning("cannot run %s: %s", argv[0], exc)
        return None
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 1.0)
        return None


class Notifier:
    """Fires the notify scripts of one instance on each state change."""

    def __init__(self, instance: str, scripts: dict[str, str], generic: str) -> None:
        self.instance = instance
        self.scripts = scripts   # state name → command (notify_master etc.)
        self.generic = generic   # `notify`
        self.tasks: set[asyncio.Task[int | None]] = set()

    def fire(self, state: str, priority: int) -> None:
        loop = asyncio.get_running_loop()
        cmds: list[tuple[str, tuple[str, ...]]] = []
        if self.scripts.get(state):
            cmds.append((self.scripts[state], ()))
        if self.generic:
            cmds.append((self.generic, ("INSTANCE", self.instance, state, str(priority))))
        for cmd, args in cmds:
            t = loop.create_task(run_script(cmd, *args))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    async def drain(self, timeout: float = 2.0) -> None:
        """Give running scripts (notify_stop at shutdown) a bounded time to finish."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
