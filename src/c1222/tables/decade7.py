"""Decade 7: logs, tables 70-76 (docs/spec c1219 section 11)."""

from __future__ import annotations

from c1222.tables.decade0 import TableIdbBfld
from c1222.tables.engine import (
    LTIME_DATE, UINT8, UINT16, UINT32, Binary, SetOf, bitfield, fld, flag, record,
)


@bitfield(1)
class LogFlags:
    """LOG_FLAGS (section 11.1)."""

    event_number_flag: bool = flag(0)
    hist_date_time_flag: bool = flag(1)
    hist_seq_nbr_flag: bool = flag(2)
    hist_inhibit_ovf_flag: bool = flag(3)
    event_inhibit_ovf_flag: bool = flag(4)


def _v2(s) -> bool:
    return s.tbl(0).std_version_no > 1


@record
class LogRcd:
    """Tables 70 DIM_LOG_TBL and 71 ACT_LOG_TBL (section 11.1): 9 bytes, 12 for version >= 2."""

    log_flags: LogFlags = fld(LogFlags)
    nbr_std_events: int = fld(UINT8)
    nbr_mfg_events: int = fld(UINT8)
    hist_data_length: int = fld(UINT8)
    event_data_length: int = fld(UINT8)
    nbr_history_entries: int = fld(UINT16)
    nbr_event_entries: int = fld(UINT16)
    ext_log_flags: int | None = fld(UINT8, when=_v2)
    nbr_program_tables: int | None = fld(UINT16, when=_v2)


def _st71(s) -> LogRcd:
    return s.tbl(71)


@record
class EventsId:
    """Table 72 EVENTS_ID_TBL (section 11.2): supported standard and manufacturer events."""

    std_events_supported: frozenset[int] = fld(SetOf(lambda s: _st71(s).nbr_std_events))
    mfg_events_supported: frozenset[int] = fld(SetOf(lambda s: _st71(s).nbr_mfg_events))


@record
class HistLogCtrl:
    """Table 73 HIST_LOG_CTRL_TBL (section 11.3): what the history log monitors."""

    std_events_monitored_flags: frozenset[int] = fld(SetOf(lambda s: _st71(s).nbr_std_events))
    mfg_events_monitored_flags: frozenset[int] = fld(SetOf(lambda s: _st71(s).nbr_mfg_events))
    std_tbls_monitored_flags: frozenset[int] = fld(SetOf(lambda s: s.tbl(0).dim_std_tbls_used))
    mfg_tbls_monitored_flags: frozenset[int] = fld(SetOf(lambda s: s.tbl(0).dim_mfg_tbls_used))
    std_proc_monitored_flags: frozenset[int] = fld(SetOf(lambda s: s.tbl(0).dim_std_proc_used))
    mfg_proc_monitored_flags: frozenset[int] = fld(SetOf(lambda s: s.tbl(0).dim_mfg_proc_used))


@bitfield(1)
class ListStatusBfld:
    """LIST_STATUS_BFLD of a log header (section 11.4)."""

    order: bool = flag(0)
    overflow_flag: bool = flag(1)
    list_type: bool = flag(2)  # 0 FIFO, 1 circular
    inhibit_overflow_flag: bool = flag(3)


@record
class HistoryEntryRcd:
    """One history-log entry (section 11.4)."""

    history_time: object = fld(LTIME_DATE, when=lambda s: _st71(s).log_flags.hist_date_time_flag)
    event_number: int | None = fld(UINT16, when=lambda s: _st71(s).log_flags.event_number_flag)
    history_seq_nbr: int | None = fld(UINT16, when=lambda s: _st71(s).log_flags.hist_seq_nbr_flag)
    user_id: int = fld(UINT16)
    history_code: TableIdbBfld = fld(TableIdbBfld)
    history_argument: bytes = fld(Binary(lambda s: _st71(s).hist_data_length))


@record
class HistLogData:
    """Table 74 HIST_LOG_DATA_TBL (section 11.4): 11-byte header + NBR_HISTORY_ENTRIES entries.

    The whole array is always present; entries beyond NBR_VALID_ENTRIES are unused.
    """

    list_status: ListStatusBfld = fld(ListStatusBfld)
    nbr_valid_entries: int = fld(UINT16)
    last_entry_element: int = fld(UINT16)
    last_entry_seq_nbr: int = fld(UINT32)
    nbr_unread_entries: int = fld(UINT16)
    entries: tuple[HistoryEntryRcd, ...] = fld(
        HistoryEntryRcd, count=lambda s: _st71(s).nbr_history_entries)


#: Standard event codes used by this package (section 11.6).
EVENT_POWER_DOWN = 1
EVENT_POWER_UP = 2
EVENT_TIME_CHANGED_OLD = 3
EVENT_TIME_CHANGED_NEW = 4
EVENT_PROCEDURE_INVOKED = 9
EVENT_TABLE_WRITTEN = 10
EVENT_RESET_LIST_POINTERS = 14
EVENT_UPDATED_LIST_POINTERS = 15
EVENT_HISTORY_LOG_CLEARED = 16
EVENT_DEMAND_RESET = 20
EVENT_SELF_READ = 21

__all__ = [
    "LogFlags", "LogRcd", "EventsId", "HistLogCtrl", "ListStatusBfld", "HistoryEntryRcd",
    "HistLogData", "EVENT_POWER_DOWN", "EVENT_POWER_UP", "EVENT_TIME_CHANGED_OLD",
    "EVENT_TIME_CHANGED_NEW", "EVENT_PROCEDURE_INVOKED", "EVENT_TABLE_WRITTEN",
    "EVENT_RESET_LIST_POINTERS", "EVENT_UPDATED_LIST_POINTERS", "EVENT_HISTORY_LOG_CLEARED",
    "EVENT_DEMAND_RESET", "EVENT_SELF_READ",
]
