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

from c1222.tables.registry import TABLES, decode_table, encode_table, table_size
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
