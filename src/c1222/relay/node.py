"""The C12.22 relay and master relay as running nodes (c1222.md §10.1 "relay";
c1222-network.md; docs/network.md).

A :class:`Relay` is a node with its own AP title, Identify and tables on a transport
:class:`~c1222.transport.endpoint.Endpoint` (TCP and UDP). Every APDU it receives is one of:

* a **response** (A4): matched to the request it forwarded (:class:`~c1222.relay.routes.
  PendingTable`, by outgoing link, A4 and called title) and passed back unchanged; a response
  nobody asked for is dropped and counted;
* a **request for another title** (A2 not its own nor one of its Table 122 multicast titles):
  forwarded unchanged (mode 0: with the EPSEM proxy bit set) on the route's link, or to the
  route's native address, or — no route, and it came from downstream — upstream; UAT when
  nothing routes it, NETR when the next hop cannot be reached, NETT when no answer comes within
  ``forward_timeout`` (design-16 decision 7);
* a **Register or Deregister** at a relay that is not the master: forwarded upstream; its
  response teaches the route (title -> the link it came from) with the period granted;
* a **request for the relay itself**: served by its :class:`~c1222.session.responder.
  Responder` (Identify, Read of Tables 0, 1, 122, 127, Resolve, Trace; at the master also
  Register and Deregister through the shared registrar, :mod:`c1222.session.registrar`).

The master relay (``master=True``) is the registration authority: it assigns titles from
``assign_branch`` to nodes that register with the empty title, ages registrations, and sends
every notification host (a head-end registered with node-type bit 0x08) a Register request on
behalf of each node that registers, and a Deregister request when one leaves (decision 6).

A relay that is not the master registers itself upstream (node type RELAY) with its own title
and native address, keeps that association open (requests for the nodes behind it come down
it) and re-registers before its period runs out or when the association drops.

Transit messages are verified only to read Register exchanges (never fed into the relay's own
replay window: decision 4); the relay's own answers are secured like any node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c1222 import limits
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.segments import MIN_SEGMENT_SIZE
from c1222.codec.services import (
    DefaultReadRequest,
    DeregisterRequest,
    DisconnectRequest,
    FullReadRequest,
    FullWriteRequest,
    PartialReadIndexRequest,
    PartialReadOffsetRequest,
    PartialWriteIndexRequest,
    PartialWriteOffsetRequest,
    ReadResponse,
    TableData,
    IdentifyRequest,
    IdentifyResponse,
    OkResponse,
    RegisterRequest,
    RegisterResponse,
    Request,
    ResolveRequest,
    ResolveResponse,
    Response,
    TraceRequest,
    TraceResponse,
)
from c1222.codes import (
    C1222_PORT,
    EAX_PRIME_MECHANISM,
    NodeType,
    ResponseCode,
    SecurityMode,
)
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import TimeIvSource
from c1222.crypto.policy import unprotect
from c1222.errors import (
    ERR,
    IAR,
    ISC,
    NETR,
    SERVICE_ERRORS,
    SNS,
    UAT,
    C1222Error,
    ConfigurationError,
    DecodeError,
    TransportError,
)
from c1222.relay.routes import (
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PER_SOURCE,
    DEFAULT_MAX_ROUTES,
    Forward,
    PendingTable,
    Route,
    RouteTable,
    trace_answer,
    trace_path,
)
from c1222.relay.tables import build_relay_store
from c1222.relay.wire import Header, error_response, peek, title_key, with_proxy_bit
from c1222.session.registrar import (
    Node,
    RegistrarServices,
    decode_native,
    encode_native,
    native_address_text,
)
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig, ServiceContext
from c1222.tables.access import Principal
from c1222.transport.client import Client, responses
from c1222.transport.endpoint import Address, Endpoint, EndpointLimits, Link, PcapTracer

log = logging.getLogger("c1222.relay")

#: Connection-type bits a relay registers with: connectionless and connection modes (digest 7.2).
CONNECTION_TYPE = 0xF0
#: connection-type bits (c1222.md 7.2): 4-5 connectionless mode supported / accepted, 6-7
#: connection mode supported / accepted. A node with only the first pair is reached by UDP;
#: one with neither (ITR sends 0) by TCP.
CONNECTIONLESS_BITS = 0x30
CONNECTION_BITS = 0xC0
#: Network statistics (Table 127) codes of c1219.md §13 (ITR-STAT) and ours from 2048.
STATISTIC_CODES: dict[str, int] = {
    "octets_sent": 1, "octets_received": 2, "apdus_sent": 3, "apdus_received": 4,
    "apdus_forwarded": 5, "apdus_dropped": 6, "reception_errors": 8,
    "active_associations": 13, "registrations_sent": 18, "registrations_received": 19,
    "registrations_denied": 20, "registrations_failed": 21, "deregistrations_requested": 22,
    # manufacturer-defined (2048 and up)
    "registrations_forwarded": 2048, "routes": 2049, "pending_forwards": 2050,
    "uat_sent": 2051, "netr_sent": 2052, "nett_sent": 2053, "loops_refused": 2054,
    "responses_unmatched": 2055, "notifications_sent": 2056, "notifications_failed": 2057,
    "busy_sent": 2058, "responses_orphaned": 2059, "overload_drops": 2060,
}
#: Seconds between sweeps of expired routes, registrations and forwards.
SWEEP_INTERVAL = 0.25
#: Notifications queued per notification host; the oldest is dropped beyond it.
MAX_NOTIFICATIONS = 10_000
#: Times a UDP requester's resend of a pending request is forwarded again.
MAX_RESENDS = 2
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
REGISTER_TIMEOUT = 10.0
#: Seconds stop() waits for its cancelled tasks to end.
STOP_WAIT = 2.0


@dataclass
class RelayConfig:
    """A relay's settings (``c1222 relay`` options; docs/network.md "Limits")."""

    ap_title: str
    listen: Address = ("127.0.0.1", C1222_PORT)
    master: bool = False
    upstream: Address | None = None
    master_ap_title: str | None = None
    #: Arcs under which the master assigns titles (absolute, dotted).
    assign_branch: str = "2.16.124.113620.1.22.0.123.9000"
    reg_period: int = 3600
    reg_delay: int = 60
    forward_timeout: float = 20.0
    connect_timeout: float = 5.0
    max_routes: int = DEFAULT_MAX_ROUTES
    max_pending: int = DEFAULT_MAX_PENDING
    max_per_source: int = DEFAULT_MAX_PER_SOURCE
    security_mode: int = SecurityMode.CLEARTEXT
    keys: KeyTable = field(default_factory=KeyTable)
    key_id: int | None = None
    pcap: Path | None = None
    multicast: tuple[str, ...] = ()
    serial_number: str = "relay"
    #: The native address the relay registers with (default: where it listens).
    native_address: Address | None = None
    max_connections: int = 1024
    max_per_address: int = 256
    #: Largest APDU sent unsegmented on each link (None: never segment), and the largest
    #: reassembled APDU taken (RQTL beyond): the transport's (codec/segments.py).
    segment_size: int | None = None
    max_apdu_size: int = limits.DEFAULT_MAX_APDU_SIZE

    def validate(self) -> RelayConfig:
        try:
            Uid.parse(self.ap_title)
            if self.master_ap_title is not None:
                Uid.parse(self.master_ap_title)
            branch = Uid.parse(self.assign_branch)
            for title in self.multicast:
                Uid.parse(title)
        except (ValueError, C1222Error) as exc:
            raise ConfigurationError(f"bad AP title: {exc}") from None
        if not branch.arcs:
            raise ConfigurationError("assign_branch: an AP title")
        if not self.master and self.upstream is None:
            raise ConfigurationError("a relay that is not the master needs an upstream")
        if self.security_mode not in (0, 1, 2):
            raise ConfigurationError("security_mode: 0, 1 or 2")
        if self.security_mode and self.key_id is None:
            if not len(self.keys):
                raise ConfigurationError("security_mode: a secured relay needs a key")
            self.key_id = sorted(self.keys)[0]
        if self.key_id is not None and self.key_id not in self.keys:
            raise ConfigurationError(f"key_id: no key {self.key_id}")
        if not 0 < self.reg_period < 1 << 24:
            raise ConfigurationError("reg_period: 1 .. 16777215 seconds")
        if not 0 <= self.reg_delay <= 0xFFFF:
            raise ConfigurationError("reg_delay: 0 .. 65535 seconds")
        for name in ("forward_timeout", "connect_timeout"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigurationError(f"{name}: seconds in (0, 3600]")
        if self.segment_size is not None and not (
                MIN_SEGMENT_SIZE <= self.segment_size <= limits.MAX_APDU_SIZE):
            raise ConfigurationError(f"segment_size: {MIN_SEGMENT_SIZE} .. "
                                     f"{limits.MAX_APDU_SIZE}")
        if not MIN_SEGMENT_SIZE <= self.max_apdu_size <= limits.MAX_APDU_SIZE:
            raise ConfigurationError(f"max_apdu_size: {MIN_SEGMENT_SIZE} .. "
                                     f"{limits.MAX_APDU_SIZE}")
        for name in ("max_routes", "max_pending"):
            if not 1 <= getattr(self, name) <= 10_000_000:
                raise ConfigurationError(f"{name}: 1 .. 10000000")
        return self


@dataclass
class _Notification:
    kind: str  # "register" | "deregister"
    node: Node
    attempts: int = 0


class Relay:
    """One relay or master relay. ``await start()`` (returns the address), ``await stop()``."""

    def __init__(self, config: RelayConfig, *, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config.validate()
        self.wall = wall
        self.monotonic = monotonic
        self.ap_title = Uid.parse(config.ap_title)
        self.title = title_key(self.ap_title)
        self.master = config.master
        self.master_title: Uid | None = (Uid.parse(config.master_ap_title)
                                         if config.master_ap_title else None)
        if self.master:
            self.master_title = self.ap_title
        self.multicast = {title_key(Uid.parse(t)) for t in config.multicast}
        self.routes = RouteTable(max_routes=config.max_routes,
                                 max_per_source=config.max_per_source or None)
        self.pending = PendingTable(config.max_pending)
        self.stats: dict[str, int] = dict.fromkeys(STATISTIC_CODES, 0)
        #: Errors this relay answered with, and Registers (Deregisters) it saw refused, by
        #: response code (its metrics: relay/metrics.py).
        self.refused: Counter[int] = Counter()
        self.denied: Counter[int] = Counter()
        self.nonces = TimeIvSource(wall)
        self.store = build_relay_store(config.serial_number,
                                       tuple(Uid.parse(t) for t in config.multicast),
                                       self.statistics, STATISTIC_CODES)
        self.services = RelayServices(self)
        self.registrar: RegistrarServices | None = None
        handler: Any = self.services
        if self.master:
            self.registrar = RegistrarServices(
                self.ap_title, reg_period=config.reg_period, reg_delay=config.reg_delay,
                on_registered=self._registered, on_deregistered=self._deregistered,
                on_request=self.services.handle_other, max_nodes=config.max_routes,
                max_per_source=config.max_per_source or None, source_of=self._source_host,
                protect_titles=bool(config.security_mode),
                assign_base=Uid.parse(config.assign_branch).absolute().arcs,
                trusted_peer=self._is_relay_link, host_name="master relay")
            handler = self.registrar
        self.responder = Responder(
            ResponderConfig(ap_title=self.ap_title, keys=config.keys,
                            minimum_mode=config.security_mode,
                            max_request_size=config.max_apdu_size,
                            max_response_size=config.max_apdu_size,
                            aliases=tuple(Uid.parse(t) for t in config.multicast)),
            handler, self.nonces, debug=lambda m: log.debug("responder: %s", m))
        self.requester = Requester(self.ap_title, self.nonces, keys=config.keys,
                                   security_mode=config.security_mode, key_id=config.key_id)
        self.tracer = PcapTracer(str(config.pcap)) if config.pcap is not None else None
        self.endpoint = Endpoint(
            self._on_request, tracer=self.tracer, on_link_closed=self._link_closed,
            # a segmented message that cannot be reassembled is refused from its header
            on_segment_error=lambda data, link, code: self.responder.refuse(data, code).data,
            limits_=EndpointLimits(max_connections=config.max_connections,
                                   max_per_address=config.max_per_address,
                                   segment_size=config.segment_size,
                                   max_apdu_size=config.max_apdu_size))
        self.client = Client(self.requester, self.endpoint, clock=wall)
        self.address: Address | None = None
        self.upstream_link: Link | None = None
        self.upstream_registered: asyncio.Event | None = None  # made in start(), on the loop
        self.registration: RegisterResponse | None = None
        self._registered_over: int | None = None  # the upstream link registered over
        self.hosts: dict[str, Node] = {}  # notification hosts (master)
        self._notices: dict[str, deque[_Notification]] = {}
        self._notice_wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._forwards: set[asyncio.Task[None]] = set()
        self._trace_answers: dict[str, tuple[str, ...]] = {}
        self._connecting: dict[str, asyncio.Future[Link | None]] = {}
        self._stopping = False
        self.rng = random.Random()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Address:
        self.upstream_registered = asyncio.Event()
        self.address = await self.endpoint.listen(*self.config.listen)
        self._tasks.append(asyncio.create_task(self._sweep()))
        if not self.master:
            self._tasks.append(asyncio.create_task(self._register_upstream()))
        return self.address

    async def stop(self) -> None:
        self._stopping = True
        for attempt in list(self._connecting.values()):
            attempt.cancel()
        tasks = [*self._tasks, *self._forwards]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: asyncio.wait_for in 3.11 can swallow a cancellation that meets its own
            # time-out, and a task that missed it must not hold the shutdown.
            await asyncio.wait(tasks, timeout=STOP_WAIT)
        await self.endpoint.close()
        if self.tracer is not None:
            self.tracer.close()

    def summary(self) -> str:
        """The line ``c1222 relay`` prints when it starts (design-16 "Process names")."""
        assert self.address is not None
        host, port = self.address
        role = "master" if self.master else (
            "upstream {}:{}".format(*self.config.upstream) if self.config.upstream else "")
        return f"relay {self.config.ap_title} ({role}) listening on tcp+udp {host}:{port}"

    @property
    def notifications_queued(self) -> int:
        """Notifications waiting to be sent to the notification hosts (master), all hosts."""
        return sum(len(queue) for queue in self._notices.values())

    def statistics(self) -> dict[str, int]:
        """Counters as they are now (Table 127), gauges filled in."""
        self.stats["routes"] = len(self.routes)
        self.stats["pending_forwards"] = len(self.pending)
        endpoint = getattr(self, "endpoint", None)  # None while the node is being built
        self.stats["active_associations"] = endpoint.connections if endpoint else 0
        registrar = getattr(self, "registrar", None)  # the master refuses in its registrar
        if registrar is not None:
            self.stats["registrations_denied"] = sum(registrar.refused.values())
        return dict(self.stats)

    # ------------------------------------------------------------------ receiving

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        self.stats["octets_received"] += len(data)
        self.stats["apdus_received"] += 1
        try:
            header = peek(data)
        except DecodeError as exc:
            self._drop(f"undecodable APDU from {link.name}: {exc}", "reception_errors")
            return None, False
        if header.is_response:
            back = self._response(data, header, link)  # matched now, in arrival order
            if back is not None:
                self._spawn(self._pass_back(back, with_proxy_bit(data, header)))
            return None, False
        called = title_key(header.called)
        if called and called != self.title and called not in self.multicast:
            if self._busy(header, link):
                return None, False
            self._spawn(self._forward(data, header, link))
            return None, False
        apdu = self._verified(data)
        if apdu is not None:
            # (a Register from upstream is not for a relay to pass on: its responder refuses)
            if (not self.master and _registration(apdu) is not None
                    and (self.upstream_link is None or link.id != self.upstream_link.id)):
                if not self._busy(header, link):
                    self._spawn(self._forward_up(data, header, link, apdu))
                return None, False
            await self._prepare_trace(apdu)
        reply = self.responder.receive(data, link.id, self.wall())
        self._trace_answers.clear()
        if reply.data is not None:
            self._count_sent(reply.data)
        return reply.data, reply.close

    def _verified(self, data: bytes) -> Apdu | None:
        """The message verified and decrypted with the network's keys, outside any replay
        window (decision 4), or None when it cannot be (a foreign key, tampering)."""
        try:
            return unprotect(data, self.config.keys)
        except C1222Error:
            return None

    def _busy(self, header: Header, link: Link) -> bool:
        """Forwards under way (some may wait to connect) are capped like pending ones:
        beyond ``max_pending`` the requester gets BSY at once (nothing is queued)."""
        if len(self._forwards) < self.config.max_pending:
            return False
        if len(self._forwards) < 2 * self.config.max_pending:
            self._spawn(self._refuse(header, ResponseCode.BSY, link))
        else:  # even the BSY answers are backed up: drop, as an overloaded link would
            self._drop(f"overloaded: {len(self._forwards)} forwards under way",
                       "overload_drops")
        return True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._forwards.add(task)
        task.add_done_callback(self._forwards.discard)

    def _drop(self, why: str, counter: str | None = None) -> None:
        self.stats["apdus_dropped"] += 1
        if counter:
            self.stats[counter] += 1
        log.info("dropped: %s", why)

    def _count_sent(self, data: bytes) -> None:
        self.stats["octets_sent"] += len(data)
        self.stats["apdus_sent"] += 1

    async def _send(self, link: Link, data: bytes) -> None:
        await link.send(data)
        self._count_sent(data)

    async def _refuse(self, header: Header, code: ResponseCode, link: Link) -> None:
        """Answer ``header``'s request with the error ``code`` from this relay."""
        name = {ResponseCode.UAT: "uat_sent", ResponseCode.NETR: "netr_sent",
                ResponseCode.NETT: "nett_sent", ResponseCode.BSY: "busy_sent"}.get(code)
        if name:
            self.stats[name] += 1
        self.refused[code] += 1
        if link.closed:
            return
        data = error_response(header, code, self.ap_title, self.nonces.invocation_id())
        with contextlib.suppress(TransportError):
            await self._send(link, data)

    # ------------------------------------------------------------------ responses

    def _response(self, data: bytes, header: Header, link: Link) -> Link | None:
        """The link a response goes back on (its request's), learning a route from a
        Register response on the way; None when nobody here asked for it (dropped)."""
        forward = self.pending.match(link.id, header.called_invocation_id or 0,
                                     title_key(header.called))
        if forward is None:
            self._drop(f"a response nobody here asked for, from {link.name}",
                       "responses_unmatched")
            return None
        if forward.register is not None:
            self._learn(data, forward)
        back = self.endpoint.find_link(forward.in_link)  # type: ignore[arg-type]
        if back is None:
            self._drop("the requester's association closed before the response came",
                       "responses_orphaned")
            return None
        self.stats["apdus_forwarded"] += 1
        return back

    async def _pass_back(self, back: Link, data: bytes) -> None:
        with contextlib.suppress(TransportError):
            await self._send(back, data)

    def _learn(self, data: bytes, forward: Forward) -> None:
        """A Register (Deregister) response passing down: learn (forget) the route."""
        request, source = forward.register  # type: ignore[misc]
        answered = (RegisterRequest, DeregisterRequest)
        try:
            apdu = unprotect(data, self.config.keys, requests=[request])
        except C1222Error:
            return
        found = [s for s in responses(apdu) if isinstance(s, (RegisterResponse, OkResponse))]
        if not isinstance(request, answered) or not found:
            self.stats["registrations_denied"] += 1
            codes = [s.response_code for s in responses(apdu)]
            self.denied[codes[0] if codes else ResponseCode.ERR] += 1
            return
        if isinstance(request, DeregisterRequest):
            self.routes.remove(title_key(request.ap_title))
            return
        response = found[0]
        if not isinstance(response, RegisterResponse):
            return
        if self.master_title is None and apdu.calling_ap_title is not None:
            self.master_title = apdu.calling_ap_title  # the master answered (c1222-network.md)
        self._add_route(title_key(response.reg_ap_title), forward.in_link,
                        request.native_address, response.reg_period, request.node_type,
                        source, request.connection_type)

    def _add_route(self, title: str, link: Any, native: bytes, period: float, node_type: int,
                   source: str | None, connection_type: int) -> Route:
        now = self.monotonic()
        via = None
        relay = self.routes.relay_on(link, now)
        if relay is not None and relay.title != title:
            via = relay.title
        route = self.routes.learn(title, link, native, period, now, node_type=node_type,
                                  via=via, source=source,
                                  connectionless=bool(connection_type & CONNECTIONLESS_BITS
                                                      and not connection_type & CONNECTION_BITS))
        if node_type & NodeType.RELAY:
            # nodes that registered over this link before the relay itself did sit behind it
            for other in self.routes:
                if other.link == link and other.title != title and other.via is None:
                    other.via = title
        log.info("route %s -> %s (%s)", title, native_address_text(native),
                 f"via {via}" if via else "attached")
        return route

    # ------------------------------------------------------------------ forwarding

    async def _forward(self, data: bytes, header: Header, link: Link) -> None:
        """A request for another title: deliver it along its route, else upstream."""
        if self._loop(header, link):
            await self._refuse(header, ResponseCode.NETR, link)
            return
        called = title_key(header.called)
        now = self.monotonic()
        route = self.routes.get(called, now)
        if route is None:  # (the master's own title is never routed here: it is upstream)
            if self.master or (self.upstream_link is not None
                               and link.id == self.upstream_link.id):
                await self._refuse(header, ResponseCode.UAT, link)
                return
            apdu = self._verified(data)
            if apdu is not None and _registration(apdu) is not None:
                await self._forward_up(data, header, link, apdu)
                return
            out = await self._upstream()
        else:
            out = await self._route_link(route)
        if out is None:
            await self._refuse(header, ResponseCode.NETR, link)
            return
        await self._send_on(out, data, header, link)

    def _loop(self, header: Header, link: Link) -> bool:
        """The same message (calling title, A8) arrives on another association while it is
        still pending here: it went round a routing loop (docs/network.md "Loops")."""
        calling = title_key(header.calling)
        pending = self.pending.in_transit(calling, header.calling_invocation_id)
        if pending is None or pending.in_link == link.id:
            return False
        self.stats["loops_refused"] += 1
        log.warning("routing loop: %s from %s came back on %s", calling or "(no title)",
                    pending.in_link, link.name)
        return True

    async def _send_on(self, out: Link, data: bytes, header: Header, link: Link,
                       register: object | None = None) -> None:
        calling = title_key(header.calling)
        again = self.pending.in_transit(calling, header.calling_invocation_id)
        if again is not None and again.in_link == link.id:
            # The same message again on the same association: a UDP requester's resend
            # (digest 6.2) goes out again, a few times at most; on TCP, which never resends,
            # it can only have come round a loop (docs/network.md "Loops").
            if link.transport != "udp" or again.resends >= MAX_RESENDS:
                self.stats["loops_refused"] += 1
                await self._refuse(header, ResponseCode.NETR, link)
                return
            again.resends += 1
            out = self.endpoint.find_link(again.out_link) or out  # type: ignore[arg-type]
        else:
            forward = Forward(out_link=out.id, invocation_id=header.calling_invocation_id,
                              calling=calling, in_link=link.id,
                              deadline=self.monotonic() + self.config.forward_timeout,
                              request=data, register=register)
            if not self.pending.add(forward):
                await self._refuse(header, ResponseCode.BSY, link)
                return
        try:
            await self._send(out, with_proxy_bit(data, header))
        except TransportError:
            self.pending.match(out.id, header.calling_invocation_id, calling)
            await self._refuse(header, ResponseCode.NETR, link)
            return
        self.stats["apdus_forwarded"] += 1

    async def _route_link(self, route: Route) -> Link | None:
        """The open link of ``route``, reconnecting to its native address (or to the relay
        it sits behind) when its association closed; None when unreachable (NETR)."""
        if route.link is not None:
            link = self.endpoint.find_link(route.link)  # type: ignore[arg-type]
            if link is not None:
                return link
        target = route
        if route.via is not None:
            relay = self.routes.get(route.via, self.monotonic())
            if relay is None:
                return None
            if relay.link is not None:
                link = self.endpoint.find_link(relay.link)  # type: ignore[arg-type]
                if link is not None:
                    self.routes.set_link(route, link.id)
                    return link
            target = relay
        # One connection attempt per next hop at a time: requests arriving meanwhile wait
        # for the same attempt instead of opening connections of their own.
        attempt = self._connecting.get(target.title)
        if attempt is None:
            attempt = asyncio.ensure_future(self._connect(target))
            self._connecting[target.title] = attempt
            attempt.add_done_callback(lambda _: self._connecting.pop(target.title, None))
        link = await asyncio.shield(attempt)
        if link is not None:
            self.routes.set_link(route, link.id)
        return link

    async def _connect(self, target: Route) -> Link | None:
        try:
            host, port = decode_native(target.native_address)
            link = await self.endpoint.connect(
                host, port, "udp" if target.connectionless else "tcp",
                timeout=self.config.connect_timeout)
        except (ValueError, TransportError, OSError) as exc:
            log.info("cannot reach %s at %s: %s", target.title,
                     native_address_text(target.native_address), exc)
            return None
        self.routes.set_link(target, link.id)
        return link

    async def _forward_up(self, data: bytes, header: Header, link: Link, apdu: Apdu) -> None:
        """A Register/Deregister at a relay that is not the master: checked, then upstream."""
        found = _registration(apdu)
        assert found is not None
        now = self.monotonic()
        source = link.peer[0]
        title = title_key(found.ap_title)
        downstream_relay = self.routes.relay_on(link.id, now) is not None
        if isinstance(found, RegisterRequest):
            self.stats["registrations_received"] += 1
            refusal: ResponseCode | None = None
            if not downstream_relay:
                held = self.routes.held_elsewhere(title, source, now) if title else None
                if held is not None and self.config.security_mode:
                    refusal = ResponseCode.ISC  # a title held from another address
                elif self.routes.may_learn(title, source, now) is not None:
                    refusal = ResponseCode.ONP  # too many titles from one source, or full
            if refusal is not None:
                self.stats["registrations_denied"] += 1
                self.denied[refusal] += 1
                log.warning("Register for %s from %s refused: %s", title or "(empty title)",
                            link.name, refusal.name)
                await self._refuse(header, refusal, link)
                return
        else:
            self.stats["deregistrations_requested"] += 1
            route = self.routes.get(title, now)
            if (self.config.security_mode and route is not None and route.source is not None
                    and not downstream_relay and route.source != source):
                await self._refuse(header, ResponseCode.ISC, link)
                return
        out = await self._upstream()
        if out is None:
            await self._refuse(header, ResponseCode.NETR, link)
            return
        self.stats["registrations_forwarded"] += 1
        await self._send_on(out, data, header, link, register=(found, source))

    async def _upstream(self) -> Link | None:
        """The association to the upstream relay, connected on demand (one attempt at a
        time, shared by every request that needs it); None when it cannot be reached."""
        link = self.upstream_link
        if link is not None and not link.closed:
            return link
        if self.config.upstream is None:
            return None
        attempt = self._connecting.get("")  # "" (no title): the upstream
        if attempt is None:
            attempt = asyncio.ensure_future(self._connect_upstream())
            self._connecting[""] = attempt
            attempt.add_done_callback(lambda _: self._connecting.pop("", None))
        return await asyncio.shield(attempt)

    async def _connect_upstream(self) -> Link | None:
        assert self.config.upstream is not None
        try:
            self.upstream_link = await self.client.connect(
                *self.config.upstream, timeout=self.config.connect_timeout)
        except TransportError as exc:
            log.info("upstream unreachable: %s", exc)
            return None
        return self.upstream_link

    def _link_closed(self, link: Link) -> None:
        self.responder.close(link.id)
        self.routes.link_closed(link.id)
        out, _ = self.pending.link_closed(link.id)
        for forward in out:
            back = self.endpoint.find_link(forward.in_link)  # type: ignore[arg-type]
            if back is not None:
                with contextlib.suppress(DecodeError):
                    self._spawn(self._refuse(peek(forward.request), ResponseCode.NETR, back))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = self.monotonic()
            for forward in self.pending.expired(now):
                back = self.endpoint.find_link(forward.in_link)  # type: ignore[arg-type]
                if back is not None:
                    with contextlib.suppress(DecodeError):
                        self._spawn(self._refuse(peek(forward.request), ResponseCode.NETT,
                                                 back))
            for route in self.routes.expire(now):
                log.info("route %s expired", route.title)
            if self.registrar is not None:
                for node in self.registrar.expire(self.wall()):
                    log.info("registration of %s expired", node.ap_title)
                    self._deregistered(node)

    # ------------------------------------------------------------------ own registration

    async def _register_upstream(self) -> None:
        """Register this relay with its upstream (node type RELAY) and stay registered."""
        backoff = BACKOFF_FIRST
        assert self.upstream_registered is not None
        while not self._stopping:
            try:
                response = await self._register_once()
            except (C1222Error, OSError) as exc:
                self.upstream_registered.clear()
                self.stats["registrations_failed"] += 1
                wait = backoff * (0.5 + self.rng.random())
                log.warning("registration upstream failed: %s; retrying in %.1f s", exc, wait)
                await asyncio.sleep(wait)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            backoff = BACKOFF_FIRST
            self.registration = response
            link = self.upstream_link
            if link is not None:
                if self._registered_over is not None and self._registered_over != link.id:
                    self._renew_downstream()
                self._registered_over = link.id
            self.upstream_registered.set()
            log.info("registered upstream as %s, period %d s", self.config.ap_title,
                     response.reg_period)
            await self._hold(response.reg_period)
            self.upstream_registered.clear()
            if self.upstream_link is None or self.upstream_link.closed:
                # the association was lost: a random wait up to the master's reg-delay, so
                # the relays under a restarted one do not all come back at once
                await asyncio.sleep(self.rng.uniform(0, response.reg_delay))

    def _renew_downstream(self) -> None:
        """Registered upstream over a new association (the relay above restarted, or the
        path was lost): the relays above know none of the nodes behind this one any more.
        Close the associations those nodes registered over, so each registers again (after
        its random reg-delay) and every relay on the path learns it anew."""
        closing = set()
        for route in self.routes:
            link = (self.endpoint.find_link(route.link)  # type: ignore[arg-type]
                    if route.link is not None else None)
            if link is not None and link.accepted:
                closing.add(link)
        if closing:
            log.warning("registered upstream anew: asking %d downstream associations to "
                        "register again", len(closing))
        for link in closing:
            link.close()

    async def _register_once(self) -> RegisterResponse:
        link = await self._upstream()
        if link is None:
            raise TransportError("upstream {}:{} unreachable".format(*self.config.upstream))
        host, port = self.config.native_address or self.address  # type: ignore[misc]
        request = RegisterRequest(
            node_type=NodeType.RELAY, connection_type=CONNECTION_TYPE,
            device_class=b"\x00\x00\x00\x00", ap_title=self.ap_title,
            serial_number=Uid.parse("." + ".".join(str(b) for b in
                                                   self.config.serial_number.encode())),
            native_address=encode_native(host, port),
            registration_period=self.config.reg_period)
        self.stats["registrations_sent"] += 1
        apdu = await self.client.call([request], called=self.master_title, link=link,
                                      timeout=REGISTER_TIMEOUT)
        found = responses(apdu)
        if not found or not isinstance(found[0], RegisterResponse):
            code = found[0].response_code if found else ResponseCode.ERR
            error = SERVICE_ERRORS.get(code, ERR)
            raise error(f"refused: {error.code.name}")
        if self.master_title is None and apdu.calling_ap_title is not None:
            self.master_title = apdu.calling_ap_title
        return found[0]

    async def _hold(self, period: int) -> None:
        margin = 300 if period > 1500 else period / 5
        deadline = self.monotonic() + max(0.5, period - margin)
        while self.monotonic() < deadline:
            if self.upstream_link is None or self.upstream_link.closed:
                return
            await asyncio.sleep(0.2)

    # ------------------------------------------------------------------ Trace

    async def _prepare_trace(self, apdu: Apdu) -> None:
        """Ask the next relay for the rest of a Trace path before the responder answers
        (the responder is synchronous; design-16 decision 8)."""
        for service in apdu.epsem.services:
            if not isinstance(service, TraceRequest):
                continue
            target = title_key(service.ap_title)
            try:
                step = trace_answer(self.routes, target, self.title, self.monotonic())
            except KeyError:
                continue
            if isinstance(step, tuple):
                self._trace_answers[target] = step
                continue
            rest = await self._ask_trace(step, service.ap_title)
            if rest is not None:
                self._trace_answers[target] = trace_path(self.title, rest)

    async def _ask_trace(self, relay: str, title: Uid) -> tuple[str, ...] | None:
        route = self.routes.get(relay, self.monotonic())
        if route is None:
            return None
        link = await self._route_link(route)
        if link is None:
            return None
        try:
            apdu = await self.client.call([TraceRequest(title)], called=Uid.parse(relay),
                                          link=link, timeout=self.config.forward_timeout / 2)
        except C1222Error as exc:
            log.info("Trace at %s failed: %s", relay, exc)
            return None
        found = responses(apdu)
        if found and isinstance(found[0], TraceResponse):
            return tuple(title_key(t) for t in found[0].ap_titles)
        return None

    # ------------------------------------------------------------------ master relay

    def _source_host(self, peer: Any) -> str | None:
        link = self.endpoint.find_link(peer) if isinstance(peer, int) else None
        return link.peer[0] if link is not None else None

    def _is_relay_link(self, peer: Any) -> bool:
        return self.routes.relay_on(peer, self.monotonic()) is not None

    def _registered(self, node: Node) -> None:
        self.stats["registrations_received"] += 1
        self._add_route(node.ap_title, node.peer, node.native_address,
                        node.registration_period, node.node_type, node.source,
                        node.connection_type)
        if node.node_type & NodeType.NOTIFICATION_HOST:
            # A new host, or one registering again over another association (restarted, or
            # a new process under its title, e.g. a conformance run after one that never
            # deregistered): it may know nothing yet, so it is told of every node again.
            previous = self.hosts.get(node.ap_title)
            fresh = previous is None or previous.peer != node.peer
            self.hosts[node.ap_title] = node
            if fresh:
                for other in list(self.registrar.nodes.values()):  # type: ignore[union-attr]
                    if other.ap_title != node.ap_title:
                        self._notify_one(node.ap_title, _Notification("register", other))
        for host in list(self.hosts):
            if host != node.ap_title:
                self._notify_one(host, _Notification("register", node))

    def _deregistered(self, node: Node) -> None:
        self.stats["deregistrations_requested"] += 1
        self.routes.remove(node.ap_title)
        if self.hosts.pop(node.ap_title, None) is not None:
            self._notices.pop(node.ap_title, None)
            wake = self._notice_wake.pop(node.ap_title, None)
            if wake is not None:
                wake.set()
        for host in list(self.hosts):
            self._notify_one(host, _Notification("deregister", node))

    def _notify_one(self, host: str, notice: _Notification) -> None:
        queue = self._notices.get(host)
        if queue is None:
            queue = self._notices[host] = deque(maxlen=MAX_NOTIFICATIONS)
            self._notice_wake[host] = asyncio.Event()
            self._spawn(self._notifier(host))  # ends when the host deregisters
        if len(queue) == queue.maxlen:
            self.stats["notifications_failed"] += 1  # the oldest falls off
        queue.append(notice)
        self._notice_wake[host].set()

    async def _notifier(self, host: str) -> None:
        """Send one notification host its notifications in order, retrying with back-off
        while the host stays registered (decision 6)."""
        backoff = BACKOFF_FIRST
        while host in self.hosts and not self._stopping:
            queue = self._notices.get(host)
            wake = self._notice_wake.get(host)
            if queue is None or wake is None:
                return
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            notice = queue[0]
            try:
                await self._send_notification(self.hosts[host], notice)
            except (C1222Error, OSError, KeyError) as exc:
                self.stats["notifications_failed"] += 1
                log.info("notification of %s to %s failed: %s", notice.node.ap_title, host, exc)
                await asyncio.sleep(backoff * (0.5 + self.rng.random()))
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            backoff = BACKOFF_FIRST
            if queue and queue[0] is notice:
                queue.popleft()
            self.stats["notifications_sent"] += 1

    async def _send_notification(self, host: Node, notice: _Notification) -> None:
        link = self.endpoint.find_link(host.peer) if isinstance(host.peer, int) else None
        if link is None:
            address = decode_native(host.native_address)
            link = await self.endpoint.connect(*address, timeout=self.config.connect_timeout)
            host.peer = link.id
        node = notice.node
        title = Uid.parse(node.ap_title)
        request: Request
        if notice.kind == "register":
            request = RegisterRequest(
                node_type=node.node_type, connection_type=node.connection_type,
                device_class=node.device_class, ap_title=title,
                serial_number=_serial_uid(node.serial_number),
                native_address=node.native_address,
                registration_period=min(node.registration_period, 0xFFFFFF))
        else:
            request = DeregisterRequest(title)
        apdu = await self.client.call([request], called=Uid.parse(host.ap_title), link=link,
                                      timeout=REGISTER_TIMEOUT)
        found = responses(apdu)
        if found and found[0].response_code != ResponseCode.OK:
            log.info("notification host %s answered %s to %s of %s", host.ap_title,
                     ResponseCode(found[0].response_code).name, notice.kind, node.ap_title)


def _read(data: bytes) -> ReadResponse:
    return ReadResponse(table_data=TableData(data))


def _serial_uid(serial: str) -> Uid:
    """The serial number as the registrar stored it (``str(Uid)``) back to a UID."""
    try:
        return Uid.parse(serial)
    except (ValueError, C1222Error):
        return Uid.parse("." + ".".join(str(b) for b in serial.encode("utf-8")))


def _registration(apdu: Apdu) -> RegisterRequest | DeregisterRequest | None:
    """The Register or Deregister a message carries alone (what a relay passes upstream);
    None for anything else, which is the relay's own to serve."""
    services = apdu.epsem.services
    if len(services) == 1 and isinstance(services[0], (RegisterRequest, DeregisterRequest)):
        return services[0]
    return None


class RelayServices:
    """The relay's own services (a :class:`~c1222.session.responder.ServiceHandler`):
    Identify, Resolve, Trace and Read of its tables; at the master, what the registrar
    does not serve itself (``handle_other``)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def handle(self, request: Request, ctx: ServiceContext) -> Response:
        if isinstance(request, IdentifyRequest):
            return IdentifyResponse(std=3, ver=1, rev=0,
                                    security_mechanisms=(Uid(EAX_PRIME_MECHANISM),))
        if isinstance(request, ResolveRequest):
            relay = self.relay
            title = title_key(request.ap_title)
            if title == relay.title and relay.address is not None:
                host, port = relay.config.native_address or relay.address
                return ResolveResponse(native_address=encode_native(host, port))
            route = relay.routes.get(title, relay.monotonic())
            if route is None:
                raise UAT(f"{request.ap_title} is not registered here")
            return ResolveResponse(native_address=route.native_address)
        response = self.handle_other(request, ctx)
        if response is None:
            raise SNS(f"{request.service} is not served by a relay")
        return response

    def handle_other(self, request: Request, ctx: ServiceContext) -> Response | None:
        relay = self.relay
        if isinstance(request, TraceRequest):
            title = title_key(request.ap_title)
            path = relay._trace_answers.get(title)  # asked of the next relay in advance
            if path is None:
                try:
                    step = trace_answer(relay.routes, title, relay.title, relay.monotonic())
                except KeyError:
                    raise UAT(f"{request.ap_title} is not registered here") from None
                if not isinstance(step, tuple):
                    raise NETR(f"the relay {step} did not answer the Trace")
                path = step
            return TraceResponse(ap_titles=tuple(Uid.parse(t) for t in path))
        if isinstance(request, (RegisterRequest, DeregisterRequest)):
            raise ISC("register through the master relay")
        store = relay.store
        if isinstance(request, FullReadRequest):
            return _read(store.full_read(request.table_id, principal=ctx.principal))
        if isinstance(request, PartialReadOffsetRequest):
            return _read(store.partial_read_offset(request.table_id, request.offset,
                                                   request.octet_count,
                                                   principal=ctx.principal))
        if isinstance(request, PartialReadIndexRequest):
            return _read(store.partial_read_index(request.table_id, request.indices,
                                                  request.element_count,
                                                  principal=ctx.principal))
        if isinstance(request, DefaultReadRequest):  # a relay's default data: its statistics
            return _read(store.full_read(127, principal=ctx.principal))
        if isinstance(request, DisconnectRequest):
            ctx.close = True  # the transport closes this association after the response
            return OkResponse()
        if isinstance(request, (FullWriteRequest, PartialWriteOffsetRequest,
                                PartialWriteIndexRequest)):
            raise IAR("the relay's tables are read-only")
        return None

    def authenticate(self, user_id: int, password: bytes) -> Principal:
        raise ISC("the relay has no password-protected tables")

    def notice(self, event: str, ctx: ServiceContext | None, detail: str = "") -> None:
        pass

