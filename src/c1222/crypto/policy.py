"""The C12.22 security modes on whole APDUs (digest 5.1, 5.2, 5.5).

* Mode 0 (cleartext): nothing to do.
* Mode 1 (cleartext + authentication): ``MAC = EAX'(N ‖ P, empty)``; P stays in clear.
* Mode 2 (ciphertext + authentication): ``(C, MAC) = EAX'(N, P)``; P = ``[ed-class] services``.

N, the *authenticated cleartext*, is built from the ACSE header exactly as digest 5.2 lists it:
A1, A2 (absolute), A4, A7, A8, 8B, AC, the user-information header ``BE L 28 L 81 L ctl`` as
transmitted, A6 (absolute), the raw key id and the raw 4-byte IV. Relative AP titles are expanded
under 2.16.124.113620.1.22.0. Both directions build N from the *bytes of the message*: a sender
encodes the APDU with a 4-byte MAC placeholder (so every enclosing length is final), builds N from
those bytes and writes the ciphertext and MAC in place; a receiver builds N from what it received.
Because the decoder accepts only minimal BER lengths, each element as received is the element
Wireshark and MeteringSDK re-encode.

A receiver verifies the MAC **before** any service is parsed (digest 5.5), then decrypts (mode 2),
then parses ed-class and services. Every security failure — bad MAC, unknown key id, missing or
non-C12.22 AC element, replay — raises the same generic :class:`~c1222.errors.SecurityError`;
the reason goes only to an optional ``debug`` callback (which a non-pure caller may log). Broken
structure raises :class:`~c1222.errors.DecodeError`.

Pure: no I/O, no clock (``now`` is an argument), no randomness (IVs are arguments), no logging.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from c1222 import limits
from c1222.codec import acse
from c1222.codec.acse import (
    ELEMENT_NAMES,
    TAG_ASO_CONTEXT,
    TAG_CALLED_AP_INVOCATION_ID,
    TAG_CALLED_AP_TITLE,
    TAG_CALLING_AE_QUALIFIER,
    TAG_CALLING_AP_INVOCATION_ID,
    TAG_CALLING_AP_TITLE,
    TAG_CALLING_AUTHENTICATION_VALUE,
    TAG_EXTERNAL,
    TAG_MECHANISM_NAME,
    TAG_OCTET_ALIGNED,
    TAG_USER_INFORMATION,
    Apdu,
    RequestLookup,
)
from c1222.codec.ber import (
    TAG_INTEGER,
    TAG_OID,
    TAG_RELATIVE_OID,
    TAG_RELATIVE_OID_ACSE,
    decode_uid_content,
    decode_unsigned,
    read_length,
    read_tlv,
    tlv,
)
from c1222.codec.epsem import MAC_SIZE, control_and_mac, decode_body, encode_body
from c1222.codec.services import Request
from c1222.codes import SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.replay import MessageId, ReplayWindow
from c1222.errors import (
    BerError,
    ConfigurationError,
    DecodeLimitExceeded,
    LocalProtocolError,
    SecurityError,
    Truncated,
)

__all__ = [
    "AP_TITLE_BASE_CONTENT",
    "DebugHook",
    "authenticated_cleartext",
    "make_unprotect",
    "message_id",
    "protect",
    "unprotect",
]

#: BER contents of 2.16.124.113620.1.22.0, prefixed to relative AP titles (digest 1.5).
AP_TITLE_BASE_CONTENT = bytes.fromhex("607c86f754011600")
#: The C12.22 AC element as every implementation sends it (digest 2.4), up to the key id.
_AC_PREFIX = bytes.fromhex("ac0fa20da00ba1098001")  # AC 0F A2 0D A0 0B A1 09 80 01
_AC_SIZE = 17
#: Elements of N before the user-information header, in this order (digest 5.2 items 1-7).
_CLEARTEXT_HEAD = (TAG_ASO_CONTEXT, TAG_CALLED_AP_TITLE, TAG_CALLED_AP_INVOCATION_ID,
                   TAG_CALLING_AE_QUALIFIER, TAG_CALLING_AP_INVOCATION_ID, TAG_MECHANISM_NAME,
                   TAG_CALLING_AUTHENTICATION_VALUE)
_MAC_PLACEHOLDER = bytes(MAC_SIZE)
_EPSEM_PATH = "apdu.user_information.epsem"

#: Receives the reason for a SecurityError (never key bytes); for logs in non-pure callers.
DebugHook = Callable[[str], None]
Requests = Sequence[Request] | RequestLookup | None


# --------------------------------------------------------------------------- message layout


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where things are in one APDU: each header element's TLV span, BE and the control byte."""

    elements: dict[int, tuple[int, int, int]]  # tag -> (TLV start, value start, value end)
    user_information: int  # offset of the BE tag
    control: int  # offset of the EPSEM control byte (first byte of the 81 octet string)


def _layout(data: bytes) -> _Layout:
    """Walk the APDU's elements without decoding any service (digest 2.1, 2.2, 2.5).

    Refuses the same structures as :func:`c1222.codec.acse.decode` (DecodeError), so nothing
    reaches the MAC check that the decoder would later reject as malformed framing.
    """
    end = len(data)
    if end < 2:
        raise Truncated("APDU shorter than its header", 0, "apdu")
    if data[0] != acse.APDU_TAG:
        raise BerError(f"APDU tag {data[0]:#04x}, not 0x60", 0, "apdu")
    length, pos = read_length(data, 1, end, "apdu.length")
    if pos + length > end:
        raise Truncated(f"APDU claims {length} bytes, {end - pos} present", 1, "apdu.length")
    if pos + length < end:
        raise BerError(f"{end - pos - length} bytes after the APDU", pos + length, "apdu")
    if end > limits.MAX_APDU_SIZE:
        raise DecodeLimitExceeded("APDU over the size limit", 0, "apdu")
    elements: dict[int, tuple[int, int, int]] = {}
    while pos < end:
        tag, start, stop = read_tlv(data, pos, end, "apdu")
        name = ELEMENT_NAMES.get(tag)
        if name is None:
            raise BerError(f"element {tag:#04x} is not used by C12.22", pos, "apdu")
        if tag in elements:
            raise BerError("element repeated", pos, f"apdu.{name}")
        if tag == TAG_USER_INFORMATION:
            if stop != end:
                raise BerError("user-information must be the last element", stop, "apdu")
            return _Layout(elements, pos, _control_offset(data, start, stop))
        elements[tag] = (pos, start, stop)
        pos = stop
    raise BerError("user-information (BE) is mandatory", end, "apdu")


def _control_offset(data: bytes, start: int, stop: int) -> int:
    path = "apdu.user_information"
    tag, pos, end = read_tlv(data, start, stop, path)
    if tag != TAG_EXTERNAL or end != stop:
        raise BerError("user-information must hold one EXTERNAL (28)", start, path)
    tag, vstart, vstop = read_tlv(data, pos, end, path + ".external")
    if tag == TAG_INTEGER:  # indirect-reference (segments only); part of the header bytes
        tag, vstart, vstop = read_tlv(data, vstop, end, path + ".external")
    if tag != TAG_OCTET_ALIGNED or vstop != end:
        raise BerError("EXTERNAL must end with the octet-aligned (81) EPSEM", pos, path)
    if vstart == vstop:
        raise Truncated("empty EPSEM", vstart, _EPSEM_PATH)
    return vstart


def _absolute_title(data: bytes, element: tuple[int, int, int], tag: int) -> bytes:
    """A2/A6 with a relative title rebuilt as ``tag L 06 L <base><relative>`` (digest 5.2)."""
    pos, start, stop = element
    path = f"apdu.{ELEMENT_NAMES[tag]}"
    inner, istart, istop = read_tlv(data, start, stop, path)
    if istop != stop:
        raise BerError("bytes after the element's value", istop, path)
    if inner == TAG_OID:
        return data[pos:stop]
    # The relative tag itself is not in N, so it is checked here rather than left to the codec.
    if inner not in (TAG_RELATIVE_OID_ACSE, TAG_RELATIVE_OID):
        raise BerError(f"tag {inner:#04x} is not an identifier", start, path)
    decode_uid_content(inner, data[istart:istop], istart, path)  # DecodeError on a bad arc
    return tlv(tag, tlv(TAG_OID, AP_TITLE_BASE_CONTENT + data[istart:istop]))


def _key_id_iv(data: bytes, layout: _Layout) -> tuple[int, bytes] | None:
    """Key id and IV from an AC element in the 17-byte C12.22 form, else None (digest 2.4).

    Only that form is accepted, as MeteringSDK does: any other layout would make receivers
    rebuild different cleartexts.
    """
    element = layout.elements.get(TAG_CALLING_AUTHENTICATION_VALUE)
    if element is None:
        return None
    pos, _, stop = element
    ac = data[pos:stop]
    if len(ac) != _AC_SIZE or ac[:10] != _AC_PREFIX or ac[11:13] != b"\x81\x04":
        return None
    return ac[10], bytes(ac[13:17])


def _cleartext(data: bytes, layout: _Layout, key_id: int, iv: bytes) -> bytes:
    """N of digest 5.2 from the message bytes."""
    parts: list[bytes] = []
    elements = layout.elements
    for tag in _CLEARTEXT_HEAD:
        element = elements.get(tag)
        if element is None:
            continue
        if tag == TAG_CALLED_AP_TITLE:
            parts.append(_absolute_title(data, element, tag))
        else:
            parts.append(data[element[0] : element[2]])
    parts.append(data[layout.user_information : layout.control + 1])  # BE L 28 L 81 L ctl
    calling = elements.get(TAG_CALLING_AP_TITLE)
    if calling is not None:
        parts.append(_absolute_title(data, calling, TAG_CALLING_AP_TITLE))
    parts.append(bytes((key_id,)))
    parts.append(iv)
    return b"".join(parts)


def authenticated_cleartext(data: bytes) -> bytes:
    """The EAX' cleartext N of a secured APDU (digest 5.2), e.g. to compare with Wireshark.

    DecodeError for broken structure; SecurityError when there is no C12.22 AC element.
    """
    data = bytes(data)
    layout = _layout(data)
    found = _key_id_iv(data, layout)
    if found is None:
        raise SecurityError()
    return _cleartext(data, layout, *found)


# --------------------------------------------------------------------------- sender


def protect(apdu: Apdu, keys: KeyTable, *, key_id: int | None = None,
            iv: bytes | None = None) -> bytes:
    """The bytes of ``apdu``, secured as its ``epsem.security_mode`` asks (digest 5.5, sender).

    Mode 0 is encoded as it is. Modes 1 and 2 use ``apdu.key_id``/``apdu.iv`` when present,
    otherwise ``key_id``/``iv``; the AC element is always sent (digest 5.2, "AC omitted inside a
    session": include it in every secured message). Any MAC or ciphertext already in the EPSEM
    is ignored and recomputed from the services, ed-class and padding.

    Raises LocalProtocolError for an APDU that cannot be secured (no key id or IV, a raw AC
    value, security mode 3, an EPSEM still holding undecrypted ciphertext) and
    ConfigurationError when ``keys`` has no key for the key id (our own setup, so the key id
    is named; never the key).
    """
    epsem = apdu.epsem
    mode = epsem.security_mode
    if mode == SecurityMode.CLEARTEXT:
        return acse.encode(apdu)
    if mode not in (SecurityMode.CLEARTEXT_AUTHENTICATED, SecurityMode.CIPHERTEXT_AUTHENTICATED):
        raise LocalProtocolError(f"security mode {mode} is not defined")
    if epsem.ciphertext is not None:
        raise LocalProtocolError("the EPSEM is still ciphertext: unprotect it before protecting")
    if apdu.authentication_value is not None:
        raise LocalProtocolError("a secured message needs the C12.22 key id/IV form of AC")
    kid = apdu.key_id if apdu.key_id is not None else key_id
    kiv = apdu.iv if apdu.iv is not None else iv
    if kid is None or kiv is None:
        raise LocalProtocolError("a secured message needs a key id and an IV")
    kiv = bytes(kiv)
    if kid not in keys:
        raise ConfigurationError(f"no key for key id {kid}")
    cipher = keys.cipher(kid)
    plaintext = encode_body(epsem)
    # Encode with placeholders of the final sizes so every enclosing length is already right;
    # in mode 2 the plaintext stands in for the ciphertext (same length, digest 5.1).
    placeholder = dataclasses.replace(
        epsem, mac=_MAC_PLACEHOLDER,
        ciphertext=plaintext if mode == SecurityMode.CIPHERTEXT_AUTHENTICATED else None)
    out = bytearray(acse.encode(dataclasses.replace(apdu, key_id=kid, iv=kiv, epsem=placeholder)))
    data = bytes(out)
    layout = _layout(data)
    cleartext = _cleartext(data, layout, kid, kiv)
    end = len(out)
    if mode == SecurityMode.CIPHERTEXT_AUTHENTICATED:
        ciphertext, mac = cipher.encrypt(cleartext, plaintext)
        out[layout.control + 1 : end - MAC_SIZE] = ciphertext
    else:
        mac = cipher.authenticate(cleartext, plaintext)
    out[end - MAC_SIZE :] = mac
    return bytes(out)


# --------------------------------------------------------------------------- receiver


@dataclass(frozen=True, slots=True)
class _Checked:
    """Outcome of the MAC check. ``status``: ok, cleartext, no-ac, unknown-key or bad-mac."""

    status: str
    layout: _Layout
    key_id: int | None = None
    iv: bytes | None = None
    plaintext: bytes | None = None  # mode 2 only, once the MAC verified


def _check(data: bytes, keys: KeyTable,
           session_key: tuple[int, bytes] | None = None) -> _Checked:
    """Find the key, rebuild N and verify the MAC; decrypt mode 2. Parses no service.

    ``session_key`` (key id, IV) stands in for a missing AC element (digest 12: inside a
    Logon session MeteringSDK omits AC and reuses the Logon message's key id and IV).
    """
    layout = _layout(data)
    ctl_pos = layout.control
    ctl, mac_pos = control_and_mac(data, ctl_pos, len(data), _EPSEM_PATH)
    mode = (ctl >> 2) & 3
    if mode == SecurityMode.CLEARTEXT:
        return _Checked("cleartext", layout)
    found = _key_id_iv(data, layout)
    if found is None and layout.elements.get(TAG_CALLING_AUTHENTICATION_VALUE) is None:
        found = session_key
    if found is None:
        return _Checked("no-ac", layout)
    key_id, iv = found
    if key_id not in keys:
        return _Checked("unknown-key", layout, key_id, iv)
    cipher = keys.cipher(key_id)
    cleartext = _cleartext(data, layout, key_id, iv)
    body = data[ctl_pos + 1 : mac_pos]
    mac = data[mac_pos:]
    try:
        if mode == SecurityMode.CIPHERTEXT_AUTHENTICATED:
            plaintext = cipher.decrypt(cleartext, body, mac)
            return _Checked("ok", layout, key_id, iv, plaintext)
        cipher.verify(cleartext, body, mac)
    except SecurityError:
        return _Checked("bad-mac", layout, key_id, iv)
    return _Checked("ok", layout, key_id, iv)


_REASONS = {
    "no-ac": "secured message without a C12.22 key id/IV (AC) element",
    "unknown-key": "unknown key id",
    "bad-mac": "MAC mismatch",
}


def _header_message_id(data: bytes, layout: _Layout, key_id: int, iv: bytes) -> MessageId:
    """The replay key from the header alone (no service parsed)."""
    title = ""
    calling = layout.elements.get(TAG_CALLING_AP_TITLE)
    if calling is not None:
        _, start, stop = calling
        path = "apdu.calling_ap_title"
        itag, istart, istop = read_tlv(data, start, stop, path)
        title = str(decode_uid_content(itag, data[istart:istop], istart, path).absolute())
    a8 = layout.elements.get(TAG_CALLING_AP_INVOCATION_ID)
    if a8 is None:
        raise BerError("calling-AP-invocation-id (A8) is mandatory", layout.user_information,
                       "apdu")
    _, start, stop = a8
    path = "apdu.calling_ap_invocation_id"
    itag, istart, istop = read_tlv(data, start, stop, path)
    if itag != TAG_INTEGER:
        raise BerError(f"expected INTEGER, found tag {itag:#04x}", start, path)
    invocation = decode_unsigned(data[istart:istop], istart, path,
                                 limits.MAX_INVOCATION_ID_BYTES)
    return MessageId(title, key_id, iv, invocation)


def message_id(apdu: Apdu) -> MessageId:
    """The replay key of a decoded secured APDU: (calling AP title absolute, key id, IV, A8).

    LocalProtocolError when the APDU carries no key id or IV.
    """
    if apdu.key_id is None or apdu.iv is None:
        raise LocalProtocolError("no key id / IV: not a secured C12.22 message")
    title = "" if apdu.calling_ap_title is None else str(apdu.calling_ap_title.absolute())
    return MessageId(title, apdu.key_id, apdu.iv, apdu.calling_ap_invocation_id)


def _with_plaintext(apdu: Apdu, plaintext: bytes, requests: Sequence[Request] | None) -> Apdu:
    """The mode-2 APDU with its decrypted ed-class and services in place of the ciphertext."""
    epsem = apdu.epsem
    ed_class, services, padding = decode_body(plaintext, 0, len(plaintext),
                                              epsem.ed_class_included, requests, _EPSEM_PATH)
    return dataclasses.replace(apdu, epsem=dataclasses.replace(
        epsem, services=services, ed_class=ed_class, padding=padding, ciphertext=None))


def unprotect(
    data: bytes,
    keys: KeyTable,
    *,
    replay: ReplayWindow | None = None,
    now: float | None = None,
    requests: Requests = None,
    minimum_mode: int = SecurityMode.CLEARTEXT,
    debug: DebugHook | None = None,
    session_key: tuple[int, bytes] | None = None,
    session_order: Callable[[int], None] | None = None,
) -> Apdu:
    """Verify, decrypt and decode one received APDU (digest 5.5, receiver).

    The MAC is verified before any service is parsed. A verified message is then checked
    against ``replay`` (when given, with ``now`` in the window's time base; keyed by
    :class:`~c1222.crypto.replay.MessageId`) before its services are parsed. The result has
    plain ``services`` (and ``ciphertext`` None) and keeps the received ``mac``.

    ``minimum_mode`` refuses messages less protected than the receiver requires (mode 0 passes
    through by default). ``requests`` types the services of a response, as for
    :func:`c1222.codec.acse.decode`.

    Raises SecurityError (generic message; the reason goes to ``debug``) for a bad MAC, an
    unknown key id, a missing or non-C12.22 AC element, a replay or a weaker mode than
    ``minimum_mode``; DecodeError when the bytes are not a well-formed APDU.

    ``session_key`` (key id, IV of the session's Logon message) is used when the message has
    no AC element at all (digest 12, session use); the returned APDU then carries it. Such a
    message shares its key id and IV with the Logon message, so it is not checked against
    ``replay`` (whose time mode would find the Logon's IV stale in a long session); instead
    ``session_order`` is called with its A8 before its services are parsed, and refuses it
    by raising SecurityError (the session's invocation ids only go up, digest 2.6).
    """
    data = bytes(data)
    if replay is not None and now is None:
        raise LocalProtocolError("a replay check needs `now`")

    def refuse(reason: str) -> SecurityError:
        if debug is not None:
            debug(reason)
        return SecurityError()

    checked = _check(data, keys, session_key)
    if checked.status == "cleartext":
        if minimum_mode > SecurityMode.CLEARTEXT:
            raise refuse(f"security mode 0 below the required mode {minimum_mode}")
        return acse.decode(data, requests)
    if checked.status != "ok":
        raise refuse(_REASONS[checked.status])
    mode = (data[checked.layout.control] >> 2) & 3
    if mode < minimum_mode:
        raise refuse(f"security mode {mode} below the required mode {minimum_mode}")
    assert checked.key_id is not None and checked.iv is not None
    in_session = TAG_CALLING_AUTHENTICATION_VALUE not in checked.layout.elements
    if in_session and session_order is not None:
        message = _header_message_id(data, checked.layout, checked.key_id, checked.iv)
        try:
            session_order(message.invocation_id)
        except SecurityError:
            raise refuse("session invocation id not above the previous one") from None
    elif replay is not None:
        assert now is not None
        try:
            replay.accept(_header_message_id(data, checked.layout, checked.key_id, checked.iv),
                          now)
        except SecurityError:
            raise refuse("replayed or stale message") from None
    # Remember which requests a lookup returned, so the decrypted services are typed too.
    found: list[Sequence[Request] | None] = [None if callable(requests) else requests]
    if callable(requests):
        lookup = requests

        def remember(called: int | None, calling: int) -> Sequence[Request] | None:
            found[0] = lookup(called, calling)
            return found[0]

        apdu = acse.decode(data, remember)
    else:
        apdu = acse.decode(data, requests)
    if apdu.key_id is None:  # verified with the session's key id and IV
        apdu = dataclasses.replace(apdu, key_id=checked.key_id, iv=checked.iv)
    if checked.plaintext is None:
        return apdu
    return _with_plaintext(apdu, checked.plaintext, found[0])


def make_unprotect(
    keys: KeyTable, *, debug: DebugHook | None = None
) -> Callable[[bytes, Apdu, Sequence[Request] | None], tuple[Apdu, bool | None]]:
    """The ``unprotect`` step of :class:`c1222.session.dissect.Dissector` (observing traffic).

    Returns ``(apdu, True)`` with the services decrypted when the MAC verifies,
    ``(apdu, False)`` unchanged (mode-2 ciphertext left undecoded) when it does not, and
    ``(apdu, None)`` when it cannot be checked: no key for the key id, or no C12.22 AC element.
    It never raises SecurityError; a decrypted body that does not parse raises DecodeError.
    No replay check: a capture may legitimately hold the same message twice.
    """

    def unprotect_step(raw: bytes, apdu: Apdu, requests: Sequence[Request] | None
                       ) -> tuple[Apdu, bool | None]:
        checked = _check(bytes(raw), keys)
        if checked.status == "cleartext":
            return apdu, None
        if checked.status != "ok":
            if debug is not None:
                debug(_REASONS[checked.status])
            return apdu, (False if checked.status == "bad-mac" else None)
        if checked.plaintext is None:
            return apdu, True
        return _with_plaintext(apdu, checked.plaintext, requests), True

    return unprotect_step
