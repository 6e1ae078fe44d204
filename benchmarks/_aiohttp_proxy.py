"""A reference Python reverse proxy for `python -m benchmarks proxy`: aiohttp, done properly.

"Faster than a Python proxy has been" needs a Python proxy to compare with, written the way a
competent aiohttp user writes one — not a straw man: one `aiohttp.web` server, one shared
`ClientSession` whose `TCPConnector` keeps up to 64 keep-alive connections to the upstream,
the method, path, query, headers and body forwarded (hop-by-hop headers dropped,
X-Forwarded-For added as pylb does), the response streamed back chunk by chunk, no access
log, uvloop when installed, one process.

The leading underscore keeps it out of `python -m benchmarks`' list of benchmarks; the proxy
benchmark starts it through the supervisor:
`python -m benchmarks._aiohttp_proxy --listen 127.0.0.1:PORT --upstream http://127.0.0.1:B`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from multidict import CIMultiDict, CIMultiDictProxy

# RFC 9110 §7.6.1 hop-by-hop headers, plus the framing headers aiohttp sets itself.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})
POOL = 64
SESSION = web.AppKey("session", ClientSession)
UPSTREAM = web.AppKey("upstream", str)


def _forwardable(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in headers.items():
        if k.lower() not in HOP_BY_HOP:
            out.add(k, v)
    return out


async def proxy(request: web.Request) -> web.StreamResponse:
    headers = _forwardable(request.headers)
    if request.remote:
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {request.remote}" if prior else request.remote
    body = request.content if request.body_exists else None
    async with request.app[SESSION].request(
            request.method, request.app[UPSTREAM] + request.rel_url.raw_path_qs,
            headers=headers, data=body, allow_redirects=False) as up:
        resp = web.StreamResponse(status=up.status, reason=up.reason,
                                  headers=_forwardable(up.headers))
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def _client(app: web.Application) -> AsyncIterator[None]:
    # auto_decompress off: bytes pass through as the upstream sent them (Content-Length holds)
    async with ClientSession(connector=TCPConnector(limit=POOL, limit_per_host=POOL),
                             auto_decompress=False, timeout=ClientTimeout(total=60),
                             skip_auto_headers=("User-Agent", "Accept-Encoding")) as s:
        app[SESSION] = s
        yield


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_client)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks._aiohttp_proxy")
    p.add_argument("--listen", required=True, help="HOST:PORT")
    p.add_argument("--upstream", required=True, help="http://HOST:PORT")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    loop = _loop()
    asyncio.set_event_loop(loop)
    web.run_app(make_app(args.upstream), host=host, port=int(port), access_log=None,
                print=None, backlog=4096, loop=loop)


if __name__ == "__main__":
    main()
