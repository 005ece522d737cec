"""Named engineering values from a meter's raw tables (what a display or a head-end shows).

Table 28's present values and Table 23's summations are bare numbers; their meaning comes from
Table 27 (which source each present value is), Table 22 (which source each summation is),
Table 16/12 (each source's unit: ID_CODE, TIME_BASE and MULTIPLIER) and Table 0 (formats).
:func:`meter_values` reads all of that and names each value, in the unit's base (W, Wh, V, A).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from c1222.errors import DecodeError
from c1222.tables.registry import decode_table, make_env

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


def _pick(tables: Mapping[int, bytes], numbers: tuple[int, ...]) -> dict[int, bytes]:
    """The tables named, or DecodeError naming the first one missing."""
    for number in numbers:
        if number not in tables:
            raise DecodeError(f"table {number} is needed to read the values", 0,
                              f"table{number}")
    return {n: tables[n] for n in numbers}


def _uom_entry(uom: tuple[Any, ...], source: int, path: str) -> Any:
    """The Table 12 entry of a source a selection table names; DecodeError for a source
    the meter's own Table 12 does not have (the selection comes from the peer)."""
    if source >= len(uom):
        raise DecodeError(f"source {source} has no unit: Table 12 has {len(uom)} entries",
                          0, path)
    return uom[source]


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
    except KeyError as exc:
        raise DecodeError(f"table {exc.args[0]} is needed to read the values", 0,
                          f"table{exc.args[0]}") from None
    out: dict[str, float] = {}
    if 28 in tables and 27 in tables:
        select = decode_table(27, tables[27], env).present_value_select
        present = decode_table(28, tables[28], env).present_value
        for i, (source, value) in enumerate(zip(select, present)):
            entry = _uom_entry(uom, source, f"table27.present_value_select[{i}]")
            out[_unit_name(entry, energy=False)] = float(value) * MULTIPLIERS.get(
                entry.multiplier, 1.0)
    if 23 in tables and 22 in tables:
        select = decode_table(22, tables[22], env).summation_select
        sums = decode_table(23, tables[23], env).tot_data_block.summations
        for i, (source, value) in enumerate(zip(select, sums)):
            entry = _uom_entry(uom, source, f"table22.summation_select[{i}]")
            out[_unit_name(entry, energy=True)] = float(value) * MULTIPLIERS.get(
                entry.multiplier, 1.0)
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
    from c1222.errors import ConfigurationError

    gen = decode_table(0, _pick(tables, (0,))[0])
    out: dict[int, Any] = {0: gen}
    for number in sorted(n for n in tables if n != 0):
        try:
            out[number] = decode_table(number, tables[number], make_env(gen, out))
        except ConfigurationError as exc:  # a context table that was not given
            raise DecodeError(str(exc), 0, f"table{number}") from None
    return out


def history_entries(tables: Mapping[int, bytes]) -> list[dict[str, Any]]:
    """The valid entries of the history log (Table 74, with 0 and 71), oldest first:
    ``{"time": datetime | None, "seq": int, "code": int, "mfg": bool, "user_id": int,
    "argument": bytes}``."""
    recs = decoded(_pick(tables, (0, 71, 74)))
    log = recs[74]
    n = len(log.entries)
    count = min(log.nbr_valid_entries, n)
    out = []
    for k in range(count):
        # a circular list: the newest entry is at last_entry_element
        entry = log.entries[(log.last_entry_element - count + 1 + k) % n]
        seq = entry.history_seq_nbr if entry.history_seq_nbr is not None else \
            log.last_entry_seq_nbr - count + 1 + k
        when = entry.history_time.to_datetime() if entry.history_time is not None else None
        out.append({"time": when, "seq": seq, "code": entry.history_code.tbl_proc_nbr,
                    "mfg": entry.history_code.std_vs_mfg_flag, "user_id": entry.user_id,
                    "argument": bytes(entry.history_argument)})
    return out


def lp_intervals(tables: Mapping[int, bytes], set_number: int = 1) -> list[dict[str, Any]]:
    """The valid intervals of load-profile set 1 (Tables 61-64), oldest first:
    ``{"end": datetime, "values": (channel values...), "status": (...)}``."""
    import datetime as dt

    table = 63 + set_number
    recs = decoded(_pick(tables, (*LOG_CONTEXT_TABLES, table)))
    dims = recs[61].data_set(set_number)
    status = recs[63].status_set(set_number)
    blocks = recs[table].lp_blk_dat
    interval = dt.timedelta(minutes=dims.max_int_time)
    out: list[dict[str, Any]] = []
    nblocks = min(status.nbr_valid_blocks, len(blocks))
    for k in range(nblocks):
        element = (status.last_block_element - nblocks + 1 + k) % len(blocks)
        block = blocks[element]
        used = status.nbr_valid_int if element == status.last_block_element \
            else dims.nbr_blk_ints
        end = block.blk_end_time.to_datetime() if block.blk_end_time is not None else None
        if end is None:
            continue
        for i in range(min(used, len(block.lp_int))):
            item = block.lp_int[i]
            out.append({"end": end - (used - 1 - i) * interval, "values": tuple(item.int_data),
                        "status": tuple(item.extended_int_status or ())})
    return out
