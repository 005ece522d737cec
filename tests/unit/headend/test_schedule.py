"""The collector's schedule: the pure plan (time as an input) and the scheduler that runs it
on the event loop with fake reads (no I/O)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from c1222.errors import ISC, NETR, DecodeError, ResponseTimeout, TransportError
from c1222.headend.schedule import (
    COUNTS, Plan, Scheduler, backoff, failure_reason, phase, retryable,
)

TITLES = [f"2.16.124.113620.1.22.0.123.{100000 + i}" for i in range(2000)]
ALL = lambda _title: True  # noqa: E731


def drain(plan: Plan, now: float) -> list[str]:
    return [e.ap_title for e in plan.take(now, 10 ** 9, ALL)]


# ------------------------------------------------------------------ the slots


def test_slots_spread_evenly_over_the_window_and_are_stable() -> None:
    offsets = [phase(t, 60.0) for t in TITLES]
    assert all(0 <= o < 54.0 for o in offsets)  # the first 90 % of the interval
    buckets = [0] * 10
    for o in offsets:
        buckets[int(o / 5.4)] += 1
    assert min(buckets) > 150 and max(buckets) < 250, buckets  # 200 each, give or take
    assert offsets == [phase(t, 60.0) for t in TITLES]  # the same every time
    assert phase(TITLES[0], 120.0) == pytest.approx(2 * phase(TITLES[0], 60.0))


def test_each_meter_is_read_at_its_slot_in_every_interval() -> None:
    plan = Plan(60.0)
    meters = TITLES[:300]
    seen: dict[str, list[float]] = {t: [] for t in meters}
    for k in range(3):
        start = 1000.0 + 60 * k
        stats = plan.begin(start, 1e9 + 60 * k, meters)
        assert stats.due == 300 and stats.number == k + 1
        now = start
        while plan.next_due() is not None:
            now = plan.next_due()  # type: ignore[assignment]
            for entry in plan.take(now, 1000, ALL):
                seen[entry.ap_title].append(now - start)
                plan.finished(entry, now + 0.1, None)
        assert stats.read == 300 and stats.pending == 0 and stats.late == 0
    for title, offsets in seen.items():
        assert offsets == [pytest.approx(phase(title, 60.0))] * 3
    # not bunched: at most a few reads start in any one second of the interval
    per_second = [0] * 60
    for offsets in seen.values():
        per_second[int(offsets[0])] += 1
    assert max(per_second) <= 20 and per_second[-6:] == [0] * 6


def test_nothing_is_due_before_its_slot_and_take_honours_the_limit() -> None:
    plan = Plan(10.0)
    plan.begin(0.0, 0.0, TITLES[:100])
    assert drain(plan, -1.0) == []
    first = plan.take(4.5, 5, ALL)
    assert len(first) == 5 and all(phase(e.ap_title, 10.0) <= 4.5 for e in first)
    rest = drain(plan, 4.5)
    assert len(first) + len(rest) == sum(phase(t, 10.0) <= 4.5 for t in TITLES[:100])
    assert len(drain(plan, 9.0)) == 100 - len(first) - len(rest)


def test_a_meter_registered_mid_interval_takes_its_slot_if_still_ahead() -> None:
    plan = Plan(10.0)
    plan.begin(0.0, 0.0, [])
    early = next(t for t in TITLES if phase(t, 10.0) < 3)
    late = next(t for t in TITLES if phase(t, 10.0) > 6)
    assert plan.scan(5.0, [early, late]) == 1
    assert plan.current is not None and plan.current.due == 1
    (entry,) = plan.take(10.0, 10, ALL)
    assert entry.ap_title == late
    plan.finished(entry, 9.0, None)
    assert plan.scan(5.5, [early, late]) == 0  # planned once an interval
    plan.begin(10.0, 10.0, [early, late])
    assert sorted(drain(plan, 20.0)) == sorted([early, late])


# ------------------------------------------------------------------ one read per meter


def test_a_meter_still_owing_a_read_is_skipped_not_read_twice() -> None:
    plan = Plan(10.0)
    slow, other = TITLES[:2]
    one = plan.begin(0.0, 0.0, [slow, other])
    running = {e.ap_title: e for e in plan.take(10.0, 10, ALL)}
    plan.finished(running[other], 5.0, None)
    two = plan.begin(10.0, 10.0, [slow, other])
    assert two.due == 2 and two.skipped == 1
    assert drain(plan, 20.0) == [other]  # the slow one's read is still running
    plan.finished(running[slow], 15.0, None)  # done after its interval: late, in interval 1
    assert (one.read, one.late, one.pending) == (2, 1, 0)
    assert (two.read, two.pending) == (0, 1) and plan.entries.keys() == {other}


def test_late_and_gone_are_counted_in_the_interval_the_read_was_due_in() -> None:
    plan = Plan(10.0)
    a, b, c = TITLES[:3]
    stats = plan.begin(0.0, 0.0, [a, b, c])
    taken = {e.ap_title: e for e in plan.take(10.0, 10, lambda t: t != c)}
    assert taken.keys() == {a, b} and stats.gone == 1  # c left before its read
    plan.finished(taken[a], 12.0, None)
    plan.finished(taken[b], 12.0, TransportError("link closed"), still_wanted=False)
    assert (stats.read, stats.late, stats.failed, stats.gone, stats.pending) == (1, 1, 0, 2, 0)
    assert plan.entries == {}


# ------------------------------------------------------------------ retries


def test_backoff_doubles_with_jitter() -> None:
    assert backoff(1, 2.0, 0.5) == 2.0
    assert backoff(2, 2.0, 0.5) == 4.0
    assert backoff(3, 2.0, 0.0) == 4.0 and backoff(3, 2.0, 0.999) == pytest.approx(11.992)


def test_reasons_and_which_are_retried() -> None:
    assert failure_reason(ResponseTimeout("silent")) == "timeout"
    assert failure_reason(TimeoutError()) == "timeout"
    assert failure_reason(TransportError("refused")) == "unreachable"
    assert failure_reason(ISC("no")) == "refused:isc"
    assert failure_reason(NETR("relay: not reachable")) == "refused:netr"
    assert failure_reason(DecodeError("bad")) == "decode_error"
    assert failure_reason(RuntimeError("bug")) == "error"
    assert [retryable(r) for r in ("timeout", "unreachable", "refused:netr", "refused:bsy",
                                   "refused:isc", "decode_error", "error")] == \
        [True, True, True, True, False, False, False]


def test_a_timed_out_read_is_retried_with_backoff_until_the_attempts_run_out() -> None:
    jitter = itertools.cycle([0.0, 1.0])
    plan = Plan(64.0, attempts=3, random=lambda: next(jitter))  # retry base min(2, 64/16)
    title = TITLES[0]
    stats = plan.begin(0.0, 0.0, [title])
    slot = phase(title, 64.0)
    (entry,) = plan.take(slot, 10, ALL)
    assert plan.finished(entry, slot + 1, ResponseTimeout("silent")) == "retry"
    assert plan.next_due() == pytest.approx(slot + 1 + 2.0 * 0.5)  # jitter 0: x0.5
    assert drain(plan, slot + 1.9) == []
    (entry,) = plan.take(slot + 2, 10, ALL)
    assert entry.attempt == 2
    assert plan.finished(entry, slot + 3, TransportError("refused")) == "retry"
    assert plan.next_due() == pytest.approx(slot + 3 + 4.0 * 1.5)  # jitter 1: x1.5
    (entry,) = plan.take(slot + 9, 10, ALL)
    assert plan.finished(entry, slot + 10, ResponseTimeout("silent")) == "failed"
    assert (stats.failed, stats.retries, stats.reasons) == (1, 2, {"timeout": 1})
    assert plan.queued == 0 and plan.entries == {}
    assert plan.reason_totals == {"timeout": 1} and plan.totals["retries"] == 2


def test_a_refusal_is_not_retried_and_no_retry_starts_after_the_interval() -> None:
    plan = Plan(8.0, attempts=5)  # retry base 0.5
    a, b = TITLES[:2]
    stats = plan.begin(0.0, 0.0, [a, b])
    taken = {e.ap_title: e for e in plan.take(8.0, 10, ALL)}
    assert plan.finished(taken[a], 7.0, ISC("wrong password")) == "failed"
    assert plan.finished(taken[b], 7.9, ResponseTimeout("silent")) == "failed"  # 7.9+0.5 > 8
    assert stats.reasons == {"refused:isc": 1, "timeout": 1} and stats.retries == 0


# ------------------------------------------------------------------ bounded


def test_memory_stays_bounded_over_many_intervals_and_leaving_meters() -> None:
    plan = Plan(10.0, history=5, log_interval=20.0)
    now = 0.0
    for k in range(50):
        meters = TITLES[k * 10:k * 10 + 200]  # ten leave, ten arrive each interval
        plan.begin(now, now, meters)
        for entry in plan.take(now + 10, 1000, ALL):
            plan.finished(entry, now + 9.95, None if k % 2 else ResponseTimeout("x"))
        now += 10
    assert len(plan.history) == 5 and [s.number for s in plan.history] == [46, 47, 48, 49, 50]
    assert len(plan.entries) <= 200 and plan.queued <= 200
    assert plan.last_logs.keys() <= set(TITLES[490:690])
    assert set(plan.reason_totals) == {"timeout"}


def test_logs_are_read_every_log_interval_and_again_after_a_failed_log_read() -> None:
    plan = Plan(10.0, log_interval=25.0)
    title = TITLES[0]
    wanted: list[bool] = []
    for k in range(6):
        plan.begin(10.0 * k, 0.0, [title])
        (entry,) = plan.take(10.0 * k + 10, 1, ALL)
        wanted.append(entry.logs)
        fail = k == 0
        plan.finished(entry, 10.0 * k + 9.9, ISC("x") if fail else None)
    # read 0 failed: read 1 reads the logs; then every 25 s (3 intervals)
    assert wanted == [True, True, False, False, True, False]


def test_a_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        Plan(0.0)
    with pytest.raises(ValueError):
        Plan(5.0, attempts=0)


# ------------------------------------------------------------------ the scheduler


def test_the_scheduler_bounds_concurrency_reads_each_meter_once_and_retrieves_all() -> None:
    meters = TITLES[:40]
    active: set[str] = set()
    peak = 0
    attempts: dict[str, int] = {}
    errors: list[dict[str, Any]] = []

    async def read(title: str, logs: bool) -> BaseException | None:
        nonlocal peak
        assert title not in active, "two reads of one meter at once"
        active.add(title)
        peak = max(peak, len(active))
        attempts[title] = attempts.get(title, 0) + 1
        try:
            await asyncio.sleep(0.01)
            if title == meters[0]:
                raise RuntimeError("a bug in the read")  # broke its promise: still retrieved
            if title == meters[1]:
                return ResponseTimeout("silent")
            if title == meters[2]:
                await asyncio.sleep(3600)  # never answers: cancelled at stop
            return None
        finally:
            active.discard(title)

    async def main() -> Plan:
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: errors.append(ctx))
        plan = Plan(1.0, attempts=3)
        scheduler = Scheduler(plan, meters=lambda: meters, wanted=ALL, read=read,
                              concurrency=4)
        task = asyncio.create_task(scheduler.run())
        for _ in range(200):
            if len(plan.history) >= 4:
                break
            await asyncio.sleep(0.05)
        await scheduler.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return plan

    plan = asyncio.run(main())
    assert errors == []
    assert 1 <= peak <= 4
    first = plan.history[0]
    assert first.due == 40 and first.read == 37 and first.failed == 2
    assert first.reasons == {"error": 1, "timeout": 1}
    assert first.retries >= 1  # the timeout was tried again
    later = plan.history[1]
    assert later.skipped == 1  # the silent meter's read still running
    assert attempts[meters[2]] == 1
    assert set(COUNTS) <= set(first.to_json())


def test_a_meter_that_registers_mid_interval_is_read_in_it_when_its_slot_is_ahead() -> None:
    late_slot = [t for t in TITLES if 2.4 < phase(t, 3.0) < 2.6]
    first, second = late_slot[:2]
    meters: list[str] = []
    version = 0
    reads: list[tuple[str, int]] = []

    async def main() -> Plan:
        nonlocal version
        plan = Plan(3.0)
        scheduler = Scheduler(
            plan, meters=lambda: list(meters), wanted=ALL, concurrency=4,
            read=lambda t, logs: _note(t), version=lambda: version)

        async def _note(title: str) -> None:
            assert plan.current is not None
            reads.append((title, plan.current.number))

        scheduler.read = lambda t, logs: _note(t)
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.1)
        meters.append(first)
        version += 1  # a registration: the next rescan (within 0.75 s) slots it in
        for _ in range(100):
            if plan.current is not None and plan.current.due == 1:
                break
            await asyncio.sleep(0.02)
        meters.append(second)  # no registration counted: not looked for until interval 2
        for _ in range(200):
            if len(plan.history) >= 2 and plan.history[1].read == 2:
                break
            await asyncio.sleep(0.05)
        await scheduler.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return plan

    plan = asyncio.run(main())
    assert (first, 1) in reads and (second, 1) not in reads and (second, 2) in reads
    assert plan.history[0].due == 1 and plan.history[1].due == 2
