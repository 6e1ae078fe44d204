"""The floor under any Python proxy on uvloop: a byte relay that understands nothing.

Each client connection is paired with its own upstream connection and bytes are copied both
ways by two `asyncio.Protocol`s — no HTTP parsing, no balancing, no header rewriting, no
timers. It is not a usable proxy (one upstream connection per client, no keep-alive pool, no
limits); it is what the event loop and the kernel cost for the same two reads and two writes
per request that every proxy makes. `python -m benchmarks proxy` measures it next to pylb:
pylb's CPU per request minus this one is what pylb's HTTP work costs, and this one minus
nginx's is what Python plus uvloop cost before any HTTP work is done.

`python -m benchmarks._relay_floor --listen 127.0.0.1:PORT --upstream 127.0.0.1:B`
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

from pycommon.config import parse_hostport


class Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class Client(asyncio.Protocol):
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream_addr = upstream
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        client = self.transport
        try:
            t, _ = await loop.create_connection(lambda: Upstream(client), *self.upstream_addr)
        except OSError:
            client.close()
            return
        self.upstream = t
        for data in self.pending:  # what arrived while connecting
            t.write(data)
        self.pending = []

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.pending.append(data)
            return
        self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def serve(listen: tuple[str, int], upstream: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(upstream), *listen, backlog=1024)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks._relay_floor")
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    args = ap.parse_args(argv)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(parse_hostport(args.listen), parse_hostport(args.upstream)))


if __name__ == "__main__":
    main()
