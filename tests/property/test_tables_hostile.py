"""Hostile input: random bytes for any table give a value or a DecodeError, nothing else.

(Architecture rule 2.) Checked under the default profile's Table 0 and dimension tables
and under random ones, for every table with a layout and for unknown tables.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c1222.errors import DecodeError
from c1222.tables.registry import TABLES, RawTable, decode_table, encode_table
from c1222.tables.profile import default_store
from tests.unit.tables.strategies import envs

_STORE = default_store()
# Sizes around the real ones, so decoding gets past the first fields.
_SIZES = {n: len(_STORE.get_bytes(n)) for n in _STORE.numbers() if n != 64}


def _decode_or_error(number, data, env):
    try:
        value = decode_table(number, data, env)
    except DecodeError:
        return None
    # A value must encode again (to the same bytes is not promised: filler bits, U+FFFD).
    encode_table(number, value, env)
    return value


# Tables the default profile can size (decade 4 needs Table 41, sets 2-4 are not configured).
_PROFILE_DECODABLE = sorted(n for n in TABLES if all(d in _STORE for d in TABLES[n].depends)
                            and not (65 <= n <= 67))


@pytest.mark.parametrize("number", _PROFILE_DECODABLE)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_bytes_default_profile(number: int, data: st.DataObject) -> None:
    size = _SIZES.get(number, 64)
    raw = data.draw(st.one_of(st.binary(max_size=size + 4),
                              st.binary(min_size=size, max_size=size)), label="bytes")
    env = None if number == 0 else _STORE.env
    _decode_or_error(number, raw, env)


@pytest.mark.parametrize("number", sorted(TABLES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_bytes_random_formats(number: int, data: st.DataObject) -> None:
    need = frozenset({number}) if 64 <= number <= 67 else frozenset()
    env = data.draw(envs(require=need), label="env")
    raw = data.draw(st.binary(max_size=96), label="bytes")
    _decode_or_error(number, raw, env)


@settings(max_examples=50, deadline=None)
@given(number=st.integers(0, 8191).filter(lambda n: n not in TABLES), raw=st.binary(max_size=64))
def test_unknown_tables_decode_to_raw_bytes(number: int, raw: bytes) -> None:
    value = decode_table(number, raw, _STORE.env)
    assert value == RawTable(raw)
    assert encode_table(number, value) == raw
