"""The VRRP codec against real keepalived 2.2.7 captures (../shared/fixtures/vrrp)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyvrrp.auth import Authenticator
from pyvrrp.packet import (
    AUTH_PASS,
    Advert,
    EthernetFrame,
    Ipv4Header,
    PacketError,
    garp_frame,
    multicast_mac,
    pass_auth_data,
)
from pyvrrp.pcap import read_pcap

FIX = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "vrrp"
if not FIX.exists():
    FIX = Path("/work/shared/fixtures/vrrp")
pytestmark = pytest.mark.skipif(not FIX.exists(), reason="fixtures/vrrp not present")

PCAPS = ["vrrp-v2-adverts.pcap", "vrrp-v2-failover.pcap", "vrrp-v3-adverts.pcap",
         "vrrp-v3-failover.pcap"]


def vrrp_frames(name: str) -> list[tuple[float, bytes]]:
    return [(t, f) for t, f in read_pcap(FIX / name) if f[12:14] == b"\x08\x00"]


@pytest.mark.parametrize("name", PCAPS)
def test_every_captured_frame_round_trips_byte_for_byte(name: str) -> None:
    frames = vrrp_frames(name)
    assert frames
    for _, raw in frames:
        eth = EthernetFrame.decode(raw)
        ip, payload = Ipv4Header.decode(eth.payload)
        assert ip.ttl == 255 and ip.proto == 112 and ip.tos == 0xC0
        assert ip.dst == "224.0.0.18" and eth.dst == multicast_mac()
        adv = Advert.decode(payload, ip.src, ip.dst)  # verifies the checksum
        # re-encoded from the decoded fields, checksums recomputed (not copied)
        again = EthernetFrame(eth.dst, eth.src, eth.ethertype,
                              ip.encode() + adv.encode(ip.src, ip.dst)).encode()
        assert again == raw
        assert adv.encode(ip.src, ip.dst) == adv.encode(ip.src, ip.dst, keep_checksum=True)


def test_known_v2_bytes_from_the_fixture_readme() -> None:
    want = bytes.fromhex("2133640101010cad0a6300583131313100000000")
    adv = Advert(2, 51, 100, ("10.99.0.88",), 1.0, AUTH_PASS, pass_auth_data("1111"))
    assert adv.encode() == want
    back = Advert.decode(want)
    assert (back.version, back.vrid, back.priority, back.addresses, back.advert_int) == \
        (2, 51, 100, ("10.99.0.88",), 1.0)
    assert back.raw_checksum == 0x0CAD


def test_known_v3_bytes_need_the_pseudo_header() -> None:
    want = bytes.fromhex("3133640100 0a75090a630058".replace(" ", ""))
    adv = Advert(3, 51, 100, ("10.99.0.88",), 0.1)
    assert adv.encode("10.99.0.11", "224.0.0.18") == want
    assert Advert.decode(want, "10.99.0.11", "224.0.0.18").advert_int == pytest.approx(0.1)
    with pytest.raises(PacketError, match="checksum"):
        Advert.decode(want, "10.99.0.12", "224.0.0.18")


def test_priority_zero_resign_packets_in_the_captures() -> None:
    prios = [Advert.decode(Ipv4Header.decode(EthernetFrame.decode(f).payload)[1],
                           *_addrs(f)).priority for _, f in vrrp_frames("vrrp-v2-failover.pcap")]
    assert 0 in prios and prios[prios.index(0) + 1] == 90
    v3 = [Advert.decode(Ipv4Header.decode(EthernetFrame.decode(f).payload)[1], *_addrs(f))
          for _, f in vrrp_frames("vrrp-v3-failover.pcap")]
    assert [a.priority for a in v3].count(0) == 1


def test_capture_timing_matches_skew() -> None:
    """The backup (prio 90) took over one Skew after the priority-0 advert, in both captures."""
    for name, skew in (("vrrp-v2-failover.pcap", 166 / 256),
                       ("vrrp-v3-failover.pcap", 166 * 0.1 / 256)):
        frames = vrrp_frames(name)
        prio = [(t, Advert.decode(Ipv4Header.decode(EthernetFrame.decode(f).payload)[1],
                                  *_addrs(f)).priority) for t, f in frames]
        t0 = next(t for t, p in prio if p == 0)
        t1 = next(t for t, p in prio if p == 90 and t > t0)
        assert t1 - t0 == pytest.approx(skew, abs=0.006)


def _addrs(frame: bytes) -> tuple[str, str]:
    ip, _ = Ipv4Header.decode(EthernetFrame.decode(frame).payload)
    return ip.src, ip.dst


def test_garp_is_byte_exact() -> None:
    arps = [f for _, f in read_pcap(FIX / "vrrp-v2-failover.pcap") if f[12:14] == b"\x08\x06"]
    assert arps
    for f in arps:
        assert garp_frame(f[6:12], "10.99.0.88") == f
    hexdump = (FIX / "vrrp-v2-garp-hex.txt").read_text()
    words = "".join(ln.split(":", 1)[1].split("  ")[1].replace(" ", "")
                    for ln in hexdump.splitlines() if ln.strip().startswith("0x"))
    assert garp_frame(bytes.fromhex("029900000012"), "10.99.0.88") == bytes.fromhex(words)


def test_bad_packets_are_refused_with_a_reason() -> None:
    good = Advert(2, 51, 100, ("10.99.0.88",), 1.0, AUTH_PASS, pass_auth_data("1111")).encode()
    with pytest.raises(PacketError, match="short"):
        Advert.decode(good[:5])
    with pytest.raises(PacketError, match="truncated"):
        Advert.decode(good[:12])
    with pytest.raises(PacketError, match="checksum"):
        Advert.decode(good[:-1] + b"\x01")
    with pytest.raises(PacketError, match="version"):
        Advert.decode(bytes([0x41]) + good[1:])


def test_pass_auth_and_hmac() -> None:
    adv = Advert(2, 51, 100, ("10.99.0.88",), 1.0, AUTH_PASS, pass_auth_data("1111"))
    assert Authenticator("PASS", "1111").open(adv.encode(), "10.0.0.1", "224.0.0.18")
    with pytest.raises(PacketError, match="PASS"):
        Authenticator("PASS", "2222").open(adv.encode(), "10.0.0.1", "224.0.0.18")
    with pytest.raises(PacketError, match="auth type"):
        Authenticator("NONE").open(adv.encode(), "10.0.0.1", "224.0.0.18")

    tx, rx = Authenticator("HMAC", "s3cret"), Authenticator("HMAC", "s3cret")
    t, d = tx.stamp_fields(3)
    msg = Advert(3, 7, 100, ("127.0.0.88",), 0.1, t, d).encode("127.0.0.11", "224.0.0.18")
    sealed = tx.seal(msg, "127.0.0.11", 1000)
    assert rx.open(sealed, "127.0.0.11", "224.0.0.18").priority == 100
    with pytest.raises(PacketError, match="replayed"):
        rx.open(sealed, "127.0.0.11", "224.0.0.18")
    with pytest.raises(PacketError, match="HMAC"):
        rx.open(sealed, "127.0.0.12", "224.0.0.18")  # another sender cannot reuse it
    with pytest.raises(PacketError, match="HMAC"):
        Authenticator("HMAC", "other").open(tx.seal(msg, "127.0.0.11", 2000), "127.0.0.11",
                                           "224.0.0.18")

_addr = st.integers(0, 2**32 - 1).map(lambda n: ".".join(str((n >> s) & 255)
                                                         for s in (24, 16, 8, 0)))


@given(version=st.sampled_from([2, 3]), vrid=st.integers(1, 255), prio=st.integers(0, 255),
       addrs=st.lists(_addr, max_size=8), secs=st.integers(1, 255), cs=st.integers(1, 4095),
       src=_addr, dst=_addr, password=st.text(max_size=12))
def test_any_advert_round_trips(version: int, vrid: int, prio: int, addrs: list[str],
                                secs: int, cs: int, src: str, dst: str, password: str) -> None:
    if version == 2:
        adv = Advert(2, vrid, prio, tuple(addrs), float(secs), AUTH_PASS,
                     pass_auth_data(password))
    else:
        adv = Advert(3, vrid, prio, tuple(addrs), cs / 100)
    wire = adv.encode(src, dst)
    back = Advert.decode(wire, src, dst)
    assert back == adv and back.encode(src, dst) == wire
