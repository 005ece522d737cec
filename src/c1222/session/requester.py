"""The requesting side of a C12.22 association, without I/O: services in, request bytes out,
response bytes in, a checked response out (digest 2.6, 10.1 "head-end", 12).

A :class:`Requester` builds each request with a fresh invocation id (A8) and, when secured, a
fresh IV and its own AC element. :meth:`Requester.accept` checks that a response answers the
request (A4 = our A8, the titles swapped), is no less secure than the request and names the
same key id (MeteringSDK treats anything else as tampering, digest 12), verifies its MAC before
parsing it and types its services against the requests.

Before anything is encoded, :meth:`Requester.request` adds up the size the services will take
(table data by arithmetic, never by encoding it) and refuses with
:class:`~c1222.errors.LimitExceeded` a request over :data:`~c1222.limits.MAX_APDU_SIZE` or over
the largest APDU the peer said it takes (``max_size``, e.g. from an RQTL answer). Both are
sizes of the whole APDU: a link that segments (transport.endpoint, codec.segments) carries
larger APDUs in pieces, so a segment size is never a request limit.

Pure: IVs and invocation ids come from an injected nonce source, ``now`` is an argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from c1222 import limits

from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import ED_CLASS_SIZE, MAC_SIZE, Epsem
from c1222.codec.services import Request, Response, TableData
from c1222.codes import ResponseControl, SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import NonceSource
from c1222.crypto.policy import protect, unprotect
from c1222.crypto.replay import ReplayWindow
from c1222.errors import LimitExceeded, LocalProtocolError, SecurityError, UnexpectedMessage


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
                invocation_id: int | None = None, max_size: int | None = None) -> Pending:
        """The APDU (and its bytes) carrying ``services`` to the node titled ``called``.

        LimitExceeded, before anything is built, when the message would be larger than
        :data:`~c1222.limits.MAX_APDU_SIZE` or ``max_size`` (the peer's largest APDU).
        A secured request's APDU carries the MAC it was sent with, so its tree (a decrypted
        one in mode 2) has the MAC row and the length of the bytes sent.
        """
        limit = limits.MAX_APDU_SIZE if max_size is None else min(max_size,
                                                                    limits.MAX_APDU_SIZE)
        mode = self.security_mode if security_mode is None else security_mode
        # The EPSEM alone is a lower bound of the APDU: refuse before encoding anything big.
        epsem_size = (1 + (ED_CLASS_SIZE if self.ed_class is not None else 0)
                      + sum(map(_framed_size, services)) + (MAC_SIZE if mode else 0))
        if epsem_size > limit:
            raise LimitExceeded(f"request of at least {epsem_size} bytes; the limit is {limit}")
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
        data = protect(apdu, self.keys)
        if len(data) > limit:  # the ACSE header is small: only this can tip it over
            raise LimitExceeded(f"request of {len(data)} bytes; the limit is {limit}")
        if mode:
            apdu = dataclasses.replace(apdu, epsem=dataclasses.replace(
                apdu.epsem, mac=data[-MAC_SIZE:]))
        return Pending(apdu, data)

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


def table_data_size(td: TableData) -> int:
    """Encoded size of table data: count (2), data, checksum (1) per chunk."""
    return len(td.data) + 3 * len(td.chunk_sizes())


def _length_size(n: int) -> int:
    return 1 if n < 0x80 else 1 + (n.bit_length() + 7) // 8


def _framed_size(service: Request) -> int:
    """Bytes of one service in the EPSEM (length prefix and code included), computed without
    encoding its table data."""
    td = getattr(service, "table_data", None)
    if isinstance(td, TableData):
        empty = dataclasses.replace(service, table_data=TableData(b""))  # type: ignore[type-var]
        size = len(empty.encode()) - table_data_size(TableData(b"")) + table_data_size(td)
    else:
        size = len(service.encode())
    return _length_size(size) + size


def _all_errors(apdu: Apdu) -> bool:
    services = [s for s in apdu.epsem.services if isinstance(s, Response)]
    return bool(services) and all(s.response_code != 0 for s in services)
