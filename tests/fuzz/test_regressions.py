"""The fuzzers' findings, each as a plain test of the public interface that failed before
its fix (the raw vectors are replayed by test_crashers.py)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from c1222 import limits
from c1222.codec import acse, text
from c1222.codec.ber import decode_uid_content, tlv
from c1222.codec.services import ErrorResponse
from c1222.codes import ResponseCode
from c1222.errors import DecodeError, DecodeLimitExceeded, LocalProtocolError
from c1222.tables import readings
from c1222.tables.profile import MeterProfile, default_store
from c1222.tables.registry import decode_table, encode_table, make_env
from c1222.tables.types import CharFormat, TableContext, decode_ni, decode_string, encode_string


def test_absolute_oid_over_the_arc_limit_is_a_decode_error() -> None:
    # 64 subidentifiers are 65 arcs once the first is split in two: Uid refused them with
    # LocalProtocolError (an error of *our* caller) instead of a DecodeError.
    with pytest.raises(DecodeLimitExceeded):
        decode_uid_content(0x06, bytes([1] * 64), 0, "x")
    assert len(decode_uid_content(0x06, bytes([1] * 63), 0, "x").arcs) == limits.MAX_OID_ARCS
    apdu = tlv(0x60, tlv(0xA2, tlv(0x06, bytes([1] * 64))) + tlv(0xA8, tlv(0x02, b"\x01"))
               + tlv(0xBE, tlv(0x28, tlv(0x81, b"\x80"))))
    with pytest.raises(DecodeError, match="too many OID arcs"):
        acse.decode(apdu)


def _small_store(**kw: object):
    return default_store(MeterProfile(lp_nbr_blks=2, lp_nbr_blk_ints=6, nbr_history_entries=4,
                                      **kw))  # type: ignore[arg-type]


def test_meter_values_refuses_a_selection_without_a_unit() -> None:
    store = _small_store()
    tables = {n: store.get_bytes(n) for n in (*readings.CONTEXT_TABLES, 28)}
    select = store.get(27)
    bad = dataclasses.replace(select, present_value_select=(200,) +
                              tuple(select.present_value_select[1:]))
    tables[27] = encode_table(27, bad, store.env)
    with pytest.raises(DecodeError, match="Table 27 selects source 200") as caught:
        readings.meter_values(tables)
    assert caught.value.path == "table27"


@pytest.mark.parametrize("text_", [b"sNaN        ", b"NaN         ", b"-Infinity   "])
def test_character_numbers_must_be_finite(text_: bytes) -> None:
    with pytest.raises(DecodeError, match="not a finite number"):
        decode_ni(text_, 2, TableContext())
    assert decode_ni(b"-1.5E3      ", 2, TableContext()) == Decimal("-1500")


def test_meter_values_with_a_signalling_nan_is_a_decode_error() -> None:
    store = _small_store(ni_format1=2)
    tables = {n: store.get_bytes(n) for n in (*readings.CONTEXT_TABLES, 28)}
    present = store.get(28)
    raw = encode_table(28, dataclasses.replace(
        present, present_value=(Decimal(7),) + tuple(present.present_value[1:])), store.env)
    tables[28] = raw.replace(b"7           ", b"sNaN        ", 1)
    with pytest.raises(DecodeError):
        readings.meter_values(tables)  # was ValueError: cannot convert signaling NaN to float


def test_a_decoded_utf8_string_fits_its_field_again() -> None:
    ctx = TableContext(char_format=CharFormat.UTF_8)
    value = decode_string(b"\xffAB\xfe\xfd", ctx)
    assert value == "\ufffdAB\ufffd\ufffd"
    assert encode_string(value, 5, ctx) == b"?AB??"  # U+FFFD is 3 bytes in UTF-8


@pytest.mark.parametrize("size", [-1, 1 << 32])
def test_error_response_max_size_out_of_range_is_our_error(size: int) -> None:
    with pytest.raises(LocalProtocolError):
        ErrorResponse(response_code=ResponseCode.RQTL, max_size=size).encode()


def test_from_json_refuses_a_service_name_that_is_not_a_string() -> None:
    record = {"calling_ap_invocation_id": 1, "services": [{"service": {"x": 1}}]}
    with pytest.raises(LocalProtocolError, match="service"):
        text.from_json(record)


def _empty_interval_tables(blocks: int, intervals: int) -> dict[int, bytes]:
    """Tables 0/61/62 of a clockless meter whose load profile has no channels: every
    interval of Table 64 is a record of no bytes."""
    store = _small_store()
    gen = store.get(0)
    gen0 = dataclasses.replace(gen, format_control_2=dataclasses.replace(
        gen.format_control_2, tm_format=0))
    dims = store.get(61)
    dims = dataclasses.replace(dims, lp_flags=type(dims.lp_flags)(), lp_data_set1=dataclasses
                               .replace(dims.lp_data_set1, nbr_blks=blocks,
                                        nbr_blk_ints=intervals, nbr_chns=0))
    return {0: encode_table(0, gen0), 61: encode_table(61, dims, make_env(gen0)),
            62: b"\x01", 64: b""}


def test_elements_of_no_bytes_are_capped() -> None:
    # 13 bytes of Tables 0 and 61 asked for 65535 x 65535 empty intervals: hours and GBs.
    tables = _empty_interval_tables(65535, 65535)
    with pytest.raises(DecodeLimitExceeded, match="elements of no bytes"):
        readings.decoded(tables)
    small = readings.decoded(_empty_interval_tables(20, 30))  # 620 empty elements: fine
    assert len(small[64].lp_blk_dat) == 20
    assert decode_table(64, b"", make_env(small[0], small)) == small[64]
