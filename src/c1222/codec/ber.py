"""BER primitives used by C12.22 (digest section 1): definite lengths, unsigned
integers, object identifiers and relative object identifiers ("UIDs").

Everything is bounded: a length is checked against the bytes present before
anything is sliced, and no value is allocated from a length alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from c1222 import limits
from c1222.codes import AP_TITLE_BASE
from c1222.errors import BerError, DecodeLimitExceeded, LocalProtocolError, Truncated

TAG_OID: Final = 0x06
TAG_RELATIVE_OID: Final = 0x0D  # universal RELATIVE-OID: UIDs inside EPSEM and table data
TAG_RELATIVE_OID_ACSE: Final = 0x80  # [0] IMPLICIT RELATIVE-OID: AP titles inside ACSE elements
TAG_INTEGER: Final = 0x02
#: ``BYTES[n]`` is ``bytes((n,))``, made once: building a tuple and calling the bytes type
#: costs several times a tuple index when compiled, and a message makes dozens of these.
BYTES: Final = tuple(bytes((i,)) for i in range(256))
#: ``int.from_bytes``, bound once: compiled code spells ``int.from_bytes(...)`` as a look-up on
#: ``int`` that binds a new method object at every call (docs/performance.md).
FROM_BYTES: Final = int.from_bytes


def as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """``data`` as bytes: bytes as they are (no call to the bytes type, which costs as much as
    a copy when compiled), a bytearray or memoryview copied."""
    return data if isinstance(data, bytes) else bytes(data)


def byte(value: int) -> bytes:
    """``bytes((value,))`` from :data:`BYTES`; ValueError outside 0..255, as bytes() raises."""
    if 0 <= value < 256:
        return BYTES[value]
    raise ValueError("byte must be in range(0, 256)")


def read_length(buf: bytes, pos: int, end: int, path: str = "") -> tuple[int, int]:
    """Read a definite BER length at ``pos``; return ``(length, position after it)``.

    The indefinite form, more than four length octets and non-minimal forms
    are refused: receivers that re-encode lengths (Wireshark, MeteringSDK)
    would compute a different MAC over them (digest 1.1).
    """
    if pos >= end:
        raise Truncated("length missing", pos, path)
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0:
        raise BerError("indefinite length", pos, path)
    if count > limits.MAX_LENGTH_OCTETS:
        raise BerError(f"length of {count} octets", pos, path)
    if pos + 1 + count > end:
        raise Truncated("length octets cut short", pos, path)
    value = FROM_BYTES(buf[pos + 1 : pos + 1 + count], "big")
    if value < 0x80 or value >> (8 * (count - 1)) == 0:
        raise BerError("non-minimal length", pos, path)
    return value, pos + 1 + count


def encode_length(n: int) -> bytes:
    """The shortest definite BER length form of ``n``."""
    if n < 0x80:
        if n < 0:
            raise LocalProtocolError("negative length")
        return BYTES[n]
    size = (n.bit_length() + 7) // 8
    if size > limits.MAX_LENGTH_OCTETS:
        raise LocalProtocolError(f"length {n} too large")
    return BYTES[0x80 | size] + n.to_bytes(size, "big")


def read_tlv(buf: bytes, pos: int, end: int, path: str = "") -> tuple[int, int, int]:
    """Read one tag-length-value; return ``(tag, value start, value end)``."""
    if pos >= end:
        raise Truncated("tag missing", pos, path)
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise BerError(f"multi-byte tag {tag:#04x} not used by C12.22", pos, path)
    length, start = read_length(buf, pos + 1, end, path)
    stop = start + length
    if stop > end:
        raise Truncated(f"element {tag:#04x} claims {length} bytes, {end - start} left", pos, path)
    return tag, start, stop


def tlv(tag: int, content: bytes) -> bytes:
    """Encode one tag-length-value with a minimal length."""
    n = len(content)
    if n < 0x80:  # every element but a long one: no call for the length
        return byte(tag) + BYTES[n] + content
    return byte(tag) + encode_length(n) + content


def decode_unsigned(content: bytes, pos: int, path: str, max_bytes: int = 4) -> int:
    """An unsigned INTEGER body in its minimal form (digest 1.2).

    A leading 0x00 octet is refused, even as a DER sign byte before a top-bit-set octet:
    :func:`encode_unsigned` writes the minimal unsigned form (as MeteringSDK does), so a value
    decoded from ``00 14`` or ``00 80`` would re-encode to other bytes, and every message must
    decode and re-encode to the bytes it came from (architecture rule 6).
    """
    if not content:
        raise BerError("empty integer", pos, path)
    if len(content) > 1 and content[0] == 0:
        raise BerError("non-minimal integer (leading 00 octet)", pos, path)
    if len(content) > max_bytes:
        raise DecodeLimitExceeded(f"integer of {len(content)} bytes", pos, path)
    return FROM_BYTES(content, "big")


def encode_unsigned(value: int, max_bytes: int = 4) -> bytes:
    """Minimal unsigned big-endian bytes, no sign byte (MeteringSDK, Wireshark FT_UINT32)."""
    if value < 0:
        raise LocalProtocolError(f"negative value {value}")
    size = max(1, (value.bit_length() + 7) // 8)
    if size > max_bytes:
        raise LocalProtocolError(f"value {value} needs more than {max_bytes} bytes")
    return value.to_bytes(size, "big")


def _decode_arcs(content: bytes, pos: int, path: str) -> list[int]:
    arcs: list[int] = []
    value = 0
    nbytes = 0
    for i, byte in enumerate(content):
        if nbytes == 0 and byte == 0x80:
            raise BerError("non-minimal OID arc", pos + i, path)
        value = (value << 7) | (byte & 0x7F)
        nbytes += 1
        if nbytes > limits.MAX_OID_ARC_BYTES:
            raise DecodeLimitExceeded("OID arc too large", pos + i, path)
        if not byte & 0x80:
            arcs.append(value)
            if len(arcs) > limits.MAX_OID_ARCS:
                raise DecodeLimitExceeded("too many OID arcs", pos + i, path)
            value = 0
            nbytes = 0
    if nbytes:
        raise Truncated("OID arc cut short", pos + len(content), path)
    return arcs


def _encode_arc(arc: int) -> bytes:
    if arc < 0x80:
        if arc < 0:
            raise LocalProtocolError(f"negative OID arc {arc}")
        return BYTES[arc]
    out = [arc & 0x7F]
    arc >>= 7
    while arc:
        out.append(0x80 | (arc & 0x7F))
        arc >>= 7
    out.reverse()
    return bytes(out)


@dataclass(frozen=True, slots=True, eq=False)
class Uid:
    """A universal identifier: an absolute OID or one relative to the C12.22 AP-title base.

    Dotted form: ``2.16.124.113620.1.22.0.123.8437`` (absolute) or ``.123.8437``
    (relative; the leading dot marks it as relative).
    """

    arcs: tuple[int, ...]
    relative: bool = False
    # Its dotted text, absolute form and hash, computed once: decoded titles are shared
    # objects (decode_uid_content's cache), so every message naming a title reuses them.
    _text: str | None = field(default=None, init=False, repr=False, compare=False)
    _absolute: Uid | None = field(default=None, init=False, repr=False, compare=False)
    _hash: int | None = field(default=None, init=False, repr=False, compare=False)

    # Written out (eq=False) rather than the dataclass's: the generated ones are made with
    # exec and stay interpreted in a compiled build, and a title is hashed on every request.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Uid):
            return NotImplemented
        return self.arcs == other.arcs and self.relative == other.relative

    def __hash__(self) -> int:
        found = self._hash
        if found is None:
            found = hash((self.arcs, self.relative))
            object.__setattr__(self, "_hash", found)
        return found

    def __post_init__(self) -> None:
        if len(self.arcs) > limits.MAX_OID_ARCS:
            raise LocalProtocolError("too many OID arcs")
        if not self.relative:
            if len(self.arcs) < 2 or self.arcs[0] > 2 or (self.arcs[0] < 2 and self.arcs[1] > 39):
                raise LocalProtocolError(f"invalid absolute OID {self.arcs}")
        if any(a < 0 or a >> 35 for a in self.arcs):
            raise LocalProtocolError("OID arc out of range")

    @classmethod
    def parse(cls, text: str) -> Uid:
        """From dotted text; a leading dot makes it relative."""
        relative = text.startswith(".")
        body = text[1:] if relative else text
        try:
            arcs = tuple(int(a) for a in body.split(".")) if body else ()
        except ValueError:
            raise LocalProtocolError(f"not a dotted identifier: {text!r}") from None
        return cls(arcs, relative)

    def __str__(self) -> str:
        text = self._text
        if text is None:
            dotted = ".".join(map(str, self.arcs))
            text = "." + dotted if self.relative else dotted
            object.__setattr__(self, "_text", text)
        return text

    def absolute(self, base: tuple[int, ...] | None = None) -> Uid:
        """This identifier as an absolute OID (relative ones are expanded under ``base``,
        by default the C12.22 AP-title base)."""
        if not self.relative:
            return self
        if base is not None and base != AP_TITLE_BASE:
            return Uid(base + self.arcs)
        found = self._absolute
        if found is None:
            found = Uid(AP_TITLE_BASE + self.arcs)
            object.__setattr__(self, "_absolute", found)
        return found

    def content(self) -> bytes:
        """The BER contents octets (no tag, no length)."""
        if self.relative:
            return b"".join(map(_encode_arc, self.arcs))
        first = _encode_arc(self.arcs[0] * 40 + self.arcs[1])
        return first + b"".join(map(_encode_arc, self.arcs[2:]))

    def encode(self, relative_tag: int = TAG_RELATIVE_OID) -> bytes:
        """Tag-length-value; relative identifiers take ``relative_tag`` (0x0D, or 0x80 in ACSE)."""
        return tlv(relative_tag if self.relative else TAG_OID, self.content())


# The same few AP titles recur in nearly every message, so decoded identifiers and their
# text are cached (bounded: cleared when full).
_CACHE_SIZE: Final = 4096
_UID_CACHE: Final[dict[tuple[int, bytes], Uid]] = {}


def _remember(cache: dict, key: object, value: object) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value


def decode_uid_content(tag: int, content: bytes, pos: int, path: str) -> Uid:
    """A UID from its tag (06, 0D or 80, digest 1.3) and contents octets."""
    key = (tag, bytes(content))  # the tag too: a non-identifier tag must still be refused
    uid = _UID_CACHE.get(key)
    if uid is None:
        uid = _decode_uid(tag, content, pos, path)
        _remember(_UID_CACHE, key, uid)
    return uid


def _decode_uid(tag: int, content: bytes, pos: int, path: str) -> Uid:
    if tag == TAG_OID:
        if not content:
            raise BerError("empty OID", pos, path)
        arcs = _decode_arcs(content, pos, path)
        if len(arcs) >= limits.MAX_OID_ARCS:  # the first subidentifier holds two arcs
            raise DecodeLimitExceeded("too many OID arcs", pos, path)
        first = arcs[0]
        head = (first // 40, first % 40) if first < 80 else (2, first - 80)
        return Uid(head + tuple(arcs[1:]))
    if tag in (TAG_RELATIVE_OID, TAG_RELATIVE_OID_ACSE):
        return Uid(tuple(_decode_arcs(content, pos, path)), relative=True)
    raise BerError(f"tag {tag:#04x} is not an identifier", pos, path)


def read_uid(buf: bytes, pos: int, end: int, path: str) -> tuple[Uid, int]:
    """Read a tagged UID at ``pos``; return it and the position after it."""
    tag, start, stop = read_tlv(buf, pos, end, path)
    return decode_uid_content(tag, buf[start:stop], start, path), stop
