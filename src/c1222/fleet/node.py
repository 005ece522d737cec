"""One fleet worker: many simulated meters in one process, on one shared C12.22 port.

Every meter has its own AP title, serial number, key table, household, table store, responder
and registration; they share one :class:`~c1222.transport.endpoint.Endpoint` (TCP and UDP on
one port, as Gurux's DLMS simulator serves 10,000 meters on one port). A request is routed by
its called AP title (A2): each meter's native address is the same ``host:port``. A request for
a title the worker does not hold is answered UAT (in cleartext), as a single meter answers a
request for another node's title; a request without A2 on a meter's own registration link goes
to that meter.

Registration (digest 7.2) is only wire messages, so any C12.22 head-end or relay will do: each
meter opens its own connection to ``headend`` (TCP) or uses the shared UDP socket, sends
Register, and keeps the connection open so the head-end can read it there. Meters start over
a ramp (meter ``i`` of ``N`` at ``ramp * i / N`` seconds) with at most ``max_in_flight``
registrations outstanding; a failure is retried with exponential back-off (1 s doubling to
60 s, with jitter); a registration is renewed before its period runs out, when its
connection closes and after a Deregister. One scheduler (a heap of due times) drives all of
this, not one task per meter, so memory per meter stays small.

A meter's table store is built when it is first asked for something (a clone of the worker's
template store: a fleet meter that is never read costs a few hundred bytes). Its present
values, registers, clock and load profile are brought up to date from the vectorised
:class:`~c1222.fleet.households.HouseholdBank` when it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.native import encode_native_address
from c1222.codec.services import FullWriteRequest, RegisterRequest, RegisterResponse
from c1222.codes import NodeType, ResponseCode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import TimeIvSource
from c1222.crypto.replay import ReplayWindow
from c1222.errors import ERR, SERVICE_ERRORS, UAT, C1222Error, DecodeError
from c1222.fleet.households import HouseholdBank
from c1222.fleet.keys import meter_keys
from c1222.meter.registration import CONNECTION_TYPE, serial_number_uid
from c1222.meter.services import MeterServices
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig
from c1222.tables import decade2 as d2
from c1222.tables import decade5 as d5
from c1222.tables.lists import append_lp_interval
from c1222.tables.procedures import ProcedureEngine, ProcedureHooks, load_disconnected
from c1222.tables.profile import MeterProfile, MeterTables, build_tables
from c1222.tables.store import TableStore
from c1222.tables.types import TimeDate
from c1222.transport.client import Client, responses
from c1222.transport.endpoint import Address, Endpoint, EndpointLimits, Link

log = logging.getLogger("c1222.fleet")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
RESPONSE_TIMEOUT = 10.0
#: Seconds a registration must hold before the back-off starts again from BACKOFF_FIRST.
HELD = 60.0
#: Meter-seconds measured per metrology step at most (about 0.1 s of one core), so serving
#: never starves behind a fast --speed; a worker that cannot keep up lets its clock lag.
MAX_METER_SECONDS_PER_STEP = 200_000
#: Load-profile intervals kept for meters that have not been read since (older ones are lost).
LP_BACKLOG = 96
#: The fleet's load profile: 2 blocks of 96 15-minute intervals (two days), a short history
#: log: a meter's tables are 4 KiB instead of the single meter's 40 KiB.
FLEET_PROFILE = dict(lp_nbr_blks=2, lp_nbr_blk_ints=96, nbr_history_entries=20)


def utc(t: float) -> TimeDate:
    return TimeDate.from_datetime(dt.datetime.fromtimestamp(int(t), dt.timezone.utc))


@dataclass
class WorkerConfig:
    """What one worker runs: meters ``first`` .. ``first + count - 1`` of the fleet."""

    first: int
    count: int
    listen: Address = ("127.0.0.1", 0)
    headend: Address | None = None
    relay: Address | None = None
    headend_ap_title: str = "2.16.124.113620.1.22.0.123.4"
    transport: str = "tcp"
    seed: int = 1
    security_mode: int = 0
    keys: tuple[str, ...] = ()
    key_id: int | None = None
    master_key: tuple[int, bytes] | None = None
    ramp: float = 0.0
    total: int = 0  # meters of the whole fleet (for the ramp); 0: count
    speed: float = 1.0
    start_time: float | None = None
    title_base: str = "2.16.124.113620.1.22.0.123"
    serial_base: int = 100000
    registration_period: int = 3600
    max_in_flight: int = 200
    utc_offset: int = 32400
    load_profile_minutes: int = 15

    def title(self, index: int) -> str:
        return f"{self.title_base}.{self.serial_base + index}"

    def serial(self, index: int) -> str:
        return f"{self.serial_base + index:08d}"


@dataclass
class FleetStats:
    """What a worker counts (summed over workers for the summary)."""

    registered: int = 0           # meters registered now
    registrations_ok: int = 0
    registrations_failed: int = 0
    requests: Counter[str] = field(default_factory=Counter)     # by service
    errors: Counter[str] = field(default_factory=Counter)       # response codes other than OK
    unknown_title: int = 0
    undecodable: int = 0
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"registered": self.registered, "registrations_ok": self.registrations_ok,
                "registrations_failed": self.registrations_failed,
                "requests": dict(self.requests), "errors": dict(self.errors),
                "unknown_title": self.unknown_title, "undecodable": self.undecodable,
                "last_error": self.last_error}


class _Node:
    """A meter's table store and responder, built on first use."""

    __slots__ = ("tables", "services", "responder", "synced", "lp_synced")

    def __init__(self, tables: MeterTables, services: MeterServices,
                 responder: Responder) -> None:
        self.tables = tables
        self.services = services
        self.responder = responder
        self.synced = -1       # bank second the tables show
        self.lp_synced = -1    # end time of the last load-profile interval recorded


class FleetMeter:
    """One meter of the fleet: identity, registration state, and its node once built."""

    __slots__ = ("index", "row", "title", "serial", "client", "node", "registered",
                 "backoff", "failures", "due", "busy", "since")

    def __init__(self, index: int, row: int, title: Uid, serial: str) -> None:
        self.index = index
        self.row = row
        self.title = title
        self.serial = serial
        self.client: Client | None = None
        self.node: _Node | None = None
        self.registered = False
        self.backoff = BACKOFF_FIRST
        self.failures = 0
        self.due = math.inf
        self.busy = False
        self.since = 0.0  # when the registration in force was made (monotonic)


class _Refuser:
    """The handler behind the UAT answer for titles the worker does not hold."""

    def handle(self, request: Any, ctx: Any) -> Any:
        raise UAT("no meter with this AP title here")

    def authenticate(self, user_id: int, password: bytes) -> Any:
        raise UAT("no meter with this AP title here")

    def notice(self, event: str, ctx: Any, detail: str = "") -> None:
        pass


class FleetWorker:
    """The meters of one worker. ``await start()``, then ``await stop()``."""

    def __init__(self, config: WorkerConfig, *, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.wall = wall
        self.monotonic = monotonic
        self.stats = FleetStats()
        self.keys = KeyTable.from_cli(config.keys)
        self.nonces = TimeIvSource(wall)
        self.rng = random.Random(config.seed * 1_000_003 + config.first)
        self.meters = [FleetMeter(config.first + row, row, Uid.parse(config.title(config.first
                                                                                   + row)),
                                  config.serial(config.first + row))
                       for row in range(config.count)]
        self.by_title: dict[Uid, FleetMeter] = {m.title.absolute(): m for m in self.meters}
        self.by_link: dict[int, FleetMeter] = {}   # registration link id -> meter
        self._link_users: dict[int, set[int]] = {}  # open link id -> rows of meters it read
        self.bank = HouseholdBank(config.seed, config.first, config.count,
                                  utc_offset=config.utc_offset)
        self.sim_start = config.start_time if config.start_time is not None else wall()
        self.t = int(self.sim_start) - 1
        self._interval = config.load_profile_minutes * 60
        self._interval_wh = self.bank.wh_delivered()
        self._lp: deque[tuple[int, np.ndarray, np.ndarray]] = deque(maxlen=LP_BACKLOG)
        self._last: Any = None
        profile = MeterProfile(ap_title=config.title(config.first),
                               serial_number=config.serial(config.first), **FLEET_PROFILE)
        self.template = build_tables(profile, now=utc(self.sim_start))
        self._template_bytes = {n: self.template.store.get_bytes(n)
                                for n in self.template.store.numbers()}
        limits = EndpointLimits(max_connections=config.count + 1024,
                                max_per_address=config.count + 1024)
        self.endpoint = Endpoint(self._on_request, limits_=limits,
                                 on_link_closed=self._link_closed)
        # answers UAT for titles not held here; its own title is one no meter is given
        self.refuser = Responder(ResponderConfig(ap_title=Uid.parse(
            f"{config.title_base}.{(1 << 35) - 1}")), _Refuser(), self.nonces)
        self.address: Address | None = None
        self.headend_title = Uid.parse(config.headend_ap_title)
        self.master_title: Uid | None = None  # through a relay: from its Register response
        self._real_base = monotonic()
        self._heap: list[tuple[float, int]] = []
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False

    # ------------------------------------------------------------------ time

    def sim_now(self) -> float:
        return self.sim_start + (self.monotonic() - self._real_base) * self.config.speed

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Address:
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.config.max_in_flight)
        self.address = await self.endpoint.listen(*self.config.listen)
        self._measure_until(self.sim_now())
        self._tasks.append(asyncio.create_task(self._run_metrology()))
        if self.target is not None:
            now = self.monotonic()
            total = self.config.total or self.config.count
            for m in self.meters:
                self._schedule(m, now + self.config.ramp * m.index / total)
            self._tasks.append(asyncio.create_task(self._scheduler()))
        return self.address

    @property
    def target(self) -> Address | None:
        return self.config.relay or self.config.headend

    async def stop(self) -> None:
        self._stopping = True
        for task in [*self._tasks, *self._inflight]:
            task.cancel()
        for task in [*self._tasks, *self._inflight]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.endpoint.close()

    # ------------------------------------------------------------------ metrology

    async def _run_metrology(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(0.05, 1.0 / self.config.speed)))
            self._measure_until(self.sim_now())

    def _measure_until(self, sim_now: float) -> None:
        end = min(int(sim_now), self.t + max(1, MAX_METER_SECONDS_PER_STEP // self.bank.n))
        while self.t < end:
            self._last = self.bank.measure_second(self.t)
            self.t += 1
            if self.t % self._interval == 0:
                wh = self.bank.wh_delivered()
                delta = np.maximum(0, np.round(wh - self._interval_wh)).astype(np.int64)
                self._interval_wh = wh
                volts = round(self._last.voltage_rms * 100)
                self._lp.append((self.t, delta, np.full(len(delta), volts, dtype=np.int64)))

    # ------------------------------------------------------------------ serving

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        try:
            called = acse.called_ap_title(data)
        except DecodeError:
            self.stats.undecodable += 1
            return None, False
        meter = (self.by_title.get(called.absolute()) if called is not None
                 else self.by_link.get(link.id))
        if meter is None:
            self.stats.unknown_title += 1
            reply = self.refuser.receive(data, link.id, self.wall())
            self.stats.errors["UAT"] += reply.data is not None
            return reply.data, False
        node = meter.node or self._build(meter)
        self._link_users.setdefault(link.id, set()).add(meter.row)
        self._measure_until(self.sim_now())
        self._refresh(meter, node)
        node.responder.expire(self.wall())
        reply = node.responder.receive(data, link.id, self.wall())
        self._count(reply)
        if reply.request is not None and any(isinstance(s, FullWriteRequest) and s.table_id == 7
                                             for s in reply.request.epsem.services):
            self.bank.disconnected[meter.row] = load_disconnected(node.tables.store)
        return reply.data, reply.close

    def _count(self, reply: Any) -> None:
        if reply.request is not None:
            for service in reply.request.epsem.services:
                self.stats.requests[service.service] += 1
        if reply.response is not None:
            for service in reply.response.epsem.services:
                code = getattr(service, "response_code", ResponseCode.OK)
                if code != ResponseCode.OK:
                    self.stats.errors[ResponseCode(code).name] += 1

    def _build(self, meter: FleetMeter) -> _Node:
        """The meter's tables (a clone of the template with its identity) and responder."""
        cfg = self.config
        store = TableStore(self._template_bytes, policy=self.template.store.policy)
        title = str(meter.title)
        serial = meter.serial
        store.put(1, replace(store.get(1), mfg_serial_number=serial))
        store.put(5, replace(store.get(5), identification=serial))
        rec6 = store.get(6)
        store.put(6, replace(rec6, device_id=serial, util_ser_no=serial,
                             misc_id=_short_title(title)))
        hooks = ProcedureHooks()
        profile = replace(self.template.profile, ap_title=title, serial_number=serial)
        tables = MeterTables(store, ProcedureEngine(store, hooks), hooks, profile)
        hooks.register("clear_data", lambda call, s, row=meter.row: self.bank.reset(row))
        services = MeterServices(tables, meter.title, clock=lambda: utc(self.sim_now()),
                                 on_deregistered=lambda m=meter: self._deregistered(m))
        responder = Responder(
            ResponderConfig(ap_title=meter.title,
                            keys=meter_keys(self.keys, cfg.master_key, meter.title),
                            minimum_mode=cfg.security_mode),
            services, self.nonces, replay=ReplayWindow(iv_tolerance=900.0))
        node = _Node(tables, services, responder)
        node.lp_synced = self._lp[-1][0] if self._lp else -1
        meter.node = node
        return node

    def _refresh(self, meter: FleetMeter, node: _Node) -> None:
        """Bring the meter's Tables 28, 23, 52, 55 and its load profile up to the bank."""
        if node.synced == self.t or self._last is None:
            return
        store, row, last = node.tables.store, meter.row, self._last
        present = (round(float(last.active_power[row])), round(float(last.apparent_power[row])),
                   round(last.voltage_rms * 100), round(float(last.current_rms[row]) * 1000),
                   round(float(last.power_factor[row]) * 1000))
        store.put(28, d2.PresentRegisterData((), present))
        current = store.get(23)
        wh = math.floor((self.bank._mj[row, 0] + self.bank._rest[row, 0]) / 3_600_000)
        store.put(23, replace(current, tot_data_block=replace(current.tot_data_block,
                                                              summations=(wh,))))
        now = utc(self.t)
        for number in (52, 55):
            record = store.get(number)
            qual = replace(record.time_date_qual, day_of_week=d5.day_of_week(now))
            store.put(number, replace(record, clock_calendar=now, time_date_qual=qual))
        for end, delta, volts in self._lp:
            if end > node.lp_synced:
                with contextlib.suppress(Exception):  # a full or odd LP set must not stop it
                    append_lp_interval(store, 1, utc(end), (int(delta[row]), int(volts[row])),
                                       end_readings=None)
                node.lp_synced = end
        node.synced = self.t

    def _link_closed(self, link: Link) -> None:
        meter = self.by_link.pop(link.id, None)
        for row in self._link_users.pop(link.id, ()):  # its sessions end with it
            node = self.meters[row].node
            if node is not None:
                node.responder.close(link.id)
        if meter is not None and meter.registered and not self._stopping:
            meter.registered = False
            self.stats.registered -= 1
            # A head-end that keeps closing fresh connections gets the back-off, not a
            # registration a second from every meter; one held a while is renewed at once.
            now = self.monotonic()
            if now - meter.since < HELD:
                wait = meter.backoff * (0.5 + self.rng.random())
                meter.backoff = min(BACKOFF_MAX, meter.backoff * 2)
            else:
                meter.backoff = BACKOFF_FIRST
                wait = self.rng.random()
            self._schedule(meter, now + wait)

    def _deregistered(self, meter: FleetMeter) -> None:
        if meter.registered:
            meter.registered = False
            self.stats.registered -= 1
        self._schedule(meter, self.monotonic())

    # ------------------------------------------------------------------ registration

    def _schedule(self, meter: FleetMeter, when: float) -> None:
        meter.due = when
        heapq.heappush(self._heap, (when, meter.row))
        if self._wake is not None:
            self._wake.set()

    async def _scheduler(self) -> None:
        assert self._wake is not None and self._slots is not None
        while True:
            now = self.monotonic()
            while self._heap and self._heap[0][0] <= now:
                when, row = heapq.heappop(self._heap)
                meter = self.meters[row]
                if meter.due != when or meter.busy:
                    continue  # superseded by a later schedule
                await self._slots.acquire()
                meter.busy = True
                task = asyncio.create_task(self._register(meter))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                now = self.monotonic()
            wait = self._heap[0][0] - now if self._heap else 3600.0
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(wait, 1.0)))

    def _requester(self, meter: FleetMeter) -> Requester:
        cfg = self.config
        # through a relay: no calling title until the relay assigns one (_assign sets it)
        return Requester(None if cfg.relay is not None else meter.title, self.nonces,
                         keys=meter_keys(self.keys, cfg.master_key, meter.title),
                         security_mode=cfg.security_mode, key_id=cfg.key_id)

    def register_request(self, meter: FleetMeter) -> RegisterRequest:
        host, port = self.address or self.config.listen
        # Through a relay a node registers with an empty title and is assigned one.
        title = Uid((), relative=True) if self.config.relay is not None else meter.title
        return RegisterRequest(
            node_type=NodeType.END_DEVICE, connection_type=CONNECTION_TYPE,
            device_class=b"SIMU", ap_title=title,
            serial_number=serial_number_uid(meter.serial),
            native_address=encode_native_address(host, port),  # binary, as every node sends
            registration_period=self.config.registration_period)

    async def _register(self, meter: FleetMeter) -> None:
        assert self._slots is not None
        cfg = self.config
        try:
            response = await self._register_once(meter)
        except (C1222Error, OSError) as exc:
            meter.failures += 1
            meter.since = -math.inf
            self.stats.registrations_failed += 1
            self.stats.last_error = f"{meter.title}: {exc}"[:300]
            wait = meter.backoff * (0.5 + self.rng.random())
            meter.backoff = min(BACKOFF_MAX, meter.backoff * 2)
            log.info("registration of %s failed: %s; retrying in %.1f s", meter.title, exc,
                     wait)
            self._schedule(meter, self.monotonic() + wait)
            return
        finally:
            meter.busy = False
            self._slots.release()
        if cfg.relay is not None and response.reg_ap_title.arcs:
            self._assign(meter, response.reg_ap_title)
        meter.failures = 0
        meter.since = self.monotonic()
        if meter.registered:  # a renewal: the registration held its period
            meter.backoff = BACKOFF_FIRST
        if not meter.registered:
            meter.registered = True
            self.stats.registered += 1
        self.stats.registrations_ok += 1
        period = response.reg_period or cfg.registration_period
        margin = 300 if period > 1500 else period / 5
        self._schedule(meter, self.monotonic() + (period - margin) / cfg.speed)

    async def _register_once(self, meter: FleetMeter) -> RegisterResponse:
        cfg = self.config
        host, port = self.target  # type: ignore[misc]
        if meter.client is None:
            meter.client = Client(self._requester(meter), self.endpoint, clock=self.wall)
        client = meter.client
        link = client.link
        if link is None or link.closed:
            link = await client.connect(host, port, cfg.transport, timeout=RESPONSE_TIMEOUT)
            if link.transport == "tcp":  # over UDP every meter shares the one peer's link
                self.by_link[link.id] = meter
        # Through a relay: the master relay's title once a response named it; before that
        # no called title, and the relay forwards the Register upstream (docs/network.md).
        called = self.master_title if cfg.relay is not None else self.headend_title
        apdu = await client.call([self.register_request(meter)], called=called,
                                 timeout=RESPONSE_TIMEOUT)
        found = responses(apdu)
        if not found or not isinstance(found[0], RegisterResponse):
            code = found[0].response_code if found else ResponseCode.ERR
            error = SERVICE_ERRORS.get(code, ERR)
            raise error(f"registration refused: {error.code.name} ({error.__doc__})")
        if cfg.relay is not None and apdu.calling_ap_title is not None:
            self.master_title = apdu.calling_ap_title
        return found[0]

    def _assign(self, meter: FleetMeter, title: Uid) -> None:
        """A relay assigned ``title``: the meter answers to it from now on (and keeps it)."""
        if title.absolute() == meter.title.absolute():
            return
        self.by_title.pop(meter.title.absolute(), None)
        meter.title = title
        self.by_title[title.absolute()] = meter
        meter.node = None  # rebuilt with the new title on the next request
        if meter.client is not None:
            meter.client.requester.ap_title = title


def _short_title(title: str) -> str:
    base = "2.16.124.113620.1.22.0."
    return "." + title[len(base):] if title.startswith(base) else title
