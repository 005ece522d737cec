"""What the in-home display remembers: 24 hours at 5-second resolution and 400 days of totals.

The C12.22 node hands over one :class:`Sample` a second. :class:`History` folds them into
5-second points (the mean voltage, current, powers and power factor of the bucket, and the
meter's Wh register at its end), keeps the last 24 hours of points (17,280) and one row per
local day, and answers the page's questions: the latest sample, a window of points, the energy
of the last 24 hours, the month so far, the daily totals, a CSV export.

Energy always comes from the meter's register (differences of ``energy_wh``), never from
integrating power: the register is what the utility bills.

Persistence: one SQLite database ``history.sqlite`` in ``state_dir`` (WAL journal). Each closed
5-second point is committed on its own, so a ``kill -9`` loses at most the bucket in progress
(under 5 s of samples). Points older than 24 h are deleted as new ones arrive and day rows
older than :data:`KEEP_DAYS`, so the file stays around 2 MB; SQLite reuses the freed pages. A
file that is not a readable database is moved aside (``history.sqlite.corrupt-<time>``) and a
new one started, rather than stopping the display.

Rules for what is accepted (see :meth:`History.add`):

* a sample whose fields are not all finite numbers, whose time is not positive, whose voltage,
  current, apparent power or register is negative, or whose power factor is outside [-1, 1] is
  **rejected** (counted in :attr:`History.rejected` by reason, never stored);
* a sample not later than the last accepted one (duplicate or out of order) is rejected: the
  meter's clock orders the series, and a closed 5-second point is never reopened;
* a sample more than :data:`MAX_AHEAD` seconds ahead of both the display's clock and the last
  accepted sample is rejected, so one bad time stamp cannot push every later sample into "out
  of order"; a sped-up meter, whose clock runs ahead of ours by days, is followed step by
  step, and :data:`JUMP_CONFIRM` consecutive consistent samples that far ahead are accepted
  (the meter's clock really moved);
* a register that goes backwards, or forwards faster than :data:`MAX_POWER_W` could deliver
  since the previous sample, is a **discontinuity** (meter replaced or reset, or a garbled
  register): the sample is accepted, the step adds nothing to any energy total, counting resumes
  from the new value, and :attr:`History.register_resets` is incremented.

Energy totals are kept on a *counted* scale that follows the register but skips
discontinuities; every total is a difference on that scale.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import sqlite3
import threading
import time as _time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = [
    "BUCKET", "FILL_MAX_SPAN", "FILL_MIN_SPAN", "JUMP_CONFIRM", "KEEP_DAYS", "MAX_AHEAD",
    "MAX_POWER_W", "POINTS_24H", "WINDOW",
    "DailyTotal", "History", "Point", "Sample", "Series",
]

#: Seconds in one point of the graph.
BUCKET = 5
#: Seconds of points kept.
WINDOW = 86_400
#: Points in a full 24 h window.
POINTS_24H = WINDOW // BUCKET
#: Local days of daily totals kept.
KEEP_DAYS = 400
#: A register step implying more average power than this since the previous sample is not
#: consumption (a household supply is at most ~50 kW; this leaves a wide margin).
MAX_POWER_W = 200_000.0
#: Seconds a sample's time may be ahead of the display's clock, or of the last sample's.
MAX_AHEAD = 86_400.0
#: Consecutive, consistent samples beyond that which are taken as the meter's clock really
#: having moved forward (set forward, or a sped-up meter the display just met).
JUMP_CONFIRM = 3
#: Spans between two samples that are filled from the register (see :meth:`History.add`):
#: at least this long, so the register's whole-Wh steps give the mean power to 3600/45 = 80 W
#: or better (60 W at ``--speed 60``, 6 W at 600); shorter holes are bridged by the page.
FILL_MIN_SPAN = 45.0
#: ... and at most this long: a longer silence is drawn as a gap, not as one flat mean.
FILL_MAX_SPAN = 1800.0
#: Register steps this small below zero are float noise, not a reset.
_NOISE_WH = 1e-6
FILENAME = "history.sqlite"
_SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class Sample:
    """One second of the meter's present values, as the C12.22 node decoded them."""

    time: float  # Unix epoch seconds (the meter's clock)
    voltage: float  # V rms
    current: float  # A rms
    active_power: float  # W (negative when exporting)
    apparent_power: float  # VA
    power_factor: float  # -1..1
    energy_wh: float  # the meter's Wh-delivered register total, not integrated here


@dataclass(frozen=True)
class Point:
    """One 5-second bucket: means over its samples; ``energy_wh`` is the register at its end.

    ``t`` is the bucket's start (a multiple of 5); ``n`` the samples in it; ``counted_wh`` the
    register on the counted scale (see the module docstring); ``t_last`` the last sample's time.

    ``n == 0``: a bucket *filled from the register* between two samples far apart (a sped-up
    meter feeds one sample per simulated minute or more): ``active_power`` is the mean power
    of that span from the register, ΔWh / Δt; ``energy_wh``/``counted_wh``/``t_last`` are the
    sample before the span's; voltage, current, apparent power and power factor were not
    measured (stored as 0, given as None by :meth:`History.points` and blank in the CSV).
    """

    t: int
    n: int
    voltage: float
    current: float
    active_power: float
    apparent_power: float
    power_factor: float
    energy_wh: float
    counted_wh: float
    t_last: float


@dataclass(frozen=True)
class Series:
    """A window of points as parallel lists (ready for JSON or a chart)."""

    t: list[int]
    voltage: list[float | None]  # None: a point filled from the register (n == 0)
    current: list[float | None]
    active_power: list[float]
    apparent_power: list[float | None]
    power_factor: list[float | None]
    energy_wh: list[float]

    def __len__(self) -> int:
        return len(self.t)


@dataclass(frozen=True)
class DailyTotal:
    """kWh of one local day: counted register at the next day's first sample (or the latest
    sample, for the last day kept) minus the counted register at this day's first sample."""

    day: date
    kwh: float


@dataclass
class _Day:
    first_counted: float
    last_counted: float
    first_wh: float
    last_wh: float
    first_t: float = 0.0  # the day's first sample (0: a file from before it was kept)


class _Bucket:
    """The 5-second bucket being filled."""

    __slots__ = ("t", "n", "v", "i", "p", "s", "pf", "wh", "counted", "t_last", "first_counted")

    def __init__(self, t: int) -> None:
        self.t = t
        self.n = 0
        self.v = self.i = self.p = self.s = self.pf = 0.0
        self.wh = self.counted = self.t_last = self.first_counted = 0.0

    def add(self, x: Sample, counted: float) -> None:
        if self.n == 0:
            self.first_counted = counted
        self.n += 1
        self.v += x.voltage
        self.i += x.current
        self.p += x.active_power
        self.s += x.apparent_power
        self.pf += x.power_factor
        self.wh, self.counted, self.t_last = x.energy_wh, counted, x.time

    def point(self) -> Point:
        n = self.n
        return Point(self.t, n, self.v / n, self.i / n, self.p / n, self.s / n, self.pf / n,
                     self.wh, self.counted, self.t_last)


def _bucket_of(t: float) -> int:
    return int(t // BUCKET) * BUCKET


def _clean(sample: object) -> tuple[Sample | None, str]:
    """The sample with float fields, or None and why it is garbage."""
    try:
        values = [float(getattr(sample, name)) for name in
                  ("time", "voltage", "current", "active_power", "apparent_power",
                   "power_factor", "energy_wh")]
    except (AttributeError, TypeError, ValueError, OverflowError):
        return None, "malformed"
    if not all(math.isfinite(v) for v in values):
        return None, "not_finite"
    t, v, i, _p, s, pf, wh = values
    if t <= 0:
        return None, "bad_time"
    if v < 0 or i < 0 or s < 0 or wh < 0 or not -1.0 <= pf <= 1.0:
        return None, "out_of_range"
    return Sample(*values), ""


class History:
    """The display's memory; thread-safe (the node writes, the web app reads).

    ``tz`` is the household's time zone: local days and months (daily totals, month to date)
    follow it. ``clock`` (default :func:`time.time`) stamps when each sample was *received*;
    staleness is judged on that, not on the meter's clock, so a meter whose clock is off still
    shows as live.
    """

    def __init__(self, state_dir: str | Path, tz: str = "Asia/Seoul",
                 clock: Callable[[], float] | None = None) -> None:
        self.tz = ZoneInfo(tz)
        self.tz_name = tz
        self._clock = clock or _time.time
        self._lock = threading.RLock()
        self.path = Path(state_dir) / FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        #: Rejected samples by reason ("not_finite", "out_of_order", "duplicate", ...).
        self.rejected: Counter[str] = Counter()
        #: Register discontinuities seen (meter replaced or reset) since this object was made.
        self.register_resets = 0
        #: Samples accepted since this object was made; the web app's change counter.
        self.seq = 0
        #: Points that could not be written to the file (disk full...), and the last reason.
        self.write_errors = 0
        self.last_write_error = ""
        self._latest: Sample | None = None
        self._received_at: float | None = None
        self._bucket: _Bucket | None = None
        self._points: list[Point] = []
        self._times: list[int] = []  # the points' t, for bisect
        self._days: dict[date, _Day] = {}
        self._day_range: tuple[float, float, date] | None = None  # [start, end) of the last day
        self._last_time = 0.0  # samples at or before this are refused
        self._closed_until = 0  # and samples before this (the stored buckets are closed)
        self._last_wh: float | None = None
        self._counted = 0.0
        self._batch = 0
        self._jump: tuple[float, int] = (0.0, 0)  # (last time, how many) of samples far ahead
        self._db = self._open()
        self._load()

    # -- storage -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the process being killed (it is in the WAL
        # file); only a power cut may lose the last commits. FULL would fsync every 5 s.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA journal_size_limit=4194304")  # keep the WAL bounded after checkpoints
        db.executescript("""
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS points(
                t INTEGER PRIMARY KEY, n INTEGER NOT NULL, v REAL NOT NULL, i REAL NOT NULL,
                p REAL NOT NULL, s REAL NOT NULL, pf REAL NOT NULL, wh REAL NOT NULL,
                counted REAL NOT NULL, t_last REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS days(
                day TEXT PRIMARY KEY, first_counted REAL NOT NULL, last_counted REAL NOT NULL,
                first_wh REAL NOT NULL, last_wh REAL NOT NULL,
                first_t REAL NOT NULL DEFAULT 0);
        """)
        columns = {row[1] for row in db.execute("PRAGMA table_info(days)")}
        if "first_t" not in columns:  # a file written before the first sample's time was kept
            db.execute("ALTER TABLE days ADD COLUMN first_t REAL NOT NULL DEFAULT 0")
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES('schema', ?)", (_SCHEMA_VERSION,))
        elif row[0] != _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema {row[0]!r}, expected {_SCHEMA_VERSION!r}")
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("quick_check failed")
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError:
            # Not ours or damaged (a disk error, a file copied over it): keep it for a human
            # to look at, and start afresh rather than leave the household without a display.
            stamp = _time.strftime("%Y%m%dT%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                src = self.path.with_name(self.path.name + suffix)
                if src.exists():
                    src.replace(src.with_name(f"{self.path.name}.corrupt-{stamp}{suffix}"))
            return self._connect()

    def _load(self) -> None:
        last = self._db.execute("SELECT * FROM points ORDER BY t DESC LIMIT 1").fetchone()
        if last is None:
            rows = []
        else:
            rows = self._db.execute("SELECT * FROM points WHERE t >= ? ORDER BY t",
                                    (last[0] - WINDOW,)).fetchall()
        self._points = [Point(*row) for row in rows]
        self._times = [p.t for p in self._points]
        for day, *values in self._db.execute("SELECT * FROM days ORDER BY day"):
            self._days[date.fromisoformat(day)] = _Day(*values)
        if self._points:
            p = self._points[-1]
            # the bucket of the last point is closed: a later sample closed it, even if that
            # sample itself was lost
            self._last_time = p.t_last
            self._closed_until = p.t + BUCKET
            self._last_wh, self._counted = p.energy_wh, p.counted_wh

    def close(self) -> None:
        """Store the bucket in progress (a clean stop loses nothing) and close the file."""
        with self._lock:
            if self._db is None:
                return
            self._close_bucket()
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many :meth:`add` calls in one transaction (loading a day of history in a second)."""
        with self._lock:
            if self._batch == 0:
                self._db.execute("BEGIN")
            self._batch += 1
            try:
                yield
            finally:
                self._batch -= 1
                if self._batch == 0:
                    self._db.execute("COMMIT")

    def _write(self, points: list[Point], day: date | None) -> None:
        try:
            self._write_rows(points, day)
        except sqlite3.Error as exc:
            # a full or failing disk must not stop the display: the point stays in memory
            # (the graph goes on) and the next points are tried again
            self.write_errors += 1
            self.last_write_error = str(exc)
            if self._batch == 0 and self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _write_rows(self, points: list[Point], day: date | None) -> None:
        db = self._db
        if self._batch == 0:
            db.execute("BEGIN")
        db.executemany("INSERT OR REPLACE INTO points VALUES(?,?,?,?,?,?,?,?,?,?)",
                       [(p.t, p.n, p.voltage, p.current, p.active_power, p.apparent_power,
                         p.power_factor, p.energy_wh, p.counted_wh, p.t_last) for p in points])
        db.execute("DELETE FROM points WHERE t < ?", (points[-1].t - WINDOW,))
        if day is not None:
            d = self._days[day]
            db.execute("INSERT OR REPLACE INTO days VALUES(?,?,?,?,?,?)",
                       (day.isoformat(), d.first_counted, d.last_counted, d.first_wh,
                        d.last_wh, d.first_t))
        if self._batch == 0:
            db.execute("COMMIT")

    # -- writing ------------------------------------------------------------------------

    def add(self, sample: Sample) -> bool:
        """Take one sample; True if accepted. Never raises for a bad sample (see the module
        docstring for what is rejected and what counts as a register discontinuity)."""
        x, why = _clean(sample)
        with self._lock:
            if self._db is None:
                why, x = "closed", None
            if x is None:
                self.rejected[why] += 1
                return False
            if x.time <= self._last_time or x.time < self._closed_until:
                self.rejected["duplicate" if x.time == self._last_time else "out_of_order"] += 1
                return False
            now = self._clock()
            if x.time > max(now, self._last_time) + MAX_AHEAD and not self._confirmed(x.time):
                self.rejected["future"] += 1
                return False
            self._jump = (0.0, 0)
            fill = None  # (mean W, register, counted, time) of the span since the last sample
            if self._last_wh is None:
                self._counted = x.energy_wh  # the counted scale starts at the register
            else:
                step = x.energy_wh - self._last_wh
                span = x.time - self._last_time
                allowed = MAX_POWER_W * span / 3600.0 + 1.0
                if -_NOISE_WH <= step <= allowed:
                    if FILL_MIN_SPAN <= span <= FILL_MAX_SPAN:
                        fill = (max(step, 0.0) * 3600.0 / span, self._last_wh, self._counted,
                                self._last_time)
                    self._counted += max(step, 0.0)
                else:
                    self.register_resets += 1
            start = _bucket_of(x.time)
            if self._bucket is not None and self._bucket.t != start:
                self._close_bucket()
            if fill is not None:
                self._fill(start, *fill)
            self._last_time, self._last_wh = x.time, x.energy_wh
            if self._bucket is None:
                self._bucket = _Bucket(start)
            self._bucket.add(x, self._counted)
            self._note_day(x)
            self._latest, self._received_at = x, now
            self.seq += 1
            return True

    def _confirmed(self, t: float) -> bool:
        """A time far ahead is taken once JUMP_CONFIRM samples in a row go on from it."""
        last, count = self._jump
        count = count + 1 if last < t <= last + MAX_AHEAD else 1
        self._jump = (t, count)
        return count >= JUMP_CONFIRM

    def _fill(self, until: int, watts: float, wh: float, counted: float, since: float) -> None:
        """Points for the empty buckets after the one of ``since`` and before ``until``: the
        meter's own measurement of that span (its register), not values made up between two
        samples. One transaction for all of them."""
        # (none older than the 24 h kept: they would go at once)
        first = max(_bucket_of(since) + BUCKET, self._closed_until, until - WINDOW)
        points = [Point(t, 0, 0.0, 0.0, watts, 0.0, 0.0, wh, counted, since)
                  for t in range(first, until, BUCKET)]
        if not points:
            return
        for point in points:
            self._append(point)
        self._write(points, None)
        self._closed_until = until

    def _note_day(self, x: Sample) -> None:
        r = self._day_range
        if r is None or not r[0] <= x.time < r[1]:
            local = datetime.fromtimestamp(x.time, self.tz)
            day = local.date()
            start = datetime(day.year, day.month, day.day, tzinfo=self.tz)
            end = start + timedelta(days=1)  # wall-clock arithmetic; DST handled by timestamp()
            r = self._day_range = (start.timestamp(), end.timestamp(), day)
        day = r[2]
        d = self._days.get(day)
        if d is None:
            self._days[day] = _Day(self._counted, self._counted, x.energy_wh, x.energy_wh,
                                   x.time)
            self._trim_days(day)
        else:
            d.last_counted, d.last_wh = self._counted, x.energy_wh

    def _trim_days(self, today: date) -> None:
        oldest = today - timedelta(days=KEEP_DAYS - 1)
        old = [d for d in self._days if d < oldest]
        for d in old:
            del self._days[d]
        if old:
            try:
                self._db.execute("DELETE FROM days WHERE day < ?", (oldest.isoformat(),))
            except sqlite3.Error as exc:  # see _write; the next new day tries again
                self.write_errors += 1
                self.last_write_error = str(exc)

    def _close_bucket(self) -> None:
        b = self._bucket
        if b is None:
            return
        self._bucket = None
        point = b.point()
        self._append(point)
        self._closed_until = point.t + BUCKET
        local_day = datetime.fromtimestamp(point.t_last, self.tz).date()
        self._write([point], local_day if local_day in self._days else None)

    def _append(self, point: Point) -> None:
        self._points.append(point)
        self._times.append(point.t)
        cut = bisect.bisect_left(self._times, point.t - WINDOW)
        if cut:
            del self._points[:cut], self._times[:cut]

    # -- reading ------------------------------------------------------------------------

    def latest(self) -> Sample | None:
        """The last accepted sample (None until one arrives after opening)."""
        with self._lock:
            return self._latest

    def received_at(self) -> float | None:
        """When (display clock) the last sample was accepted."""
        with self._lock:
            return self._received_at

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the latest sample was received (on the receiving clock), or None."""
        with self._lock:
            if self._received_at is None:
                return None
            return max((self._clock() if now is None else now) - self._received_at, 0.0)

    def is_stale(self, now: float | None = None, after: float = 5.0) -> bool:
        """True when no sample was received in the last ``after`` seconds (or none at all)."""
        with self._lock:
            if self._received_at is None:
                return True
            return (self._clock() if now is None else now) - self._received_at > after

    def points(self, since: float | None = None, until: float | None = None) -> Series:
        """Points with ``since < t <= until`` (bucket start times; None = unbounded).

        Without ``since``, the last 24 h: ``t`` after the latest point's ``t`` - 86,400, at
        most 17,280 points.
        """
        with self._lock:
            times = self._times
            if since is None:
                since = times[-1] - WINDOW if times else 0
            lo = bisect.bisect_right(times, since)
            hi = len(times) if until is None else bisect.bisect_right(times, until)
            chosen = self._points[lo:hi]
        def measured(name: str) -> list[float | None]:
            return [getattr(p, name) if p.n else None for p in chosen]

        return Series([p.t for p in chosen], measured("voltage"), measured("current"),
                      [p.active_power for p in chosen], measured("apparent_power"),
                      measured("power_factor"), [p.energy_wh for p in chosen])

    def point_list(self, since: float | None = None, until: float | None = None) -> list[Point]:
        """Like :meth:`points`, as :class:`Point` objects."""
        with self._lock:
            times = self._times
            if since is None:
                since = times[-1] - WINDOW if times else 0
            lo = bisect.bisect_right(times, since)
            hi = len(times) if until is None else bisect.bisect_right(times, until)
            return self._points[lo:hi]

    def __len__(self) -> int:
        return len(self.points())

    def energy_total(self) -> float | None:
        """The meter's register (Wh) as last seen, or None before any data."""
        with self._lock:
            return self._last_wh

    def energy_last_24h(self) -> float:
        """kWh over the 24 h ending at the latest sample, from the register: the counted
        register now minus at the end of the oldest point kept (so 24 h to within one 5-s
        bucket). With less than a day kept, the energy since the history began."""
        with self._lock:
            b = self._bucket
            newest = b.t if b is not None else self._times[-1] if self._times else None
            if newest is None:
                return 0.0
            # after a gap the old points linger until the next bucket closes: skip them
            i = bisect.bisect_left(self._times, newest - WINDOW)
            if i < len(self._points):
                base = self._points[i].counted_wh
            elif b is not None:
                base = b.first_counted
            else:  # pragma: no cover - newest is then the last point, so i < len
                return 0.0
            return max(self._counted - base, 0.0) / 1000.0

    def daily_totals(self) -> list[DailyTotal]:
        """kWh per local day, oldest first (up to :data:`KEEP_DAYS` days).

        A day's total runs from its first sample to the next day's first sample, so energy
        used while the display was off is counted on the last day before the gap, and the days
        of a month add up exactly to :meth:`month_to_date_kwh`.
        """
        with self._lock:
            days = sorted(self._days.items())
            out = []
            for k, (day, d) in enumerate(days):
                end = days[k + 1][1].first_counted if k + 1 < len(days) else d.last_counted
                out.append(DailyTotal(day, max(end - d.first_counted, 0.0) / 1000.0))
            return out

    def month_to_date_kwh(self, now: float | datetime | None = None) -> float:
        """kWh of the local month containing ``now`` (Unix time or a datetime; default the
        clock), from the register at the month's first sample to the latest sample."""
        if now is None:
            now = self._clock()
        local = (now.astimezone(self.tz) if isinstance(now, datetime)
                 else datetime.fromtimestamp(now, self.tz))
        today = local.date()
        first = today.replace(day=1)
        return sum(d.kwh for d in self.daily_totals() if first <= d.day <= today)

    def month_first_reading(self, now: float | datetime | None = None) -> float | None:
        """When (Unix time, the meter's clock) the first sample of ``now``'s local month came:
        the start of what :meth:`month_to_date_kwh` measures; None without data that month.
        For a day stored before this was kept, the day's local midnight."""
        if now is None:
            now = self._clock()
        local = (now.astimezone(self.tz) if isinstance(now, datetime)
                 else datetime.fromtimestamp(now, self.tz))
        first = local.date().replace(day=1)
        with self._lock:
            days = sorted(d for d in self._days if first <= d <= local.date())
            if not days:
                return None
            t = self._days[days[0]].first_t
        if t > 0:
            return t
        day = days[0]
        return datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp()

    def local_time(self, t: float) -> datetime:
        """``t`` as an aware datetime in the household's time zone."""
        return datetime.fromtimestamp(t, self.tz)

    def csv(self, since: float | None = None, until: float | None = None) -> Iterator[str]:
        """The points as CSV lines (header first, each line ending in CRLF as RFC 4180 says).

        ``interval_start`` is the bucket start in the household's time zone (ISO 8601 with
        the offset); power etc. are 5-s means; ``energy_wh`` is the register at its end.
        """
        yield ("unix_time,interval_start,voltage_v,current_a,active_power_w,"
               "apparent_power_va,power_factor,energy_wh\r\n")
        tz = self.tz
        for p in self.point_list(since, until):
            stamp = datetime.fromtimestamp(p.t, tz).isoformat()
            if p.n:
                yield (f"{p.t},{stamp},{p.voltage:.2f},{p.current:.3f},{p.active_power:.1f},"
                       f"{p.apparent_power:.1f},{p.power_factor:.3f},{p.energy_wh:.1f}\r\n")
            else:  # filled from the register: only the mean power is known
                yield f"{p.t},{stamp},,,{p.active_power:.1f},,,{p.energy_wh:.1f}\r\n"
