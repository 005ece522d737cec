"""The responding side of a C12.22 node, without I/O: request bytes in, response bytes out.

One :class:`Responder` serves every association of a node (digest 10.1, "end device"):

* checks the called AP title (UAT for another node's title);
* verifies the MAC before any service is parsed, refusing a weaker mode than configured and
  replays (SME, in cleartext: the requester's key may be the problem, digest 4.4);
* answers a byte-identical resend (a UDP retry, digest 6.2) with the response it already sent;
* runs the services in order, keeps the Logon session of each association (Logon, Security,
  Logoff, Terminate, Wait, idle time-out) and hands every other service to the node's
  :class:`ServiceHandler`, turning each :class:`~c1222.errors.ServiceError` into its response
  code (ARCHITECTURE rule 4);
* honours response control (always / on exception / never) and secures the response like the
  request: same mode, same key id, a fresh IV, A4 = the request's A8, titles swapped in the
  form the request used them (relative stays relative; digest 12).

An *association* is what the transport names as ``peer``: a TCP connection, or a UDP source
address. Sessions belong to it, so a Logon on one connection never opens another.

Pure: time is the ``now`` argument (seconds, the same base as the replay window), IVs and
invocation ids come from an injected :class:`~c1222.crypto.nonces.NonceSource`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, Protocol

from c1222 import limits
from c1222._mypyc import mypyc_attr
from c1222.codec import acse
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid, as_bytes
from c1222.codec.epsem import Epsem
from c1222.codec.services import (
    ErrorResponse,
    LogoffRequest,
    LogonRequest,
    LogonResponse,
    OkResponse,
    Request,
    Response,
    SecurityRequest,
    TerminateRequest,
    UnknownRequest,
    WaitRequest,
)
from c1222.codes import ResponseCode, ResponseControl, SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import NonceSource
from c1222.crypto.policy import protect, unprotect
from c1222.crypto.replay import ReplayWindow
from c1222.errors import (
    ISSS,
    SNS,
    C1222Error,
    DecodeError,
    SecurityError,
    ServiceError,
)
from c1222.tables.access import Principal

#: Longest idle time-out granted to a Logon (seconds); 0 ("never") is capped to it as well.
MAX_SESSION_IDLE: Final = 600
#: Sessions kept at once; the least recently used is dropped beyond it.
MAX_SESSIONS: Final = 1024
#: Responses remembered for byte-identical resends (digest 6.2), and for how long (seconds).
RESEND_CACHE_SIZE: Final = 256
RESEND_CACHE_AGE: Final = 60.0

# Plain ints for the per-request comparisons: reading an IntEnum member is an attribute look-up
# through the enum class each time.
_OK: Final = int(ResponseCode.OK)
_NEVER: Final = int(ResponseControl.NEVER)
_ON_EXCEPTION: Final = int(ResponseControl.ON_EXCEPTION)
_CLEARTEXT: Final = int(SecurityMode.CLEARTEXT)


@dataclass
class Session:
    """A Logon session of one association (C12.18 session semantics carried over C12.22)."""

    user_id: int
    user: bytes
    idle_timeout: int
    last_active: float
    principal: Principal | None = None
    key: tuple[int, bytes] | None = None  # key id and IV of the Logon message (digest 12)
    #: A8 of the latest message that used ``key`` without its own AC; the next must be above.
    last_invocation_id: int | None = None

    def order(self, invocation_id: int) -> None:
        """Refuse (SecurityError) a session message whose A8 is not above the previous one:
        such messages share the Logon's key id and IV, so A8 alone tells them apart."""
        if self.last_invocation_id is not None and invocation_id <= self.last_invocation_id:
            raise SecurityError()
        self.last_invocation_id = invocation_id

    def expired(self, now: float) -> bool:
        return self.idle_timeout > 0 and now - self.last_active > self.idle_timeout


@dataclass
class ServiceContext:
    """What a service handler knows about the request it serves."""

    peer: Hashable
    now: float
    apdu: Apdu
    principal: Principal | None = None
    session: Session | None = None
    close: bool = False  # set by a handler (Disconnect) to ask the transport to close

    def __init__(self, peer: Hashable, now: float, apdu: Apdu,
                 principal: Principal | None = None, session: Session | None = None,
                 close: bool = False) -> None:
        # Written out: a dataclass's generated __init__ stays interpreted in a compiled
        # build (one per request; tests/unit/codec/test_written_inits.py checks it).
        self.peer = peer
        self.now = now
        self.apdu = apdu
        self.principal = principal
        self.session = session
        self.close = close


class ServiceHandler(Protocol):
    """The node behind the responder: serves every service the session layer does not."""

    def handle(self, request: Request, ctx: ServiceContext) -> Response:
        """The response to one request; raise a ServiceError subclass to refuse it."""

    def authenticate(self, user_id: int, password: bytes) -> Principal:
        """The principal of a Security service; raise ISC for a wrong password."""

    def notice(self, event: str, ctx: ServiceContext | None, detail: str = "") -> None:
        """A security-relevant event: ``logon``, ``logoff``, ``security_failed`` (wrong
        password), ``mac_failed``, ``session_expired``, ``unknown_title``."""


@dataclass(frozen=True)
class Reply:
    """What the transport sends back: ``data`` (None: nothing) and whether to close."""

    data: bytes | None
    close: bool = False
    request: Apdu | None = None
    response: Apdu | None = None

    def __init__(self, data: bytes | None, close: bool = False, request: Apdu | None = None,
                 response: Apdu | None = None) -> None:
        # written out, as ServiceContext's
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "close", close)
        object.__setattr__(self, "request", request)
        object.__setattr__(self, "response", response)


@dataclass
class ResponderConfig:
    """A node's C12.22 identity and security settings."""

    ap_title: Uid
    keys: KeyTable = field(default_factory=KeyTable)
    #: Weakest security mode accepted for requests (0 accepts all three).
    minimum_mode: int = SecurityMode.CLEARTEXT
    #: Largest request accepted (RQTL beyond; digest 6.4) and largest response sent (RSTL).
    max_request_size: int = limits.DEFAULT_MAX_APDU_SIZE
    max_response_size: int = limits.DEFAULT_MAX_APDU_SIZE
    ed_class: bytes | None = None
    #: Other titles the node answers to (a relay's multicast titles, Table 122); it answers
    #: with ``ap_title``.
    aliases: tuple[Uid, ...] = ()


# A node may specialise the responder (a test double of another stack overrides _serve).
@mypyc_attr(allow_interpreted_subclasses=True)
class Responder:
    """Serves requests for one node. Not thread-safe: one event loop owns it."""

    def __init__(self, config: ResponderConfig, handler: ServiceHandler, nonces: NonceSource,
                 *, replay: ReplayWindow | None = None,
                 debug: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.handler = handler
        self.nonces = nonces
        self.replay = replay if replay is not None else ReplayWindow()
        self.debug = debug
        self._title = config.ap_title
        self._absolute_title = config.ap_title.absolute()
        self._aliases = frozenset(t.absolute() for t in config.aliases)
        # The decoder hands out one shared Uid per title it has seen: the last one found to
        # name us is remembered, so most requests pass the A2 check on identity alone (a
        # Uid's == is a Python-level dataclass method even when the codec is compiled).
        self._ours: Uid | None = None
        self._sessions: OrderedDict[Hashable, Session] = OrderedDict()
        self._sent: OrderedDict[tuple[Hashable, bytes], tuple[float, bytes]] = OrderedDict()
        # The services this layer serves itself, by exact type: one dict look-up per request
        # instead of six isinstance tests before a handler's service is reached.
        self._own: dict[type[Request], Callable[[Request, ServiceContext], Response]] = {
            UnknownRequest: self._unknown, LogonRequest: self._logon,
            SecurityRequest: self._security, LogoffRequest: self._logoff,
            TerminateRequest: self._terminate, WaitRequest: self._wait,
        }

    def set_ap_title(self, title: Uid) -> None:
        """Answer to ``title`` from now on (a title assigned at registration, digest 7.2)."""
        self.config.ap_title = title
        self._title = title
        self._absolute_title = title.absolute()
        self._ours = None

    # ------------------------------------------------------------------ associations

    def session(self, peer: Hashable) -> Session | None:
        return self._sessions.get(peer)

    def close(self, peer: Hashable) -> None:
        """The association ended (connection closed): its session ends with it."""
        self._sessions.pop(peer, None)

    def expire(self, now: float) -> None:
        """End every session idle past its time-out."""
        for peer, sess in list(self._sessions.items()):
            if sess.expired(now):
                del self._sessions[peer]
                self.handler.notice("session_expired", None, f"user {sess.user_id}")

    # ------------------------------------------------------------------ requests

    def receive(self, data: bytes, peer: Hashable, now: float) -> Reply:
        """Serve one received APDU. Never raises for anything the peer sent."""
        data = as_bytes(data)
        # A resend is the same bytes on the same association; another peer is served anew.
        digest = (peer, hashlib.blake2b(data, digest_size=16).digest())
        cached = self._sent.get(digest)
        if cached is not None and now - cached[0] <= RESEND_CACHE_AGE:
            return Reply(cached[1])
        if len(data) > self.config.max_request_size:
            return self._refuse(data, ErrorResponse(response_code=ResponseCode.RQTL,
                                                    max_size=self.config.max_request_size))
        try:
            # The header is decoded once: A2 is checked here, then unprotect verifies the MAC
            # from the same header's spans and decodes only the EPSEM.
            header = acse.decode_header(data)
            called = header.called_ap_title
            if called is not None and not self._names_us(called) \
                    and called.absolute() not in self._aliases:
                self.handler.notice("unknown_title", None, str(called))
                return self._refuse(data, ErrorResponse(response_code=ResponseCode.UAT),
                                    digest=digest, now=now)
            sess = self._live_session(peer, now)
            apdu = unprotect(data, self.config.keys, replay=self.replay, now=now,
                             minimum_mode=self.config.minimum_mode, debug=self._debug,
                             session_key=sess.key if sess is not None else None,
                             session_order=sess.order if sess is not None else None,
                             header=header)
        except SecurityError:
            self.handler.notice("mac_failed", None, "")
            return self._refuse(data, ErrorResponse(response_code=ResponseCode.SME))
        except DecodeError as exc:
            # Nothing to address an answer to, or services that do not parse.
            self._debug(f"undecodable request from {peer!r}: {exc}")
            return Reply(None)
        if apdu.is_response:
            self._debug("a response arrived at the responder; ignored")
            return Reply(None)
        ctx = ServiceContext(peer, now, apdu, sess.principal if sess is not None else None, sess)
        serve = self._serve
        responses = [serve(request, ctx) for request in apdu.epsem.services
                     if isinstance(request, Request)]
        if ctx.session is not None:
            ctx.session.last_active = now
        answer, response = self._answer(apdu, responses, secured=True, digest=digest, now=now)
        return Reply(answer, ctx.close, apdu, response)

    def _names_us(self, title: Uid) -> bool:
        """``title`` is our AP title, in relative or absolute form."""
        if title is self._title or title is self._ours:
            return True
        if title.absolute() == self._absolute_title:
            self._ours = title
            return True
        return False

    def _live_session(self, peer: Hashable, now: float) -> Session | None:
        sess = self._sessions.get(peer)
        if sess is not None and sess.expired(now):
            del self._sessions[peer]
            self.handler.notice("session_expired", None, f"user {sess.user_id}")
            return None
        return sess

    def _serve(self, request: Request, ctx: ServiceContext) -> Response:
        try:
            own = self._own.get(type(request))
            if own is not None:
                return own(request, ctx)
            return self.handler.handle(request, ctx)
        except ServiceError as exc:
            return ErrorResponse(response_code=exc.code)
        except C1222Error as exc:
            # A handler's own failure still gets an answer; the process goes on.
            self._debug(f"{request.service} failed: {exc}")
            return ErrorResponse(response_code=ResponseCode.ERR)

    def _unknown(self, request: Request, ctx: ServiceContext) -> Response:
        assert isinstance(request, UnknownRequest)
        raise SNS(f"service {request.request_code:#04x} is not supported")

    def _terminate(self, request: Request, ctx: ServiceContext) -> Response:
        self._end_session(ctx)
        return OkResponse()

    def _wait(self, request: Request, ctx: ServiceContext) -> Response:
        assert isinstance(request, WaitRequest)
        if ctx.session is None:
            raise ISSS("Wait outside a session")
        ctx.session.idle_timeout = max(ctx.session.idle_timeout, request.seconds)
        return OkResponse()

    def _logon(self, request: Request, ctx: ServiceContext) -> Response:
        assert isinstance(request, LogonRequest)
        if ctx.session is not None:
            raise ISSS("already logged on")
        timeout = request.req_session_idle_timeout
        timeout = MAX_SESSION_IDLE if timeout == 0 else min(timeout, MAX_SESSION_IDLE)
        apdu = ctx.apdu
        key = (apdu.key_id, apdu.iv) if apdu.key_id is not None and apdu.iv is not None \
            else None
        sess = Session(request.user_id, request.user, timeout, ctx.now, ctx.principal, key)
        self._sessions[ctx.peer] = sess
        self._sessions.move_to_end(ctx.peer)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        ctx.session = sess
        self.handler.notice("logon", ctx, f"user {request.user_id}")
        return LogonResponse(resp_session_idle_timeout=timeout)

    def _security(self, request: Request, ctx: ServiceContext) -> Response:
        assert isinstance(request, SecurityRequest)
        user_id = request.user_id
        if user_id is None:
            if ctx.session is None:
                raise ISSS("Security without a user id needs a Logon first")
            user_id = ctx.session.user_id
        try:
            principal = self.handler.authenticate(user_id, request.password)
        except ServiceError:
            self.handler.notice("security_failed", ctx, f"user {user_id}")
            raise
        ctx.principal = principal  # the rest of this message (sessionless use)
        if ctx.session is not None:
            ctx.session.principal = principal
        return OkResponse()

    def _logoff(self, request: Request, ctx: ServiceContext) -> Response:
        if ctx.session is None:
            raise ISSS("Logoff without a Logon")
        self._end_session(ctx)
        return OkResponse()

    def _end_session(self, ctx: ServiceContext) -> None:
        if ctx.session is not None:
            self.handler.notice("logoff", ctx, f"user {ctx.session.user_id}")
        self._sessions.pop(ctx.peer, None)
        ctx.session = None
        ctx.principal = None

    # ------------------------------------------------------------------ responses

    def refuse(self, data: bytes, code: int) -> Reply:
        """Answer ``data`` with response ``code`` in cleartext, from its header alone: a request
        refused before it was served, or a segment of one that could not be reassembled
        (SGERR, RQTL with our largest request, SGNP; c1222-network.md). Reply(None) when
        the header does not decode or says it is a response."""
        max_size = self.config.max_request_size if code == ResponseCode.RQTL else None
        response = ErrorResponse(response_code=code, max_size=max_size)
        try:
            header = acse.segment_header(data)
        except DecodeError:
            return Reply(None)
        if header is None:
            return self._refuse(data, response)
        # A segment has no A4: whether its message is a request is unknown, answered as one.
        request = Apdu(epsem=Epsem(), calling_ap_invocation_id=header.calling_ap_invocation_id,
                       called_ap_title=header.called_ap_title,
                       calling_ap_title=header.calling_ap_title)
        sent, answer = self._answer(request, [response], secured=False, digest=None, now=0.0)
        return Reply(sent, response=answer)

    def _refuse(self, data: bytes, response: Response, *,
                digest: tuple[Hashable, bytes] | None = None, now: float = 0.0) -> Reply:
        """Answer a request refused before it was verified (too large, another node's title,
        a failed security check) in cleartext, if its header decodes; else nothing."""
        try:
            header = acse.decode(data[: limits.MAX_APDU_SIZE])
        except DecodeError:
            return Reply(None)
        if header.is_response:
            return Reply(None)
        sent, answer = self._answer(header, [response], secured=False, digest=digest, now=now)
        return Reply(sent, response=answer)

    def _answer(self, request: Apdu, responses: list[Response], *, secured: bool,
                digest: tuple[Hashable, bytes] | None,
                now: float) -> tuple[bytes | None, Apdu | None]:
        """The response's bytes and Apdu (None, None: response control says no answer)."""
        control = request.epsem.response_control
        if control == _NEVER or (control == _ON_EXCEPTION
                                 and all(r.response_code == _OK for r in responses)):
            return None, None
        mode = request.epsem.security_mode if secured else _CLEARTEXT
        # Our title in the form the request used (digest 12): MeteringSDK compares titles as
        # sent and takes an absolute answer to `.123.8437` for tampering. A request for
        # another node's title (UAT) is answered with our configured title, never theirs.
        config = self.config
        ours = request.called_ap_title
        if ours is None or not self._names_us(ours):
            ours = config.ap_title
        ed_class = config.ed_class
        response = Apdu(
            epsem=Epsem(services=tuple(responses), security_mode=mode, ed_class=ed_class,
                        ed_class_included=ed_class is not None),
            calling_ap_invocation_id=self.nonces.invocation_id(),
            called_ap_title=request.calling_ap_title,
            calling_ap_title=ours,
            called_ap_invocation_id=request.calling_ap_invocation_id,
            key_id=request.key_id if mode else None,
            iv=self.nonces.iv() if mode else None,
        )
        data = protect(response, config.keys)
        if len(data) > config.max_response_size:
            too_large = ErrorResponse(response_code=ResponseCode.RSTL,
                                      max_size=config.max_response_size)
            response = dataclasses.replace(
                response, epsem=dataclasses.replace(response.epsem, services=(too_large,)))
            data = protect(response, config.keys)
        if digest is not None:
            sent = self._sent
            sent[digest] = (now, data)
            if len(sent) > RESEND_CACHE_SIZE:
                sent.popitem(last=False)
        return data, response

    def _debug(self, message: str) -> None:
        if self.debug is not None:
            self.debug(message)
