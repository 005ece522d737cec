"""What a relay reads of a message it forwards, and the errors it originates (design-16
decisions 3 and 7; c1222.md §10.1 "relay").

A relay routes on the header alone: :func:`peek` walks the ACSE elements once (the same walk
the security layer does before a MAC check) and returns the called and calling AP titles, the
invocation ids and where the EPSEM control byte is. It never decodes or alters the services:
the whole header is in the MAC (digest 5.2), so a relay passes the bytes on unchanged, except
the EPSEM proxy bit of a cleartext (mode 0) message, which no MAC covers (:func:`with_proxy_bit`).

:func:`error_response` builds the cleartext all-error response a relay sends when it cannot
deliver (UAT, NETR, NETT, BSY): A4 = the request's A8, called title = the request's calling
title, calling title = the relay's own (design-16 decision 7). Pure: the invocation id is an
argument.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from c1222.codec import acse
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import FLAG_PROXY_SERVICE_USED, Epsem
from c1222.codec.services import ErrorResponse
from c1222.codes import ResponseCode
from c1222.errors import Truncated


@dataclass(frozen=True, slots=True)
class Header:
    """The routing view of one APDU (nothing past the EPSEM control byte is read)."""

    called: Uid | None  # A2
    calling: Uid | None  # A6
    called_invocation_id: int | None  # A4: present in responses only (digest 2.6)
    calling_invocation_id: int  # A8
    control: int  # offset of the EPSEM control byte

    @property
    def is_response(self) -> bool:
        return self.called_invocation_id is not None

    def mode(self, data: bytes) -> int:
        return (data[self.control] >> 2) & 3


@functools.lru_cache(maxsize=4096)  # the same few titles recur in every message
def title_key(title: Uid | None) -> str:
    """A title as a dictionary key: absolute dotted form; "" for no title or the empty one
    (``0D 00``, a node asking for a title)."""
    if title is None or not title.arcs:
        return ""
    return str(title.absolute())


def peek(data: bytes) -> Header:
    """The header of an APDU. DecodeError when its framing is not a C12.22 APDU.

    The codec's one header walk (``acse.decode_header``, the same the MAC check reads its
    spans from); the EPSEM is located, never decoded."""
    header = acse.decode_header(data)
    control, end = header.spans.epsem
    if control == end:
        raise Truncated("empty EPSEM", control, "apdu.user_information.epsem")
    return Header(called=header.called_ap_title, calling=header.calling_ap_title,
                  called_invocation_id=header.called_ap_invocation_id,
                  calling_invocation_id=header.calling_ap_invocation_id, control=control)


def with_proxy_bit(data: bytes, header: Header) -> bytes:
    """The message with the EPSEM proxy bit (PROXY_SERVICE_USED, c1222.md §3) set when it is
    cleartext (mode 0); a secured message is returned unchanged: its control byte is
    authenticated and changing it would break the MAC (design-16 decision 3)."""
    control = data[header.control]
    if header.mode(data) or control & FLAG_PROXY_SERVICE_USED:
        return data
    out = bytearray(data)
    out[header.control] = control | FLAG_PROXY_SERVICE_USED
    return bytes(out)


def error_response(request: Header, code: ResponseCode, own_title: Uid,
                   invocation_id: int) -> bytes:
    """The relay's cleartext answer ``code`` to ``request`` (design-16 decision 7)."""
    response = Apdu(
        epsem=Epsem(services=(ErrorResponse(response_code=code),)),
        calling_ap_invocation_id=invocation_id,
        called_ap_title=request.calling,
        calling_ap_title=own_title,
        called_ap_invocation_id=request.calling_invocation_id,
    )
    return acse.encode(response)
