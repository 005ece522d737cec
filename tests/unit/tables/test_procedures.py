"""Procedures through Tables 7 and 8 (docs/spec c1219 sections 5.7, 5.8, 15.3)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from c1222.tables.decade6 import LpSetStatusRcd
from c1222.tables.procedures import (
    HOOK_NAMES, MfgProc, ProcedureOutcome, ProcResult, Selector, StdProc, load_disconnected,
    table7_request,
)
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.types import TimeDate

NOW = TimeDate(2024, 3, 15, 13, 45, 30)


@pytest.fixture()
def meter():
    return build_tables(now=NOW)


@pytest.fixture()
def op(meter):
    return meter.store.policy.authenticate(2, b"PASSWORD")


def run(meter, op, number, parm=b"", *, seq=0x2A, mfg=False, selector=0, now=NOW):
    """Write Table 7 as a head-end would, then read Table 8; returns (result, resp_data)."""
    store = meter.store
    store.full_write(7, table7_request(store, number, seq, parm, mfg=mfg, selector=selector),
                     principal=op, now=now)
    t8 = store.full_read(8, principal=op)
    assert t8[2] == seq  # SEQ_NBR echoed
    return t8[3], t8[4:]


def test_spec_example_remote_reset(meter, op) -> None:
    # Section 5.7: write 09 00 2A 01 to Table 7, Table 8 reads 09 00 2A 00.
    meter.store.full_write(7, bytes.fromhex("09002A01"), principal=op, now=NOW)
    assert meter.store.full_read(8, principal=op) == bytes.fromhex("09002A00")


def test_proc_id_follows_data_order() -> None:
    m = build_tables(MeterProfile(data_order=1))
    op = m.store.policy.authenticate(2, b"PASSWORD")
    m.store.full_write(7, bytes.fromhex("00092A01"), principal=op)
    assert m.store.full_read(8, principal=op) == bytes.fromhex("00092A00")


def test_unknown_procedure_gives_result_6(meter, op) -> None:
    assert run(meter, op, 99) == (ProcResult.UNRECOGNIZED, b"")
    assert run(meter, op, 11) == (ProcResult.UNRECOGNIZED, b"")  # not in STD_PROC_USED
    assert run(meter, op, 5, mfg=True) == (ProcResult.UNRECOGNIZED, b"")


def test_no_authorization_gives_result_5(meter) -> None:
    # A user allowed to write Table 7 but not to run "clear data".
    from c1222.tables.access import GROUP_PROCEDURE, User

    m = build_tables(MeterProfile(users=(User(3, b"FIELD", GROUP_PROCEDURE),)))
    field = m.store.policy.authenticate(3, b"FIELD")
    assert run(m, field, StdProc.CLEAR_DATA) == (ProcResult.NO_AUTHORIZATION, b"")
    assert run(m, field, StdProc.CLEAR_STD_STATUS_FLAGS) == (ProcResult.COMPLETED, b"")


def test_parameters_too_long_give_result_2(meter, op) -> None:
    assert run(meter, op, StdProc.CLEAR_DATA, bytes(17)) == (ProcResult.INVALID_PARAMETER, b"")


def test_selectors(meter, op) -> None:
    store = meter.store
    run(meter, op, StdProc.CLEAR_STD_STATUS_FLAGS, seq=1)
    # 2 = do not post: Table 8 keeps the previous response.
    store.full_write(7, table7_request(store, 7, 2, selector=Selector.DO_NOT_POST), principal=op)
    assert store.full_read(8, principal=op)[2] == 1
    # 1 = post on exception only.
    store.full_write(7, table7_request(store, 7, 3, selector=Selector.POST_ON_EXCEPTION),
                     principal=op)
    assert store.full_read(8, principal=op)[2] == 1
    store.full_write(7, table7_request(store, 99, 4, selector=Selector.POST_ON_EXCEPTION),
                     principal=op)
    assert store.full_read(8, principal=op)[2:4] == bytes([4, ProcResult.UNRECOGNIZED])
    assert run(meter, op, 7, selector=5) == (ProcResult.INVALID_PARAMETER, b"")


def _dirty(meter):
    """Put energy, load-profile and log data into the store."""
    s = meter.store
    st23 = s.get(23)
    s.put(23, replace(st23, tot_data_block=replace(st23.tot_data_block, summations=(1234567,))))
    lp = s.get(64)
    blk = lp.lp_blk_dat[0]
    first = replace(blk.lp_int[0], int_data=(812, 24012))
    s.put(64, replace(lp, lp_blk_dat=(replace(blk, lp_int=(first, *blk.lp_int[1:])),
                                      *lp.lp_blk_dat[1:])))
    st63 = s.get(63)
    s.put(63, st63.with_status_set(1, replace(st63.lp_status_set1, nbr_valid_blocks=3,
                                              last_block_element=2, last_block_seq_nbr=2,
                                              nbr_unread_blocks=3, nbr_valid_int=54)))
    st3 = s.get(3)
    s.put(3, replace(st3, ed_std_status1=replace(st3.ed_std_status1, power_failure=True,
                                                  clock_error=True),
                     ed_mfg_status=frozenset({0, 5})))


def test_clear_data(meter, op) -> None:
    _dirty(meter)
    calls = []
    meter.hooks.register("clear_data", lambda call, store: calls.append(call.number))
    assert run(meter, op, StdProc.CLEAR_DATA) == (ProcResult.COMPLETED, b"")
    s = meter.store
    assert calls == [3]
    assert s.get(23).tot_data_block.summations == (0,)
    assert s.get_bytes(64) == bytes(len(s.get_bytes(64)))
    status = s.get(63).lp_status_set1
    assert (status.nbr_valid_blocks, status.nbr_unread_blocks, status.nbr_valid_int) == (0, 0, 0)
    assert status.last_block_seq_nbr == 2  # sequence numbers keep counting
    log = s.get(74)
    # The cleared log holds "history log cleared" (16) then "procedure invoked" (9).
    codes = [e.history_code.tbl_proc_nbr for e in log.entries[: log.nbr_valid_entries]]
    assert codes == [16, 9]


def test_cold_start(meter, op) -> None:
    _dirty(meter)
    run(meter, op, StdProc.CHANGE_MODE, bytes([4]))
    calls = []
    meter.hooks.register("cold_start", lambda call, store: calls.append("cold"))
    assert run(meter, op, StdProc.COLD_START) == (ProcResult.COMPLETED, b"")
    s = meter.store
    st3 = s.get(3)
    assert calls == ["cold"]
    assert st3.ed_mode.metering and not st3.ed_mode.meter_shop_mode
    assert not st3.ed_std_status1.power_failure
    assert st3.ed_mfg_status == {0}  # the service-switch state is live, not cleared
    assert s.get(23).tot_data_block.summations == (0,)
    assert run(meter, op, StdProc.COLD_START, b"\x01") == (ProcResult.INVALID_PARAMETER, b"")


def test_reset_list_pointers(meter, op) -> None:
    _dirty(meter)
    assert run(meter, op, StdProc.RESET_LIST_POINTERS, bytes([3])) == (ProcResult.COMPLETED, b"")
    status: LpSetStatusRcd = meter.store.get(63).lp_status_set1
    assert status.nbr_valid_blocks == status.nbr_unread_blocks == status.last_block_element == 0
    assert run(meter, op, StdProc.RESET_LIST_POINTERS, bytes([7])) == (ProcResult.COMPLETED, b"")
    log = meter.store.get(74)
    # Reset leaves only the entries logged after it (event 14, then procedure invoked 9).
    assert log.nbr_valid_entries == 2
    assert run(meter, op, StdProc.RESET_LIST_POINTERS, bytes([0])) == (ProcResult.COMPLETED, b"")
    assert run(meter, op, StdProc.RESET_LIST_POINTERS, bytes([4])) == \
        (ProcResult.INVALID_PARAMETER, b"")  # LP set 2 is not configured
    assert run(meter, op, StdProc.RESET_LIST_POINTERS) == (ProcResult.INVALID_PARAMETER, b"")


def test_update_last_read_entry(meter, op) -> None:
    _dirty(meter)
    parm = bytes([3]) + (2).to_bytes(2, "little")
    assert run(meter, op, StdProc.UPDATE_LAST_READ_ENTRY, parm) == (ProcResult.COMPLETED, parm)
    assert meter.store.get(63).lp_status_set1.nbr_unread_blocks == 1
    too_many = bytes([3]) + (2).to_bytes(2, "little")
    assert run(meter, op, StdProc.UPDATE_LAST_READ_ENTRY, too_many) == \
        (ProcResult.INVALID_PARAMETER, b"")
    unread = meter.store.get(74).nbr_unread_entries
    parm = bytes([7]) + unread.to_bytes(2, "little")
    assert run(meter, op, StdProc.UPDATE_LAST_READ_ENTRY, parm)[0] == ProcResult.COMPLETED
    # Acknowledging logged "updated list pointers" and "procedure invoked": 2 unread now.
    assert meter.store.get(74).nbr_unread_entries == 2
    assert run(meter, op, StdProc.UPDATE_LAST_READ_ENTRY, bytes([0, 1, 0]))[0] == \
        ProcResult.INVALID_PARAMETER  # "all lists" is not one list


def test_change_mode(meter, op) -> None:
    assert run(meter, op, StdProc.CHANGE_MODE, bytes([2])) == (ProcResult.COMPLETED, b"")
    mode = meter.store.get(3).ed_mode
    assert mode.test_mode and not mode.metering
    assert meter.store.get_bytes(3)[0] == 2
    assert run(meter, op, StdProc.CHANGE_MODE, bytes([0x10]))[0] == ProcResult.INVALID_PARAMETER
    assert run(meter, op, StdProc.CHANGE_MODE, bytes([0]))[0] == ProcResult.INVALID_PARAMETER


def test_clear_status_flags(meter, op) -> None:
    _dirty(meter)
    assert run(meter, op, StdProc.CLEAR_STD_STATUS_FLAGS) == (ProcResult.COMPLETED, b"")
    st3 = meter.store.get(3)
    assert not st3.ed_std_status1.power_failure and st3.ed_mfg_status == {0, 5}
    assert run(meter, op, StdProc.CLEAR_MFG_STATUS_FLAGS) == (ProcResult.COMPLETED, b"")
    assert meter.store.get(3).ed_mfg_status == {0}


def test_clear_all_pending(meter, op) -> None:
    calls = []
    meter.hooks.register("clear_pending", lambda call, store: calls.append(call.seq_nbr))
    assert run(meter, op, StdProc.CLEAR_ALL_PENDING, seq=9) == (ProcResult.COMPLETED, b"")
    assert calls == [9]


def test_remote_reset_actions(meter, op) -> None:
    seen = []
    meter.hooks.register("demand_reset", lambda c, s: seen.append("demand"))
    meter.hooks.register("self_read", lambda c, s: seen.append("self"))
    assert run(meter, op, StdProc.REMOTE_RESET, bytes([3])) == (ProcResult.COMPLETED, b"")
    assert seen == ["demand", "self"]
    assert run(meter, op, StdProc.REMOTE_RESET, bytes([4]))[0] == ProcResult.INVALID_PARAMETER


def test_set_date_and_time(meter, op) -> None:
    moved = []
    meter.hooks.register("set_time", lambda call, store: moved.append(call.now))
    new = bytes([24, 6, 1, 8, 30, 0])  # 2024-06-01 08:30:00, TM_FORMAT 2
    parm = bytes([0x03]) + new + bytes([0x10])
    assert run(meter, op, StdProc.SET_DATE_TIME, parm) == (ProcResult.COMPLETED, b"")
    clock = meter.store.get(52)
    assert clock.clock_calendar == TimeDate(2024, 6, 1, 8, 30, 0)
    assert clock.time_date_qual.day_of_week == 6  # a Saturday
    assert meter.store.get(55).clock_calendar == clock.clock_calendar
    assert moved == [TimeDate(2024, 6, 1, 8, 30, 0)]
    log = meter.store.get(74)
    codes = [e.history_code.tbl_proc_nbr for e in log.entries[: log.nbr_valid_entries]]
    assert codes[-3:] == [3, 4, 9]  # old time, new time, procedure invoked
    # time only: the date stays
    parm = bytes([0x01]) + bytes([0, 1, 1, 23, 59, 58]) + bytes([0])
    assert run(meter, op, StdProc.SET_DATE_TIME, parm)[0] == ProcResult.COMPLETED
    assert meter.store.get(52).clock_calendar == TimeDate(2024, 6, 1, 23, 59, 58)
    bad_date = bytes([0x02]) + bytes([24, 2, 30, 0, 0, 0]) + bytes([0])
    assert run(meter, op, StdProc.SET_DATE_TIME, bad_date)[0] == ProcResult.INVALID_PARAMETER
    assert run(meter, op, StdProc.SET_DATE_TIME, b"\x03")[0] == ProcResult.INVALID_PARAMETER


def test_set_time_epoch_format() -> None:
    m = build_tables(MeterProfile(tm_format=4), now=NOW)
    op = m.store.policy.authenticate(2, b"PASSWORD")
    secs = (1717230600).to_bytes(4, "little")  # 2024-06-01 08:30:00 UTC
    assert run(m, op, StdProc.SET_DATE_TIME, b"\x03" + secs + b"\x00")[0] == ProcResult.COMPLETED
    assert m.store.get(52).clock_calendar == TimeDate(2024, 6, 1, 8, 30, 0)


def test_set_time_without_clock_is_conflict() -> None:
    m = build_tables(MeterProfile(tm_format=0))
    op = m.store.policy.authenticate(2, b"PASSWORD")
    assert run(m, op, StdProc.SET_DATE_TIME, b"\x03\x00")[0] == ProcResult.CONFLICT


def test_remote_disconnect_and_connect(meter, op) -> None:
    relay = []
    meter.hooks.register("remote_disconnect", lambda call, store: relay.append("open"))
    meter.hooks.register("remote_connect", lambda call, store: relay.append("close"))
    mp0 = MfgProc.REMOTE_CONNECT_DISCONNECT
    assert run(meter, op, mp0, b"\x00", mfg=True) == (ProcResult.COMPLETED, b"\x00")
    assert load_disconnected(meter.store)
    assert meter.store.full_read(8, principal=op)[:2] == bytes([0x00, 0x08])  # bit 11 = MFG
    assert run(meter, op, mp0, b"\x01", mfg=True) == (ProcResult.COMPLETED, b"\x01")
    assert not load_disconnected(meter.store)
    assert relay == ["open", "close"]
    assert run(meter, op, mp0, b"\x02", mfg=True)[0] == ProcResult.INVALID_PARAMETER


def test_hook_can_refuse(meter, op) -> None:
    meter.hooks.register("remote_disconnect",
                         lambda call, store: ProcedureOutcome(ProcResult.CONFLICT))
    mp0 = MfgProc.REMOTE_CONNECT_DISCONNECT
    assert run(meter, op, mp0, b"\x00", mfg=True) == (ProcResult.CONFLICT, b"")
    assert not load_disconnected(meter.store)  # the table effect did not happen


def test_unknown_hook_name_is_refused(meter) -> None:
    from c1222.errors import LocalProtocolError

    assert "remote_disconnect" in HOOK_NAMES
    with pytest.raises(LocalProtocolError):
        meter.hooks.register("launch_rockets", lambda c, s: None)


def test_write_table7_needs_permission(meter) -> None:
    from c1222.errors import ISC

    reader = meter.store.policy.authenticate(1, b"READER")
    with pytest.raises(ISC):
        meter.store.full_write(7, bytes.fromhex("03002A"), principal=reader)


@pytest.mark.parametrize("profile, now", [
    (MeterProfile(tm_format=0), NOW),  # no clock: entries carry no time
    (MeterProfile(tm_format=2), TimeDate(2095, 1, 1, 0, 0, 0)),  # beyond two-digit years
])
def test_history_stamp_when_time_cannot_be_coded(profile, now) -> None:
    m = build_tables(profile, now=NOW if profile.tm_format else None)
    op = m.store.policy.authenticate(2, b"PASSWORD")
    assert run(m, op, StdProc.CLEAR_STD_STATUS_FLAGS, now=now)[0] == ProcResult.COMPLETED
    log = m.store.get(74)
    assert log.nbr_valid_entries == 1
    entry = log.entries[0]
    assert entry.history_time is None or entry.history_time.to_datetime() is None
