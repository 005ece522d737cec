"""The default single-phase meter profile (docs/spec c1219 section 15).

:func:`build_tables` turns a few parameters (:class:`MeterProfile`: AP title, serial
number, manufacturer, formats ...) into a complete :class:`~c1222.tables.store.TableStore`
- Table 0, the dimension tables and every table of section 15.3 - with a
:class:`~c1222.tables.procedures.ProcedureEngine` attached. Sizes come from the layouts
and Table 0, never from constants: changing a format or a dimension here changes every
dependent table consistently.

Sources (Table 16 index -> Table 12 unit, section 15.2):
0 active energy delivered Wh, 1 active power W, 2 apparent power VA, 3 RMS voltage
(x10^-2 V), 4 RMS current (x10^-3 A), 5 power factor (x10^-3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from c1222.errors import ConfigurationError, LocalProtocolError
from c1222.tables import decade0 as d0
from c1222.tables import decade1 as d1
from c1222.tables import decade2 as d2
from c1222.tables import decade5 as d5
from c1222.tables import decade6 as d6
from c1222.tables import decade7 as d7
from c1222.tables import notice as mt
from c1222.tables.access import (
    GROUP_ALL, GROUP_CONTROL, GROUP_PROCEDURE, GROUP_READ, GROUP_WRITE, MFG_PROC_BASE,
    AccessPolicy, Permission, User, permissions,
)
from c1222.tables.engine import TableEnv, blank_record
from c1222.tables.procedures import MfgProc, ProcedureEngine, ProcedureHooks
from c1222.tables.registry import encode_table, make_env, table_size
from c1222.tables.store import TableStore
from c1222.tables.types import TimeDate, TmFormat

#: Source indices of the default profile (section 15.2).
SRC_ENERGY_WH = 0
SRC_POWER_W = 1
SRC_APPARENT_VA = 2
SRC_VOLTAGE = 3
SRC_CURRENT = 4
SRC_POWER_FACTOR = 5

#: UOM entries of the six sources (section 15.2).
DEFAULT_UOM = (
    d1.UomEntryBfld(id_code=0, time_base=0, multiplier=0, q1_accountability=True,
                    q4_accountability=True),
    d1.UomEntryBfld(id_code=0, time_base=1, multiplier=0, q1_accountability=True,
                    q4_accountability=True),
    d1.UomEntryBfld(id_code=2, time_base=1, multiplier=0, q1_accountability=True,
                    q2_accountability=True, q3_accountability=True, q4_accountability=True),
    d1.UomEntryBfld(id_code=8, time_base=1, multiplier=5),
    d1.UomEntryBfld(id_code=12, time_base=1, multiplier=6),
    d1.UomEntryBfld(id_code=24, time_base=1, multiplier=6),
)

#: The tables the default meter serves.
DEFAULT_TABLE_SET = frozenset({
    0, 1, 2, 3, 5, 6, 7, 8,
    10, 11, 12, 13, 14, 15, 16,
    20, 21, 22, 23, 27, 28,
    50, 51, 52, 55,
    60, 61, 62, 63, 64,
    70, 71, 72, 73, 74,
})
#: Manufacturer tables it serves (MTn numbers): MT2, the customer notice (docs/tables.md).
DEFAULT_MFG_TABLES = frozenset({mt.NOTICE_TABLE_NUMBER})
#: Procedures it offers (section 15.3 plus cold start, change mode, status and pending).
DEFAULT_STD_PROCS = frozenset({0, 3, 4, 5, 6, 7, 8, 9, 10, 14})
DEFAULT_MFG_PROCS = frozenset({MfgProc.REMOTE_CONNECT_DISCONNECT})
#: Events the history log supports and monitors (section 15.3 Table 72 example, plus 20/21,
#: 47 tamper attempt for a refused password and 49 control point changed for remote disconnect).
DEFAULT_EVENTS = frozenset({1, 2, 3, 4, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 20, 21, 47, 49})


def _default_users() -> tuple[User, ...]:
    # User 2 / "PASSWORD" is the pair of the standard's Example 8 (c1222 digest 5.6 TV5).
    return (User(1, b"READER", GROUP_READ, "reader"),
            User(2, b"PASSWORD", GROUP_ALL, "operator"))


@dataclass(frozen=True)
class MeterProfile:
    """The few parameters a default meter is built from.

    ``ap_title`` is kept in Table 6 MISC_ID (the spec places no AP title in a C12.19 table
    it confirms); ``public_read`` / ``public_write`` are the tables served without Logon.
    """

    ap_title: str = "2.16.124.113620.1.22.0.8437"
    serial_number: str = "00000001"
    manufacturer: str = "SIMU"
    ed_model: str = "PYMTR1"
    device_class: bytes = b"SIMU"
    hw_version_number: int = 1
    hw_revision_number: int = 0
    fw_version_number: int = 1
    fw_revision_number: int = 0
    device_id: str | None = None  # Table 5 IDENTIFICATION; defaults to the serial number
    owner_name: str = ""
    utility_div: str = ""
    service_point_id: str = ""
    customer_id: str = ""
    tariff_id: str = ""
    # Table 0 formats (section 15.1)
    data_order: int = 0
    char_format: int = 1
    tm_format: int = TmFormat.UINT8
    int_format: int = 0
    ni_format1: int = 10
    ni_format2: int = 8
    id_form: int = 0
    data_access_method: int = 3  # offset and index: the store serves both
    std_version_no: int = 1
    std_revision_no: int = 0
    max_proc_parm_length: int = 16
    max_resp_data_len: int = 16
    dim_mfg_status_used: int = 1
    # load profile (section 15.3): 40 blocks x 96 intervals x 15 minutes, 2 channels
    lp_nbr_blks: int = 40
    lp_nbr_blk_ints: int = 96
    lp_max_int_time: int = 15
    nbr_history_entries: int = 100
    writable_tables: frozenset[int] = frozenset({5, 6, 7})
    users: tuple[User, ...] = field(default_factory=_default_users)
    public_read: frozenset[int] = frozenset({0, 1, 5})
    public_write: frozenset[int] = frozenset()

    def policy(self) -> AccessPolicy:
        """The access policy: anyone logged on reads, WRITE writes, procedures by group."""
        proc_perm = Permission(write_groups=GROUP_PROCEDURE | GROUP_CONTROL)
        control = Permission(write_groups=GROUP_CONTROL)
        procs = permissions((4, 5, 6, 7, 8, 9, 14), proc_perm)
        procs.update(permissions((0, 3, 10, MFG_PROC_BASE + MfgProc.REMOTE_CONNECT_DISCONNECT),
                                 control))
        # The customer notice (MT2) is the utility's: written by CONTROL users only (the
        # head-end's operator), never by a reader or without Security.
        return AccessPolicy(
            users=self.users,
            tables={7: Permission(read_groups=GROUP_ALL,
                                  write_groups=GROUP_PROCEDURE | GROUP_CONTROL),
                    mt.NOTICE_TABLE: Permission(read_groups=GROUP_ALL,
                                                write_groups=GROUP_CONTROL)},
            procedures=procs,
            default=Permission(read_groups=GROUP_ALL, write_groups=GROUP_WRITE),
            public_read=self.public_read,
            public_write=self.public_write,
        )


@dataclass
class MeterTables:
    """A built meter: its table store, procedure engine and hooks (bind metrology to these)."""

    store: TableStore
    procedures: ProcedureEngine
    hooks: ProcedureHooks
    profile: MeterProfile


def _set_bytes(items: frozenset[int]) -> int:
    return max(items) // 8 + 1 if items else 0


def gen_config(p: MeterProfile, tables: frozenset[int] = DEFAULT_TABLE_SET) -> d0.GenConfig:
    """Table 0 of the profile (section 15.1)."""
    return d0.GenConfig(
        format_control_1=d0.FormatControl1(data_order=p.data_order, char_format=p.char_format),
        format_control_2=d0.FormatControl2(tm_format=p.tm_format,
                                           data_access_method=p.data_access_method,
                                           id_form=p.id_form, int_format=p.int_format),
        format_control_3=d0.FormatControl3(ni_format1=p.ni_format1, ni_format2=p.ni_format2),
        device_class=p.device_class,
        nameplate_type=2,
        default_set_used=0,
        max_proc_parm_length=p.max_proc_parm_length,
        max_resp_data_len=p.max_resp_data_len,
        std_version_no=p.std_version_no,
        std_revision_no=p.std_revision_no,
        dim_std_tbls_used=_set_bytes(tables),
        dim_mfg_tbls_used=_set_bytes(DEFAULT_MFG_TABLES),
        dim_std_proc_used=_set_bytes(DEFAULT_STD_PROCS),
        dim_mfg_proc_used=_set_bytes(DEFAULT_MFG_PROCS),
        dim_mfg_status_used=p.dim_mfg_status_used,
        nbr_pending=0,
        std_tbls_used=tables,
        mfg_tbls_used=DEFAULT_MFG_TABLES,
        std_proc_used=DEFAULT_STD_PROCS,
        mfg_proc_used=frozenset(DEFAULT_MFG_PROCS),
        std_tbls_write=p.writable_tables & tables,
        mfg_tbls_write=DEFAULT_MFG_TABLES,
    )


def _short_title(title: str) -> str:
    """An AP title under the C12.22 base in its relative form (MISC_ID holds 30 characters)."""
    base = "2.16.124.113620.1.22.0."
    return "." + title[len(base):] if title.startswith(base) else title


def build_records(p: MeterProfile, now: TimeDate | None = None) -> dict[int, object]:
    """Every table of the profile as a decoded value (Table 0 first)."""
    gc = gen_config(p)
    recs: dict[int, object] = {0: gc}
    env = TableEnv(gc.context(), recs)  # sees dimension tables as they are added to ``recs``
    recs[1] = d0.GeneralMfgId(p.manufacturer, p.ed_model, p.hw_version_number,
                              p.hw_revision_number, p.fw_version_number, p.fw_revision_number,
                              p.serial_number)
    recs[2] = d0.DeviceNameplate(
        electric=d0.ElecNameplate(e_kh="1.0", e_kt="1.0", e_input_scalar=0, e_ed_config="1PH",
                                  e_elements=d0.EElements(), e_volts=d0.EVolts(),
                                  e_class_max_amps="100", e_ta="15"),
        raw=None)
    recs[3] = d0.EdModeStatus(d0.EdMode(metering=True), d0.EdStdStatus1(), 0, frozenset())
    recs[5] = d0.DeviceIdent(p.device_id if p.device_id is not None else p.serial_number)
    recs[6] = d0.UtilInfo(
        owner_name=p.owner_name, utility_div=p.utility_div, service_point_id=p.service_point_id,
        elec_addr="", device_id=p.device_id if p.device_id is not None else p.serial_number,
        util_ser_no=p.serial_number, customer_id=p.customer_id, coordinate_1=bytes(10),
        coordinate_2=bytes(10), coordinate_3=bytes(10), tariff_id=p.tariff_id,
        ex1_sw_vendor="", ex1_sw_version_number=0, ex1_sw_revision_number=0, ex2_sw_vendor="",
        ex2_sw_version_number=0, ex2_sw_revision_number=0, programmer_name="",
        misc_id=_short_title(p.ap_title))
    recs[7] = d0.ProcInitiate(d0.TableIdbBfld(), 0, b"")
    recs[8] = d0.ProcResponse(d0.TableIdbBfld(), 0, 0, b"")
    # decade 1 (section 15.2): Table 11 = 00 06 00 00 00 00 02 06
    src = d1.SourceRcd(d1.SourceFlags(), nbr_uom_entries=len(DEFAULT_UOM),
                       nbr_demand_ctrl_entries=0, data_ctrl_length=0, nbr_data_ctrl_entries=0,
                       nbr_constants_entries=0, constants_selector=2,
                       nbr_sources=len(DEFAULT_UOM))
    recs[10] = recs[11] = src
    recs[12] = d1.UomEntry(DEFAULT_UOM)
    recs[13] = d1.DemandControl(None, None, None, None, ())
    recs[14] = d1.DataControl(())
    recs[15] = d1.Constants(electric=(), raw=None)
    recs[16] = d1.Sources(tuple(d1.SourceLinkBfld(uom_entry_flag=True, pulse_engr_flag=True)
                                for _ in DEFAULT_UOM))
    # decade 2 (section 15.3): 1 summation, NBR_OCCUR 1, 5 present values
    regs = d2.RegsRcd(d2.RegFunc1Flags(), d2.RegFunc2Flags(), nbr_self_reads=0, nbr_summations=1,
                      nbr_demands=0, nbr_coin_values=0, nbr_occur=1, nbr_tiers=0,
                      nbr_present_demands=0, nbr_present_values=5)
    recs[20] = recs[21] = regs
    recs[22] = d2.DataSelection((SRC_ENERGY_WH,), (), frozenset(), (), ())
    recs[23] = blank_record(d2.RegisterData, env)
    recs[27] = d2.PresentRegisterSelect((), (SRC_POWER_W, SRC_APPARENT_VA, SRC_VOLTAGE,
                                             SRC_CURRENT, SRC_POWER_FACTOR))
    recs[28] = blank_record(d2.PresentRegisterData, env)
    # decade 5: no TOU; clock from ``now``
    tou = d5.TimeTouRcd(d5.TimeFuncFlag1(), d5.TimeFuncFlag2(), d5.CalendarBfld(), 0, 0, 0, 0)
    recs[50] = recs[51] = tou
    clock_now = None if p.tm_format == TmFormat.NO_CLOCK else (now or TimeDate(2024, 1, 1, 0, 0, 0))
    qual = d5.TimeDateQualBfld(day_of_week=d5.day_of_week(clock_now) if clock_now else 7,
                               gmt_flag=True)
    recs[52] = d5.Clock(clock_now, qual)
    recs[55] = d5.ClockState(clock_now, qual, d5.ClockStatusBfld())
    # decade 6 (section 15.3): block-end readings + extended status, UINT32 intervals
    lp_set = d6.LpDataSetRcd(p.lp_nbr_blks, p.lp_nbr_blk_ints, 2, p.lp_max_int_time)
    lp_flags = d6.LpFlags(blk_end_read_flag=True, extended_int_status_flag=True)
    recs[61] = d6.LpSetRcd(0, lp_flags, d6.LpFmats(inv_uint32_flag=True), lp_set, None, None, None)
    recs[62] = d6.LpCtrl(d6.LpCtrlSetRcd(
        (d6.LpSourceSelRcd(d6.ChnlFlag(end_rdg_flag=True), SRC_ENERGY_WH, SRC_ENERGY_WH),
         d6.LpSourceSelRcd(d6.ChnlFlag(), SRC_VOLTAGE, SRC_VOLTAGE)),
        4, None, None), None, None, None)
    lp_memory = table_size(64, env)
    assert lp_memory is not None  # Table 64 has a layout
    recs[60] = recs[61] = d6.LpSetRcd(lp_memory, lp_flags, d6.LpFmats(inv_uint32_flag=True),
                                      lp_set, None, None, None)
    recs[63] = d6.LpStatus(d6.LpSetStatusRcd(
        d6.LpSetStatusBfld(list_type=True, active_mode_flag=True), 0, 0, 0, 0, 0), None, None, None)
    recs[64] = blank_record(d6.LpDataSet, env, args={"set": 1})
    # decade 7 (section 15.3): history log with date/time and sequence numbers
    log = d7.LogRcd(d7.LogFlags(hist_date_time_flag=True, hist_seq_nbr_flag=True),
                    nbr_std_events=10, nbr_mfg_events=0, hist_data_length=0, event_data_length=0,
                    nbr_history_entries=p.nbr_history_entries, nbr_event_entries=0,
                    ext_log_flags=0 if p.std_version_no > 1 else None,
                    nbr_program_tables=0 if p.std_version_no > 1 else None)
    recs[70] = recs[71] = log
    recs[72] = d7.EventsId(DEFAULT_EVENTS, frozenset())
    recs[73] = d7.HistLogCtrl(DEFAULT_EVENTS, frozenset(), frozenset(), frozenset(),
                              DEFAULT_STD_PROCS, frozenset())
    blank_log = blank_record(d7.HistLogData, env)
    recs[74] = d7.HistLogData(d7.ListStatusBfld(list_type=True), 0, 0, 0, 0, blank_log.entries)
    # manufacturer tables: no customer notice yet
    recs[mt.NOTICE_TABLE] = blank_record(mt.CustomerNotice, env)
    return recs


def build_tables(profile: MeterProfile | None = None, *, now: TimeDate | None = None,
                 hooks: ProcedureHooks | None = None) -> MeterTables:
    """Build the default meter's table store and attach the procedure engine.

    Raises :class:`~c1222.errors.ConfigurationError` when a parameter does not fit
    (e.g. a serial number too long, or not digits with ID_FORM 1).
    """
    p = profile or MeterProfile()
    recs = build_records(p, now)
    env = make_env(recs[0], recs)  # type: ignore[arg-type]
    try:
        data = {n: encode_table(n, rec, env) for n, rec in recs.items()}
    except LocalProtocolError as exc:
        raise ConfigurationError(f"profile does not fit its tables: {exc}") from None
    store = TableStore(data, policy=p.policy())
    hooks = hooks if hooks is not None else ProcedureHooks()
    engine = ProcedureEngine(store, hooks)
    return MeterTables(store, engine, hooks, p)


def default_store(profile: MeterProfile | None = None, *,
                  now: TimeDate | None = None) -> TableStore:
    """The default meter's table store (procedures attached)."""
    return build_tables(profile, now=now).store


__all__ = [
    "MeterProfile", "MeterTables", "build_tables", "build_records", "default_store", "gen_config",
    "DEFAULT_TABLE_SET", "DEFAULT_MFG_TABLES", "DEFAULT_STD_PROCS", "DEFAULT_MFG_PROCS",
    "DEFAULT_EVENTS",
    "DEFAULT_UOM", "SRC_ENERGY_WH", "SRC_POWER_W", "SRC_APPARENT_VA", "SRC_VOLTAGE",
    "SRC_CURRENT", "SRC_POWER_FACTOR",
]
