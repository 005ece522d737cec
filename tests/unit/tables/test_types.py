"""C12.19 data types under Table 0 formats (docs/spec c1219 section 3)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from c1222.errors import DecodeError, LocalProtocolError, UnknownCode
from c1222.tables import types as t

LE = t.TableContext(data_order=0)
BE = t.TableContext(data_order=1)


def ctx(**kw) -> t.TableContext:
    return t.TableContext(**kw)


@pytest.mark.parametrize("fmt, raw", [
    (0, bytes.fromhex("ff")),  # two's complement
    (1, bytes.fromhex("fe")),  # one's complement
    (2, bytes.fromhex("81")),  # sign-magnitude
])
def test_int_formats_minus_one(fmt: int, raw: bytes) -> None:
    c = ctx(int_format=fmt)
    assert t.decode_int(raw, c) == -1
    assert t.encode_int(-1, 1, c) == raw


def test_int_byte_order() -> None:
    assert t.encode_int(-2, 2, LE) == bytes.fromhex("feff")
    assert t.encode_int(-2, 2, BE) == bytes.fromhex("fffe")
    assert t.decode_uint(bytes.fromhex("0102"), LE) == 0x0201
    assert t.decode_uint(bytes.fromhex("0102"), BE) == 0x0102


def test_int_ranges_and_errors() -> None:
    assert t.int_range(1, 0) == (-128, 127)
    assert t.int_range(1, 1) == (-127, 127)
    with pytest.raises(LocalProtocolError):
        t.encode_int(-128, 1, ctx(int_format=2))
    with pytest.raises(LocalProtocolError):
        t.encode_uint(256, 1, LE)
    with pytest.raises(UnknownCode):
        t.decode_int(b"\x00", ctx(int_format=3))


def test_ni_int48_register_example() -> None:
    # Section 15.3: 1 234 567 Wh as INT48 = 87 D6 12 00 00 00.
    raw = bytes.fromhex("87d612000000")
    assert t.decode_ni(raw, t.NiFormat.INT48, LE) == 1234567
    assert t.encode_ni(1234567, t.NiFormat.INT48, LE) == raw


def test_ni_present_values_example() -> None:
    # Section 15.3 Table 28: 3456 W, 3600 VA, 24015 (240.15 V), 14996 mA, PF 960.
    raw = bytes.fromhex("800D00000000100E00000000CF5D00000000943A00000000C00300000000")
    values = [t.decode_ni(raw[i:i + 6], 10, LE) for i in range(0, 30, 6)]
    assert values == [3456, 3600, 24015, 14996, 960]


@pytest.mark.parametrize("fmt, value", [
    (0, 240.15), (1, 0.5), (4, Decimal("12.3456")), (7, -8388608), (8, 7), (9, -1),
    (11, 2**63 - 1), (2, Decimal("-12.5")), (3, Decimal("99.9")), (13, Decimal("1E-7")),
    (5, 123456789012), (6, 12345678), (12, 9999999999999999),
])
@pytest.mark.parametrize("c", [LE, BE])
def test_ni_roundtrip(fmt: int, value, c: t.TableContext) -> None:
    raw = t.encode_ni(value, fmt, c)
    assert len(raw) == t.NI_SIZE[fmt]
    assert t.decode_ni(raw, fmt, c) == value


def test_ni_float_byte_order() -> None:
    assert t.encode_ni(1.0, 1, BE) == bytes.fromhex("3f800000")
    assert t.encode_ni(1.0, 1, LE) == bytes.fromhex("0000803f")


def test_ni_char_and_bcd_errors() -> None:
    assert t.encode_ni(Decimal("1.5"), 3, LE) == b"1.5   "
    with pytest.raises(DecodeError):
        t.decode_ni(b"abc   ", 3, LE)
    with pytest.raises(DecodeError):
        t.decode_ni(bytes.fromhex("1a000000"), 6, LE)
    with pytest.raises(LocalProtocolError):
        t.encode_ni(Decimal("1234567"), 3, LE)
    with pytest.raises(LocalProtocolError):
        t.encode_ni(1.5, 10, LE)  # integer formats refuse fractions
    with pytest.raises(UnknownCode):
        t.decode_ni(b"", 14, LE)
    assert t.encode_ni(Decimal("1.0"), 8, LE) == bytes.fromhex("01000000")


def test_strings_pad_and_strip() -> None:
    assert t.encode_string("SIMU", 6, LE) == b"SIMU  "
    assert t.decode_string(b"PYMTR1  ", LE) == "PYMTR1"
    assert t.decode_string(b"AB\x00\x00", LE) == "AB"
    assert t.decode_string(b"\xff\xffA", LE) == "\ufffd\ufffdA"  # erased memory is not fatal
    assert t.encode_string("\ufffd", 2, LE) == b"? "
    with pytest.raises(LocalProtocolError):
        t.encode_string("toolong", 3, LE)
    with pytest.raises(LocalProtocolError):
        t.encode_string("é", 3, LE)  # ISO 646 is 7-bit
    assert t.encode_string("é", 3, ctx(char_format=2)) == b"\xe9  "
    assert t.encode_string("é", 3, ctx(char_format=3)) == b"\xc3\xa9 "
    assert t.encode_string("A", 5, ctx(char_format=4)) == b"A\x00 \x00\x00"
    assert t.decode_string(b"\x00A\x00 \x00", ctx(char_format=4, data_order=1)) == "A"
    with pytest.raises(UnknownCode):
        t.decode_string(b"A", ctx(char_format=7))


def test_bcd() -> None:
    assert t.encode_bcd(1234, 2) == bytes.fromhex("1234")
    assert t.decode_bcd(bytes.fromhex("0099")) == 99
    with pytest.raises(LocalProtocolError):
        t.encode_bcd(10000, 2)


def test_clock_example_tm_format_2() -> None:
    # Section 9.2: 2024-03-15 13:45:30 = 18 03 0F 0D 2D 1E.
    raw = bytes.fromhex("18030f0d2d1e")
    c = ctx(tm_format=2)
    td = t.decode_time_date(raw, c, long=True)
    assert td == t.TimeDate(2024, 3, 15, 13, 45, 30)
    assert t.encode_time_date(td, c, long=True) == raw
    assert t.encode_time_date(t.TimeDate(2024, 3, 15, 13, 45), c, long=False) == raw[:5]


def test_tm_format_1_bcd_and_two_digit_years() -> None:
    c = ctx(tm_format=1)
    assert t.encode_time_date(t.TimeDate(2024, 3, 15, 13, 45, 30), c, long=True) == \
        bytes.fromhex("240315134530")
    assert t.decode_time_date(bytes.fromhex("990101000000"), c, long=True).year == 1999
    assert t.decode_time_date(bytes.fromhex("890101000000"), c, long=True).year == 2089
    with pytest.raises(LocalProtocolError):
        t.encode_time_date(t.TimeDate(2090, 1, 1, 0, 0, 0), c, long=True)
    with pytest.raises(DecodeError):
        t.decode_time_date(bytes.fromhex("2A0101000000"), c, long=True)


def test_tm_formats_3_and_4_epoch() -> None:
    td = t.TimeDate(2024, 3, 15, 13, 45, 30)
    minutes = 1710510300 // 60
    c3, c4 = ctx(tm_format=3), ctx(tm_format=4)
    assert t.encode_time_date(td, c3, long=True) == minutes.to_bytes(4, "little") + bytes([30])
    assert t.encode_time_date(td, c4, long=True) == (1710510330).to_bytes(4, "little")
    assert t.decode_time_date((1710510330).to_bytes(4, "little"), c4, long=True) == td
    assert len(t.encode_time_date(td.__class__(2024, 3, 15, 13, 45), c3, long=False)) == 4
    with pytest.raises(LocalProtocolError):
        t.encode_time_date(t.TimeDate(2024, 2, 30, 0, 0, 0), c4, long=True)


def test_tm_format_0_and_reserved() -> None:
    assert t.decode_time_date(b"", ctx(tm_format=0), long=True) is None
    assert t.encode_time_date(None, ctx(tm_format=0), long=True) == b""
    with pytest.raises(UnknownCode):
        ctx(tm_format=6).ltime_size
    assert t.TimeDate(2000, 0, 0, 0, 0, 0).to_datetime() is None  # unused log entries


def test_time_of_day() -> None:
    assert t.decode_time(bytes([1, 2, 3]), ctx(tm_format=2)) == t.TimeOfDay(1, 2, 3)
    assert t.encode_time(t.TimeOfDay(12, 0, 0), ctx(tm_format=1)) == bytes.fromhex("120000")
    assert t.decode_time(bytes.fromhex("3c000000"), ctx(tm_format=4)) == 60


def test_sets() -> None:
    assert t.encode_set({0, 9}, 2) == bytes.fromhex("0102")
    with pytest.raises(LocalProtocolError):
        t.encode_set({16}, 2)
