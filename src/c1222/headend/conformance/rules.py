"""The protocol rules every response must keep (digest 10.1, 10.2 item 8, 12), as a list of
violations rather than an exception, so a conformance case can report all of them.

A production client (MeteringSDK, digest 12) rejects a response whose A4 is not its request's
A8, whose AP titles are not the request's swapped, that is less secure than its request or that
names another key id; digest 10.1 asks for one response per request service, in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from c1222.codec import acse
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid, read_length, read_tlv
from c1222.codec.services import ReadResponse, Request, Response
from c1222.codes import ResponseCode, ResponseControl
from c1222.crypto.keys import KeyTable
from c1222.crypto.policy import unprotect
from c1222.errors import DecodeError, SecurityError


def check_response(request: Apdu, data: bytes, keys: KeyTable
                   ) -> tuple[Apdu | None, list[str]]:
    """Verify and decode the response ``data`` to ``request``; list every rule it breaks.

    Returns (None, [why]) when the response cannot be verified or decoded at all.
    """
    requests: Sequence[Request] = tuple(s for s in request.epsem.services
                                        if isinstance(s, Request))
    try:
        apdu = unprotect(data, keys, requests=requests)
    except SecurityError:
        return None, [_security_reason(data, request, keys)]
    except DecodeError as exc:
        return None, [f"the response does not decode: {exc}"]
    return apdu, header_violations(data) + violations(request, apdu)


def header_violations(data: bytes) -> list[str]:
    """Rules on the response's bytes: ACSE elements in ascending tag order (digest 10.1) and
    invocation ids of at most 4 bytes, minimally encoded (digest 12: no leading 00)."""
    out: list[str] = []
    try:
        _, pos = read_length(data, 1, len(data))
        previous = 0
        while pos < len(data):
            tag, start, stop = read_tlv(data, pos, len(data))
            if tag < previous:
                out.append(f"ACSE element {tag:#04x} after {previous:#04x}: not in ascending "
                           "order (digest 10.1)")
            previous = max(previous, tag)
            if tag in (acse.TAG_CALLED_AP_INVOCATION_ID, acse.TAG_CALLING_AP_INVOCATION_ID):
                _, istart, istop = read_tlv(data, start, stop)
                value = data[istart:istop]
                if len(value) > 4 or (len(value) > 1 and value[0] == 0):
                    name = "A4" if tag == acse.TAG_CALLED_AP_INVOCATION_ID else "A8"
                    out.append(f"{name} is {value.hex()}: not a minimal integer of at most 4 "
                               "bytes (digest 12)")
            pos = stop
    except DecodeError:
        pass  # the decoder has already accepted it; nothing more to say here
    return out


def violations(request: Apdu, response: Apdu) -> list[str]:
    """The digest 10.1/12 rules ``response`` breaks as the answer to ``request``."""
    out: list[str] = []
    services = [s for s in response.epsem.services if isinstance(s, Response)]
    refused = bool(services) and all(s.response_code != ResponseCode.OK for s in services)
    if response.called_ap_invocation_id != request.calling_ap_invocation_id:
        out.append(f"A4 {response.called_ap_invocation_id} is not the request's A8 "
                   f"{request.calling_ap_invocation_id}")
    ours = request.calling_ap_title
    if ours is not None and (response.called_ap_title is None
                             or response.called_ap_title.absolute() != ours.absolute()):
        out.append(f"called AP title {_title(response.called_ap_title)} is not the request's "
                   f"calling AP title {_title(ours)}")
    theirs = request.called_ap_title
    # A UAT refusal comes from a node that is not the title we called, and so may a refusal
    # by a relay on the path (RQTL, NETR, NETT, SGNP, SGERR: design-16 7, c1222-network.md):
    # the refusing node names itself.
    by_path = bool(services) and all(s.response_code in PATH_REFUSALS for s in services)
    if theirs is not None and not by_path and (
            response.calling_ap_title is None
            or response.calling_ap_title.absolute() != theirs.absolute()):
        out.append(f"calling AP title {_title(response.calling_ap_title)} is not the request's "
                   f"called AP title {_title(theirs)}")
    req_mode, resp_mode = request.epsem.security_mode, response.epsem.security_mode
    if resp_mode < req_mode and not refused:
        out.append(f"the response (security mode {resp_mode}) is less secure than the "
                   f"request (mode {req_mode})")
    if resp_mode and response.key_id != request.key_id:
        out.append(f"the response names key id {response.key_id}, the request {request.key_id}")
    requests = [s for s in request.epsem.services if isinstance(s, Request)]
    if (request.epsem.response_control == ResponseControl.ALWAYS
            and len(services) != len(requests)):
        out.append(f"{len(services)} responses to {len(requests)} request services "
                   "(digest 10.1: one each, in order)")
    for s in services:
        if isinstance(s, ReadResponse) and not s.table_data.checksum_ok:
            out.append("the table data of a read response has a wrong checksum")
    return out


#: Refusals a node on the path may give in the called node's stead, naming itself.
PATH_REFUSALS = frozenset({ResponseCode.UAT, ResponseCode.RQTL, ResponseCode.NETR,
                           ResponseCode.NETT, ResponseCode.SGNP, ResponseCode.SGERR})


def _security_reason(data: bytes, request: Apdu, keys: KeyTable) -> str:
    try:
        header = acse.decode(data)
    except DecodeError:
        return "the response's MAC does not verify"
    if header.key_id is not None and header.key_id not in keys:
        return (f"the response is secured with key id {header.key_id}, which the request "
                f"did not use ({request.key_id})")
    return "the response's MAC does not verify with the request's key"


def _title(title: Uid | None) -> str:
    return "(none)" if title is None else str(title.absolute())


# --------------------------------------------------------------------------- relays as targets

#: Cases of services a relay need not serve when it is the target itself (c1222-network.md
#: "Roles": a relay forwards, answers Resolve and Trace, and offers Identify and Read of its
#: own tables — 0, 1, 122, 127 — which are read-only and need no password). Against a relay,
#: a refusal of one of these (SNS, ISC, ONP, IAR) is NOT TESTED, not a FAIL; everything else
#: — Identify, Full read and Partial read offset of Table 0, the session services its session
#: layer offers, the refusals every node owes, Resolve, Trace — is judged as for any node.
RELAY_NEED_NOT_SERVE = frozenset({
    "partial_read_index", "default_read", "security", "full_write", "partial_write_offset",
    "partial_write_index", "session_security", "insufficient_clearance", "bad_checksum",
    "wait", "disconnect", "deregister_other", "deregister",
})
#: What a relay may answer instead of serving one of them.
RELAY_REFUSALS = frozenset({ResponseCode.SNS, ResponseCode.ISC, ResponseCode.ONP,
                            ResponseCode.IAR})


def relay_need_not_serve(case_id: str, code: int | None) -> str | None:
    """The NOT TESTED reason when a relay (the target) refuses ``case_id`` with ``code``."""
    if case_id in RELAY_NEED_NOT_SERVE and code in RELAY_REFUSALS:
        return (f"a relay need not serve this ({ResponseCode(code).name}; "  # type: ignore[arg-type]
                "conformance rules: RELAY_NEED_NOT_SERVE)")
    return None
