"""The relay's C12.19 tables: 0, 1, 122 and 127 (design-16 decision 9; tables/decade12.py).

Table 0 and Table 1 say what the node is (the meter profile's formats, manufacturer "SIMU",
model "PYRLY1", the relay's serial number); Table 122 lists its multicast AP titles; Table 127
is filled from the relay's ``stats`` each time it is read. Everything is readable without a
Logon and nothing is writable. Pure: the statistics come from a callable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from c1222.codec.ber import Uid
from c1222.tables import decade0 as d0
from c1222.tables.access import AccessPolicy, Permission
from c1222.tables.decade12 import InterfaceCtrl, MulticastTitleRcd, NetworkStatistics, StatisticRcd
from c1222.tables.engine import TableEnv
from c1222.tables.profile import MeterProfile, gen_config
from c1222.tables.registry import encode_table
from c1222.tables.store import TableStore
from c1222.tables.types import TimeDate

RELAY_TABLES = frozenset({0, 1, 122, 127})
#: Largest value of an INT48 statistic; counters saturate there.
INT48_MAX = (1 << 47) - 1


def statistics_record(stats: Mapping[str, int], codes: Mapping[str, int]) -> NetworkStatistics:
    """Table 127 from counters by name and the code of each name (sorted by code)."""
    entries = tuple(StatisticRcd(codes[name], min(int(value), INT48_MAX))
                    for name, value in sorted(stats.items(), key=lambda kv: codes.get(kv[0], 0))
                    if name in codes)
    return NetworkStatistics(len(entries), entries)


def interface_record(titles: tuple[Uid, ...]) -> InterfaceCtrl:
    rows = tuple(MulticastTitleRcd(len(t.encode()), t.encode()) for t in titles[:255])
    return InterfaceCtrl(len(rows), rows)


def build_relay_store(serial_number: str, multicast: tuple[Uid, ...],
                      stats: Callable[[], Mapping[str, int]], codes: Mapping[str, int]
                      ) -> TableStore:
    """The relay's table store; Table 127 is refreshed from ``stats()`` on every read."""
    profile = MeterProfile(ed_model="PYRLY1", serial_number=serial_number[:16] or "relay")
    gc = gen_config(profile, RELAY_TABLES)
    gc = dataclasses.replace(gc, std_tbls_write=frozenset())  # nothing is writable
    env = TableEnv(gc.context(), {0: gc})
    mfg = d0.GeneralMfgId(profile.manufacturer, profile.ed_model, profile.hw_version_number,
                          profile.hw_revision_number, profile.fw_version_number,
                          profile.fw_revision_number, profile.serial_number)
    data = {
        0: encode_table(0, gc, env),
        1: encode_table(1, mfg, env),
        122: encode_table(122, interface_record(multicast), env),
        127: encode_table(127, statistics_record(stats(), codes), env),
    }
    public = frozenset(data)
    store = TableStore(data, policy=AccessPolicy(default=Permission(), public_read=public))

    def refresh(store_: TableStore, number: int, now: TimeDate | None) -> None:
        store_.put(127, statistics_record(stats(), codes))

    store.on_read(127, refresh)
    return store
