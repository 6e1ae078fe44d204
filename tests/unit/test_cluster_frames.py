"""Cluster frames: authenticated, optionally encrypted, replay-protected (injected time)."""

from __future__ import annotations

import pytest

from pysession.cluster.frames import FrameCodec, FrameReader, FrameRejected


def pair(encrypt: bool = False) -> tuple[FrameCodec, FrameCodec]:
    return (FrameCodec("a", 100, "k", encrypt), FrameCodec("b", 200, "k", encrypt))


@pytest.mark.parametrize("encrypt", [False, True])
def test_round_trip(encrypt: bool) -> None:
    a, b = pair(encrypt)
    rec = b.open(a.seal({"t": "delta", "v": [1, b"x"]}, 10.0), 10.5)
    assert (rec.sender, rec.epoch, rec.seq, rec.message) == ("a", 100, 1, {"t": "delta",
                                                                            "v": [1, b"x"]})


def test_encrypted_body_is_not_plaintext() -> None:
    a, _ = pair(True)
    assert b"secret-value" not in a.seal({"x": "secret-value"}, 0.0)


def test_frame_without_the_key_is_rejected() -> None:
    intruder = FrameCodec("a", 100, "wrong key")
    _, b = pair()
    with pytest.raises(FrameRejected, match="MAC"):
        b.open(intruder.seal({"t": "expired", "id": "X"}, 1.0), 1.0)
    assert b.rejected == 1


def test_tampered_frame_is_rejected() -> None:
    a, b = pair()
    data = bytearray(a.seal({"t": "delta"}, 1.0))
    data[5] ^= 1
    with pytest.raises(FrameRejected):
        b.open(bytes(data), 1.0)


def test_replayed_frame_is_rejected() -> None:
    a, b = pair()
    f1 = a.seal({"n": 1}, 1.0)
    f2 = a.seal({"n": 2}, 1.0)
    b.open(f2, 1.0)
    b.open(f1, 1.0)           # reordering inside the window is fine
    with pytest.raises(FrameRejected, match="replay"):
        b.open(f1, 1.1)
    with pytest.raises(FrameRejected, match="replay"):
        b.open(f2, 1.1)


def test_frame_older_than_window_or_epoch_is_rejected() -> None:
    a = FrameCodec("a", 100, "k", window=4)
    b = FrameCodec("b", 200, "k", window=4)
    old = a.seal({"n": 0}, 1.0)
    for _ in range(6):
        b.open(a.seal({}, 1.0), 1.0)
    with pytest.raises(FrameRejected, match="window"):
        b.open(old, 1.0)
    restarted = FrameCodec("a", 101, "k")   # the same member, started again
    b.open(restarted.seal({"n": 1}, 2.0), 2.0)
    with pytest.raises(FrameRejected, match="epoch"):
        b.open(a.seal({"n": 9}, 2.0), 2.0)


def test_stale_frame_is_rejected() -> None:
    a, b = pair()
    with pytest.raises(FrameRejected, match="stale"):
        b.open(a.seal({}, 0.0), 1000.0)


def test_plaintext_refused_when_encryption_required() -> None:
    plain = FrameCodec("a", 1, "k")
    enc = FrameCodec("b", 2, "k", encrypt=True)
    with pytest.raises(FrameRejected, match="plaintext"):
        enc.open(plain.seal({}, 0.0), 0.0)


def test_reader_splits_a_stream() -> None:
    a, b = pair()
    stream = a.frame({"n": 1}, 0.0) + a.frame({"n": 2}, 0.0)
    r = FrameReader()
    got = r.feed(stream[:7]) + r.feed(stream[7:])
    assert [b.open(x, 0.0).message for x in got] == [{"n": 1}, {"n": 2}]


def test_reader_refuses_oversized_frames() -> None:
    with pytest.raises(FrameRejected):
        FrameReader(max_frame=10).feed(b"\x00\x00\x01\x00" + b"x" * 20)
