"""Circular lists: load-profile intervals and the history log (c1219 sections 10.3-11.4)."""

from __future__ import annotations

import pytest

from c1222.errors import LocalProtocolError
from c1222.tables import lists
from c1222.tables.decade6 import (
    EIS_POWER_FAIL, ReadingsRcd, channel_status, common_status, make_extended_status,
)
from c1222.tables.decade7 import EVENT_POWER_DOWN, EVENT_POWER_UP
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.types import TimeDate


def _store():
    return build_tables(MeterProfile(lp_nbr_blks=2, lp_nbr_blk_ints=2, nbr_history_entries=3),
                        now=TimeDate(2024, 3, 15, 0, 0, 0)).store


def test_lp_intervals_fill_blocks_and_wrap() -> None:
    s = _store()
    for k in range(5):
        hour, minute = divmod(15 * (k + 1), 60)
        lists.append_lp_interval(s, 1, TimeDate(2024, 3, 15, hour, minute), (800 + k, 24000),
                                 end_readings=(ReadingsRcd(1000 + k, None),
                                               ReadingsRcd(0, None)))
    st = s.get(63).lp_status_set1
    # 5 intervals in blocks of 2: blocks seq 0, 1, 2; the third overwrote element 0.
    assert (st.nbr_valid_blocks, st.last_block_element, st.last_block_seq_nbr) == (2, 0, 2)
    assert st.nbr_valid_int == 1 and st.nbr_unread_blocks == 2
    assert st.lp_set_status_flags.overflow_flag  # an unread block was overwritten
    newest = s.get(64).lp_blk_dat[0]
    assert newest.blk_end_time == TimeDate(2024, 3, 15, 1, 15)
    assert newest.lp_int[0].int_data == (804, 24000)
    assert newest.lp_int[1].int_data == (0, 0)  # cleared when the block restarted
    assert newest.end_readings[0].block_end_read == 1004
    assert s.get(64).lp_blk_dat[1].lp_int[1].int_data == (803, 24000)
    with pytest.raises(LocalProtocolError):
        lists.append_lp_interval(s, 2, None, (1, 2))


def test_extended_status_nibbles() -> None:
    eis = make_extended_status(2, EIS_POWER_FAIL, {1: 2, 2: 4})
    assert eis == (0x22, 0x40)
    assert common_status(eis) == EIS_POWER_FAIL
    assert channel_status(eis, 1) == 2 and channel_status(eis, 2) == 4
    s = _store()
    lists.append_lp_interval(s, 1, TimeDate(2024, 3, 15, 0, 15), (0, 0), extended_status=eis)
    assert s.get(64).lp_blk_dat[0].lp_int[0].extended_int_status == eis


def test_history_log_wraps() -> None:
    s = _store()
    for k in range(4):
        assert lists.append_history(s, TimeDate(2024, 3, 15, 1, k, 0),
                                    EVENT_POWER_DOWN if k % 2 else EVENT_POWER_UP)
    log = s.get(74)
    assert (log.nbr_valid_entries, log.last_entry_element, log.last_entry_seq_nbr) == (3, 0, 4)
    assert log.entries[0].history_seq_nbr == 4 and log.entries[1].history_seq_nbr == 2
    assert log.list_status.overflow_flag
    assert not lists.append_history(s, None, 99)  # not monitored in Table 73
    assert lists.acknowledge_history(s, 3) and s.get(74).nbr_unread_entries == 0
    assert not lists.acknowledge_history(s, 1)
