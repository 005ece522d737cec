"""Decade 5: time and TOU, tables 50-57 (docs/spec c1219 section 9)."""

from __future__ import annotations

from c1222.tables.engine import LTIME_DATE, UINT8, UINT16, bitfield, bits, fld, flag, record
from c1222.tables.types import TimeDate


@bitfield(1)
class TimeFuncFlag1:
    """TIME_FUNC_FLAG1 (section 9.1)."""

    tou_self_read_flag: bool = flag(0)
    season_self_read_flag: bool = flag(1)
    season_demand_reset_flag: bool = flag(2)
    season_chng_armed_flag: bool = flag(3)
    sort_dates_flag: bool = flag(4)
    anchor_date_flag: bool = flag(5)


@bitfield(1)
class TimeFuncFlag2:
    """TIME_FUNC_FLAG2 (section 9.1)."""

    cap_dst_auto_flag: bool = flag(0)
    separate_weekdays_flag: bool = flag(1)
    separate_sum_demands_flag: bool = flag(2)
    sort_tier_switches_flag: bool = flag(3)
    cap_tm_zn_offset_flag: bool = flag(4)


@bitfield(1)
class CalendarBfld:
    """CALENDAR_BFLD (section 9.1)."""

    nbr_seasons: int = bits(0, 3)
    nbr_special_sched: int = bits(4, 7)


@record
class TimeTouRcd:
    """Tables 50 DIM_TIME_TOU_TBL and 51 ACT_TIME_TOU_TBL (section 9.1), 9 bytes."""

    time_func_flag1: TimeFuncFlag1 = fld(TimeFuncFlag1)
    time_func_flag2: TimeFuncFlag2 = fld(TimeFuncFlag2)
    calendar_func: CalendarBfld = fld(CalendarBfld)
    nbr_non_recurr_dates: int = fld(UINT8)
    nbr_recurr_dates: int = fld(UINT8)
    nbr_tier_switches: int = fld(UINT16)
    calendar_tbl_size: int = fld(UINT16)


@bitfield(1)
class TimeDateQualBfld:
    """TIME_DATE_QUAL_BFLD (section 3.7): day of week 0 = Sunday, 7 = not supported."""

    day_of_week: int = bits(0, 2)
    dst_flag: bool = flag(3)
    gmt_flag: bool = flag(4)
    tm_zn_applied_flag: bool = flag(5)
    dst_applied_flag: bool = flag(6)
    dst_supported_flag: bool = flag(7)


@record
class Clock:
    """Table 52 CLOCK_TBL (section 9.2): LTIME_DATE + TIME_DATE_QUAL."""

    clock_calendar: TimeDate | None = fld(LTIME_DATE)
    time_date_qual: TimeDateQualBfld = fld(TimeDateQualBfld)


@bitfield(2)
class ClockStatusBfld:
    """STATUS of Table 55 (section 9.3)."""

    curr_tier: int = bits(0, 2)
    tier_drive: int = bits(6, 7)
    special_schd_active: int = bits(8, 11)
    season: int = bits(12, 15)


@record
class ClockState:
    """Table 55 CLOCK_STATE_TBL (section 9.3): clock, qualifier and TOU status."""

    clock_calendar: TimeDate | None = fld(LTIME_DATE)
    time_date_qual: TimeDateQualBfld = fld(TimeDateQualBfld)
    status: ClockStatusBfld = fld(ClockStatusBfld)


def day_of_week(td: TimeDate) -> int:
    """DAY_OF_WEEK code (0 = Sunday) of a valid date, or 7 (not supported) otherwise."""
    dt = td.to_datetime()
    return 7 if dt is None else (dt.weekday() + 1) % 7


__all__ = [
    "TimeFuncFlag1", "TimeFuncFlag2", "CalendarBfld", "TimeTouRcd", "TimeDateQualBfld", "Clock",
    "ClockStatusBfld", "ClockState", "day_of_week",
]
