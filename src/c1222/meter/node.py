"""The software meter as a running C12.22 node.

:class:`Meter` ties together the simulated front end (:mod:`c1222.meter.metrology`), the C12.19
tables it keeps current (28 present values, 23 registers, 52 clock, 61-64 load profile, 74
history log), the responder that serves every EPSEM service on TCP and UDP, registration with
the head-end (:mod:`c1222.meter.registration`), the once-a-second feed of the in-home display
(:mod:`c1222.meter.han`) and persistence (:mod:`c1222.meter.state`).

Simulated time: the meter's clock starts at ``start_time`` (or now, or where the saved state
stopped) and runs ``speed`` times faster than the wall clock; every simulated second is
measured, however fast the clock runs, so energy is never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from c1222.codec.ber import Uid
from c1222.crypto.nonces import TimeIvSource
from c1222.crypto.replay import ReplayWindow
from c1222.errors import SecurityError
from c1222.meter import state as persisted
from c1222.meter.config import MeterConfig
from c1222.meter.services import MeterServices
from c1222.session.responder import Responder, ResponderConfig
from c1222.tables import decade2 as d2
from c1222.tables import decade5 as d5
from c1222.tables.decade7 import EVENT_POWER_DOWN, EVENT_POWER_UP
from c1222.tables.lists import append_lp_interval
from c1222.tables.procedures import ProcedureCall, load_disconnected
from c1222.tables.profile import MeterProfile, MeterTables, build_tables
from c1222.tables.store import TableStore
from c1222.tables.types import TimeDate
from c1222.transport.endpoint import Address, Endpoint, EndpointLimits, Link, PcapTracer

log = logging.getLogger("c1222.meter")

#: C12.19 event code for a remote disconnect/connect (control point changed by command).
EVENT_CONTROL_POINT_CHANGED = 49
#: Real seconds between state saves while running (and at every event).
SAVE_INTERVAL = 1.0
#: Simulated seconds measured per scheduler step at most, so serving never starves: about
#: 0.3 s of a free core (1.1 ms a simulated second). A meter that cannot keep up with its
#: --speed (a loaded machine) falls behind its clock instead of leaving requests, registration
#: answers and Ctrl-C unserved for seconds (2,000 a step did, at --speed 600 under load).
MAX_SECONDS_PER_STEP = 250


def utc(t: float) -> TimeDate:
    return TimeDate.from_datetime(dt.datetime.fromtimestamp(int(t), dt.timezone.utc))


@dataclass
class Reading:
    """The latest measurement in engineering units (what the HAN feed and logs show)."""

    time: float
    voltage: float
    current: float
    active_power: float
    apparent_power: float
    reactive_power: float
    power_factor: float
    frequency: float
    wh_delivered: float
    vah: float


class Meter:
    """One simulated meter on the network. ``await start()``, then ``await stop()``."""

    def __init__(self, config: MeterConfig, *, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config.validate()
        self.wall = wall
        self.monotonic = monotonic
        saved = persisted.load(config.state_dir) if config.state_dir is not None else None
        # A meter behind a relay may ask for its title (0D 00) and keep the one assigned.
        assigned = saved.get("assigned_ap_title") if saved and config.request_title else None
        if isinstance(assigned, str) and assigned:
            self.ap_title = Uid.parse(assigned)
        elif config.request_title:
            self.ap_title = Uid((), relative=True)  # "0D 00": asks for a title
        else:
            self.ap_title = Uid.parse(config.ap_title)
        self.reg_delay = int(saved.get("reg_delay", 0)) if saved else 0
        profile = MeterProfile(ap_title=config.ap_title, serial_number=config.serial_number)
        if config.users is not None:
            profile = replace(profile, users=config.users)
        if config.writable_tables is not None:
            profile = replace(profile, writable_tables=frozenset(config.writable_tables))
        self.sim_start = float(saved["sim_time"]) if saved else (
            config.start_time if config.start_time is not None else wall())
        self._clock_second, self._clock_value = int(self.sim_start), utc(self.sim_start)
        self.tables: MeterTables = build_tables(profile, now=utc(self.sim_start))
        self.store: TableStore = self.tables.store
        self.metrology = _MeterMetrology(config)
        # The next simulated second to measure: a fresh meter starts with the second that just
        # ended, so its tables never serve the blank values of a meter that measured nothing.
        self.t = int(self.sim_start) - (0 if saved else 1)
        self._interval = config.load_profile_minutes * 60
        self._interval_start_wh = 0.0
        self.reading: Reading | None = None
        self._dirty = False
        if saved:
            self._restore(saved)
        self.services = MeterServices(self.tables, self.ap_title, clock=self.clock,
                                      on_deregistered=self._deregistered,
                                      on_changed=self._changed)
        self._bind_procedures()
        self.responder = Responder(
            ResponderConfig(ap_title=self.ap_title, keys=config.keys,
                            minimum_mode=config.security_mode,
                            max_request_size=config.max_apdu_size,
                            max_response_size=config.max_apdu_size),
            self.services, TimeIvSource(wall), replay=self._replay_window(),
            debug=lambda m: log.debug("responder: %s", m))
        self.tracer = PcapTracer(str(config.pcap)) if config.pcap is not None else None
        limits = EndpointLimits(max_connections=config.max_connections,
                                max_per_address=config.max_per_address,
                                message_timeout=config.message_timeout,
                                idle_timeout=config.idle_timeout,
                                segment_size=config.segment_size,
                                max_apdu_size=config.max_apdu_size,
                                # an unsegmented APDU up to the reassembly limit still frames
                                max_frame=max(EndpointLimits.max_frame, config.max_apdu_size))
        self.endpoint = Endpoint(self._on_request, limits_=limits, tracer=self.tracer,
                                 on_link_closed=lambda link: self.responder.close(link.id),
                                 on_segment_error=self._segment_error)
        self._real_base = monotonic()
        self._expired_at = float("-inf")  # when the responder last ended idle sessions
        self._tasks: list[asyncio.Task[None]] = []
        self.registration: Any = None
        self.han: Any = None
        self.deregistered: asyncio.Event | None = None  # made in start(), on the loop
        #: Told the title the master relay assigned (the CLI prints it).
        self.on_retitled: Callable[[Uid], None] | None = None

    def _segment_error(self, data: bytes, link: Link, code: int) -> bytes | None:
        """A segment that could not be reassembled: SGERR / RQTL / SGNP in cleartext."""
        return self.responder.refuse(data, code).data

    # ------------------------------------------------------------------ time

    def sim_now(self) -> float:
        return self.sim_start + (self.monotonic() - self._real_base) * self.config.speed

    def clock(self) -> TimeDate:
        # TimeDate has whole seconds: made once per simulated second, not once per request.
        second = int(self.sim_now())
        if second != self._clock_second:
            self._clock_second, self._clock_value = second, utc(second)
        return self._clock_value

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Address:
        """Listen, log power-up, and start measuring, registering and feeding the display."""
        from c1222.meter.han import HanFeed
        from c1222.meter.registration import Registration

        if self.deregistered is None:
            self.deregistered = asyncio.Event()
        address = await self.endpoint.listen(*self.config.listen)
        self.services.log_event(EVENT_POWER_UP)
        self._measure_until(self.sim_now())
        self._save()
        self._tasks.append(asyncio.create_task(self._run_metrology()))
        if self._journal is not None:
            self._tasks.append(asyncio.create_task(self._sync_journal()))
        if self.config.headend is not None or self.config.relay is not None:
            self.registration = Registration(self, address)
            self._tasks.append(asyncio.create_task(self.registration.run()))
        if self.config.ihd is not None:
            self.han = HanFeed(self)
            self._tasks.append(asyncio.create_task(self.han.run()))
        return address

    async def stop(self) -> None:
        """Log power-down, save, and close every association."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._measure_until(self.sim_now())
        self.services.log_event(EVENT_POWER_DOWN)
        self._save()
        await self.endpoint.close()
        if self._journal is not None:
            self._journal.close()
        if self.tracer is not None:
            self.tracer.close()

    def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        # A plain function: the endpoint answers in the read that brought the request.
        self._measure_until(self.sim_now())  # a read sees values as of now
        now = self.wall()
        if now - self._expired_at >= 1.0 or now < self._expired_at:
            # Other associations' sessions: a walk over all of them (up to MAX_SESSIONS), so
            # at most once a second; the requester's own session is checked on every request.
            self._expired_at = now
            self.responder.expire(now)
        reply = self.responder.receive(data, link.id, now)
        if self._dirty:
            self._save()
        self._compact_journal()
        return reply.data, reply.close

    def retitle(self, title: Uid) -> None:
        """Take ``title``, assigned by the master relay (digest 7.2), for every association
        from now on, and keep it in the state directory."""
        if title == self.ap_title:
            return
        log.info("AP title %s assigned", title)
        self.ap_title = title
        if self.on_retitled is not None:
            self.on_retitled(title)
        self.services.ap_title = title
        self.responder.set_ap_title(title)
        if self.registration is not None:
            self.registration.requester.ap_title = title
        if self.han is not None:
            with contextlib.suppress(AttributeError):
                self.han.client.requester.ap_title = title
        self._dirty = True
        self._save()

    def _deregistered(self) -> None:
        if self.deregistered is not None:
            self.deregistered.set()

    def _changed(self) -> None:
        self._dirty = True

    # ------------------------------------------------------------------ measuring

    async def _run_metrology(self) -> None:
        last_save = self.monotonic()
        while True:
            step = min(1.0, max(0.05, 1.0 / self.config.speed))
            await asyncio.sleep(step)
            self._measure_until(self.sim_now())
            if self._dirty or self.monotonic() - last_save >= SAVE_INTERVAL:
                self._save()
                last_save = self.monotonic()

    def _measure_until(self, sim_now: float) -> None:
        end = min(int(sim_now), self.t + MAX_SECONDS_PER_STEP)
        if end <= self.t:
            return
        disconnected = load_disconnected(self.store)
        m = None
        while self.t < end:
            m = self.metrology.measure_second(self.t, disconnected=disconnected)
            self.t += 1
            if self.t % self._interval == 0:
                self._close_interval(m)
        assert m is not None
        regs = self.metrology.registers
        self.reading = Reading(
            time=float(self.t), voltage=m.voltage_rms, current=m.current_rms,
            active_power=m.active_power, apparent_power=m.apparent_power,
            reactive_power=m.reactive_power, power_factor=m.power_factor,
            frequency=m.frequency, wh_delivered=regs.wh_delivered, vah=regs.vah)
        self._update_tables(self.reading)
        self._dirty = True

    def _update_tables(self, r: Reading) -> None:
        store = self.store
        # Units of Table 12 (profile docstring): W, VA, V x10^-2, A x10^-3, PF x10^-3.
        present = (round(r.active_power), round(r.apparent_power), round(r.voltage * 100),
                   round(r.current * 1000), round(r.power_factor * 1000))
        store.put(28, d2.PresentRegisterData((), present))
        current = store.get(23)
        block = replace(current.tot_data_block, summations=(math.floor(r.wh_delivered),))
        store.put(23, replace(current, tot_data_block=block))
        now = utc(r.time)
        for number in (52, 55):  # the clock and the clock state keep the simulated time
            record = store.get(number)
            qual = replace(record.time_date_qual, day_of_week=d5.day_of_week(now))
            store.put(number, replace(record, clock_calendar=now, time_date_qual=qual))

    def _close_interval(self, m: Any) -> None:
        wh = self.metrology.registers.wh_delivered
        delta = max(0, round(wh - self._interval_start_wh))
        self._interval_start_wh = wh
        try:
            append_lp_interval(self.store, 1, utc(self.t), (delta, round(m.voltage_rms * 100)),
                               end_readings=None)
        except Exception:  # noqa: BLE001 - a full or odd LP set must not stop metering
            log.exception("load-profile interval not recorded")

    # ------------------------------------------------------------------ procedures

    def _bind_procedures(self) -> None:
        hooks = self.tables.hooks

        def disconnect(call: ProcedureCall, store: TableStore) -> None:
            self._measure_until(self.sim_now())  # energy up to now counts as connected
            self.services.log_event(EVENT_CONTROL_POINT_CHANGED, argument=b"")

        def set_time(call: ProcedureCall, store: TableStore) -> None:
            when = call.now.to_datetime() if call.now is not None else None
            if when is not None:
                self._measure_until(self.sim_now())
                self.sim_start = when.replace(tzinfo=dt.timezone.utc).timestamp()
                self._real_base = self.monotonic()
                self.t = int(self.sim_start)

        def clear_data(call: ProcedureCall, store: TableStore) -> None:
            self.metrology.reset_registers()
            self._interval_start_wh = 0.0

        hooks.register("remote_disconnect", disconnect)
        hooks.register("remote_connect", disconnect)
        hooks.register("set_time", set_time)
        hooks.register("clear_data", clear_data)

    # ------------------------------------------------------------------ persistence

    def _replay_window(self) -> ReplayWindow:
        """The replay window, taken back from the journal of the previous run (if any), so a
        request served before a restart or a kill -9 is refused after it (SME)."""
        config = self.config
        timed = config.replay_protection == "time"
        self._journal: persisted.ReplayJournal | None = None
        if config.state_dir is None:
            return ReplayWindow(iv_tolerance=config.iv_tolerance if timed else None)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        journal = persisted.ReplayJournal(config.state_dir)
        window = ReplayWindow(iv_tolerance=config.iv_tolerance if timed else None,
                              record=self._record_served)
        floor, now_high, entries = journal.load()
        # The floor and latest `now` come back too, so a clock set back after a restart
        # does not make what the last run refused acceptable again.
        window.restore(floor, now_high, entries)
        journal.rewrite(window)  # drops what is expired, and any torn last line
        self._journal = journal
        return window

    def _record_served(self, message: Any, now: float) -> None:
        # Called by the replay window before a secured request is served: on disk first.
        assert self._journal is not None
        try:
            self._journal.append(message, now)
        except OSError as exc:
            log.error("replay journal %s: %s; secured requests are refused (SME) until "
                      "it can be written", self._journal.path, exc.strerror)
            raise SecurityError() from None

    async def _sync_journal(self) -> None:
        # Requests are journaled (write) before they are served; the disk flush is batched
        # here, at most SYNC_INTERVAL after them, off each request's path.
        journal = self._journal
        assert journal is not None
        while True:
            await asyncio.sleep(persisted.SYNC_INTERVAL)
            try:
                journal.sync()
            except OSError as exc:
                log.error("replay journal %s not flushed: %s", journal.path, exc.strerror)

    def _compact_journal(self) -> None:
        journal = self._journal
        if journal is not None and journal.compaction_due(self.responder.replay):
            try:
                journal.rewrite(self.responder.replay)
            except OSError as exc:  # the append-only file stays valid; try again later
                log.error("replay journal %s not compacted: %s", journal.path, exc.strerror)

    def _save(self) -> None:
        self._dirty = False
        if self.config.state_dir is None:
            return
        persisted.save(self.config.state_dir, {
            "sim_time": self.t,
            "registers": self.metrology.registers.to_dict(),
            "interval_start_wh": self._interval_start_wh,
            **({"assigned_ap_title": str(self.ap_title), "reg_delay": self.reg_delay}
               if self.config.relay is not None and self.ap_title.arcs else {}),
            "tables": {str(n): self.store.get_bytes(n).hex()
                       for n in persisted.PERSISTED_TABLES if n in self.store},
        })

    def _restore(self, saved: dict[str, Any]) -> None:
        from c1222.errors import C1222Error, ConfigurationError

        try:
            self.metrology.restore_registers(saved["registers"])
            self._interval_start_wh = float(saved.get("interval_start_wh", 0.0))
            for number, hexdata in saved.get("tables", {}).items():
                if int(number) in self.store:
                    self.store.put_bytes(int(number), bytes.fromhex(hexdata))
        except (KeyError, ValueError, TypeError, C1222Error) as exc:
            raise ConfigurationError(f"state in {self.config.state_dir} does not fit this "
                                     f"meter: {exc}") from None


class _Switched:
    """The load behind the meter's disconnect relay: no current while it is open."""

    def __init__(self, load: Any) -> None:
        self.load = load
        self.open = False

    def phasors(self, t: int, supply: Any) -> Any:
        import numpy as np

        from c1222.meter.loads import ORDERS

        if self.open:
            return np.zeros(len(ORDERS), dtype=complex)
        return self.load.phasors(t, supply)


class _MeterMetrology:
    """The front end of one meter with its relay, in the shape :class:`Meter` uses."""

    def __init__(self, config: MeterConfig) -> None:
        from c1222.meter.loads import load_from_config
        from c1222.meter.metrology import FrontEnd, Metrology

        self.relay = _Switched(load_from_config(config.load))
        seed = int(config.load.get("seed", 0)) if isinstance(config.load, dict) else 0
        self.metrology = Metrology(self.relay, FrontEnd.named(config.front_end), seed=seed)

    def measure_second(self, t: int, *, disconnected: bool = False) -> Any:
        self.relay.open = disconnected
        return self.metrology.measure_second(t)

    @property
    def registers(self) -> Any:
        return self.metrology.registers

    def reset_registers(self) -> None:
        from c1222.meter.metrology import EnergyRegisters

        self.metrology.registers = EnergyRegisters()

    def restore_registers(self, data: dict[str, Any]) -> None:
        from c1222.meter.metrology import EnergyRegisters

        self.metrology.registers = EnergyRegisters.from_dict(data)
