"""Nonce sources: IVs are 4 bytes and never repeat the previous one; invocation ids are safe."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from c1222.crypto.nonces import (
    FixedNonceSource,
    NonceSource,
    RandomNonceSource,
    SequenceNonceSource,
    TimeIvSource,
    is_recommended_invocation_id,
)
from c1222.errors import LocalProtocolError


def _bytes_from(values: list[bytes]) -> Callable[[int], bytes]:
    it = iter(values)

    def randbytes(n: int) -> bytes:
        value = next(it)
        assert len(value) == n
        return value

    return randbytes


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0, False), (1, True), (0x7F, True), (0x80, False), (0xFF, False), (0x100, True),
     (0x7FFF, True), (0x8000, False), (0x12E814, True), (0x13E81421, True),
     (0x7FFFFFFF, True), (0x80000000, False), (-1, False), (1 << 32, False)],
)
def test_is_recommended_invocation_id(value: int, ok: bool) -> None:
    assert is_recommended_invocation_id(value) is ok


def test_random_source_defaults() -> None:
    source = RandomNonceSource()
    assert isinstance(source, NonceSource)
    ivs = [source.iv() for _ in range(50)]
    assert all(len(iv) == 4 for iv in ivs)
    assert all(a != b for a, b in zip(ivs, ivs[1:]))
    assert all(is_recommended_invocation_id(source.invocation_id()) for _ in range(200))


@given(st.binary(min_size=4, max_size=4))
def test_random_invocation_id_always_recommended(raw: bytes) -> None:
    source = RandomNonceSource(randbytes=_bytes_from([raw]))
    assert is_recommended_invocation_id(source.invocation_id())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("00000000", 1), ("80000000", 1), ("00000080", 0x40), ("000000ff", 0x7F),
     ("00000001", 1), ("12345678", 0x12345678), ("ffffffff", 0x7FFFFFFF),
     ("00008000", 0x4000)],
)
def test_random_invocation_id_mapping(raw: str, expected: int) -> None:
    source = RandomNonceSource(randbytes=_bytes_from([bytes.fromhex(raw)]))
    assert source.invocation_id() == expected


def test_random_iv_never_repeats_previous() -> None:
    same = b"\x01\x02\x03\x04"
    source = RandomNonceSource(randbytes=_bytes_from([same, same, b"\xff\xff\xff\xff"] * 2))
    assert source.iv() == same
    assert source.iv() == b"\x01\x02\x03\x05"
    assert source.iv() == b"\xff\xff\xff\xff"
    assert source.iv() == same


def test_time_iv_is_big_endian_unix_time() -> None:
    source = TimeIvSource(clock=lambda: 1223938145.7)  # 2008-10-13 22:49:05 UTC
    assert source.iv() == bytes.fromhex("48f3d061")  # Example 8's IV (digest 2.4)
    assert isinstance(source, NonceSource)


def test_time_iv_follows_the_clock_and_never_goes_back() -> None:
    times = iter([100.0, 100.2, 100.9, 99.0, 103.0, 103.5])
    source = TimeIvSource(clock=lambda: next(times))
    values = [int.from_bytes(source.iv(), "big") for _ in range(6)]
    # The same second gives the same IV; a clock step back stays at the previous second.
    assert values == [100, 100, 100, 100, 103, 103]


def test_time_iv_does_not_run_ahead_of_the_clock_under_load() -> None:
    """Before: the IV moved on by one per message, so 5000 messages in one second put it
    5000 s ahead, and a meter checking IV freshness (+-900 s) refused them."""
    source = TimeIvSource(clock=lambda: 1_700_000_000.3)
    pairs = set()
    for _ in range(5000):
        a8 = source.invocation_id()
        pairs.add((source.iv(), a8))
    assert {iv for iv, _ in pairs} == {(1_700_000_000).to_bytes(4, "big")}
    assert len(pairs) == 5000  # the invocation id keeps every message unique


def test_time_source_ids_stay_unique_with_a_degenerate_random_source() -> None:
    source = TimeIvSource(clock=lambda: 50.0, randbytes=lambda n: b"\x00\x00\x00\x7f")
    ids = [source.invocation_id() for _ in range(300)]
    assert len(set(ids)) == 300 and all(is_recommended_invocation_id(i) for i in ids)


def test_time_source_moves_on_a_second_when_one_second_is_full(monkeypatch) -> None:
    monkeypatch.setattr(TimeIvSource, "MAX_IDS_PER_SECOND", 3)
    source = TimeIvSource(clock=lambda: 50.0)
    ivs = []
    for _ in range(7):
        source.invocation_id()
        ivs.append(int.from_bytes(source.iv(), "big"))
    assert ivs == [50, 50, 50, 51, 51, 51, 52]


def test_time_iv_wraps_in_2106() -> None:
    times = iter([float(0xFFFFFFFF), float(1 << 32) + 5])
    source = TimeIvSource(clock=lambda: next(times))
    assert [source.iv().hex() for _ in range(2)] == ["ffffffff", "00000005"]


def test_time_source_invocation_ids_are_random_and_recommended() -> None:
    source = TimeIvSource(clock=lambda: 0.0, randbytes=_bytes_from([b"\x80\x00\x00\x81"]))
    assert source.invocation_id() == 0x40  # 0x81 -> leading byte cleared, then shifted
    default = TimeIvSource(clock=lambda: 0.0)
    assert all(is_recommended_invocation_id(default.invocation_id()) for _ in range(100))


def test_fixed_source() -> None:
    source = FixedNonceSource(iv=bytes.fromhex("48f3d061"), invocation_id=3)
    assert isinstance(source, NonceSource)
    assert [source.iv(), source.iv()] == [bytes.fromhex("48f3d061")] * 2
    assert source.invocation_id() == 3
    with pytest.raises(LocalProtocolError):
        FixedNonceSource(iv=b"\x01\x02\x03", invocation_id=3)
    with pytest.raises(LocalProtocolError):
        FixedNonceSource(iv=b"\x01\x02\x03\x04", invocation_id=1 << 32)


def test_sequence_source() -> None:
    source = SequenceNonceSource(ivs=[b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"],
                                 invocation_ids=[0, 1])
    assert isinstance(source, NonceSource)
    assert source.iv() == b"\x00\x00\x00\x01"
    assert source.invocation_id() == 0  # sessions restart A8 at 0 (digest 2.6)
    assert source.iv() == b"\x00\x00\x00\x02"
    assert source.invocation_id() == 1
    with pytest.raises(LocalProtocolError):
        source.iv()
    with pytest.raises(LocalProtocolError):
        source.invocation_id()
    with pytest.raises(LocalProtocolError):
        SequenceNonceSource(ivs=[b"\x01"]).iv()


def test_time_iv_for_a_given_invocation_id_never_repeats_the_pair() -> None:
    """``iv_for``: a message whose A8 is already chosen gets an IV under which that A8 was not
    used, so (IV, A8) — and with them the EAX' nonce — never repeat within a second."""
    from c1222.crypto.nonces import TimeIvSource

    source = TimeIvSource(lambda: 1_000_000.0)
    first, again, other = source.iv_for(7), source.iv_for(7), source.iv_for(8)
    assert first == (1_000_000).to_bytes(4, "big")
    assert again == (1_000_001).to_bytes(4, "big")  # the same A8: the next second
    assert other == again  # a new A8 needs no new second
    drawn = source.invocation_id()
    assert source.iv() == again and drawn not in (7, 8)


def test_time_iv_source_with_sized_invocation_ids() -> None:
    """A draft-era device takes only 1- or 2-byte A8s: the time source gives exactly that size,
    and once a second's 127 one-byte ids are used the IV moves on instead of hanging."""
    from c1222.codec.ber import encode_unsigned
    from c1222.crypto.nonces import TimeIvSource

    source = TimeIvSource(lambda: 5000.0, invocation_id_size=1)
    pairs = set()
    for _ in range(300):
        value = source.invocation_id()
        pairs.add((source.iv(), value))
        assert 1 <= value <= 0x7F
    assert len(pairs) == 300
    two = TimeIvSource(lambda: 5000.0, invocation_id_size=2)
    assert all(len(encode_unsigned(two.invocation_id())) == 2 for _ in range(200))
    with pytest.raises(LocalProtocolError):
        TimeIvSource(lambda: 0.0, invocation_id_size=5)


# --------------------------------------------------------------------- the default randomness


def test_default_randomness_is_drawn_in_blocks_and_never_repeats_a_block():
    from c1222.crypto.nonces import _Urandom

    source = _Urandom()
    drawn = [source(4) for _ in range(3 * _Urandom.BLOCK // 4 + 7)]  # crosses two refills
    assert all(len(d) == 4 for d in drawn)
    assert len(set(drawn)) > len(drawn) - 3  # 4-byte values: a collision or two at most
    assert len(source(_Urandom.BLOCK + 1)) == _Urandom.BLOCK + 1  # larger than a block


def test_a_forked_child_does_not_reuse_the_parents_random_block():
    import os

    from c1222.crypto.nonces import _Urandom

    source = _Urandom()
    source(4)  # the parent's block is drawn
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next bytes, then exit at once
        os.write(write, source(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.waitpid(pid, 0)
    assert child != source(16)  # the parent's next 16 bytes


def test_the_sources_use_the_blocked_randomness_by_default():
    ids = {RandomNonceSource().invocation_id() for _ in range(2000)}
    assert len(ids) > 1990 and all(is_recommended_invocation_id(i) for i in ids)
