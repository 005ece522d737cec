"""A fake master relay for the head-end's network tests: only wire messages, as design-16
decisions 6-8 describe a master relay (mode 0).

* answers the head-end's Register (its own title as the calling AP title) and keeps the link;
* :meth:`FakeMaster.notify` sends the head-end a notification Register (or Deregister) of a
  node over that link, as the master relay does;
* forwards a request whose called AP title it routes to that node's address and passes the
  response back unchanged; answers NETR for a route marked down and UAT for a title it does
  not know (cleartext errors: A4 = the request's A8, called = the requester, calling = itself);
* answers Resolve and Trace of its routes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from c1222.codec import acse
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import (
    DeregisterRequest,
    ErrorResponse,
    IdentifyRequest,
    IdentifyResponse,
    RegisterRequest,
    RegisterResponse,
    ResolveRequest,
    ResolveResponse,
    Response,
    SecurityRequest,
    TraceRequest,
    TraceResponse,
)
from c1222.codes import ResponseCode
from c1222.crypto.nonces import RandomNonceSource
from c1222.errors import TransportError
from c1222.headend.network import encode_native_address
from c1222.session.requester import Requester
from c1222.transport.endpoint import Endpoint, Link

MASTER_TITLE = "2.16.124.113620.1.22.0.123.50"


@dataclass
class Route:
    address: tuple[str, int]
    path: tuple[str, ...] = ()  # relays below the master on the way to it
    down: bool = False


@dataclass
class FakeMaster:
    title: Uid = field(default_factory=lambda: Uid.parse(MASTER_TITLE))
    routes: dict[str, Route] = field(default_factory=dict)
    headend_link: Link | None = None
    registers: int = 0
    refuse: bool = False  # answer the head-end's Register with ONP

    def __post_init__(self) -> None:
        self.links: dict[str, Link] = {}
        self.forwarded = 0
        self.endpoint = Endpoint(self._on_request)
        self.requester = Requester(self.title, RandomNonceSource())
        self.address: tuple[str, int] | None = None

    async def start(self, port: int = 0) -> FakeMaster:
        self.address = await self.endpoint.listen("127.0.0.1", port)
        return self

    async def stop(self) -> None:
        await self.endpoint.close()

    async def notify(self, ap_title: str, *, deregister: bool = False,
                     link: Link | None = None, calling: Uid | None = None) -> Apdu:
        """A notification to the head-end; its answer."""
        title = Uid.parse(ap_title)
        route = self.routes.get(ap_title)
        native = encode_native_address(*route.address) if route else b"\x7f\x00\x00\x01\x04\x81"
        service = DeregisterRequest(title) if deregister else RegisterRequest(
            node_type=0x20, connection_type=0xF0, device_class=b"SIMU", ap_title=title,
            serial_number=Uid.parse(".7"), native_address=native, registration_period=3600)
        requester = self.requester if calling is None else Requester(calling,
                                                                     RandomNonceSource())
        pending = requester.request([service], None)
        link = link or self.headend_link
        assert link is not None
        data = await link.endpoint.exchange(link, pending.data, pending.invocation_id,
                                            timeout=5)
        return requester.accept(data, pending, time.time())

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        apdu = acse.decode(data)
        called = apdu.called_ap_title
        if called is None or called.absolute() == self.title.absolute():
            return self._serve(apdu, link), False
        route = self.routes.get(str(called.absolute()))
        if route is None:
            return self._error(apdu, ResponseCode.UAT), False
        if route.down:
            return self._error(apdu, ResponseCode.NETR), False
        out = self.links.get(str(called.absolute()))
        if out is None or out.closed:  # one link per route: the node's sessions live on it
            out = self.links[str(called.absolute())] = await self.endpoint.connect(
                *route.address)
        self.forwarded += 1
        try:
            answer = await self.endpoint.exchange(out, data, apdu.calling_ap_invocation_id,
                                                  timeout=5)
        except TransportError:
            return self._error(apdu, ResponseCode.NETT), False
        return answer, False

    def _serve(self, apdu: Apdu, link: Link) -> bytes:
        """One response per request service (digest 10.1)."""
        answers = tuple(self._answer(request, link) for request in apdu.epsem.services)
        return self._reply(apdu, *answers)

    def _answer(self, request: object, link: Link) -> Response:
        if isinstance(request, RegisterRequest):
            self.registers += 1
            self.headend_link = link
            if self.refuse:
                return ErrorResponse(response_code=ResponseCode.ONP)
            return RegisterResponse(reg_ap_title=request.ap_title, reg_delay=0,
                                    reg_period=request.registration_period, reg_info=0)
        if isinstance(request, IdentifyRequest):
            return IdentifyResponse(std=3, ver=1, rev=0)
        if isinstance(request, (DeregisterRequest, SecurityRequest)):  # no passwords here
            return ErrorResponse(response_code=ResponseCode.ISC)
        if isinstance(request, (ResolveRequest, TraceRequest)):
            route = self.routes.get(str(request.ap_title.absolute()))
            if isinstance(request, TraceRequest) and request.ap_title.absolute() == self.title:
                return TraceResponse(ap_titles=(self.title,))
            if route is None:
                return ErrorResponse(response_code=ResponseCode.UAT)
            if isinstance(request, ResolveRequest):
                return ResolveResponse(native_address=encode_native_address(*route.address))
            return TraceResponse(ap_titles=(self.title, *map(Uid.parse, route.path)))
        return ErrorResponse(response_code=ResponseCode.SNS)

    def _error(self, apdu: Apdu, code: int) -> bytes:
        return self._reply(apdu, ErrorResponse(response_code=code))

    def _reply(self, apdu: Apdu, *answers: Response) -> bytes:
        return acse.encode(Apdu(epsem=Epsem(services=answers),
                                calling_ap_invocation_id=self.requester.nonces.invocation_id(),
                                called_ap_invocation_id=apdu.calling_ap_invocation_id,
                                called_ap_title=apdu.calling_ap_title,
                                calling_ap_title=self.title))
