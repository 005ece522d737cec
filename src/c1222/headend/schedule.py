"""The collector's schedule: when each meter is read within an interval, its retries, and
the accounting of every interval (docs/headend.md, "Collecting").

Two parts:

* :class:`Plan` is pure: no clock, no tasks, no randomness of its own. Time enters as the
  ``now`` arguments, jitter through an injected ``random`` callable. It decides which meter
  is read when, keeps at most one read owed per meter, and counts every interval.
* :class:`Scheduler` runs a plan on the event loop: it starts the reads that are due, at most
  ``concurrency`` at once, each in a task whose outcome it always retrieves.

Each meter has a stable slot in the interval: ``phase`` hashes its AP title to an offset in
the first ``SPREAD`` of the interval, so a meter is read at about the same offset every
interval, the reads of a fleet are spread evenly instead of all starting at the interval's
start, and a meter that registers mid-interval takes its slot (this interval if the slot is
still ahead, else the next). A read that fails with a reason worth retrying (time-out,
unreachable, a busy or not-ready answer) is tried again after an exponential back-off with
jitter, as long as the retry starts before its interval ends, at most ``attempts`` times.

What the plan keeps is bounded by the meters registered: one entry per meter owing a read
(queued, waiting to retry, or running), one queue item per entry, the log cadence per meter
(dropped with the meter), and the last ``history`` intervals' counts, whose failure reasons
come from a fixed set (:func:`~c1222.headend.metrics.read_outcome`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from c1222.headend.metrics import read_outcome

log = logging.getLogger("c1222.headend")

#: Fraction of the interval the first attempts are spread over (the rest leaves room for
#: the reads near the end to finish, and for retries, before the interval ends).
SPREAD = 0.9
#: Delay before the first retry (doubled at each further one), at most 1/16 of the interval.
RETRY_BASE = 2.0
#: Attempts per meter per interval, the first included.
ATTEMPTS = 3
#: Intervals whose counts are kept (GET /api/collection).
HISTORY = 60
#: Outcomes worth another attempt in the same interval (a refusal, a decode error or an
#: over-limit meter answers the same again); response codes of a transient refusal.
RETRY_OUTCOMES = frozenset({"timeout", "unreachable"})
RETRY_CODES = frozenset({"bsy", "dnr", "nett", "netr"})
#: Seconds between two looks for meters that registered since the interval began.
RESCAN = 1.0


def phase(ap_title: str, interval: float, spread: float = SPREAD) -> float:
    """Seconds into each interval at which ``ap_title`` is first read: a stable hash of the
    title (not Python's hash(), which is salted per process; not the shard's CRC-32 either,
    so that the meters of one shard still spread over the whole window)."""
    digest = hashlib.blake2b(ap_title.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64 * interval * spread


def backoff(retry: int, base: float, jitter: float) -> float:
    """Seconds before retry number ``retry`` (1: the first): ``base * 2 ** (retry - 1)``
    scaled by 0.5 .. 1.5 as ``jitter`` goes over 0 .. 1 (so meters that failed together do
    not all come back together)."""
    return base * 2 ** (retry - 1) * (0.5 + jitter)


def failure_reason(exc: BaseException) -> str:
    """The reason a read failed, from a fixed set: ``timeout``, ``unreachable``,
    ``refused:<code>`` (``refused:isc``, ``refused:netr``, ...), ``decode_error``, ..."""
    outcome, code = read_outcome(exc)
    return f"{outcome}:{code}" if code else outcome


def retryable(reason: str) -> bool:
    outcome, _, code = reason.partition(":")
    return outcome in RETRY_OUTCOMES or (outcome == "refused" and code in RETRY_CODES)


#: The counts of an interval, and of all intervals in ``Plan.totals``.
COUNTS = ("due", "read", "failed", "late", "skipped", "retries", "gone")


@dataclass
class IntervalStats:
    """The accounting of one interval. A read counts in the interval it was due in, even
    when it ends after it (then it is also ``late``).

    due: meters set out to read (owned, registered end devices, including those that
    registered mid-interval before their slot); read / failed: the final outcome of their
    reads (after retries); late: reads that succeeded after the interval ended; skipped:
    meters not read this interval because a read of an earlier one was still owed (queued or
    running); retries: attempts after the first; gone: due meters that left (deregistered,
    forgotten, another shard's) before their read was settled; reasons: failed reads by
    reason. ``pending`` = due - read - failed - skipped - gone: reads still owed."""

    number: int
    start: float  # wall-clock seconds
    end: float
    due: int = 0
    read: int = 0
    failed: int = 0
    late: int = 0
    skipped: int = 0
    retries: int = 0
    gone: int = 0
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def pending(self) -> int:
        return self.due - self.read - self.failed - self.skipped - self.gone

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "start": self.start, "end": self.end,
                **{name: getattr(self, name) for name in COUNTS},
                "pending": self.pending, "reasons": dict(sorted(self.reasons.items()))}


@dataclass
class Entry:
    """The read a meter owes in one interval (one at most per meter)."""

    ap_title: str
    stats: IntervalStats
    deadline: float  # the end of its interval (clock of the plan)
    when: float = 0.0  # when its next attempt is due
    attempt: int = 0  # attempts started
    running: bool = False
    logs: bool = False


class Plan:
    """The pure schedule (time is an input). ``begin`` starts an interval with the meters
    due; ``scan`` slots in meters that registered since; ``take`` gives the attempts due;
    ``finished`` records an attempt's outcome (and queues a retry)."""

    def __init__(self, interval: float, *, attempts: int = ATTEMPTS,
                 retry_base: float = RETRY_BASE, spread: float = SPREAD,
                 log_interval: float = 0.0, history: int = HISTORY,
                 random: Callable[[], float] = lambda: 0.5) -> None:
        if interval <= 0 or attempts < 1 or history < 1 or not 0 < spread <= 1:
            raise ValueError("interval > 0, attempts >= 1, history >= 1, 0 < spread <= 1")
        self.interval = interval
        self.attempts = attempts
        self.retry_base = min(retry_base, interval / 16)
        self.spread = spread
        self.log_interval = log_interval
        self.random = random
        self.entries: dict[str, Entry] = {}
        self._queue: list[tuple[float, int, Entry]] = []
        self._seq = 0
        self._planned: set[str] = set()  # titles slotted into the current interval
        self._start = 0.0
        self.current: IntervalStats | None = None
        self.history: collections.deque[IntervalStats] = collections.deque(maxlen=history)
        self.totals: collections.Counter[str] = collections.Counter()
        self.reason_totals: collections.Counter[str] = collections.Counter()
        #: When each meter's load profile and history log were last read (plan clock).
        self.last_logs: dict[str, float] = {}

    # ------------------------------------------------------------------ intervals

    def begin(self, now: float, wall: float, meters: Iterable[str]) -> IntervalStats:
        """Start an interval at ``now`` (``wall``: the same instant on the wall clock) with
        the meters due in it."""
        number = self.current.number + 1 if self.current is not None else 1
        self.current = IntervalStats(number, wall, wall + self.interval)
        self.history.append(self.current)
        self._start = now
        self._planned = set()
        titles = set(meters)
        for gone in self.last_logs.keys() - titles:
            del self.last_logs[gone]  # forgotten: keep nothing per past meter
        self._slot(titles, now, passed_too=True)
        return self.current

    def scan(self, now: float, meters: Iterable[str]) -> int:
        """Slot in the meters not yet planned this interval whose slot is still ahead (a
        meter that registered mid-interval); the number added."""
        if self.current is None:
            return 0
        return self._slot([t for t in meters if t not in self._planned], now,
                          passed_too=False)

    def _slot(self, titles: Iterable[str], now: float, *, passed_too: bool) -> int:
        stats = self.current
        assert stats is not None
        added = 0
        for title in titles:
            when = self._start + phase(title, self.interval, self.spread)
            if not passed_too and when < now:
                continue  # its slot has passed: it is read from the next interval on
            self._planned.add(title)
            stats.due += 1
            self.totals["due"] += 1
            added += 1
            if title in self.entries:  # an earlier interval's read is still owed
                stats.skipped += 1
                self.totals["skipped"] += 1
                continue
            entry = Entry(title, stats, self._start + self.interval, when)
            self.entries[title] = entry
            self._push(entry)
        return added

    def _push(self, entry: Entry) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (entry.when, self._seq, entry))

    # ------------------------------------------------------------------ attempts

    def next_due(self) -> float | None:
        """When the earliest queued attempt is due (None: nothing queued)."""
        return self._queue[0][0] if self._queue else None

    def take(self, now: float, limit: int, wanted: Callable[[str], bool]) -> list[Entry]:
        """Up to ``limit`` attempts due at ``now``, marked running. A meter no longer
        ``wanted`` (deregistered, forgotten, not ours) is dropped and counted ``gone``."""
        out: list[Entry] = []
        while self._queue and len(out) < limit and self._queue[0][0] <= now:
            _, _, entry = heapq.heappop(self._queue)
            if not wanted(entry.ap_title):
                self._settle(entry, "gone")
                continue
            entry.running = True
            entry.attempt += 1
            if entry.attempt == 1:
                last = self.last_logs.get(entry.ap_title)
                entry.logs = self.log_interval > 0 and (
                    last is None or now - last >= self.log_interval)
            out.append(entry)
        return out

    def finished(self, entry: Entry, now: float, exc: BaseException | None,
                 still_wanted: bool = True) -> str:
        """Record an attempt's end: ``exc`` None is a success. Returns what became of the
        entry: ``read``, ``late`` (read after its interval), ``retry``, ``failed`` or
        ``gone`` (it failed, and the meter left meanwhile)."""
        entry.running = False
        if exc is None:
            if entry.logs:
                self.last_logs[entry.ap_title] = now
            if now > entry.deadline:
                entry.stats.late += 1
                self.totals["late"] += 1
                self._settle(entry, "read")
                return "late"
            self._settle(entry, "read")
            return "read"
        if not still_wanted:
            self._settle(entry, "gone")
            return "gone"
        reason = failure_reason(exc)
        if entry.attempt < self.attempts and retryable(reason):
            when = now + backoff(entry.attempt, self.retry_base, self.random())
            if when < entry.deadline:
                entry.when = when
                entry.stats.retries += 1
                self.totals["retries"] += 1
                self._push(entry)
                return "retry"
        entry.stats.reasons[reason] += 1
        self.reason_totals[reason] += 1
        self._settle(entry, "failed")
        return "failed"

    def cancelled(self, entry: Entry) -> None:
        """A running attempt was cancelled (the head-end stopping): it owes nothing more."""
        entry.running = False
        self.entries.pop(entry.ap_title, None)

    def _settle(self, entry: Entry, outcome: str) -> None:
        setattr(entry.stats, outcome, getattr(entry.stats, outcome) + 1)
        self.totals[outcome] += 1
        if self.entries.get(entry.ap_title) is entry:
            del self.entries[entry.ap_title]

    # ------------------------------------------------------------------ views

    @property
    def queued(self) -> int:
        return len(self._queue)

    def last_whole(self) -> IntervalStats | None:
        """The latest interval that has ended (its late reads may still add to it)."""
        return self.history[-2] if len(self.history) >= 2 else None


Read = Callable[[str, bool], Awaitable[BaseException | None]]


class Scheduler:
    """Runs a :class:`Plan`: ``run()`` until cancelled, then ``await stop()``.

    ``meters()``: the titles to read (evaluated at each interval's start and rescan);
    ``wanted(title)``: whether a title is still to be read; ``read(title, logs)``: one read,
    returning its failure (None on success) and raising nothing but CancelledError;
    ``on_interval(stats)``: called as each interval begins; ``version()``: a number that
    changes when the meters may have (a registration): the rescan for meters to slot in is
    skipped while it stays the same (with 10,000 meters a rescan walks them all)."""

    def __init__(self, plan: Plan, *, meters: Callable[[], list[str]],
                 wanted: Callable[[str], bool], read: Read, concurrency: int,
                 on_interval: Callable[[IntervalStats], None] = lambda _stats: None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, rescan: float = RESCAN,
                 version: Callable[[], int] | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency: at least 1")
        self.plan = plan
        self.meters = meters
        self.wanted = wanted
        self.read = read
        self.concurrency = concurrency
        self.on_interval = on_interval
        self.clock = clock
        self.wall = wall
        self.rescan = min(rescan, plan.interval / 4)
        self.version = version
        self.running: dict[asyncio.Task[BaseException | None], Entry] = {}
        self._wake = asyncio.Event()
        self._stopping = False

    def busy(self, ap_title: str) -> bool:
        entry = self.plan.entries.get(ap_title)
        return entry is not None and entry.running

    async def run(self) -> None:
        plan = self.plan
        next_begin = self.clock()
        next_scan = next_begin + self.rescan
        seen = None
        while not self._stopping:
            now = self.clock()
            try:
                if now >= next_begin:
                    # a stalled loop skips the intervals it missed rather than run them all
                    next_begin += plan.interval * (int((now - next_begin) // plan.interval)
                                                   + 1)
                    next_scan = now + self.rescan
                    seen = self.version() if self.version is not None else None
                    self.on_interval(plan.begin(now, self.wall(), self.meters()))
                elif now >= next_scan:
                    next_scan = now + self.rescan
                    version = self.version() if self.version is not None else None
                    if version is None or version != seen:
                        seen = version
                        plan.scan(now, self.meters())
            except Exception:  # a bug in a callback: say so, and keep collecting
                log.exception("the collector's schedule failed to plan")
            free = self.concurrency - len(self.running)
            for entry in plan.take(now, free, self.wanted) if free > 0 else ():
                task = asyncio.create_task(self.read(entry.ap_title, entry.logs))
                self.running[task] = entry
                task.add_done_callback(self._done)
            wake = min(next_begin, next_scan)
            due = plan.next_due()
            if due is not None and len(self.running) < self.concurrency:
                wake = min(wake, due)
            self._wake.clear()
            # woken early when a read ends (a slot frees)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake - self.clock())):
                    await self._wake.wait()

    def _done(self, task: asyncio.Task[BaseException | None]) -> None:
        """Every read task's outcome is retrieved here: none is left for asyncio to report."""
        entry = self.running.pop(task)
        self._wake.set()
        if task.cancelled():
            self.plan.cancelled(entry)
            return
        exc = task.exception()
        if exc is None:
            outcome = task.result()
        else:  # the read function broke its promise: a bug, counted as a failed read
            log.error("collecting %s raised", entry.ap_title, exc_info=exc)
            outcome = exc
        self.plan.finished(entry, self.clock(), outcome, self.wanted(entry.ap_title))

    async def stop(self) -> None:
        """Cancel the reads under way and wait for them (their outcomes retrieved)."""
        self._stopping = True
        self._wake.set()
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

