"""Procedures through Table 7 / Table 8 (docs/spec c1219 sections 5.7 and 5.8).

A client writes Table 7 (PROC, SEQ_NBR, PARM_DATA); :class:`ProcedureEngine`, attached to
the store's Table 7 write hook, runs the procedure synchronously and posts PROC, SEQ_NBR,
RESULT_CODE and RESP_DATA in Table 8 as the SELECTOR asks. The service-level answer to
the write stays OK whatever the procedure's outcome; the outcome is the RESULT_CODE
(an unknown procedure gives :attr:`ProcResult.UNRECOGNIZED`, never an exception).

Each procedure first calls the hook registered for it in :class:`ProcedureHooks` - that
is where the meter binds "clear data" or "remote disconnect" to live metrology and
relays - and then applies its effect on the tables. A hook returning a non-zero result
aborts the table effect and that result is posted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum

from c1222.errors import DecodeError, LocalProtocolError
from c1222.tables import lists
from c1222.tables.access import MFG_PROC_BASE, Principal
from c1222.tables.decade0 import EdMode, EdModeStatus, EdStdStatus1, ProcResponse, TableIdbBfld
from c1222.tables.decade2 import RegisterData
from c1222.tables.decade5 import TimeDateQualBfld, day_of_week
from c1222.tables.decade7 import (
    EVENT_DEMAND_RESET, EVENT_HISTORY_LOG_CLEARED, EVENT_PROCEDURE_INVOKED,
    EVENT_RESET_LIST_POINTERS, EVENT_SELF_READ, EVENT_TIME_CHANGED_NEW, EVENT_TIME_CHANGED_OLD,
    EVENT_UPDATED_LIST_POINTERS,
)
from c1222.tables.engine import Bits, Scope, blank_record, encode_record
from c1222.tables.store import PROC_INITIATE, PROC_RESPONSE, TableStore
from c1222.tables.types import (
    TimeDate, TmFormat, decode_time_date, decode_uint, is_valid_time_date,
)


class ProcResult(IntEnum):
    """Table 8 RESULT_CODE (section 5.7)."""

    COMPLETED = 0
    NOT_COMPLETED = 1  # accepted, not fully completed
    INVALID_PARAMETER = 2
    CONFLICT = 3  # conflicts with the current device setup
    TIMING = 4  # timing constraint
    NO_AUTHORIZATION = 5
    UNRECOGNIZED = 6


class StdProc(IntEnum):
    """Standard procedure numbers (section 5.8)."""

    COLD_START = 0
    WARM_START = 1
    SAVE_CONFIGURATION = 2
    CLEAR_DATA = 3
    RESET_LIST_POINTERS = 4
    UPDATE_LAST_READ_ENTRY = 5
    CHANGE_MODE = 6
    CLEAR_STD_STATUS_FLAGS = 7
    CLEAR_MFG_STATUS_FLAGS = 8
    REMOTE_RESET = 9
    SET_DATE_TIME = 10
    EXECUTE_DIAGNOSTICS = 11
    ACTIVATE_ALL_PENDING = 12
    ACTIVATE_SPECIFIC_PENDING = 13
    CLEAR_ALL_PENDING = 14
    CLEAR_SPECIFIC_PENDING = 15
    START_LOAD_PROFILE = 16
    STOP_LOAD_PROFILE = 17


class MfgProc(IntEnum):
    """This project's manufacturer procedures (TABLE_IDB_BFLD bit 11 set).

    The spec describes no standard remote connect/disconnect procedure (21 DIRECT_LOAD_CONTROL
    has an unknown layout), so the lever is manufacturer procedure 0: PARM_DATA one byte,
    0 = disconnect the load, 1 = reconnect it; RESP_DATA one byte, the new state.
    """

    REMOTE_CONNECT_DISCONNECT = 0


class Selector(IntEnum):
    """SELECTOR of TABLE_IDB_BFLD in Table 7 (section 5.7)."""

    POST_ON_COMPLETION = 0
    POST_ON_EXCEPTION = 1
    DO_NOT_POST = 2
    POST_NOW_AND_ON_COMPLETION = 3


#: ED_MFG_STATUS bit that mirrors the service switch (1 = load disconnected). Procedure 8
#: leaves it alone because it is live state, not a latched alarm.
MFG_STATUS_LOAD_DISCONNECTED = 0
_LIVE_MFG_STATUS = frozenset({MFG_STATUS_LOAD_DISCONNECTED})

# Remote reset (procedure 9) action bits (TERM-MOD remote_reset.py).
RESET_DEMAND = 0x01
RESET_SELF_READ = 0x02
# Procedure 10 SET_MASK bits [UNVERIFIED layout].
SET_TIME = 0x01
SET_DATE = 0x02
SET_TIME_DATE_QUAL = 0x04


@dataclass(frozen=True)
class ProcedureCall:
    """One procedure invocation, as the hooks see it."""

    number: int
    mfg: bool
    selector: int
    seq_nbr: int
    parm_data: bytes
    principal: Principal | None
    now: TimeDate | None

    @property
    def key(self) -> int:
        return self.number + (MFG_PROC_BASE if self.mfg else 0)


@dataclass(frozen=True)
class ProcedureOutcome:
    """What a procedure answers: RESULT_CODE and RESP_DATA."""

    result_code: int = ProcResult.COMPLETED
    resp_data: bytes = b""


Hook = Callable[[ProcedureCall, TableStore], "ProcedureOutcome | None"]

#: Names of the hooks the meter can bind (one per action).
HOOK_NAMES = (
    "cold_start", "clear_data", "reset_list_pointers", "update_last_read", "change_mode",
    "clear_std_status", "clear_mfg_status", "demand_reset", "self_read", "set_time",
    "clear_pending", "remote_connect", "remote_disconnect",
)


class ProcedureHooks:
    """A registry of callbacks by action name (see :data:`HOOK_NAMES`).

    A hook gets the :class:`ProcedureCall` and the store and returns ``None`` (go on) or a
    :class:`ProcedureOutcome`; a non-zero result code stops the procedure with that result.
    """

    def __init__(self) -> None:
        self._hooks: dict[str, list[Hook]] = {}

    def register(self, name: str, hook: Hook) -> None:
        if name not in HOOK_NAMES:
            raise LocalProtocolError(f"unknown procedure hook {name!r}; one of {HOOK_NAMES}")
        self._hooks.setdefault(name, []).append(hook)

    def fire(self, name: str, call: ProcedureCall, store: TableStore) -> ProcedureOutcome | None:
        for hook in self._hooks.get(name, ()):
            outcome = hook(call, store)
            if outcome is not None and outcome.result_code != ProcResult.COMPLETED:
                return outcome
        return None


class ProcedureEngine:
    """Runs procedures written to Table 7 and posts results in Table 8."""

    def __init__(self, store: TableStore, hooks: ProcedureHooks | None = None) -> None:
        self.store = store
        self.hooks = hooks if hooks is not None else ProcedureHooks()
        self._handlers: dict[int, Callable[[ProcedureCall], ProcedureOutcome]] = {
            StdProc.COLD_START: self._cold_start,
            StdProc.CLEAR_DATA: self._clear_data,
            StdProc.RESET_LIST_POINTERS: self._reset_list_pointers,
            StdProc.UPDATE_LAST_READ_ENTRY: self._update_last_read,
            StdProc.CHANGE_MODE: self._change_mode,
            StdProc.CLEAR_STD_STATUS_FLAGS: self._clear_std_status,
            StdProc.CLEAR_MFG_STATUS_FLAGS: self._clear_mfg_status,
            StdProc.REMOTE_RESET: self._remote_reset,
            StdProc.SET_DATE_TIME: self._set_date_time,
            StdProc.CLEAR_ALL_PENDING: self._clear_all_pending,
            MFG_PROC_BASE + MfgProc.REMOTE_CONNECT_DISCONNECT: self._remote_connect_disconnect,
        }
        store.on_write(PROC_INITIATE, self._on_table7)
        if PROC_RESPONSE in store:
            store.set_ready(PROC_RESPONSE, False)  # nothing to read before the first procedure

    @classmethod
    def implemented(cls) -> frozenset[int]:
        """Procedure keys this engine implements (standard n, manufacturer 2048 + n)."""
        return frozenset({0, 3, 4, 5, 6, 7, 8, 9, 10, 14,
                          MFG_PROC_BASE + MfgProc.REMOTE_CONNECT_DISCONNECT})

    # ------------------------------------------------------------------ entry points

    def _on_table7(self, store: TableStore, number: int, principal: Principal | None,
                   now: TimeDate | None) -> None:
        self.run(store.get_bytes(PROC_INITIATE), principal=principal, now=now)

    def run(self, table7: bytes, *, principal: Principal | None = None,
            now: TimeDate | None = None) -> ProcedureOutcome:
        """Run the procedure ``table7`` describes and post Table 8; returns the outcome."""
        proc = Bits(TableIdbBfld).decode_raw(table7[:2], Scope(self.store.env, {}), "PROC", 0)
        call = ProcedureCall(proc.tbl_proc_nbr, proc.std_vs_mfg_flag, proc.selector, table7[2],
                             bytes(table7[3:]), principal, now)
        outcome = self._dispatch(call)
        if len(outcome.resp_data) > self.store.gen_config.max_resp_data_len:
            outcome = ProcedureOutcome(outcome.result_code,
                                       outcome.resp_data[: self.store.gen_config.max_resp_data_len])
        self._post(proc, call, outcome)
        return outcome

    def _dispatch(self, call: ProcedureCall) -> ProcedureOutcome:
        gc = self.store.gen_config
        used = gc.mfg_proc_used if call.mfg else gc.std_proc_used
        handler = self._handlers.get(call.key)
        if call.number not in used or handler is None:
            return ProcedureOutcome(ProcResult.UNRECOGNIZED)
        if not self.store.policy.may_run_procedure(call.key, call.principal):
            return ProcedureOutcome(ProcResult.NO_AUTHORIZATION)
        if len(call.parm_data) > gc.max_proc_parm_length or call.selector > 3:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        outcome = handler(call)
        if outcome.result_code in (ProcResult.COMPLETED, ProcResult.NOT_COMPLETED):
            lists.append_history(self.store, call.now, EVENT_PROCEDURE_INVOKED,
                                 user_id=call.principal.user_id if call.principal else 0,
                                 argument=call.key.to_bytes(2, "little"))
        return outcome

    def _post(self, proc: TableIdbBfld, call: ProcedureCall, outcome: ProcedureOutcome) -> None:
        if PROC_RESPONSE not in self.store:
            return
        if call.selector == Selector.DO_NOT_POST:
            return
        if call.selector == Selector.POST_ON_EXCEPTION and outcome.result_code == 0:
            return
        response = ProcResponse(proc, call.seq_nbr, int(outcome.result_code), outcome.resp_data)
        self.store.put_bytes(PROC_RESPONSE, encode_record(response, self.store.env))
        self.store.set_ready(PROC_RESPONSE, True)

    def _hook(self, name: str, call: ProcedureCall) -> ProcedureOutcome | None:
        return self.hooks.fire(name, call, self.store)

    # ------------------------------------------------------------------ procedures

    def _cold_start(self, call: ProcedureCall) -> ProcedureOutcome:
        """0: clear the data and the status flags, back to metering mode (hook ``cold_start``)."""
        if call.parm_data:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        stop = self._hook("cold_start", call)
        if stop:
            return stop
        self._clear_tables(call)
        if 3 in self.store:
            st3: EdModeStatus = self.store.get(3)
            self.store.put(3, replace(st3, ed_mode=EdMode(metering=True),
                                      ed_std_status1=EdStdStatus1(), ed_std_status2=0,
                                      ed_mfg_status=st3.ed_mfg_status & _LIVE_MFG_STATUS))
        return ProcedureOutcome()

    def _clear_tables(self, call: ProcedureCall) -> None:
        if 23 in self.store:
            self.store.put(23, blank_record(RegisterData, self.store.env))
        lists.clear_lp(self.store)
        lists.clear_history(self.store)
        lists.append_history(self.store, call.now, EVENT_HISTORY_LOG_CLEARED,
                             user_id=call.principal.user_id if call.principal else 0)

    def _clear_data(self, call: ProcedureCall) -> ProcedureOutcome:
        """3: zero the energy registers (Table 23), the load profile and the history log."""
        if call.parm_data:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        stop = self._hook("clear_data", call)
        if stop:
            return stop
        self._clear_tables(call)
        return ProcedureOutcome()

    def _list_targets(self, selector: int) -> list[int] | None:
        """LIST selector -> lists.LIST_* values present, or None when not available."""
        present = [lists.lp_list(n) for n in lists.lp_sets_present(self.store)]
        if 74 in self.store:
            present.append(lists.LIST_HISTORY_LOG)
        if selector == lists.LIST_ALL:
            return present
        return [selector] if selector in present else None

    def _reset_list_pointers(self, call: ProcedureCall) -> ProcedureOutcome:
        """4: PARM_DATA = LIST (UINT8) [UNVERIFIED enumeration, see lists.LIST_*]."""
        if len(call.parm_data) != 1:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        targets = self._list_targets(call.parm_data[0])
        if targets is None:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        stop = self._hook("reset_list_pointers", call)
        if stop:
            return stop
        for target in targets:
            if target == lists.LIST_HISTORY_LOG:
                lists.reset_history_pointers(self.store)
            else:
                lists.reset_lp_pointers(self.store, target - lists.LIST_LP_SET1 + 1)
        lists.append_history(self.store, call.now, EVENT_RESET_LIST_POINTERS,
                             argument=call.parm_data[:1])
        return ProcedureOutcome()

    def _update_last_read(self, call: ProcedureCall) -> ProcedureOutcome:
        """5: PARM_DATA = LIST (UINT8) + ENTRIES_READ (UINT16); RESP_DATA echoes both (YUK)."""
        if len(call.parm_data) != 3:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        selector = call.parm_data[0]
        count = decode_uint(call.parm_data[1:3], self.store.env.ctx)
        targets = self._list_targets(selector)
        if targets is None or len(targets) != 1:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        stop = self._hook("update_last_read", call)
        if stop:
            return stop
        target = targets[0]
        if target == lists.LIST_HISTORY_LOG:
            ok = lists.acknowledge_history(self.store, count)
        else:
            ok = lists.acknowledge_lp(self.store, target - lists.LIST_LP_SET1 + 1, count)
        if not ok:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        lists.append_history(self.store, call.now, EVENT_UPDATED_LIST_POINTERS,
                             argument=call.parm_data[:1])
        return ProcedureOutcome(ProcResult.COMPLETED, call.parm_data)

    def _change_mode(self, call: ProcedureCall) -> ProcedureOutcome:
        """6: PARM_DATA = ED_MODE bits (1 metering, 2 test, 4 meter shop, 8 factory)."""
        if len(call.parm_data) != 1 or not 0 < call.parm_data[0] <= 0x0F or 3 not in self.store:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        stop = self._hook("change_mode", call)
        if stop:
            return stop
        st3: EdModeStatus = self.store.get(3)
        mode = call.parm_data[0]
        self.store.put(3, replace(st3, ed_mode=EdMode(
            metering=bool(mode & 1), test_mode=bool(mode & 2), meter_shop_mode=bool(mode & 4),
            factory=bool(mode & 8))))
        return ProcedureOutcome()

    def _clear_std_status(self, call: ProcedureCall) -> ProcedureOutcome:
        """7: clear ED_STD_STATUS1/2 of Table 3."""
        if call.parm_data or 3 not in self.store:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        stop = self._hook("clear_std_status", call)
        if stop:
            return stop
        st3 = self.store.get(3)
        self.store.put(3, replace(st3, ed_std_status1=EdStdStatus1(), ed_std_status2=0))
        return ProcedureOutcome()

    def _clear_mfg_status(self, call: ProcedureCall) -> ProcedureOutcome:
        """8: clear the latched ED_MFG_STATUS flags (the service-switch state stays)."""
        if call.parm_data or 3 not in self.store:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        stop = self._hook("clear_mfg_status", call)
        if stop:
            return stop
        st3 = self.store.get(3)
        self.store.put(3, replace(st3, ed_mfg_status=st3.ed_mfg_status & _LIVE_MFG_STATUS))
        return ProcedureOutcome()

    def _remote_reset(self, call: ProcedureCall) -> ProcedureOutcome:
        """9: PARM_DATA = action bits (bit 0 demand reset, bit 1 self-read)."""
        if len(call.parm_data) != 1 or call.parm_data[0] & ~(RESET_DEMAND | RESET_SELF_READ):
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        action = call.parm_data[0]
        if action & RESET_DEMAND:
            stop = self._hook("demand_reset", call)
            if stop:
                return stop
            if 23 in self.store:
                st23: RegisterData = self.store.get(23)
                if st23.nbr_demand_resets is not None:
                    resets = (st23.nbr_demand_resets + 1) & 0xFF
                    self.store.put(23, replace(st23, nbr_demand_resets=resets))
            lists.append_history(self.store, call.now, EVENT_DEMAND_RESET)
        if action & RESET_SELF_READ:
            stop = self._hook("self_read", call)
            if stop:
                return stop
            lists.append_history(self.store, call.now, EVENT_SELF_READ)
        return ProcedureOutcome()

    def _set_date_time(self, call: ProcedureCall) -> ProcedureOutcome:
        """10: SET_MASK (BFLD8) + DATE_TIME (LTIME_DATE) + TIME_DATE_QUAL (BFLD8) [UNVERIFIED].

        Updates Tables 52 and 55 and calls hook ``set_time`` (the meter moves its clock).
        """
        env = self.store.env
        ctx = env.ctx
        if ctx.tm_format == TmFormat.NO_CLOCK or 52 not in self.store:
            return ProcedureOutcome(ProcResult.CONFLICT)
        size = 1 + ctx.ltime_size + 1
        if len(call.parm_data) != size:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        mask = call.parm_data[0]
        try:
            given = decode_time_date(call.parm_data[1:-1], ctx, long=True)
        except DecodeError:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        qual = Bits(TimeDateQualBfld).decode_raw(call.parm_data[-1:], Scope(env, {}), "QUAL", 0)
        if mask & ~(SET_TIME | SET_DATE | SET_TIME_DATE_QUAL) or not mask:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        clock = self.store.get(52)
        old = clock.clock_calendar
        assert given is not None  # TM_FORMAT is not 0 here
        new = old
        if mask & SET_DATE:
            new = replace(new, year=given.year, month=given.month, day=given.day)
        if mask & SET_TIME:
            new = replace(new, hour=given.hour, minute=given.minute, second=given.second)
        if not is_valid_time_date(new):
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        new_qual = qual if mask & SET_TIME_DATE_QUAL else clock.time_date_qual
        if new_qual.day_of_week != 7:
            new_qual = replace(new_qual, day_of_week=day_of_week(new))
        stop = self._hook("set_time", replace(call, now=new))
        if stop:
            return stop
        lists.append_history(self.store, old, EVENT_TIME_CHANGED_OLD)
        try:
            self.store.put(52, replace(clock, clock_calendar=new, time_date_qual=new_qual))
            if 55 in self.store:
                st55 = self.store.get(55)
                self.store.put(55, replace(st55, clock_calendar=new, time_date_qual=new_qual))
        except LocalProtocolError:  # e.g. a two-digit year outside 1990-2089
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        lists.append_history(self.store, new, EVENT_TIME_CHANGED_NEW)
        return ProcedureOutcome()

    def _clear_all_pending(self, call: ProcedureCall) -> ProcedureOutcome:
        """14: clear all pending tables (hook ``clear_pending``; the store holds none)."""
        if call.parm_data:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        stop = self._hook("clear_pending", call)
        return stop or ProcedureOutcome()

    def _remote_connect_disconnect(self, call: ProcedureCall) -> ProcedureOutcome:
        """MP0: PARM_DATA 0 = disconnect, 1 = connect; hooks ``remote_disconnect`` /
        ``remote_connect`` drive the relay, then ED_MFG_STATUS bit 0 records the state."""
        if len(call.parm_data) != 1 or call.parm_data[0] > 1:
            return ProcedureOutcome(ProcResult.INVALID_PARAMETER)
        connect = call.parm_data[0] == 1
        stop = self._hook("remote_connect" if connect else "remote_disconnect", call)
        if stop:
            return stop
        if 3 in self.store and self.store.gen_config.dim_mfg_status_used:
            st3 = self.store.get(3)
            status = set(st3.ed_mfg_status)
            (status.discard if connect else status.add)(MFG_STATUS_LOAD_DISCONNECTED)
            self.store.put(3, replace(st3, ed_mfg_status=frozenset(status)))
        return ProcedureOutcome(ProcResult.COMPLETED, bytes([1 if connect else 0]))


def load_disconnected(store: TableStore) -> bool:
    """True when Table 3 says the load is disconnected (ED_MFG_STATUS bit 0)."""
    return 3 in store and MFG_STATUS_LOAD_DISCONNECTED in store.get(3).ed_mfg_status


def table7_request(store: TableStore, number: int, seq_nbr: int, parm_data: bytes = b"", *,
                   mfg: bool = False, selector: int = Selector.POST_ON_COMPLETION) -> bytes:
    """The Table 7 bytes that invoke a procedure (what a head-end writes)."""
    out = bytearray()
    proc = TableIdbBfld(number, mfg, selector)
    Bits(TableIdbBfld).encode(proc, Scope(store.env, {}), out, "PROC")
    return bytes(out) + bytes([seq_nbr]) + parm_data


__all__ = [
    "ProcResult", "StdProc", "MfgProc", "Selector", "ProcedureCall", "ProcedureOutcome",
    "ProcedureHooks", "ProcedureEngine", "HOOK_NAMES", "MFG_STATUS_LOAD_DISCONNECTED",
    "RESET_DEMAND", "RESET_SELF_READ", "SET_TIME", "SET_DATE", "SET_TIME_DATE_QUAL",
    "load_disconnected", "table7_request",
]
