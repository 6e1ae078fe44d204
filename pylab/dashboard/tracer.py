"""The request tracer: probes sent through the lab's entry, as named visitors.

Each visitor is one browser: it keeps the cookies the lab gave it (JSESSIONID, and whatever a
sticky balancer adds — ROUTEID, SERVERID) and sends `POST /api/session {"incr": "hits"}`, so the
counter it gets back shows at a glance whether its session survived: 1, 2, 3, … or back to 1.
Every probe becomes one trace record: the path (client → entry → node), status, latency, session
id and what happened to the session (new, kept, moved, LOST).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

import aiohttp

from pylab.dashboard.state import parse_session_id

PROBE_PATH = "/api/session"
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5)
MAX_VISITORS = 20


@dataclass
class Visitor:
    name: str
    cookies: dict[str, str] = field(default_factory=dict)
    session_id: str | None = None
    home: str | None = None
    store: str | None = None
    last_node: str | None = None
    value: int = 0
    requests: int = 0
    lost: int = 0
    moved: int = 0

    def view(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cookies")
        d["cookie_names"] = sorted(self.cookies)
        d["backup"] = None  # filled by the app from the lab's state (state.place_session)
        return d


@dataclass
class TraceRecord:
    seq: int
    t: float
    visitor: str
    path: list[str]
    status: int | None
    node: str | None
    session_id: str | None
    value: int | None
    latency_ms: float
    outcome: str
    error: str | None = None


class Tracer:
    def __init__(self, keep: int = 40) -> None:
        self.records: deque[TraceRecord] = deque(maxlen=keep)
        self.visitors: dict[str, Visitor] = {"alice": Visitor("alice")}
        self._seq = itertools.count(1)
        self._names = itertools.count(2)

    def new_visitor(self) -> Visitor:
        if len(self.visitors) >= MAX_VISITORS:
            oldest = next(iter(self.visitors))
            del self.visitors[oldest]
        name = f"visitor{next(self._names)}"
        self.visitors[name] = Visitor(name)
        return self.visitors[name]

    def reset(self) -> None:
        self.records.clear()
        self.visitors = {"alice": Visitor("alice")}

    def view(self) -> dict[str, Any]:
        return {"records": [asdict(r) for r in reversed(self.records)],
                "visitors": [v.view() for v in self.visitors.values()]}

    async def probe(self, http: aiohttp.ClientSession, base_url: str, visitor_name: str,
                    via: list[str]) -> TraceRecord:
        """One request as `visitor_name` through `base_url`; `via` is the path before the node
        (e.g. ["client", "lb"] or ["client", "vip", "lb1"])."""
        v = self.visitors.get(visitor_name) or self.visitors.setdefault(
            visitor_name, Visitor(visitor_name))
        headers = {"Content-Type": "application/json"}
        if v.cookies:
            headers["Cookie"] = "; ".join(f"{k}={val}" for k, val in v.cookies.items())
        url = base_url.rstrip("/") + PROBE_PATH
        started = time.perf_counter()
        status: int | None = None
        body: dict[str, Any] = {}
        error: str | None = None
        try:
            async with http.post(url, data=b'{"incr": "hits"}', headers=headers,
                                 timeout=PROBE_TIMEOUT) as r:
                status = r.status
                raw = await r.read()
                for sc in r.headers.getall("Set-Cookie", []):
                    self._keep_cookie(v, sc)
            if status == 200:
                try:
                    parsed = json.loads(raw)
                    body = parsed if isinstance(parsed, dict) else {}
                except ValueError:
                    error = "answer is not JSON"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency = round((time.perf_counter() - started) * 1000, 2)
        node = body.get("node") if isinstance(body.get("node"), str) else None
        sid = body.get("session_id") if isinstance(body.get("session_id"), str) else None
        value = body.get("value") if isinstance(body.get("value"), int) else None
        outcome = self._account(v, status, node, sid, value, error)
        rec = TraceRecord(next(self._seq), time.time(), v.name,
                          [*via, node or (f"✗ {status}" if status else "✗")], status, node,
                          sid, value, latency, outcome, error)
        self.records.append(rec)
        return rec

    @staticmethod
    def _keep_cookie(v: Visitor, header: str) -> None:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            return
        for name, morsel in jar.items():
            if morsel["max-age"] == "0" or not morsel.value:
                v.cookies.pop(name, None)
            else:
                v.cookies[name] = morsel.value

    @staticmethod
    def _account(v: Visitor, status: int | None, node: str | None, sid: str | None,
                 value: int | None, error: str | None) -> str:
        v.requests += 1
        if status != 200 or sid is None:
            return error or f"error {status}"
        before, before_value = v.session_id, v.value
        parts = parse_session_id(sid)
        v.session_id, v.home, v.store = sid, parts["route"], parts["store"]
        v.last_node, v.value = node, value or 0
        if before is None:
            return "new session"
        if sid == before:
            return "kept"
        if parse_session_id(before)["base"] == parts["base"] and (value or 0) > before_value:
            v.moved += 1
            return f"kept, id now {sid[len(parts['base'] or ''):]}"
        v.lost += 1
        return f"LOST (had {before_value} hits) — new session"
