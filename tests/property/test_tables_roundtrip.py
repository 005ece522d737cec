"""Every table layout round-trips under every Table 0 format combination (c1219 sections 3-11).

For each table with a layout, hypothesis draws a Table 0 with any data order, character,
time, integer, ID and NI formats, small dimension tables, and a value of the table; the
value must encode to the size the layout computes, decode back equal, and re-encode to
the same bytes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.registry import TABLES, decode_table, encode_table, table_size
from c1222.tables.types import NI_SIZE, TimeDate
from tests.unit.tables.strategies import envs, record_values


@pytest.mark.parametrize("number", sorted(TABLES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_table_roundtrip(number: int, data: st.DataObject) -> None:
    # A load-profile data set table exists only when Table 0 lists it.
    need = frozenset({number}) if 64 <= number <= 67 else frozenset()
    env = data.draw(envs(require=need), label="env")
    tdef = TABLES[number]
    value = data.draw(record_values(tdef.layout, env, args=tdef.args), label="value")
    raw = encode_table(number, value, env)
    assert len(raw) == table_size(number, env, value)
    back = decode_table(number, raw, env)
    assert back == value
    assert encode_table(number, back, env) == raw


# Every combination of data order, time format, integer format and NI format (character
# formats 1-3 and the ID forms cycle along; UTF-16/32 cannot hold "SIMU" in STRING(4)):
# the default profile builds, and every table of it decodes and re-encodes to the same
# bytes. A small load-profile geometry keeps this quick.
_GRID = [(order, tm, intf, ni) for order in (0, 1) for tm in range(5) for intf in range(3)
         for ni in sorted(NI_SIZE)]


@pytest.mark.parametrize("order, tm, intf, ni", _GRID)
def test_profile_under_every_format_combination(order: int, tm: int, intf: int, ni: int) -> None:
    i = _GRID.index((order, tm, intf, ni))
    profile = MeterProfile(data_order=order, tm_format=tm, int_format=intf, ni_format1=ni,
                           ni_format2=sorted(NI_SIZE)[(ni + 5) % len(NI_SIZE)],
                           char_format=1 + i % 3, id_form=i % 2, serial_number="12345678",
                           lp_nbr_blks=2, lp_nbr_blk_ints=4, nbr_history_entries=3)
    store = build_tables(profile, now=TimeDate(2024, 3, 15, 13, 45, 30)).store
    for number in store.numbers():
        raw = store.get_bytes(number)
        value = decode_table(number, raw, store.env)
        assert encode_table(number, value, store.env) == raw
        assert table_size(number, store.env, value) == len(raw)
