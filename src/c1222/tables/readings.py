"""Named engineering values from a meter's raw tables (what a display or a head-end shows).

Table 28's present values and Table 23's summations are bare numbers; their meaning comes from
Table 27 (which source each present value is), Table 22 (which source each summation is),
Table 16/12 (each source's unit: ID_CODE, TIME_BASE and MULTIPLIER) and Table 0 (formats).
:func:`meter_values` reads all of that and names each value, in the unit's base (W, Wh, V, A).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from c1222.errors import ConfigurationError, DecodeError
from c1222.tables.decade6 import LpBlkDatRcd
from c1222.tables.decade7 import HistLogData, HistoryEntryRcd
from c1222.tables.engine import decode_record, record_size
from c1222.tables.registry import decode_table, make_env, table_size

#: Table 12 MULTIPLIER codes (spec c1219 section 5, Table 12 bits 11-13).
MULTIPLIERS = {0: 1.0, 1: 1e2, 2: 1e3, 3: 1e6, 4: 1e9, 5: 1e-2, 6: 1e-3, 7: 1e-6}
#: Names of the UOM ID_CODEs a household meter offers (time base 0 of ID 0 is energy).
QUANTITIES = {0: "active_power", 1: "reactive_power", 2: "apparent_power", 8: "voltage",
              12: "current", 24: "power_factor"}
ENERGY = {0: "wh_delivered", 1: "varh", 2: "vah"}
#: Tables :func:`meter_values` needs besides 23 and 28.
CONTEXT_TABLES = (0, 11, 12, 16, 21, 22, 27)
#: Tables :func:`history_entries` (74) and :func:`lp_intervals` (64) need besides their own.
LOG_CONTEXT_TABLES = (0, 61, 62, 63, 71)
#: Tables :func:`lp_layout` needs (Table 64's dimensions and the list status).
LP_CONTEXT_TABLES = (0, 61, 62, 63)
#: Tables :func:`history_layout` needs.
HISTORY_CONTEXT_TABLES = (0, 71)
#: The load-profile data set the readers read (Table 64).
LP_SET = 1
#: LAST_BLOCK_SEQ_NBR and LAST_ENTRY_SEQ_NBR are UINT32 and wrap.
SEQ_MOD = 1 << 32


def _pick(tables: Mapping[int, bytes], numbers: tuple[int, ...]) -> dict[int, bytes]:
    """The tables named, or DecodeError naming the first one missing."""
    for number in numbers:
        if number not in tables:
            raise DecodeError(f"table {number} is needed to read the values", 0,
                              f"table{number}")
    return {n: tables[n] for n in numbers}


def _uom(uom: Sequence[Any], source: int, table: int) -> Any:
    """The Table 12 entry of a source a selection table names; DecodeError past its end."""
    if not 0 <= source < len(uom):
        raise DecodeError(f"Table {table} selects source {source}, but Table 12 has "
                          f"{len(uom)} entries", 0, f"table{table}")
    return uom[source]


def _scaled(value: Any, entry: Any, where: str) -> float:
    """A value times its unit's multiplier, finite (DecodeError otherwise)."""
    return _number(_number(value, where) * MULTIPLIERS.get(entry.multiplier, 1.0), where)


def _unit_name(entry: Any, energy: bool) -> str:
    names = ENERGY if energy else QUANTITIES
    return names.get(entry.id_code, f"uom_{entry.id_code}")


def meter_values(tables: Mapping[int, bytes]) -> dict[str, float]:
    """``{"voltage": 229.87, "active_power": 1203.0, "wh_delivered": 5321.0, ...}`` from the
    raw bytes of :data:`CONTEXT_TABLES` and 23 and/or 28.

    Raises DecodeError when a table is missing or does not decode under Table 0.
    """
    try:
        gen = decode_table(0, tables[0])
        env = make_env(gen)
        dims = {n: decode_table(n, tables[n], env) for n in (11, 21)}
        env = make_env(gen, dims)
        uom = decode_table(12, tables[12], env).uom_entry
        out: dict[str, float] = {}
        if 28 in tables and 27 in tables:
            select = decode_table(27, tables[27], env).present_value_select
            present = decode_table(28, tables[28], env).present_value
        else:
            select, present = (), ()
        if 23 in tables and 22 in tables:
            sum_select = decode_table(22, tables[22], env).summation_select
            sums = decode_table(23, tables[23], env).tot_data_block.summations
        else:
            sum_select, sums = (), ()
    except KeyError as exc:
        raise DecodeError(f"table {exc.args[0]} is needed to read the values", 0,
                          f"table{exc.args[0]}") from None
    except ConfigurationError as exc:  # a dimension table that does not fit Table 0
        raise DecodeError(str(exc), 0, "values") from None
    for source, value in zip(select, present):
        entry = _uom(uom, source, 27)
        out[_unit_name(entry, energy=False)] = _scaled(value, entry, "table28")
    for source, value in zip(sum_select, sums):
        entry = _uom(uom, source, 22)
        out[_unit_name(entry, energy=True)] = _scaled(value, entry, "table23")
    return out


def meter_time(tables: Mapping[int, bytes]) -> float | None:
    """The meter's clock (Table 52, with Table 0; UTC) as Unix seconds, None without a clock.
    DecodeError for bytes that are not a valid date."""
    import calendar

    picked = _pick(tables, (0, 52))
    gen = decode_table(0, picked[0])
    clock = decode_table(52, picked[52], make_env(gen)).clock_calendar
    if clock is None:
        return None
    moment = clock.to_datetime()
    if moment is None:
        raise DecodeError("Table 52 does not hold a valid date", 0, "table52")
    return float(calendar.timegm(moment.timetuple()))


def decoded(tables: Mapping[int, bytes]) -> dict[int, Any]:
    """Every table decoded in ascending order, each with the tables before it as context
    (dimension tables have lower numbers than the tables they size). DecodeError if one
    does not decode; a table whose context is missing is a DecodeError too."""
    gen = decode_table(0, _pick(tables, (0,))[0])
    out: dict[int, Any] = {0: gen}
    for number in sorted(n for n in tables if n != 0):
        try:
            out[number] = decode_table(number, tables[number], make_env(gen, out))
        except ConfigurationError as exc:  # a context table that was not given
            raise DecodeError(str(exc), 0, f"table{number}") from None
    return out


def _number(value: Any, where: str) -> float:
    """A value as a finite float; DecodeError for NaN, infinities and signalling NaNs (a
    character NI format can spell them)."""
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise DecodeError(f"{where}: {str(value)[:24]!r} is not a number", 0, where) from None
    if not math.isfinite(out):
        raise DecodeError(f"{where}: {out} is not a finite number", 0, where)
    return out


# --------------------------------------------------------------------------- history log


def _history_entry(entry: Any, seq: int) -> dict[str, Any]:
    """One entry as the readers give it; ``seq`` when the entry carries no sequence number."""
    if entry.history_seq_nbr is not None:
        seq = entry.history_seq_nbr
    when = entry.history_time.to_datetime() if entry.history_time is not None else None
    return {"time": when, "seq": seq, "code": entry.history_code.tbl_proc_nbr,
            "mfg": entry.history_code.std_vs_mfg_flag, "user_id": entry.user_id,
            "argument": bytes(entry.history_argument)}


def history_entries(tables: Mapping[int, bytes]) -> list[dict[str, Any]]:
    """The valid entries of the history log (Table 74, with 0 and 71), oldest first:
    ``{"time": datetime | None, "seq": int, "code": int, "mfg": bool, "user_id": int,
    "argument": bytes}``."""
    recs = decoded(_pick(tables, (0, 71, 74)))
    log = recs[74]
    n = len(log.entries)
    count = min(log.nbr_valid_entries, n)
    # a circular list: the newest entry is at last_entry_element
    return [_history_entry(log.entries[(log.last_entry_element - count + 1 + k) % n],
                           log.last_entry_seq_nbr - count + 1 + k) for k in range(count)]


# --------------------------------------------------------------------------- load profile


def _block_intervals(block: Any, used: int, interval: dt.timedelta) -> list[dict[str, Any]]:
    """The first ``used`` intervals of one block, each with its end time (the block's end
    time minus the intervals after it); none when the block has no valid end time."""
    end = block.blk_end_time.to_datetime() if block.blk_end_time is not None else None
    if end is None:
        return []
    out: list[dict[str, Any]] = []
    for i in range(min(used, len(block.lp_int))):
        item = block.lp_int[i]
        try:
            when = end - (used - 1 - i) * interval
        except OverflowError:  # before year 1: not a time any reading can have
            continue
        out.append({"end": when,
                    "values": tuple(_number(v, "table64.int_data") for v in item.int_data),
                    "status": tuple(item.extended_int_status or ())})
    return out


def lp_intervals(tables: Mapping[int, bytes], set_number: int = 1) -> list[dict[str, Any]]:
    """The valid intervals of load-profile set 1 (Tables 61-64), oldest first:
    ``{"end": datetime, "values": (channel values as floats...), "status": (...)}``."""
    table = 63 + set_number
    recs = decoded(_pick(tables, (*LOG_CONTEXT_TABLES, table)))
    dims = recs[61].data_set(set_number)
    status = recs[63].status_set(set_number)
    if dims is None or status is None:
        raise DecodeError(f"load-profile set {set_number} is not in Table 0", 0, "table61")
    blocks = recs[table].lp_blk_dat
    interval = dt.timedelta(minutes=dims.max_int_time)
    out: list[dict[str, Any]] = []
    nblocks = min(status.nbr_valid_blocks, len(blocks))
    for k in range(nblocks):
        element = (status.last_block_element - nblocks + 1 + k) % len(blocks)
        used = status.nbr_valid_int if element == status.last_block_element \
            else dims.nbr_blk_ints
        out += _block_intervals(blocks[element], used, interval)
    return out


# --------------------------------------------------------------------------- incremental reads
#
# A head-end reads the load profile and the history log incrementally: the list status
# (Table 63, the Table 74 header) says where the newest element is and its sequence number;
# :func:`unread_window` says which elements came after the last one collected, and the
# ``*_from_bytes`` readers decode just those elements, read with partial reads.


@dataclass(frozen=True)
class ListStatus:
    """Where a circular list stands: ``size`` elements, ``valid`` of them valid (at most
    ``size``), the newest at ``last_element`` with sequence number ``last_seq``."""

    size: int
    valid: int
    last_element: int
    last_seq: int


@dataclass(frozen=True)
class Window:
    """Elements of a circular list to read: from sequence number ``first_seq``, ``runs``
    of ``(first element, count)`` oldest first (two when the window wraps); ``left`` more
    unread elements are newer than the window (a bound cut it short)."""

    first_seq: int
    runs: tuple[tuple[int, int], ...]
    left: int = 0

    @property
    def count(self) -> int:
        return sum(n for _element, n in self.runs)

    @property
    def last_seq(self) -> int:
        return (self.first_seq + self.count - 1) % SEQ_MOD


def unread_window(status: ListStatus, after: int | None, limit: int) -> Window:
    """The elements after sequence number ``after`` (None: nothing collected yet), at most
    ``limit`` of them, oldest first. Sequence numbers wrap at 2**32; one that went backwards
    (``after`` is ahead of the meter's newest: the meter was reset) reads the list again
    from its oldest valid element."""
    valid = min(status.valid, status.size)
    if valid <= 0:
        return Window(status.last_seq, ())
    oldest = valid - 1  # how far the oldest valid element is behind the newest
    if after is None:
        behind = oldest
    else:
        distance = (status.last_seq - after) % SEQ_MOD
        if distance == 0:
            return Window(status.last_seq, ())
        behind = oldest if distance >= SEQ_MOD // 2 else min(distance - 1, oldest)
    count = max(0, min(behind + 1, limit))
    first = (status.last_element - behind) % status.size
    runs = []
    remaining = count
    while remaining:
        n = min(remaining, status.size - first)
        runs.append((first, n))
        remaining -= n
        first = 0
    return Window((status.last_seq - behind) % SEQ_MOD, tuple(runs), behind + 1 - count)


@dataclass(frozen=True)
class LpLayout:
    """Table 64 as the meter's Tables 0, 61, 62 and 63 describe it: ``nbr_blks`` blocks of
    ``block_size`` bytes, each of ``nbr_blk_ints`` intervals of ``max_int_time`` minutes;
    ``status`` where the list stands and ``valid_ints`` intervals in its newest block."""

    nbr_blks: int
    nbr_blk_ints: int
    max_int_time: int
    block_size: int
    status: ListStatus
    valid_ints: int

    @property
    def table_size(self) -> int:
        return self.nbr_blks * self.block_size


def _lp_env(recs: Mapping[int, Any]) -> Any:
    return make_env(recs[0], {n: recs[n] for n in (61, 62) if n in recs})


def lp_layout(tables: Mapping[int, bytes]) -> LpLayout:
    """The layout and status of load-profile set 1 from :data:`LP_CONTEXT_TABLES` (small
    tables: no block is decoded). DecodeError for a status that points outside the list."""
    recs = decoded(_pick(tables, LP_CONTEXT_TABLES))
    dims = recs[61].data_set(LP_SET)
    st = recs[63].status_set(LP_SET)
    if dims is None or st is None:
        raise DecodeError("load-profile set 1 (Table 64) is not in Table 0", 0, "table61")
    try:
        block_size = record_size(LpBlkDatRcd, _lp_env(recs), args={"set": LP_SET})
    except ConfigurationError as exc:
        raise DecodeError(str(exc), 0, "table62") from None
    if block_size <= 0:
        raise DecodeError("load-profile blocks of 0 bytes", 0, "table61")
    if st.nbr_valid_blocks and st.last_block_element >= dims.nbr_blks:
        raise DecodeError(f"Table 63 points at block {st.last_block_element} of "
                          f"{dims.nbr_blks}", 0, "table63.last_block_element")
    if st.nbr_valid_int > dims.nbr_blk_ints:
        raise DecodeError(f"Table 63 says {st.nbr_valid_int} intervals in a block of "
                          f"{dims.nbr_blk_ints}", 0, "table63.nbr_valid_int")
    return LpLayout(dims.nbr_blks, dims.nbr_blk_ints, dims.max_int_time, block_size,
                    ListStatus(dims.nbr_blks, min(st.nbr_valid_blocks, dims.nbr_blks),
                               st.last_block_element, st.last_block_seq_nbr),
                    st.nbr_valid_int)


def lp_intervals_from_bytes(tables: Mapping[int, bytes], layout: LpLayout, data: bytes,
                            first_seq: int) -> list[dict[str, Any]]:
    """The intervals of consecutive blocks read from Table 64 (``data``: whole blocks, oldest
    first, the first with sequence number ``first_seq``), as :func:`lp_intervals` gives
    them. The newest block (``layout.status.last_seq``) counts its valid intervals only."""
    size = layout.block_size
    if len(data) % size:
        raise DecodeError(f"{len(data)} bytes are not whole blocks of {size}", 0, "table64")
    recs = decoded(_pick(tables, (0, 61, 62)))
    env = _lp_env(recs)
    interval = dt.timedelta(minutes=layout.max_int_time)
    view = memoryview(data)
    out: list[dict[str, Any]] = []
    for k in range(len(data) // size):
        try:
            block = decode_record(LpBlkDatRcd, view[k * size:(k + 1) * size], env,
                                  args={"set": LP_SET})
        except ConfigurationError as exc:
            raise DecodeError(str(exc), 0, "table64") from None
        seq = (first_seq + k) % SEQ_MOD
        used = layout.valid_ints if seq == layout.status.last_seq else layout.nbr_blk_ints
        out += _block_intervals(block, used, interval)
    return out


@dataclass(frozen=True)
class HistoryLayout:
    """Table 74 as Tables 0 and 71 describe it: a header of ``header_size`` bytes, then
    ``nbr_entries`` entries of ``entry_size`` bytes."""

    nbr_entries: int
    entry_size: int
    header_size: int

    @property
    def table_size(self) -> int:
        return self.header_size + self.nbr_entries * self.entry_size


def _history_envs(tables: Mapping[int, bytes]) -> tuple[Any, Any]:
    """The env of the entries, and one under which Table 74 is its header alone."""
    recs = decoded(_pick(tables, HISTORY_CONTEXT_TABLES))
    header_only = replace(recs[71], nbr_history_entries=0)
    return make_env(recs[0], recs), make_env(recs[0], {71: header_only})


def history_layout(tables: Mapping[int, bytes]) -> HistoryLayout:
    """The layout of Table 74 from :data:`HISTORY_CONTEXT_TABLES`."""
    env, header_env = _history_envs(tables)
    header = table_size(74, header_env)
    entry = record_size(HistoryEntryRcd, env)
    if header is None or entry <= 0:
        raise DecodeError("history entries of 0 bytes", 0, "table71")
    return HistoryLayout(env.table(71).nbr_history_entries, entry, header)


def history_status(tables: Mapping[int, bytes], layout: HistoryLayout,
                   header: bytes) -> ListStatus:
    """Where the history log stands, from the first ``layout.header_size`` bytes of
    Table 74. DecodeError for a header that points outside the list."""
    _env, header_env = _history_envs(tables)
    head = decode_record(HistLogData, header, header_env)
    n = layout.nbr_entries
    if head.nbr_valid_entries and n and head.last_entry_element >= n:
        raise DecodeError(f"Table 74 points at entry {head.last_entry_element} of {n}", 0,
                          "table74.last_entry_element")
    return ListStatus(n, min(head.nbr_valid_entries, n), head.last_entry_element,
                      head.last_entry_seq_nbr)


def history_entries_from_bytes(tables: Mapping[int, bytes], layout: HistoryLayout,
                               data: bytes, first_seq: int) -> list[dict[str, Any]]:
    """Consecutive history entries read from Table 74 (``data``: whole entries, oldest
    first, the first with sequence number ``first_seq``), as :func:`history_entries`
    gives them."""
    size = layout.entry_size
    if len(data) % size:
        raise DecodeError(f"{len(data)} bytes are not whole entries of {size}", 0, "table74")
    env, _header_env = _history_envs(tables)
    view = memoryview(data)
    return [_history_entry(decode_record(HistoryEntryRcd, view[k * size:(k + 1) * size], env),
                           (first_seq + k) % SEQ_MOD) for k in range(len(data) // size)]
