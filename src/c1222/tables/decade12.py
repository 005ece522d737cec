"""Decade 12: network tables a C12.22 relay serves, 122 and 127 (c1222-network.md "Network
tables"; c1219.md §13).

The layouts of decade 12 are not in any open source [UNVERIFIED], so these two are ours, kept
self-describing (each carries its own count) so a reader needs no dimension table:

* Table 122 INTERFACE_CTRL_TBL: the multicast AP titles the node answers to (Itron's server
  checks a called title against them). ``nbr_multicast_titles`` (UINT8), then per title its
  length (UINT8) and the UID as encoded (tag, length, contents; e.g. ``06 ..`` absolute).
* Table 127 NETWORK_STATISTICS_TBL: ``nbr_statistics`` (UINT16), then entries of a statistic
  code (UINT16; the standard codes 0-22 of c1219.md §13, manufacturer codes from 2048) and its
  value (INT48), as Itron's statistic records are.
"""

from __future__ import annotations

from c1222.tables.engine import UINT8, UINT16, Binary, Int, fld, record

INT48 = Int(6)


@record
class MulticastTitleRcd:
    """One multicast AP title of Table 122."""

    title_len: int = fld(UINT8)
    title: bytes = fld(Binary(lambda s: s.get("title_len")))


@record
class InterfaceCtrl:
    """Table 122 INTERFACE_CTRL_TBL (our layout, module docstring)."""

    nbr_multicast_titles: int = fld(UINT8)
    multicast_titles: tuple[MulticastTitleRcd, ...] = fld(
        MulticastTitleRcd, count=lambda s: s.get("nbr_multicast_titles"))


@record
class StatisticRcd:
    """One Table 127 entry: a statistic code and its value."""

    statistic_code: int = fld(UINT16)
    statistic_value: int = fld(INT48)


@record
class NetworkStatistics:
    """Table 127 NETWORK_STATISTICS_TBL (our layout, module docstring)."""

    nbr_statistics: int = fld(UINT16)
    statistics: tuple[StatisticRcd, ...] = fld(StatisticRcd,
                                               count=lambda s: s.get("nbr_statistics"))
