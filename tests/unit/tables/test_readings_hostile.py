"""Hostile tables for the readers a head-end runs on what a meter sends: whatever bytes a
meter puts in its tables, every reader of :mod:`c1222.tables.readings` gives a value or a
DecodeError, never another exception (issue 15, finding 6).

Each example takes a small meter's real tables and overwrites bytes of one or two of them
(the tables the readers use: dimensions, selections, list status and data), then runs every
reader, the incremental ones on the slices a head-end would read.
"""

from __future__ import annotations

import collections

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c1222.errors import DecodeError
from c1222.tables.lists import append_history, append_lp_interval
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.readings import (
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
from c1222.tables.types import TimeDate

_STORE = build_tables(MeterProfile(lp_nbr_blks=3, lp_nbr_blk_ints=4,
                                   nbr_history_entries=4)).store
for _k in range(9):
    append_lp_interval(_STORE, 1, TimeDate(2026, 1, 1, _k, 15, 0), (_k, 22000 + _k))
    append_history(_STORE, TimeDate(2026, 1, 1, _k, 0, 0), 2, user_id=_k, force=True)
_TABLES = {n: _STORE.get_bytes(n) for n in _STORE.numbers()}
#: The tables the readers read (Table 0 too: its formats size everything else).
TAMPERED = (0, 11, 12, 21, 22, 23, 27, 28, 52, 61, 62, 63, 64, 71, 74)
#: What the examples ended in, by reader: value, or the DecodeError subclass.
OUTCOMES: collections.Counter[str] = collections.Counter()


def _incremental(tables: dict[int, bytes]) -> None:
    layout = lp_layout(tables)
    window = unread_window(layout.status, None, 64)
    body = tables[64]
    data = b"".join(body[e * layout.block_size:(e + n) * layout.block_size]
                    for e, n in window.runs)
    if len(data) == window.count * layout.block_size:  # what the head-end's reads return
        lp_intervals_from_bytes(tables, layout, data, window.first_seq)


def _history(tables: dict[int, bytes]) -> None:
    layout = history_layout(tables)
    head = tables[74][:layout.header_size]
    if len(head) < layout.header_size:
        return
    status = history_status(tables, layout, head)
    window = unread_window(status, None, 64)
    body = tables[74][layout.header_size:]
    data = b"".join(body[e * layout.entry_size:(e + n) * layout.entry_size]
                    for e, n in window.runs)
    if len(data) == window.count * layout.entry_size:
        history_entries_from_bytes(tables, layout, data, window.first_seq)


READERS = {
    "meter_values": meter_values, "meter_time": meter_time, "lp_intervals": lp_intervals,
    "history_entries": history_entries, "lp incremental": _incremental,
    "history incremental": _history,
}


@st.composite
def tampered(draw: st.DrawFn) -> dict[int, bytes]:
    tables = dict(_TABLES)
    for number in draw(st.lists(st.sampled_from(TAMPERED), min_size=1, max_size=2,
                                unique=True)):
        data = bytearray(tables[number])
        how = draw(st.sampled_from(["bytes", "random", "resize"]))
        if how == "bytes" and data:  # a few bytes changed: gets past the first fields
            for _ in range(draw(st.integers(1, 4))):
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif how == "random":
            data = bytearray(draw(st.binary(min_size=len(data), max_size=len(data))))
        else:
            data = bytearray(draw(st.binary(max_size=len(data) + 8)))
        tables[number] = bytes(data)
    return tables


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tables=tampered())
def test_every_reader_gives_a_value_or_a_decode_error(tables: dict[int, bytes]) -> None:
    for name, read in READERS.items():
        try:
            read(tables)
            OUTCOMES[f"{name}: value"] += 1
        except DecodeError as exc:
            OUTCOMES[f"{name}: {type(exc).__name__}"] += 1


def test_the_untampered_tables_read() -> None:
    assert len(lp_intervals(_TABLES)) == 9 and len(history_entries(_TABLES)) == 4
    for read in READERS.values():
        read(_TABLES)
