"""The store clients against real memcached and redis (started by the supervisor)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from pycommon.wire import packb
from pylab.supervisor import free_port
from pylab.topology import ProcessSpec
from pysession.store import StoreError
from pysession.stores.memcached import MemcachedStore, parse_nodes
from pysession.stores.redis import (
    ATTR,
    META,
    RedisSettings,
    RedisStore,
    SessionConflict,
    SessionGone,
)
from tests import stores_fixtures
from tests.conftest import make_lab
from tests.stores_fixtures import REDIS, Stores, kill_stores, need, redis_spec

pytestmark = [pytest.mark.integration, pytest.mark.interop]
memcached_pair = stores_fixtures.memcached_pair
redis_server = stores_fixtures.redis_server


def test_parse_nodes_errors() -> None:
    assert [n.id for n in parse_nodes("n1:127.0.0.1:11211, n2:localhost:11212")] == ["n1", "n2"]
    for bad in ("", "n1:host", "n1:h:99999", "n1:h:1,n1:h:2"):
        with pytest.raises(ValueError):
            parse_nodes(bad)


def test_memcached_store_roundtrip(memcached_pair: Stores) -> None:
    async def go() -> None:
        host, port = memcached_pair.addr("n1")
        st = MemcachedStore(host, port, node_id="n1")
        try:
            await st.set("A-n1", b"\x00bytes", ttl=60)
            assert await st.get("A-n1") == b"\x00bytes"
            assert await st.touch("A-n1", 30)
            assert not await st.touch("missing", 30)
            deadline = time.monotonic() + 3  # the LRU crawler lists items it has seen
            while "A-n1" not in await st.keys():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert 25 <= (await st.ttl_of("A-n1") or 0) <= 30
            v, tok = await st.gets("A-n1")
            assert v == b"\x00bytes" and tok is not None
            await st.set("A-n1", b"other")
            assert await st.cas("A-n1", b"stale", tok) is False
            v, tok = await st.gets("A-n1")
            assert tok is not None and await st.cas("A-n1", b"fresh", tok) is True
            assert await st.add("lock:A", b"1", 5) and not await st.add("lock:A", b"1", 5)
            await st.set_many({"x": b"1", "y": b"2"}, ttl=10)
            assert await st.get_many(["x", "y", "z"]) == {"x": b"1", "y": b"2"}
            await st.delete("A-n1")
            await st.delete("A-n1")
            assert await st.get("A-n1") is None
            memcached_pair.sup.kill("n1")
            with pytest.raises(StoreError):
                await st.get("x")
        finally:
            await st.close()

    asyncio.run(go())


def test_redis_store_fields_and_conflicts(redis_server: Stores) -> None:
    async def go() -> None:
        host, port = redis_server.addr("redis")
        st = RedisStore.connect(RedisSettings(host=host, port=port))
        try:
            meta = packb({"created": 1.0, "last_accessed": 1.0, "this_accessed": 1.0,
                          "max_inactive": 60, "principal": None})
            await st.save("S1", [(META, b"", meta), (ATTR + "n", b"", packb(1))], ttl=60,
                          creating=True)
            with pytest.raises(SessionConflict):
                await st.save("S1", [(META, b"", meta)], ttl=60, creating=True)
            fields = await st.load("S1")
            assert fields is not None and fields[ATTR + "n"] == packb(1)
            assert 59 <= (await st.ttl_of("S1") or 0) <= 60
            # two writers loaded n=1; the first wins, the second is refused, nothing is lost
            await st.save("S1", [(ATTR + "n", packb(1), packb(2))], ttl=120)
            with pytest.raises(SessionConflict):
                await st.save("S1", [(ATTR + "n", packb(1), packb(2))], ttl=120)
            # a writer of another attribute is not refused (changed fields only)
            await st.save("S1", [(ATTR + "m", b"", packb("x"))], ttl=120)
            assert 119 <= (await st.ttl_of("S1") or 0) <= 120
            record = await st.get("S1")
            assert record is not None
            await st.set("S2", record, ttl=30)
            assert (await st.load("S2") or {})[ATTR + "m"] == packb("x")
            assert sorted(await st.keys()) == ["S1", "S2"]
            tok = await st.lock("S1", 5)
            assert tok and await st.lock("S1", 5) is None
            await st.unlock("S1", tok)
            assert await st.lock("S1", 5)
            await st.delete("S1")
            with pytest.raises(SessionGone):
                await st.save("S1", [(ATTR + "n", packb(2), packb(3))], ttl=60)
            redis_server.sup.kill("redis")
            with pytest.raises(StoreError):
                await st.load("S2")
        finally:
            await st.close()

    asyncio.run(go())


def _roundtrip(st: RedisStore, sid: str) -> None:
    """Create, read, change, conflict through whichever connection mode `st` uses."""
    async def go() -> None:
        meta = packb({"created": 1.0, "last_accessed": 1.0, "this_accessed": 1.0,
                      "max_inactive": 60, "principal": None})
        try:
            await st.save(sid, [(META, b"", meta), (ATTR + "n", b"", packb(1))], ttl=60,
                          creating=True)
            await st.save(sid, [(ATTR + "n", packb(1), packb(2))], ttl=60)
            with pytest.raises(SessionConflict):
                await st.save(sid, [(ATTR + "n", packb(1), packb(2))], ttl=60)
            assert (await st.load(sid) or {})[ATTR + "n"] == packb(2)
            assert 59 <= (await st.ttl_of(sid) or 0) <= 60
            tok = await st.lock(sid, 5)
            assert tok
            await st.unlock(sid, tok)
        finally:
            await st.close()

    asyncio.run(go())


def test_redis_sentinel_mode(start_lab: Any) -> None:
    """A master and one sentinel watching it (quorum 1); the store asks the sentinel."""
    need(REDIS)
    sentinel = ProcessSpec("sentinel", "command", [REDIS, "{file:sentinel.conf}", "--sentinel"],
                           ready="tcp", after=["master"], files={"sentinel.conf": (
                               "port {port}\nbind {host}\n"
                               "sentinel monitor sessions {master.host} {master.port} 1\n")})
    sup = start_lab(make_lab("sentinel", [redis_spec("master"), sentinel]))
    h, p = sup.address("sentinel")
    _roundtrip(RedisStore.connect(RedisSettings(mode="sentinel", sentinels=[f"{h}:{p}"],
                                                sentinel_master="sessions")), "S-SENT")
    kill_stores(sup)


def test_redis_cluster_mode(start_lab: Any) -> None:
    """A one-node cluster owning every slot: the store speaks the cluster protocol."""
    need(REDIS)
    node = redis_spec("cnode")
    # the bus port is explicit: port + 10000 would not fit when the free port is > 55535
    node.args += ["--cluster-enabled", "yes", "--cluster-config-file", "{rundir}/nodes.conf",
                  "--cluster-port", str(free_port())]
    sup = start_lab(make_lab("cluster", [node]))
    h, p = sup.address("cnode")

    async def slots() -> None:
        from redis.asyncio import Redis

        r = Redis(host=h, port=p)
        await r.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while (await r.execute_command("CLUSTER", "INFO")).find(b"cluster_state:ok") < 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await r.aclose()

    asyncio.run(slots())
    _roundtrip(RedisStore.connect(RedisSettings(mode="cluster", cluster_nodes=[f"{h}:{p}"])),
               "S-CLUSTER")
    kill_stores(sup)


def _tls_files(d: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (cryptography)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test ca")).issuer_name(name("test ca"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = d / "ca.pem", d / "server.pem", d / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_redis_tls_and_password(start_lab: Any, tmp_path: Path) -> None:
    """The seed's RedisSessionManager options plus TLS and a password (AUTH)."""
    need(REDIS)
    ca, cert, key = _tls_files(tmp_path)
    spec = ProcessSpec("tls", "command", [
        REDIS, "--port", "0", "--tls-port", "{port}", "--bind", "{host}", "--save", "",
        "--appendonly", "no", "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--requirepass", "s3cret"],
        ready="tcp")
    sup = start_lab(make_lab("tls", [spec]))
    h, p = sup.address("tls")
    _roundtrip(RedisStore.connect(RedisSettings(host=h, port=p, tls=True, tls_ca_file=str(ca),
                                                password="s3cret")), "S-TLS")

    async def refused(settings: RedisSettings) -> None:
        st = RedisStore.connect(settings)
        try:
            with pytest.raises(StoreError):
                await st.load("S-TLS")
        finally:
            await st.close()

    asyncio.run(refused(RedisSettings(host=h, port=p, tls=True, tls_ca_file=str(ca),
                                      password="wrong")))
    asyncio.run(refused(RedisSettings(host=h, port=p, tls=True, password="s3cret")))  # no CA
    kill_stores(sup)


def test_redis_sentinel_failover_keeps_sessions(start_lab: Any) -> None:
    """Master + replica + one sentinel: kill -9 the master, the sentinel promotes the
    replica, the store follows it and the session (replicated before the kill) is there."""
    need(REDIS)
    sentinel_conf = ("port {port}\nbind {host}\n"
                     "sentinel monitor sessions {master.host} {master.port} 1\n"
                     "sentinel down-after-milliseconds sessions 300\n"
                     "sentinel failover-timeout sessions 2000\n")
    replica = redis_spec("replica")
    replica.args += ["--replicaof", "{master.host}", "{master.port}"]
    replica.after = ["master"]
    sentinel = ProcessSpec("sentinel", "command", [REDIS, "{file:sentinel.conf}", "--sentinel"],
                           ready="tcp", after=["replica"],
                           files={"sentinel.conf": sentinel_conf})
    sup = start_lab(make_lab("sentinel-failover", [redis_spec("master"), replica, sentinel]))
    h, p = sup.address("sentinel")

    async def go() -> None:
        st = RedisStore.connect(RedisSettings(mode="sentinel", sentinels=[f"{h}:{p}"],
                                              sentinel_master="sessions", timeout=0.5))
        meta = packb({"created": 1.0, "last_accessed": 1.0, "this_accessed": 1.0,
                      "max_inactive": 60, "principal": None})
        try:
            deadline = time.monotonic() + 10
            while True:  # the sentinel needs a moment to learn about the replica
                info = await st.client.info("replication")
                if info.get("connected_slaves") == 1 and \
                        info.get("slave0", {}).get("state") == "online":
                    break
                assert time.monotonic() < deadline, info
                await asyncio.sleep(0.05)
            await st.save("S-HA", [(META, b"", meta), (ATTR + "n", b"", packb(7))], ttl=60,
                          creating=True)
            assert await st.client.execute_command("WAIT", 1, 2000) == 1
            sup.kill("master")
            deadline = time.monotonic() + 20
            while True:
                try:
                    fields = await st.load("S-HA")
                    await st.save("S-HA", [(ATTR + "n", packb(7), packb(8))], ttl=60)
                    break
                except StoreError:
                    assert time.monotonic() < deadline, "no failover within 20 s"
                    await asyncio.sleep(0.1)
            assert fields is not None and fields[ATTR + "n"] == packb(7)
            assert (await st.load("S-HA") or {})[ATTR + "n"] == packb(8)
        finally:
            await st.close()

    asyncio.run(go())
    kill_stores(sup)
