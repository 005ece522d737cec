"""What came back when the tester cannot read it: the bytes' best decode and why they were
refused, naming the older draft forms of C12.22 a deployed device may answer in.

Devices built on the drafts of C12.22 are in the field. Itron's reference stack (January-2008
draft, digest source ITR, ``acsemsg.c``) reads a request as 2008 form only when its A8 is
``A8 03 02 01 xx`` or ``A8 04 02 02 xx xx``: any other invocation id (our 4-byte ones) makes it a
*March-2006* message, and the answer comes back in March-2006 form:

* A4 and A8 are the bare value bytes, with no INTEGER (``02 len``) inside (``A4 02 02 04``: the
  first two bytes of our A8's contents taken as a 2006 sequence number);
* the user information is a bare EPSEM, with no EXTERNAL (``28``) and octet string (``81``);
* the application context, if sent, is 1.2.840.10066; the AE qualifier's inner tag is ``82``;
  AP titles may carry the universal RELATIVE-OID tag ``0D`` inside the ACSE.

:func:`explain` walks the elements (bounded by the bytes; it never raises) and says which of
these marks it found, and what the EPSEM says when it decodes (RQTL, SGERR ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from c1222.codec import epsem as epsem_codec
from c1222.codec.ber import TAG_INTEGER, decode_uid_content, read_length, read_tlv
from c1222.codec.services import ErrorResponse, Request, Response
from c1222.errors import DecodeError
from c1222.headend.conformance.report import code_text

#: ``A1`` contents of the March-2006 draft: the OID 1.2.840.10066 (digest 1.4).
CONTEXT_2006 = bytes.fromhex("06052a8648ce52")
#: Longest explanation kept, and elements described (a hostile answer cannot grow either).
MAX_TEXT = 600
MAX_ELEMENTS = 16
_NAMES = {0xA1: "application context", 0xA2: "called AP title", 0xA3: "called AE qualifier",
          0xA4: "A4", 0xA6: "calling AP title", 0xA7: "calling AE qualifier", 0xA8: "A8",
          0x8B: "mechanism name", 0xAC: "authentication value", 0xBE: "user information"}


@dataclass(frozen=True)
class Refusal:
    """An answer the tester could not take as the response to its request."""

    text: str  # the long form, for the reason and the JSON record
    short: str  # for the table's "response seen" column
    draft: bool  # it carries the marks of the March-2006 form
    size: int


def explain(data: bytes, requests: Sequence[Request] = (), *, sent_a8: bytes | None = None,
            why: str | None = None) -> Refusal:
    """Describe ``data``, an answer the tester refused (``why``: the decoder's complaint).

    ``requests`` types the EPSEM's responses; ``sent_a8`` is the A8 contents of the request,
    to tell a draft-era device's misreading of it.
    """
    size = len(data)
    if size < 2 or data[0] != 0x60:
        text = (f"an answer that is not a C12.22 APDU ({size} bytes, starting "
                f"{data[:8].hex()})")
        return Refusal(_cap(text), f"not C12.22, {size} bytes", False, size)
    parts: list[str] = []
    marks: list[str] = []
    try:
        length, pos = read_length(data, 1, size)
        end = min(pos + length, size)
        while pos < end and len(parts) + len(marks) < MAX_ELEMENTS:
            tag, start, stop = read_tlv(data, pos, end)
            _element(tag, data[start:stop], start, data, requests, parts, marks)
            pos = stop
    except DecodeError as exc:
        parts.append(f"unreadable from byte {exc.offset} ({exc})")
    draft = bool(marks)
    form = "March-2006 form" if draft else "a form the tester cannot read"
    text = f"answer in {form} ({size} bytes)"
    if marks:
        text += ": " + "; ".join(marks)
    if parts:
        text += ("; " if marks else ": ") + "; ".join(parts)
    if why and not draft:
        text += f" [{why}]"
    if draft and sent_a8 is not None and _draft_misreads(sent_a8):
        text += (". A device on the January-2008 draft answers so when the request's A8 is "
                 f"not 1 or 2 bytes (ours: A8 {len(sent_a8):02x} {sent_a8.hex()})")
    short = f"{'March-2006 form' if draft else 'unreadable'}, {size} bytes"
    return Refusal(_cap(text), short, draft, size)


def _element(tag: int, content: bytes, offset: int, data: bytes, requests: Sequence[Request],
             parts: list[str], marks: list[str]) -> None:
    name = _NAMES.get(tag, f"element {tag:#04x}")
    if tag in (0xA4, 0xA8):
        if _is_integer(content):
            parts.append(f"{name} {int.from_bytes(content[2:], 'big')}")
        else:
            marks.append(f"{name} is the bare bytes {content.hex() or '(none)'}, not an "
                         "INTEGER")
    elif tag == 0xA1:
        if content == CONTEXT_2006:
            marks.append("application context 1.2.840.10066 (the March-2006 draft's)")
    elif tag in (0xA2, 0xA6):
        title = _title(content, offset)
        if content[:1] == b"\x0d":
            marks.append(f"{name} {title} with tag 0D inside the ACSE")
        else:
            parts.append(f"{name} {title}")
    elif tag == 0xA7:
        if content[:1] == b"\x82":
            marks.append("calling AE qualifier with inner tag 82")
    elif tag == 0xBE:
        if content[:1] == b"\x28":
            parts.append("user information in the 2008 form (EXTERNAL)")
        else:
            marks.append("user information is a bare EPSEM, without EXTERNAL (28): "
                         + _epsem(data, offset, offset + len(content), requests))
    else:
        parts.append(f"{name} ({len(content)} bytes)")


def _is_integer(content: bytes) -> bool:
    return (len(content) >= 3 and content[0] == TAG_INTEGER
            and content[1] == len(content) - 2 and content[1] <= 4)


def _title(content: bytes, offset: int) -> str:
    try:
        tag, start, stop = read_tlv(content, 0, len(content))
        title = str(decode_uid_content(tag, content[start:stop], offset + start, "title"))
        return title if title.strip(".") else "(empty)"
    except DecodeError:
        return content[:16].hex()


def _epsem(data: bytes, start: int, stop: int, requests: Sequence[Request]) -> str:
    try:
        decoded = epsem_codec.decode(data, start, stop, requests or None)
    except DecodeError as exc:
        return f"{data[start:min(stop, start + 16)].hex()} ({exc})"
    answers = [s for s in decoded.services if isinstance(s, Response)]
    if not answers:
        return "no response service"
    return ", ".join(_response(r) for r in answers[:4])


def _response(response: Response) -> str:
    text = code_text(response.response_code)
    if isinstance(response, ErrorResponse) and response.max_size is not None:
        text += f", max {response.max_size}"
    return text


def _draft_misreads(a8: bytes) -> bool:
    """True when a January-2008-draft device reads this A8 as March-2006 form."""
    return not (len(a8) in (3, 4) and a8[0] == TAG_INTEGER and a8[1] == len(a8) - 2)


def _cap(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


__all__ = ["CONTEXT_2006", "Refusal", "explain"]
