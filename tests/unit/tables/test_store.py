"""Table store reads and writes with the response codes a meter gives (c1219 sections 1, 15.4)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from c1222.codes import ResponseCode
from c1222.errors import DLK, DNR, IAR, ISC, SNS, LocalProtocolError, ServiceError
from c1222.tables.access import Principal
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.registry import TableId, decode_table
from c1222.tables.store import TableStore
from c1222.tables.types import TimeDate

NOW = TimeDate(2024, 3, 15, 13, 45, 30)


@pytest.fixture()
def meter():
    return build_tables(now=NOW)


@pytest.fixture()
def store(meter) -> TableStore:
    return meter.store


@pytest.fixture()
def operator(store) -> Principal:
    return store.policy.authenticate(2, b"PASSWORD")


@pytest.fixture()
def reader(store) -> Principal:
    return store.policy.authenticate(1, "READER")


def test_full_read_of_public_table(store) -> None:
    raw = store.full_read(0)
    assert decode_table(0, raw) == store.gen_config
    assert store.full_read(TableId.from_word(0x0001)) == store.get_bytes(1)


def test_unknown_table_is_sns(store, operator) -> None:
    for bad in (4, 9, 2048 + 5, TableId(3, pending=True), TableId(3, user_defined=True)):
        with pytest.raises(SNS) as err:
            store.full_read(bad, principal=operator)
        assert err.value.code == ResponseCode.SNS


def test_read_without_logon_is_isc(store, reader) -> None:
    with pytest.raises(ISC):
        store.full_read(23)
    assert len(store.full_read(23, principal=reader)) == 6


def test_offset_read(store, operator) -> None:
    assert store.partial_read_offset(1, 0, 4, principal=operator) == b"SIMU"
    with pytest.raises(IAR):
        store.partial_read_offset(1, 30, 3, principal=operator)
    with pytest.raises(IAR):
        store.partial_read_offset(1, -1, 1, principal=operator)
    block = store.partial_read_offset(64, 977, 977, principal=operator)  # LP block 1
    assert len(block) == 977


def test_index_read(store, operator) -> None:
    # Table 1 element 1 is ED_MODEL; Table 12 element [0, 2] is the 3rd UOM entry.
    assert store.partial_read_index(1, [1], 1, principal=operator) == b"PYMTR1  "
    assert store.partial_read_index(1, [2], 4, principal=operator) == bytes([1, 0, 1, 0])
    assert store.partial_read_index(12, [0, 2], 1, principal=operator) == bytes.fromhex("02c10300")
    # Table 74, entry 5, its second member (HISTORY_SEQ_NBR).
    assert store.partial_read_index(74, [5, 5, 1], 1, principal=operator) == b"\x00\x00"
    with pytest.raises(IAR):
        store.partial_read_index(1, [7], 1, principal=operator)
    with pytest.raises(IAR):
        store.partial_read_index(1, [0, 0], 1, principal=operator)
    with pytest.raises(IAR):
        store.partial_read_index(1, [], 1, principal=operator)


def test_access_method_not_offered_is_sns() -> None:
    only_full = build_tables(MeterProfile(data_access_method=0, public_read=frozenset({1}))).store
    assert only_full.full_read(1)
    with pytest.raises(SNS):
        only_full.partial_read_offset(1, 0, 1)
    with pytest.raises(SNS):
        only_full.partial_read_index(1, [0], 1)
    offset_only = build_tables(MeterProfile(data_access_method=1, public_read=frozenset({1}))).store
    assert offset_only.partial_read_offset(1, 0, 1) == b"S"
    with pytest.raises(SNS):
        offset_only.partial_read_index(1, [0], 1)


def test_full_write(store, operator) -> None:
    store.full_write(5, b"METER-0001".ljust(20), principal=operator)
    assert store.get(5).identification == "METER-0001"


def test_write_read_only_table_is_iar(store, operator) -> None:
    with pytest.raises(IAR):
        store.full_write(1, store.get_bytes(1), principal=operator)
    with pytest.raises(IAR):
        store.partial_write_offset(23, 0, b"\x01", principal=operator)


def test_write_not_permitted_is_isc(store, reader) -> None:
    with pytest.raises(ISC):
        store.full_write(5, b"X" * 20)
    with pytest.raises(ISC):
        store.full_write(5, b"X" * 20, principal=reader)


def test_write_wrong_size_or_range_is_iar(store, operator) -> None:
    with pytest.raises(IAR):
        store.full_write(5, b"short", principal=operator)
    with pytest.raises(IAR):
        store.partial_write_offset(6, 229, b"ab", principal=operator)
    with pytest.raises(IAR):
        store.full_write(7, b"\x00\x00", principal=operator)  # shorter than PROC + SEQ_NBR
    with pytest.raises(IAR):
        store.partial_write_offset(7, 1, b"\x00\x00", principal=operator)


def test_write_that_does_not_decode_is_iar() -> None:
    # With ID_FORM 1 Table 5 is BCD: non-digit nibbles do not decode.
    m = build_tables(MeterProfile(id_form=1, serial_number="0123456789012345"))
    s = m.store
    op = s.policy.authenticate(2, b"PASSWORD")
    assert s.get(5).identification == "00000123456789012345"
    with pytest.raises(IAR):
        s.full_write(5, b"\xAA" * 10, principal=op)
    s.full_write(5, bytes.fromhex("00000000000000000042"), principal=op)
    assert s.get(5).identification.endswith("42")


def test_partial_writes_by_offset_and_index(store, operator) -> None:
    store.partial_write_offset(6, 0, b"ACME", principal=operator)
    assert store.get(6).owner_name == "ACME"
    store.partial_write_index(6, [2], b"SP-42".ljust(20), principal=operator)
    assert store.get(6).service_point_id == "SP-42"
    with pytest.raises(IAR):
        store.partial_write_index(6, [18], b"x" * 31, principal=operator)


def test_locked_table_is_dlk(store, operator) -> None:
    store.lock(5)
    with pytest.raises(DLK):
        store.full_write(5, b"X" * 20, principal=operator)
    assert store.full_read(5)  # reads still served
    store.unlock(5)
    store.full_write(5, b"X" * 20, principal=operator)


def test_data_not_ready_is_dnr(store, operator) -> None:
    with pytest.raises(DNR):
        store.full_read(8, principal=operator)  # no procedure has run yet
    store.set_ready(28, False)
    with pytest.raises(DNR):
        store.partial_read_offset(28, 0, 6, principal=operator)
    store.set_ready(28)
    assert store.partial_read_offset(28, 0, 6, principal=operator) == bytes(6)


def test_hooks(store, operator) -> None:
    seen = []
    store.on_write(6, lambda s, n, p, now: seen.append(("w", n, p.user_id, now)))
    store.on_read(52, lambda s, n, now: s.put(52, replace(s.get(52), clock_calendar=now)))
    store.partial_write_offset(6, 0, b"X", principal=operator, now=NOW)
    assert seen == [("w", 6, 2, NOW)]
    later = TimeDate(2024, 3, 15, 14, 0, 0)
    raw = store.full_read(52, principal=operator, now=later)
    assert raw[:6] == bytes([24, 3, 15, 14, 0, 0])


def test_local_put_keeps_size(store) -> None:
    st23 = store.get(23)
    new = replace(st23, tot_data_block=replace(st23.tot_data_block, summations=(1234567,)))
    store.put(23, new)
    assert store.get_bytes(23) == bytes.fromhex("87d612000000")
    with pytest.raises(LocalProtocolError):
        store.put_bytes(23, b"\x00")


def test_service_errors_carry_codes() -> None:
    for cls, code in ((SNS, 2), (ISC, 3), (IAR, 5), (DNR, 7), (DLK, 8)):
        assert issubclass(cls, ServiceError) and cls.code == code


def test_manufacturer_table_served_raw() -> None:
    from c1222.tables.access import AccessPolicy

    m = build_tables()
    data = {n: m.store.get_bytes(n) for n in m.store.numbers()}
    data[2048] = b"\x01\x02\x03"
    s = TableStore(data, policy=AccessPolicy(public_read=frozenset({2048})))
    assert s.full_read(TableId.from_word(0x0800)) == b"\x01\x02\x03"
    assert s.partial_read_index(2048, [1], 2) == b"\x02\x03"
    with pytest.raises(IAR):
        s.full_write(2048, b"abc")  # not in MFG_TBLS_WRITE


def test_numbers_outside_the_package_range_are_sns(store, operator) -> None:
    for bad in (-1, 4096, 4096 + 3, 9000):
        with pytest.raises(SNS):
            store.full_read(bad, principal=operator)
