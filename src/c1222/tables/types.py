"""C12.19 data types, driven by Table 0 (docs/spec c1219 section 3).

Everything here is pure: bytes in, values out, and back. The encoding of integers,
non-integers, characters and times depends on the formats that Table 0 declares; a
:class:`TableContext` carries those formats so no codec ever assumes a constant byte
order or time format (architecture rule 5).

Decoders raise only :class:`~c1222.errors.DecodeError` subclasses; encoders raise
:class:`~c1222.errors.LocalProtocolError` when asked to encode a value that does not fit.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from typing import Any, Literal

from c1222.errors import DecodeError, LocalProtocolError, Truncated, UnknownCode


class DataOrder(IntEnum):
    """FORMAT_CONTROL_1.DATA_ORDER (section 3.1)."""

    LSB_FIRST = 0
    MSB_FIRST = 1


class CharFormat(IntEnum):
    """FORMAT_CONTROL_1.CHAR_FORMAT (section 3.4). 4 and 5 are 2012 additions [UNVERIFIED]."""

    ISO_646 = 1
    ISO_8859_1 = 2
    UTF_8 = 3
    UTF_16 = 4
    UTF_32 = 5


class TmFormat(IntEnum):
    """FORMAT_CONTROL_2.TM_FORMAT (section 3.7)."""

    NO_CLOCK = 0
    BCD = 1
    UINT8 = 2
    UINT32_MINUTES = 3
    UINT32_SECONDS = 4


class IntFormat(IntEnum):
    """FORMAT_CONTROL_2.INT_FORMAT (section 3.2)."""

    TWOS_COMPLEMENT = 0
    ONES_COMPLEMENT = 1
    SIGN_MAGNITUDE = 2


class NiFormat(IntEnum):
    """NI_FORMAT1 / NI_FORMAT2 codes (section 3.3)."""

    FLOAT64 = 0
    FLOAT32 = 1
    FLOAT_CHAR12 = 2
    FLOAT_CHAR6 = 3
    INT32_IMPLIED = 4
    FIXED_BCD6 = 5
    FIXED_BCD4 = 6
    INT24 = 7
    INT32 = 8
    INT40 = 9
    INT48 = 10
    INT64 = 11
    FIXED_BCD8 = 12
    FLOAT_CHAR21 = 13


class DataAccessMethod(IntEnum):
    """FORMAT_CONTROL_2.DATA_ACCESS_METHOD (section 4)."""

    FULL_ONLY = 0
    OFFSET = 1
    INDEX = 2
    OFFSET_AND_INDEX = 3


#: Bytes of each NI format (section 3.3). BCD sizes follow EICT [UNVERIFIED].
NI_SIZE: dict[int, int] = {
    0: 8, 1: 4, 2: 12, 3: 6, 4: 4, 5: 6, 6: 4, 7: 3, 8: 4, 9: 5, 10: 6, 11: 8, 12: 8, 13: 21,
}
#: Bytes of LTIME_DATE / STIME_DATE / TIME per TM_FORMAT (section 3.7).
LTIME_SIZE: dict[int, int] = {0: 0, 1: 6, 2: 6, 3: 5, 4: 4}
STIME_SIZE: dict[int, int] = {0: 0, 1: 5, 2: 5, 3: 4, 4: 4}
TIME_SIZE: dict[int, int] = {0: 0, 1: 3, 2: 3, 3: 4, 4: 4}

_NI_CHAR = {2, 3, 13}
_NI_BCD = {5, 6, 12}
_NI_INT = {7, 8, 9, 10, 11}
_IMPLIED_DECIMALS = 4  # NI format 4: "1 represents 0.0001"


@dataclass(frozen=True)
class TableContext:
    """The encoding parameters Table 0 declares (section 4, FORMAT_CONTROL_1..3).

    Built from a decoded Table 0 with :meth:`GenConfig.context`, or directly in tests.
    Reserved codes are accepted here and refused only when a field that needs them is
    coded, so a Table 0 with an odd format still decodes.
    """

    data_order: int = DataOrder.LSB_FIRST
    char_format: int = CharFormat.ISO_646
    tm_format: int = TmFormat.UINT8
    int_format: int = IntFormat.TWOS_COMPLEMENT
    ni_format1: int = NiFormat.INT48
    ni_format2: int = NiFormat.INT32
    id_form: int = 0

    @property
    def byteorder(self) -> Literal["little", "big"]:
        return "big" if self.data_order & 1 else "little"

    @property
    def struct_order(self) -> str:
        return ">" if self.data_order & 1 else "<"

    def ni_size(self, which: int) -> int:
        fmt = self.ni_format1 if which == 1 else self.ni_format2
        try:
            return NI_SIZE[fmt]
        except KeyError:
            raise UnknownCode(f"reserved NI_FORMAT{which} {fmt}",
                              path=f"NI_FORMAT{which}") from None

    def _tm(self, table: dict[int, int]) -> int:
        try:
            return table[self.tm_format]
        except KeyError:
            raise UnknownCode(f"reserved TM_FORMAT {self.tm_format}", path="TM_FORMAT") from None

    @property
    def ltime_size(self) -> int:
        return self._tm(LTIME_SIZE)

    @property
    def stime_size(self) -> int:
        return self._tm(STIME_SIZE)

    @property
    def time_size(self) -> int:
        return self._tm(TIME_SIZE)


# --------------------------------------------------------------------------- helpers


def take(buf: bytes, pos: int, n: int, path: str) -> bytes:
    """Return ``buf[pos:pos+n]`` or raise :class:`Truncated`."""
    if n < 0 or pos + n > len(buf):
        raise Truncated(f"need {n} bytes, {max(0, len(buf) - pos)} left", offset=pos, path=path)
    return bytes(buf[pos : pos + n])


# --------------------------------------------------------------------------- integers


def decode_uint(raw: bytes, ctx: TableContext) -> int:
    """UINTn in DATA_ORDER (section 3.2)."""
    return int.from_bytes(raw, ctx.byteorder)


def encode_uint(value: int, size: int, ctx: TableContext, path: str = "") -> bytes:
    if not isinstance(value, int) or value < 0 or value >> (8 * size):
        raise LocalProtocolError(f"{path or 'value'}: {value!r} does not fit UINT{8 * size}")
    return value.to_bytes(size, ctx.byteorder)


def int_range(size: int, int_format: int) -> tuple[int, int]:
    """Smallest and largest INTn value under INT_FORMAT (section 3.2)."""
    bits = 8 * size
    if int_format == IntFormat.TWOS_COMPLEMENT:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return -((1 << (bits - 1)) - 1), (1 << (bits - 1)) - 1


def decode_int(raw: bytes, ctx: TableContext, path: str = "") -> int:
    """INTn in DATA_ORDER and INT_FORMAT (section 3.2)."""
    bits = 8 * len(raw)
    u = int.from_bytes(raw, ctx.byteorder)
    sign = u >> (bits - 1)
    fmt = ctx.int_format
    if fmt == IntFormat.TWOS_COMPLEMENT:
        return u - (sign << bits)
    if fmt == IntFormat.ONES_COMPLEMENT:
        return -((~u) & ((1 << bits) - 1)) if sign else u
    if fmt == IntFormat.SIGN_MAGNITUDE:
        mag = u & ((1 << (bits - 1)) - 1)
        return -mag if sign else mag
    raise UnknownCode(f"reserved INT_FORMAT {fmt}", path=path or "INT_FORMAT")


def encode_int(value: int, size: int, ctx: TableContext, path: str = "") -> bytes:
    fmt = ctx.int_format
    if fmt not in (0, 1, 2):
        raise LocalProtocolError(f"reserved INT_FORMAT {fmt}")
    lo, hi = int_range(size, fmt)
    if not isinstance(value, int) or not lo <= value <= hi:
        raise LocalProtocolError(f"{path or 'value'}: {value!r} does not fit INT{8 * size}")
    bits = 8 * size
    if value >= 0:
        u = value
    elif fmt == IntFormat.TWOS_COMPLEMENT:
        u = value + (1 << bits)
    elif fmt == IntFormat.ONES_COMPLEMENT:
        u = (~(-value)) & ((1 << bits) - 1)
    else:
        u = (1 << (bits - 1)) | -value
    return u.to_bytes(size, ctx.byteorder)


# --------------------------------------------------------------------------- BCD


def decode_bcd(raw: bytes, path: str = "") -> int:
    """Packed BCD, most significant digit first (EICT; section 3.3 note) [UNVERIFIED sign]."""
    value = 0
    for i, byte in enumerate(raw):
        hi, lo = byte >> 4, byte & 0xF
        if hi > 9 or lo > 9:
            raise DecodeError(f"invalid BCD byte {byte:#04x}", offset=i, path=path)
        value = value * 100 + hi * 10 + lo
    return value


def encode_bcd(value: int, size: int, path: str = "") -> bytes:
    if not isinstance(value, int) or value < 0 or value >= 10 ** (2 * size):
        raise LocalProtocolError(f"{path or 'value'}: {value!r} does not fit {2 * size} BCD digits")
    digits = f"{value:0{2 * size}d}"
    return bytes(int(digits[i]) << 4 | int(digits[i + 1]) for i in range(0, 2 * size, 2))


# --------------------------------------------------------------------------- NI formats

NiValue = int | float | Decimal


def decode_ni(raw: bytes, fmt: int, ctx: TableContext, path: str = "") -> NiValue:
    """A NI_FMAT1/NI_FMAT2 value (section 3.3).

    Integer formats give ``int``, floats give ``float``, format 4 (implied decimal) and the
    character formats give :class:`~decimal.Decimal` so that no precision is invented.
    """
    if fmt == NiFormat.FLOAT64:
        return struct.unpack(ctx.struct_order + "d", raw)[0]
    if fmt == NiFormat.FLOAT32:
        return struct.unpack(ctx.struct_order + "f", raw)[0]
    if fmt in _NI_INT:
        return decode_int(raw, ctx, path)
    if fmt == NiFormat.INT32_IMPLIED:
        return Decimal(decode_int(raw, ctx, path)).scaleb(-_IMPLIED_DECIMALS)
    if fmt in _NI_BCD:
        return decode_bcd(raw, path)
    if fmt in _NI_CHAR:
        text = raw.decode("latin-1").strip(" \x00")
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise DecodeError(f"not a number: {text[:24]!r}", path=path) from None
        if not text.isascii():
            raise DecodeError("non-ASCII number", path=path)
        if not value.is_finite():
            # "NaN", "sNaN", "Infinity" parse as Decimals but are no C12.19 number; sNaN
            # would even raise (InvalidOperation, ValueError) wherever it is compared or used.
            raise DecodeError(f"not a finite number: {text[:24]!r}", path=path)
        return value
    raise UnknownCode(f"reserved NI format {fmt}", path=path)


def _integral(value: NiValue, path: str) -> int:
    """Exact integer for the integer NI formats; refuses fractions so no value is silently cut."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise LocalProtocolError(f"{path or 'value'}: {value!r} is not finite")
    if isinstance(value, (float, Decimal)) and value == int(value):
        return int(value)
    raise LocalProtocolError(f"{path or 'value'}: {value!r} is not an integer (scale it first)")


def encode_ni(value: NiValue, fmt: int, ctx: TableContext, path: str = "") -> bytes:
    size = NI_SIZE.get(fmt)
    if size is None:
        raise LocalProtocolError(f"reserved NI format {fmt}")
    if fmt == NiFormat.FLOAT64:
        return struct.pack(ctx.struct_order + "d", float(value))
    if fmt == NiFormat.FLOAT32:
        try:
            return struct.pack(ctx.struct_order + "f", float(value))
        except OverflowError:
            raise LocalProtocolError(f"{path or 'value'}: {value!r} overflows FLOAT32") from None
    if fmt in _NI_INT:
        return encode_int(_integral(value, path), size, ctx, path)
    if fmt == NiFormat.INT32_IMPLIED:
        scaled = Decimal(value).scaleb(_IMPLIED_DECIMALS)
        return encode_int(_integral(scaled, path), size, ctx, path)
    if fmt in _NI_BCD:
        return encode_bcd(_integral(value, path), size, path)
    # Character formats: the shortest plain notation, left-justified and space padded.
    dec = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    if not dec.is_finite():
        raise LocalProtocolError(f"{path or 'value'}: {value!r} is not finite")
    text = str(dec)
    if len(text) > size:
        raise LocalProtocolError(f"{path or 'value'}: {text!r} longer than {size} characters")
    return text.ljust(size).encode("ascii")


# --------------------------------------------------------------------------- characters

_CODECS = {1: "ascii", 2: "latin-1", 3: "utf-8"}


def _codec(ctx: TableContext) -> tuple[str, int]:
    """Python codec name and code-unit size for CHAR_FORMAT."""
    fmt = ctx.char_format
    if fmt in _CODECS:
        return _CODECS[fmt], 1
    if fmt == CharFormat.UTF_16:
        return ("utf-16-be" if ctx.data_order & 1 else "utf-16-le"), 2
    if fmt == CharFormat.UTF_32:
        return ("utf-32-be" if ctx.data_order & 1 else "utf-32-le"), 4
    raise UnknownCode(f"reserved CHAR_FORMAT {fmt}", path="CHAR_FORMAT")


def decode_string(raw: bytes, ctx: TableContext) -> str:
    """STRING(n): fixed size, left-justified, space padded (section 3.4).

    Trailing spaces and NULs are padding. Undecodable bytes become U+FFFD instead of
    failing the whole table, because erased memory (``FF``) is common in real meters.
    """
    codec, unit = _codec(ctx)
    usable = len(raw) - len(raw) % unit
    return raw[:usable].decode(codec, errors="replace").rstrip(" \x00")


def encode_string(value: str, size: int, ctx: TableContext, path: str = "") -> bytes:
    codec, unit = _codec(ctx)
    if unit == 1 and isinstance(value, str):
        # U+FFFD comes from decoding bytes the character set lacks; send it back as "?", so a
        # decoded string always fits its field again (in UTF-8 U+FFFD takes 3 bytes, more
        # than the byte it replaced).
        value = value.replace("\ufffd", "?")
    try:
        body = value.encode(codec)
    except (UnicodeEncodeError, AttributeError):
        raise LocalProtocolError(f"{path or 'value'}: {value!r} not encodable as {codec}") from None
    if len(body) > size:
        raise LocalProtocolError(f"{path or 'value'}: {len(body)} bytes, field holds {size}")
    space = " ".encode(codec)
    pad = (size - len(body)) // unit
    body += space * pad
    return body + b"\x00" * (size - len(body))


# --------------------------------------------------------------------------- SET


def decode_set(raw: bytes) -> frozenset[int]:
    """SET(n): element k is byte k//8, bit k%8 (section 3.5)."""
    return frozenset(i * 8 + j for i, byte in enumerate(raw) for j in range(8) if byte >> j & 1)


def encode_set(items: frozenset[int] | set[int], size: int, path: str = "") -> bytes:
    out = bytearray(size)
    for k in items:
        if not isinstance(k, int) or not 0 <= k < 8 * size:
            raise LocalProtocolError(f"{path or 'set'}: element {k!r} outside SET({size})")
        out[k // 8] |= 1 << (k % 8)
    return bytes(out)


# --------------------------------------------------------------------------- dates and times


@dataclass(frozen=True, order=True)
class TimeDate:
    """LTIME_DATE / STIME_DATE value (section 3.7), as calendar fields.

    The fields are kept as coded, without validation, because real tables carry unused
    entries full of zeros; :meth:`to_datetime` tells whether the value is a real instant.
    STIME_DATE values always have ``second == 0``.
    """

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int = 0

    @classmethod
    def from_datetime(cls, dt: object) -> TimeDate:
        """From a :class:`datetime.datetime` (its tzinfo is ignored: meters store wall time)."""
        d: Any = dt
        return cls(d.year, d.month, d.day, d.hour, d.minute, d.second)

    def to_datetime(self):  # -> datetime.datetime | None
        """The naive :class:`datetime.datetime`, or ``None`` when the fields are not a date."""
        import datetime as _dt  # local: only this helper needs it

        try:
            return _dt.datetime(self.year, self.month, self.day, self.hour, self.minute,
                                self.second)
        except (ValueError, OverflowError):
            return None

    def isoformat(self) -> str:
        return (f"{self.year:04d}-{self.month:02d}-{self.day:02d}T"
                f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}")


@dataclass(frozen=True)
class TimeOfDay:
    """TIME value with TM_FORMAT 1/2 (section 3.7): hours, minutes, seconds as coded."""

    hour: int
    minute: int
    second: int


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def is_valid_time_date(td: TimeDate) -> bool:
    """True when the fields name a real instant (any year; datetime stops at 9999)."""
    if not 1 <= td.month <= 12 or td.day < 1:
        return False
    days = 29 if td.month == 2 and _is_leap(td.year) else _MONTH_DAYS[td.month - 1]
    if td.month == 2 and not _is_leap(td.year):
        days = 28
    return td.day <= days and 0 <= td.hour < 24 and 0 <= td.minute < 60 and 0 <= td.second < 60


def epoch_seconds(td: TimeDate) -> int:
    """Seconds since 1970-01-01 00:00 of a valid :class:`TimeDate` (formats 3 and 4)."""
    if not is_valid_time_date(td):
        raise LocalProtocolError(f"{td} is not a valid date for an epoch time format")
    days = _days_from_civil(td.year, td.month, td.day)
    return days * 86400 + td.hour * 3600 + td.minute * 60 + td.second


def from_epoch_seconds(secs: int) -> TimeDate:
    days, rem = divmod(secs, 86400)
    y, m, d = _civil_from_days(days)
    return TimeDate(y, m, d, rem // 3600, rem // 60 % 60, rem % 60)


def _year_from_2digit(yy: int, path: str) -> int:
    """Two-digit years: 0-89 are 2000-2089, 90-99 are 1990-1999 (section 3.7)."""
    if yy > 99:
        raise DecodeError(f"year byte {yy} is not two digits", path=path)
    return 2000 + yy if yy < 90 else 1900 + yy


def _year_to_2digit(year: int, path: str) -> int:
    if not 1990 <= year <= 2089:
        raise LocalProtocolError(f"{path or 'year'}: {year} outside 1990-2089 (two-digit years)")
    return year % 100


def _fields_decode(raw: bytes, tm: int, path: str) -> list[int]:
    if tm == TmFormat.BCD:
        return [decode_bcd(bytes([b]), path) for b in raw]
    return list(raw)


def _fields_encode(values: list[int], tm: int, path: str) -> bytes:
    if tm == TmFormat.BCD:
        return b"".join(encode_bcd(v, 1, path) for v in values)
    for v in values:
        if not isinstance(v, int) or not 0 <= v <= 255:
            raise LocalProtocolError(f"{path or 'time'}: field {v!r} does not fit a byte")
    return bytes(values)


def decode_time_date(raw: bytes, ctx: TableContext, *, long: bool,
                     path: str = "") -> TimeDate | None:
    """LTIME_DATE (``long``) or STIME_DATE per TM_FORMAT (section 3.7). TM_FORMAT 0 gives None."""
    tm = ctx.tm_format
    if tm == TmFormat.NO_CLOCK:
        return None
    if tm in (TmFormat.BCD, TmFormat.UINT8):
        f = _fields_decode(raw, tm, path)
        year = _year_from_2digit(f[0], path)
        return TimeDate(year, f[1], f[2], f[3], f[4], f[5] if long else 0)
    if tm == TmFormat.UINT32_MINUTES:
        minutes = int.from_bytes(raw[:4], ctx.byteorder)
        second = raw[4] if long else 0
        td = from_epoch_seconds(minutes * 60)
        return TimeDate(td.year, td.month, td.day, td.hour, td.minute, second)
    if tm == TmFormat.UINT32_SECONDS:
        td = from_epoch_seconds(int.from_bytes(raw, ctx.byteorder))
        # STIME_DATE has minute resolution in every other format; keep seconds as coded here.
        return td
    raise UnknownCode(f"reserved TM_FORMAT {tm}", path=path or "TM_FORMAT")


def encode_time_date(value: TimeDate | None, ctx: TableContext, *, long: bool,
                     path: str = "") -> bytes:
    tm = ctx.tm_format
    if tm == TmFormat.NO_CLOCK:
        if value is not None:
            raise LocalProtocolError(f"{path or 'time'}: TM_FORMAT 0 carries no time")
        return b""
    if not isinstance(value, TimeDate):
        raise LocalProtocolError(f"{path or 'time'}: expected TimeDate, got {value!r}")
    if tm in (TmFormat.BCD, TmFormat.UINT8):
        fields = [_year_to_2digit(value.year, path), value.month, value.day, value.hour,
                  value.minute]
        if long:
            fields.append(value.second)
        elif value.second:
            raise LocalProtocolError(f"{path or 'time'}: STIME_DATE has no seconds")
        return _fields_encode(fields, tm, path)
    if tm == TmFormat.UINT32_MINUTES:
        if not 0 <= value.second <= 255 or (not long and value.second):
            raise LocalProtocolError(f"{path or 'time'}: bad seconds {value.second}")
        minutes = epoch_seconds(TimeDate(value.year, value.month, value.day, value.hour,
                                         value.minute, 0)) // 60
        out = encode_uint(minutes, 4, ctx, path)
        return out + bytes([value.second]) if long else out
    if tm == TmFormat.UINT32_SECONDS:
        return encode_uint(epoch_seconds(value), 4, ctx, path)
    raise LocalProtocolError(f"reserved TM_FORMAT {tm}")


def decode_time(raw: bytes, ctx: TableContext, path: str = "") -> TimeOfDay | int | None:
    """TIME per TM_FORMAT: hh mm ss for 1/2; a UINT32 for 3/4 [UNVERIFIED: minutes or seconds]."""
    tm = ctx.tm_format
    if tm == TmFormat.NO_CLOCK:
        return None
    if tm in (TmFormat.BCD, TmFormat.UINT8):
        h, m, s = _fields_decode(raw, tm, path)
        return TimeOfDay(h, m, s)
    if tm in (TmFormat.UINT32_MINUTES, TmFormat.UINT32_SECONDS):
        return int.from_bytes(raw, ctx.byteorder)
    raise UnknownCode(f"reserved TM_FORMAT {tm}", path=path or "TM_FORMAT")


def encode_time(value: TimeOfDay | int | None, ctx: TableContext, path: str = "") -> bytes:
    tm = ctx.tm_format
    if tm == TmFormat.NO_CLOCK:
        if value is not None:
            raise LocalProtocolError(f"{path or 'time'}: TM_FORMAT 0 carries no time")
        return b""
    if tm in (TmFormat.BCD, TmFormat.UINT8):
        if not isinstance(value, TimeOfDay):
            raise LocalProtocolError(f"{path or 'time'}: expected TimeOfDay, got {value!r}")
        return _fields_encode([value.hour, value.minute, value.second], tm, path)
    if tm in (TmFormat.UINT32_MINUTES, TmFormat.UINT32_SECONDS):
        if not isinstance(value, int):
            raise LocalProtocolError(f"{path or 'time'}: expected int, got {value!r}")
        return encode_uint(value, 4, ctx, path)
    raise LocalProtocolError(f"reserved TM_FORMAT {tm}")
