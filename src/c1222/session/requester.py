"""The requesting side of a C12.22 association, without I/O: services in, request bytes out,
response bytes in, a checked response out (digest 2.6, 10.1 "head-end", 12).

A :class:`Requester` builds each request with a fresh invocation id (A8) and, when secured, a
fresh IV and its own AC element. :meth:`Requester.accept` checks that a response answers the
request (A4 = our A8, the titles swapped), is no less secure than the request and names the
same key id (MeteringSDK treats anything else as tampering, digest 12), verifies its MAC before
parsing it and types its services against the requests.

Pure: IVs and invocation ids come from an injected nonce source, ``now`` is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import Request, Response
from c1222.codes import ResponseControl, SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import NonceSource
from c1222.crypto.policy import protect, unprotect
from c1222.crypto.replay import ReplayWindow
from c1222.errors import LocalProtocolError, SecurityError, UnexpectedMessage


@dataclass(frozen=True)
class Pending:
    """A request sent and not yet answered."""

    apdu: Apdu
    data: bytes

    @property
    def invocation_id(self) -> int:
        return self.apdu.calling_ap_invocation_id

    @property
    def requests(self) -> tuple[Request, ...]:
        return tuple(s for s in self.apdu.epsem.services if isinstance(s, Request))


class Requester:
    """Builds requests from one node to others and checks their responses."""

    def __init__(self, ap_title: Uid | None, nonces: NonceSource, *,
                 keys: KeyTable | None = None, security_mode: int = SecurityMode.CLEARTEXT,
                 key_id: int | None = None, ed_class: bytes | None = None,
                 replay: ReplayWindow | None = None) -> None:
        self.ap_title = ap_title
        self.nonces = nonces
        self.keys = keys if keys is not None else KeyTable()
        self.security_mode = security_mode
        self.key_id = key_id
        self.ed_class = ed_class
        self.replay = replay if replay is not None else ReplayWindow()
        if security_mode != SecurityMode.CLEARTEXT and key_id is None:
            raise LocalProtocolError("a secured requester needs a key id")

    def request(self, services: Sequence[Request], called: Uid | None, *,
                response_control: int = ResponseControl.ALWAYS,
                security_mode: int | None = None, key_id: int | None = None,
                invocation_id: int | None = None) -> Pending:
        """The APDU (and its bytes) carrying ``services`` to the node titled ``called``."""
        mode = self.security_mode if security_mode is None else security_mode
        kid = self.key_id if key_id is None else key_id
        apdu = Apdu(
            epsem=Epsem(services=tuple(services), security_mode=mode,
                        response_control=response_control, ed_class=self.ed_class,
                        ed_class_included=self.ed_class is not None),
            calling_ap_invocation_id=(self.nonces.invocation_id() if invocation_id is None
                                      else invocation_id),
            called_ap_title=called,
            calling_ap_title=self.ap_title,
            key_id=kid if mode else None,
            iv=self.nonces.iv() if mode else None,
        )
        return Pending(apdu, protect(apdu, self.keys))

    def accept(self, data: bytes, pending: Pending, now: float) -> Apdu:
        """The response to ``pending``, verified and typed.

        Raises SecurityError (bad MAC, replay, a secured response naming another key id),
        UnexpectedMessage (it answers another request, or is less secure than the request
        without being a plain error) or DecodeError.
        """
        request = pending.apdu
        apdu = unprotect(data, self.keys, replay=self.replay, now=now,
                         requests=pending.requests)
        if apdu.called_ap_invocation_id != request.calling_ap_invocation_id:
            raise UnexpectedMessage("the response answers another request (A4 is not our A8)")
        mode = apdu.epsem.security_mode
        if mode and apdu.key_id != request.key_id:
            raise SecurityError()
        if mode < request.epsem.security_mode and not _all_errors(apdu):
            # Only a refusal (SME, UAT) may come back weaker than the request.
            raise UnexpectedMessage("response less secure than the request")
        mine = self.ap_title
        if (mine is not None and apdu.called_ap_title is not None
                and apdu.called_ap_title.absolute() != mine.absolute()):
            raise UnexpectedMessage("the response is addressed to another AP title")
        return apdu


def _all_errors(apdu: Apdu) -> bool:
    services = [s for s in apdu.epsem.services if isinstance(s, Response)]
    return bool(services) and all(s.response_code != 0 for s in services)
