"""Named values, history entries and load-profile intervals read back from raw tables."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from c1222.errors import DecodeError
from c1222.tables import decade2 as d2
from c1222.tables.lists import append_history, append_lp_interval
from c1222.tables.profile import build_tables
from c1222.tables.readings import (
    CONTEXT_TABLES,
    LOG_CONTEXT_TABLES,
    history_entries,
    lp_intervals,
    meter_time,
    meter_values,
)
from c1222.tables.types import TimeDate


def test_present_values_and_registers_in_engineering_units() -> None:
    store = build_tables().store
    store.put(28, d2.PresentRegisterData((), (1200, 1300, 22987, 5456, 923)))
    current = store.get(23)
    store.put(23, replace(current, tot_data_block=replace(current.tot_data_block,
                                                          summations=(5321,))))
    values = meter_values({n: store.get_bytes(n) for n in (*CONTEXT_TABLES, 23, 28)})
    assert values == pytest.approx({"active_power": 1200.0, "apparent_power": 1300.0,
                                    "voltage": 229.87, "current": 5.456,
                                    "power_factor": 0.923, "wh_delivered": 5321.0})


def test_a_missing_context_table_is_a_decode_error() -> None:
    store = build_tables().store
    with pytest.raises(DecodeError, match="table 12"):
        meter_values({n: store.get_bytes(n) for n in (0, 11, 21, 27, 28)})


def test_meter_clock() -> None:
    store = build_tables(now=TimeDate(2026, 7, 1, 12, 30, 5)).store
    when = meter_time({0: store.get_bytes(0), 52: store.get_bytes(52)})
    assert when == dt.datetime(2026, 7, 1, 12, 30, 5, tzinfo=dt.timezone.utc).timestamp()


def test_history_entries_oldest_first_across_the_wrap() -> None:
    store = build_tables().store
    size = store.get(71).nbr_history_entries
    for k in range(size + 5):  # wraps the circular log
        append_history(store, TimeDate(2026, 1, 1, 0, k // 60, k % 60), 2, user_id=k,
                       force=True)
    entries = history_entries({n: store.get_bytes(n) for n in (0, 71, 74)})
    assert len(entries) == size
    assert [e["user_id"] for e in entries] == list(range(5, size + 5))
    assert entries[-1]["seq"] - entries[0]["seq"] == size - 1


def test_load_profile_intervals_with_their_end_times() -> None:
    store = build_tables().store
    start = dt.datetime(2026, 1, 1)
    for k in range(100):  # more than one block of 96
        end = start + dt.timedelta(minutes=15 * (k + 1))
        append_lp_interval(store, 1, TimeDate.from_datetime(end), (k, 22000 + k))
    intervals = lp_intervals({n: store.get_bytes(n) for n in (*LOG_CONTEXT_TABLES, 64)})
    assert len(intervals) == 100
    assert intervals[0]["end"] == start + dt.timedelta(minutes=15)
    assert intervals[-1]["end"] == start + dt.timedelta(minutes=1500)
    assert [i["values"][0] for i in intervals] == list(range(100))


def test_every_reader_names_a_missing_table_with_a_decode_error() -> None:
    store = build_tables().store
    only0 = {0: store.get_bytes(0)}
    for read in (meter_time, history_entries, lp_intervals, meter_values):
        with pytest.raises(DecodeError, match="table"):
            read(only0)
