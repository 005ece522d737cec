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
from typing import Final

from c1222.codec import acse
from c1222.codec.acse import (
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
from c1222.codec.ber import TAG_OID, Uid, as_bytes, byte, encode_length, tlv
from c1222.codec.epsem import (
    FLAG_ED_CLASS_INCLUDED,
    FLAG_PROXY_SERVICE_USED,
    FLAG_RECOVERY_SESSION,
    MAC_SIZE,
    Epsem,
    control_and_mac,
    decode_body,
    encode_body,
)
from c1222.codec.services import Request
from c1222.codes import SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.replay import MessageId, ReplayWindow
from c1222.errors import ConfigurationError, LocalProtocolError, SecurityError, Truncated

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
AP_TITLE_BASE_CONTENT: Final = bytes.fromhex("607c86f754011600")
#: Elements of N before the user-information header, in this order (digest 5.2 items 1-7).
_CLEARTEXT_HEAD: Final = (TAG_ASO_CONTEXT, TAG_CALLED_AP_TITLE, TAG_CALLED_AP_INVOCATION_ID,
                   TAG_CALLING_AE_QUALIFIER, TAG_CALLING_AP_INVOCATION_ID, TAG_MECHANISM_NAME,
                   TAG_CALLING_AUTHENTICATION_VALUE)
_EPSEM_PATH: Final = "apdu.user_information.epsem"
# Plain ints for the per-message tests (an IntEnum member is an attribute lookup each time).
_CLEARTEXT: Final = int(SecurityMode.CLEARTEXT)
_AUTHENTICATED: Final = int(SecurityMode.CLEARTEXT_AUTHENTICATED)
_CIPHERTEXT: Final = int(SecurityMode.CIPHERTEXT_AUTHENTICATED)
#: The one-byte tags of the user-information header, as bytes.
_BE: Final = bytes((TAG_USER_INFORMATION,))
_EXTERNAL: Final = bytes((TAG_EXTERNAL,))
_OCTET_ALIGNED: Final = bytes((TAG_OCTET_ALIGNED,))

#: Receives the reason for a SecurityError (never key bytes); for logs in non-pure callers.
DebugHook = Callable[[str], None]
Requests = Sequence[Request] | RequestLookup | None


# --------------------------------------------------------------------------- cleartext


def _header_fields(apdu: Apdu) -> dict[str, object]:
    """The header values of a decoded APDU, as :class:`~c1222.codec.acse.Header` holds them."""
    return {"called_ap_title": apdu.called_ap_title, "calling_ap_title": apdu.calling_ap_title,
            "calling_ap_invocation_id": apdu.calling_ap_invocation_id,
            "called_ap_invocation_id": apdu.called_ap_invocation_id,
            "key_id": apdu.key_id, "iv": apdu.iv}


#: Title text -> A2 (called) / A6 (calling) with the title absolute, as N holds it (bounded
#: caches). Keyed by the title's text, which a Uid keeps once made, since a Uid's own hash is
#: recomputed from its arcs at every lookup; one dict per tag, so the key is the text alone.
_ABSOLUTE_CALLED: Final[dict[str, bytes]] = {}
_ABSOLUTE_CALLING: Final[dict[str, bytes]] = {}
#: Where each element of N's head goes in it (digest 5.2 items 1-7), by tag.
_HEAD_INDEX: Final = {tag: i for i, tag in enumerate(_CLEARTEXT_HEAD)}
_CALLED_INDEX: Final = _HEAD_INDEX[TAG_CALLED_AP_TITLE]


def _absolute_element(tag: int, title: Uid) -> bytes:
    """A2/A6 as ``tag L 06 L <absolute OID>`` (digest 5.2: relative titles are expanded under
    2.16.124.113620.1.22.0). The decoder accepts minimal forms only, so an absolute title
    as received is byte for byte this encoding. Encoded once per title."""
    cache = _ABSOLUTE_CALLED if tag == TAG_CALLED_AP_TITLE else _ABSOLUTE_CALLING
    text = str(title)
    out = cache.get(text)
    if out is None:
        if len(cache) >= 1024:
            cache.clear()
        out = cache[text] = tlv(tag, tlv(TAG_OID, title.absolute().content()))
    return out


def _cleartext_of(data: bytes, header: acse.Header, key_id: int, iv: bytes) -> bytes:
    """N of digest 5.2 from the spans and values the codec's header decode kept (no BER
    walk here, architecture rule 7): elements as received, titles absolute, the
    user-information header up to and including the EPSEM control byte."""
    fields = header.fields
    spans = header.spans
    head = [b""] * len(_CLEARTEXT_HEAD)  # one per tag, in N's order; absent: empty
    for tag, pos, _, stop in spans.elements:
        index = _HEAD_INDEX.get(tag)
        if index is not None:
            head[index] = data[pos:stop]
    if head[_CALLED_INDEX]:
        head[_CALLED_INDEX] = _absolute_element(
            TAG_CALLED_AP_TITLE, fields["called_ap_title"])  # type: ignore[arg-type]
    head.append(data[spans.user_information : spans.epsem[0] + 1])
    calling = fields.get("calling_ap_title")
    if calling is not None:
        head.append(_absolute_element(TAG_CALLING_AP_TITLE, calling))  # type: ignore[arg-type]
    head.append(byte(key_id))
    head.append(iv)
    return b"".join(head)


def _key_id_iv(header: acse.Header) -> tuple[int, bytes] | None:
    """Key id and IV when AC is in the 17-byte C12.22 form, else None (digest 2.4).

    Only that form is accepted, as MeteringSDK does: any other layout would make receivers
    rebuild different cleartexts. The codec keeps both only for that form (minimal lengths,
    key id before IV, nothing else in A1).
    """
    fields = header.fields
    key_id, iv = fields.get("key_id"), fields.get("iv")
    if key_id is None or iv is None:
        return None
    return key_id, iv  # type: ignore[return-value]


def _header(data: bytes) -> acse.Header:
    header = acse.decode_header(data)
    start, stop = header.spans.epsem
    if start == stop:
        raise Truncated("empty EPSEM", start, _EPSEM_PATH)
    return header


def authenticated_cleartext(data: bytes) -> bytes:
    """The EAX' cleartext N of a secured APDU (digest 5.2), e.g. to compare with Wireshark.

    DecodeError for broken structure; SecurityError when there is no C12.22 AC element.
    """
    data = as_bytes(data)
    header = _header(data)
    found = _key_id_iv(header)
    if found is None:
        raise SecurityError()
    return _cleartext_of(data, header, *found)


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
    if mode == _CLEARTEXT:
        return acse.encode(apdu)
    if mode != _AUTHENTICATED and mode != _CIPHERTEXT:
        raise LocalProtocolError(f"security mode {mode} is not defined")
    if epsem.ciphertext is not None:
        raise LocalProtocolError("the EPSEM is still ciphertext: unprotect it before protecting")
    if apdu.authentication_value is not None:
        raise LocalProtocolError("a secured message needs the C12.22 key id/IV form of AC")
    kid = apdu.key_id if apdu.key_id is not None else key_id
    kiv = apdu.iv if apdu.iv is not None else iv
    if kid is None or kiv is None:
        raise LocalProtocolError("a secured message needs a key id and an IV")
    kiv = as_bytes(kiv)
    if kid not in keys:
        raise ConfigurationError(f"no key for key id {kid}")
    if keys.is_master(kid) and apdu.called_ap_title is None:
        raise ConfigurationError(f"key id {kid} derives per-node keys: the message needs a "
                                 "called AP title")
    # a master key id: the key derived for the node we send to (crypto.keys.derive_key)
    cipher = keys.cipher(kid, apdu.called_ap_title)
    plaintext = encode_body(epsem)
    # The message is built from its parts, so N comes from the same parts with no decode:
    # the header elements as sent (titles encoded once per title), the user-information
    # header up to the control byte (its lengths already count the final MAC), then A6.
    elements = acse.header_elements(apdu)
    if apdu.key_id is None or apdu.iv is None:  # else header_elements encoded it already
        elements[TAG_CALLING_AUTHENTICATION_VALUE] = acse.authentication_element(kid, kiv)
    size = 1 + len(plaintext) + MAC_SIZE
    be_head = _user_information_head(apdu.indirect_reference, size)
    ctl = byte(epsem.control)
    parts = []
    for tag in _CLEARTEXT_HEAD:
        element = elements.get(tag)
        if element is None:
            continue
        if tag == TAG_CALLED_AP_TITLE:
            element = _absolute_element(tag, apdu.called_ap_title)  # type: ignore[arg-type]
        parts.append(element)
    parts.append(be_head)
    parts.append(ctl)
    if apdu.calling_ap_title is not None:
        parts.append(_absolute_element(TAG_CALLING_AP_TITLE, apdu.calling_ap_title))
    parts.append(byte(kid))
    parts.append(kiv)
    cleartext = b"".join(parts)
    if mode == _CIPHERTEXT:
        body, mac = cipher.encrypt(cleartext, plaintext)
    else:
        body, mac = plaintext, cipher.authenticate(cleartext, plaintext)
    content = list(elements.values())
    content += (be_head, ctl, body, mac)
    return tlv(acse.APDU_TAG, b"".join(content))


def _user_information_head(indirect_reference: int | None, size: int) -> bytes:
    """``BE L 28 L [02 ..] 81 L`` in front of an EPSEM of ``size`` bytes."""
    inner = _OCTET_ALIGNED + encode_length(size)
    if indirect_reference is not None:
        inner = acse.integer_element(indirect_reference) + inner
    external = _EXTERNAL + encode_length(len(inner) + size) + inner
    return _BE + encode_length(len(external) + size) + external


# --------------------------------------------------------------------------- receiver


class _Checked:
    """Outcome of the MAC check. ``status``: ok, cleartext, no-ac, unknown-key or bad-mac.

    A plain class, not a frozen dataclass: it is made for every secured message, and a
    dataclass's generated ``__init__`` stays interpreted in a compiled build.
    """

    __slots__ = ("iv", "key_id", "plaintext", "status")

    def __init__(self, status: str, key_id: int | None = None, iv: bytes | None = None,
                 plaintext: bytes | None = None) -> None:
        self.status = status
        self.key_id = key_id
        self.iv = iv
        self.plaintext = plaintext  # mode 2 only, once the MAC verified


def _check(data: bytes, header: acse.Header, keys: KeyTable,
           session_key: tuple[int, bytes] | None = None) -> _Checked:
    """Find the key, rebuild N from the header's spans and verify the MAC; decrypt mode 2.
    Parses no service.

    ``session_key`` (key id, IV) stands in for a missing AC element (digest 12: inside a
    Logon session MeteringSDK omits AC and reuses the Logon message's key id and IV).
    """
    ctl_pos, end = header.spans.epsem
    ctl, mac_pos = control_and_mac(data, ctl_pos, end, _EPSEM_PATH)
    mode = (ctl >> 2) & 3
    if mode == _CLEARTEXT:
        return _Checked("cleartext")
    found = _key_id_iv(header)
    if found is None and not header.has(TAG_CALLING_AUTHENTICATION_VALUE):
        found = session_key
    if found is None:
        return _Checked("no-ac")
    key_id, iv = found
    if key_id not in keys:
        return _Checked("unknown-key", key_id, iv)
    # a master key id: the key derived for the node that sent it (its calling AP title)
    try:
        cipher = keys.cipher(key_id, header.calling_ap_title)
    except SecurityError:  # a master, and no calling title to derive from
        return _Checked("unknown-key", key_id, iv)
    cleartext = _cleartext_of(data, header, key_id, iv)
    body = data[ctl_pos + 1 : mac_pos]
    mac = data[mac_pos:end]
    try:
        if mode == _CIPHERTEXT:
            plaintext = cipher.decrypt(cleartext, body, mac)
            return _Checked("ok", key_id, iv, plaintext)
        cipher.verify(cleartext, body, mac)
    except SecurityError:
        return _Checked("bad-mac", key_id, iv)
    return _Checked("ok", key_id, iv)


def _refuse(debug: DebugHook | None, reason: str) -> SecurityError:
    """The generic SecurityError, its reason told to ``debug`` only."""
    if debug is not None:
        debug(reason)
    return SecurityError()


_REASONS: Final = {
    "no-ac": "secured message without a C12.22 key id/IV (AC) element",
    "unknown-key": "unknown key id",
    "bad-mac": "MAC mismatch",
}


def _header_message_id(header: acse.Header, key_id: int, iv: bytes) -> MessageId:
    """The replay key from the header alone (no service parsed)."""
    calling = header.calling_ap_title
    title = "" if calling is None else str(calling.absolute())
    return MessageId(title, key_id, iv, header.calling_ap_invocation_id)


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
    return _decrypted(apdu, epsem.ed_class_included, epsem.mac, epsem.control, plaintext,
                      requests)


def _decrypted(header: acse.Header | Apdu, ed_class_included: bool, mac: bytes | None,
               ctl: int, plaintext: bytes, requests: Sequence[Request] | None) -> Apdu:
    """The mode-2 APDU from its header and decrypted body: the services are parsed once,
    from the plaintext (the ciphertext is never decoded as an EPSEM first)."""
    ed_class, services, padding = decode_body(plaintext, 0, len(plaintext), ed_class_included,
                                              requests, _EPSEM_PATH)
    epsem = Epsem(services, security_mode=(ctl >> 2) & 3, response_control=ctl & 3,
                  recovery_session=bool(ctl & FLAG_RECOVERY_SESSION),
                  proxy_service_used=bool(ctl & FLAG_PROXY_SERVICE_USED),
                  ed_class=ed_class, mac=mac, padding=padding)
    if isinstance(header, acse.Header):
        return acse.with_epsem(header, epsem)
    out = dataclasses.replace(header, epsem=epsem)
    object.__setattr__(out, "spans", header.spans)
    return out


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
    header: acse.Header | None = None,
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

    ``header``: :func:`c1222.codec.acse.decode_header` of ``data`` when the caller already
    read it (a node checks A2 first), so the header is decoded once.
    """
    data = as_bytes(data)
    if replay is not None and now is None:
        raise LocalProtocolError("a replay check needs `now`")

    if header is None:
        header = _header(data)
    elif header.spans.epsem[0] == header.spans.epsem[1]:
        raise Truncated("empty EPSEM", header.spans.epsem[0], _EPSEM_PATH)
    checked = _check(data, header, keys, session_key)
    if checked.status == "cleartext":
        if minimum_mode > _CLEARTEXT:
            raise _refuse(debug, f"security mode 0 below the required mode {minimum_mode}")
        return acse.decode_rest(data, header, requests)
    if checked.status != "ok":
        raise _refuse(debug, _REASONS[checked.status])
    ctl_pos, end = header.spans.epsem
    ctl = data[ctl_pos]
    mode = (ctl >> 2) & 3
    if mode < minimum_mode:
        raise _refuse(debug, f"security mode {mode} below the required mode {minimum_mode}")
    assert checked.key_id is not None and checked.iv is not None
    in_session = not header.has(TAG_CALLING_AUTHENTICATION_VALUE)
    if in_session and session_order is not None:
        try:
            session_order(header.calling_ap_invocation_id)
        except SecurityError:
            raise _refuse(debug, "session invocation id not above the previous one") from None
    elif replay is not None:
        assert now is not None
        try:
            replay.accept(_header_message_id(header, checked.key_id, checked.iv), now)
        except SecurityError:
            raise _refuse(debug, "replayed or stale message") from None
    if header.key_id is None:  # verified with the session's key id and IV
        header = acse.Header({**header.fields, "key_id": checked.key_id, "iv": checked.iv},
                             header.spans)
    if checked.plaintext is None:
        return acse.decode_rest(data, header, requests)
    if callable(requests):
        requests = requests(header.called_ap_invocation_id, header.calling_ap_invocation_id)
    return _decrypted(header, bool(ctl & FLAG_ED_CLASS_INCLUDED), data[end - MAC_SIZE:end],
                      ctl, checked.plaintext, requests)


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
        raw = as_bytes(raw)
        spans = apdu.spans
        header = _header(raw) if spans is None else acse.Header(_header_fields(apdu), spans)
        checked = _check(raw, header, keys)
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
