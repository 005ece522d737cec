"""The worked Table 0 byte strings of the C12.19 digest decode to the values it lists.

(docs/spec c1219 sections 3.5, 4.1, 4.2, 4.3.) Example A is the digest's proposed
simulator Table 0, example B Itron's reference test server, example C the real 79-byte
meter capture of EPRI's c12test (test/C12TableTest.cpp), whose test asserts
DEVICE_CLASS "EPRI", NI_FORMAT2 9, NBR_PENDING 6, DIM_STD_PROC_USED 3 and
STD_PROC_USED {3 4 5 6 7 8 9 10 11 12 14 20}. The bytes are facts quoted in the tests
(the digest prints only the first 19 bytes of example C), so no file under ../shared is
needed.
"""

from __future__ import annotations

import pytest

from c1222.tables.registry import decode_table, encode_table
from c1222.tables.types import TableContext

EXAMPLE_A = bytes.fromhex(
    "020A8A53494D5502001010010 00A00020001 00".replace(" ", "")
    + "EB1DF11800009CF0C107"  # STD_TBLS_USED
    + "B806"  # STD_PROC_USED
    + "E0000000000000000000"  # STD_TBLS_WRITE
)

EXAMPLE_B = bytes([0x02, 0x0B, 0x8B]) + b"TEMP" + bytes.fromhex(
    "02 00 00 00 01 00 07 01 00 00 00 00 29 00 00 00 00 00 18 01 20 00 00 00 00 00 00 01")

EXAMPLE_C = bytes([
    0x12, 0x0A, 0x9A, 0x45, 0x50, 0x52, 0x49, 0x02, 0x00, 0x13, 0x18, 0x01, 0x00, 0x0D, 0x0D, 0x03,
    0x05, 0x0D, 0x06, 0xFF, 0xAD, 0xF0, 0xDF, 0x03, 0x3F, 0xFC, 0xF0, 0xC1, 0x1F, 0xFF, 0xFF, 0x03,
    0x3E, 0xFF, 0xAF, 0xA2, 0x01, 0x85, 0xFF, 0xFF, 0x1F, 0x30, 0x8F, 0xFF, 0xF7, 0xF8, 0x5F, 0x10,
    0xFE, 0xFF, 0x1E, 0x16, 0xDB, 0xE0, 0xA8, 0xE0, 0x08, 0x03, 0x34, 0x68, 0x60, 0x80, 0x0A, 0xFC,
    0xF3, 0x00, 0x24, 0xA5, 0x00, 0xA0, 0x01, 0x81, 0x19, 0x67, 0x10, 0x00, 0x82, 0xF5, 0xE0,
])


def test_example_a_simulator_table0() -> None:
    assert len(EXAMPLE_A) == 41
    gc = decode_table(0, EXAMPLE_A)
    assert gc.size() == 41
    f1, f2, f3 = gc.format_control_1, gc.format_control_2, gc.format_control_3
    assert (f1.data_order, f1.char_format, f1.model_select) == (0, 1, 0)
    assert (f2.tm_format, f2.data_access_method, f2.id_form, f2.int_format) == (2, 1, 0, 0)
    assert (f3.ni_format1, f3.ni_format2) == (10, 8)
    assert gc.device_class == b"SIMU"
    assert (gc.nameplate_type, gc.default_set_used) == (2, 0)
    assert (gc.max_proc_parm_length, gc.max_resp_data_len) == (16, 16)
    assert (gc.std_version_no, gc.std_revision_no) == (1, 0)
    assert (gc.dim_std_tbls_used, gc.dim_mfg_tbls_used, gc.dim_std_proc_used,
            gc.dim_mfg_proc_used, gc.dim_mfg_status_used, gc.nbr_pending) == (10, 0, 2, 0, 1, 0)
    assert gc.std_tbls_used == {0, 1, 3, 5, 6, 7, 8, 10, 11, 12, 16, 20, 21, 22, 23, 27, 28, 50,
                                51, 52, 55, 60, 61, 62, 63, 64, 70, 71, 72, 73, 74}
    assert gc.std_proc_used == {3, 4, 5, 7, 9, 10}
    assert gc.std_tbls_write == {5, 6, 7}
    assert gc.mfg_tbls_used == gc.mfg_proc_used == gc.mfg_tbls_write == frozenset()
    assert gc.context() == TableContext(data_order=0, char_format=1, tm_format=2, int_format=0,
                                        ni_format1=10, ni_format2=8, id_form=0)
    assert encode_table(0, gc) == EXAMPLE_A


def test_example_a_as_full_read_response_checksum() -> None:
    # "As a C12.22 full-read response: 00 00 29 <41 bytes> F9" (section 4.1).
    assert (-sum(EXAMPLE_A)) & 0xFF == 0xF9


def test_example_b_itron_test_server() -> None:
    assert len(EXAMPLE_B) == 35
    gc = decode_table(0, EXAMPLE_B)
    assert gc.format_control_1.data_order == 0 and gc.format_control_1.char_format == 1
    assert gc.format_control_2.tm_format == 3
    assert gc.format_control_2.data_access_method == 1  # offset access
    assert (gc.format_control_3.ni_format1, gc.format_control_3.ni_format2) == (11, 8)
    assert gc.device_class == b"TEMP"
    assert gc.nameplate_type == 2
    assert (gc.std_version_no, gc.std_revision_no) == (1, 0)
    assert (gc.dim_std_tbls_used, gc.dim_mfg_tbls_used) == (7, 1)
    assert gc.std_tbls_used == {0, 3, 5, 51, 52}
    assert gc.mfg_tbls_used == {0}
    assert gc.std_tbls_write == {5}
    assert gc.mfg_tbls_write == {0}
    assert encode_table(0, gc) == EXAMPLE_B


def test_example_c_real_meter_capture() -> None:
    assert len(EXAMPLE_C) == 79
    assert EXAMPLE_C[:19] == bytes.fromhex("120A9A455052490200131801000D0D03050D06")
    gc = decode_table(0, EXAMPLE_C)
    assert gc.size() == 79
    assert gc.format_control_1.data_order == 0
    assert gc.format_control_1.char_format == 1
    assert gc.format_control_1.model_select == 1
    assert gc.format_control_2.tm_format == 2
    assert gc.format_control_2.data_access_method == 1
    assert (gc.format_control_3.ni_format1, gc.format_control_3.ni_format2) == (10, 9)
    assert gc.device_class == b"EPRI"
    assert gc.nameplate_type == 2
    assert (gc.max_proc_parm_length, gc.max_resp_data_len) == (19, 24)
    assert (gc.std_version_no, gc.std_revision_no) == (1, 0)
    assert (gc.dim_std_tbls_used, gc.dim_mfg_tbls_used, gc.dim_std_proc_used,
            gc.dim_mfg_proc_used) == (13, 13, 3, 5)
    assert gc.dim_mfg_status_used == 13
    assert gc.nbr_pending == 6
    assert gc.std_proc_used == {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 20}
    assert encode_table(0, gc) == EXAMPLE_C


@pytest.mark.parametrize("raw, expected", [
    (bytes([0xF8, 0x5F, 0x10]), {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 20}),  # EPRI-T
    (bytes([0x29]), {0, 3, 5}),  # ITR-TS
])
def test_set_bit_order(raw: bytes, expected: set[int]) -> None:
    from c1222.tables.types import decode_set, encode_set

    assert decode_set(raw) == expected
    assert encode_set(frozenset(expected), len(raw)) == raw
