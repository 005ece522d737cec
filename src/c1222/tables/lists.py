"""List tables: the history log (Table 74) and load-profile status (Table 63).

(docs/spec c1219 sections 10.3, 10.4, 11.4.) Helpers that append to and acknowledge the
circular lists held in a :class:`~c1222.tables.store.TableStore`, used by the procedures
and by the meter. The wrap-around rule (newest at LAST_*_ELEMENT, the oldest right after
it once the list is full) is the one the spec infers [UNVERIFIED].
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from c1222.errors import LocalProtocolError
from c1222.tables.decade0 import TableIdbBfld
from c1222.tables.decade6 import LP_SETS
from c1222.tables.decade7 import HistLogData, HistoryEntryRcd
from c1222.tables.engine import LTIME_DATE, Scope, blank_record
from c1222.tables.types import TimeDate

if TYPE_CHECKING:
    from c1222.tables.store import TableStore

HIST_LOG_DATA = 74
HIST_LOG_CTRL = 73
LP_STATUS = 63

#: LIST selector of procedures 4 and 5 [UNVERIFIED enumeration, section 5.8 / 18.1]:
#: 0 all lists, 1 event log, 2 self-read list, 3-6 load-profile data sets 1-4, 7 history log.
LIST_ALL = 0
LIST_EVENT_LOG = 1
LIST_SELF_READ = 2
LIST_LP_SET1 = 3
LIST_HISTORY_LOG = 7


def lp_list(n: int) -> int:
    """The LIST selector of load-profile data set ``n``."""
    return LIST_LP_SET1 + n - 1


def append_history(store: TableStore, now: TimeDate | None, code: int, *, user_id: int = 0,
                   argument: bytes = b"", mfg: bool = False, force: bool = False) -> bool:
    """Append one entry to Table 74; returns False when there is no log or the event is not
    monitored in Table 73 (``force`` skips that check)."""
    if HIST_LOG_DATA not in store or 71 not in store:
        return False
    st71 = store.get(71)
    n = st71.nbr_history_entries
    if n == 0:
        return False
    if not force and HIST_LOG_CTRL in store and not mfg \
            and code not in store.get(HIST_LOG_CTRL).std_events_monitored_flags:
        return False
    log: HistLogData = store.get(HIST_LOG_DATA)
    if log.list_status.inhibit_overflow_flag and log.nbr_valid_entries >= n:
        return False
    element = (log.last_entry_element + 1) % n if log.nbr_valid_entries else 0
    seq = (log.last_entry_seq_nbr + 1) & 0xFFFFFFFF
    flags = st71.log_flags
    arg = argument.ljust(st71.hist_data_length, b"\x00")[: st71.hist_data_length]
    entry = HistoryEntryRcd(
        history_time=now if flags.hist_date_time_flag else None,
        event_number=code if flags.event_number_flag else None,
        history_seq_nbr=seq & 0xFFFF if flags.hist_seq_nbr_flag else None,
        user_id=user_id,
        history_code=TableIdbBfld(tbl_proc_nbr=code, std_vs_mfg_flag=mfg),
        history_argument=arg,
    )
    if flags.hist_date_time_flag and (now is None or not _representable(store, now)):
        # No usable time: stamp the cleared time rather than invent one.
        entry = replace(entry, history_time=LTIME_DATE.blank(Scope(store.env, {})))
    entries = list(log.entries)
    entries[element] = entry
    overflow = log.list_status.overflow_flag or log.nbr_unread_entries >= n
    store.put(HIST_LOG_DATA, replace(
        log,
        list_status=replace(log.list_status, overflow_flag=overflow),
        nbr_valid_entries=min(n, log.nbr_valid_entries + 1),
        last_entry_element=element,
        last_entry_seq_nbr=seq,
        nbr_unread_entries=min(n, log.nbr_unread_entries + 1),
        entries=tuple(entries),
    ))
    return True


def _representable(store: TableStore, now: TimeDate) -> bool:
    """True when ``now`` can be coded as LTIME_DATE under the store's TM_FORMAT."""
    try:
        LTIME_DATE.encode(now, Scope(store.env, {}), bytearray(), "history_time")
    except LocalProtocolError:
        return False
    return True


def clear_history(store: TableStore) -> None:
    """Empty Table 74 (entries cleared, counts zero, sequence number kept)."""
    if HIST_LOG_DATA not in store:
        return
    log = store.get(HIST_LOG_DATA)
    blank = blank_record(HistLogData, store.env)
    status = replace(log.list_status, overflow_flag=False)
    store.put(HIST_LOG_DATA, replace(blank, list_status=status,
                                     last_entry_seq_nbr=log.last_entry_seq_nbr))


def reset_history_pointers(store: TableStore) -> bool:
    """Procedure 4 on the history log: no valid or unread entries any more."""
    if HIST_LOG_DATA not in store:
        return False
    log = store.get(HIST_LOG_DATA)
    store.put(HIST_LOG_DATA, replace(
        log, list_status=replace(log.list_status, overflow_flag=False), nbr_valid_entries=0,
        last_entry_element=0, nbr_unread_entries=0))
    return True


def acknowledge_history(store: TableStore, entries_read: int) -> bool:
    """Procedure 5 on the history log: ``entries_read`` fewer unread entries; False if too many."""
    if HIST_LOG_DATA not in store:
        return False
    log = store.get(HIST_LOG_DATA)
    if entries_read > log.nbr_unread_entries:
        return False
    store.put(HIST_LOG_DATA, replace(
        log, list_status=replace(log.list_status, overflow_flag=False),
        nbr_unread_entries=log.nbr_unread_entries - entries_read))
    return True


def lp_sets_present(store: TableStore) -> list[int]:
    """The load-profile data sets (1-4) this store holds."""
    return [n for n in LP_SETS if 63 + n in store and LP_STATUS in store]


def reset_lp_pointers(store: TableStore, n: int) -> bool:
    """Procedure 4 on load-profile set ``n``: no valid or unread blocks any more."""
    if n not in lp_sets_present(store):
        return False
    status = store.get(LP_STATUS)
    cur = status.status_set(n)
    store.put(LP_STATUS, status.with_status_set(n, replace(
        cur, lp_set_status_flags=replace(cur.lp_set_status_flags, overflow_flag=False),
        nbr_valid_blocks=0, last_block_element=0, nbr_unread_blocks=0, nbr_valid_int=0)))
    return True


def acknowledge_lp(store: TableStore, n: int, blocks_read: int) -> bool:
    """Procedure 5 on load-profile set ``n``: ``blocks_read`` fewer unread blocks."""
    if n not in lp_sets_present(store):
        return False
    status = store.get(LP_STATUS)
    cur = status.status_set(n)
    if blocks_read > cur.nbr_unread_blocks:
        return False
    store.put(LP_STATUS, status.with_status_set(n, replace(
        cur, lp_set_status_flags=replace(cur.lp_set_status_flags, overflow_flag=False),
        nbr_unread_blocks=cur.nbr_unread_blocks - blocks_read)))
    return True


def append_lp_interval(store: TableStore, n: int, end_time: TimeDate | None,
                       int_data: tuple, *, extended_status: tuple[int, ...] | None = None,
                       end_readings: tuple | None = None) -> None:
    """Record one interval in load-profile set ``n`` (Tables 63 and 63 + n; section 15.4).

    Starts a new block when the newest one is full (circularly, setting OVERFLOW when an
    unread block is overwritten), stamps BLK_END_TIME with ``end_time`` and, when given,
    replaces the block's END_READINGS. ``extended_status`` defaults to all zeros.
    """
    if n not in lp_sets_present(store):
        raise LocalProtocolError(f"load-profile set {n} is not configured")
    dims = store.get(61).data_set(n)
    status_tbl = store.get(LP_STATUS)
    st = status_tbl.status_set(n)
    data = store.get(63 + n)
    blocks = list(data.lp_blk_dat)
    if dims.nbr_blks == 0 or dims.nbr_blk_ints == 0:
        raise LocalProtocolError(f"load-profile set {n} has no room")
    if st.nbr_valid_blocks == 0 or st.nbr_valid_int >= dims.nbr_blk_ints:
        # A new block: the next element, the next sequence number, all intervals cleared.
        first = st.nbr_valid_blocks == 0
        element = 0 if first else (st.last_block_element + 1) % dims.nbr_blks
        seq = st.last_block_seq_nbr + (0 if first and st.last_block_seq_nbr == 0 else 1)
        overflow = st.lp_set_status_flags.overflow_flag or st.nbr_unread_blocks >= dims.nbr_blks
        blank = blank_record(type(data), store.env, args={"set": n}).lp_blk_dat[0]
        blocks[element] = blank
        st = replace(st, lp_set_status_flags=replace(st.lp_set_status_flags,
                                                     overflow_flag=overflow),
                     nbr_valid_blocks=min(dims.nbr_blks, st.nbr_valid_blocks + 1),
                     last_block_element=element, last_block_seq_nbr=seq & 0xFFFFFFFF,
                     nbr_unread_blocks=min(dims.nbr_blks, st.nbr_unread_blocks + 1),
                     nbr_valid_int=0)
    block = blocks[st.last_block_element]
    interval = block.lp_int[st.nbr_valid_int]
    if interval.extended_int_status is not None:
        eis = extended_status if extended_status is not None else interval.extended_int_status
        interval = replace(interval, extended_int_status=tuple(eis))
    interval = replace(interval, int_data=tuple(int_data))
    ints = list(block.lp_int)
    ints[st.nbr_valid_int] = interval
    block = replace(block, blk_end_time=end_time, lp_int=tuple(ints))
    if end_readings is not None:
        block = replace(block, end_readings=tuple(end_readings))
    blocks[st.last_block_element] = block
    store.put(63 + n, replace(data, lp_blk_dat=tuple(blocks)))
    done = replace(st, nbr_valid_int=st.nbr_valid_int + 1)
    store.put(LP_STATUS, status_tbl.with_status_set(n, done))


def clear_lp(store: TableStore) -> None:
    """Clear every load-profile data set (Tables 64-67) and its status (Table 63)."""
    for n in lp_sets_present(store):
        number = 63 + n
        store.put(number, blank_record(type(store.get(number)), store.env, args={"set": n}))
        reset_lp_pointers(store, n)


__all__ = [
    "LIST_ALL", "LIST_EVENT_LOG", "LIST_SELF_READ", "LIST_LP_SET1", "LIST_HISTORY_LOG", "lp_list",
    "append_history", "clear_history", "reset_history_pointers", "acknowledge_history",
    "lp_sets_present", "reset_lp_pointers", "acknowledge_lp", "append_lp_interval", "clear_lp",
]
