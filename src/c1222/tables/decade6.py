"""Decade 6: load profile, tables 60-67 (docs/spec c1219 section 10).

Data set *n* (1-4) lives in table 63 + n and exists when that table is in Table 0's
STD_TBLS_USED. The per-set records are reused with the set number as an argument.
"""

from __future__ import annotations

from dataclasses import replace

from c1222.errors import ConfigurationError
from c1222.tables.engine import (
    NI_FMAT1, STIME_DATE, UINT8, UINT16, UINT32, LpInt, SetOf, Struct, bitfield, fld, flag,
    record,
)

LP_SETS = (1, 2, 3, 4)


@bitfield(2)
class LpFlags:
    """LP_FLAGS (section 10.1). Bit 12 is left out: its meaning differs by source."""

    lp_set1_inhibit_ovf_flag: bool = flag(0)
    lp_set2_inhibit_ovf_flag: bool = flag(1)
    lp_set3_inhibit_ovf_flag: bool = flag(2)
    lp_set4_inhibit_ovf_flag: bool = flag(3)
    blk_end_read_flag: bool = flag(4)
    blk_end_pulse_flag: bool = flag(5)
    scalar_divisor_flag_set1: bool = flag(6)
    scalar_divisor_flag_set2: bool = flag(7)
    scalar_divisor_flag_set3: bool = flag(8)
    scalar_divisor_flag_set4: bool = flag(9)
    extended_int_status_flag: bool = flag(10)
    simple_int_status_flag: bool = flag(11)


@bitfield(1)
class LpFmats:
    """LP_FMATS (section 10.1): interval formats supported."""

    inv_uint8_flag: bool = flag(0)
    inv_uint16_flag: bool = flag(1)
    inv_uint32_flag: bool = flag(2)
    inv_int8_flag: bool = flag(3)
    inv_int16_flag: bool = flag(4)
    inv_int32_flag: bool = flag(5)
    inv_ni_fmat1_flag: bool = flag(6)
    inv_ni_fmat2_flag: bool = flag(7)


@record
class LpDataSetRcd:
    """Per-set dimensions of Tables 60/61 (NBR_BLKS_SETn ... MAX_INT_TIME_SETn, minutes)."""

    nbr_blks: int = fld(UINT16)
    nbr_blk_ints: int = fld(UINT16)
    nbr_chns: int = fld(UINT8)
    max_int_time: int = fld(UINT8)


def _present(n: int):
    return lambda s: 63 + n in s.tbl(0).std_tbls_used


@record
class LpSetRcd:
    """Tables 60 DIM_LP_TBL and 61 ACT_LP_TBL (section 10.1): 7 + 6 per present set."""

    lp_memory_len: int = fld(UINT32)
    lp_flags: LpFlags = fld(LpFlags)
    lp_fmats: LpFmats = fld(LpFmats)
    lp_data_set1: LpDataSetRcd | None = fld(LpDataSetRcd, when=_present(1))
    lp_data_set2: LpDataSetRcd | None = fld(LpDataSetRcd, when=_present(2))
    lp_data_set3: LpDataSetRcd | None = fld(LpDataSetRcd, when=_present(3))
    lp_data_set4: LpDataSetRcd | None = fld(LpDataSetRcd, when=_present(4))

    def data_set(self, n: int) -> LpDataSetRcd | None:
        return getattr(self, f"lp_data_set{n}")


def _set61(s) -> LpDataSetRcd:
    n = s.arg("set")
    dims = s.tbl(61).data_set(n)
    if dims is None:
        raise ConfigurationError(f"load-profile set {n} (table {63 + n}) is not in Table 0")
    return dims


def _scalar_divisor(s) -> bool:
    return getattr(s.tbl(61).lp_flags, f"scalar_divisor_flag_set{s.arg('set')}")


@bitfield(1)
class ChnlFlag:
    """CHNL_FLAG of LP_SOURCE_SEL_RCD (section 10.2)."""

    end_rdg_flag: bool = flag(0)


@record
class LpSourceSelRcd:
    """LP_SOURCE_SEL_RCD (section 10.2), 3 bytes."""

    chnl_flag: ChnlFlag = fld(ChnlFlag)
    lp_source_select: int = fld(UINT8)
    end_blk_rdg_source_select: int = fld(UINT8)


@record
class LpCtrlSetRcd:
    """The Table 62 part of one data set (section 10.2): 3N + 1 + 4N (with scalars) bytes."""

    lp_sel: tuple[LpSourceSelRcd, ...] = fld(LpSourceSelRcd, count=lambda s: _set61(s).nbr_chns)
    int_fmt_cde: int = fld(UINT8)
    scalars: tuple[int, ...] | None = fld(
        UINT16, count=lambda s: _set61(s).nbr_chns, when=_scalar_divisor)
    divisor: tuple[int, ...] | None = fld(
        UINT16, count=lambda s: _set61(s).nbr_chns, when=_scalar_divisor)


def _set_struct(cls: type, n: int) -> Struct:
    return Struct(cls, {"set": n})


@record
class LpCtrl:
    """Table 62 LP_CTRL_TBL (section 10.2)."""

    lp_ctrl_set1: LpCtrlSetRcd | None = fld(_set_struct(LpCtrlSetRcd, 1), when=_present(1))
    lp_ctrl_set2: LpCtrlSetRcd | None = fld(_set_struct(LpCtrlSetRcd, 2), when=_present(2))
    lp_ctrl_set3: LpCtrlSetRcd | None = fld(_set_struct(LpCtrlSetRcd, 3), when=_present(3))
    lp_ctrl_set4: LpCtrlSetRcd | None = fld(_set_struct(LpCtrlSetRcd, 4), when=_present(4))

    def ctrl_set(self, n: int) -> LpCtrlSetRcd | None:
        return getattr(self, f"lp_ctrl_set{n}")


@bitfield(1)
class LpSetStatusBfld:
    """LP_SET_STATUS_FLAGS (section 10.3)."""

    order: bool = flag(0)
    overflow_flag: bool = flag(1)
    list_type: bool = flag(2)  # 0 FIFO, 1 circular
    block_inhibit_overflow_flag: bool = flag(3)
    interval_order: bool = flag(4)
    active_mode_flag: bool = flag(5)
    test_mode: bool = flag(6)


@record
class LpSetStatusRcd:
    """The Table 63 status of one data set (section 10.3), 13 bytes."""

    lp_set_status_flags: LpSetStatusBfld = fld(LpSetStatusBfld)
    nbr_valid_blocks: int = fld(UINT16)
    last_block_element: int = fld(UINT16)
    last_block_seq_nbr: int = fld(UINT32)
    nbr_unread_blocks: int = fld(UINT16)
    nbr_valid_int: int = fld(UINT16)


@record
class LpStatus:
    """Table 63 LP_STATUS_TBL (section 10.3)."""

    lp_status_set1: LpSetStatusRcd | None = fld(LpSetStatusRcd, when=_present(1))
    lp_status_set2: LpSetStatusRcd | None = fld(LpSetStatusRcd, when=_present(2))
    lp_status_set3: LpSetStatusRcd | None = fld(LpSetStatusRcd, when=_present(3))
    lp_status_set4: LpSetStatusRcd | None = fld(LpSetStatusRcd, when=_present(4))

    def status_set(self, n: int) -> LpSetStatusRcd | None:
        return getattr(self, f"lp_status_set{n}")

    def with_status_set(self, n: int, value: LpSetStatusRcd) -> LpStatus:
        return replace(self, **{f"lp_status_set{n}": value})


def _lp_flags(s) -> LpFlags:
    return s.tbl(61).lp_flags


@record
class ReadingsRcd:
    """READINGS_RCD: a channel's block-end reading (section 10.4)."""

    block_end_read: object = fld(NI_FMAT1, when=lambda s: _lp_flags(s).blk_end_read_flag)
    block_end_pulse: int | None = fld(UINT32, when=lambda s: _lp_flags(s).blk_end_pulse_flag)


def _int_fmt(s) -> int:
    ctrl = s.tbl(62).ctrl_set(s.arg("set"))
    if ctrl is None:
        raise ConfigurationError(f"load-profile set {s.arg('set')} has no Table 62 entry")
    return ctrl.int_fmt_cde


@record
class IntSetRcd:
    """INT_SETn_RCD: one interval (section 10.4).

    EXTENDED_INT_STATUS is kept as its N//2 + 1 bytes; use :func:`channel_status` and
    :func:`common_status` to read the nibbles.
    """

    extended_int_status: tuple[int, ...] | None = fld(
        UINT8, count=lambda s: _set61(s).nbr_chns // 2 + 1,
        when=lambda s: _lp_flags(s).extended_int_status_flag)
    int_data: tuple = fld(LpInt(_int_fmt), count=lambda s: _set61(s).nbr_chns)


@record
class LpBlkDatRcd:
    """LP_BLKn_DAT_RCD: one block of intervals (section 10.4)."""

    blk_end_time: object = fld(STIME_DATE)
    end_readings: tuple[ReadingsRcd, ...] = fld(ReadingsRcd, count=lambda s: _set61(s).nbr_chns)
    simple_int_status: frozenset[int] | None = fld(
        SetOf(lambda s: (_set61(s).nbr_blk_ints + 7) // 8),
        when=lambda s: _lp_flags(s).simple_int_status_flag)
    lp_int: tuple[IntSetRcd, ...] = fld(IntSetRcd, count=lambda s: _set61(s).nbr_blk_ints)


@record
class LpDataSet:
    """Tables 64-67 LP_DATA_SETn_TBL (section 10.4): NBR_BLKS_SETn blocks.

    Decode with ``args={"set": n}`` (the registry does this for tables 64-67).
    """

    lp_blk_dat: tuple[LpBlkDatRcd, ...] = fld(LpBlkDatRcd, count=lambda s: _set61(s).nbr_blks)


# Extended interval status (section 10.4).
EIS_DST = 0x10
EIS_POWER_FAIL = 0x20
EIS_CLOCK_FORWARD = 0x40
EIS_CLOCK_BACKWARD = 0x80

CHANNEL_STATUS_NONE = 0
CHANNEL_STATUS_OVERFLOW = 1
CHANNEL_STATUS_PARTIAL = 2
CHANNEL_STATUS_LONG = 3
CHANNEL_STATUS_SKIPPED = 4
CHANNEL_STATUS_TEST = 5
CHANNEL_STATUS_CONFIG_CHANGED = 6
CHANNEL_STATUS_STOPPED = 7


def _nibble_pos(channel: int) -> tuple[int, int]:
    """(byte, shift) of a 1-based channel's status nibble.

    Channel 1 is the low nibble of byte 0; channels 2k and 2k+1 share byte k with the
    even channel in the high nibble (NIST-H reading) [UNVERIFIED for channels >= 2].
    """
    if channel == 1:
        return 0, 0
    return channel // 2, 4 if channel % 2 == 0 else 0


def common_status(eis: tuple[int, ...]) -> int:
    """The common flags (EIS_* masks) of an interval's extended status."""
    return eis[0] & 0xF0


def channel_status(eis: tuple[int, ...], channel: int) -> int:
    byte, shift = _nibble_pos(channel)
    return (eis[byte] >> shift) & 0xF


def make_extended_status(nbr_chns: int, common: int = 0,
                         channels: dict[int, int] | None = None) -> tuple[int, ...]:
    """Build EXTENDED_INT_STATUS bytes from common flags and per-channel nibbles."""
    out = [0] * (nbr_chns // 2 + 1)
    out[0] = common & 0xF0
    for ch, status in (channels or {}).items():
        byte, shift = _nibble_pos(ch)
        out[byte] |= (status & 0xF) << shift
    return tuple(out)


def block_size_formula(stime: int, ni1: int, int_size: int, nbr_chns: int, nbr_blk_ints: int,
                       *, blk_end_read: bool, blk_end_pulse: bool, simple_int_status: bool,
                       extended_int_status: bool) -> int:
    """Size of one LP block by the section 10.4 formula (for cross-checking the engine)."""
    n, i = nbr_chns, nbr_blk_ints
    return (stime + n * (ni1 * blk_end_read + 4 * blk_end_pulse)
            + ((i + 7) // 8) * simple_int_status
            + i * ((n // 2 + 1) * extended_int_status + n * int_size))


__all__ = [
    "LP_SETS", "LpFlags", "LpFmats", "LpDataSetRcd", "LpSetRcd", "ChnlFlag", "LpSourceSelRcd",
    "LpCtrlSetRcd", "LpCtrl", "LpSetStatusBfld", "LpSetStatusRcd", "LpStatus", "ReadingsRcd",
    "IntSetRcd", "LpBlkDatRcd", "LpDataSet", "common_status", "channel_status",
    "make_extended_status", "block_size_formula", "EIS_DST", "EIS_POWER_FAIL",
    "EIS_CLOCK_FORWARD", "EIS_CLOCK_BACKWARD",
]
