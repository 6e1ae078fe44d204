"""pylb against real nginx with the same upstream lists: identical choices.

One nginx process hosts the members (tiny `return 200 NAME` servers) and the reference
upstreams; one pylb per method proxies to the same members. A client binding its source
address to hundreds of 127.a.b.c addresses must land on the same member through both
(ip_hash, with weights and a `down` member); weighted round robin must produce the same
sequence; `hash $request_uri` and `hash ... consistent` the same key → member map.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.integration.test_lb_support import (
    NGINX,
    free_ports,
    get,
    make_lab,
    nginx_spec,
    pylb_spec,
)

pytestmark = [pytest.mark.integration, pytest.mark.interop,
              pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed")]

# (name, weight, down) — the same list in both balancers
MEMBERS = [("m1", 1, False), ("m2", 2, False), ("m3", 1, True), ("m4", 3, False),
           ("m5", 1, False)]
WRR = [("m1", 5), ("m2", 1), ("m3", 1)]


def _configs(ports: list[int]) -> tuple[str, dict[str, str]]:
    member_port = {name: ports[i] for i, (name, _, _) in enumerate(MEMBERS)}
    servers = "".join(
        f"  server {{ listen 127.0.0.1:{member_port[n]}; keepalive_requests 100000; "
        f"location / {{ return 200 \"{n}\"; }} }}\n" for n, _, _ in MEMBERS)

    def nginx_up(name: str, directive: str, members: list[tuple[str, int, bool]]) -> str:
        lines = "".join(f"    server 127.0.0.1:{member_port[n]} weight={w}{' down' if d else ''};\n"
                        for n, w, d in members)
        return f"  upstream {name} {{\n    {directive}\n{lines}  }}\n"

    live = [(n, w, False) for n, w, _ in MEMBERS if n != "m3"]
    ups = (nginx_up("iph", "ip_hash;", MEMBERS)
           + nginx_up("wrr", "", [(n, w, False) for n, w in WRR])
           + nginx_up("hsh", "hash $request_uri;", live)
           + nginx_up("chs", "hash $request_uri consistent;", live))
    fronts = "".join(
        f"  server {{ listen 127.0.0.1:{ports[len(MEMBERS) + i]}; location / {{ "
        f"proxy_pass http://{u}; }} }}\n" for i, u in enumerate(("iph", "wrr", "hsh", "chs")))
    ready = "  server { listen 127.0.0.1:{port}; return 200; }\n"

    def lb(balance: str, members: list[tuple[str, int, bool]], extra: str = "") -> str:
        ms = ",\n".join(f'  {{ name = "{n}", address = "127.0.0.1:{member_port[n]}", '
                        f'weight = {w}, down = {str(d).lower()} }}' for n, w, d in members)
        return (f'[server]\nlisten = ["127.0.0.1:{{port}}"]\nupstream = "u"\n'
                f'[upstream.u]\nbalance = "{balance}"\n{extra}members = [\n{ms}\n]\n')

    pylbs = {
        "iph": lb("ip_hash", MEMBERS),
        "wrr": lb("round_robin", [(n, w, False) for n, w in WRR]),
        "hsh": lb("hash", live, 'hash_key = "$request_uri"\n'),
        "chs": lb("hash", live, 'hash_key = "$request_uri"\nconsistent = true\n'),
    }
    return servers + ups + fronts + ready, pylbs


@pytest.fixture
def both(start_lab, tmp_path):
    ports = free_ports(len(MEMBERS) + 4)
    nginx_conf, pylbs = _configs(ports)
    specs = [nginx_spec("nginx", nginx_conf, tmp_path)]
    specs += [pylb_spec(f"lb_{k}", v, after=["nginx"]) for k, v in pylbs.items()]
    sup = start_lab(make_lab("lb-interop", specs))
    nginx_front = {u: ("127.0.0.1", ports[len(MEMBERS) + i])
                   for i, u in enumerate(("iph", "wrr", "hsh", "chs"))}
    pylb_front = {u: sup.address(f"lb_{u}") for u in pylbs}
    return nginx_front, pylb_front


def test_ip_hash_same_member_map_as_nginx(both) -> None:
    nginx, pylb = both
    rng = random.Random(2024)
    sources = {f"127.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
               for _ in range(300)}
    mismatches = []
    seen = set()
    for src in sorted(sources):
        want = get(nginx["iph"], "/", src=src)[2]
        got = get(pylb["iph"], "/", src=src)[2]
        seen.add(want)
        if want != got:
            mismatches.append((src, want, got))
    assert len(sources) >= 290
    assert not mismatches, mismatches[:10]
    assert seen == {b"m1", b"m2", b"m4", b"m5"}  # weights spread it; the down m3 never


def test_weighted_round_robin_same_sequence_as_nginx(both) -> None:
    nginx, pylb = both
    want = [get(nginx["wrr"], "/")[2].decode() for _ in range(21)]
    got = [get(pylb["wrr"], "/")[2].decode() for _ in range(21)]
    assert want[:7] == ["m1", "m1", "m2", "m1", "m3", "m1", "m1"]
    assert got == want


@pytest.mark.parametrize("upstream", ["hsh", "chs"])
def test_hash_key_same_map_as_nginx(both, upstream: str) -> None:
    nginx, pylb = both
    diffs = []
    for i in range(150):
        path = f"/item/{i}?u={i * 7}"
        want, got = get(nginx[upstream], path)[2], get(pylb[upstream], path)[2]
        if want != got:
            diffs.append((path, want, got))
    assert not diffs, diffs[:10]
