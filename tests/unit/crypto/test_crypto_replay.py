"""Replay window: duplicates refused within the window, bounded by age and count."""

from __future__ import annotations

import pytest

from c1222.crypto.replay import MessageId, ReplayWindow, check_iv_freshness, iv_skew
from c1222.errors import LocalProtocolError, SecurityError

TITLE = "2.16.124.113620.1.22.0.123.4"


def msg(iv: bytes = b"\x48\xf3\xd0\x61", invocation_id: int = 3, key_id: int = 2,
        title: str = TITLE) -> MessageId:
    return MessageId(calling_ap_title=title, key_id=key_id, iv=iv, invocation_id=invocation_id)


def test_duplicate_is_refused() -> None:
    window = ReplayWindow()
    window.accept(msg(), now=100.0)
    with pytest.raises(SecurityError) as info:
        window.accept(msg(), now=101.0)
    assert str(info.value) == "security check failed"
    assert window.seen(msg(), now=102.0)


@pytest.mark.parametrize(
    "other",
    [
        msg(iv=b"\x48\xf3\xd0\x62"),
        msg(invocation_id=4),
        msg(key_id=1),
        msg(title="2.16.124.113620.1.22.0.123.5"),
    ],
)
def test_any_differing_field_is_accepted(other: MessageId) -> None:
    window = ReplayWindow()
    window.accept(msg(), now=0.0)
    window.accept(other, now=0.0)
    assert len(window) == 2


def test_bytearray_iv_equals_bytes_iv() -> None:
    window = ReplayWindow()
    window.accept(msg(iv=b"\x01\x02\x03\x04"), now=0.0)
    with pytest.raises(SecurityError):
        window.accept(msg(iv=bytearray(b"\x01\x02\x03\x04")), now=0.0)  # type: ignore[arg-type]


def test_eviction_by_age() -> None:
    window = ReplayWindow(max_age=60.0)
    window.accept(msg(), now=1000.0)
    window.accept(msg(invocation_id=9), now=1030.0)
    # Exactly at the edge the entry is still remembered.
    assert window.seen(msg(), now=1060.0)
    assert not window.seen(msg(), now=1060.5)
    assert len(window) == 1
    window.accept(msg(), now=1061.0)  # forgotten, so accepted again
    with pytest.raises(SecurityError):
        window.accept(msg(invocation_id=9), now=1061.0)


def test_eviction_by_count_drops_the_oldest() -> None:
    window = ReplayWindow(max_entries=3, max_age=1e9)
    for i in range(1, 5):
        window.accept(msg(invocation_id=i), now=float(i))
    assert len(window) == 3
    assert not window.seen(msg(invocation_id=1), now=5.0)
    for i in (2, 3, 4):
        with pytest.raises(SecurityError):
            window.accept(msg(invocation_id=i), now=5.0)


def test_memory_stays_bounded() -> None:
    window = ReplayWindow(max_entries=100, max_age=1e9)
    for i in range(1, 10_001):
        window.accept(msg(invocation_id=i), now=float(i))
    assert len(window) == 100


def test_refused_duplicate_does_not_extend_its_life() -> None:
    window = ReplayWindow(max_age=10.0)
    window.accept(msg(), now=0.0)
    with pytest.raises(SecurityError):
        window.accept(msg(), now=9.0)
    assert not window.seen(msg(), now=10.5)


@pytest.mark.parametrize(("entries", "age"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_window_parameters_are_checked(entries: int, age: float) -> None:
    with pytest.raises(LocalProtocolError):
        ReplayWindow(max_entries=entries, max_age=age)


@pytest.mark.parametrize(
    "kwargs", [{"key_id": 256}, {"key_id": -1}, {"iv": b"12345"}, {"invocation_id": -1},
               {"invocation_id": 1 << 32}]
)
def test_message_id_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        msg(**kwargs)  # type: ignore[arg-type]


def test_iv_skew_and_optional_freshness_check() -> None:
    now = 0x48F3D061 + 0.25  # Example 8's IV, 2008-10-13 22:49:05 UTC
    assert iv_skew(b"\x48\xf3\xd0\x61", now) == pytest.approx(-0.25)
    assert iv_skew(b"\x48\xf3\xd0\x71", now) == pytest.approx(15.75)
    assert iv_skew(b"\x48\xf3\xd0\x51", now) == pytest.approx(-16.25)
    check_iv_freshness(b"\x48\xf3\xd0\x61", now)
    check_iv_freshness((0x48F3D061 + 899).to_bytes(4, "big"), now)
    with pytest.raises(SecurityError):
        check_iv_freshness((0x48F3D061 + 901).to_bytes(4, "big"), now)
    with pytest.raises(SecurityError):
        check_iv_freshness((0x48F3D061 - 901).to_bytes(4, "big"), now)
    with pytest.raises(SecurityError):
        check_iv_freshness(b"\x00\x00\x00\x01", now)
    with pytest.raises(LocalProtocolError):
        iv_skew(b"\x00\x01", now)


def test_iv_skew_across_the_2106_wrap() -> None:
    assert iv_skew(b"\x00\x00\x00\x05", float(0xFFFFFFFF)) == 6.0
    assert iv_skew(b"\xff\xff\xff\xff", float(1 << 32) + 2) == -3.0
