"""Access log: nginx `combined` or one JSON object per line.

    127.0.0.1 - - [22/Nov/2026:03:00:00 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.5"

Lines are buffered and flushed at most every second (and at stop), so logging costs one
string format per request on the hot path.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from pycommon.http import RequestHead
    from pylb.balancing import Peer
    from pylb.proxy import ClientConnection


def _q(v: bytes | None) -> str:
    if not v:
        return "-"
    return v.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"')


class AccessLog:
    def __init__(self, path: str, fmt: str = "combined") -> None:
        self.path = path
        self.fmt = fmt
        self.enabled = path != "off"
        self._out: IO[str] | None = None
        self._last_flush = 0.0
        self._stamp_sec = -1
        self._stamp_text = ""
        if path == "-":
            self._out = sys.stderr
        elif self.enabled:
            self._out = open(path, "a", encoding="utf-8", buffering=65536)

    def log(self, client: ClientConnection, head: RequestHead, status: int, nbytes: int,
            started: float, peer: Peer | None) -> None:
        out = self._out
        if out is None:
            return
        elapsed = asyncio.get_running_loop().time() - started
        now = time.time()
        if self.fmt == "json":
            line = json.dumps({
                "time": round(now, 3), "remote_addr": client.peer,
                "method": head.method.decode("latin-1"),
                "uri": head.target.decode("latin-1"), "protocol": f"HTTP/{head.version}",
                "status": status, "body_bytes_sent": nbytes,
                "referer": (head.get(b"referer") or b"").decode("latin-1"),
                "user_agent": (head.get(b"user-agent") or b"").decode("latin-1"),
                "request_time": round(elapsed, 6),
                "upstream": f"{peer.host}:{peer.port}" if peer else None,
                "upstream_name": peer.name if peer else None,
            }, separators=(",", ":"))
        else:
            ts = self._stamp(now)
            request = b"%s %s HTTP/%s" % (head.method, head.target, head.version.encode())
            line = (f'{client.peer} - - [{ts}] "{_q(request)}" {status} {nbytes} '
                    f'"{_q(head.get(b"referer"))}" "{_q(head.get(b"user-agent"))}"')
        out.write(line + "\n")
        if now - self._last_flush > 1.0:
            self._last_flush = now
            out.flush()

    def log_error(self, remote: str, status: int) -> None:
        """A request rejected before it was parsed (400, 413, 414, 408)."""
        out = self._out
        if out is None:
            return
        now = time.time()
        if self.fmt == "json":
            line = json.dumps({"time": round(now, 3), "remote_addr": remote,
                               "status": status, "body_bytes_sent": 0})
        else:
            ts = self._stamp(now)
            line = f'{remote} - - [{ts}] "-" {status} 0 "-" "-"'
        out.write(line + "\n")
        out.flush()

    def _stamp(self, now: float) -> str:
        """The local time as nginx's $time_local, formatted once per second (nginx caches
        it the same way); strftime + localtime per line was the bulk of a line's cost."""
        sec = int(now)
        if sec != self._stamp_sec:
            self._stamp_sec = sec
            self._stamp_text = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
        return self._stamp_text

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()

    def close(self) -> None:
        if self._out is not None and self._out is not sys.stderr:
            self._out.close()
        self._out = None
