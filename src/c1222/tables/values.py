"""A table as values: every element of a table's bytes with its name, value, unit and span.

The head-end's console shows a Read this way (docs/tables.md, "Tables as values"): one row
per element, named as C12.19 spells it (lower-cased: ``tot_data_block.summations[0]``), its
value as text with a unit where the meter's own tables say what it is (Table 23 summations
by Table 22 and Table 12, Table 28 present values by Table 27 and Table 12: Wh shown in kWh,
V, A, W, var, VA, PF), times as dates, bit fields and SETs with their members named, and
the bytes it occupies. :func:`apply_edits` is the way back: named edits of a decoded table,
then :func:`~c1222.tables.registry.encode_table` gives the bytes to write.

Pure, like the rest of the package. Context comes in as raw bytes of the meter's tables
(``context``, the ones :func:`context_tables` names); a table, context or span that does not
decode gives a result with ``error`` set, never an exception (the bytes come from a meter).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from typing import Any

from c1222.errors import C1222Error, DecodeError
from c1222.tables import decade7 as d7
from c1222.tables.engine import Node, TableEnv, to_jsonable
from c1222.tables.procedures import StdProc
from c1222.tables.readings import MULTIPLIERS, QUANTITIES
from c1222.tables.registry import (
    MFG_BASE, TABLES, RawTable, decode_table, make_env, table_elements, table_name, table_size,
)
from c1222.tables.types import (
    CharFormat, DataAccessMethod, DataOrder, IntFormat, NiFormat, TableContext, TimeDate, TimeOfDay,
    TmFormat,
)

#: Rows one description holds at most (a 64 KiB table of UINT8 is 64 Ki rows: the rest is
#: summarised, the bytes stay in the hex).
MAX_ROWS = 4000
#: Tables whose values get units, and the selection table that says which source each is.
_UNIT_TABLES = {23: 22, 24: 22, 25: 22, 26: 22, 28: 27}
#: Units of the UOM ID_CODEs the package names (C12.19 Table 12): (instantaneous, dial).
_UNITS = {"active_power": ("W", "Wh"), "reactive_power": ("var", "varh"),
          "apparent_power": ("VA", "VAh"), "voltage": ("V", "V"), "current": ("A", "A"),
          "power_factor": ("PF", "PF")}
#: TIME_BASE codes that are accumulated (dial) quantities: energy, not power.
_DIAL_TIME_BASES = {0, 5}
#: Standard event (history) codes by number (C12.19 section 11.6, the ones the package uses).
EVENT_NAMES: dict[int, str] = {
    0: "no event", d7.EVENT_POWER_DOWN: "primary power down",
    d7.EVENT_POWER_UP: "primary power up", d7.EVENT_TIME_CHANGED_OLD: "time changed (old time)",
    d7.EVENT_TIME_CHANGED_NEW: "time changed (new time)", 5: "time changed (old time, all)",
    6: "time changed (new time, all)", 7: "end device accessed for read",
    8: "end device accessed for write", d7.EVENT_PROCEDURE_INVOKED: "procedure invoked",
    d7.EVENT_TABLE_WRITTEN: "table written to", 11: "end device programmed",
    12: "communication terminated normally", 13: "communication terminated abnormally",
    d7.EVENT_RESET_LIST_POINTERS: "reset list pointers",
    d7.EVENT_UPDATED_LIST_POINTERS: "updated list pointers",
    d7.EVENT_HISTORY_LOG_CLEARED: "history log cleared", 17: "history log pointers updated",
    18: "event log cleared", 19: "event log pointers updated",
    d7.EVENT_DEMAND_RESET: "demand reset occurred", d7.EVENT_SELF_READ: "self read occurred",
    47: "tamper attempt", 49: "control point changed",
}
#: Bit-field members whose codes are Table 0 formats.
_CODES: dict[str, type[IntEnum]] = {"data_order": DataOrder, "char_format": CharFormat,
                           "tm_format": TmFormat, "data_access_method": DataAccessMethod,
                           "int_format": IntFormat, "ni_format1": NiFormat,
                           "ni_format2": NiFormat}


def event_name(code: int, mfg: bool = False) -> str:
    """The standard's name of a history/event code (``mfg``: a manufacturer's own code)."""
    if mfg:
        return f"manufacturer event {code}"
    return EVENT_NAMES.get(code, f"event {code}")


def context_tables(number: int) -> tuple[int, ...]:
    """The tables (besides ``number``) needed to decode table ``number`` and name its units:
    Table 0, the dimension tables it is sized by (transitively) and the unit tables."""
    tdef = TABLES.get(number)
    if tdef is None or number == 0:
        return ()
    need: set[int] = {0}
    todo = list(tdef.depends)
    if number in _UNIT_TABLES:
        todo += [12, _UNIT_TABLES[number]]
    while todo:
        n = todo.pop()
        if n in need or n == number:
            continue
        need.add(n)
        todo.extend(TABLES[n].depends if n in TABLES else ())
    return tuple(sorted(need))


def _env(context: Mapping[int, bytes], numbers: Sequence[int]) -> tuple[TableEnv, dict[int, Any]]:
    """Decode the context tables in ascending order (dimension tables come first)."""
    if 0 not in context:
        raise DecodeError("Table 0 of this meter is not known", 0, "table0")
    gen = decode_table(0, context[0])
    recs: dict[int, Any] = {0: gen}
    for n in sorted(set(numbers) - {0}):
        if n not in context:
            raise DecodeError(f"Table {n} of this meter is not known", 0, f"table{n}")
        recs[n] = decode_table(n, context[n], make_env(gen, recs), strict=False)
    return make_env(gen, recs), recs


# ------------------------------------------------------------------------------ units


def _unit_of(entry: Any) -> tuple[str, str, float]:
    """(quantity name, unit, multiplier) of a Table 12 UOM entry."""
    name = QUANTITIES.get(entry.id_code, f"uom {entry.id_code}")
    units = _UNITS.get(name)
    unit = "" if units is None else units[1 if entry.time_base in _DIAL_TIME_BASES else 0]
    if name == "active_power" and unit == "Wh":
        name = "active energy"
    return name.replace("_", " "), unit, MULTIPLIERS.get(entry.multiplier, 1.0)


def _units(number: int, recs: Mapping[int, Any]) -> dict[str, tuple[str, str, float]]:
    """Path -> (quantity, unit, multiplier) for the values of table ``number``."""
    out: dict[str, tuple[str, str, float]] = {}
    sel_table = _UNIT_TABLES.get(number)
    if sel_table is None or 12 not in recs or sel_table not in recs:
        return out
    uom = recs[12].uom_entry

    def entry(source: int) -> tuple[str, str, float] | None:
        return _unit_of(uom[source]) if 0 <= source < len(uom) else None

    if sel_table == 27:
        for i, source in enumerate(recs[27].present_value_select):
            if (u := entry(source)) is not None:
                out[f"present_value[{i}]"] = u
        return out
    prefix = {23: "", 24: "", 25: "register_data.", 26: ""}[number]
    for i, source in enumerate(recs[22].summation_select):
        if (u := entry(source)) is not None:
            out[f"{prefix}tot_data_block.summations[{i}]"] = u
            out[f"{prefix}tier_data_block[*].summations[{i}]"] = u
    return out


def _number_text(value: float, unit: str, multiplier: float) -> tuple[float, str]:
    """The engineering value and its text; Wh and varh over 1000 shown in k-units."""
    base = value * multiplier
    if unit in ("Wh", "varh", "VAh"):
        return base, f"{base / 1000:.3f} k{unit}"
    if unit == "PF":
        return base, f"{base:.3f} PF"
    return base, f"{base:g} {unit}".strip()


# ------------------------------------------------------------------------------ rows


def _set_text(name: str, members: frozenset[int]) -> str:
    items = sorted(members)
    if "tbls" in name:
        mfg = name.startswith("mfg")
        return ", ".join(table_name(n + MFG_BASE) if mfg else f"{n} {table_name(n)}"
                         for n in items) or "(none)"
    if "proc" in name and not name.startswith("mfg"):
        def proc(n: int) -> str:
            try:
                return f"{n} {StdProc(n).name.lower()}"
            except ValueError:
                return str(n)
        return ", ".join(proc(n) for n in items) or "(none)"
    return ", ".join(str(n) for n in items) or "(none)"


def _bits_text(value: Any) -> str:
    parts = []
    for f in dataclasses.fields(value):
        v = getattr(value, f.name)
        if isinstance(v, bool):
            if v:
                parts.append(f.name)
            continue
        code = _CODES.get(f.name)
        if code is not None and v in code._value2member_map_:
            parts.append(f"{f.name}={v} {code(v).name.lower()}")
        elif f.name == "tbl_proc_nbr":
            parts.append(f"{f.name}={v}")
        else:
            parts.append(f"{f.name}={v}")
    return ", ".join(parts) or "(no flag set)"


def _is_bits(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and hasattr(type(value), "__c12_bits__")


def _leaf_kind(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, (float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    if isinstance(value, frozenset):
        return "set"
    if isinstance(value, TimeDate):
        return "datetime"
    if isinstance(value, TimeOfDay):
        return "time"
    if _is_bits(value):
        return "bits"
    return "other"


def _row(path: str, value: Any, node: Node | None, data: bytes, base: int,
         units: Mapping[str, tuple[str, str, float]]) -> dict[str, Any]:
    kind = _leaf_kind(value)
    name = path.rsplit(".", 1)[-1]
    row: dict[str, Any] = {"path": path, "kind": kind, "value": to_jsonable(value),
                           "text": None, "unit": None, "quantity": None,
                           "offset": None, "length": None, "hex": None}
    if node is not None:
        row["offset"], row["length"] = base + node.start, node.end - node.start
        row["hex"] = data[node.start:node.end].hex()
    if kind == "bits":
        row["text"] = _bits_text(value)
        if hasattr(value, "id_code") and hasattr(value, "time_base"):  # a Table 12 UOM entry
            quantity, uom_unit, _m = _unit_of(value)
            row["text"] = f"{quantity}{f' ({uom_unit})' if uom_unit else ''}: {row['text']}"
    elif kind == "set":
        row["text"] = _set_text(re.sub(r"\[\d+\]", "", name), value)
    elif kind == "datetime":
        when = value.to_datetime()
        row["text"] = when.isoformat(sep=" ") if when else f"{value.isoformat()} (not a date)"
        row["unit"] = "date/time"
    elif kind == "time":
        row["text"], row["unit"] = to_jsonable(value), "time"
    elif kind in ("int", "number"):
        unit = units.get(path) or units.get(re.sub(r"^(.*tier_data_block)\[\d+\]", r"\1[*]", path))
        if unit is not None and (kind == "int" or math.isfinite(float(value))):
            row["quantity"], row["unit"] = unit[0], unit[1]
            row["value_scaled"], row["text"] = _number_text(float(value), unit[1], unit[2])
        else:
            row["text"] = str(value)
    elif kind == "binary":
        row["text"] = bytes(value).hex() or "(empty)"
    elif kind == "absent":
        row["text"] = "(not present)"
    else:
        row["text"] = str(value)
    if name in ("history_code", "event_code") and kind == "bits":
        code = getattr(value, "tbl_proc_nbr", None)
        if isinstance(code, int):
            row["text"] = f"{event_name(code, bool(getattr(value, 'std_vs_mfg_flag', False)))}"\
                          f" ({row['text']})"
    return row


def _walk(value: Any, nodes: Sequence[Node] | None, path: str, data: bytes, base: int,
          units: Mapping[str, tuple[str, str, float]], rows: list[dict[str, Any]],
          span: tuple[int, int] | None) -> None:
    """Leaf rows of ``value`` (a record, array or leaf) with spans from ``nodes``."""
    by_name = {n.name: n for n in nodes or ()}
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _child(getattr(value, f.name), by_name.get(f.name), f"{path}.{f.name}" if path
                   else f.name, data, base, units, rows, span)
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            _child(item, by_name.get(str(i)), f"{path}[{i}]", data, base, units, rows, span)


def _child(value: Any, node: Node | None, path: str, data: bytes, base: int,
           units: Mapping[str, tuple[str, str, float]], rows: list[dict[str, Any]],
           span: tuple[int, int] | None) -> None:
    if len(rows) > MAX_ROWS:
        return
    if _leaf_kind(value) == "other" and (dataclasses.is_dataclass(value)
                                         or isinstance(value, tuple)):
        _walk(value, node.children if node is not None else None, path, data, base, units,
              rows, span)
        return
    if span is not None and (node is None or node.start < span[0] or node.end > span[1]):
        return  # a partial read: only the elements wholly inside the bytes read
    rows.append(_row(path, value, node, data, base, units))


def _size(number: int, env: TableEnv) -> int | None:
    """The table's size under ``env``; None when it depends on the table's own contents."""
    try:
        return table_size(number, env)
    except (TypeError, KeyError):  # a count read from the table itself
        return None


def describe_table(number: int, data: bytes, context: Mapping[int, bytes],
                   offset: int | None = None) -> dict[str, Any]:
    """Table ``number``'s bytes ``data`` as values: a full read, or with ``offset`` the
    bytes of a partial read from that offset.

    ``context``: raw bytes of the meter's tables :func:`context_tables` names. Returns
    ``{"table", "name", "offset", "count", "layout", "error", "note", "truncated",
    "fields": [{"path", "kind", "value", "text", "unit", "quantity", "offset", "length",
    "hex"}...]}``; ``error`` says why nothing (or not everything) is decoded.
    """
    data = bytes(data)
    out: dict[str, Any] = {"table": number, "name": table_name(number), "offset": offset or 0,
                           "count": len(data), "layout": number in TABLES, "error": None,
                           "note": None, "truncated": False, "fields": []}
    if number not in TABLES:
        out["note"] = ("no layout: a manufacturer table this head-end does not know"
                       if number >= MFG_BASE else "no layout: this table is not decoded "
                                                  "by the head-end")
        return out
    try:
        if number == 0:  # sized by itself: all single bytes and SETs
            env, units = TableEnv(TableContext()), {}
            size = None if offset is None else len(context.get(0, b""))
        else:
            env, recs = _env(context, context_tables(number))
            units = _units(number, recs)
            size = _size(number, env) if offset is not None else None
        full = data
        span = None
        if offset is not None:
            # A partial read: decode it inside a blank table of the full size and keep
            # the elements wholly within the bytes read.
            if size is None:
                raise DecodeError("a partial read of this table cannot be decoded: its size "
                                  "depends on its own contents", offset, f"table{number}")
            if offset + len(data) > size:
                raise DecodeError(f"bytes {offset}..{offset + len(data)} are past the end of "
                                  f"the table ({size} bytes under this meter's Table 0)",
                                  offset, f"table{number}")
            full = bytes(offset) + data + bytes(size - offset - len(data))
            span = (offset, offset + len(data))
            out["note"] = "a partial read: the elements wholly within the bytes read"
        value = decode_table(number, full, env, strict=span is None)
        if isinstance(value, RawTable):  # pragma: no cover - known layouts decode to records
            return out
        nodes = table_elements(number, full, env)
    except DecodeError as exc:
        out["error"] = f"{type(exc).__name__}: {exc.reason} (at byte {exc.offset}" + \
                       (f", {exc.path})" if exc.path else ")")
        return out
    except (C1222Error, ValueError, OverflowError, RecursionError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    rows: list[dict[str, Any]] = []
    _walk(value, nodes, "", full, 0, units, rows, span)
    if len(rows) > MAX_ROWS:
        rows = rows[:MAX_ROWS]
        out["truncated"] = True
    out["fields"] = rows
    return out


# ------------------------------------------------------------------------------ edits


_SEGMENT = re.compile(r"([a-z_][a-z0-9_]*)|\[(\d{1,6})\]")


def _parse_path(path: str) -> list[str | int]:
    """``a.b[3].c`` -> ``["a", "b", 3, "c"]``; ValueError for anything else."""
    if not isinstance(path, str) or not path or len(path) > 200:
        raise ValueError("a field path: names and [index], e.g. tot_data_block.summations[0]")
    out: list[str | int] = []
    pos = 0
    while pos < len(path):
        if out and path[pos] == ".":
            pos += 1
        m = _SEGMENT.match(path, pos)
        if m is None or (m.group(1) and out and path[pos - 1] != "."):
            raise ValueError(f"{path!r} is not a field path")
        out.append(m.group(1) if m.group(1) else int(m.group(2)))
        pos = m.end()
    return out


def _leaf_from(current: Any, new: Any, path: str) -> Any:
    """``new`` (JSON) as a value of the type of ``current``; ValueError if it is not one."""
    kind = _leaf_kind(current)
    if isinstance(new, str):
        new_text = new.strip()
        if not new_text and kind not in ("text", "binary"):
            raise ValueError(f"{path}: empty")
    try:
        if kind == "bool":
            if isinstance(new, bool):
                return new
            if isinstance(new, str) and new_text.lower() in ("true", "false", "1", "0"):
                return new_text.lower() in ("true", "1")
        elif kind == "int":
            if isinstance(new, int) and not isinstance(new, bool):
                return new
            if isinstance(new, str) and re.fullmatch(r"[+-]?\d{1,20}", new_text):
                return int(new_text)
        elif kind == "number":
            if isinstance(new, bool):
                raise ValueError
            number = Decimal(str(new).strip())
            if not number.is_finite():
                raise ValueError
            return number if isinstance(current, Decimal) else float(number)
        elif kind == "text":
            if isinstance(new, str):
                return new
        elif kind == "binary":
            if isinstance(new, str):
                return bytes.fromhex(new)
        elif kind == "set":
            if isinstance(new, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                             and 0 <= x < 1 << 16 for x in new):
                return frozenset(new)
        elif kind == "datetime":
            if isinstance(new, str):
                return TimeDate.from_datetime(dt.datetime.fromisoformat(new_text))
        elif kind == "time":
            if isinstance(new, str):
                hh, mm, ss = (int(x) for x in new_text.split(":"))
                return TimeOfDay(hh, mm, ss)
        elif kind == "bits" and isinstance(new, dict):
            fields = {f.name for f in dataclasses.fields(current)}
            for k, v in new.items():
                if k not in fields:
                    raise ValueError(f"{path}: no member {k!r}")
                want = getattr(current, k)
                ok = isinstance(v, bool) if isinstance(want, bool) else (
                    isinstance(v, int) and not isinstance(v, bool))
                if not ok:
                    raise ValueError(f"{path}.{k}: a {type(want).__name__}")
            return dataclasses.replace(current, **new)
    except (ValueError, InvalidOperation, TypeError) as exc:
        if str(exc).startswith(path):
            raise
        raise ValueError(f"{path}: not a {kind} value") from None
    if kind == "absent":
        raise ValueError(f"{path}: not present in this table (the meter's tables leave it out)")
    raise ValueError(f"{path}: not a {kind} value")


def _replace(value: Any, segments: list[str | int], new: Any, path: str) -> Any:
    if not segments:
        return _leaf_from(value, new, path)
    head, rest = segments[0], segments[1:]
    if isinstance(head, int):
        if not isinstance(value, tuple) or head >= len(value):
            raise ValueError(f"{path}: no element [{head}]")
        items = list(value)
        items[head] = _replace(items[head], rest, new, path)
        return tuple(items)
    if _is_bits(value) and not rest:
        return _leaf_from(value, {head: new}, path)
    if not dataclasses.is_dataclass(value) or head not in {f.name for f in
                                                          dataclasses.fields(value)}:
        raise ValueError(f"{path}: no field {head!r}")
    changed = _replace(getattr(value, head), rest, new, path)
    try:
        record: Any = value
        return dataclasses.replace(record, **{head: changed})
    except ValueError as exc:  # a record's own rule (MT2: a notice's kind and contents)
        raise ValueError(f"{path}: {exc}") from None


def apply_edits(value: Any, edits: Mapping[str, Any]) -> Any:
    """A decoded table with ``edits`` (field path -> new value, JSON) applied.

    A value keeps its field's type: an integer field takes an integer (or its digits), a
    number field a number, a date an ISO date, a SET a list of members, a bit field
    ``{"member": value}`` (or ``path.member``). ValueError, naming the field, for a path
    that is not in the table or a value that does not fit; encoding then checks ranges."""
    if not edits:
        raise ValueError("no field to change")
    for path, new in edits.items():
        value = _replace(value, _parse_path(path), new, path)
    return value


def decode_for_edit(number: int, data: bytes, context: Mapping[int, bytes]) -> tuple[Any, TableEnv]:
    """Table ``number`` decoded under the meter's context, for :func:`apply_edits`.
    DecodeError when it does not decode; ValueError when it has no layout."""
    if number not in TABLES:
        raise ValueError(f"table {number} has no layout: write it as hex")
    if number == 0:
        return decode_table(0, data), TableEnv(TableContext())
    env, _ = _env(context, context_tables(number))
    return decode_table(number, data, env), env


def changed_span(old: bytes, new: bytes) -> tuple[int, int] | None:
    """(offset, count) of the bytes that differ (same length), None when none do."""
    if len(old) != len(new):
        return (0, len(new))
    diff = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    if not diff:
        return None
    return diff[0], diff[-1] + 1 - diff[0]


__all__ = ["MAX_ROWS", "EVENT_NAMES", "event_name", "context_tables", "describe_table",
           "apply_edits", "decode_for_edit", "changed_span"]
