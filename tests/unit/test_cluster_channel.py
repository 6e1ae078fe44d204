"""The TCP channel on loopback: first free port of a range, ordered request/reply, frames
without the key close the connection."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pysession.cluster.channel import Channel
from pysession.cluster.frames import FrameCodec


def free_range(n: int) -> tuple[int, int]:
    """n consecutive ports that are free right now (best effort)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            lo = s.getsockname()[1]
        if lo + n >= 65535:
            continue
        try:
            socks = []
            for p in range(lo, lo + n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
        return lo, lo + n - 1
    raise RuntimeError("no free port range")


def test_first_free_port_ordered_replies_and_rejection() -> None:
    async def main() -> None:
        got: list[Any] = []

        def handler(sender: str, msg: Any, reply: Any) -> None:
            got.append((sender, msg["n"]))
            if msg.get("rid") is not None:
                reply({"echo": msg["n"]})

        lo, hi = free_range(2)
        a = Channel(FrameCodec("a", 1, "k"), handler, "127.0.0.1", (lo, hi))
        b = Channel(FrameCodec("b", 2, "k"), handler, "127.0.0.1", (lo, hi))
        assert await a.start() == lo
        assert await b.start() == lo + 1          # lo is taken: the next one
        for n in range(5):
            await a.send("b", ("127.0.0.1", b.port), {"n": n})
        assert await a.request("b", ("127.0.0.1", b.port), {"n": 5}, 2.0) == {"echo": 5}
        assert got == [("a", n) for n in range(6)]          # in order
        assert await a.probe(("127.0.0.1", b.port))

        intruder = FrameCodec("x", 3, "wrong")
        r, w = await asyncio.open_connection("127.0.0.1", b.port)
        w.write(intruder.frame({"n": 99}, 0.0))
        assert await asyncio.wait_for(r.read(), 2.0) == b""   # closed by b
        w.close()
        assert ("x", 99) not in got and b.codec.rejected == 1
        await a.stop()
        await b.stop()

    asyncio.run(main())
