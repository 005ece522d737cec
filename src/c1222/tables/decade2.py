"""Decade 2: registers, tables 20-28 (docs/spec c1219 section 7)."""

from __future__ import annotations

from c1222.tables.engine import (
    NI_FMAT1, NI_FMAT2, STIME_DATE, TIME, UINT8, SetOf, bitfield, bits, fld, flag, record,
)


@bitfield(1)
class RegFunc1Flags:
    """REG_FUNC1_FLAGS (section 7.1)."""

    season_info_field_flag: bool = flag(0)
    date_time_field_flag: bool = flag(1)
    demand_reset_ctr_flag: bool = flag(2)
    demand_reset_lock_flag: bool = flag(3)
    cum_demand_flag: bool = flag(4)
    cont_cum_demand_flag: bool = flag(5)
    time_remaining_flag: bool = flag(6)


@bitfield(1)
class RegFunc2Flags:
    """REG_FUNC2_FLAGS (section 7.1)."""

    self_read_inhibit_overflow_flag: bool = flag(0)
    self_read_seq_nbr_flag: bool = flag(1)
    daily_self_read_flag: bool = flag(2)
    weekly_self_read_flag: bool = flag(3)
    self_read_demand_reset: int = bits(4, 5)


@record
class RegsRcd:
    """Tables 20 DIM_REGS_TBL and 21 ACT_REGS_TBL (section 7.1), 10 bytes."""

    reg_func1_flags: RegFunc1Flags = fld(RegFunc1Flags)
    reg_func2_flags: RegFunc2Flags = fld(RegFunc2Flags)
    nbr_self_reads: int = fld(UINT8)
    nbr_summations: int = fld(UINT8)
    nbr_demands: int = fld(UINT8)
    nbr_coin_values: int = fld(UINT8)
    nbr_occur: int = fld(UINT8)
    nbr_tiers: int = fld(UINT8)
    nbr_present_demands: int = fld(UINT8)
    nbr_present_values: int = fld(UINT8)


def _st21(s) -> RegsRcd:
    return s.tbl(21)


@record
class DataSelection:
    """Table 22 DATA_SELECTION_TBL (section 7.2): S + D + ceil(D/8) + 2C bytes."""

    summation_select: tuple[int, ...] = fld(UINT8, count=lambda s: _st21(s).nbr_summations)
    demand_select: tuple[int, ...] = fld(UINT8, count=lambda s: _st21(s).nbr_demands)
    min_or_max_flags: frozenset[int] = fld(SetOf(lambda s: (_st21(s).nbr_demands + 7) // 8))
    coincident_select: tuple[int, ...] = fld(UINT8, count=lambda s: _st21(s).nbr_coin_values)
    coin_demand_assoc: tuple[int, ...] = fld(UINT8, count=lambda s: _st21(s).nbr_coin_values)


@record
class DemandsRcd:
    """DEMANDS_RCD of a register data block (section 7.3)."""

    event_time: tuple | None = fld(
        STIME_DATE, count=lambda s: _st21(s).nbr_occur,
        when=lambda s: _st21(s).reg_func1_flags.date_time_field_flag)
    cum_demand: object = fld(NI_FMAT1, when=lambda s: _st21(s).reg_func1_flags.cum_demand_flag)
    cont_cum_demand: object = fld(
        NI_FMAT1, when=lambda s: _st21(s).reg_func1_flags.cont_cum_demand_flag)
    demand: tuple = fld(NI_FMAT2, count=lambda s: _st21(s).nbr_occur)


@record
class CoincidentsRcd:
    """COINCIDENTS_RCD of a register data block (section 7.3)."""

    coincident_values: tuple = fld(NI_FMAT2, count=lambda s: _st21(s).nbr_occur)


@record
class DataBlkRcd:
    """DATA_BLK_RCD (section 7.3): summations, demands and coincident values."""

    summations: tuple = fld(NI_FMAT1, count=lambda s: _st21(s).nbr_summations)
    demands: tuple[DemandsRcd, ...] = fld(DemandsRcd, count=lambda s: _st21(s).nbr_demands)
    coincidents: tuple[CoincidentsRcd, ...] = fld(
        CoincidentsRcd, count=lambda s: _st21(s).nbr_coin_values)


@record
class RegisterData:
    """Table 23 CURRENT_REG_DATA_TBL, REGISTER_DATA_RCD (section 7.3)."""

    nbr_demand_resets: int | None = fld(
        UINT8, when=lambda s: _st21(s).reg_func1_flags.demand_reset_ctr_flag)
    tot_data_block: DataBlkRcd = fld(DataBlkRcd)
    tier_data_block: tuple[DataBlkRcd, ...] = fld(DataBlkRcd, count=lambda s: _st21(s).nbr_tiers)


@record
class PreviousDemandResetData:
    """Table 25 PREVIOUS_DEMAND_RESET_DATA_TBL (section 7.4); Table 24 is assumed identical
    [UNVERIFIED]."""

    end_date_time: object = fld(
        STIME_DATE, when=lambda s: _st21(s).reg_func1_flags.date_time_field_flag)
    season: int | None = fld(UINT8, when=lambda s: _st21(s).reg_func1_flags.season_info_field_flag)
    register_data: RegisterData = fld(RegisterData)


@record
class PresentRegisterSelect:
    """Table 27 PRESENT_REGISTER_SELECT_TBL (section 7.5): PD + PV source indices."""

    present_demand_select: tuple[int, ...] = fld(
        UINT8, count=lambda s: _st21(s).nbr_present_demands)
    present_value_select: tuple[int, ...] = fld(UINT8, count=lambda s: _st21(s).nbr_present_values)


@record
class PresentDemandRcd:
    """One PRESENT_DEMAND entry of Table 28 (section 7.6)."""

    time_remaining: object = fld(TIME, when=lambda s: _st21(s).reg_func1_flags.time_remaining_flag)
    demand_value: object = fld(NI_FMAT2)


@record
class PresentRegisterData:
    """Table 28 PRESENT_REGISTER_DATA_TBL (section 7.6): instantaneous values (V, I, W, VA, PF)."""

    present_demand: tuple[PresentDemandRcd, ...] = fld(
        PresentDemandRcd, count=lambda s: _st21(s).nbr_present_demands)
    present_value: tuple = fld(NI_FMAT1, count=lambda s: _st21(s).nbr_present_values)


__all__ = [
    "RegFunc1Flags", "RegFunc2Flags", "RegsRcd", "DataSelection", "DemandsRcd", "CoincidentsRcd",
    "DataBlkRcd", "RegisterData", "PreviousDemandResetData", "PresentRegisterSelect",
    "PresentDemandRcd", "PresentRegisterData",
]
