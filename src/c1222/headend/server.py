"""The metering server (head-end): a C12.22 host node with its registry, commands, collector,
storage and message log.

* Meters register over TCP or UDP (:class:`~c1222.headend.registry.RegistrarServices`); each
  registration is written to storage and announced to subscribers (the web console).
* :meth:`HeadEnd.call` sends any services to a registered node, over the connection the node
  opened when it registered if that is still up, else to its native address. Every message in
  and out is logged (bytes, a one-line summary and its canonical JSON).
* The collector reads each registered meter every ``collect_interval`` seconds: present values
  and registers (Tables 28, 23, 52), and, every ``log_interval``, the load-profile blocks and
  history-log entries that are new since the last collection (Tables 64 and 74, located by
  Table 63 and the Table 74 header). A meter that is slow or silent only delays itself:
  each read runs in its own task with a time-out, at most ``max_parallel`` at once. A meter
  whose tables claim more than the configured bounds is flagged and read only within them;
  large decodes run in a decoder process; each meter's read status is kept
  (:class:`ReadStatus`, shown by :func:`node_json`).
* :meth:`HeadEnd.run_service` is what the console's buttons call: one EPSEM service by name.
* ``HeadEnd.metrics`` (:class:`~c1222.headend.metrics.HeadEndMetrics`) counts registrations,
  reads by outcome, messages by service and response code, and storage failures where they
  happen; ``/metrics`` serves them (docs/headend.md, "Metrics").
* With ``master_relay`` the head-end is a notification host of that master relay
  (:mod:`c1222.headend.network`): it learns the nodes of the relay network from the master
  relay's notifications and reaches them through it by AP title alone; :meth:`HeadEnd.network`
  is the network view (relays, the nodes behind each, their paths from Trace).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
import zlib
from collections.abc import Callable, Sequence
import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any

from c1222.codec import text
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.native import (
    decode_native_address,
    native_address_from_text,
    native_address_text,
)
from c1222.codec.redact import redact, redact_bytes
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
    ResolveResponse,
    Response,
    SecurityRequest,
    TableData,
    TerminateRequest,
    TraceRequest,
    TraceResponse,
    WaitRequest,
)
from c1222.codes import NodeType, ResponseCode, SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import TimeIvSource
from c1222.errors import (
    ERR,
    SERVICE_ERRORS,
    C1222Error,
    ConfigurationError,
    DecodeError,
    LimitExceeded,
    RemoteProtocolError,
    TransportError,
)
from c1222.headend.metrics import CollectionCounts, HeadEndMetrics
from c1222.headend.network import (
    MasterRelay,
    MasterRelayLink,
    NetworkRegistrar,
    relay_refusal,
)
from c1222.headend.registry import Node, RegistrarServices
from c1222.headend.schedule import ATTEMPTS, COUNTS, HISTORY, Plan, Scheduler
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
from c1222.limits import DEFAULT_MAX_APDU_SIZE
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig
from c1222.tables.access import pad_password
from c1222.tables.procedures import table7_request
from c1222.tables.readings import (
    CONTEXT_TABLES,
    HISTORY_CONTEXT_TABLES,
    LP_CONTEXT_TABLES,
    SEQ_MOD,
    HistoryLayout,
    LpLayout,
    history_entries_from_bytes,
    history_layout,
    history_status,
    lp_intervals_from_bytes,
    lp_layout,
    meter_time,
    meter_values,
    unread_window,
)
from c1222.tables.decade6 import channel_status, common_status
from c1222.tables.registry import decode_table
from c1222.tables.store import TableStore
from c1222.tables.types import DataAccessMethod
from c1222.transport.endpoint import Address, Endpoint, EndpointLimits, Link, PcapTracer
from c1222.workers import exit_with_parent

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
#: Defaults of the collector's bounds (HeadEndConfig; docs/headend.md).
MAX_TABLE_BYTES = 1 << 20
MAX_LP_BLOCKS = 1024
MAX_HISTORY_ENTRIES = 4096
#: Processes that decode what the collector read: off the event loop, and off its
#: interpreter too (a decode in a thread would still take the GIL from the loop). At most
#: this many decodes at once, each bounded by max_table_bytes.
DECODE_PROCESSES = 1
#: Tables that change by themselves: read every time (the others are cached per node).
LIVE_TABLES = frozenset({23, 28, 52, 63, 64, 74})
#: Node types the collector does not read (relays and hosts have no metering tables).
NOT_METERS = (NodeType.RELAY | NodeType.MASTER_RELAY | NodeType.HOST
              | NodeType.NOTIFICATION_HOST | NodeType.AUTHENTICATION_HOST)
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
    # The collector (docs/headend.md, "Collecting"): reads at once, attempts per meter per
    # interval, intervals whose accounting is kept.
    # Reads at once: 64 capped 10,000 meters a minute at ~40 reads/s when a collection takes
    # 1.6 s (a contended PostgreSQL); 256 read them all (BENCHMARKS.md, the fleet matrix).
    max_parallel: int = 256
    collect_attempts: int = ATTEMPTS
    collect_history: int = HISTORY
    pcap: str | None = None
    # Bounds on what the collector reads from one meter (a meter whose tables claim more is
    # flagged "over-limit" and read only within them): bytes of one table per collection
    # (a full read, or the Table 64 blocks / Table 74 entries read), load-profile blocks
    # (Table 61 NBR_BLKS) and history entries (Table 71 NBR_HISTORY_ENTRIES).
    max_table_bytes: int = MAX_TABLE_BYTES
    max_lp_blocks: int = MAX_LP_BLOCKS
    max_history_entries: int = MAX_HISTORY_ENTRIES
    # What peers can make the head-end keep (docs/storage.md, "Retention", "Registration limits").
    retention: Retention = field(default_factory=Retention)
    max_nodes: int = 100_000
    max_registrations_per_address: int = 64
    # TCP connections at once, in all and from one IP address (the transport's caps; a fleet
    # of simulated meters on one host needs the second raised).
    max_connections: int = EndpointLimits.max_connections
    max_connections_per_address: int = EndpointLimits.max_per_address
    #: The master relay to register with as a notification host (docs/headend.md "Network").
    master_relay: Address | None = None
    # Segmentation (docs/segmentation.md): largest APDU sent unsegmented (None: never) and the
    # largest reassembled APDU accepted.
    segment_size: int | None = None
    max_apdu_size: int = DEFAULT_MAX_APDU_SIZE
    # Every stored reading also on this NATS JetStream stream (docs/storage.md, "Scaling out").
    publish: Any = None  # a c1222.headend.stream.NatsTarget
    # Collection sharded over head-end workers: this process collects the titles whose shard
    # (a stable hash of the title) is shard_index of shard_count.
    shard_index: int = 0
    shard_count: int = 1
    # Head-end workers (docs/headend.md, "Workers"): share the C12.22 port with the other
    # workers (SO_REUSEPORT), and every node_sync_interval seconds take into the registry
    # the nodes that registered with another worker (0: never; one process alone).
    reuse_port: bool = False
    node_sync_interval: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_table_bytes", "max_lp_blocks", "max_history_entries",
                     "max_parallel", "collect_attempts", "collect_history"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name}: at least 1")
        if not self.collect_interval > 0:  # (NaN too)
            raise ConfigurationError("collect_interval: more than 0 seconds")
        if not 0 <= self.shard_index < self.shard_count:
            raise ConfigurationError("shard_index: 0 .. shard_count - 1")


def shard_of(ap_title: str, count: int) -> int:
    """The worker (0 .. count - 1) that collects ``ap_title``: CRC-32 of the absolute dotted
    title, stable across processes and restarts (Python's hash() is salted per process)."""
    return zlib.crc32(ap_title.encode()) % count


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class ReadStatus:
    """How the collector fares with one meter (kept in memory; ``node_json`` shows it)."""

    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    #: Why the meter is flagged, by what was over a bound ("table 61": "Table 61 claims ...").
    limits: dict[str, str] = field(default_factory=dict)
    #: Sequence numbers of the newest load-profile block and history entry stored (the next
    #: collection reads only what came after them).
    lp_seq: int | None = None
    history_seq: int | None = None

    def succeeded(self, now: float) -> None:
        self.last_success = now
        self.consecutive_failures = 0

    def failed(self, now: float, reason: str) -> None:
        self.last_failure = now
        self.last_error = reason
        self.consecutive_failures += 1

    @property
    def over_limit(self) -> str | None:
        """``over-limit: <why>`` while the meter's tables claim more than the bounds."""
        return "over-limit: " + "; ".join(self.limits.values()) if self.limits else None

    def to_json(self) -> dict[str, Any]:
        return {"last_success": _iso(self.last_success),
                "last_failure": _iso(self.last_failure), "last_error": self.last_error,
                "consecutive_failures": self.consecutive_failures,
                "over_limit": self.over_limit}


@dataclass
class _LogRead:
    """What one collection read from the lists, and the cursors to keep once it is stored."""

    readings: list[Reading] = field(default_factory=list)
    lp_seq: int | None = None
    history_seq: int | None = None
    #: The bounds checks made: what -> why it is over, or None when it is within.
    limits: dict[str, str | None] = field(default_factory=dict)


@dataclass
class Exchange:
    """One request/response pair (the web API renders it: ``web.exchange_json``)."""

    request: Apdu
    request_bytes: bytes
    response: Apdu | None
    response_bytes: bytes | None
    error: str | None = None
    #: Why there is no (usable) response: the exception, kept so a read fails with its type.
    cause: C1222Error | None = field(default=None, repr=False, compare=False)

    def failure(self) -> C1222Error:
        """The error to raise for an exchange without a usable response."""
        return self.cause or TransportError(self.error or "no response")


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
        self.master: MasterRelay | None = None
        handler: Any = self.registrar
        if config.master_relay is not None:
            self.master = MasterRelay(config.master_relay)
            handler = NetworkRegistrar(self.registrar, self.master, host_of=self._source_host)
        self.responder = Responder(
            ResponderConfig(ap_title=self.ap_title, keys=config.keys,
                            minimum_mode=config.security_mode), handler, nonces)
        self.requester = Requester(self.ap_title, nonces, keys=config.keys,
                                   security_mode=config.security_mode, key_id=config.key_id)
        self.tracer = PcapTracer(config.pcap) if config.pcap else None
        self.endpoint = Endpoint(
            self._on_request, tracer=self.tracer,
            limits_=EndpointLimits(max_connections=config.max_connections,
                                   max_per_address=config.max_connections_per_address,
                                   segment_size=config.segment_size,
                                   max_apdu_size=config.max_apdu_size,
                                   max_frame=max(EndpointLimits.max_frame,
                                                 config.max_apdu_size)),
            on_link_closed=lambda link: self.responder.close(link.id),
            on_segment_error=lambda data, link, code: self.responder.refuse(data, code).data)
        self.master_link: MasterRelayLink | None = None
        if self.master is not None:
            self.master_link = MasterRelayLink(
                self.master, self.endpoint, self.requester, ap_title=self.ap_title,
                listening=lambda: self.address, reg_period=config.reg_period,
                timeout=config.timeout,
                on_message=lambda way, link, data, apdu: self._log(
                    way, link, data, apdu if apdu is not None else _decoded(data),
                    self.master.title_text if self.master else None))
        self.storage: AsyncStorage | None = None
        self.publisher: Any = None  # c1222.headend.publish.Publisher, with config.publish
        self.address: Address | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._context: dict[str, dict[int, bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_writes: set[asyncio.Task[Any]] = set()
        self._registrations = 0
        self.scheduler = Scheduler(
            Plan(config.collect_interval, attempts=config.collect_attempts,
                 log_interval=config.log_interval, history=config.collect_history,
                 random=random.random),
            meters=self._meters, wanted=self._wanted, concurrency=config.max_parallel,
            # looked up at each read, so a benchmark or test can wrap _collect_one
            read=lambda title, logs: self._collect_one(title, logs),
            version=lambda: self._registrations,
        )
        self._status: dict[str, ReadStatus] = {}
        self._decoder: ProcessPoolExecutor | None = None  # started at the first decode
        self.stats = {"reads": 0, "read_failures": 0, "stored": 0}
        self._log_queue: list[MessageRecord] = []
        self._log_wanted = asyncio.Event()
        #: Seconds from request sent to response received, of the latest exchanges.
        self.latencies: collections.deque[float] = collections.deque(maxlen=100_000)
        self.metrics = HeadEndMetrics()
        self.metrics.watch(
            endpoint=self.endpoint, nodes=lambda: len(self.registrar.nodes),
            over_limit=lambda: sum(1 for t, s in list(self._status.items())
                                   if s.limits and t in self.registrar.nodes),
            failing=lambda: sum(1 for t, s in list(self._status.items())
                                if s.consecutive_failures and t in self.registrar.nodes),
            log_queue=lambda: len(self._log_queue), collection=self._collection_counts)
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Address:
        # With --publish each reading is also written to the outbox in its own transaction.
        self.storage = await open_async_storage(self.config.db,
                                                outbox=self.config.publish is not None)
        if self.config.publish is not None:
            from c1222.headend.publish import Publisher

            self.publisher = Publisher(self.config.publish, self.storage)
            await self.publisher.start()
        for node in await self.storage.list_nodes("registered"):
            self.registrar.nodes[node.ap_title] = _node_from_record(node)
        self.address = await self.endpoint.listen(*self.config.listen,
                                                  reuse_port=self.config.reuse_port)
        self._tasks.append(asyncio.create_task(self.scheduler.run()))
        if self.master_link is not None:
            self._tasks.append(asyncio.create_task(self.master_link.run()))
        self._tasks.append(asyncio.create_task(self._log_writer()))
        if self.config.shard_index == 0:  # one retention pass for all workers, not N racing
            self._tasks.append(asyncio.create_task(
                retention_loop(self.storage, self.config.retention, self._forget_nodes)))
        if self.config.node_sync_interval > 0:
            self._tasks.append(asyncio.create_task(self._node_sync()))
        return self.address

    async def _node_sync(self) -> None:
        """Workers: follow the registrations other workers stored, so that this one collects
        the meters it owns wherever they registered, and its API lists every node."""
        while True:
            await asyncio.sleep(self.config.node_sync_interval)
            try:
                assert self.storage is not None
                records = await self.storage.list_nodes()
            except C1222Error as exc:
                log.warning("node sync failed: %s", exc)
                continue
            self.sync_nodes(records, time.time())

    def sync_nodes(self, records: Sequence[NodeRecord], now: float) -> None:
        """Bring the registry in line with storage (every node, as ``list_nodes`` gives them).

        A registration newer than ours (another worker's, or a move) replaces ours; a
        deregistration after our registration drops the node; a node storage no longer has
        (retention, which runs on worker 0 alone) is dropped as retention would drop it here:
        once its registration here expired too (a fresh one may still be on its way to storage,
        or came after the pass)."""
        nodes = self.registrar.nodes
        stored = set()
        for record in records:
            title = record.ap_title
            stored.add(title)
            mine = nodes.get(title)
            if record.state == "registered":
                if mine is None:
                    nodes[title] = _node_from_record(record)
                elif record.registered_at is not None \
                        and record.registered_at.timestamp() > mine.registered_at + 1:
                    theirs = _node_from_record(record)  # only then: 10,000 nodes a pass
                    if (theirs.native_address, theirs.extra.get("via")) \
                            != (mine.native_address, mine.extra.get("via")):
                        nodes[title] = theirs
                        self._context.pop(title, None)
            elif mine is not None and record.last_seen is not None \
                    and record.last_seen.timestamp() > mine.registered_at + 1:
                self.registrar.forget([title])
                self._context.pop(title, None)
                self._status.pop(title, None)
        gone = [t for t, n in nodes.items() if t not in stored and n.registered_at < now - 60]
        if gone:
            self._forget_nodes(gone)

    async def stop(self) -> None:
        self._stopping = True  # the reads cancelled now did not time out
        await self.scheduler.stop()  # the reads under way, cancelled and awaited
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pending_writes:
            await asyncio.gather(*self._pending_writes, return_exceptions=True)
        await self._flush_log()
        if self.publisher is not None:
            await self.publisher.stop()
        # A decode under way finishes (bounded by max_table_bytes); none is waited for here.
        if self._decoder is not None:
            self._decoder.shutdown(wait=False, cancel_futures=True)
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
        task.add_done_callback(self._write_done)

    def _write_done(self, task: asyncio.Task[Any]) -> None:
        """Retrieve a background write's outcome: a failure is logged, not left for asyncio
        to report as "Task exception was never retrieved"."""
        self._pending_writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.metrics.storage_errors.labels("node").inc()
            log.warning("a storage write failed: %s", task.exception())

    # ------------------------------------------------------------------ inbound

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        reply = self.responder.receive(data, link.id, time.time())
        self._log("in", link, data, reply.request)
        if reply.data is not None:
            self._log("out", link, reply.data, reply.response, answers=reply.request)
        return reply.data, reply.close

    def _registered(self, node: Node) -> None:
        self._registrations += 1  # the collector slots new meters in (Scheduler.version)
        now = dt.datetime.now(dt.timezone.utc)
        via = node.extra.get("via")
        record = NodeRecord(
            ap_title=node.ap_title, native_address=native_address_text(node.native_address),
            node_type=node.node_type,
            connection_type=node.connection_type, device_class=node.device_class.hex(),
            serial_number=node.serial_number, registration_period=node.registration_period,
            registered_at=now, last_seen=now, state="registered",
            via=via if isinstance(via, str) else None)
        assert self.storage is not None
        # It may have restarted with other tables: decode its Reads with fresh ones.
        self._context.pop(node.ap_title, None)
        self._spawn_write(self.storage.upsert_node(record))
        self._publish({"type": "registered", "node": self.node_json(node)})
        self.metrics.registered(node.node_type)

    def _source_host(self, link_id: Any) -> str | None:
        link = self.endpoint.find_link(link_id)
        return str(link.peer[0]) if link is not None else None

    def _forget_nodes(self, ap_titles: list[str]) -> None:
        """Retention removed these nodes from storage: the registry lets go of them too,
        unless one registered again while the pass ran."""
        expired_before = time.time() - (self.config.retention.node_age or 0.0)
        for node in self.registrar.forget(ap_titles, expired_before):
            self._context.pop(node.ap_title, None)
            self._status.pop(node.ap_title, None)
            self._publish({"type": "deregistered", "ap_title": node.ap_title})

    def _deregistered(self, node: Node) -> None:
        assert self.storage is not None
        self._spawn_write(self.storage.deregister(node.ap_title,
                                                  dt.datetime.now(dt.timezone.utc)))
        self._context.pop(node.ap_title, None)
        self._publish({"type": "deregistered", "ap_title": node.ap_title})

    def _log(self, direction: str, link: Link, data: bytes, apdu: Apdu | None,
             ap_title: str | None = None, *, answers: Apdu | None = None) -> None:
        """Log one message (``answers``: the request a response answers, for the metrics)."""
        self.metrics.message(direction, apdu, answers)
        if self.storage is None:
            return
        if ap_title is None and apdu is not None:
            other = apdu.calling_ap_title if direction == "in" else apdu.called_ap_title
            ap_title = str(other.absolute()) if other is not None else None
        if apdu is not None:  # passwords and user names are never stored (codec.redact)
            data = redact_bytes(data, apdu)
            apdu = redact(apdu)
        record = MessageRecord(
            time=dt.datetime.now(dt.timezone.utc), direction=direction, peer=link.name,
            transport=link.transport, raw=data, summary=summary(apdu) if apdu else "undecoded",
            ap_title=ap_title, json=canonical_json(text.to_json(apdu)) if apdu is not None
            else None)
        if len(self._log_queue) >= MAX_LOG_QUEUE:  # storage stalled: keep the newest traffic
            del self._log_queue[: MAX_LOG_QUEUE // 10]
            self.stats["log_dropped"] = self.stats.get("log_dropped", 0) + MAX_LOG_QUEUE // 10
            self.metrics.log_dropped.inc(MAX_LOG_QUEUE // 10)
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
            self.metrics.storage_errors.labels("message_log").inc()
            log.warning("%d messages not logged: %s", len(batch), exc)
            return
        for record_id, record in zip(ids, batch):
            self._publish({"type": "message", "id": record_id, "direction": record.direction,
                           "ap_title": record.ap_title, "summary": record.summary})

    # ------------------------------------------------------------------ outbound

    async def _link(self, node: Node) -> Link:
        if node.extra.get("via"):  # learned from the master relay: reached through it
            if self.master_link is None:
                raise TransportError(f"{node.ap_title} is reached via master relay "
                                     f"{node.extra['via']}, and no --master-relay is set")
            return self.master_link.current_link()
        link = self.endpoint.find_link(node.peer) if node.peer is not None else None
        if link is not None and self.config.reuse_port and link.transport == "udp" \
                and link.accepted:
            link = None  # answers to the shared port may reach another worker: ask from ours
        if link is None:
            try:  # the peer wrote this address: never make the head-end look a name up for it
                host, port = decode_native_address(node.native_address)  # IP literals only
            except DecodeError:
                raise TransportError(f"{node.ap_title}: native address {node.address!r} "
                                     "is not an IP address") from None
            transport = "tcp" if node.connection_type & 0x40 or not node.connection_type \
                else "udp"
            link = await self.endpoint.connect(host, port, transport, self.config.timeout)
            node.peer = link.id
        return link

    def owns(self, ap_title: str) -> bool:
        """Whether this process collects ``ap_title`` (all titles unless sharded)."""
        config = self.config
        return config.shard_count == 1 or shard_of(ap_title, config.shard_count) == config.shard_index

    def node(self, ap_title: str) -> Node:
        key = str(Uid.parse(ap_title).absolute())
        found = self.registrar.nodes.get(key)
        if found is None:
            raise ConfigurationError(f"{ap_title} is not registered")
        return found

    async def call(self, ap_title: str, services: Sequence[Request], *,
                   max_size: int | None = None) -> Exchange:
        """Send ``services`` to a registered node and return the logged exchange
        (LimitExceeded, nothing sent, for a request over ``max_size`` or MAX_APDU_SIZE)."""
        node = self.node(ap_title)
        pending = self.requester.request(list(services), Uid.parse(node.ap_title),
                                         max_size=max_size)
        link = await self._link(node)
        self._log("out", link, pending.data, pending.apdu, node.ap_title)
        started = time.perf_counter()
        try:
            data = await self.endpoint.exchange(link, pending.data, pending.invocation_id,
                                                timeout=self.config.timeout)
        except TransportError as exc:
            if link.transport == "tcp":
                link.close()
            return Exchange(pending.apdu, pending.data, None, None, str(exc), exc)
        self.latencies.append(elapsed := time.perf_counter() - started)
        self.metrics.request_seconds.observe(elapsed)
        try:
            apdu = self.requester.accept(data, pending, time.time())
        except (C1222Error, ValueError) as exc:
            self._log("in", link, data, None, node.ap_title)
            cause = exc if isinstance(exc, C1222Error) else RemoteProtocolError(str(exc))
            return Exchange(pending.apdu, pending.data, None, data, str(exc), cause)
        self._log("in", link, data, apdu, node.ap_title, answers=pending.apdu)
        refused = relay_refusal(apdu, node.ap_title)
        if refused is not None:  # a relay answered for the node: it was not reached
            return Exchange(pending.apdu, pending.data, apdu, data, str(refused), refused)
        node.last_seen = time.time()
        return Exchange(pending.apdu, pending.data, apdu, data)

    def _security(self) -> SecurityRequest:
        return SecurityRequest(pad_password(self.config.password), self.config.user_id)

    async def run_service(self, ap_title: str, name: str, params: dict[str, Any]
                          ) -> Exchange:
        """One service by name, as the console's buttons send it (docs/headend.md).

        LimitExceeded, with nothing sent, for a request larger than the node said it takes
        (the max size of an RQTL answer, remembered per node) or than MAX_APDU_SIZE."""
        services = await self._services(ap_title, name, params)
        node = self.node(ap_title)
        if name == "write":  # a cached context table written: read it again when needed
            self._context.get(ap_title, {}).pop(int(params["table"]), None)
        if name in ("resolve", "trace") and node.extra.get("via") and self.master_link:
            # Network services of a node behind the relays are the master relay's to answer
            # (an end device answers SNS): ask it, as the Network panel does.
            return await self.call_master(services)
        known = node.extra.get("max_request_size")
        exchange = await self.call(ap_title, services,
                                   max_size=known if isinstance(known, int) else None)
        for service in exchange.response.epsem.services if exchange.response else ():
            if (isinstance(service, ErrorResponse) and service.response_code == ResponseCode.RQTL
                    and service.max_size):
                node.extra["max_request_size"] = service.max_size
        return exchange

    # ------------------------------------------------------------------ the network

    async def call_master(self, services: Sequence[Request]) -> Exchange:
        """Send ``services`` to the master relay itself (called AP title = its title)."""
        if self.master_link is None or self.master is None:
            raise ConfigurationError("the head-end has no master relay (--master-relay)")
        link = self.master_link.current_link()
        pending = self.requester.request(list(services), self.master.title)
        title = self.master.title_text
        self._log("out", link, pending.data, pending.apdu, title)
        try:
            data = await self.endpoint.exchange(link, pending.data, pending.invocation_id,
                                                timeout=self.config.timeout)
        except TransportError as exc:
            return Exchange(pending.apdu, pending.data, None, None, str(exc))
        try:
            apdu = self.requester.accept(data, pending, time.time())
        except (C1222Error, ValueError) as exc:
            self._log("in", link, data, None, title)
            return Exchange(pending.apdu, pending.data, None, data, str(exc))
        self._log("in", link, data, apdu, title)
        return Exchange(pending.apdu, pending.data, apdu, data)

    async def resolve(self, ap_title: str) -> dict[str, Any]:
        """Resolve ``ap_title`` at the master relay: its native address, decoded."""
        title = Uid.parse(ap_title).absolute()
        exchange = await self.call_master([ResolveRequest(title)])
        out: dict[str, Any] = {"ap_title": str(title), "native_address": None, "hex": None,
                               "error": exchange.error, "time": _iso(time.time())}
        answer = _first_response(exchange)
        if isinstance(answer, ResolveResponse) and answer.response_code == ResponseCode.OK:
            out["native_address"] = native_address_text(answer.native_address)
            out["hex"] = answer.native_address.hex()
        elif out["error"] is None:
            out["error"] = _code_text(answer)
        node = self.registrar.nodes.get(str(title))
        if node is not None:
            node.extra["resolved"] = out
        return out

    async def trace(self, ap_title: str) -> dict[str, Any]:
        """Trace ``ap_title`` through the master relay: the relays on its path (requester's
        side outward), cached on the node with the time it was traced."""
        title = Uid.parse(ap_title).absolute()
        exchange = await self.call_master([TraceRequest(title)])
        out: dict[str, Any] = {"ap_title": str(title), "path": None, "error": exchange.error,
                               "time": _iso(time.time())}
        answer = _first_response(exchange)
        if isinstance(answer, TraceResponse) and answer.response_code == ResponseCode.OK:
            out["path"] = [str(t.absolute()) for t in answer.ap_titles]
        elif out["error"] is None:
            out["error"] = _code_text(answer)
        node = self.registrar.nodes.get(str(title))
        if node is not None:
            node.extra["path"] = out
        return out

    def network(self) -> dict[str, Any]:
        """The network view: the master relay, the relays (nodes of node type RELAY), the
        nodes behind each (by the last relay of their traced path, else the master relay),
        and the nodes that registered directly."""
        master = self.master
        master_title = master.title_text if master is not None else None
        relays: dict[str, dict[str, Any]] = {}
        if master_title is not None:
            relays[master_title] = {"ap_title": master_title, "master": True,
                                    "native_address": master.address[0] + ":" + str(
                                        master.address[1]) if master else None,
                                    "nodes": []}
        nodes = sorted(self.registrar.nodes.values(), key=lambda n: Uid.parse(n.ap_title).arcs)
        for node in nodes:
            if node.node_type & (NodeType.RELAY | NodeType.MASTER_RELAY):
                entry = relays.setdefault(node.ap_title, {"ap_title": node.ap_title,
                                                          "master": False, "nodes": []})
                entry["native_address"] = native_address_text(node.native_address)
                entry["via"] = node.extra.get("via")
        direct = []
        for node in nodes:
            row = self._network_node(node)
            if not row["via"]:
                direct.append(row)
                continue
            path = row["path"]["path"] if row["path"] else None
            behind = path[-1] if path else row["via"]
            if behind == node.ap_title and path and len(path) > 1:
                behind = path[-2]  # a relay's own trace ends with itself
            relays.setdefault(behind, {"ap_title": behind, "master": False,
                                       "native_address": None, "nodes": []})
            relays[behind]["nodes"].append(row)
        return {"master_relay": master.to_json() if master is not None else None,
                "relays": list(relays.values()), "direct": direct}

    def _network_node(self, node: Node) -> dict[str, Any]:
        path = node.extra.get("path")
        resolved = node.extra.get("resolved")
        via = node.extra.get("via")
        return {"ap_title": node.ap_title, "via": via if isinstance(via, str) else None,
                "node_type": node.node_type,
                "native_address": native_address_text(node.native_address),
                "registration_period": node.registration_period,
                "last_seen": _iso(node.last_seen) if node.last_seen else None,
                "path": path if isinstance(path, dict) else None,
                "resolved": resolved if isinstance(resolved, dict) else None,
                "read_status": (self._status[node.ap_title].to_json()
                                if node.ap_title in self._status else None)}

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
            if p.get("table") in (None, "") or not p.get("data"):  # never a default table
                raise ConfigurationError("write needs a table and its data")
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

    def status(self, ap_title: str) -> ReadStatus:
        """The collector's status of one meter (created on first use)."""
        return self._status.setdefault(ap_title, ReadStatus())

    def node_json(self, node: Node) -> dict[str, Any]:
        """:func:`node_json` with the collector's status of the node."""
        status = self._status.get(node.ap_title)
        return node_json(node, status)

    async def read_tables(self, ap_title: str, numbers: Sequence[int]) -> dict[int, bytes]:
        """The meter's tables ``numbers`` (Table 0, dimension tables ...): read in one
        request, cached per node until it registers again or one is written."""
        return await self._tables(ap_title, numbers)

    def cached_tables(self, ap_title: str) -> dict[int, bytes]:
        """The tables :meth:`read_tables` holds for a node, without asking the meter."""
        return dict(self._context.get(ap_title, {}))

    async def _tables(self, ap_title: str, numbers: Sequence[int]) -> dict[int, bytes]:
        """Full reads of ``numbers`` in one request; context tables are read once per node.
        A table over ``max_table_bytes`` flags the meter and fails the read."""
        cache = self._context.setdefault(ap_title, {})
        wanted = [n for n in numbers if n in LIVE_TABLES or n not in cache]
        out = {n: cache[n] for n in numbers if n not in wanted}
        if wanted:
            exchange = await self.call(ap_title, [self._security(),
                                                  *(FullReadRequest(n) for n in wanted)])
            if exchange.response is None or exchange.error is not None:
                raise exchange.failure()
            got = [s for s in exchange.response.epsem.services if isinstance(s, Response)][1:]
            if len(got) != len(wanted):
                raise RemoteProtocolError(f"{len(got)} responses to {len(wanted)} reads")
            limits = self.status(ap_title).limits
            bound = self.config.max_table_bytes
            for number, response in zip(wanted, got):
                if not isinstance(response, ReadResponse):
                    raise _refused(number, response.response_code)
                data = response.table_data.data
                if len(data) > bound:
                    limits[f"table {number}"] = (f"Table {number} is {len(data)} bytes > "
                                                 f"max {bound}")
                    raise LimitExceeded(f"over-limit: Table {number} is {len(data)} bytes > "
                                        f"max {bound}")
                limits.pop(f"table {number}", None)
                out[number] = data
                if number not in LIVE_TABLES:
                    cache[number] = data
        return out

    async def _read_range(self, ap_title: str, number: int, offset: int, count: int) -> bytes:
        """``count`` bytes of a table from ``offset``, in partial reads of CHUNK bytes; a
        response of any other length is an error (a meter must not steer how much is read)."""
        out = bytearray()
        while len(out) < count:
            want = min(CHUNK, count - len(out))
            at = offset + len(out)
            exchange = await self.call(ap_title, [
                self._security(), PartialReadOffsetRequest(number, at, want)])
            if exchange.response is None:
                raise exchange.failure()
            got = [s for s in exchange.response.epsem.services if isinstance(s, Response)][1:]
            if not got:
                raise RemoteProtocolError(f"partial read of table {number} at {at}: no answer "
                                          "to the read")
            if not isinstance(got[0], ReadResponse):
                raise _refused(number, got[0].response_code)
            data = got[0].table_data.data
            if len(data) != want:
                raise RemoteProtocolError(f"partial read of table {number} at {at}: "
                                          f"{len(data)} bytes for {want}")
            out += data
        return bytes(out)

    async def _read_runs(self, ap_title: str, number: int, offset_access: bool, base: int,
                         size: int, runs: Sequence[tuple[int, int]]) -> bytes:
        """The elements ``runs`` (``(first, count)``) of a list table whose elements of
        ``size`` bytes start at ``base``: partial reads, or slices of one full read when the
        meter offers no offset access (the table then is within max_table_bytes)."""
        if offset_access:
            parts = [await self._read_range(ap_title, number, base + first * size, n * size)
                     for first, n in runs]
            return b"".join(parts)
        whole = (await self._tables(ap_title, (number,)))[number]
        return b"".join(whole[base + first * size:base + (first + n) * size]
                        for first, n in runs)

    async def _decode(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the decoder process, so that the event loop keeps serving (``fn``
        and its arguments are pickled: a module-level function of plain data)."""
        if self._decoder is None:
            # spawn: a fork would copy the loop's threads and sockets into the child
            self._decoder = ProcessPoolExecutor(
                DECODE_PROCESSES, mp_context=multiprocessing.get_context("spawn"),
                initializer=exit_with_parent)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._decoder, fn, *args)
        except BrokenProcessPool:  # the decoder died (killed, out of memory): a new one next
            self._decoder = None
            raise C1222Error("the decoder process died") from None

    def _lp_bounds(self, layout: LpLayout, offset_access: bool
                   ) -> tuple[int, dict[str, str | None]]:
        """How many Table 64 blocks one collection may read, and the bounds checks."""
        cfg = self.config
        checks: dict[str, str | None] = {
            "table 61": (f"Table 61 claims {layout.nbr_blks} blocks > max {cfg.max_lp_blocks}"
                         if layout.nbr_blks > cfg.max_lp_blocks else None)}
        per_read = cfg.max_table_bytes // layout.block_size
        checks["table 64"] = None
        if per_read == 0:
            checks["table 64"] = (f"a Table 64 block is {layout.block_size} bytes > max "
                                  f"{cfg.max_table_bytes}")
        elif not offset_access and layout.table_size > cfg.max_table_bytes:
            per_read = 0  # only a full read would do, and that is over the bound
            checks["table 64"] = (f"Table 64 is {layout.table_size} bytes > max "
                                  f"{cfg.max_table_bytes} (no offset access)")
        return min(cfg.max_lp_blocks, per_read), checks

    async def _collect_lp(self, ap_title: str, tables: dict[int, bytes], offset_access: bool,
                          status: ReadStatus, result: _LogRead) -> None:
        layout = lp_layout(tables)
        limit, checks = self._lp_bounds(layout, offset_access)
        result.limits.update(checks)
        # A list longer than the bound counts as its newest max_lp_blocks blocks only; the
        # newest block is re-read while it fills (the cursor stays one block behind it).
        newest = replace(layout.status, valid=min(layout.status.valid, self.config.max_lp_blocks))
        window = unread_window(newest, status.lp_seq, limit)
        if not window.runs:
            return
        data = await self._read_runs(ap_title, 64, offset_access, 0, layout.block_size,
                                     window.runs)
        result.readings += await self._decode(_lp_readings, tables, layout, data,
                                              window.first_seq)
        last = window.last_seq
        if last == layout.status.last_seq and layout.valid_ints < layout.nbr_blk_ints:
            last = (last - 1) % SEQ_MOD
        result.lp_seq = last

    async def _collect_history(self, ap_title: str, tables: dict[int, bytes],
                               offset_access: bool, status: ReadStatus,
                               result: _LogRead) -> None:
        cfg = self.config
        layout: HistoryLayout = history_layout(tables)
        result.limits["table 71"] = (
            f"Table 71 claims {layout.nbr_entries} history entries > max "
            f"{cfg.max_history_entries}" if layout.nbr_entries > cfg.max_history_entries
            else None)
        if offset_access:
            header = await self._read_range(ap_title, 74, 0, layout.header_size)
            per_read = cfg.max_table_bytes // layout.entry_size
        elif layout.table_size <= cfg.max_table_bytes:
            header = (await self._tables(ap_title, (74,)))[74][:layout.header_size]
            per_read = layout.nbr_entries
        else:
            header, per_read = b"", 0
        result.limits["table 74"] = (f"Table 74 is {layout.table_size} bytes > max "
                                     f"{cfg.max_table_bytes}" if per_read == 0 else None)
        if not header:
            return
        where = history_status(tables, layout, header)
        newest = replace(where, valid=min(where.valid, cfg.max_history_entries))
        window = unread_window(newest, status.history_seq,
                               min(cfg.max_history_entries, per_read))
        if not window.runs:
            return
        data = await self._read_runs(ap_title, 74, offset_access, layout.header_size,
                                     layout.entry_size, window.runs)
        result.readings += await self._decode(_history_readings, tables, layout, data,
                                              window.first_seq)
        result.history_seq = window.last_seq

    async def _collect_logs(self, ap_title: str, status: ReadStatus) -> _LogRead:
        """New load-profile blocks (Table 64) and history entries (Table 74) since the last
        collection, each within the bounds; the tables a meter lacks are skipped."""
        result = _LogRead()
        gen = decode_table(0, (await self._tables(ap_title, (0,)))[0])
        used = gen.std_tbls_used
        offset_access = bool(gen.format_control_2.data_access_method & DataAccessMethod.OFFSET)
        if {61, 62, 63, 64} <= used:
            tables = await self._tables(ap_title, LP_CONTEXT_TABLES)
            await self._collect_lp(ap_title, tables, offset_access, status, result)
        if {71, 74} <= used:
            tables = await self._tables(ap_title, HISTORY_CONTEXT_TABLES)
            await self._collect_history(ap_title, tables, offset_access, status, result)
        return result

    async def collect(self, ap_title: str, *, logs: bool = False) -> int:
        """Read one meter now and store what it returned; the number of new readings.
        The outcome (success, or the failure and its reason) is kept in its status."""
        status = self.status(ap_title)
        started = time.perf_counter()
        try:
            stored = await self._collect(ap_title, status, logs)
        except asyncio.CancelledError as exc:
            status.failed(time.time(), "time-out (or the head-end stopping)")
            if not self._stopping:  # cancelled by a time-out (the collector's, the API's)
                self.metrics.read(exc, time.perf_counter() - started)
            raise
        except Exception as exc:
            status.failed(time.time(), f"{type(exc).__name__}: {exc}")
            self.metrics.read(exc, time.perf_counter() - started)
            raise
        status.succeeded(time.time())
        self.metrics.read(None, time.perf_counter() - started)
        return stored

    async def _collect(self, ap_title: str, status: ReadStatus, logs: bool) -> int:
        tables = await self._tables(ap_title, (*CONTEXT_TABLES, 23, 28, 52))
        values = meter_values(tables)
        when_unix = meter_time(tables) or time.time()
        when = dt.datetime.fromtimestamp(when_unix, dt.timezone.utc)
        readings = [Reading("present", when, name, values[name]) for name in PRESENT
                    if name in values]
        readings += [Reading("register", when, name, value) for name, value in values.items()
                     if name not in PRESENT]
        read = await self._collect_logs(ap_title, status) if logs else _LogRead()
        readings += read.readings
        for what, why in read.limits.items():
            if why is None:
                status.limits.pop(what, None)
            else:
                if what not in status.limits:
                    log.warning("%s over-limit: %s (read only within the bound)", ap_title,
                                why)
                status.limits[what] = why
        assert self.storage is not None
        stored = await self.storage.store_readings(ap_title, readings)
        if self.publisher is not None:  # committed, with its outbox rows: send them
            self.publisher.wake()
        # Only what is stored moves the cursors: a failed store is read again next time.
        if read.lp_seq is not None:
            status.lp_seq = read.lp_seq
        if read.history_seq is not None:
            status.history_seq = read.history_seq
        # The return of store_readings is the acknowledgement: say so, for operators and tests.
        log.info("stored %d readings for %s at %s", stored, ap_title, when.isoformat())
        self.stats["stored"] += stored
        self.metrics.readings_stored.inc(stored)
        self._publish({"type": "reading", "ap_title": ap_title, "time": when.isoformat(),
                       "values": {r.name: r.value for r in readings if r.kind == "present"}})
        self._spawn_write(self.storage.mark_seen(ap_title, dt.datetime.now(dt.timezone.utc)))
        return stored

    async def _collect_one(self, ap_title: str, logs: bool) -> BaseException | None:
        """One scheduled collection: its failure (None: it succeeded), counted, logged and
        kept in the meter's status, never raised (only a cancellation propagates), so no
        collector task ends with an exception nobody retrieves."""
        # An operator hears of a meter that stops being read (wrong password or key,
        # unreachable) at the default level once, not every interval, and of its recovery.
        failures = self.status(ap_title).consecutive_failures
        try:
            # asyncio.timeout, not wait_for: the collection runs in this task, so there is
            # no inner task whose exception could go unretrieved when it is cancelled
            async with asyncio.timeout(self.config.timeout * 2):
                await self.collect(ap_title, logs=logs)
        except (C1222Error, TimeoutError, OSError, ValueError) as exc:
            self.stats["read_failures"] += 1
            log.log(logging.INFO if failures else logging.WARNING,
                    "collecting %s failed: %s", ap_title, exc or "time-out")
            self._context.pop(ap_title, None)  # re-read the context next time
            return exc
        except Exception as exc:  # a bug: say so loudly, but keep collecting the others
            self.stats["read_failures"] += 1
            log.exception("collecting %s failed unexpectedly", ap_title)
            self._context.pop(ap_title, None)
            return exc
        self.stats["reads"] += 1
        if failures:
            log.warning("reading %s works again, after %d failed collections",
                        ap_title, failures)
        return None

    def _meters(self) -> list[str]:
        """The titles this process collects: registered end devices it owns (relays and
        hosts the master relay told of have no meter tables to read)."""
        return [title for title, node in self.registrar.nodes.items()
                if self.owns(title) and not (node.node_type & NOT_METERS
                                             and not node.node_type & NodeType.END_DEVICE)]

    def _wanted(self, ap_title: str) -> bool:
        return ap_title in self.registrar.nodes and self.owns(ap_title)

    def _collection_counts(self) -> CollectionCounts:
        plan = self.scheduler.plan
        last = plan.last_whole()
        return CollectionCounts(
            totals={name: plan.totals[name] for name in COUNTS},
            last={name: getattr(last, name) if last is not None else 0 for name in COUNTS},
            reasons=dict(plan.reason_totals), running=len(self.scheduler.running),
            owed=len(plan.entries))

    def collection(self) -> dict[str, Any]:
        """The collector's accounting (GET /api/collection): its settings, the reads owed
        and running now, the current interval and the previous ones, newest first."""
        plan = self.scheduler.plan
        history = [s.to_json() for s in reversed(plan.history)]
        return {"interval": plan.interval, "concurrency": self.scheduler.concurrency,
                "attempts": plan.attempts, "spread": plan.spread,
                "log_interval": plan.log_interval, "running": len(self.scheduler.running),
                "queued": plan.queued, "owed": len(plan.entries),
                "current": history[0] if history else None, "history": history[1:],
                "totals": {name: plan.totals[name] for name in COUNTS},
                "reasons": dict(sorted(plan.reason_totals.items()))}


def _refused(number: int, code: int) -> C1222Error:
    """A meter's error answer to a read of table ``number``: the ServiceError of its response
    code (ERR for a code the standard does not define; the message says which)."""
    return SERVICE_ERRORS.get(code, ERR)(f"read of table {number}: response code {code:#04x}")


def _lp_readings(tables: dict[int, bytes], layout: LpLayout, data: bytes,
                 first_seq: int) -> list[Reading]:
    """The readings of Table 64 blocks read incrementally (run in the decoder process)."""
    out: list[Reading] = []
    for interval in lp_intervals_from_bytes(tables, layout, data, first_seq):
        values = {f"ch{k}": v for k, v in enumerate(interval["values"])}
        eis = interval["status"]  # EXTENDED_INT_STATUS, when the meter keeps it
        out += interval_readings(
            interval["end"].replace(tzinfo=dt.timezone.utc), values,
            common_status(eis) if eis else 0,
            {f"ch{k}": channel_status(eis, k) for k in range(len(values))} if eis else None)
    return out


def _history_readings(tables: dict[int, bytes], layout: HistoryLayout, data: bytes,
                      first_seq: int) -> list[Reading]:
    """The readings of Table 74 entries read incrementally (run in the decoder process)."""
    return [event_reading(entry["time"].replace(tzinfo=dt.timezone.utc), entry["seq"],
                          entry["code"], entry["argument"], entry["user_id"])
            for entry in history_entries_from_bytes(tables, layout, data, first_seq)
            if entry["time"] is not None]


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


def node_json(node: Node, status: ReadStatus | None = None) -> dict[str, Any]:
    """A node as the API and the events show it; ``read_status`` is the collector's
    (:meth:`ReadStatus.to_json`, None before its first collection)."""
    via = node.extra.get("via")
    return {"ap_title": node.ap_title, "native_address": native_address_text(node.native_address),
            "via": via if isinstance(via, str) else None,
            "node_type": node.node_type, "device_class": node.device_class.hex(),
            "serial_number": node.serial_number,
            "registration_period": node.registration_period,
            "registered_at": node.registered_at, "last_seen": node.last_seen,
            "state": node.state,
            "read_status": status.to_json() if status is not None else None}


def _node_from_record(record: NodeRecord) -> Node:
    def unix(value: dt.datetime | None) -> float:
        return value.timestamp() if value is not None else 0.0

    try:  # stored as native_address_text: host:port, or hex
        native = native_address_from_text(record.native_address)
    except DecodeError:
        native = record.native_address.encode()
    return Node(ap_title=record.ap_title, native_address=native,
                extra={"via": record.via} if record.via else {},
                node_type=record.node_type, connection_type=record.connection_type,
                device_class=bytes.fromhex(record.device_class or ""),
                serial_number=record.serial_number,
                registration_period=record.registration_period,
                registered_at=unix(record.registered_at), last_seen=unix(record.last_seen),
                state=record.state)


def _decoded(data: bytes) -> Apdu | None:
    """The APDU of logged bytes when they decode in the clear (the log's summary), else None."""
    try:
        from c1222.codec import acse
        return acse.decode(data)
    except (C1222Error, ValueError):
        return None


def _first_response(exchange: Exchange) -> Response | None:
    if exchange.response is None:
        return None
    found = [s for s in exchange.response.epsem.services if isinstance(s, Response)]
    return found[0] if found else None


def _code_text(answer: Response | None) -> str:
    if answer is None:
        return "no response"
    code = answer.response_code
    name = ResponseCode(code).name if code in ResponseCode._value2member_map_ else hex(code)
    return f"{name} ({code:#04x})"
