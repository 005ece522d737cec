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


def test_message_ids_compare_and_hash_by_value() -> None:
    a, b = msg(), msg(iv=bytearray(b"\x48\xf3\xd0\x61"))  # type: ignore[arg-type]
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != msg(invocation_id=4) and a != msg(key_id=1) and a != msg(title="")
    assert a != (TITLE, 2, b"\x48\xf3\xd0\x61", 3)  # only another MessageId is equal
    assert repr(a).startswith("MessageId(calling_ap_title=")
    with pytest.raises(AttributeError):
        a.key_id = 1  # type: ignore[misc]


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


# ---------------------------------------------------------------- time mode (issue 15 finding 2)

T0 = 1_700_000_000


def tiv(t: int) -> bytes:
    return (t & 0xFFFFFFFF).to_bytes(4, "big")


def test_time_mode_refuses_a_stale_or_future_iv() -> None:
    window = ReplayWindow(iv_tolerance=900.0)
    window.accept(msg(iv=tiv(T0 - 900)), now=T0)
    window.accept(msg(iv=tiv(T0 + 900)), now=T0)
    for t in (T0 - 901, T0 + 901, 0):
        with pytest.raises(SecurityError):
            window.accept(msg(iv=tiv(t)), now=T0)


def test_time_mode_never_accepts_a_message_twice_however_late_the_replay() -> None:
    """Window mode forgets after max_age and takes the replay; time mode refuses it forever."""
    forgetful = ReplayWindow(max_age=900.0)
    forgetful.accept(msg(iv=tiv(T0)), now=T0)
    forgetful.accept(msg(iv=tiv(T0)), now=T0 + 901)  # the weakness of window mode
    window = ReplayWindow(iv_tolerance=900.0)
    window.accept(msg(iv=tiv(T0)), now=T0)
    for later in (T0 + 1, T0 + 900, T0 + 901, T0 + 86_400):
        with pytest.raises(SecurityError):
            window.accept(msg(iv=tiv(T0)), now=later)
    # ... even when the clock is then set back to when it was accepted.
    with pytest.raises(SecurityError):
        window.accept(msg(iv=tiv(T0)), now=T0)
    assert len(window) == 0  # remembered only while the IV was above the floor


def test_time_mode_pushed_out_entries_raise_the_floor() -> None:
    window = ReplayWindow(max_entries=3, iv_tolerance=900.0)
    for i in range(4):
        window.accept(msg(iv=tiv(T0 + i), invocation_id=i + 1), now=T0 + 3)
    assert len(window) == 3 and window.floor == T0 + 1
    with pytest.raises(SecurityError):  # pushed out of memory, still refused
        window.accept(msg(iv=tiv(T0), invocation_id=1), now=T0 + 3)
    with pytest.raises(SecurityError):  # the price: a new message at or below the floor
        window.accept(msg(iv=tiv(T0), invocation_id=99), now=T0 + 3)
    window.accept(msg(iv=tiv(T0 + 5), invocation_id=99), now=T0 + 3)


def test_time_mode_memory_stays_bounded_under_a_flood() -> None:
    window = ReplayWindow(max_entries=100, iv_tolerance=900.0)
    for i in range(5000):
        window.accept(msg(iv=tiv(T0 + i // 10), invocation_id=i + 1), now=T0 + i // 10)
    assert len(window) <= 100


def test_record_is_called_before_acceptance_and_its_failure_refuses() -> None:
    recorded: list[tuple[MessageId, float]] = []
    window = ReplayWindow(iv_tolerance=900.0, record=lambda m, now: recorded.append((m, now)))
    window.accept(msg(iv=tiv(T0)), now=T0)
    assert recorded == [(msg(iv=tiv(T0)), T0)]
    with pytest.raises(SecurityError):
        window.accept(msg(iv=tiv(T0)), now=T0 + 1)
    assert len(recorded) == 1  # a refused message is not recorded

    def broken(m: MessageId, now: float) -> None:
        raise SecurityError()

    failing = ReplayWindow(iv_tolerance=900.0, record=broken)
    with pytest.raises(SecurityError):
        failing.accept(msg(iv=tiv(T0)), now=T0)
    assert len(failing) == 0


@pytest.mark.parametrize("timed", [False, True])
def test_restore_takes_back_a_previous_run(timed: bool) -> None:
    tolerance = 900.0 if timed else None
    first = ReplayWindow(iv_tolerance=tolerance)
    first.accept(msg(iv=tiv(T0), invocation_id=1), now=T0)
    first.accept(msg(iv=tiv(T0 + 10), invocation_id=2), now=T0 + 10)
    floor, now_high, entries = first.snapshot()
    second = ReplayWindow(iv_tolerance=tolerance)
    second.restore(floor, now_high, entries)
    with pytest.raises(SecurityError):
        second.accept(msg(iv=tiv(T0), invocation_id=1), now=T0 + 20)
    second.accept(msg(iv=tiv(T0 + 20), invocation_id=3), now=T0 + 20)
    if timed:  # the restored latest `now` keeps the floor even with the clock set back
        third = ReplayWindow(iv_tolerance=tolerance)
        third.restore(None, T0 + 5000, [])
        with pytest.raises(SecurityError):
            third.accept(msg(iv=tiv(T0 + 20), invocation_id=4), now=T0 + 20)


def test_time_mode_iv_wraps_in_2106() -> None:
    window = ReplayWindow(iv_tolerance=900.0)
    wrap = 1 << 32
    window.accept(msg(iv=tiv(wrap - 5)), now=wrap + 5)  # IV ffff fffb, clock past the wrap
    window.accept(msg(iv=tiv(wrap + 3)), now=wrap + 5)
    with pytest.raises(SecurityError):
        window.accept(msg(iv=tiv(wrap - 5)), now=wrap + 6)


def test_time_mode_serves_a_burst_beyond_its_size_within_the_current_seconds() -> None:
    """More messages within one IV second than ``max_entries``: all are served (the window
    keeps the latest two seconds up to BURST times its size) and each is still refused when
    replayed; once the clock moves on the window shrinks back and the floor passes the burst."""
    from c1222.crypto.replay import BURST

    window = ReplayWindow(max_entries=100, iv_tolerance=900.0)
    for i in range(300):  # three times the window, one IV second
        window.accept(msg(iv=tiv(T0), invocation_id=i + 1), now=T0 + 0.5)
    assert len(window) == 300 and window.floor == T0 - 899  # the tolerance, nothing more
    for i in (0, 150, 299):
        with pytest.raises(SecurityError):
            window.accept(msg(iv=tiv(T0), invocation_id=i + 1), now=T0 + 0.9)
    window.accept(msg(iv=tiv(T0 + 3), invocation_id=1), now=T0 + 3)  # the clock moved on
    assert len(window) == 100 and window.floor == T0 + 1
    with pytest.raises(SecurityError):  # forgotten, and below the floor
        window.accept(msg(iv=tiv(T0), invocation_id=1), now=T0 + 3)
    # Past BURST times the size within one second, the floor passes it after all (bounded).
    flood = ReplayWindow(max_entries=10, iv_tolerance=900.0)
    for i in range(BURST * 10):
        flood.accept(msg(iv=tiv(T0), invocation_id=i + 1), now=T0)
    flood.accept(msg(iv=tiv(T0), invocation_id=10_000), now=T0)
    assert len(flood) <= BURST * 10 and flood.floor == T0 + 1
    with pytest.raises(SecurityError):
        flood.accept(msg(iv=tiv(T0), invocation_id=10_001), now=T0)
