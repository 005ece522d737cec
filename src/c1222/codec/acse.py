"""The C12.22 ACSE PDU: ``60 <len> <elements>`` (digest section 2).

Elements are accepted in any order (each at most once, BE last) and encoded
in ascending tag order with minimal lengths and integers, so that receivers
that re-encode the header for the MAC (Wireshark, MeteringSDK) reproduce it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from c1222 import limits
from c1222.codec import epsem as epsem_codec
from c1222.codec.ber import (
    BYTES,
    FROM_BYTES,
    TAG_INTEGER,
    TAG_OID,
    TAG_RELATIVE_OID_ACSE,
    Uid,
    as_bytes,
    decode_uid_content,
    decode_unsigned,
    encode_length,
    encode_unsigned,
    read_length,
    read_tlv,
    tlv,
)
from c1222.codec.epsem import Epsem
from c1222.codec.services import Request
from c1222.errors import (
    BerError,
    DecodeError,
    DecodeLimitExceeded,
    LocalProtocolError,
    Truncated,
)

APDU_TAG: Final = 0x60
TAG_ASO_CONTEXT: Final = 0xA1
TAG_CALLED_AP_TITLE: Final = 0xA2
TAG_CALLED_AE_QUALIFIER: Final = 0xA3  # segments only: total size of the unsegmented APDU
TAG_CALLED_AP_INVOCATION_ID: Final = 0xA4
TAG_CALLING_AP_TITLE: Final = 0xA6
TAG_CALLING_AE_QUALIFIER: Final = 0xA7
TAG_CALLING_AP_INVOCATION_ID: Final = 0xA8
TAG_MECHANISM_NAME: Final = 0x8B
TAG_CALLING_AUTHENTICATION_VALUE: Final = 0xAC
TAG_USER_INFORMATION: Final = 0xBE
TAG_EXTERNAL: Final = 0x28
TAG_OCTET_ALIGNED: Final = 0x81

ELEMENT_NAMES: Final[dict[int, str]] = {
    TAG_ASO_CONTEXT: "aso_context",
    TAG_CALLED_AP_TITLE: "called_ap_title",
    TAG_CALLED_AE_QUALIFIER: "called_ae_qualifier",
    TAG_CALLED_AP_INVOCATION_ID: "called_ap_invocation_id",
    TAG_CALLING_AP_TITLE: "calling_ap_title",
    TAG_CALLING_AE_QUALIFIER: "calling_ae_qualifier",
    TAG_CALLING_AP_INVOCATION_ID: "calling_ap_invocation_id",
    TAG_MECHANISM_NAME: "mechanism_name",
    TAG_CALLING_AUTHENTICATION_VALUE: "calling_authentication_value",
    TAG_USER_INFORMATION: "user_information",
}
_PATHS: Final = {tag: f"apdu.{name}" for tag, name in ELEMENT_NAMES.items()}
#: The C12.22 AC element as every implementation sends it (digest 2.4), up to the key id:
#: ``AC 0F A2 0D A0 0B A1 09 80 01 <key id> 81 04 <IV>``.
_AC_PREFIX: Final = bytes.fromhex("ac0fa20da00ba1098001")
_AC_SIZE: Final = 17


#: One element as received: (tag, TLV start, value start, value end) in the APDU's bytes.
Span = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Spans:
    """The raw span of every ACSE element of a decoded APDU (architecture rule 7): a layer
    above (crypto's authenticated cleartext, a relay's header copy) reads the bytes it needs
    from them instead of walking the BER again.

    ``elements``: every element in received order, user-information (BE) included;
    ``epsem``: (start, end) of the EPSEM octet string, its first byte the control byte.
    """

    elements: tuple[Span, ...]
    epsem: tuple[int, int]

    def __init__(self, elements: tuple[Span, ...], epsem: tuple[int, int]) -> None:
        # written out for mypyc, as Apdu's
        object.__setattr__(self, "elements", elements)
        object.__setattr__(self, "epsem", epsem)

    def element(self, tag: int) -> Span | None:
        for span in self.elements:
            if span[0] == tag:
                return span
        return None

    @property
    def user_information(self) -> int:
        """Offset of the BE tag (the last element)."""
        return self.elements[-1][1]


@dataclass(frozen=True, slots=True)
class Header:
    """What :func:`decode_header` read: every element before the EPSEM, decoded once, with its
    span. ``fields`` are the :class:`Apdu` fields the header holds (keyword names)."""

    fields: dict[str, object]
    spans: Spans

    def __init__(self, fields: dict[str, object], spans: Spans) -> None:
        # written out for mypyc, as Apdu's
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "spans", spans)

    @property
    def called_ap_title(self) -> Uid | None:
        return self.fields.get("called_ap_title")  # type: ignore[return-value]

    @property
    def calling_ap_title(self) -> Uid | None:
        return self.fields.get("calling_ap_title")  # type: ignore[return-value]

    @property
    def called_ap_invocation_id(self) -> int | None:
        return self.fields.get("called_ap_invocation_id")  # type: ignore[return-value]

    @property
    def calling_ap_invocation_id(self) -> int:
        return self.fields["calling_ap_invocation_id"]  # type: ignore[return-value]

    @property
    def key_id(self) -> int | None:
        return self.fields.get("key_id")  # type: ignore[return-value]

    @property
    def iv(self) -> bytes | None:
        return self.fields.get("iv")  # type: ignore[return-value]

    def has(self, tag: int) -> bool:
        """Whether the element ``tag`` was present."""
        return self.spans.element(tag) is not None


@dataclass(frozen=True, slots=True)
class Apdu:
    """One C12.22 message.

    ``key_id`` and ``iv`` are the C12.22 form of the calling-authentication-value
    (AC); ``authentication_value`` keeps any other form of AC as raw contents.
    ``called_ae_qualifier`` and ``indirect_reference`` appear only in segments.
    """

    epsem: Epsem
    calling_ap_invocation_id: int
    called_ap_title: Uid | None = None
    calling_ap_title: Uid | None = None
    called_ap_invocation_id: int | None = None
    calling_ae_qualifier: int | None = None
    aso_context: Uid | None = None
    mechanism_name: Uid | None = None
    key_id: int | None = None
    iv: bytes | None = None
    authentication_value: bytes | None = field(default=None, repr=False)
    called_ae_qualifier: int | None = None
    indirect_reference: int | None = None
    #: Where each element sat in the bytes this APDU was decoded from (None for an APDU made
    #: in code; ``dataclasses.replace`` drops it, since a changed APDU has other bytes).
    spans: Spans | None = field(default=None, init=False, compare=False, repr=False)

    # The dataclass's own __init__, written out: @dataclass keeps an __init__ the class
    # defines, and compiled by mypyc each ``object.__setattr__`` becomes a native store (the
    # generated one stays interpreted: 1.8 of the 2 µs it took to build a decoded Apdu).
    def __init__(self, epsem: Epsem, calling_ap_invocation_id: int,
                 called_ap_title: Uid | None = None, calling_ap_title: Uid | None = None,
                 called_ap_invocation_id: int | None = None,
                 calling_ae_qualifier: int | None = None, aso_context: Uid | None = None,
                 mechanism_name: Uid | None = None, key_id: int | None = None,
                 iv: bytes | None = None, authentication_value: bytes | None = None,
                 called_ae_qualifier: int | None = None,
                 indirect_reference: int | None = None) -> None:
        object.__setattr__(self, "epsem", epsem)
        object.__setattr__(self, "calling_ap_invocation_id", calling_ap_invocation_id)
        object.__setattr__(self, "called_ap_title", called_ap_title)
        object.__setattr__(self, "calling_ap_title", calling_ap_title)
        object.__setattr__(self, "called_ap_invocation_id", called_ap_invocation_id)
        object.__setattr__(self, "calling_ae_qualifier", calling_ae_qualifier)
        object.__setattr__(self, "aso_context", aso_context)
        object.__setattr__(self, "mechanism_name", mechanism_name)
        object.__setattr__(self, "key_id", key_id)
        object.__setattr__(self, "iv", iv)
        object.__setattr__(self, "authentication_value", authentication_value)
        object.__setattr__(self, "called_ae_qualifier", called_ae_qualifier)
        object.__setattr__(self, "indirect_reference", indirect_reference)
        object.__setattr__(self, "spans", None)

    @property
    def is_response(self) -> bool:
        """A4 marks a response (digest 2.6)."""
        return self.called_ap_invocation_id is not None

    def encode(self) -> bytes:
        return encode(self)


# --------------------------------------------------------------------------- encoding


def integer_element(value: int) -> bytes:
    """``02 L <unsigned>``: the invocation ids, AE qualifiers and the indirect reference."""
    return tlv(TAG_INTEGER, encode_unsigned(value, limits.MAX_INVOCATION_ID_BYTES))


def _ap_title(title: Uid) -> bytes:
    return title.encode(TAG_RELATIVE_OID_ACSE)


#: Title text -> the encoded A2 / A6: a node's own title and its peers' recur in every message
#: (bounded: cleared when full). Keyed by the text a Uid keeps once made (a Uid's hash is
#: recomputed from its arcs at every look-up), one dict per tag.
_TITLE_ELEMENTS: Final[dict[int, dict[str, bytes]]] = {TAG_CALLED_AP_TITLE: {},
                                                        TAG_CALLING_AP_TITLE: {}}


def title_element(tag: int, title: Uid) -> bytes:
    """A2 or A6 holding ``title`` (relative titles as ``80 L ..``), encoded once per title."""
    cache = _TITLE_ELEMENTS[tag]
    text = str(title)
    out = cache.get(text)
    if out is None:
        if len(cache) >= 1024:
            cache.clear()
        out = cache[text] = tlv(tag, _ap_title(title))
    return out


def authentication_element(key_id: int | None, iv: bytes | None) -> bytes:
    """The C12.22 AC element; with both fields it is the canonical 17 bytes (digest 2.4)."""
    if key_id is not None and iv is not None and 0 <= key_id <= 255 and len(iv) == 4:
        # every secured message: one concatenation instead of four nested TLVs
        return b"".join((_AC_PREFIX, BYTES[key_id], b"\x81\x04", iv))
    inner = b""
    if key_id is not None:
        if not 0 <= key_id <= 255:
            raise LocalProtocolError("key id is one byte")
        inner += bytes((0x80, 1, key_id))
    if iv is not None:
        if len(iv) != 4:
            raise LocalProtocolError("IV is 4 bytes")
        inner += b"\x81\x04" + iv
    return tlv(TAG_CALLING_AUTHENTICATION_VALUE, tlv(0xA2, tlv(0xA0, tlv(0xA1, inner))))


def header_elements(apdu: Apdu) -> dict[int, bytes]:
    """Every element before BE, as encoded, keyed by tag (crypto/policy builds the MAC input)."""
    out: dict[int, bytes] = {}
    if apdu.aso_context is not None:
        out[TAG_ASO_CONTEXT] = tlv(TAG_ASO_CONTEXT, tlv(TAG_OID, apdu.aso_context.content()))
    if apdu.called_ap_title is not None:
        out[TAG_CALLED_AP_TITLE] = title_element(TAG_CALLED_AP_TITLE, apdu.called_ap_title)
    if apdu.called_ae_qualifier is not None:
        out[TAG_CALLED_AE_QUALIFIER] = tlv(TAG_CALLED_AE_QUALIFIER,
                                           integer_element(apdu.called_ae_qualifier))
    if apdu.called_ap_invocation_id is not None:
        out[TAG_CALLED_AP_INVOCATION_ID] = tlv(TAG_CALLED_AP_INVOCATION_ID,
                                               integer_element(apdu.called_ap_invocation_id))
    if apdu.calling_ap_title is not None:
        out[TAG_CALLING_AP_TITLE] = title_element(TAG_CALLING_AP_TITLE, apdu.calling_ap_title)
    if apdu.calling_ae_qualifier is not None:
        out[TAG_CALLING_AE_QUALIFIER] = tlv(TAG_CALLING_AE_QUALIFIER,
                                            integer_element(apdu.calling_ae_qualifier))
    out[TAG_CALLING_AP_INVOCATION_ID] = tlv(TAG_CALLING_AP_INVOCATION_ID,
                                            integer_element(apdu.calling_ap_invocation_id))
    if apdu.mechanism_name is not None:
        out[TAG_MECHANISM_NAME] = tlv(TAG_MECHANISM_NAME, apdu.mechanism_name.content())
    if apdu.authentication_value is not None:
        if apdu.key_id is not None or apdu.iv is not None:
            raise LocalProtocolError("AC is either key id/IV or a raw authentication value")
        out[TAG_CALLING_AUTHENTICATION_VALUE] = tlv(TAG_CALLING_AUTHENTICATION_VALUE,
                                                    apdu.authentication_value)
    elif apdu.key_id is not None or apdu.iv is not None:
        out[TAG_CALLING_AUTHENTICATION_VALUE] = authentication_element(apdu.key_id, apdu.iv)
    return out


def user_information(octets: bytes, indirect_reference: int | None = None) -> bytes:
    """``BE <len> 28 <len> [02 ..] 81 <len> <octets>``."""
    inner = b"" if indirect_reference is None else integer_element(indirect_reference)
    inner += bytes((TAG_OCTET_ALIGNED,)) + encode_length(len(octets)) + octets
    return tlv(TAG_USER_INFORMATION, tlv(TAG_EXTERNAL, inner))


def encode(apdu: Apdu) -> bytes:
    """The APDU's bytes. Secured EPSEMs must already carry their MAC (see crypto/policy)."""
    body = b"".join(header_elements(apdu).values())
    body += user_information(apdu.epsem.encode(), apdu.indirect_reference)
    return tlv(APDU_TAG, body)


# --------------------------------------------------------------------------- decoding


#: (called-AP-invocation-id or None, calling-AP-invocation-id) -> the requests answered.
RequestLookup = Callable[[int | None, int], Sequence[Request] | None]


def decode(data: bytes, requests: Sequence[Request] | RequestLookup | None = None) -> Apdu:
    """Decode one whole APDU.

    ``requests`` types the services of a response (see epsem): the requests it
    answers, or a function from its invocation ids (A4, A8) to them. The result keeps the
    span of every element (:class:`Spans`).
    """
    return decode_rest(data, decode_header(data), requests)


def decode_rest(data: bytes, header: Header,
                requests: Sequence[Request] | RequestLookup | None = None) -> Apdu:
    """The APDU whose header :func:`decode_header` read from ``data``: its EPSEM decoded (the
    header is not walked again)."""
    fields = header.fields
    if callable(requests):
        requests = requests(fields.get("called_ap_invocation_id"),  # type: ignore[arg-type]
                            fields["calling_ap_invocation_id"])  # type: ignore[arg-type]
    start, stop = header.spans.epsem
    epsem = epsem_codec.decode(data, start, stop, requests, "apdu.user_information.epsem")
    return with_epsem(header, epsem)


def with_epsem(header: Header, epsem: Epsem) -> Apdu:
    """The APDU of ``header`` with ``epsem`` (decoded, or decrypted by crypto/policy)."""
    f: dict[str, Any] = header.fields
    # each field by position: compiled, a direct call of Apdu's __init__ (``**fields`` had
    # twelve keywords parsed per message)
    apdu = Apdu(epsem, f["calling_ap_invocation_id"], f.get("called_ap_title"),
                f.get("calling_ap_title"), f.get("called_ap_invocation_id"),
                f.get("calling_ae_qualifier"), f.get("aso_context"), f.get("mechanism_name"),
                f.get("key_id"), f.get("iv"), f.get("authentication_value"),
                f.get("called_ae_qualifier"), f.get("indirect_reference"))
    object.__setattr__(apdu, "spans", header.spans)
    return apdu


def decode_header(data: bytes) -> Header:
    """Every element of an APDU before its EPSEM, decoded once, with their spans; the EPSEM
    is located, not read (digest 2). A node checks A2 and crypto verifies the MAC from this
    before any service is parsed (digest 5.5). DecodeError for a malformed header."""
    end = len(data)
    if end < 2:
        raise Truncated("APDU shorter than its header", 0, "apdu")
    if data[0] != APDU_TAG:
        raise BerError(f"APDU tag {data[0]:#04x}, not 0x60", 0, "apdu")
    length, pos = read_length(data, 1, end, "apdu.length")
    if pos + length != end:
        if pos + length > end:
            raise Truncated(f"APDU claims {length} bytes, {end - pos} present", 1, "apdu.length")
        raise BerError(f"{end - pos - length} bytes after the APDU", pos + length, "apdu")
    if end > limits.MAX_APDU_SIZE:
        raise DecodeLimitExceeded("APDU over the size limit", 0, "apdu")
    fields: dict[str, object] = {}
    spans: list[Span] = []
    seen: set[int] = set()
    epsem_span = None
    while pos < end:
        # short definite lengths (every header element but a long BE) are read inline
        tag = data[pos]
        if pos + 1 < end and data[pos + 1] < 0x80 and tag & 0x1F != 0x1F:
            start = pos + 2
            stop = start + data[pos + 1]
            if stop > end:
                tag, start, stop = read_tlv(data, pos, end, "apdu")  # raises Truncated
        else:
            tag, start, stop = read_tlv(data, pos, end, "apdu")
        name = ELEMENT_NAMES.get(tag)
        if name is None:
            raise BerError(f"element {tag:#04x} is not used by C12.22", pos, "apdu")
        if tag in seen:
            raise BerError("element repeated", pos, _PATHS[tag])
        if epsem_span is not None:
            raise BerError("user-information must be the last element", pos, _PATHS[tag])
        seen.add(tag)
        spans.append((tag, pos, start, stop))
        if tag == TAG_USER_INFORMATION:
            epsem_span, indirect = _user_information(data, start, stop, _PATHS[tag])
            if indirect is not None:
                fields["indirect_reference"] = indirect
        elif tag == TAG_CALLING_AUTHENTICATION_VALUE:
            if stop - pos == _AC_SIZE and data[pos:pos + 10] == _AC_PREFIX \
                    and data[pos + 11:pos + 13] == b"\x81\x04":
                fields["key_id"] = data[pos + 10]  # the C12.22 form every implementation sends
                fields["iv"] = as_bytes(data[pos + 13:stop])
            else:
                fields.update(_authentication_value(data, start, stop, _PATHS[tag]))
        elif tag == TAG_MECHANISM_NAME:
            fields[name] = decode_uid_content(TAG_OID, data[start:stop], start, _PATHS[tag])
        else:
            itag = data[start] if start < stop else -1
            if start + 1 < stop and data[start + 1] < 0x80 and itag & 0x1F != 0x1F:
                istart = start + 2
                istop = istart + data[start + 1]
                if istop > stop:
                    itag, istart, istop = read_tlv(data, start, stop, _PATHS[tag])
            else:
                itag, istart, istop = read_tlv(data, start, stop, _PATHS[tag])
            if istop != stop:
                raise BerError("bytes after the element's value", istop, _PATHS[tag])
            content = data[istart:istop]
            if tag in (TAG_CALLED_AP_TITLE, TAG_CALLING_AP_TITLE, TAG_ASO_CONTEXT):
                if tag == TAG_ASO_CONTEXT and itag != TAG_OID:
                    raise BerError("ASO context must be an absolute OID", start, _PATHS[tag])
                fields[name] = decode_uid_content(itag, content, istart, _PATHS[tag])
            else:
                if itag != TAG_INTEGER:
                    raise BerError(f"expected INTEGER, found tag {itag:#04x}", start,
                                   _PATHS[tag])
                size = istop - istart
                if size == 1 or 1 < size <= limits.MAX_INVOCATION_ID_BYTES and content[0]:
                    fields[name] = FROM_BYTES(content, "big")  # minimal: decode_unsigned's
                else:  # its errors, with their reasons
                    fields[name] = decode_unsigned(content, istart, _PATHS[tag],
                                                   limits.MAX_INVOCATION_ID_BYTES)
        pos = stop
    if TAG_CALLING_AP_INVOCATION_ID not in seen:
        raise BerError("calling-AP-invocation-id (A8) is mandatory", end, "apdu")
    if epsem_span is None:
        raise BerError("user-information (BE) is mandatory", end, "apdu")
    return Header(fields, Spans(tuple(spans), epsem_span))


def _header_element(data: bytes, wanted: int) -> tuple[int, int, int] | None:
    """(tag, content start, content end) of the value inside header element ``wanted``, found
    by walking the elements before BE without decoding them; None when it is absent."""
    end = len(data)
    if end < 2 or data[0] != APDU_TAG:
        raise BerError("not an APDU", 0, "apdu")
    _, pos = read_length(data, 1, end, "apdu.length")
    while pos < end:
        tag, start, stop = read_tlv(data, pos, end, "apdu")
        if tag == wanted:
            return read_tlv(data, start, stop, _PATHS[tag])
        if tag == TAG_USER_INFORMATION:
            return None
        pos = stop
    return None


def called_invocation_id(data: bytes) -> int | None:
    """A4 of an APDU without decoding the rest: a transport's cheap test for "a response to
    which of my requests" (digest 2.6). DecodeError when the element walk fails."""
    found = _header_element(data, TAG_CALLED_AP_INVOCATION_ID)
    if found is None:
        return None
    itag, istart, istop = found
    path = _PATHS[TAG_CALLED_AP_INVOCATION_ID]
    if itag != TAG_INTEGER:
        raise BerError(f"expected INTEGER, found tag {itag:#04x}", istart, path)
    return decode_unsigned(data[istart:istop], istart, path, limits.MAX_INVOCATION_ID_BYTES)


def called_ap_title(data: bytes) -> Uid | None:
    """A2 of an APDU without decoding the rest: a node's cheap "is this for me" before it
    verifies and decodes the message. DecodeError when the element walk fails."""
    found = _header_element(data, TAG_CALLED_AP_TITLE)
    if found is None:
        return None
    itag, istart, istop = found
    return decode_uid_content(itag, data[istart:istop], istart, _PATHS[TAG_CALLED_AP_TITLE])


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """What a segment says about itself (c1222-network.md, "Application-layer segmentation"):
    ``total`` (A3) is the size of the whole APDU, ``offset`` (the indirect reference) where
    ``payload`` (the octet string) sits in it; the titles and A8 are copied from the whole APDU.
    """

    total: int
    offset: int
    payload: bytes = field(repr=False)
    calling_ap_invocation_id: int
    called_ap_title: Uid | None = None
    calling_ap_title: Uid | None = None
    aso_context: Uid | None = None


#: Elements a segment never carries: the MAC and authentication are over the whole APDU, and
#: A4 is read from the reassembled one.
_NOT_IN_SEGMENTS: Final = (TAG_CALLED_AP_INVOCATION_ID, TAG_MECHANISM_NAME,
                    TAG_CALLING_AUTHENTICATION_VALUE)


_SEGMENT_FIELDS: Final = (TAG_ASO_CONTEXT, TAG_CALLED_AP_TITLE, TAG_CALLED_AE_QUALIFIER,
                   TAG_CALLING_AP_TITLE, TAG_CALLING_AP_INVOCATION_ID)


def segment_header(data: bytes) -> SegmentHeader | None:
    """The segment header of an APDU carrying A3, or None for a whole APDU: the transport's
    cheap test before reassembly (c1222-network.md). The header elements are walked, never
    the payload. DecodeError when the walk fails or a segment breaks the 2008 format."""
    end = len(data)
    if end < 2 or data[0] != APDU_TAG:
        raise BerError("not an APDU", 0, "apdu")
    length, pos = read_length(data, 1, end, "apdu.length")
    if pos + length != end:
        raise BerError("the APDU length does not match its bytes", 1, "apdu.length")
    found: dict[int, tuple[int, int, int]] = {}
    while pos < end:
        tag, start, stop = read_tlv(data, pos, end, "apdu")
        if tag in found:
            raise BerError("element repeated", pos, _PATHS.get(tag, "apdu"))
        if tag == TAG_USER_INFORMATION:
            if TAG_CALLED_AE_QUALIFIER not in found:
                return None
            if stop != end:
                raise BerError("user-information must be the last element", pos,
                               _PATHS[tag])
            span, indirect = _user_information(data, start, stop, _PATHS[tag])
            return _segment(data, found, span, indirect or 0)
        found[tag] = (tag, start, stop)  # values are read only for a segment (_segment)
        pos = stop
    return None  # no user-information: acse.decode will say what is wrong


def _segment(data: bytes, elements: dict[int, tuple[int, int, int]], span: tuple[int, int],
             offset: int) -> SegmentHeader:
    for tag in _NOT_IN_SEGMENTS:
        if tag in elements:
            raise BerError("a segment carries no A4, mechanism name or authentication value",
                           elements[tag][1], _PATHS[tag])
    # the value inside each element read here (8B and AC, absent, have forms of their own)
    found = {tag: read_tlv(data, start, stop, _PATHS[tag])
             for tag, (_, start, stop) in elements.items() if tag in _SEGMENT_FIELDS}

    def integer(tag: int) -> int | None:
        if tag not in found:
            return None
        itag, istart, istop = found[tag]
        if itag != TAG_INTEGER:
            raise BerError(f"expected INTEGER, found tag {itag:#04x}", istart, _PATHS[tag])
        return decode_unsigned(data[istart:istop], istart, _PATHS[tag],
                               limits.MAX_INVOCATION_ID_BYTES)

    def title(tag: int) -> Uid | None:
        if tag not in found:
            return None
        itag, istart, istop = found[tag]
        return decode_uid_content(itag, data[istart:istop], istart, _PATHS[tag])

    total = integer(TAG_CALLED_AE_QUALIFIER)
    invocation = integer(TAG_CALLING_AP_INVOCATION_ID)
    if invocation is None:
        raise BerError("calling-AP-invocation-id (A8) is mandatory", len(data), "apdu")
    assert total is not None
    return SegmentHeader(total=total, offset=offset, payload=bytes(data[span[0]:span[1]]),
                         calling_ap_invocation_id=invocation,
                         called_ap_title=title(TAG_CALLED_AP_TITLE),
                         calling_ap_title=title(TAG_CALLING_AP_TITLE),
                         aso_context=title(TAG_ASO_CONTEXT))


def _user_information(data: bytes, start: int, stop: int, path: str
                      ) -> tuple[tuple[int, int], int | None]:
    # The form nearly every message has, read inline: BE <l> 28 <l> 81 <l> <EPSEM>, short
    # lengths, no indirect reference. Anything else takes the general path below.
    if 4 <= stop - start < 0x82 and data[start] == TAG_EXTERNAL \
            and data[start + 1] == stop - start - 2 and data[start + 2] == TAG_OCTET_ALIGNED \
            and data[start + 3] == stop - start - 4:
        return (start + 4, stop), None
    tag, pos, end = read_tlv(data, start, stop, path)
    if tag != TAG_EXTERNAL or end != stop:
        raise BerError("user-information must hold one EXTERNAL (28)", start, path)
    indirect = None
    tag, vstart, vstop = read_tlv(data, pos, end, path + ".external")
    if tag == TAG_INTEGER:
        indirect = decode_unsigned(data[vstart:vstop], vstart, path + ".indirect_reference")
        pos = vstop
        tag, vstart, vstop = read_tlv(data, pos, end, path + ".external")
    if tag != TAG_OCTET_ALIGNED:
        raise BerError(f"EXTERNAL encoding {tag:#04x}, not octet-aligned (81)", pos, path)
    if vstop != end:
        raise BerError("bytes after the EPSEM octet string", vstop, path)
    return (vstart, vstop), indirect


def _authentication_value(data: bytes, start: int, stop: int, path: str) -> dict[str, object]:
    """Key id and IV from the C12.22 form of AC; any other form is kept raw (digest 2.4)."""
    raw: dict[str, object] = {"authentication_value": bytes(data[start:stop])}
    try:
        tag, s, e = read_tlv(data, start, stop, path)
        if tag != 0xA2 or e != stop:
            return raw
        tag, s2, e2 = read_tlv(data, s, e, path)
        if tag != 0xA0 or e2 != e:
            return raw
        tag, s3, e3 = read_tlv(data, s2, e2, path)
        if tag != 0xA1 or e3 != e2:
            return raw
    except BerError:
        return raw
    out: dict[str, object] = {}
    pos = s3
    while pos < e3:
        tag, vs, ve = read_tlv(data, pos, e3, path)
        if tag == 0x80 and ve - vs == 1 and "key_id" not in out and "iv" not in out:
            out["key_id"] = data[vs]
        elif tag == 0x81 and ve - vs == 4 and "iv" not in out:
            out["iv"] = bytes(data[vs:ve])
        else:
            raise BerError(f"C12.22 authentication value member {tag:#04x}", pos, path)
        pos = ve
    return out


def looks_like_apdu(data: bytes) -> bool:
    """Whether one framed APDU (``60 <length> ...``) has the ACSE structure of C12.22.

    The heuristic for traffic off the C12.22 port: every element is one C12.22 uses
    (digest 2), none repeats, A8 is present and user-information (BE) comes last,
    ends the APDU and holds an EXTERNAL (28). Only tags and lengths are read; the
    message itself is decoded once, later, by the dissector.
    """
    return shape_verdict(data) is True


def shape_verdict(data: bytes | bytearray) -> bool | None:
    """:func:`looks_like_apdu` on the first bytes of a stream (a capture reader's heuristic
    for other ports): None while more bytes are needed.

    Only the elements before user-information's first content byte are read, so a
    stream is judged on its first hundred bytes or so, whatever the APDU's size.
    """
    if not isinstance(data, bytes):  # a reader's bounded head buffer: the BER readers take bytes
        data = bytes(data)
    have = len(data)
    if have < 2:
        return None if not have or data[0] == APDU_TAG else False
    if data[0] != APDU_TAG:
        return False
    seen: set[int] = set()
    try:
        length, pos = read_length(data, 1, have, "apdu.length")
        total = pos + length
        while pos < total:
            if pos >= have:
                return None
            tag = data[pos]
            if tag not in ELEMENT_NAMES or tag in seen:
                return False
            size, start = read_length(data, pos + 1, have, "apdu")
            pos = start + size
            if pos > total:
                return False
            seen.add(tag)
            if tag == TAG_USER_INFORMATION:
                if pos != total or TAG_CALLING_AP_INVOCATION_ID not in seen:
                    return False
                return None if start >= have else size > 0 and data[start] == TAG_EXTERNAL
    except Truncated:
        return None
    except DecodeError:
        return False
    return False  # no user-information
