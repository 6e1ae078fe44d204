"""The daemon lifecycle shared by pylb, pynode and pyvrrp.

Every daemon: parses its CLI with the common flags (`--log-format`, `--log-level`,
`--version`), configures logging (text by default, one JSON object per line with
`--log-format json`), runs on uvloop when available, prints exactly one machine-readable
ready line on stdout once it accepts work (`READY pylb 127.0.0.1:8080 admin=127.0.0.1:8090`),
and stops gracefully on SIGTERM/SIGINT. The pylab supervisor waits for that line.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pycommon.version import __version__

READY_PREFIX = "READY"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus any `extra` fields."""

    _skip = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in self._skip and not k.startswith("_"):
                out[k] = v if isinstance(v, str | int | float | bool | None) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def add_common_args(parser: argparse.ArgumentParser, prog: str) -> None:
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log line format on stderr (default: text)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"),
                        help="minimum level logged (default: info)")


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def announce_ready(kind: str, host: str, port: int, **extra: object) -> None:
    """Print the one ready line the supervisor waits for; flushed at once."""
    h = f"[{host}]" if ":" in host else host
    tail = "".join(f" {k}={v}" for k, v in extra.items())
    sys.stdout.write(f"{READY_PREFIX} {kind} {h}:{port}{tail}\n")
    sys.stdout.flush()


def parse_ready_line(line: str) -> tuple[str, str, int, dict[str, str]] | None:
    """Inverse of `announce_ready`: (kind, host, port, extras) or None."""
    parts = line.strip().split()
    if len(parts) < 3 or parts[0] != READY_PREFIX:
        return None
    hostport = parts[2]
    host, _, port_s = hostport.rpartition(":")
    if not port_s.isdigit():
        return None
    extras = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
    return parts[1], host.strip("[]"), int(port_s), extras


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency on Linux
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def describe_oserror(exc: OSError, what: str) -> str:
    """One clear line for the usual bind/open failures."""
    if exc.errno == errno.EADDRINUSE:
        return f"{what}: address already in use"
    if exc.errno == errno.EACCES:
        return f"{what}: permission denied"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{what}: address not available on this machine"
    return f"{what}: {exc.strerror or exc}"


class StopSignal:
    """Resolves when SIGTERM or SIGINT arrives; remembers which (for logs)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signum: int | None = None  # the signal that asked us to stop

    def install(self, loop: asyncio.AbstractEventLoop,
                extra: dict[int, Callable[[], None]] | None = None) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._fire, sig)
        for extra_sig, fn in (extra or {}).items():
            loop.add_signal_handler(extra_sig, fn)

    def _fire(self, sig: int) -> None:
        self.signum = int(sig)
        self.event.set()

    async def wait(self) -> int | None:
        await self.event.wait()
        return self.signum


async def serve_until_stopped(stop: StopSignal, on_reload: Callable[[], Awaitable[None]],
                              ready: Callable[[], None]) -> int | None:
    """Call `ready()` (the READY line), then run `on_reload()` on every SIGHUP until
    SIGTERM/SIGINT; return the stopping signal.

    The SIGHUP handler is in place before `ready()`, so a reload asked for as soon as the
    daemon says it is ready never hits SIGHUP's default action (terminate). Reloads run one
    at a time; a SIGHUP arriving during one is taken after it.
    """
    loop = asyncio.get_running_loop()
    hup = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    ready()
    stop_wait = loop.create_task(stop.wait())
    try:
        while True:
            hup_wait = loop.create_task(hup.wait())
            done, _ = await asyncio.wait({stop_wait, hup_wait},
                                         return_when=asyncio.FIRST_COMPLETED)
            if stop_wait in done:
                hup_wait.cancel()
                return stop_wait.result()
            hup.clear()
            await on_reload()
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def run_daemon(main: Callable[[StopSignal], Awaitable[int]], prog: str) -> int:
    """Run `main(stop)` on uvloop; map startup OSErrors and ConfigErrors to one line + exit 1."""
    from pycommon.config import ConfigError

    install_uvloop()
    log = logging.getLogger(prog)

    async def runner() -> int:
        stop = StopSignal()
        stop.install(asyncio.get_running_loop())
        return await main(stop)

    started = time.monotonic()
    try:
        return asyncio.run(runner())
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        log.debug("exited after %.1fs", time.monotonic() - started)
