"""The display's history: 5-s points, the 24 h bound, persistence, energy from the register."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from c1222.ihd.history import (BUCKET, FILENAME, KEEP_DAYS, POINTS_24H, WINDOW, History,
                               Sample)

SEOUL = ZoneInfo("Asia/Seoul")
#: 2026-05-09 12:00:00 KST, a multiple of 5 s.
T0 = int(datetime(2026, 5, 9, 12, 0, tzinfo=SEOUL).timestamp())
REPO = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def s(t: float, wh: float, p: float = 500.0, v: float = 220.0, pf: float = 0.95) -> Sample:
    return Sample(time=t, voltage=v, current=p / pf / v, active_power=p,
                  apparent_power=p / pf, power_factor=pf, energy_wh=wh)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 10 * 86_400)


@pytest.fixture
def hist(tmp_path: Path, clock: Clock):
    h = History(tmp_path, clock=clock)
    yield h
    h.close()


def feed(h: History, start: float, seconds: int, *, step: float = 1.0, watts: float = 3600.0,
         wh: float = 1000.0) -> float:
    """Samples every ``step`` s at constant ``watts``; returns the register at the end."""
    with h.batch():
        for k in range(int(seconds / step)):
            wh += watts * step / 3600.0
            h.add(s(start + k * step, wh, p=watts))
    return wh


# ------------------------------------------------------------------------------------------
# 5-second points


def test_samples_fold_into_5_second_points(hist):
    for k in range(12):  # buckets T0, T0+5 complete, T0+10 in progress
        hist.add(s(T0 + k, 1000.0 + k, p=100.0 * k, v=220.0 + k, pf=0.9))
    pts = hist.point_list(since=0)
    assert [p.t for p in pts] == [T0, T0 + 5]
    assert [p.n for p in pts] == [5, 5]
    assert pts[0].active_power == pytest.approx(200.0)  # mean of 0..400
    assert pts[1].voltage == pytest.approx(227.0)  # mean of 225..229
    assert pts[0].power_factor == pytest.approx(0.9)
    assert pts[0].energy_wh == 1004.0 and pts[1].energy_wh == 1009.0  # register at the end
    series = hist.points(since=0)
    assert series.t == [T0, T0 + 5] and series.active_power == pytest.approx([200.0, 700.0])
    assert hist.latest() == s(T0 + 11, 1011.0, p=1100.0, v=231.0, pf=0.9)


def test_points_window_is_since_exclusive_until_inclusive(hist):
    feed(hist, T0, 60)
    assert hist.points(since=T0 + 10, until=T0 + 30).t == [T0 + 15, T0 + 20, T0 + 25, T0 + 30]
    assert hist.points(since=T0 + 100).t == []


def test_24_hours_are_kept_and_no_more(hist, tmp_path):
    feed(hist, T0, 25 * 3600, step=BUCKET, watts=1000.0)
    series = hist.points()
    assert len(series) == POINTS_24H == 17_280
    assert series.t[-1] - series.t[0] == WINDOW - BUCKET
    assert len(hist) == POINTS_24H
    rows = sqlite3.connect(tmp_path / FILENAME).execute("SELECT COUNT(*) FROM points").fetchone()
    assert rows[0] <= POINTS_24H + 1  # the file is bounded too (one point older: the 24 h base)
    # 1 kW for 24 h, from the register (to within one bucket)
    assert hist.energy_last_24h() == pytest.approx(24.0, abs=0.01)


def test_a_long_run_keeps_the_file_small(tmp_path, clock):
    with History(tmp_path, clock=clock) as h:
        feed(h, T0, 3 * 86_400, step=BUCKET)
    size = sum(f.stat().st_size for f in tmp_path.iterdir())
    assert size < 8 * 1024 * 1024


# ------------------------------------------------------------------------------------------
# persistence


def test_reopen_keeps_the_graph_and_the_totals(tmp_path, clock):
    with History(tmp_path, clock=clock) as h:
        wh = feed(h, T0, 2 * 3600, step=1.0, watts=720.0)
        before = (h.points(), h.daily_totals(), h.energy_last_24h())
    with History(tmp_path, clock=clock) as h:
        # close() stored the bucket in progress too, as the last point
        assert h.points().t == before[0].t + [T0 + 7195]
        assert h.points().active_power[:-1] == before[0].active_power
        assert (h.daily_totals(), h.energy_last_24h()) == before[1:]
        assert len(h.points()) == 2 * 3600 // BUCKET
        assert h.energy_total() == pytest.approx(wh)
        assert h.latest() is None and h.is_stale()  # nothing received since the restart
        # samples in or before the stored buckets are refused; later ones continue the series
        assert not h.add(s(T0 + 7197.5, wh + 1))
        assert not h.add(s(T0 + 7199.5, wh + 1))  # after the last sample, in a closed bucket
        assert h.rejected["out_of_order"] == 2
        assert h.add(s(T0 + 7200, wh + 0.2))
        assert h.add(s(T0 + 7205, wh + 1.2))
        assert h.points().t[-1] == T0 + 7200
        assert h.energy_last_24h() == pytest.approx(before[2] + 1.2 / 1000)


_WRITER = textwrap.dedent("""
    import sys, time
    from c1222.ihd.history import History, Sample
    state, t0, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    h = History(state, clock=lambda: t0 + 10 ** 6)
    print("open", flush=True)
    k = 0
    while n < 0 or k < n:
        h.add(Sample(t0 + k, 230.0, 2.0, 440.0, 460.0, 0.95, 5000.0 + k))
        k += 1
        if k == n:
            print("written", flush=True)
    time.sleep(60)
""")


def _writer(tmp_path: Path, n: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(T0), str(n)],
                            stdout=subprocess.PIPE, text=True, env=env)


def test_kill_9_loses_at_most_the_bucket_in_progress(tmp_path, clock):
    proc = _writer(tmp_path, 103)  # buckets 0..19 closed, bucket 20 holds 3 samples
    try:
        assert proc.stdout.readline().strip() == "open"
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    with History(tmp_path, clock=clock) as h:
        pts = h.point_list(since=0)
        assert [p.t for p in pts] == [T0 + 5 * k for k in range(20)]
        assert pts[-1].energy_wh == 5099.0  # sample 99, the last of a closed bucket
        assert h.energy_total() == 5099.0
        # samples 100..102 (3 s) were lost; the series goes on from the next bucket
        assert h.add(Sample(T0 + 105, 230.0, 2.0, 440.0, 460.0, 0.95, 5105.0))


def test_kill_9_at_any_moment_leaves_a_readable_file(tmp_path, clock):
    proc = _writer(tmp_path, -1)  # writes as fast as it can until killed
    try:
        assert proc.stdout.readline().strip() == "open"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with History(tmp_path, clock=clock) as h:
        t = h.points(since=0).t
        assert t, "nothing was stored in 0.3 s of writing"
        assert t == list(range(T0, t[-1] + 1, BUCKET))  # every closed bucket, in order
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_a_failing_disk_does_not_stop_the_display(hist, tmp_path, clock):
    hist.add(s(T0, 1.0))
    hist._db.execute("PRAGMA query_only=1")  # every write now fails, as on a full disk
    for k in range(1, 20):
        assert hist.add(s(T0 + k, 1.0 + k))
    assert hist.write_errors == 3 and "readonly" in hist.last_write_error
    assert hist.points(since=0).t == [T0, T0 + 5, T0 + 10]  # the graph goes on
    hist._db.execute("PRAGMA query_only=0")
    hist.add(s(T0 + 20, 21.0))
    hist.close()
    with History(tmp_path, clock=clock) as again:
        assert again.points(since=0).t == [T0 + 15, T0 + 20]
    assert not hist.add(s(T0 + 21, 22.0)) and hist.rejected["closed"] == 1


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path, clock):
    (tmp_path / FILENAME).write_bytes(b"this is not SQLite" * 100)
    with History(tmp_path, clock=clock) as h:
        assert h.add(s(T0, 1.0))
    assert len(list(tmp_path.glob(f"{FILENAME}.corrupt-*"))) == 1


# ------------------------------------------------------------------------------------------
# energy


def test_energy_comes_from_the_register_not_from_power(hist):
    # the power field says 0 W, the register says 2 kW: the register is what is billed
    with hist.batch():
        for k in range(3600):
            hist.add(s(T0 + k, 10_000.0 + 2000.0 * k / 3600, p=0.0))
    # from the end of the oldest point (sample 4) to the latest sample (3599)
    assert hist.energy_last_24h() == pytest.approx(2.0 * (3599 - 4) / 3600, abs=1e-9)
    assert hist.daily_totals()[-1].kwh == pytest.approx(2.0 * 3599 / 3600, abs=1e-9)
    assert hist.energy_total() == pytest.approx(10_000.0 + 2000.0 * 3599 / 3600)


def test_energy_last_24h_counts_only_the_last_24h(hist):
    wh = feed(hist, T0, 86_400, step=BUCKET, watts=3000.0)  # first day: 3 kW
    feed(hist, T0 + 86_400, 86_400, step=BUCKET, watts=500.0, wh=wh)  # second day: 0.5 kW
    assert hist.energy_last_24h() == pytest.approx(12.0, abs=0.01)


def test_month_to_date_follows_the_month_in_seoul(tmp_path, clock):
    # 2026-06-01 00:00 KST is 2026-05-31 15:00 UTC: in Seoul it is June, in UTC still May
    june = int(datetime(2026, 6, 1, tzinfo=SEOUL).timestamp())
    clock.now = june + 86_400
    results = {}
    for tz in ("Asia/Seoul", "UTC"):
        with History(tmp_path / tz.replace("/", "_"), tz=tz, clock=clock) as h:
            with h.batch():
                wh = 50_000.0
                for k in range(-3600, 3601):  # an hour at 1 kW before, an hour at 2 kW after
                    h.add(s(june + k, wh))
                    wh += (1000.0 if k < 0 else 2000.0) / 3600
            results[tz] = (h.month_to_date_kwh(june + 3600),
                           [(d.day, round(d.kwh, 6)) for d in h.daily_totals()])
            assert h.month_to_date_kwh(datetime(2026, 7, 2, tzinfo=SEOUL)) == 0.0
    # the register at the month's first sample (00:00 KST) vs now
    assert results["Asia/Seoul"][0] == pytest.approx(2.0)
    assert results["Asia/Seoul"][1] == [(date(2026, 5, 31), 1.0), (date(2026, 6, 1), 2.0)]
    assert results["UTC"][0] == pytest.approx(3.0)
    assert results["UTC"][1] == [(date(2026, 5, 31), 3.0)]


def test_daily_totals_per_local_day_and_their_month_sum(hist):
    midnight = int(datetime(2026, 5, 9, tzinfo=SEOUL).timestamp())
    wh = 0.0
    with hist.batch():
        for day, watts in enumerate((1000.0, 500.0, 2000.0)):
            for k in range(0, 86_400, 60):
                hist.add(s(midnight + day * 86_400 + k, wh))
                wh += watts * 60 / 3600
    totals = hist.daily_totals()
    assert [d.day for d in totals] == [date(2026, 5, 9), date(2026, 5, 10), date(2026, 5, 11)]
    # from each day's first sample to the next day's first sample (the last: to the latest)
    assert [round(d.kwh, 3) for d in totals] == [24.0, 12.0, 47.967]
    assert hist.month_to_date_kwh(midnight + 3 * 86_400 - 1) == pytest.approx(
        sum(d.kwh for d in totals))


def test_energy_used_while_the_display_was_off_goes_to_the_day_before_the_gap(hist):
    midnight = int(datetime(2026, 5, 9, tzinfo=SEOUL).timestamp())
    hist.add(s(midnight + 3600, 1000.0))
    hist.add(s(midnight + 7200, 2000.0))
    hist.add(s(midnight + 2 * 86_400 + 60, 9000.0))  # two days later
    assert [(d.day.day, d.kwh) for d in hist.daily_totals()] == [(9, 8.0), (11, 0.0)]


def test_daily_totals_keep_400_days(tmp_path, clock):
    clock.now = T0 + 420 * 86_400
    with History(tmp_path, clock=clock) as h:
        with h.batch():
            for k in range(410 * 4):
                h.add(s(T0 + k * 21_600, 1000.0 + k))
        assert len(h.daily_totals()) == KEEP_DAYS
    with History(tmp_path, clock=clock) as h:
        assert len(h.daily_totals()) == KEEP_DAYS


# ------------------------------------------------------------------------------------------
# the rules for bad data


def test_a_register_going_backwards_is_a_reset_and_adds_nothing(hist):
    hist.add(s(T0, 5000.0))
    hist.add(s(T0 + 1, 5001.0))
    assert hist.add(s(T0 + 2, 3.0))  # meter replaced: its register starts near zero
    assert hist.add(s(T0 + 3, 4.0))
    assert hist.register_resets == 1
    assert hist.energy_total() == 4.0  # the register, as the meter shows it
    assert hist.energy_last_24h() == pytest.approx(0.002)  # 1 Wh before, 1 Wh after
    assert hist.daily_totals()[-1].kwh == pytest.approx(0.002)


def test_an_impossible_jump_forward_is_a_discontinuity_too(hist):
    hist.add(s(T0, 5000.0))
    hist.add(s(T0 + 1, 5_000_000.0))  # 5 MWh in one second is not consumption
    hist.add(s(T0 + 2, 5_000_001.0))
    assert hist.register_resets == 1
    assert hist.energy_last_24h() == pytest.approx(0.001)
    # a long gap allows a large but possible step: 10 kWh over 2 h is 5 kW
    hist.add(s(T0 + 7202, 5_010_001.0))
    assert hist.register_resets == 1
    assert hist.daily_totals()[-1].kwh == pytest.approx(10.001)


@pytest.mark.parametrize("bad, reason", [
    (s(math.nan, 1.0), "not_finite"),
    (s(T0, math.inf), "not_finite"),
    (s(T0, 1.0, p=math.nan), "not_finite"),
    (s(-5.0, 1.0), "bad_time"),
    (s(0.0, 1.0), "bad_time"),
    (s(T0, -1.0), "out_of_range"),
    (s(T0, 1.0, v=-220.0), "out_of_range"),
    (s(T0, 1.0, pf=1.5), "out_of_range"),
    (Sample("soon", 1, 1, 1, 1, 1, 1), "malformed"),  # type: ignore[arg-type]
    (None, "malformed"),
    (s(T0 + 3 * 86_400 + 10 * 86_400, 1.0), "future"),
])
def test_garbage_is_refused_and_counted(hist, tmp_path, clock, bad, reason):
    assert hist.add(s(T0 - 10, 0.5))
    assert hist.add(bad) is False
    assert hist.rejected == {reason: 1}
    assert hist.add(s(T0 + 1, 1.5))
    hist.close()
    with History(tmp_path, clock=clock) as again:
        assert again.points(since=0).t == [T0 - 10, T0]
        assert again.energy_total() == 1.5


def test_duplicates_and_out_of_order_samples_are_dropped(hist):
    assert hist.add(s(T0 + 10, 100.0))
    assert not hist.add(s(T0 + 10, 100.0))
    assert not hist.add(s(T0 + 9, 99.0))
    assert hist.rejected == {"duplicate": 1, "out_of_order": 1}
    assert hist.seq == 1


def test_negative_power_is_export_and_accepted(hist):
    assert hist.add(s(T0, 100.0, p=-1500.0, pf=-0.98))
    assert hist.latest().active_power == -1500.0


# ------------------------------------------------------------------------------------------
# staleness and export


def test_stale_after_5_seconds_without_a_sample_on_the_displays_clock(hist, clock):
    assert hist.is_stale()  # nothing yet
    clock.now = T0 + 3600.0  # the meter's clock is an hour behind: received time counts
    assert hist.add(s(T0, 1.0))
    assert not hist.is_stale()
    assert not hist.is_stale(T0 + 3605.0)
    assert hist.is_stale(T0 + 3605.1)
    clock.now = T0 + 3610.0
    assert hist.is_stale()
    assert not hist.is_stale(after=30.0)


def test_csv_has_a_header_and_one_line_per_point(hist):
    feed(hist, T0, 20, watts=1234.5)
    lines = list(hist.csv(since=0))
    assert lines[0] == ("unix_time,interval_start,voltage_v,current_a,active_power_w,"
                        "apparent_power_va,power_factor,energy_wh\r\n")
    assert len(lines) == 1 + 3  # buckets T0, +5, +10 closed; +15 in progress
    first = lines[1].rstrip("\r\n").split(",")
    assert first[0] == str(T0)
    assert first[1] == "2026-05-09T12:00:00+09:00"  # the household's local time
    assert first[4] == "1234.5"
    assert list(hist.csv(since=T0)) == [lines[0]] + lines[2:]


# -- samples far apart (a sped-up meter): the buckets between are filled from the register ---


def test_a_span_between_samples_is_filled_from_the_register(hist):
    # --speed 60: one sample per simulated minute; 3.5 Wh in 60 s is 210 W on average
    hist.add(s(T0, 1000.0, p=250.0))
    hist.add(s(T0 + 60, 1003.5, p=190.0))
    hist.add(s(T0 + 120, 1007.0, p=230.0))  # closes the bucket of T0 + 60
    pts = hist.point_list()
    assert [p.t for p in pts] == list(range(T0, T0 + 120, BUCKET))  # 24 points, no hole
    assert [p.n for p in pts] == [1] + [0] * 11 + [1] + [0] * 11
    assert pts[0].active_power == 250.0 and pts[12].active_power == 190.0  # measured
    assert all(p.active_power == pytest.approx(210.0) for p in pts if p.n == 0)
    # the register known at the end of a filled bucket is the sample's before it, not made up
    assert {p.energy_wh for p in pts[1:12]} == {1000.0}
    series = hist.points()
    assert series.voltage[1] is None and series.power_factor[5] is None
    assert series.voltage[0] == 220.0 and series.active_power[3] == pytest.approx(210.0)
    assert hist.energy_last_24h() == pytest.approx(0.007)  # totals still from the register


@pytest.mark.parametrize("speed", [1, 5, 30, 60, 120, 600])
def test_every_speed_gives_a_graph_without_holes(tmp_path, clock, speed):
    with History(tmp_path, clock=clock) as h:
        wh = 5000.0
        for k in range(3 * 3600 // speed):  # 3 simulated hours at 210 W, one sample a second
            wh += 210.0 * speed / 3600.0
            h.add(s(T0 + k * speed, math.floor(wh), p=210.0))  # the register counts whole Wh
        t = h.points().t
        gaps = {b - a for a, b in zip(t, t[1:])}
        # sampled every 5 s or closer, or filled, except below 45 s: the page bridges those
        assert max(gaps) == max(BUCKET, speed if speed < 45 else BUCKET), sorted(gaps)
        p = [x for x, n in zip(h.points().active_power, (q.n for q in h.point_list())) if n == 0]
        if speed >= 45:  # whole-Wh register: the mean of a span is 3600 / span W or better
            assert all(abs(x - 210.0) <= 3600.0 / speed + 1e-9 for x in p)
            assert sum(p) / len(p) == pytest.approx(210.0, rel=0.05)


def test_what_is_not_filled(hist):
    hist.add(s(T0, 1000.0))
    hist.add(s(T0 + 40, 1005.0))  # shorter than FILL_MIN_SPAN
    hist.add(s(T0 + 40 + 3605, 1100.0))  # longer than FILL_MAX_SPAN: a gap
    hist.add(s(T0 + 3645 + 60, 900.0))  # the register went back: a reset, not a mean
    hist.add(s(T0 + 3645 + 120, 901.0))
    filled = [p for p in hist.point_list() if p.n == 0]
    assert [p.t for p in filled] == list(range(T0 + 3705 + BUCKET, T0 + 3765, BUCKET))
    assert hist.register_resets == 1


def test_filled_points_survive_a_restart_and_are_blank_in_the_csv(tmp_path, clock):
    with History(tmp_path, clock=clock) as h:
        h.add(s(T0, 1000.0))
        h.add(s(T0 + 600, 1035.0))  # --speed 600: 210 W over ten minutes
    with History(tmp_path, clock=clock) as h:
        pts = h.point_list()
        assert len(pts) == 121 and [p.n for p in pts].count(0) == 119
        lines = list(h.csv())
        assert lines[2] == (f"{T0 + 5},{datetime.fromtimestamp(T0 + 5, SEOUL).isoformat()},,,"
                            "210.0,,,1000.0\r\n")
        # the sample after the restart continues the series, filled from the last register
        h.add(s(T0 + 1200, 1070.0))
        h.add(s(T0 + 1201, 1070.0))
        t = h.points().t
        assert {b - a for a, b in zip(t, t[1:])} == {BUCKET}


def test_month_first_reading_is_the_first_sample_of_the_local_month(tmp_path, clock):
    with History(tmp_path, clock=clock) as h:
        assert h.month_first_reading(T0) is None
        h.add(s(T0 + 7, 1000.0))
        h.add(s(T0 + 8, 1000.1))
        assert h.month_first_reading(T0 + 8) == T0 + 7
        assert h.month_first_reading(T0 + 40 * 86_400) is None  # another month: no data
    with History(tmp_path, clock=clock) as h:  # kept in the file
        assert h.month_first_reading(T0 + 8) == T0 + 7


def test_a_days_table_from_before_first_reading_times_is_upgraded(tmp_path, clock):
    db = sqlite3.connect(tmp_path / FILENAME)
    db.executescript("""
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES('schema', '1');
        CREATE TABLE days(day TEXT PRIMARY KEY, first_counted REAL NOT NULL,
            last_counted REAL NOT NULL, first_wh REAL NOT NULL, last_wh REAL NOT NULL);
        INSERT INTO days VALUES('2026-05-09', 1000, 1500, 1000, 1500);
    """)
    db.commit()
    db.close()
    with History(tmp_path, clock=clock) as h:
        assert h.daily_totals()[0].kwh == 0.5
        # the day's local midnight stands for its unknown first sample
        assert h.month_first_reading(T0) == datetime(2026, 5, 9, tzinfo=SEOUL).timestamp()
        h.add(s(T0 + 86_400, 1600.0))  # the next day is stored with its time
        assert h.month_first_reading(T0 + 86_400) == datetime(2026, 5, 9,
                                                               tzinfo=SEOUL).timestamp()


def test_a_sped_up_meter_keeps_being_accepted_past_a_day_ahead_of_the_wall_clock(tmp_path):
    # `--speed 600`: the meter's clock is a day ahead of ours after 144 real seconds; the
    # display must go on (it stopped there: every sample was "future")
    clock = Clock(T0)
    with History(tmp_path, clock=clock) as h:
        wh = 1000.0
        for k in range(600):  # ten real minutes, one sample a real second
            clock.now = T0 + k
            wh += 210.0 * 600 / 3600
            assert h.add(s(T0 + 600 * k, wh, p=210.0)), (k, h.rejected)
        assert h.rejected == {}
        assert h.latest().time - clock.now > 4 * 86_400


def test_one_bad_time_far_ahead_is_refused_but_a_clock_set_forward_is_followed(hist, clock):
    hist.add(s(T0, 1000.0))
    hist.add(s(T0 + 1, 1000.1))
    assert not hist.add(s(T0 + 400 * 86_400, 1000.2))  # a garbled time stamp: refused ...
    assert hist.add(s(T0 + 2, 1000.3))  # ... and it does not block the series
    assert hist.rejected["future"] == 1
    # the meter's clock really jumps forward: after three consistent samples it is followed
    jump = T0 + 30 * 86_400
    results = [hist.add(s(jump + k, 1000.4 + k / 10)) for k in range(4)]
    assert results == [False, False, True, True]
    assert hist.latest().time == jump + 3
