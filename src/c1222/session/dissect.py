"""Decoding a sequence of observed messages, as a capture reader sees them.

A response's services mean something only against its request (digest 3.4,
section 9 row 7), so requests are remembered per conversation and invocation
id, and a response is typed by the request whose A8 equals its A4. The
memory is bounded: the oldest pending requests are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final

from c1222.codec import acse, text
from c1222.codec.acse import Apdu
from c1222.codec.services import Request
from c1222.errors import DecodeError

MAX_PENDING: Final = 4096

#: An optional security step: given the raw bytes and the decoded APDU (with its
#: requests known), return the APDU with its EPSEM verified/decrypted and whether
#: the MAC verified (None when the message is not secured or no key is known).
Unprotect = Callable[[bytes, Apdu, "list[Request] | None"], "tuple[Apdu, bool | None]"]


@dataclass(frozen=True, slots=True)
class Dissected:
    """One message: the APDU, or the DecodeError that stopped it."""

    data: bytes
    apdu: Apdu | None = None
    error: DecodeError | None = None
    mac_verified: bool | None = None

    def __init__(self, data: bytes, apdu: Apdu | None = None, error: DecodeError | None = None,
                 mac_verified: bool | None = None) -> None:
        # written out: compiled by mypyc, native stores (codec.acse.Apdu says why)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "apdu", apdu)
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "mac_verified", mac_verified)


class Dissector:
    """Decodes messages in order, pairing each response with its request."""

    def __init__(self, unprotect: Unprotect | None = None, max_pending: int = MAX_PENDING) -> None:
        self._pending: OrderedDict[tuple[Hashable, int], list[Request]] = OrderedDict()
        self._unprotect = unprotect
        self._max_pending = max_pending

    def dissect(self, data: bytes, src: Hashable = None, dst: Hashable = None) -> Dissected:
        """Decode one APDU sent from ``src`` to ``dst`` (any hashable endpoint names)."""
        try:
            conversation = frozenset((src, dst))
            header = acse.decode_header(data)  # once: the segment test, then the decode
            fields = header.fields
            segment = None
            if "called_ae_qualifier" in fields:  # A3: a segment (rare)
                try:
                    segment = acse.segment_header(data)
                except DecodeError:
                    segment = None  # not a 2008 segment: decoded as a whole APDU
            if segment is not None:
                # its octet string is a slice of another APDU, not an EPSEM (even when the
                # slice happens to parse as one): say so
                raise DecodeError(f"a segment (2008 format): {len(segment.payload)} bytes at "
                                  f"offset {segment.offset} of a {segment.total}-byte APDU, "
                                  f"A8 {segment.calling_ap_invocation_id}",
                                  0, "apdu.called_ae_qualifier")
            # A response carries A4 = the request's A8. Some generators (the scapy-made
            # captures) echo A8 instead, so without A4 try A8: harmless for a request,
            # whose services do not depend on it.
            called = header.called_ap_invocation_id
            key = (conversation, header.calling_ap_invocation_id if called is None else called)
            pending = self._pending.get(key)
            apdu = acse.decode_rest(data, header, pending)
            answers = _answers(apdu)
            requests = None
            if pending is not None and answers:
                requests = self._pending.pop(key)
            verified = None
            if self._unprotect is not None and apdu.epsem.secured:
                apdu, verified = self._unprotect(data, apdu, requests)
                answers = _answers(apdu)  # decrypted, its services are known
            if not answers:
                self._remember(conversation, apdu)
            return Dissected(data, apdu, mac_verified=verified)
        except DecodeError as exc:
            return Dissected(data, error=exc)

    def _remember(self, conversation: Hashable, apdu: Apdu) -> None:
        requests = [s for s in apdu.epsem.services if isinstance(s, Request)]
        if not requests:
            return
        key = (conversation, apdu.calling_ap_invocation_id)
        self._pending[key] = requests
        self._pending.move_to_end(key)
        while len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)


def _answers(apdu: Apdu) -> bool:
    """A response: it carries A4, or its services are responses."""
    services = apdu.epsem.services
    return apdu.is_response or bool(services) and not isinstance(services[0], Request)


def record(source: Any, result: Dissected | None) -> dict[str, Any]:
    """The JSON record of one observed message (``c1222 decode --json``, docs/messages.md):
    where it was seen, then the message or its error.

    ``source`` is what the reader saw: a transport.pcap.CapturedApdu, or the CLI's Source,
    which has the same fields (frame, time, src, dst, transport, data, error). It is here,
    compiled with the dissector, because it runs once per message (interpreted, it cost as
    much as building the message's JSON values).
    """
    data: bytes = source.data
    out: dict[str, Any] = {"frame": source.frame, "time": source.time, "src": source.src,
                           "dst": source.dst, "transport": source.transport,
                           "length": len(data)}
    error = source.error if result is None else result.error
    if error is not None:
        out["error"] = {"reason": error.reason, "offset": error.offset, "path": error.path}
        out["hex"] = data.hex()
        return out
    assert result is not None and result.apdu is not None
    text.to_json(result.apdu, out)
    out["mac_verified"] = result.mac_verified
    return out
