"""The registry of table layouts: number -> name and record (docs/spec c1219 section 2).

:func:`decode_table` is the one entry point for "bytes of table N"; a table without a
known layout decodes to :class:`RawTable`, never to an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from c1222.errors import DecodeError, LocalProtocolError
from c1222.tables import decade0 as d0
from c1222.tables import decade1 as d1
from c1222.tables import decade2 as d2
from c1222.tables import decade4 as d4
from c1222.tables import decade5 as d5
from c1222.tables import decade6 as d6
from c1222.tables import decade7 as d7
from c1222.tables import decade12 as d12
from c1222.tables.engine import (
    TableEnv, decode_record, element_tree, encode_record, record_size,
)
from c1222.tables.types import TableContext

#: Offset of manufacturer table MTn in this package's table numbering (section 2).
MFG_BASE = 2048
#: Table-id word flags on the wire (section 1).
TABLE_ID_MFG = 0x0800
TABLE_ID_PENDING = 0x1000
TABLE_ID_USER_DEFINED = 0x2000


@dataclass(frozen=True)
class TableId:
    """A decoded table-id word (section 1): number, manufacturer and pending flags."""

    number: int
    mfg: bool = False
    pending: bool = False
    user_defined: bool = False

    @classmethod
    def from_word(cls, word: int) -> TableId:
        return cls(word & 0x07FF, bool(word & TABLE_ID_MFG), bool(word & TABLE_ID_PENDING),
                   bool(word & TABLE_ID_USER_DEFINED))

    @property
    def key(self) -> int:
        """The store key: 0-2039 for standard tables, 2048 + n for MTn."""
        return self.number + (MFG_BASE if self.mfg else 0)


@dataclass(frozen=True)
class RawTable:
    """A table whose layout this package does not know: its bytes, as they are."""

    data: bytes


@dataclass(frozen=True)
class TableDef:
    """One table: its number, the standard's name, its layout and the tables it depends on."""

    number: int
    name: str
    layout: type | None
    depends: tuple[int, ...] = ()
    args: Mapping[str, Any] = field(default_factory=dict)


#: Standard table names (section 2); names of decade 12 are [UNVERIFIED].
TABLE_NAMES: dict[int, str] = {
    0: "GEN_CONFIG_TBL", 1: "GENERAL_MFG_ID_TBL", 2: "DEVICE_NAMEPLATE_TBL",
    3: "ED_MODE_STATUS_TBL", 4: "PENDING_STATUS_TBL", 5: "DEVICE_IDENT_TBL", 6: "UTIL_INFO_TBL",
    7: "PROC_INITIATE_TBL", 8: "PROC_RESPONSE_TBL",
    10: "DIM_SOURCES_LIM_TBL", 11: "ACT_SOURCES_LIM_TBL", 12: "UOM_ENTRY_TBL",
    13: "DEMAND_CONTROL_TBL", 14: "DATA_CONTROL_TBL", 15: "CONSTANTS_TBL", 16: "SOURCES_TBL",
    17: "TRANSFORMER_LOSS_COMPENSATION_TBL",
    20: "DIM_REGS_TBL", 21: "ACT_REGS_TBL", 22: "DATA_SELECTION_TBL", 23: "CURRENT_REG_DATA_TBL",
    24: "PREVIOUS_SEASON_DATA_TBL", 25: "PREVIOUS_DEMAND_RESET_DATA_TBL",
    26: "SELF_READ_DATA_TBL", 27: "PRESENT_REGISTER_SELECT_TBL", 28: "PRESENT_REGISTER_DATA_TBL",
    30: "DIM_DISP_TBL", 31: "ACT_DISP_TBL", 32: "DISP_SOURCE_TBL", 33: "PRI_DISP_LIST_TBL",
    34: "SEC_DISP_LIST_TBL",
    40: "DIM_SECURITY_LIMITING_TBL", 41: "ACT_SECURITY_LIMITING_TBL", 42: "SECURITY_TBL",
    43: "DEFAULT_ACCESS_CONTROL_TBL", 44: "ACCESS_CONTROL_TBL", 45: "KEY_TBL",
    46: "EXTENDED_KEY_TBL",
    50: "DIM_TIME_TOU_TBL", 51: "ACT_TIME_TOU_TBL", 52: "CLOCK_TBL", 53: "TIME_OFFSET_TBL",
    54: "CALENDAR_TBL", 55: "CLOCK_STATE_TBL", 56: "TIME_REMAIN_TBL",
    57: "PRECISION_CLOCK_STATE_TBL",
    60: "DIM_LP_TBL", 61: "ACT_LP_TBL", 62: "LP_CTRL_TBL", 63: "LP_STATUS_TBL",
    64: "LP_DATA_SET1_TBL", 65: "LP_DATA_SET2_TBL", 66: "LP_DATA_SET3_TBL",
    67: "LP_DATA_SET4_TBL",
    70: "DIM_LOG_TBL", 71: "ACT_LOG_TBL", 72: "EVENTS_ID_TBL", 73: "HIST_LOG_CTRL_TBL",
    74: "HIST_LOG_DATA_TBL", 75: "EVENT_LOG_CTRL_TBL", 76: "EVENT_LOG_DATA_TBL",
    120: "DIM_NETWORK_TBL", 121: "ACT_NETWORK_TBL", 122: "INTERFACE_CTRL_TBL",
    123: "EXCEPTION_REPORT_TBL", 124: "FILTERING_RULES_TBL", 125: "INTERFACE_STATUS_TBL",
    126: "REGISTRATION_STATUS_TBL", 127: "NETWORK_STATISTICS_TBL",
}

_DEFS = [
    TableDef(0, TABLE_NAMES[0], d0.GenConfig),
    TableDef(1, TABLE_NAMES[1], d0.GeneralMfgId, (0,)),
    TableDef(2, TABLE_NAMES[2], d0.DeviceNameplate, (0,)),
    TableDef(3, TABLE_NAMES[3], d0.EdModeStatus, (0,)),
    TableDef(5, TABLE_NAMES[5], d0.DeviceIdent, (0,)),
    TableDef(6, TABLE_NAMES[6], d0.UtilInfo, (0,)),
    TableDef(7, TABLE_NAMES[7], d0.ProcInitiate, (0,)),
    TableDef(8, TABLE_NAMES[8], d0.ProcResponse, (0,)),
    TableDef(10, TABLE_NAMES[10], d1.SourceRcd),
    TableDef(11, TABLE_NAMES[11], d1.SourceRcd),
    TableDef(12, TABLE_NAMES[12], d1.UomEntry, (0, 11)),
    TableDef(13, TABLE_NAMES[13], d1.DemandControl, (0, 11)),
    TableDef(14, TABLE_NAMES[14], d1.DataControl, (0, 11)),
    TableDef(15, TABLE_NAMES[15], d1.Constants, (0, 11)),
    TableDef(16, TABLE_NAMES[16], d1.Sources, (0, 11)),
    TableDef(20, TABLE_NAMES[20], d2.RegsRcd),
    TableDef(21, TABLE_NAMES[21], d2.RegsRcd),
    TableDef(22, TABLE_NAMES[22], d2.DataSelection, (0, 21)),
    TableDef(23, TABLE_NAMES[23], d2.RegisterData, (0, 21)),
    TableDef(25, TABLE_NAMES[25], d2.PreviousDemandResetData, (0, 21)),
    TableDef(27, TABLE_NAMES[27], d2.PresentRegisterSelect, (0, 21)),
    TableDef(28, TABLE_NAMES[28], d2.PresentRegisterData, (0, 21)),
    TableDef(40, TABLE_NAMES[40], d4.SecurityLimitingRcd),
    TableDef(41, TABLE_NAMES[41], d4.SecurityLimitingRcd),
    TableDef(42, TABLE_NAMES[42], d4.Security, (0, 41)),
    TableDef(44, TABLE_NAMES[44], d4.AccessControl, (0, 41)),
    TableDef(45, TABLE_NAMES[45], d4.Key, (0, 41)),
    TableDef(50, TABLE_NAMES[50], d5.TimeTouRcd),
    TableDef(51, TABLE_NAMES[51], d5.TimeTouRcd),
    TableDef(52, TABLE_NAMES[52], d5.Clock, (0,)),
    TableDef(55, TABLE_NAMES[55], d5.ClockState, (0,)),
    TableDef(60, TABLE_NAMES[60], d6.LpSetRcd, (0,)),
    TableDef(61, TABLE_NAMES[61], d6.LpSetRcd, (0,)),
    TableDef(62, TABLE_NAMES[62], d6.LpCtrl, (0, 61)),
    TableDef(63, TABLE_NAMES[63], d6.LpStatus, (0,)),
    *(TableDef(63 + n, TABLE_NAMES[63 + n], d6.LpDataSet, (0, 61, 62), {"set": n})
      for n in d6.LP_SETS),
    TableDef(70, TABLE_NAMES[70], d7.LogRcd, (0,)),
    TableDef(71, TABLE_NAMES[71], d7.LogRcd, (0,)),
    TableDef(72, TABLE_NAMES[72], d7.EventsId, (0, 71)),
    TableDef(73, TABLE_NAMES[73], d7.HistLogCtrl, (0, 71)),
    TableDef(74, TABLE_NAMES[74], d7.HistLogData, (0, 71)),
    TableDef(122, TABLE_NAMES[122], d12.InterfaceCtrl, (0,)),
    TableDef(127, TABLE_NAMES[127], d12.NetworkStatistics, (0,)),
]

#: Every table with a known layout, by number.
TABLES: dict[int, TableDef] = {d.number: d for d in _DEFS}
#: Tables other tables are sized by; writing one invalidates every decoded table.
DIMENSION_TABLES: frozenset[int] = frozenset(n for d in _DEFS for n in d.depends)


def table_name(number: int) -> str:
    """The standard's name of table ``number`` (MTn for manufacturer tables)."""
    if number >= MFG_BASE:
        return f"MT{number - MFG_BASE}"
    return TABLE_NAMES.get(number, f"ST{number}")


def make_env(gen_config: d0.GenConfig, tables: Mapping[int, Any] | None = None) -> TableEnv:
    """A :class:`TableEnv` from a decoded Table 0 and other decoded (dimension) tables."""
    all_tables = {0: gen_config, **(tables or {})}
    return TableEnv(gen_config.context(), all_tables)


def _env_for_table0(env: TableEnv | None) -> TableEnv:
    # Table 0 is all single bytes and SETs: it codes the same under any context.
    return env if env is not None else TableEnv(TableContext())


def decode_table(number: int, data: bytes, env: TableEnv | None = None, *,
                 strict: bool = True) -> Any:
    """Decode table ``number``; unknown layouts give :class:`RawTable`.

    Raises only :class:`~c1222.errors.DecodeError` subclasses for bad bytes (and
    :class:`~c1222.errors.ConfigurationError` when ``env`` lacks a needed dimension table).
    """
    tdef = TABLES.get(number)
    if tdef is None or tdef.layout is None:
        return RawTable(bytes(data))
    if number == 0:
        return decode_record(d0.GenConfig, data, _env_for_table0(env), strict=strict)
    if env is None:
        raise LocalProtocolError(f"table {number} needs a TableEnv (Table 0 and dimensions)")
    return decode_record(tdef.layout, data, env, strict=strict, args=tdef.args)


def encode_table(number: int, value: Any, env: TableEnv | None = None) -> bytes:
    """Encode a decoded table value back to bytes."""
    if isinstance(value, RawTable):
        return value.data
    tdef = TABLES.get(number)
    if tdef is None or tdef.layout is None:
        raise LocalProtocolError(f"table {number} has no layout; pass a RawTable")
    if number == 0:
        return encode_record(value, _env_for_table0(env))
    if env is None:
        raise LocalProtocolError(f"table {number} needs a TableEnv (Table 0 and dimensions)")
    return encode_record(value, env, args=tdef.args)


def table_size(number: int, env: TableEnv, value: Any = None) -> int | None:
    """Size in bytes of table ``number`` under ``env``; ``None`` for unknown layouts.

    Tables 7 and 8 are variable: without a value their maximum size is returned.
    """
    tdef = TABLES.get(number)
    if tdef is None or tdef.layout is None:
        return None
    if number == 0 and value is None:
        return env.table(0).size()
    return record_size(tdef.layout, env, value, args=tdef.args)


def table_elements(number: int, data: bytes, env: TableEnv):
    """The element map of a table's bytes, for index (element path) access."""
    tdef = TABLES.get(number)
    if tdef is None or tdef.layout is None:
        return None
    env0 = _env_for_table0(env) if number == 0 else env
    return element_tree(tdef.layout, data, env0, args=tdef.args)


__all__ = [
    "MFG_BASE", "TableId", "RawTable", "TableDef", "TABLE_NAMES", "TABLES", "DIMENSION_TABLES",
    "table_name", "make_env", "decode_table", "encode_table", "table_size", "table_elements",
    "DecodeError",
]
