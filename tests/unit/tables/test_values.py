"""Tables as values (c1222.tables.values): names, units, spans, partial reads, hostile bytes,
and the write form's way back (named edits, encode(decode(x)) == x)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c1222.tables import default_store
from c1222.tables.registry import TABLES, encode_table
from c1222.tables.values import (
    MAX_ROWS, apply_edits, changed_span, context_tables, decode_for_edit, describe_table,
    event_name,
)
from tests.unit.tables.strategies import envs, record_values


_STORE = default_store()
#: The default meter's tables, as a head-end reads them.
METER = {n: _STORE.get_bytes(n) for n in _STORE.numbers()}


@pytest.fixture(scope="module")
def meter() -> dict[int, bytes]:
    return METER


def rows(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in result["fields"]}


def with_edits(meter: dict[int, bytes], number: int, edits: dict[str, Any]) -> bytes:
    value, env = decode_for_edit(number, meter[number], meter)
    return encode_table(number, apply_edits(value, edits), env)


def test_table_23_registers_are_in_kwh_by_the_meters_tables_22_and_12(meter) -> None:
    data = with_edits(meter, 23, {"tot_data_block.summations[0]": 5_321_000})
    result = describe_table(23, data, meter)
    assert result["error"] is None and result["name"] == "CURRENT_REG_DATA_TBL"
    reg = rows(result)["tot_data_block.summations[0]"]
    assert reg["text"] == "5321.000 kWh" and reg["unit"] == "Wh"
    assert reg["quantity"] == "active energy"
    assert reg["offset"] == 0 and reg["hex"] == data[:reg["length"]].hex()


def test_table_28_present_values_have_units_and_multipliers(meter) -> None:
    # Table 12 gives volts a multiplier of 0.01 (code 5): 23012 is 230.12 V
    data = with_edits(meter, 28, {"present_value[2]": 23012, "present_value[0]": 1200})
    r = rows(describe_table(28, data, meter))
    assert r["present_value[2]"]["text"] == "230.12 V"
    assert r["present_value[0]"]["text"] == "1200 W"
    assert {x["unit"] for x in r.values()} >= {"W", "V", "A", "PF"}


def test_dates_bit_fields_and_sets_are_named(meter) -> None:
    clock = rows(describe_table(52, meter[52], meter))
    assert clock["clock_calendar"]["unit"] == "date/time"
    assert clock["clock_calendar"]["text"].startswith("2024-01-01 00:00")
    assert "gmt_flag" in clock["time_date_qual"]["text"]
    gen = rows(describe_table(0, meter[0], meter))
    assert "tm_format=2 uint8" in gen["format_control_2"]["text"]
    assert "23 CURRENT_REG_DATA_TBL" in gen["std_tbls_used"]["text"]
    uom = rows(describe_table(12, meter[12], meter))
    assert uom["uom_entry[0]"]["text"].startswith("active energy (Wh)")
    assert event_name(2) == "primary power up" and event_name(7, mfg=True).startswith("manuf")


def test_unknown_and_manufacturer_tables_are_hex_with_a_note(meter) -> None:
    result = describe_table(2051, b"\x01\x02", meter)
    assert result["fields"] == [] and result["note"].startswith("no layout")
    assert describe_table(99, b"", meter)["note"].startswith("no layout")


def test_a_partial_read_decodes_the_elements_within_it(meter) -> None:
    data = with_edits(meter, 28, {"present_value[2]": 23012})
    size = len(meter[28]) // 5  # five NI_FMAT1 values
    part = data[2 * size:4 * size]
    result = describe_table(28, part, meter, offset=2 * size)
    assert [r["path"] for r in result["fields"]] == ["present_value[2]", "present_value[3]"]
    assert result["fields"][0]["text"] == "230.12 V" and "partial" in result["note"]
    # between two elements: nothing whole, said so without an error
    assert describe_table(28, data[1:3], meter, offset=1)["fields"] == []
    past = describe_table(28, b"\x00" * 8, meter, offset=len(meter[28]) - 2)
    assert "past the end" in past["error"]


@pytest.mark.parametrize("number, data, why", [
    (23, b"\x01", "Truncated"), (23, b"\x00" * 100, "trailing"), (52, b"\xff" * 7, "year byte"),
    (52, bytes.fromhex("180d0100000011"), None),
    (0, b"\xff\xff", "Truncated"), (28, b"", "Truncated"),
])
def test_malformed_bytes_from_a_meter_give_a_clean_error(meter, number, data, why) -> None:
    result = describe_table(number, data, meter)
    if why is None:  # decodes, but the date is no date: said so
        assert "not a date" in rows(result)["clock_calendar"]["text"]
    else:
        assert why in result["error"] and result["fields"] == []


def test_a_missing_or_malformed_context_is_an_error_not_an_exception(meter) -> None:
    assert "Table 0" in describe_table(23, meter[23], {})["error"]
    assert describe_table(23, meter[23], {**meter, 21: b"\x00"})["error"]
    assert describe_table(23, meter[23], {0: b"\xff" * 3})["error"].startswith("Truncated")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(sorted(TABLES)), st.integers(0, 400) | st.none())
def test_random_bytes_never_raise(data: bytes, number: int, offset: int | None) -> None:
    meter = METER
    result = describe_table(number, data, meter, offset=offset)
    assert result["error"] is None or result["fields"] == []
    assert len(result["fields"]) <= MAX_ROWS


def test_edits_change_only_their_field_and_span(meter) -> None:
    new = with_edits(meter, 52, {"clock_calendar": "2026-12-06T14:30:05",
                                 "time_date_qual.dst_flag": True})
    r = rows(describe_table(52, new, meter))
    assert r["clock_calendar"]["text"] == "2026-12-06 14:30:05"
    assert "dst_flag" in r["time_date_qual"]["text"]
    assert changed_span(meter[52], new) == (0, 7)
    one = with_edits(meter, 52, {"clock_calendar": "2024-01-01T00:00:09"})
    assert changed_span(meter[52], one) == (5, 1)
    assert changed_span(meter[52], meter[52]) is None


@pytest.mark.parametrize("edits, message", [
    ({}, "no field"), ({"": 1}, "field path"), ({"nope": 1}, "no field 'nope'"),
    ({"tot_data_block.summations[7]": 1}, "no element [7]"),
    ({"tot_data_block.summations[0]": ""}, "empty"),
    ({"tot_data_block.summations[0]": "12abc"}, "not a"),
    ({"tot_data_block.summations[0]": True}, "not a"),
    ({"tot_data_block.summations[0]": float("nan")}, "not a"),
    ({"nbr_demand_resets": 1}, "not present"),
    ({"tot_data_block..summations[0]": 1}, "field path"),
    ({"x" * 300: 1}, "field path"),
])
def test_bad_edits_are_refused_with_the_field_named(meter, edits, message) -> None:
    value, _env = decode_for_edit(23, meter[23], meter)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        apply_edits(value, edits)


def test_a_table_without_a_layout_is_not_edited(meter) -> None:
    with pytest.raises(ValueError, match="no layout"):
        decode_for_edit(2051, b"\x00", meter)


def test_context_tables_are_the_dimension_and_unit_tables() -> None:
    assert context_tables(23) == (0, 11, 12, 21, 22)
    assert context_tables(64) == (0, 61, 62)
    assert context_tables(0) == () and context_tables(2051) == ()


# ------------------------------------------------------------------------------ round trip


@st.composite
def table_bytes(draw):
    """A table of a known layout under a random Table 0 and dimension tables, its bytes and
    the context bytes a head-end would have read from that meter."""
    number = draw(st.sampled_from(sorted(n for n in TABLES if n not in (7, 8))))
    env = draw(envs(require=frozenset({number}) if 64 <= number <= 67 else frozenset()))
    for extra, cls_number in ((12, 12), (22, 22), (27, 27)):
        tdef = TABLES[cls_number]
        env = env.with_table(extra, draw(record_values(tdef.layout, env, int_max=3)))
    tdef = TABLES[number]
    value = draw(record_values(tdef.layout, env, args=tdef.args))
    data = encode_table(number, value, env)
    context = {n: encode_table(n, env.table(n), env) for n in context_tables(number)}
    return number, data, context


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table_bytes())
def test_encode_of_decode_is_the_bytes_and_the_form_gives_them_back(case) -> None:
    number, data, context = case
    value, env = decode_for_edit(number, data, context)
    assert encode_table(number, value, env) == data
    # the write form: every field sent back as it is shown gives the same bytes
    result = describe_table(number, data, context)
    assert result["error"] is None, result["error"]
    edits = {r["path"]: r["value"] for r in result["fields"]
             if r["kind"] in ("int", "bool", "text", "binary", "set") and not result["truncated"]}
    if edits:
        assert encode_table(number, apply_edits(value, edits), env) == data


def test_replace_keeps_frozen_records(meter) -> None:
    value, env = decode_for_edit(23, meter[23], meter)
    again = apply_edits(value, {"tot_data_block.summations[0]": "42"})
    assert again.tot_data_block.summations[0] == 42 and value.tot_data_block.summations[0] == 0
    assert replace(again) == again
