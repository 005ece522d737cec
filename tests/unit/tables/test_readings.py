"""Named values, history entries and load-profile intervals read back from raw tables."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from c1222.errors import DecodeError
from c1222.tables import decade2 as d2
from c1222.tables.lists import append_history, append_lp_interval
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.readings import (
    CONTEXT_TABLES,
    LOG_CONTEXT_TABLES,
    LP_CONTEXT_TABLES,
    ListStatus,
    Window,
    history_entries,
    history_entries_from_bytes,
    history_layout,
    history_status,
    lp_intervals,
    lp_intervals_from_bytes,
    lp_layout,
    meter_time,
    meter_values,
    unread_window,
)
from c1222.tables.types import NiFormat, TimeDate


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


# --------------------------------------------------------------------------- hostile tables


def _tables(store, numbers):  # type: ignore[no-untyped-def]
    return {n: store.get_bytes(n) for n in numbers}


@pytest.mark.parametrize("table", [27, 22])
def test_a_source_past_table_12_is_a_decode_error(table: int) -> None:
    store = build_tables().store
    if table == 27:
        store.put(27, d2.PresentRegisterSelect((), (1, 2, 3, 4, 200)))
    else:
        store.put(22, replace(store.get(22), summation_select=(6,)))  # Table 12 has 6
    with pytest.raises(DecodeError, match=f"Table {table} selects source"):
        meter_values(_tables(store, (*CONTEXT_TABLES, 23, 28)))


@pytest.mark.parametrize("text", [b"sNaN", b"NaN", b"Infinity", b"1E+999999"])
def test_a_value_that_is_not_a_finite_number_is_a_decode_error(text: bytes) -> None:
    store = build_tables(MeterProfile(ni_format1=NiFormat.FLOAT_CHAR12)).store
    data = bytearray(store.get_bytes(23))
    data[:12] = text.ljust(12)  # the first summation, a 12-character number
    store.put_bytes(23, bytes(data))
    with pytest.raises(DecodeError, match="not a finite number"):
        meter_values(_tables(store, (*CONTEXT_TABLES, 23)))


def test_list_pointers_outside_the_list_are_decode_errors() -> None:
    store = build_tables(MeterProfile(lp_nbr_blks=2, lp_nbr_blk_ints=2,
                                      nbr_history_entries=3)).store
    status = store.get(63)
    store.put(63, status.with_status_set(1, replace(status.lp_status_set1, nbr_valid_blocks=1,
                                                    last_block_element=2)))
    with pytest.raises(DecodeError, match="Table 63 points at block 2 of 2"):
        lp_layout(_tables(store, LP_CONTEXT_TABLES))
    store.put(63, status.with_status_set(1, replace(status.lp_status_set1, nbr_valid_int=3)))
    with pytest.raises(DecodeError, match="3 intervals in a block of 2"):
        lp_layout(_tables(store, LP_CONTEXT_TABLES))
    store.put(74, replace(store.get(74), nbr_valid_entries=1, last_entry_element=3))
    tables = _tables(store, (0, 71, 74))
    layout = history_layout(tables)
    with pytest.raises(DecodeError, match="Table 74 points at entry 3 of 3"):
        history_status(tables, layout, tables[74][:layout.header_size])


def test_a_bad_interval_format_is_a_decode_error_not_a_key_error() -> None:
    store = build_tables().store
    data = bytearray(store.get_bytes(62))
    data[6] = 3  # INT_FMT_CDE after two 3-byte source selectors: 3 is no format
    store.put_bytes(62, bytes(data))
    with pytest.raises(DecodeError):
        lp_layout(_tables(store, LP_CONTEXT_TABLES))


# --------------------------------------------------------------------------- incremental reads


def test_unread_window_reads_what_came_after_the_cursor() -> None:
    full = ListStatus(size=5, valid=5, last_element=1, last_seq=11)
    # nothing collected: every valid element, oldest (element 2) first, wrapping to 0..1
    assert unread_window(full, None, 100) == Window(7, ((2, 3), (0, 2)))
    assert unread_window(full, 11, 100).runs == ()  # nothing new
    assert unread_window(full, 9, 100) == Window(10, ((0, 2),))
    assert unread_window(full, 3, 100) == Window(7, ((2, 3), (0, 2)))  # fell off: all valid
    assert unread_window(full, 7, 2) == Window(8, ((3, 2),), left=2)  # bounded, oldest first
    assert unread_window(full, 20, 100) == Window(7, ((2, 3), (0, 2)))  # reset: went back
    assert unread_window(ListStatus(5, 0, 0, 0), None, 100).runs == ()
    assert unread_window(full, 7, 0) == Window(8, (), left=4)


def test_unread_window_across_the_32_bit_sequence_wrap() -> None:
    status = ListStatus(size=10, valid=10, last_element=4, last_seq=1)
    window = unread_window(status, (1 << 32) - 2, 100)  # ...fffe, ffff, 0, 1 are new
    assert window == Window((1 << 32) - 1, ((2, 3),))
    assert window.last_seq == 1 and window.count == 3


def test_blocks_read_incrementally_decode_as_the_whole_table_does() -> None:
    store = build_tables(MeterProfile(lp_nbr_blks=3, lp_nbr_blk_ints=4)).store
    start = dt.datetime(2026, 1, 1)
    for k in range(14):  # wraps the 3 blocks of 4 intervals; the newest holds 2
        end = start + dt.timedelta(minutes=15 * (k + 1))
        append_lp_interval(store, 1, TimeDate.from_datetime(end), (k, 22000 + k))
    tables = _tables(store, LP_CONTEXT_TABLES)
    layout = lp_layout(tables)
    assert layout.valid_ints == 2 and layout.status == ListStatus(3, 3, 0, 3)
    window = unread_window(layout.status, None, 100)
    table64 = store.get_bytes(64)
    size = layout.block_size
    assert layout.table_size == len(table64)
    data = b"".join(table64[e * size:(e + n) * size] for e, n in window.runs)
    got = lp_intervals_from_bytes(tables, layout, data, window.first_seq)
    assert got == lp_intervals(_tables(store, (*LOG_CONTEXT_TABLES, 64)))
    assert [i["values"][0] for i in got] == list(range(4, 14))
    with pytest.raises(DecodeError, match="not whole blocks"):
        lp_intervals_from_bytes(tables, layout, data[:-1], window.first_seq)


def test_history_entries_read_incrementally_decode_as_the_whole_table_does() -> None:
    store = build_tables().store
    for k in range(store.get(71).nbr_history_entries + 7):
        append_history(store, TimeDate(2026, 1, 1, 0, k // 60, k % 60), 2, user_id=k,
                       force=True)
    tables = _tables(store, (0, 71, 74))
    layout = history_layout(tables)
    assert layout.table_size == len(tables[74])
    status = history_status(tables, layout, tables[74][:layout.header_size])
    window = unread_window(status, status.last_seq - 10, 100)
    body = tables[74][layout.header_size:]
    data = b"".join(body[e * layout.entry_size:(e + n) * layout.entry_size]
                    for e, n in window.runs)
    got = history_entries_from_bytes(tables, layout, data, window.first_seq)
    assert got == history_entries(tables)[-10:]
