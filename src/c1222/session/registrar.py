"""The registrar of a head-end or master relay: answers Register, Deregister and Resolve
(digest 7.2, 7.3; c1222-network.md "Roles").

:class:`RegistrarServices` is a :class:`~c1222.session.responder.ServiceHandler`: a node that
registers gets its AP title confirmed (or one assigned when it sent the empty title ``0D 00``),
the registration delay and period, and reg-info; the registry remembers its native address,
node type, device class, serial number, the association it registered over and when it was last
seen. Resolve answers with a registered node's native address; Identify describes the host.

What a peer can make the registry hold is bounded (docs/storage.md, "Registration limits"):
``max_nodes`` titles in all, ``max_per_source`` distinct titles registered from one source
address (a Register over either cap is refused with ONP, operation not possible), and with
``protect_titles`` (secured modes) a title still held from one address cannot be registered or
deregistered from another (ISC). :meth:`RegistrarServices.forget` drops nodes aged out of
storage, :meth:`RegistrarServices.expire` those whose registration period ran out (the master
relay ages its registrations itself).

Registers forwarded by a relay arrive over that relay's association: ``trusted_peer`` names such
associations, exempt from ``max_per_source`` (each relay caps its own downstream sources).

The head-end imports these names from :mod:`c1222.headend.registry`, which re-exports them.

Native addresses (c1222-network.md, design-16 decision 1) are :mod:`c1222.codec.native`'s;
:func:`encode_native` and :func:`decode_native` wrap it with ValueError for the callers here, and
Resolve answers the binary form even for a node that registered a text address.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from c1222.codec.ber import Uid
from c1222.codec.native import decode_native_address, encode_native_address, native_address_text
from c1222.codec.services import (
    DeregisterRequest,
    IdentifyRequest,
    IdentifyResponse,
    OkResponse,
    RegisterRequest,
    RegisterResponse,
    Request,
    ResolveRequest,
    ResolveResponse,
    Response,
)
from c1222.codes import EAX_PRIME_MECHANISM
from c1222.errors import ISC, ONP, SNS, UAT, DecodeError, LocalProtocolError, ServiceError
from c1222.session.responder import ServiceContext
from c1222.tables.access import Principal

#: reg-info (digest 7.2): bit 0 direct messaging available, 4-7 connectionless and connection
#: modes supported and accepted.
REG_INFO = 0xF1
#: Arcs under which titles are assigned to nodes that register without one.
ASSIGNED_BASE = (2, 16, 124, 113620, 1, 22, 0, 123, 9000)


def encode_native(host: str, port: int) -> bytes:
    """A native address in binary form (:func:`c1222.codec.native.encode_native_address`);
    ValueError when ``host`` is not an IP address."""
    try:
        return encode_native_address(host, port)
    except LocalProtocolError as exc:
        raise ValueError(str(exc)) from None


def decode_native(data: bytes) -> tuple[str, int]:
    """(host, port) of a native address, binary or ASCII ``host:port`` with an IP literal
    (:func:`c1222.codec.native.decode_native_address`); ValueError when it is neither."""
    try:
        return decode_native_address(data)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None


def _binary(native_address: bytes) -> bytes:
    """What Resolve sends: the binary form of an IP address, even one registered as text;
    an address of another kind goes back as registered."""
    try:
        return encode_native(*decode_native(native_address))
    except ValueError:
        return native_address


@dataclass
class Node:
    """One registered node."""

    ap_title: str  # absolute, dotted
    native_address: bytes
    node_type: int
    connection_type: int
    device_class: bytes
    serial_number: str
    registration_period: int
    registered_at: float
    last_seen: float
    peer: Hashable = None  # the association it registered over (a transport link id)
    source: str | None = None  # the address (host) the Register came from, if known
    state: str = "registered"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The native address as text (``host:port`` for IP nodes, hex otherwise)."""
        return native_address_text(self.native_address)

    @property
    def expires(self) -> float:
        return self.last_seen + self.registration_period


class RegistrarServices:
    """Answers the registration services; ``on_registered``/``on_deregistered`` are told."""

    def __init__(self, ap_title: Uid, *, reg_period: int = 3600, reg_delay: int = 60,
                 on_registered: Callable[[Node], None] | None = None,
                 on_deregistered: Callable[[Node], None] | None = None,
                 on_request: Callable[[Request, ServiceContext], Response | None] | None = None,
                 max_nodes: int = 100_000, max_per_source: int | None = 64,
                 source_of: Callable[[Hashable], str | None] | None = None,
                 protect_titles: bool = False,
                 assign_base: tuple[int, ...] = ASSIGNED_BASE,
                 trusted_peer: Callable[[Hashable], bool] | None = None,
                 host_name: str = "head-end") -> None:
        self.ap_title = ap_title
        self.reg_period = reg_period
        self.reg_delay = reg_delay
        self.nodes: dict[str, Node] = {}
        self.on_registered = on_registered
        self.on_deregistered = on_deregistered
        self.on_request = on_request  # other services (a head-end may serve more)
        self.max_nodes = max_nodes
        #: Distinct titles one source address may hold (None or 0: no cap).
        self.max_per_source = max_per_source
        #: The source address (host) of an association; without it no per-source rule applies.
        self.source_of = source_of
        self.protect_titles = protect_titles
        self.assign_base = tuple(assign_base)
        #: Associations whose Registers a relay forwarded (exempt from max_per_source).
        self.trusted_peer = trusted_peer
        self.host_name = host_name
        self._assigned = itertools.count(1)
        self._by_source: dict[str, set[str]] = {}
        #: Register requests refused, by response code (a master relay's metrics).
        self.refused: Counter[int] = Counter()

    def handle(self, request: Request, ctx: ServiceContext) -> Response:
        if isinstance(request, RegisterRequest):
            try:
                return self.register(request, ctx)
            except ServiceError as exc:
                self.refused[exc.code] += 1
                raise
        if isinstance(request, DeregisterRequest):
            title = str(request.ap_title.absolute())
            node = self.nodes.get(title)
            if node is None:
                raise UAT(f"{title} is not registered")
            self._check_holder(node, self._source(ctx), ctx.now)
            del self.nodes[title]
            node.state = "deregistered"
            if self.on_deregistered is not None:
                self.on_deregistered(node)
            return OkResponse()
        if isinstance(request, ResolveRequest):
            node = self.nodes.get(str(request.ap_title.absolute()))
            if node is None:
                raise UAT(f"{request.ap_title} is not registered")
            return ResolveResponse(native_address=_binary(node.native_address))
        if isinstance(request, IdentifyRequest):
            return IdentifyResponse(std=3, ver=1, rev=0,
                                    security_mechanisms=(Uid(EAX_PRIME_MECHANISM),))
        if self.on_request is not None:
            response = self.on_request(request, ctx)
            if response is not None:
                return response
        raise SNS(f"{request.service} is not served by the {self.host_name}")

    def register(self, request: RegisterRequest, ctx: ServiceContext) -> RegisterResponse:
        title = request.ap_title
        source = self._source(ctx)
        if self.trusted_peer is not None and self.trusted_peer(ctx.peer):
            source_capped = False
        else:
            source_capped = True
        if not title.arcs:  # "0D 00": the node asks for a title (digest 7.2)
            if source_capped:
                self._check_source_cap(source, None)  # before a title is spent on it
            title = self._free_title()
        key = str(title.absolute())
        previous = self.nodes.get(key)
        if previous is not None:
            self._check_holder(previous, source, ctx.now)
        elif len(self.nodes) >= self.max_nodes:
            raise ONP("registry full")
        if source_capped:
            self._check_source_cap(source, key)
        node = Node(
            ap_title=key, native_address=request.native_address, node_type=request.node_type,
            connection_type=request.connection_type, device_class=request.device_class,
            serial_number=str(request.serial_number), registration_period=min(
                request.registration_period, self.reg_period) or self.reg_period,
            registered_at=previous.registered_at if previous else ctx.now,
            last_seen=ctx.now, peer=ctx.peer, source=source)
        self.nodes[key] = node
        if source is not None and source_capped:  # a relay's forwarded titles: its own cap
            self._by_source.setdefault(source, set()).add(key)
        if self.on_registered is not None:
            self.on_registered(node)
        return RegisterResponse(reg_ap_title=title, reg_delay=self.reg_delay,
                                reg_period=node.registration_period, reg_info=REG_INFO)

    def _free_title(self) -> Uid:
        """The next title of the assignment branch that no node holds."""
        while True:
            title = Uid(self.assign_base + (next(self._assigned),))
            if str(title.absolute()) not in self.nodes:
                return title

    def expire(self, now: float) -> list[Node]:
        """Drop the nodes whose registration period ran out before ``now`` (they did not
        re-register in time); the ones dropped. Their ``state`` becomes ``expired``."""
        dropped = [n for n in self.nodes.values() if n.expires < now]
        for node in dropped:
            del self.nodes[node.ap_title]
            node.state = "expired"
            self._titles_of(node.source)
        return dropped

    def forget(self, ap_titles: Iterable[str], expired_before: float | None = None
               ) -> list[Node]:
        """Drop these nodes (aged out of storage); the ones that were in the registry.

        With ``expired_before``, a node whose registration here is still current then (it
        registered again, or was seen, after storage judged it) is kept.
        """
        dropped = []
        for title in ap_titles:
            node = self.nodes.get(title)
            if node is None or (expired_before is not None and
                                node.last_seen + node.registration_period >= expired_before):
                continue
            del self.nodes[title]
            dropped.append(node)
            self._titles_of(node.source)
        return dropped

    def _source(self, ctx: ServiceContext) -> str | None:
        return self.source_of(ctx.peer) if self.source_of is not None else None

    def _titles_of(self, source: str | None) -> set[str]:
        """The titles registered from ``source`` that the registry still holds from it (the
        index is tidied here, so nodes removed from ``nodes`` directly drop out too)."""
        if source is None:
            return set()
        titles = self._by_source.get(source)
        if titles is None:
            return set()
        stale = {t for t in titles if (n := self.nodes.get(t)) is None or n.source != source}
        titles -= stale
        if not titles:
            del self._by_source[source]
        return titles

    def _check_source_cap(self, source: str | None, key: str | None) -> None:
        if source is None or not self.max_per_source:
            return
        held = self._titles_of(source)
        if key not in held and len(held) >= self.max_per_source:
            raise ONP(f"{source} already registered {len(held)} nodes")

    def _check_holder(self, node: Node, source: str | None, now: float) -> None:
        """With protected titles, only the address that holds a title may re-register or
        deregister it, until its registration lapses (a moved node waits out its period)."""
        if (self.protect_titles and node.source is not None and source != node.source
                and now <= node.last_seen + node.registration_period):
            raise ISC(f"{node.ap_title} is registered from another address")

    def seen(self, ap_title: str, now: float) -> None:
        node = self.nodes.get(ap_title)
        if node is not None:
            node.last_seen = now

    def authenticate(self, user_id: int, password: bytes) -> Principal:
        raise ISC("the head-end has no password-protected tables")

    def notice(self, event: str, ctx: ServiceContext | None, detail: str = "") -> None:
        pass


def _binary(native_address: bytes) -> bytes:
    """What Resolve sends: the binary form of an IP address, even one registered as text
    (codec.native, h-seg); an address of another kind goes back as registered."""
    try:
        return encode_native(*decode_native(native_address))
    except ValueError:
        return native_address
