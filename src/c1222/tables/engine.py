"""A small declarative layout engine for C12.19 records (docs/spec c1219 section 14).

The standard defines tables as PACKED RECORDs whose array sizes and optional members are
expressions over Table 0 and the dimension tables (``ARRAY[ACT_REGS_TBL.NBR_OCCUR] OF
NI_FMAT2``, ``IF ACT_REGS_TBL.CUM_DEMAND_FLAG THEN ...``). Here a record is a frozen
dataclass whose fields carry a :class:`FieldSpec` (type, optional ``when`` condition,
optional ``count``). The same declaration drives decoding, encoding, sizing and the
element map used by index reads, so the meter's encoder and the head-end's decoder cannot
drift apart.

Expressions receive a :class:`Scope`: ``s.ctx`` (the Table 0 formats), ``s.tbl(21)`` (a
decoded dimension table), ``s.get("field")`` (a field decoded earlier in this record or an
enclosing one) and ``s.arg("set")`` (a parameter of a reusable sub-record).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar, dataclass_transform

from c1222 import limits
from c1222.errors import (
    ConfigurationError, DecodeError, DecodeLimitExceeded, LocalProtocolError, UnknownCode,
)
from c1222.tables import types as t

Expr = Callable[["Scope"], Any]


# --------------------------------------------------------------------------- environment


class TableEnv:
    """What a layout may depend on: Table 0's formats and the other decoded tables.

    ``tables`` is either a mapping of table number to decoded record or a callable that
    decodes one on demand (the :class:`~c1222.tables.store.TableStore` passes a callable so
    only the dimension tables a layout really uses get decoded).
    """

    __slots__ = ("ctx", "_tables")

    def __init__(self, ctx: t.TableContext,
                 tables: Mapping[int, Any] | Callable[[int], Any] | None = None) -> None:
        self.ctx = ctx
        self._tables = tables if tables is not None else {}

    def table(self, number: int) -> Any:
        if callable(self._tables):
            value = self._tables(number)
        else:
            value = self._tables.get(number)
        if value is None:
            raise ConfigurationError(f"table {number} is needed to size this table but is missing")
        return value

    def with_table(self, number: int, value: Any) -> TableEnv:
        """A copy that sees ``value`` as table ``number`` (the rest unchanged)."""
        base = self._tables

        def lookup(n: int) -> Any:
            if n == number:
                return value
            return base(n) if callable(base) else base.get(n)

        return TableEnv(self.ctx, lookup)


class Scope:
    """Name resolution while coding one record (see the module docstring)."""

    __slots__ = ("env", "this", "parent", "args", "empty_left")

    def __init__(self, env: TableEnv, this: dict[str, Any], parent: Scope | None = None,
                 args: Mapping[str, Any] | None = None) -> None:
        self.env = env
        self.this = this
        self.parent = parent
        self.args = args or {}
        # Empty array elements this whole decode may still make (shared by nested scopes).
        self.empty_left: list[int] = (parent.empty_left if parent is not None
                                      else [limits.MAX_EMPTY_ELEMENTS])

    @property
    def ctx(self) -> t.TableContext:
        return self.env.ctx

    def tbl(self, number: int) -> Any:
        return self.env.table(number)

    def get(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.this:
                return scope.this[name]
            scope = scope.parent
        raise KeyError(name)

    def arg(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.args:
                return scope.args[name]
            scope = scope.parent
        raise KeyError(name)


@dataclass(frozen=True)
class Node:
    """Where one element sits in a table's bytes; ``children`` are its sub-elements."""

    name: str
    start: int
    end: int
    children: tuple[Node, ...] = ()


# --------------------------------------------------------------------------- field types


class FieldType:
    """One C12.19 type. Sizes may depend on the scope; values never on the bytes' length."""

    def size(self, scope: Scope) -> int:
        raise NotImplementedError

    def decode(self, buf: bytes, pos: int, scope: Scope, path: str,
               tree: list[Node] | None = None) -> tuple[Any, int]:
        n = self.size(scope)
        return self.decode_raw(t.take(buf, pos, n, path), scope, path, pos), pos + n

    def decode_raw(self, raw: bytes, scope: Scope, path: str, offset: int) -> Any:
        raise NotImplementedError

    def encode(self, value: Any, scope: Scope, out: bytearray, path: str) -> None:
        raise NotImplementedError

    def blank(self, scope: Scope) -> Any:
        """The "cleared" value: zero, empty or the epoch, valid in every format."""
        return 0


def _const_or(expr: int | Expr) -> Expr:
    if callable(expr):
        return expr

    def const(_s: Any, _v: int = expr) -> int:
        return _v

    return const


class UInt(FieldType):
    """UINT8..UINT64 in DATA_ORDER (section 3.2)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def size(self, scope: Scope) -> int:
        return self.nbytes

    def decode_raw(self, raw, scope, path, offset):
        return t.decode_uint(raw, scope.ctx)

    def encode(self, value, scope, out, path):
        out += t.encode_uint(value, self.nbytes, scope.ctx, path)


class Int(FieldType):
    """INT8..INT64 in DATA_ORDER and INT_FORMAT (section 3.2)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def size(self, scope: Scope) -> int:
        return self.nbytes

    def decode(self, buf, pos, scope, path, tree=None):
        raw = t.take(buf, pos, self.nbytes, path)
        try:
            return t.decode_int(raw, scope.ctx, path), pos + self.nbytes
        except DecodeError as exc:
            raise type(exc)(exc.reason, offset=pos, path=path) from None

    def encode(self, value, scope, out, path):
        out += t.encode_int(value, self.nbytes, scope.ctx, path)


class Ni(FieldType):
    """NI_FMAT1 or NI_FMAT2: the non-integer format Table 0 selects (section 3.3)."""

    def __init__(self, which: int) -> None:
        self.which = which

    def _fmt(self, scope: Scope) -> int:
        return scope.ctx.ni_format1 if self.which == 1 else scope.ctx.ni_format2

    def size(self, scope: Scope) -> int:
        return scope.ctx.ni_size(self.which)

    def decode(self, buf, pos, scope, path, tree=None):
        try:
            n = self.size(scope)
            raw = t.take(buf, pos, n, path)
            return t.decode_ni(raw, self._fmt(scope), scope.ctx, path), pos + n
        except DecodeError as exc:
            raise type(exc)(exc.reason, offset=pos, path=path) from None

    def encode(self, value, scope, out, path):
        out += t.encode_ni(value, self._fmt(scope), scope.ctx, path)


class String(FieldType):
    """STRING(n) in CHAR_FORMAT (section 3.4)."""

    def __init__(self, nbytes: int | Expr) -> None:
        self.nbytes = _const_or(nbytes)

    def size(self, scope: Scope) -> int:
        return self.nbytes(scope)

    def decode_raw(self, raw, scope, path, offset):
        try:
            return t.decode_string(raw, scope.ctx)
        except DecodeError as exc:
            raise type(exc)(exc.reason, offset=offset, path=path) from None

    def encode(self, value, scope, out, path):
        out += t.encode_string(value, self.size(scope), scope.ctx, path)

    def blank(self, scope):
        return ""


class IdString(FieldType):
    """An identification field: STRING(n) with ID_FORM 0, BCD of n/2 bytes with ID_FORM 1.

    With BCD the value is the digit string (always ``n`` digits, leading zeros kept)
    (section 3.4, Table 1 MFG_SERIAL_NUMBER and Table 5 IDENTIFICATION).
    """

    def __init__(self, nchars: int) -> None:
        self.nchars = nchars

    def size(self, scope: Scope) -> int:
        return self.nchars // 2 if scope.ctx.id_form else self.nchars

    def decode_raw(self, raw, scope, path, offset):
        if scope.ctx.id_form:
            digits = self.nchars // 2 * 2
            return f"{t.decode_bcd(raw, path):0{digits}d}" if raw else ""
        return t.decode_string(raw, scope.ctx)

    def encode(self, value, scope, out, path):
        if scope.ctx.id_form:
            if not isinstance(value, str) or not (value.isdigit() or value == "") \
                    or not value.isascii():
                raise LocalProtocolError(
                    f"{path}: BCD identification must be digits, got {value!r}")
            out += t.encode_bcd(int(value or "0"), self.size(scope), path)
        else:
            out += t.encode_string(value, self.nchars, scope.ctx, path)

    def blank(self, scope):
        return "0" * (self.nchars // 2 * 2) if scope.ctx.id_form else ""


class Binary(FieldType):
    """BINARY(n): raw bytes (section 3.4)."""

    def __init__(self, nbytes: int | Expr) -> None:
        self.nbytes = _const_or(nbytes)

    def size(self, scope: Scope) -> int:
        return self.nbytes(scope)

    def decode_raw(self, raw, scope, path, offset):
        return raw

    def encode(self, value, scope, out, path):
        n = self.size(scope)
        if not isinstance(value, (bytes, bytearray)) or len(value) != n:
            raise LocalProtocolError(f"{path}: expected {n} bytes, got {value!r}")
        out += value

    def blank(self, scope):
        return bytes(self.size(scope))


class Rest(FieldType):
    """The remaining bytes of the table, at most ``max_len``.

    Table 7 PARM_DATA and Table 8 RESP_DATA.
    """

    def __init__(self, max_len: int | Expr) -> None:
        self.max_len = _const_or(max_len)

    def size(self, scope: Scope) -> int:
        return self.max_len(scope)

    def decode(self, buf, pos, scope, path, tree=None):
        raw = bytes(buf[pos:])
        limit = self.max_len(scope)
        if len(raw) > limit:
            raise DecodeError(f"{len(raw)} bytes, at most {limit} allowed", offset=pos, path=path)
        return raw, len(buf)

    def encode(self, value, scope, out, path):
        limit = self.max_len(scope)
        if not isinstance(value, (bytes, bytearray)) or len(value) > limit:
            raise LocalProtocolError(f"{path}: at most {limit} bytes, got {value!r}")
        out += value

    def blank(self, scope):
        return b""


class Bcd(FieldType):
    """BCD(n): n bytes of packed decimal digits, as an ``int`` (section 3.3 note)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def size(self, scope: Scope) -> int:
        return self.nbytes

    def decode_raw(self, raw, scope, path, offset):
        try:
            return t.decode_bcd(raw, path)
        except DecodeError as exc:
            raise DecodeError(exc.reason, offset=offset + exc.offset, path=path) from None

    def encode(self, value, scope, out, path):
        out += t.encode_bcd(value, self.nbytes, path)


class TimeDateType(FieldType):
    """LTIME_DATE (``long=True``) or STIME_DATE per TM_FORMAT (section 3.7)."""

    def __init__(self, long: bool) -> None:
        self.long = long

    def size(self, scope: Scope) -> int:
        return scope.ctx.ltime_size if self.long else scope.ctx.stime_size

    def decode(self, buf, pos, scope, path, tree=None):
        try:
            n = self.size(scope)
            raw = t.take(buf, pos, n, path)
            return t.decode_time_date(raw, scope.ctx, long=self.long, path=path), pos + n
        except DecodeError as exc:
            raise type(exc)(exc.reason, offset=pos, path=path) from None

    def encode(self, value, scope, out, path):
        out += t.encode_time_date(value, scope.ctx, long=self.long, path=path)

    def blank(self, scope):
        tm = scope.ctx.tm_format
        if tm == t.TmFormat.NO_CLOCK:
            return None
        if tm in (t.TmFormat.BCD, t.TmFormat.UINT8):
            return t.TimeDate(2000, 0, 0, 0, 0, 0)  # the all-zero bytes of an unused entry
        return t.TimeDate(1970, 1, 1, 0, 0, 0)


class TimeType(FieldType):
    """TIME per TM_FORMAT (section 3.7)."""

    def size(self, scope: Scope) -> int:
        return scope.ctx.time_size

    def decode(self, buf, pos, scope, path, tree=None):
        try:
            n = self.size(scope)
            return t.decode_time(t.take(buf, pos, n, path), scope.ctx, path), pos + n
        except DecodeError as exc:
            raise type(exc)(exc.reason, offset=pos, path=path) from None

    def encode(self, value, scope, out, path):
        out += t.encode_time(value, scope.ctx, path)

    def blank(self, scope):
        tm = scope.ctx.tm_format
        if tm == t.TmFormat.NO_CLOCK:
            return None
        return t.TimeOfDay(0, 0, 0) if tm in (t.TmFormat.BCD, t.TmFormat.UINT8) else 0


class SetOf(FieldType):
    """SET(n): a ``frozenset`` of element numbers (section 3.5)."""

    def __init__(self, nbytes: int | Expr) -> None:
        self.nbytes = _const_or(nbytes)

    def size(self, scope: Scope) -> int:
        return self.nbytes(scope)

    def decode_raw(self, raw, scope, path, offset):
        return t.decode_set(raw)

    def encode(self, value, scope, out, path):
        out += t.encode_set(value, self.size(scope), path)

    def blank(self, scope):
        return frozenset()


#: INT_FMT_CDE of Table 62 -> (size, signed, ni) (section 10.2).
INT_FMT: dict[int, tuple[int, bool, int]] = {
    1: (1, False, 0), 2: (2, False, 0), 4: (4, False, 0),
    8: (1, True, 0), 16: (2, True, 0), 32: (4, True, 0),
    64: (0, True, 1), 128: (0, True, 2),
}


class LpInt(FieldType):
    """Load-profile INT_DATA whose format comes from Table 62 INT_FMT_CDE (section 10.2)."""

    def __init__(self, code: Expr) -> None:
        self.code = code

    def _kind(self, scope: Scope, path: str) -> tuple[int, bool, int]:
        code = self.code(scope)
        kind = INT_FMT.get(code)
        if kind is None:
            raise UnknownCode(f"INT_FMT_CDE {code} is not a format", path=path)
        return kind

    def size(self, scope: Scope) -> int:
        n, _signed, ni = self._kind(scope, "INT_FMT_CDE")
        return scope.ctx.ni_size(ni) if ni else n

    def decode(self, buf, pos, scope, path, tree=None):
        n, signed, ni = self._kind(scope, path)
        if ni:
            return Ni(ni).decode(buf, pos, scope, path)
        return (Int(n) if signed else UInt(n)).decode(buf, pos, scope, path)

    def encode(self, value, scope, out, path):
        try:
            n, signed, ni = self._kind(scope, path)
        except DecodeError as exc:
            raise LocalProtocolError(str(exc)) from None
        if ni:
            Ni(ni).encode(value, scope, out, path)
        else:
            (Int(n) if signed else UInt(n)).encode(value, scope, out, path)


class Bits(FieldType):
    """A BFLD: an unsigned integer in DATA_ORDER split into bit ranges (section 3.5)."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.nbytes: int = cls.__c12_size__  # type: ignore[attr-defined]
        self.bits: tuple[tuple[str, int, int, bool], ...] = (
            cls.__c12_bits__)  # type: ignore[attr-defined]

    def size(self, scope: Scope) -> int:
        return self.nbytes

    def decode_raw(self, raw, scope, path, offset):
        u = t.decode_uint(raw, scope.ctx)
        kw = {}
        for name, lo, hi, is_flag in self.bits:
            v = (u >> lo) & ((1 << (hi - lo + 1)) - 1)
            kw[name] = bool(v) if is_flag else v
        return self.cls(**kw)

    def encode(self, value, scope, out, path):
        if not isinstance(value, self.cls):
            raise LocalProtocolError(f"{path}: expected {self.cls.__name__}, got {value!r}")
        u = 0
        for name, lo, hi, is_flag in self.bits:
            v = getattr(value, name)
            v = int(v) if is_flag else v
            if not isinstance(v, int) or v < 0 or v >> (hi - lo + 1):
                raise LocalProtocolError(f"{path}.{name}: {v!r} does not fit bits {lo}-{hi}")
            u |= v << lo
        out += u.to_bytes(self.nbytes, scope.ctx.byteorder)

    def blank(self, scope):
        return self.cls()


@dataclass(frozen=True)
class FieldSpec:
    """How one record member is coded: its type, an optional condition and array count."""

    ftype: FieldType
    when: Expr | None = None
    count: Expr | None = None


class Struct(FieldType):
    """A nested record (a ``@record`` dataclass), optionally with parameters (``args``)."""

    def __init__(self, cls: type, args: Mapping[str, Any] | None = None) -> None:
        self.cls = cls
        self.args = dict(args or {})
        self.specs: tuple[tuple[str, FieldSpec], ...] = (
            cls.__c12_specs__)  # type: ignore[attr-defined]

    def size(self, scope: Scope, value: Any = None) -> int:
        this: dict[str, Any] = {}
        sub = Scope(scope.env, this, scope, self.args)
        total = 0
        for name, spec in self.specs:
            current = getattr(value, name) if value is not None else None
            if spec.when is not None and not spec.when(sub):
                this[name] = None
                continue
            if spec.count is not None:
                n = spec.count(sub)
                if isinstance(spec.ftype, Struct):
                    items = current if current is not None else [None] * n
                    total += sum(spec.ftype.size(sub, v) for v in items)
                else:
                    total += n * spec.ftype.size(sub)
            elif isinstance(spec.ftype, Struct):
                total += spec.ftype.size(sub, current)
            elif isinstance(spec.ftype, Rest) and current is not None:
                total += len(current)
            else:
                total += spec.ftype.size(sub)
            this[name] = current
        return total

    def decode(self, buf, pos, scope, path, tree=None):
        this: dict[str, Any] = {}
        sub = Scope(scope.env, this, scope, self.args)
        for name, spec in self.specs:
            fpath = f"{path}.{name}" if path else name
            if spec.when is not None and not spec.when(sub):
                this[name] = None
                continue
            start = pos
            kids: list[Node] | None = [] if tree is not None else None
            if spec.count is not None:
                n = spec.count(sub)
                if not isinstance(n, int) or n < 0:
                    raise DecodeError(f"bad element count {n!r}", offset=pos, path=fpath)
                items = []
                for i in range(n):
                    epath = f"{fpath}[{i}]"
                    estart = pos
                    grand: list[Node] | None = [] if tree is not None else None
                    item, pos = spec.ftype.decode(buf, pos, sub, epath, grand)
                    if pos == estart:
                        # An element of no bytes: its count is bounded by nothing in the data.
                        sub.empty_left[0] -= 1
                        if sub.empty_left[0] < 0:
                            raise DecodeLimitExceeded(
                                f"over {limits.MAX_EMPTY_ELEMENTS} elements of no bytes",
                                offset=pos, path=epath)
                    items.append(item)
                    if kids is not None:
                        kids.append(Node(str(i), estart, pos, tuple(grand or ())))
                value: Any = tuple(items)
            else:
                value, pos = spec.ftype.decode(buf, pos, sub, fpath, kids)
            this[name] = value
            if tree is not None:
                tree.append(Node(name, start, pos, tuple(kids or ())))
        try:
            return self.cls(**this), pos
        except (TypeError, ValueError) as exc:  # a __post_init__ that refuses the values
            raise DecodeError(str(exc), offset=pos, path=path) from None

    def encode(self, value, scope, out, path):
        if not isinstance(value, self.cls):
            raise LocalProtocolError(f"{path or 'record'}: expected {self.cls.__name__}, "
                                     f"got {type(value).__name__}")
        this: dict[str, Any] = {}
        sub = Scope(scope.env, this, scope, self.args)
        for name, spec in self.specs:
            fpath = f"{path}.{name}" if path else name
            v = getattr(value, name)
            if spec.when is not None and not spec.when(sub):
                if v is not None:
                    raise LocalProtocolError(f"{fpath}: absent in this configuration, must be None")
                this[name] = None
                continue
            if spec.count is not None:
                n = spec.count(sub)
                if not isinstance(v, (tuple, list)) or len(v) != n:
                    got = len(v) if isinstance(v, (tuple, list)) else type(v).__name__
                    raise LocalProtocolError(f"{fpath}: needs {n} elements, got {got}")
                for i, item in enumerate(v):
                    spec.ftype.encode(item, sub, out, f"{fpath}[{i}]")
            else:
                spec.ftype.encode(v, sub, out, fpath)
            this[name] = v

    def blank(self, scope: Scope) -> Any:
        this: dict[str, Any] = {}
        sub = Scope(scope.env, this, scope, self.args)
        for name, spec in self.specs:
            if spec.when is not None and not spec.when(sub):
                this[name] = None
            elif spec.count is not None:
                this[name] = tuple(spec.ftype.blank(sub) for _ in range(spec.count(sub)))
            else:
                this[name] = spec.ftype.blank(sub)
        return self.cls(**this)


# --------------------------------------------------------------------------- declarations


def _as_type(ftype: Any) -> FieldType:
    if isinstance(ftype, FieldType):
        return ftype
    if hasattr(ftype, "__c12_specs__"):
        return Struct(ftype)
    if hasattr(ftype, "__c12_bits__"):
        return Bits(ftype)
    raise TypeError(f"not a C12.19 field type: {ftype!r}")


def fld(ftype: Any, *, when: Expr | None = None, count: int | Expr | None = None) -> Any:
    """Declare a record member: ``nbr_sources: int = fld(UINT8)``."""
    spec = FieldSpec(_as_type(ftype), when, None if count is None else _const_or(count))
    return field(metadata={"c12": spec})


_C = TypeVar("_C", bound=type)


# dataclass_transform: type checkers (and mypyc) see the records and bitfields as the frozen
# dataclasses they are, with their members as __init__ parameters.
@dataclass_transform(frozen_default=True, field_specifiers=(field, fld))
def record(cls: _C) -> _C:
    """Make ``cls`` a frozen dataclass whose members are all declared with :func:`fld`."""
    dc: Any = dataclass(frozen=True)(cls)
    specs = []
    for f in dataclasses.fields(dc):
        spec = f.metadata.get("c12")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with fld()")
        specs.append((f.name, spec))
    dc.__c12_specs__ = tuple(specs)
    return dc


def flag(bit_no: int) -> Any:
    """A one-bit member of a :func:`bitfield`, as a ``bool``."""
    return field(default=False, metadata={"bits": (bit_no, bit_no, True)})


def bits(lo: int, hi: int) -> Any:
    """A multi-bit member (bits ``lo``..``hi`` inclusive) of a :func:`bitfield`, as an ``int``."""
    return field(default=0, metadata={"bits": (lo, hi, False)})


# No field specifiers here: every member is a flag() or bits() with a default, and a type
# checker takes a call it does not know as that default.
@dataclass_transform(frozen_default=True)
def bitfield(nbytes: int) -> Callable[[_C], _C]:
    """Make ``cls`` a frozen dataclass coded as a BFLD of ``nbytes`` bytes (section 3.5)."""

    def wrap(cls: _C) -> _C:
        dc: Any = dataclass(frozen=True)(cls)
        members = []
        for f in dataclasses.fields(dc):
            lo, hi, is_flag = f.metadata["bits"]
            members.append((f.name, lo, hi, is_flag))
        dc.__c12_bits__ = tuple(members)
        dc.__c12_size__ = nbytes
        return dc

    return wrap


UINT8 = UInt(1)
UINT16 = UInt(2)
UINT24 = UInt(3)
UINT32 = UInt(4)
INT8 = Int(1)
INT16 = Int(2)
INT32 = Int(4)
NI_FMAT1 = Ni(1)
NI_FMAT2 = Ni(2)
LTIME_DATE = TimeDateType(long=True)
STIME_DATE = TimeDateType(long=False)
TIME = TimeType()


# --------------------------------------------------------------------------- whole records


def decode_record(cls: type, data: bytes, env: TableEnv, *, strict: bool = True,
                  args: Mapping[str, Any] | None = None) -> Any:
    """Decode ``data`` as record ``cls``. With ``strict`` trailing bytes are an error."""
    root = Scope(env, {})
    value, end = Struct(cls, args).decode(bytes(data), 0, root, "")
    if strict and end != len(data):
        raise DecodeError(f"{len(data) - end} trailing bytes", offset=end, path=cls.__name__)
    return value


def encode_record(value: Any, env: TableEnv, *, args: Mapping[str, Any] | None = None) -> bytes:
    out = bytearray()
    Struct(type(value), args).encode(value, Scope(env, {}), out, "")
    return bytes(out)


def record_size(cls: type, env: TableEnv, value: Any = None, *,
                args: Mapping[str, Any] | None = None) -> int:
    return Struct(cls, args).size(Scope(env, {}), value)


def blank_record(cls: type, env: TableEnv, *, args: Mapping[str, Any] | None = None) -> Any:
    """A record of ``cls`` with every member cleared (see :meth:`FieldType.blank`)."""
    return Struct(cls, args).blank(Scope(env, {}))


def element_tree(cls: type, data: bytes, env: TableEnv, *,
                 args: Mapping[str, Any] | None = None) -> tuple[Node, ...]:
    """The element map of ``data`` (top-level members with their sub-elements)."""
    tree: list[Node] = []
    Struct(cls, args).decode(bytes(data), 0, Scope(env, {}), "", tree)
    return tuple(tree)


# --------------------------------------------------------------------------- canonical JSON


def to_jsonable(value: Any) -> Any:
    """The canonical JSON form of a decoded value (architecture rule 6).

    Records become objects keyed by the standard's lower-cased field names, SETs sorted
    lists, BINARY a hex string, times ISO-like strings and Decimal a string.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, t.TimeDate):
        return value.isoformat()
    if isinstance(value, t.TimeOfDay):
        return f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    if dataclasses.is_dataclass(value):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return repr(value)


__all__ = [
    "TableEnv", "Scope", "Node", "FieldType", "FieldSpec", "UInt", "Int", "Ni", "String",
    "IdString", "Binary", "Rest", "Bcd", "TimeDateType", "TimeType", "SetOf", "LpInt", "Bits",
    "Struct", "fld", "record", "flag", "bits", "bitfield", "decode_record", "encode_record",
    "record_size", "blank_record", "element_tree", "to_jsonable", "UINT8", "UINT16", "UINT24",
    "UINT32", "INT8",
    "INT16", "INT32", "NI_FMAT1", "NI_FMAT2", "LTIME_DATE", "STIME_DATE", "TIME", "INT_FMT",
]
