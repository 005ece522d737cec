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
        for source, value in zip(select, present):
            entry = uom[source]
            out[_unit_name(entry, energy=False)] = float(value) * MULTIPLIERS.get(
                entry.multiplier, 1.0)
    if 23 in tables and 22 in tables:
        select = decode_table(22, tables[22], env).summation_select
        sums = decode_table(23, tables[23], env).tot_data_block.summations
        for source, value in zip(select, sums):
            entry = uom[source]
            out[_unit_name(entry, energy=True)] = float(value) * MULTIPLIERS.get(
                entry.multiplier, 1.0)
    return out
