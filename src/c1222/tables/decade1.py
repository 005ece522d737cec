"""Decade 1: data sources, tables 10-16 (docs/spec c1219 section 6).

Every quantity the meter reports has an index into Table 16; Table 12 gives its unit.
"""

from __future__ import annotations

from c1222.tables.engine import (
    NI_FMAT1, UINT8, UINT16, Binary, Rest, bitfield, bits, fld, flag, record,
)


@bitfield(1)
class SourceFlags:
    """SOURCE_FLAGS (section 6.1). Bit 7 is version dependent (NO_OFFSET / CONVERSION_ALG)."""

    pf_exclude_flag: bool = flag(0)
    reset_exclude_flag: bool = flag(1)
    block_demand_flag: bool = flag(2)
    sliding_demand_flag: bool = flag(3)
    thermal_demand_flag: bool = flag(4)
    set1_present_flag: bool = flag(5)
    set2_present_flag: bool = flag(6)
    no_offset_flag: bool = flag(7)


@record
class SourceRcd:
    """Tables 10 DIM_SOURCES_LIM_TBL and 11 ACT_SOURCES_LIM_TBL (section 6.1), 8 bytes."""

    source_flags: SourceFlags = fld(SourceFlags)
    nbr_uom_entries: int = fld(UINT8)
    nbr_demand_ctrl_entries: int = fld(UINT8)
    data_ctrl_length: int = fld(UINT8)
    nbr_data_ctrl_entries: int = fld(UINT8)
    nbr_constants_entries: int = fld(UINT8)
    constants_selector: int = fld(UINT8)
    nbr_sources: int = fld(UINT8)


def _st11(s) -> SourceRcd:
    return s.tbl(11)


@bitfield(4)
class UomEntryBfld:
    """UOM_ENTRY_BFLD (section 6.2). Bits 23-27 are ID_RESOURCE in 2012 editions."""

    id_code: int = bits(0, 7)
    time_base: int = bits(8, 10)
    multiplier: int = bits(11, 13)
    q1_accountability: bool = flag(14)
    q2_accountability: bool = flag(15)
    q3_accountability: bool = flag(16)
    q4_accountability: bool = flag(17)
    net_flow_accountability: bool = flag(18)
    segmentation: int = bits(19, 21)
    harmonic: bool = flag(22)
    id_resource: int = bits(23, 27)
    nfs: bool = flag(31)


#: UOM MULTIPLIER code -> power of ten (section 6.2).
UOM_MULTIPLIER_EXPONENT = {0: 0, 1: 2, 2: 3, 3: 6, 4: 9, 5: -2, 6: -3, 7: -6}


@record
class UomEntry:
    """Table 12 UOM_ENTRY_TBL (section 6.2): NBR_UOM_ENTRIES x 4 bytes."""

    uom_entry: tuple[UomEntryBfld, ...] = fld(
        UomEntryBfld, count=lambda s: _st11(s).nbr_uom_entries)


@record
class IntervalRcd:
    """One demand interval of Table 13: sliding (SUB_INT, INT_MULTIPLIER) or INT_LENGTH."""

    sub_int: int | None = fld(UINT8, when=lambda s: _st11(s).source_flags.sliding_demand_flag)
    int_multiplier: int | None = fld(
        UINT8, when=lambda s: _st11(s).source_flags.sliding_demand_flag)
    int_length: int | None = fld(
        UINT16, when=lambda s: not _st11(s).source_flags.sliding_demand_flag)


@record
class DemandControl:
    """Table 13 DEMAND_CONTROL_TBL (section 6.3) [field conditions partly UNVERIFIED]."""

    reset_exclusion: int | None = fld(
        UINT8, when=lambda s: _st11(s).source_flags.reset_exclude_flag)
    p_fail_recogntn_tm: int | None = fld(
        UINT8, when=lambda s: _st11(s).source_flags.pf_exclude_flag)
    p_fail_exclusion: int | None = fld(UINT8, when=lambda s: _st11(s).source_flags.pf_exclude_flag)
    cold_load_pickup: int | None = fld(UINT8, when=lambda s: _st11(s).source_flags.pf_exclude_flag)
    interval_value: tuple[IntervalRcd, ...] = fld(
        IntervalRcd, count=lambda s: _st11(s).nbr_demand_ctrl_entries)


@record
class DataControl:
    """Table 14 DATA_CONTROL_TBL (section 6.3) [UNVERIFIED].

    NBR_DATA_CTRL_ENTRIES entries of DATA_CTRL_LENGTH bytes.
    """

    source_id: tuple[bytes, ...] = fld(
        Binary(lambda s: _st11(s).data_ctrl_length), count=lambda s: _st11(s).nbr_data_ctrl_entries)


@bitfield(1)
class SetFlags:
    """SET_FLAGS of a Table 15 entry (section 6.4)."""

    set_applied_flag: bool = flag(0)


def _has_offset(s) -> bool:
    # Bit 7 only means NO_OFFSET in version-1 tables (section 6.1 note).
    return not (_st11(s).source_flags.no_offset_flag and s.tbl(0).std_version_no <= 1)


@record
class ElectricConstants:
    """One electric CONSTANTS record of Table 15 (section 6.4)."""

    multiplier: object = fld(NI_FMAT1)
    offset: object = fld(NI_FMAT1, when=_has_offset)
    set1_flags: SetFlags | None = fld(
        SetFlags, when=lambda s: _st11(s).source_flags.set1_present_flag)
    ratio_f1: object = fld(NI_FMAT1, when=lambda s: _st11(s).source_flags.set1_present_flag)
    ratio_p1: object = fld(NI_FMAT1, when=lambda s: _st11(s).source_flags.set1_present_flag)
    set2_flags: SetFlags | None = fld(
        SetFlags, when=lambda s: _st11(s).source_flags.set2_present_flag)
    ratio_f2: object = fld(NI_FMAT1, when=lambda s: _st11(s).source_flags.set2_present_flag)
    ratio_p2: object = fld(NI_FMAT1, when=lambda s: _st11(s).source_flags.set2_present_flag)


_ELECTRIC_CONSTANTS = 2


@record
class Constants:
    """Table 15 CONSTANTS_TBL (section 6.4): electric records when CONSTANTS_SELECTOR is 2.

    The gas records (AGA3, AGA7) are not described by the spec and stay raw bytes.
    """

    electric: tuple[ElectricConstants, ...] | None = fld(
        ElectricConstants, count=lambda s: _st11(s).nbr_constants_entries,
        when=lambda s: _st11(s).constants_selector == _ELECTRIC_CONSTANTS)
    raw: bytes | None = fld(
        Rest(0xFFFF), when=lambda s: _st11(s).constants_selector != _ELECTRIC_CONSTANTS)


@bitfield(1)
class SourceLinkBfld:
    """SOURCE_LINK_BFLD (section 6.5)."""

    uom_entry_flag: bool = flag(0)
    demand_ctrl_flag: bool = flag(1)
    data_ctrl_flag: bool = flag(2)
    constants_flag: bool = flag(3)
    pulse_engr_flag: bool = flag(4)
    constant_to_be_applied: bool = flag(5)


@record
class Sources:
    """Table 16 SOURCES_TBL (section 6.5): NBR_SOURCES x 1 byte."""

    source_link: tuple[SourceLinkBfld, ...] = fld(
        SourceLinkBfld, count=lambda s: _st11(s).nbr_sources)


__all__ = [
    "SourceFlags", "SourceRcd", "UomEntryBfld", "UomEntry", "UOM_MULTIPLIER_EXPONENT",
    "IntervalRcd", "DemandControl", "DataControl", "SetFlags", "ElectricConstants", "Constants",
    "SourceLinkBfld", "Sources",
]
