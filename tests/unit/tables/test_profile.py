"""The default single-phase meter profile against the digest's section 15 bytes."""

from __future__ import annotations

import pytest

from c1222.errors import ConfigurationError
from c1222.tables.decade6 import block_size_formula
from c1222.tables.profile import DEFAULT_TABLE_SET, MeterProfile, build_tables
from c1222.tables.registry import TABLES, decode_table, encode_table, table_size
from c1222.tables.types import NI_SIZE, STIME_SIZE, TimeDate


@pytest.fixture(scope="module")
def store():
    return build_tables(now=TimeDate(2024, 3, 15, 13, 45, 30)).store


@pytest.mark.parametrize("number, hexbytes", [
    (10, "00 06 00 00 00 00 02 06"),
    (11, "00 06 00 00 00 00 02 06"),
    (12, "00 40 02 00 00 41 02 00 02 C1 03 00 08 29 00 00 0C 31 00 00 18 31 00 00"),
    (16, "11 11 11 11 11 11"),
    (20, "00 00 00 01 00 00 01 00 00 05"),
    (21, "00 00 00 01 00 00 01 00 00 05"),
    (22, "00"),
    (27, "01 02 03 04 05"),
    (50, "00 00 00 00 00 00 00 00 00"),
    (60, "A8 98 00 00 10 04 04 28 00 60 00 02 0F"),
    (61, "A8 98 00 00 10 04 04 28 00 60 00 02 0F"),
    (62, "01 00 00 00 03 03 04"),
    (63, "24 00 00 00 00 00 00 00 00 00 00 00 00"),
    (70, "06 0A 00 00 00 64 00 00 00"),
    (71, "06 0A 00 00 00 64 00 00 00"),
    (52, "18 03 0F 0D 2D 1E 15"),  # section 9.2: a Friday, GMT
])
def test_section_15_bytes(store, number: int, hexbytes: str) -> None:
    assert store.get_bytes(number) == bytes.fromhex(hexbytes)


def test_sizes(store) -> None:
    sizes = {n: len(store.get_bytes(n)) for n in store.numbers()}
    # 10 bytes of standard table SETs, 1 of manufacturer table SETs (MT2), 2 + 1 of procedures
    assert sizes[0] == 19 + 2 * 10 + 2 * 1 + 2 + 1
    assert (sizes[1], sizes[3], sizes[5], sizes[6]) == (32, 5, 20, 230)
    assert (sizes[23], sizes[28], sizes[55], sizes[74]) == (6, 30, 9, 1211)
    assert sizes[64] == 39080 == store.get(61).lp_memory_len
    block = block_size_formula(STIME_SIZE[2], NI_SIZE[10], 4, 2, 96, blk_end_read=True,
                               blk_end_pulse=False, simple_int_status=False,
                               extended_int_status=True)
    assert block == 977 and sizes[64] == 40 * block
    assert set(store.numbers()) - {2050} == DEFAULT_TABLE_SET == store.gen_config.std_tbls_used
    assert sizes[2050] == 502 and store.gen_config.mfg_tbls_used == {2}
    for n in store.numbers():
        assert table_size(n, store.env, store.get(n)) == sizes[n]


def test_every_table_decodes_and_reencodes(store) -> None:
    for n in store.numbers():
        raw = store.get_bytes(n)
        value = decode_table(n, raw, store.env if n else None)
        assert encode_table(n, value, store.env) == raw
        assert n in TABLES


def test_identity_from_parameters() -> None:
    p = MeterProfile(ap_title=".123.8437", serial_number="SN-0042", manufacturer="ACME",
                     ed_model="X1", owner_name="KEPCO")
    s = build_tables(p).store
    assert s.get(1).manufacturer == "ACME" and s.get(1).mfg_serial_number == "SN-0042"
    assert s.get(5).identification == "SN-0042"
    assert s.get(6).misc_id == ".123.8437" and s.get(6).owner_name == "KEPCO"


@pytest.mark.parametrize("kw", [
    dict(data_order=1), dict(tm_format=4), dict(tm_format=3), dict(tm_format=1),
    dict(ni_format1=0, ni_format2=1), dict(int_format=2), dict(char_format=3),
    dict(std_version_no=2), dict(lp_nbr_blks=2, lp_nbr_blk_ints=4, nbr_history_entries=3),
])
def test_other_formats_build_consistent_stores(kw) -> None:
    s = build_tables(MeterProfile(**kw), now=TimeDate(2024, 3, 15, 13, 45, 30)).store
    for n in s.numbers():
        value = s.get(n)
        assert encode_table(n, value, s.env) == s.get_bytes(n)
    assert s.get(61).lp_memory_len == len(s.get_bytes(64))
    if kw.get("std_version_no") == 2:
        assert len(s.get_bytes(71)) == 12


def test_bad_parameters_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        build_tables(MeterProfile(manufacturer="TOOLONG"))
    with pytest.raises(ConfigurationError):
        build_tables(MeterProfile(id_form=1, serial_number="ABC"))
