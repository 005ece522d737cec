"""The relay's Tables 0, 1, 122 and 127 (relay/tables.py, tables/decade12.py)."""

from __future__ import annotations

import pytest

from c1222.codec.ber import Uid
from c1222.errors import IAR
from c1222.relay.tables import INT48_MAX, build_relay_store
from c1222.tables.registry import decode_table

CODES = {"octets_sent": 1, "apdus_forwarded": 5, "routes": 2049}


def test_table_127_follows_the_counters() -> None:
    stats = {"octets_sent": 0, "apdus_forwarded": 0, "routes": 0, "unlisted": 5}
    store = build_relay_store("r1", (), lambda: stats, CODES)
    stats["apdus_forwarded"] = 7
    stats["octets_sent"] = INT48_MAX + 10  # saturates, never fails the read
    table = decode_table(127, store.full_read(127), store.env)
    assert [(s.statistic_code, s.statistic_value) for s in table.statistics] == [
        (1, INT48_MAX), (5, 7), (2049, 0)]


def test_table_122_lists_the_multicast_titles() -> None:
    title = Uid.parse("2.16.124.113620.1.22.0.123.77")
    store = build_relay_store("r1", (title,), dict, CODES)
    table = store.get(122)
    assert table.nbr_multicast_titles == 1
    assert table.multicast_titles[0].title == title.encode()
    assert store.get(0).std_tbls_used == frozenset({0, 1, 122, 127})
    assert store.get(1).mfg_serial_number.strip() == "r1"


def test_nothing_is_writable() -> None:
    store = build_relay_store("r1", (), dict, CODES)
    with pytest.raises(IAR):
        store.full_write(127, store.full_read(127))
