"""The head-end on a C12.22 network: a notification host of a master relay
(design-16 decision 6; c1222-network.md "Roles").

With ``--master-relay HOST:PORT`` the head-end registers with the master relay as node type
HOST | NOTIFICATION_HOST and keeps that TCP link open (:class:`MasterRelayLink`): it
re-registers before the granted period ends, at least every :data:`KEEPALIVE` seconds (so
neither side's idle time-out closes the link) and at once after the link drops, with
exponential back-off (1 s doubling to 60 s, jittered) while the master cannot be reached.
The Register response's calling AP title is the master relay's title.

The master relay then sends the head-end a Register request for every node that registers
anywhere in the network, and a Deregister request when one leaves or expires.
:class:`NetworkRegistrar` accepts those notifications from that master relay only — the calling
AP title must be the title its Register response carried, and the message must come over the
link the head-end opened to it or from its address — and records such nodes as reached
"via" the master relay: exempt from the per-address caps (the master relay vouches for them;
``max_nodes`` still bounds them all). A notification from anywhere else is refused ISC, and a
node learned from the master relay cannot be deregistered, or (in secured modes, while its
registration runs) registered, by anyone else. Every other request goes to the head-end's own
:class:`~c1222.headend.registry.RegistrarServices`, so a node that registers directly keeps
working as before.

Requests to a node reached via the master relay go over the master relay's link with the
node's title as the called AP title; the relays route them (decision 7). What a relay
answers instead of the node (UAT, NETT, NETR) is named by :func:`relay_refusal`.

Native addresses are sent binary and shown with :func:`c1222.codec.native.native_address_text`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.native import (  # noqa: F401 - re-exported for the console's helpers
    decode_native_address,
    encode_native_address,
    native_address_text,
)
from c1222.codec.services import (
    DeregisterRequest,
    OkResponse,
    RegisterRequest,
    RegisterResponse,
    Request,
    Response,
)
from c1222.codes import NodeType, ResponseCode
from c1222.errors import (
    ERR,
    ISC,
    ONP,
    SERVICE_ERRORS,
    UAT,
    C1222Error,
    ConfigurationError,
    TransportError,
)
from c1222.headend.registry import Node, RegistrarServices
from c1222.session.responder import ServiceContext
from c1222.tables.access import Principal
from c1222.transport.client import responses

if TYPE_CHECKING:
    from c1222.session.requester import Requester
    from c1222.transport.endpoint import Address, Endpoint, Link

log = logging.getLogger("c1222.headend.network")

#: Node type of the head-end's own Register with the master relay (digest 7.1).
HEADEND_NODE_TYPE = NodeType.HOST | NodeType.NOTIFICATION_HOST
#: connection-type bits (digest 7.2): connection mode; the master relay uses our link.
HEADEND_CONNECTION_TYPE = 0xF0
HEADEND_DEVICE_CLASS = bytes(4)
HEADEND_SERIAL = Uid.parse(".1")
#: Longest wait between two Registers over the master relay's link (seconds): the link is
#: never idle long enough for either side's idle time-out (300 s) to close it.
KEEPALIVE = 120.0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
REGISTER_TIMEOUT = 10.0
#: Response codes a relay answers in place of the node it could not reach (decision 7).
RELAY_CODES = frozenset({ResponseCode.UAT, ResponseCode.NETT, ResponseCode.NETR})


# --------------------------------------------------------------------------- relay refusals


def relay_refusal(apdu: Apdu, called: str) -> str | None:
    """``NETR (...) from relay T`` when ``apdu`` (a response to a request called to
    ``called``) is a relay's UAT, NETT or NETR instead of the node's answer; else None."""
    found = responses(apdu)
    if not found or any(s.response_code not in RELAY_CODES for s in found):
        return None
    code = found[0].response_code
    who = apdu.calling_ap_title
    title = str(who.absolute()) if who is not None else None
    if title == called:
        return None  # the node itself refused: an ordinary answer
    error = SERVICE_ERRORS.get(code, ERR)
    doc = (error.__doc__ or "").strip().splitlines()[0].rstrip(".") if error.__doc__ else ""
    name = ResponseCode(code).name
    return (f"{name}{f' ({doc})' if doc else ''} from relay {title or '(untitled)'}"
            f" for {called}")


# --------------------------------------------------------------------------- the master relay


@dataclass
class MasterRelay:
    """What the head-end knows of its master relay (shown by /api/network)."""

    address: Address
    title: Uid | None = None  # from its Register response
    link_id: int | None = None
    host: str | None = None  # the IP address it is reached at
    registered: bool = False
    registered_at: float | None = None
    reg_period: int | None = None
    last_error: str | None = None
    registrations: int = 0
    #: notifications accepted and refused (the refused ones from elsewhere are counted too)
    notifications: dict[str, int] = field(default_factory=lambda: {
        "registered": 0, "deregistered": 0, "refused": 0})

    @property
    def title_text(self) -> str | None:
        return str(self.title.absolute()) if self.title is not None else None

    def to_json(self) -> dict[str, object]:
        return {"address": f"{self.address[0]}:{self.address[1]}", "ap_title": self.title_text,
                "registered": self.registered, "registered_at": self.registered_at,
                "registration_period": self.reg_period, "last_error": self.last_error,
                "registrations": self.registrations,
                "notifications": dict(self.notifications)}


class NetworkRegistrar:
    """The head-end's service handler with a master relay: notification Register and
    Deregister from the master relay are recorded here; everything else goes to
    ``registrar``. Pure: the transport facts come from ``host_of`` (the peer's IP
    address)."""

    def __init__(self, registrar: RegistrarServices, master: MasterRelay, *,
                 host_of: Callable[[Hashable], str | None]) -> None:
        self.registrar = registrar
        self.master = master
        self.host_of = host_of

    # The ServiceHandler protocol -------------------------------------------------------

    def handle(self, request: Request, ctx: ServiceContext) -> Response:
        if isinstance(request, (RegisterRequest, DeregisterRequest)):
            calling = ctx.apdu.calling_ap_title
            if (self.master.title is None and ctx.peer == self.master.link_id
                    and calling is not None and calling.arcs):
                # Over the link we opened to the master relay, before its Register response
                # is read (the endpoint hands over the notification queued behind it first):
                # the caller is the master relay; its response names the same title.
                self.master.title = calling.absolute()
            if self._names_master(ctx.apdu):
                if not self._from_master(ctx.peer):
                    self.master.notifications["refused"] += 1
                    raise ISC(f"a notification under the master relay's title "
                              f"{self.master.title_text} from {self.host_of(ctx.peer)}, "
                              "not from the master relay")
                return self._notified(request, ctx)
            held = self.registrar.nodes.get(str(request.ap_title.absolute()))
            if held is not None and held.extra.get("via"):
                self._guard_via(held, request, ctx)
        return self.registrar.handle(request, ctx)

    def authenticate(self, user_id: int, password: bytes) -> Principal:
        return self.registrar.authenticate(user_id, password)

    def notice(self, event: str, ctx: ServiceContext | None, detail: str = "") -> None:
        self.registrar.notice(event, ctx, detail)

    # Notifications ----------------------------------------------------------------------

    def _names_master(self, apdu: Apdu) -> bool:
        calling = apdu.calling_ap_title
        title = self.master.title
        return (calling is not None and title is not None
                and calling.absolute() == title.absolute())

    def _from_master(self, peer: Hashable) -> bool:
        if self.master.link_id is not None and peer == self.master.link_id:
            return True
        host = self.host_of(peer)
        return host is not None and self.master.host is not None and host == self.master.host

    def _notified(self, request: Request, ctx: ServiceContext) -> Response:
        reg = self.registrar
        title = str(request.ap_title.absolute())  # type: ignore[attr-defined]
        if not request.ap_title.arcs:  # type: ignore[attr-defined]
            raise ISC("a notification names no AP title")
        if isinstance(request, DeregisterRequest):
            node = reg.nodes.get(title)
            if node is None:
                raise UAT(f"{title} is not registered")
            del reg.nodes[title]
            node.state = "deregistered"
            self.master.notifications["deregistered"] += 1
            if reg.on_deregistered is not None:
                reg.on_deregistered(node)
            return OkResponse()
        assert isinstance(request, RegisterRequest)
        if title == str(reg.ap_title.absolute()):  # ourselves, as the master relay knows us
            return RegisterResponse(reg_ap_title=request.ap_title, reg_delay=reg.reg_delay,
                                    reg_period=request.registration_period, reg_info=0)
        previous = reg.nodes.get(title)
        if previous is None and len(reg.nodes) >= reg.max_nodes:
            raise ONP("registry full")
        if (previous is not None and previous.extra.get("via") == self.master.title_text
                and _same_registration(previous, request)):
            # The same registration again (a re-registration, or a master relay repeating
            # itself): seen now, nothing to store or announce, so a flood costs no writes.
            previous.last_seen = ctx.now
            self.master.notifications["registered"] += 1
            return RegisterResponse(reg_ap_title=request.ap_title, reg_delay=reg.reg_delay,
                                    reg_period=previous.registration_period, reg_info=0)
        node = Node(
            ap_title=title, native_address=request.native_address,
            node_type=request.node_type, connection_type=request.connection_type,
            device_class=request.device_class, serial_number=str(request.serial_number),
            registration_period=request.registration_period or reg.reg_period,
            registered_at=previous.registered_at if previous else ctx.now,
            last_seen=ctx.now, peer=None, source=None,
            extra={"via": self.master.title_text})
        if previous is not None:  # what the head-end learned of it (max request size) stays
            node.extra = {**previous.extra, "via": self.master.title_text}
        reg.nodes[title] = node
        self.master.notifications["registered"] += 1
        if reg.on_registered is not None:
            reg.on_registered(node)
        return RegisterResponse(reg_ap_title=request.ap_title, reg_delay=reg.reg_delay,
                                reg_period=node.registration_period, reg_info=0)

    def _guard_via(self, held: Node, request: Request, ctx: ServiceContext) -> None:
        """A node the master relay told us about belongs to it: no one else deregisters it,
        and in secured modes no one else registers its title while its registration runs."""
        if isinstance(request, DeregisterRequest):
            raise ISC(f"{held.ap_title} is registered through the master relay")
        if (self.registrar.protect_titles
                and ctx.now <= held.last_seen + held.registration_period):
            raise ISC(f"{held.ap_title} is registered through the master relay")
        held.extra.pop("via", None)  # mode 0: the node moved and registers directly now


def _same_registration(node: Node, request: RegisterRequest) -> bool:
    return (node.native_address == request.native_address
            and node.node_type == request.node_type
            and node.connection_type == request.connection_type
            and node.device_class == request.device_class
            and node.serial_number == str(request.serial_number)
            and node.registration_period == request.registration_period)


class MasterRelayLink:
    """Keeps the head-end registered with its master relay over one open TCP link."""

    def __init__(self, master: MasterRelay, endpoint: Endpoint, requester: Requester, *,
                 ap_title: Uid, listening: Callable[[], Address | None],
                 reg_period: int, timeout: float = REGISTER_TIMEOUT,
                 on_message: Callable[[str, Link, bytes, Apdu | None], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.master = master
        self.endpoint = endpoint
        self.requester = requester
        self.ap_title = ap_title
        self.listening = listening
        self.reg_period = reg_period
        self.timeout = timeout
        self.on_message = on_message
        self.rng = rng or random.Random()
        self.link: Link | None = None
        self.changed = asyncio.Event()  # set at each registration (tests and the console)

    def request(self, link: Link) -> RegisterRequest:
        where = self.listening()
        host = link.local[0]
        port = where[1] if where is not None else link.local[1]
        if where is not None and where[0] not in ("0.0.0.0", "::", ""):
            host = where[0]
        return RegisterRequest(
            node_type=HEADEND_NODE_TYPE, connection_type=HEADEND_CONNECTION_TYPE,
            device_class=HEADEND_DEVICE_CLASS, ap_title=self.ap_title,
            serial_number=HEADEND_SERIAL, native_address=encode_native_address(host, port),
            registration_period=self.reg_period)

    async def register_once(self) -> RegisterResponse:
        host, port = self.master.address
        link = self.link
        if link is None or link.closed:
            link = await self.endpoint.connect(host, port, "tcp", self.timeout)
            self.link = link
            self.master.link_id = link.id
            self.master.host = link.peer[0]
        pending = self.requester.request([self.request(link)], self.master.title)
        if self.on_message is not None:
            self.on_message("out", link, pending.data, pending.apdu)
        data = await self.endpoint.exchange(link, pending.data, pending.invocation_id,
                                            timeout=self.timeout)
        try:
            apdu = self.requester.accept(data, pending, time.time())
        except (C1222Error, ValueError):
            if self.on_message is not None:
                self.on_message("in", link, data, None)
            raise
        if self.on_message is not None:
            self.on_message("in", link, data, apdu)
        found = responses(apdu)
        if not found or not isinstance(found[0], RegisterResponse):
            code = found[0].response_code if found else ResponseCode.ERR
            error = SERVICE_ERRORS.get(code, ERR)
            raise error(f"the master relay refused our registration: {error.code.name}")
        if apdu.calling_ap_title is None or not apdu.calling_ap_title.arcs:
            raise ConfigurationError("the master relay's Register response names no "
                                     "calling AP title")
        self.master.title = apdu.calling_ap_title.absolute()
        return found[0]

    async def run(self) -> None:
        backoff = BACKOFF_FIRST
        warned = False
        where = f"{self.master.address[0]}:{self.master.address[1]}"
        while True:
            try:
                response = await self.register_once()
            except (C1222Error, OSError) as exc:
                self.master.registered = False
                self.master.last_error = str(exc) or type(exc).__name__
                wait = backoff * (0.5 + self.rng.random())
                log.log(logging.INFO if warned else logging.WARNING,
                        "cannot register with the master relay at %s: %s; retrying in %.1f s",
                        where, self.master.last_error, wait)
                warned = True
                if self.link is not None and isinstance(exc, TransportError):
                    self.link.close()
                await asyncio.sleep(wait)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            backoff = BACKOFF_FIRST
            first = not self.master.registered
            self.master.registered = True
            self.master.registered_at = time.time()
            self.master.reg_period = response.reg_period
            self.master.last_error = None
            self.master.registrations += 1
            self.changed.set()
            if first:
                log.log(logging.WARNING if warned else logging.INFO,
                        "registered with the master relay %s at %s as a notification host",
                        self.master.title_text, where)
            warned = False
            await self._hold(response.reg_period)

    async def _hold(self, period: int) -> None:
        """Until the next Register is due: the period's margin, KEEPALIVE, or a drop."""
        due = KEEPALIVE
        if period > 0:
            margin = 300 if period > 1500 else period / 5
            due = min(due, max(1.0, period - margin))
        deadline = time.monotonic() + due
        while time.monotonic() < deadline:
            if self.link is None or self.link.closed:
                self.master.registered = False
                self.master.last_error = "the link to the master relay closed"
                log.warning("the link to the master relay at %s:%s closed; registering again",
                            *self.master.address)
                return
            await asyncio.sleep(0.1)

    def current_link(self) -> Link:
        """The open link to the master relay (TransportError while there is none)."""
        link = self.link
        if link is None or link.closed:
            host, port = self.master.address
            raise TransportError(f"no link to the master relay at {host}:{port} "
                                 f"({self.master.last_error or 'not registered yet'})")
        return link
