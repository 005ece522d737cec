"""Decade 0: configuration, identification and procedures (docs/spec c1219 sections 4 and 5).

Table 0 (:class:`GenConfig`) is the only table with a fixed layout; it yields the
:class:`~c1222.tables.types.TableContext` every other table is coded with.
"""

from __future__ import annotations

from c1222.tables.engine import (
    UINT8, Binary, IdString, Rest, SetOf, String, bitfield, bits, fld, flag, record,
)
from c1222.tables.types import TableContext

# --------------------------------------------------------------------------- Table 0


@bitfield(1)
class FormatControl1:
    """FORMAT_CONTROL_1 (section 4, offset 0)."""

    data_order: int = bits(0, 0)
    char_format: int = bits(1, 3)
    model_select: int = bits(4, 6)  # meaning [UNVERIFIED]


@bitfield(1)
class FormatControl2:
    """FORMAT_CONTROL_2 (section 4, offset 1)."""

    tm_format: int = bits(0, 2)
    data_access_method: int = bits(3, 4)
    id_form: int = bits(5, 5)
    int_format: int = bits(6, 7)


@bitfield(1)
class FormatControl3:
    """FORMAT_CONTROL_3 (section 4, offset 2)."""

    ni_format1: int = bits(0, 3)
    ni_format2: int = bits(4, 7)


@record
class GenConfig:
    """Table 0 GEN_CONFIG_TBL (section 4).

    Size = 19 + 2*DIM_STD_TBLS_USED + 2*DIM_MFG_TBLS_USED + DIM_STD_PROC_USED +
    DIM_MFG_PROC_USED. The SETs are ``frozenset`` of table / procedure numbers.
    """

    format_control_1: FormatControl1 = fld(FormatControl1)
    format_control_2: FormatControl2 = fld(FormatControl2)
    format_control_3: FormatControl3 = fld(FormatControl3)
    device_class: bytes = fld(Binary(4))
    nameplate_type: int = fld(UINT8)
    default_set_used: int = fld(UINT8)
    max_proc_parm_length: int = fld(UINT8)
    max_resp_data_len: int = fld(UINT8)
    std_version_no: int = fld(UINT8)
    std_revision_no: int = fld(UINT8)
    dim_std_tbls_used: int = fld(UINT8)
    dim_mfg_tbls_used: int = fld(UINT8)
    dim_std_proc_used: int = fld(UINT8)
    dim_mfg_proc_used: int = fld(UINT8)
    dim_mfg_status_used: int = fld(UINT8)
    nbr_pending: int = fld(UINT8)
    std_tbls_used: frozenset[int] = fld(SetOf(lambda s: s.get("dim_std_tbls_used")))
    mfg_tbls_used: frozenset[int] = fld(SetOf(lambda s: s.get("dim_mfg_tbls_used")))
    std_proc_used: frozenset[int] = fld(SetOf(lambda s: s.get("dim_std_proc_used")))
    mfg_proc_used: frozenset[int] = fld(SetOf(lambda s: s.get("dim_mfg_proc_used")))
    std_tbls_write: frozenset[int] = fld(SetOf(lambda s: s.get("dim_std_tbls_used")))
    mfg_tbls_write: frozenset[int] = fld(SetOf(lambda s: s.get("dim_mfg_tbls_used")))

    def context(self) -> TableContext:
        """The encoding formats this Table 0 declares (section 3)."""
        f1, f2, f3 = self.format_control_1, self.format_control_2, self.format_control_3
        return TableContext(
            data_order=f1.data_order, char_format=f1.char_format, tm_format=f2.tm_format,
            int_format=f2.int_format, ni_format1=f3.ni_format1, ni_format2=f3.ni_format2,
            id_form=f2.id_form,
        )

    def size(self) -> int:
        return (19 + 2 * self.dim_std_tbls_used + 2 * self.dim_mfg_tbls_used
                + self.dim_std_proc_used + self.dim_mfg_proc_used)


def _gc(s) -> GenConfig:
    return s.tbl(0)


# --------------------------------------------------------------------------- Table 1


@record
class GeneralMfgId:
    """Table 1 GENERAL_MFG_ID_TBL (section 5.1): 32 bytes with ID_FORM 0, 24 with ID_FORM 1."""

    manufacturer: str = fld(String(4))
    ed_model: str = fld(String(8))
    hw_version_number: int = fld(UINT8)
    hw_revision_number: int = fld(UINT8)
    fw_version_number: int = fld(UINT8)
    fw_revision_number: int = fld(UINT8)
    mfg_serial_number: str = fld(IdString(16))


# --------------------------------------------------------------------------- Table 2


@bitfield(2)
class EElements:
    """E_ELEMENTS (section 5.2); enumerations [UNVERIFIED]."""

    e_freq: int = bits(0, 2)
    e_no_of_elements: int = bits(3, 5)
    e_base_type: int = bits(6, 9)
    e_accuracy_class: int = bits(10, 15)


@bitfield(1)
class EVolts:
    """E_VOLTS (section 5.2); enumerations [UNVERIFIED]."""

    e_elements_volts: int = bits(0, 3)
    e_ed_supply_volts: int = bits(4, 7)


@record
class ElecNameplate:
    """The electric DEVICE_NAMEPLATE record (section 5.2), 33 bytes."""

    e_kh: str = fld(String(6))
    e_kt: str = fld(String(6))
    e_input_scalar: int = fld(UINT8)
    e_ed_config: str = fld(String(5))
    e_elements: EElements = fld(EElements)
    e_volts: EVolts = fld(EVolts)
    e_class_max_amps: str = fld(String(6))
    e_ta: str = fld(String(6))


_ELECTRIC = 2


@record
class DeviceNameplate:
    """Table 2 DEVICE_NAMEPLATE_TBL: the electric record when NAMEPLATE_TYPE is 2 (section 5.2).

    Gas and water records are not described by the spec, so they stay raw bytes.
    """

    electric: ElecNameplate | None = fld(
        ElecNameplate, when=lambda s: _gc(s).nameplate_type == _ELECTRIC)
    raw: bytes | None = fld(Rest(0xFFFF), when=lambda s: _gc(s).nameplate_type != _ELECTRIC)


# --------------------------------------------------------------------------- Table 3


@bitfield(1)
class EdMode:
    """ED_MODE (section 5.3)."""

    metering: bool = flag(0)
    test_mode: bool = flag(1)
    meter_shop_mode: bool = flag(2)
    factory: bool = flag(3)


@bitfield(2)
class EdStdStatus1:
    """ED_STD_STATUS1 (section 5.3)."""

    unprogrammed: bool = flag(0)
    configuration_error: bool = flag(1)
    self_chk_error: bool = flag(2)
    ram_failure: bool = flag(3)
    rom_failure: bool = flag(4)
    nonvol_mem_failure: bool = flag(5)
    clock_error: bool = flag(6)
    measurement_error: bool = flag(7)
    low_battery: bool = flag(8)
    low_loss_potential: bool = flag(9)
    demand_overload: bool = flag(10)
    power_failure: bool = flag(11)
    tamper_detect: bool = flag(12)
    reverse_rotation: bool = flag(13)


@record
class EdModeStatus:
    """Table 3 ED_MODE_STATUS_TBL (section 5.3): 4 + DIM_MFG_STATUS_USED bytes."""

    ed_mode: EdMode = fld(EdMode)
    ed_std_status1: EdStdStatus1 = fld(EdStdStatus1)
    ed_std_status2: int = fld(UINT8)  # reserved for expansion
    ed_mfg_status: frozenset[int] = fld(SetOf(lambda s: _gc(s).dim_mfg_status_used))


# --------------------------------------------------------------------------- Table 5


@record
class DeviceIdent:
    """Table 5 DEVICE_IDENT_TBL (section 5.5): 20 characters, or 10 BCD bytes with ID_FORM 1."""

    identification: str = fld(IdString(20))


# --------------------------------------------------------------------------- Table 6


@record
class UtilInfo:
    """Table 6 UTIL_INFO_TBL (section 5.6), 230 bytes."""

    owner_name: str = fld(String(20))
    utility_div: str = fld(String(20))
    service_point_id: str = fld(String(20))
    elec_addr: str = fld(String(20))
    device_id: str = fld(String(20))
    util_ser_no: str = fld(String(20))
    customer_id: str = fld(String(20))
    coordinate_1: bytes = fld(Binary(10))
    coordinate_2: bytes = fld(Binary(10))
    coordinate_3: bytes = fld(Binary(10))
    tariff_id: str = fld(String(8))
    ex1_sw_vendor: str = fld(String(4))
    ex1_sw_version_number: int = fld(UINT8)
    ex1_sw_revision_number: int = fld(UINT8)
    ex2_sw_vendor: str = fld(String(4))
    ex2_sw_version_number: int = fld(UINT8)
    ex2_sw_revision_number: int = fld(UINT8)
    programmer_name: str = fld(String(10))
    misc_id: str = fld(String(30))


# --------------------------------------------------------------------------- Tables 7 and 8


@bitfield(2)
class TableIdbBfld:
    """TABLE_IDB_BFLD (section 3.6): a procedure or event number with its flags."""

    tbl_proc_nbr: int = bits(0, 10)
    std_vs_mfg_flag: bool = flag(11)
    selector: int = bits(12, 15)


@record
class ProcInitiate:
    """Table 7 PROC_INITIATE_TBL (section 5.7): 3 + up to MAX_PROC_PARM_LENGTH bytes."""

    proc: TableIdbBfld = fld(TableIdbBfld)
    seq_nbr: int = fld(UINT8)
    parm_data: bytes = fld(Rest(lambda s: _gc(s).max_proc_parm_length))


@record
class ProcResponse:
    """Table 8 PROC_RESPONSE_TBL (section 5.7): 4 + up to MAX_RESP_DATA_LEN bytes."""

    proc: TableIdbBfld = fld(TableIdbBfld)
    seq_nbr: int = fld(UINT8)
    result_code: int = fld(UINT8)
    resp_data: bytes = fld(Rest(lambda s: _gc(s).max_resp_data_len))


__all__ = [
    "FormatControl1", "FormatControl2", "FormatControl3", "GenConfig", "GeneralMfgId",
    "EElements", "EVolts", "ElecNameplate", "DeviceNameplate", "EdMode", "EdStdStatus1",
    "EdModeStatus", "DeviceIdent", "UtilInfo", "TableIdbBfld", "ProcInitiate", "ProcResponse",
]
