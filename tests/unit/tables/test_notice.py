"""MT2 CUSTOMER_NOTICE_TBL: its layout, its rules and who may write it (docs/tables.md)."""

from __future__ import annotations

import pytest

from c1222.errors import IAR, ISC, DecodeError
from c1222.tables.access import GROUP_ALL, GROUP_READ, GROUP_WRITE, Principal
from c1222.tables.notice import (
    NOTICE_TABLE, TEXT_BYTES, CustomerNotice, NoticeKind, cleared, text_problem, view,
)
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.registry import decode_table, encode_table, table_name, table_size
from c1222.tables.types import TimeDate

START = TimeDate(2026, 12, 6, 9, 0, 0)
END = TimeDate(2026, 12, 6, 11, 30, 0)
OPERATOR = Principal(2, GROUP_ALL)


@pytest.fixture()
def store():
    return build_tables(MeterProfile()).store


def peak() -> CustomerNotice:
    return CustomerNotice(7, NoticeKind.PEAK_PERIOD, 0, 2500, START, END, "피크 시간입니다",
                          "Peak period")


def test_layout_bytes(store) -> None:
    raw = encode_table(NOTICE_TABLE, peak(), store.env)
    assert len(raw) == table_size(NOTICE_TABLE, store.env) == 4 + 1 + 1 + 4 + 6 + 6 + 2 * 240
    # little-endian integers, TM_FORMAT 2 (UINT8 year since 2000), UTF-8 NUL-padded texts
    assert raw[:22].hex() == "07000000" "02" "00" "c4090000" "1a0c06090000" "1a0c060b1e00"
    ko = "피크 시간입니다".encode()
    assert raw[22:22 + len(ko)] == ko and raw[22 + len(ko):262] == bytes(240 - len(ko))
    assert raw[262:273] == b"Peak period" and raw[273:] == bytes(240 - 11)
    assert decode_table(NOTICE_TABLE, raw, store.env) == peak()
    assert table_name(NOTICE_TABLE) == "MT2"


def test_default_meter_serves_a_cleared_notice(store) -> None:
    gc = store.gen_config
    assert gc.mfg_tbls_used == gc.mfg_tbls_write == {2}
    assert view(store.get(NOTICE_TABLE)) is None
    raw = encode_table(NOTICE_TABLE, cleared(store.env), store.env)
    assert raw == store.get_bytes(NOTICE_TABLE) and view(decode_table(NOTICE_TABLE, raw,
                                                                      store.env)) is None


def test_view() -> None:
    v = view(peak())
    assert v is not None and (v.kind, v.limit_w, v.block) == ("peak", 2500, None)
    assert v.end - v.start == 9000
    assert v.active(v.start) and not v.active(v.end) and not v.active(v.start - 1)


@pytest.mark.parametrize("args, why", [
    ((7, 9, 0, 0, START, END, "", "x"), "NOTICE_KIND 9"),
    ((0, 3, 0, 0, START, END, "", "x"), "NOTICE_ID 0"),
    ((7, 3, 0, 0, END, START, "", "x"), "not after"),
    ((7, 3, 0, 0, START, START, "", "x"), "not after"),
    ((7, 3, 0, 0, TimeDate(2026, 13, 1, 0, 0, 0), END, "", "x"), "must be dates"),
    ((7, 3, 0, 0, START, END, "", ""), "without text"),
    ((7, 1, 0, 0, START, END, "", ""), "TARIFF_BLOCK 0"),
    ((7, 1, 5, 0, START, END, "", ""), "TARIFF_BLOCK 5"),
    ((7, 3, 2, 0, START, END, "", "x"), "TARIFF_BLOCK 2"),
    ((7, 2, 0, 0, START, END, "", ""), "LIMIT_W 0"),
    ((7, 3, 0, 100, START, END, "", "x"), "LIMIT_W 100"),
    ((0, 0, 0, 0, START, END, "", "left over"), "with contents"),
    ((7, 3, 0, 0, START, END, "가" * 81, ""), "243 bytes"),
    ((7, 3, 0, 0, START, END, "", "bell\x07"), r"U\+0007"),
    ((7, 3, 0, 0, START, END, "", "rtl\u202e"), r"U\+202E"),
])
def test_rules(args: tuple, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        CustomerNotice(*args)


def test_text_limits() -> None:
    assert text_problem("가" * 80) is None and text_problem("a" * TEXT_BYTES) is None
    assert "241 bytes" in (text_problem("a" * 241) or "")
    assert "surrogate" in (text_problem("\ud800") or "")


def _raw(store, notice: CustomerNotice) -> bytearray:
    return bytearray(encode_table(NOTICE_TABLE, notice, store.env))


def _at(offset: int, data: bytes):
    """A change of the encoded table: ``data`` over the bytes from ``offset``."""
    return lambda raw: raw.__setitem__(slice(offset, offset + len(data)), data)


KO_END = 22 + len("피크 시간입니다".encode())  # the first padding byte of TEXT_KO


@pytest.mark.parametrize("mutate, where", [
    (_at(22, b"\xff"), "not UTF-8"),                # a byte no UTF-8 character starts with
    (_at(KO_END - 1, b"\0"), "not UTF-8"),          # the last character cut short
    (_at(262, b"a\0b"), "NUL inside"),
    (_at(262, b"\xed\xa0\x80"), "not UTF-8"),       # a surrogate
    (_at(4, b"\x07"), "NOTICE_KIND 7"),
    (_at(16, bytes.fromhex("1a0c06080000")), "not after"),  # the end at 08:00, before 09:00
])
def test_hostile_bytes_do_not_decode(store, mutate, where: str) -> None:
    raw = _raw(store, peak())
    mutate(raw)
    with pytest.raises(DecodeError, match=where):
        decode_table(NOTICE_TABLE, bytes(raw), store.env)


def test_writes_need_the_operator(store) -> None:
    data = bytes(_raw(store, peak()))
    for who in (None, Principal(1, GROUP_READ), Principal(3, GROUP_WRITE)):
        with pytest.raises(ISC):
            store.full_write(NOTICE_TABLE, data, principal=who)
    assert view(store.get(NOTICE_TABLE)) is None
    store.full_write(NOTICE_TABLE, data, principal=OPERATOR)
    assert store.get(NOTICE_TABLE) == peak()
    # anyone logged on reads it; nobody without Security
    assert store.full_read(NOTICE_TABLE, principal=Principal(1, GROUP_READ)) == data
    with pytest.raises(ISC):
        store.full_read(NOTICE_TABLE)


def test_bad_writes_are_iar_and_change_nothing(store) -> None:
    good = bytes(_raw(store, peak()))
    store.full_write(NOTICE_TABLE, good, principal=OPERATOR)
    bad_utf8 = bytearray(good)
    bad_utf8[22] = 0xC3  # a two-byte lead followed by the next Hangul byte: not UTF-8
    backwards = bytearray(_raw(store, peak()))
    backwards[10:22] = backwards[16:22] + backwards[10:16]
    for data in (bytes(bad_utf8), bytes(backwards), good[:-1], good + b"\0"):
        with pytest.raises(IAR):
            store.full_write(NOTICE_TABLE, data, principal=OPERATOR)
    with pytest.raises(IAR):
        store.partial_write_offset(NOTICE_TABLE, 4, b"\x09", principal=OPERATOR)
    assert store.get_bytes(NOTICE_TABLE) == good
