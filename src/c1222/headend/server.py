"""The metering server (head-end): a C12.22 host node with its registry, commands, collector,
storage and message log.

* Meters register over TCP or UDP (:class:`~c1222.headend.registry.RegistrarServices`); each
  registration is written to storage and announced to subscribers (the web console).
* :meth:`HeadEnd.call` sends any services to a registered node, over the connection the node
  opened when it registered if that is still up, else to its native address. Every message in
  and out is logged (bytes, a one-line summary and its canonical JSON).
* The collector reads each registered meter every ``collect_interval`` seconds: present values
  and registers (Tables 28, 23, 52), and, every ``log_interval``, new load-profile intervals and
  history-log events (Tables 64 and 74). A meter that is slow or silent only delays itself:
  each read runs in its own task with a time-out, at most ``max_parallel`` at once.
* :meth:`HeadEnd.run_service` is what the console's buttons call: one EPSEM service by name.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from c1222.codec import text
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.services import (
    DeregisterRequest,
    DisconnectRequest,
    ErrorResponse,
    FullReadRequest,
    FullWriteRequest,
    IdentifyRequest,
    LogoffRequest,
    LogonRequest,
    PartialReadOffsetRequest,
    PartialWriteOffsetRequest,
    ReadResponse,
    Request,
    ResolveRequest,
    Response,
    SecurityRequest,
    TableData,
    TerminateRequest,
    TraceRequest,
    WaitRequest,
)
from c1222.codes import ResponseCode, SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import TimeIvSource
from c1222.errors import C1222Error, ConfigurationError, TransportError
from c1222.headend.registry import Node, RegistrarServices
from c1222.headend.storage import (
    AsyncStorage,
    MessageRecord,
    NodeRecord,
    Reading,
    Retention,
    canonical_json,
    event_reading,
    interval_readings,
    open_async_storage,
    retention_loop,
)
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig
from c1222.tables.access import pad_password
from c1222.tables.procedures import table7_request
from c1222.tables.readings import (
    CONTEXT_TABLES,
    LOG_CONTEXT_TABLES,
    history_entries,
    lp_intervals,
    decoded,
    meter_time,
    meter_values,
)
from c1222.tables.registry import make_env, table_size
from c1222.tables.store import TableStore
from c1222.transport.endpoint import Address, Endpoint, Link, PcapTracer, parse_address

log = logging.getLogger("c1222.headend")

HEADEND_AP_TITLE = "2.16.124.113620.1.22.0.123.4"
#: The present values the collector stores, by their names in :func:`meter_values`.
PRESENT = ("voltage", "current", "active_power", "apparent_power", "power_factor")
#: Every EPSEM service the console offers by name (the parameters each takes in docs/headend.md).
#: Seconds the message log gathers messages before writing them in one transaction.
LOG_BATCH_DELAY = 0.1
MAX_LOG_QUEUE = 100_000
#: Bytes per partial read of a large table (well under the 0x7FFF default APDU size).
CHUNK = 16 * 1024
#: Tables that change by themselves: read every time (the others are cached per node).
LIVE_TABLES = frozenset({23, 28, 52, 63, 64, 74})
SERVICES = ("identify", "read", "write", "logon", "security", "logoff", "wait", "terminate",
            "disconnect", "deregister", "resolve", "trace", "procedure")


@dataclass
class HeadEndConfig:
    listen: Address = ("127.0.0.1", 1153)
    db: str = "sqlite:///headend.db"
    ap_title: str = HEADEND_AP_TITLE
    keys: KeyTable = field(default_factory=KeyTable)
    security_mode: int = SecurityMode.CLEARTEXT
    key_id: int | None = None
    user_id: int = 2
    password: str = "PASSWORD"
    reg_period: int = 3600
    collect_interval: float = 5.0
    log_interval: float = 60.0  # 0: never read load profile and event log
    timeout: float = 10.0
    max_parallel: int = 64
    pcap: str | None = None
    # What peers can make the head-end keep (docs/storage.md, "Retention", "Registration limits").
    retention: Retention = field(default_factory=Retention)
    max_nodes: int = 100_000
    max_registrations_per_address: int = 64


@dataclass
class Exchange:
    """One request/response pair (the web API renders it: ``web.exchange_json``)."""

    request: Apdu
    request_bytes: bytes
    response: Apdu | None
    response_bytes: bytes | None
    error: str | None = None


class HeadEnd:
    """``await start()`` (returns the address), ``await stop()``."""

    def __init__(self, config: HeadEndConfig) -> None:
        self.config = config
        if config.security_mode and config.key_id is None:
            if not len(config.keys):
                raise ConfigurationError("security mode: a secured head-end needs a key")
            config.key_id = sorted(config.keys)[0]
        self.ap_title = Uid.parse(config.ap_title)
        self.registrar = RegistrarServices(self.ap_title, reg_period=config.reg_period,
                                           on_registered=self._registered,
                                           on_deregistered=self._deregistered,
                                           max_nodes=config.max_nodes,
                                           max_per_source=config.max_registrations_per_address,
                                           source_of=self._source_host,
                                           protect_titles=bool(config.security_mode))
        nonces = TimeIvSource(time.time)
        self.responder = Responder(
            ResponderConfig(ap_title=self.ap_title, keys=config.keys,
                            minimum_mode=config.security_mode), self.registrar, nonces)
        self.requester = Requester(self.ap_title, nonces, keys=config.keys,
                                   security_mode=config.security_mode, key_id=config.key_id)
        self.tracer = PcapTracer(config.pcap) if config.pcap else None
        self.endpoint = Endpoint(self._on_request, tracer=self.tracer,
                                 on_link_closed=lambda link: self.responder.close(link.id))
        self.storage: AsyncStorage | None = None
        self.address: Address | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._context: dict[str, dict[int, bytes]] = {}
        self._collecting: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_writes: set[asyncio.Task[Any]] = set()
        self._limit = asyncio.Semaphore(config.max_parallel)
        self.stats = {"reads": 0, "read_failures": 0, "stored": 0}
        self._log_queue: list[MessageRecord] = []
        self._log_wanted = asyncio.Event()
        #: Seconds from request sent to response received, of the latest exchanges.
        self.latencies: collections.deque[float] = collections.deque(maxlen=100_000)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Address:
        self.storage = await open_async_storage(self.config.db)
        for node in await self.storage.list_nodes("registered"):
            self.registrar.nodes[node.ap_title] = _node_from_record(node)
        self.address = await self.endpoint.listen(*self.config.listen)
        self._tasks.append(asyncio.create_task(self._collector()))
        self._tasks.append(asyncio.create_task(self._log_writer()))
        self._tasks.append(asyncio.create_task(
            retention_loop(self.storage, self.config.retention, self._forget_nodes)))
        return self.address

    async def stop(self) -> None:
        for task in [*self._tasks, *self._collecting.values()]:
            task.cancel()
        for task in [*self._tasks, *self._collecting.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pending_writes:
            await asyncio.gather(*self._pending_writes, return_exceptions=True)
        await self._flush_log()
        await self.endpoint.close()
        if self.tracer is not None:
            self.tracer.close()
        if self.storage is not None:
            await self.storage.aclose()

    # ------------------------------------------------------------------ events

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue of live events for the console (bounded: a slow reader loses events)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(256)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def _publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    def _spawn_write(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._pending_writes.add(task)
        task.add_done_callback(self._pending_writes.discard)

    # ------------------------------------------------------------------ inbound

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        reply = self.responder.receive(data, link.id, time.time())
        self._log("in", link, data, reply.request)
        if reply.data is not None:
            self._log("out", link, reply.data, reply.response)
        return reply.data, reply.close

    def _registered(self, node: Node) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        record = NodeRecord(
            ap_title=node.ap_title, native_address=node.address, node_type=node.node_type,
            connection_type=node.connection_type, device_class=node.device_class.hex(),
            serial_number=node.serial_number, registration_period=node.registration_period,
            registered_at=now, last_seen=now, state="registered")
        assert self.storage is not None
        self._spawn_write(self.storage.upsert_node(record))
        self._publish({"type": "registered", "node": node_json(node)})

    def _source_host(self, link_id: Any) -> str | None:
        link = self.endpoint.find_link(link_id)
        return str(link.peer[0]) if link is not None else None

    def _forget_nodes(self, ap_titles: list[str]) -> None:
        """Retention removed these nodes from storage: the registry lets go of them too,
        unless one registered again while the pass ran."""
        expired_before = time.time() - (self.config.retention.node_age or 0.0)
        for node in self.registrar.forget(ap_titles, expired_before):
            self._context.pop(node.ap_title, None)
            self._publish({"type": "deregistered", "ap_title": node.ap_title})

    def _deregistered(self, node: Node) -> None:
        assert self.storage is not None
        self._spawn_write(self.storage.deregister(node.ap_title,
                                                  dt.datetime.now(dt.timezone.utc)))
        self._context.pop(node.ap_title, None)
        self._publish({"type": "deregistered", "ap_title": node.ap_title})

    def _log(self, direction: str, link: Link, data: bytes, apdu: Apdu | None,
                   ap_title: str | None = None) -> None:
        if self.storage is None:
            return
        if ap_title is None and apdu is not None:
            other = apdu.calling_ap_title if direction == "in" else apdu.called_ap_title
            ap_title = str(other.absolute()) if other is not None else None
        record = MessageRecord(
            time=dt.datetime.now(dt.timezone.utc), direction=direction, peer=link.name,
            transport=link.transport, raw=data, summary=summary(apdu) if apdu else "undecoded",
            ap_title=ap_title, json=canonical_json(text.to_json(apdu)) if apdu is not None
            else None)
        if len(self._log_queue) >= MAX_LOG_QUEUE:  # storage stalled: keep the newest traffic
            del self._log_queue[: MAX_LOG_QUEUE // 10]
            self.stats["log_dropped"] = self.stats.get("log_dropped", 0) + MAX_LOG_QUEUE // 10
        self._log_queue.append(record)
        self._log_wanted.set()

    async def _log_writer(self) -> None:
        """Writes the message log in batches: one transaction per LOG_BATCH_DELAY instead of
        one per message (the log is a record of traffic, not an acknowledged reading)."""
        while True:
            await self._log_wanted.wait()
            await asyncio.sleep(LOG_BATCH_DELAY)
            self._log_wanted.clear()
            await self._flush_log()

    async def _flush_log(self) -> None:
        batch, self._log_queue = self._log_queue, []
        if not batch or self.storage is None:
            return
        try:
            ids = await self.storage.log_messages(batch)
        except C1222Error as exc:
            log.warning("%d messages not logged: %s", len(batch), exc)
            return
        for record_id, record in zip(ids, batch):
            self._publish({"type": "message", "id": record_id, "direction": record.direction,
                           "ap_title": record.ap_title, "summary": record.summary})

    # ------------------------------------------------------------------ outbound

    async def _link(self, node: Node) -> Link:
        link = self.endpoint.find_link(node.peer) if node.peer is not None else None
        if link is None:
            host, port = parse_address(node.address)
            transport = "tcp" if node.connection_type & 0x40 or not node.connection_type \
                else "udp"
            link = await self.endpoint.connect(host, port, transport, self.config.timeout)
            node.peer = link.id
        return link

    def node(self, ap_title: str) -> Node:
        key = str(Uid.parse(ap_title).absolute())
        found = self.registrar.nodes.get(key)
        if found is None:
            raise ConfigurationError(f"{ap_title} is not registered")
        return found

    async def call(self, ap_title: str, services: Sequence[Request]) -> Exchange:
        """Send ``services`` to a registered node and return the logged exchange."""
        node = self.node(ap_title)
        pending = self.requester.request(list(services), Uid.parse(node.ap_title))
        link = await self._link(node)
        self._log("out", link, pending.data, pending.apdu, node.ap_title)
        started = time.perf_counter()
        try:
            data = await self.endpoint.exchange(link, pending.data, pending.invocation_id,
                                                timeout=self.config.timeout)
        except TransportError as exc:
            if link.transport == "tcp":
                link.close()
            return Exchange(pending.apdu, pending.data, None, None, str(exc))
        self.latencies.append(time.perf_counter() - started)
        try:
            apdu = self.requester.accept(data, pending, time.time())
        except (C1222Error, ValueError) as exc:
            self._log("in", link, data, None, node.ap_title)
            return Exchange(pending.apdu, pending.data, None, data, str(exc))
        self._log("in", link, data, apdu, node.ap_title)
        node.last_seen = time.time()
        return Exchange(pending.apdu, pending.data, apdu, data)

    def _security(self) -> SecurityRequest:
        return SecurityRequest(pad_password(self.config.password), self.config.user_id)

    async def run_service(self, ap_title: str, name: str, params: dict[str, Any]
                          ) -> Exchange:
        """One service by name, as the console's buttons send it (docs/headend.md)."""
        services = await self._services(ap_title, name, params)
        return await self.call(ap_title, services)

    async def _services(self, ap_title: str, name: str, p: dict[str, Any]) -> list[Request]:
        node = self.node(ap_title)
        title = Uid.parse(p.get("ap_title") or node.ap_title)
        sec = self._security()
        if name == "identify":
            return [IdentifyRequest()]
        if name == "read":
            table = int(p.get("table", 0))
            if p.get("count") not in (None, ""):
                return [sec, PartialReadOffsetRequest(table, int(p.get("offset") or 0),
                                                      int(p["count"]))]
            return [sec, FullReadRequest(table)]
        if name == "write":
            data = bytes.fromhex(str(p.get("data", "")))
            table = int(p.get("table", 0))
            if p.get("offset") not in (None, ""):
                return [sec, PartialWriteOffsetRequest(table, int(p["offset"]),
                                                       TableData(data))]
            return [sec, FullWriteRequest(table, TableData(data))]
        if name == "logon":
            user = str(p.get("user", "headend")).encode("latin-1")[:10].ljust(10)
            return [LogonRequest(int(p.get("user_id", self.config.user_id)), user,
                                 int(p.get("timeout", 60)))]
        if name == "security":
            return [SecurityRequest(pad_password(str(p.get("password", self.config.password))),
                                    int(p.get("user_id", self.config.user_id)))]
        simple: dict[str, Callable[[], Request]] = {
            "logoff": LogoffRequest, "terminate": TerminateRequest,
            "disconnect": DisconnectRequest,
            "wait": lambda: WaitRequest(int(p.get("seconds", 10))),
            "deregister": lambda: DeregisterRequest(title),
            "resolve": lambda: ResolveRequest(title), "trace": lambda: TraceRequest(title)}
        if name in simple:
            return [simple[name]()]
        if name == "procedure":
            context = await self._tables(ap_title, (0,))
            store = TableStore({0: context[0]})
            parm = bytes.fromhex(str(p.get("params", "")))
            body = table7_request(store, int(p.get("number", 0)), int(p.get("seq", 1)) & 0xFF,
                                  parm, mfg=bool(p.get("mfg", False)))
            return [sec, FullWriteRequest(7, TableData(body)), FullReadRequest(8)]
        raise ConfigurationError(f"unknown service {name!r}; one of {', '.join(SERVICES)}")

    # ------------------------------------------------------------------ collecting

    async def _tables(self, ap_title: str, numbers: Sequence[int]) -> dict[int, bytes]:
        """Full reads of ``numbers`` in one request; context tables are read once per node."""
        cache = self._context.setdefault(ap_title, {})
        wanted = [n for n in numbers if n in LIVE_TABLES or n not in cache]
        out = {n: cache[n] for n in numbers if n not in wanted}
        if wanted:
            exchange = await self.call(ap_title, [self._security(),
                                                  *(FullReadRequest(n) for n in wanted)])
            if exchange.response is None:
                raise TransportError(exchange.error or "no response")
            got = [s for s in exchange.response.epsem.services if isinstance(s, Response)][1:]
            if len(got) != len(wanted):
                raise C1222Error(f"{len(got)} responses to {len(wanted)} reads")
            for number, response in zip(wanted, got):
                if not isinstance(response, ReadResponse):
                    raise C1222Error(f"read of table {number}: response code "
                                     f"{response.response_code:#04x}")
                out[number] = response.table_data.data
                if number not in LIVE_TABLES:
                    cache[number] = response.table_data.data
        return out

    async def _large_table(self, ap_title: str, number: int, context: dict[int, bytes]
                           ) -> bytes:
        """A table that may exceed the meter's response limit (Table 64 is 39 KB by default),
        read in partial reads of CHUNK bytes; its size comes from the meter's own Table 0 and
        dimension tables."""
        recs = decoded({n: context[n] for n in LOG_CONTEXT_TABLES})
        env = make_env(recs[0], recs)
        size = table_size(number, env)
        if size is None:
            raise C1222Error(f"size of table {number} unknown")
        out = bytearray()
        while len(out) < size:
            count = min(CHUNK, size - len(out))
            exchange = await self.call(ap_title, [
                self._security(), PartialReadOffsetRequest(number, len(out), count)])
            got = [s for s in (exchange.response.epsem.services if exchange.response else ())
                   if isinstance(s, Response)][1:]
            if not got or not isinstance(got[0], ReadResponse):
                raise C1222Error(f"partial read of table {number} at {len(out)} failed")
            out += got[0].table_data.data
        return bytes(out)

    async def collect(self, ap_title: str, *, logs: bool = False) -> int:
        """Read one meter now and store what it returned; the number of new readings."""
        tables = await self._tables(ap_title, (*CONTEXT_TABLES, 23, 28, 52))
        values = meter_values(tables)
        when_unix = meter_time(tables) or time.time()
        when = dt.datetime.fromtimestamp(when_unix, dt.timezone.utc)
        readings = [Reading("present", when, name, values[name]) for name in PRESENT
                    if name in values]
        readings += [Reading("register", when, name, value) for name, value in values.items()
                     if name not in PRESENT]
        if logs:
            logs_tables = await self._tables(ap_title, (*LOG_CONTEXT_TABLES, 74))
            logs_tables[64] = await self._large_table(ap_title, 64, logs_tables)
            for entry in history_entries(logs_tables):
                if entry["time"] is not None:
                    readings.append(event_reading(entry["time"].replace(tzinfo=dt.timezone.utc),
                                                  entry["seq"], entry["code"],
                                                  entry["argument"], entry["user_id"]))
            for interval in lp_intervals(logs_tables):
                readings += interval_readings(
                    interval["end"].replace(tzinfo=dt.timezone.utc),
                    {f"ch{k}": float(v) for k, v in enumerate(interval["values"])})
        assert self.storage is not None
        stored = await self.storage.store_readings(ap_title, readings)
        # The return of store_readings is the acknowledgement: say so, for operators and tests.
        log.info("stored %d readings for %s at %s", stored, ap_title, when.isoformat())
        self.stats["stored"] += stored
        self._publish({"type": "reading", "ap_title": ap_title, "time": when.isoformat(),
                       "values": {r.name: r.value for r in readings if r.kind == "present"}})
        self._spawn_write(self.storage.mark_seen(ap_title, dt.datetime.now(dt.timezone.utc)))
        return stored

    async def _collect_one(self, ap_title: str, logs: bool) -> None:
        async with self._limit:
            try:
                await asyncio.wait_for(self.collect(ap_title, logs=logs),
                                       self.config.timeout * 2)
                self.stats["reads"] += 1
            except (C1222Error, asyncio.TimeoutError, OSError, ValueError) as exc:
                self.stats["read_failures"] += 1
                log.info("collecting %s failed: %s", ap_title, exc or "time-out")
                self._context.pop(ap_title, None)  # re-read the context next time
            finally:
                self._collecting.pop(ap_title, None)

    async def _collector(self) -> None:
        last_logs: dict[str, float] = {}
        while True:
            now = time.monotonic()
            for ap_title in list(self.registrar.nodes):
                if ap_title in self._collecting:
                    continue  # still busy with a slow meter: do not pile up reads
                interval = self.config.log_interval
                logs = interval > 0 and (ap_title not in last_logs
                                         or now - last_logs[ap_title] >= interval)
                if logs:
                    last_logs[ap_title] = now
                self._collecting[ap_title] = asyncio.create_task(
                    self._collect_one(ap_title, logs))
            await asyncio.sleep(self.config.collect_interval)


def summary(apdu: Apdu) -> str:
    """A one-line description: the services and the response codes."""
    parts = []
    for service in apdu.epsem.services:
        if isinstance(service, Request):
            table = getattr(service, "table_id", None)
            parts.append(service.service + (f" {table}" if table is not None else ""))
        else:
            code = service.response_code
            name = ResponseCode(code).name if code in ResponseCode._value2member_map_ else hex(
                code)
            parts.append(name.lower() if isinstance(service, ErrorResponse) or code else "ok")
    mode = apdu.epsem.security_mode
    return ", ".join(parts) + (f" [mode {mode}]" if mode else "") if parts else "(no services)"


def node_json(node: Node) -> dict[str, Any]:
    return {"ap_title": node.ap_title, "native_address": node.address,
            "node_type": node.node_type, "device_class": node.device_class.hex(),
            "serial_number": node.serial_number,
            "registration_period": node.registration_period,
            "registered_at": node.registered_at, "last_seen": node.last_seen,
            "state": node.state}


def _node_from_record(record: NodeRecord) -> Node:
    def unix(value: dt.datetime | None) -> float:
        return value.timestamp() if value is not None else 0.0

    return Node(ap_title=record.ap_title, native_address=record.native_address.encode(),
                node_type=record.node_type, connection_type=record.connection_type,
                device_class=bytes.fromhex(record.device_class or ""),
                serial_number=record.serial_number,
                registration_period=record.registration_period,
                registered_at=unix(record.registered_at), last_seen=unix(record.last_seen),
                state=record.state)
