"""The head-end's registrar: answers Register, Deregister and Resolve (digest 7.2, 7.3).

:class:`RegistrarServices` is a :class:`~c1222.session.responder.ServiceHandler`: a node that
registers gets its AP title confirmed (or one assigned when it sent the empty title ``0D 00``),
the registration delay and period, and reg-info; the registry remembers its native address,
node type, device class, serial number, the association it registered over and when it was last
seen. Resolve answers with a registered node's native address; Identify describes the host.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from c1222.codec.ber import Uid
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
from c1222.errors import ISC, SNS, UAT
from c1222.session.responder import ServiceContext
from c1222.tables.access import Principal

#: reg-info (digest 7.2): bit 0 direct messaging available, 4-7 connectionless and connection
#: modes supported and accepted.
REG_INFO = 0xF1
#: Arcs under which titles are assigned to nodes that register without one.
ASSIGNED_BASE = (2, 16, 124, 113620, 1, 22, 0, 123, 9000)


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
    state: str = "registered"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The native address as text (``host:port`` for IP nodes)."""
        try:
            return self.native_address.decode("ascii")
        except UnicodeDecodeError:
            return self.native_address.hex()


class RegistrarServices:
    """Answers the registration services; ``on_registered``/``on_deregistered`` are told."""

    def __init__(self, ap_title: Uid, *, reg_period: int = 3600, reg_delay: int = 60,
                 on_registered: Callable[[Node], None] | None = None,
                 on_deregistered: Callable[[Node], None] | None = None,
                 on_request: Callable[[Request, ServiceContext], Response | None] | None = None,
                 max_nodes: int = 100_000) -> None:
        self.ap_title = ap_title
        self.reg_period = reg_period
        self.reg_delay = reg_delay
        self.nodes: dict[str, Node] = {}
        self.on_registered = on_registered
        self.on_deregistered = on_deregistered
        self.on_request = on_request  # other services (a head-end may serve more)
        self.max_nodes = max_nodes
        self._assigned = itertools.count(1)

    def handle(self, request: Request, ctx: ServiceContext) -> Response:
        if isinstance(request, RegisterRequest):
            return self.register(request, ctx)
        if isinstance(request, DeregisterRequest):
            title = str(request.ap_title.absolute())
            node = self.nodes.pop(title, None)
            if node is None:
                raise UAT(f"{title} is not registered")
            node.state = "deregistered"
            if self.on_deregistered is not None:
                self.on_deregistered(node)
            return OkResponse()
        if isinstance(request, ResolveRequest):
            node = self.nodes.get(str(request.ap_title.absolute()))
            if node is None:
                raise UAT(f"{request.ap_title} is not registered")
            return ResolveResponse(native_address=node.native_address)
        if isinstance(request, IdentifyRequest):
            return IdentifyResponse(std=3, ver=1, rev=0,
                                    security_mechanisms=(Uid(EAX_PRIME_MECHANISM),))
        if self.on_request is not None:
            response = self.on_request(request, ctx)
            if response is not None:
                return response
        raise SNS(f"{request.service} is not served by the head-end")

    def register(self, request: RegisterRequest, ctx: ServiceContext) -> RegisterResponse:
        title = request.ap_title
        if not title.arcs:  # "0D 00": the node asks for a title (digest 7.2)
            title = Uid(ASSIGNED_BASE + (next(self._assigned),))
        key = str(title.absolute())
        if key not in self.nodes and len(self.nodes) >= self.max_nodes:
            raise ISC("registry full")
        previous = self.nodes.get(key)
        node = Node(
            ap_title=key, native_address=request.native_address, node_type=request.node_type,
            connection_type=request.connection_type, device_class=request.device_class,
            serial_number=str(request.serial_number), registration_period=min(
                request.registration_period, self.reg_period) or self.reg_period,
            registered_at=previous.registered_at if previous else ctx.now,
            last_seen=ctx.now, peer=ctx.peer)
        self.nodes[key] = node
        if self.on_registered is not None:
            self.on_registered(node)
        return RegisterResponse(reg_ap_title=title, reg_delay=self.reg_delay,
                                reg_period=node.registration_period, reg_info=REG_INFO)

    def seen(self, ap_title: str, now: float) -> None:
        node = self.nodes.get(ap_title)
        if node is not None:
            node.last_seen = now

    def authenticate(self, user_id: int, password: bytes) -> Principal:
        raise ISC("the head-end has no password-protected tables")

    def notice(self, event: str, ctx: ServiceContext | None, detail: str = "") -> None:
        pass
