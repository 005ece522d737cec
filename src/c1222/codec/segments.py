"""Application-layer segmentation and reassembly, the 2008 format (c1222-network.md [S]).

A link that carries APDUs of at most ``max_size`` bytes sends a larger APDU as several
complete APDUs, each holding a slice of the whole one::

    60 LL  A1.. A2..                          copied from the whole APDU
           A3 <INTEGER total>                 size of the whole APDU, its own 60 LL included
           A6.. A7.. A8..                     copied; A8 is the same in every segment
           BE L1 28 L2 02 <offset> 81 L4 <bytes of the whole APDU from that offset>

Segments carry no A4, 8B or AC: the MAC (and A4, which tells a response) is in the whole APDU,
checked once it is reassembled. :func:`segment` cuts; :class:`Reassembler` puts back together,
keyed by (association, calling AP title, A8), within bounds a hostile peer cannot stretch:

* a message's total is at most ``max_size`` (RQTL beyond, with the size);
* at most ``max_ranges`` (10, as Itron) disjoint ranges per message; duplicates are ignored,
  adjacent and overlapping ranges merge, overlaps that disagree are SGERR;
* an offset at or past the total, a slice past it, or a total that changes: SGERR;
* at most ``max_pending`` messages in all and ``max_per_association`` per association, and
  ``max_buffered`` bytes held: a new message beyond them pushes out the oldest (its sender
  times out), so a peer that never finishes holds bounded memory and others are still served;
* a message incomplete ``timeout`` seconds after its first segment is dropped.

Pure: time is the ``now`` argument; nothing here does I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

from c1222 import limits
from c1222.codec.acse import (
    APDU_TAG,
    TAG_ASO_CONTEXT,
    TAG_CALLED_AE_QUALIFIER,
    TAG_CALLED_AP_TITLE,
    TAG_CALLING_AE_QUALIFIER,
    TAG_CALLING_AP_INVOCATION_ID,
    TAG_CALLING_AP_TITLE,
    TAG_EXTERNAL,
    TAG_OCTET_ALIGNED,
    TAG_USER_INFORMATION,
    SegmentHeader,
)
from c1222.codec.ber import TAG_INTEGER, encode_length, encode_unsigned, read_length, read_tlv, tlv
from c1222.codec.framing import apdu_size
from c1222.errors import RQTL, SGERR, SGNP, DecodeError, LocalProtocolError

#: Elements copied from the whole APDU into every segment, in the order they are written
#: (A3 goes between A2 and A6; tag order A1 A2 A3 A4 A6 A7 A8 8B AC BE).
_COPIED = (TAG_ASO_CONTEXT, TAG_CALLED_AP_TITLE, TAG_CALLING_AP_TITLE, TAG_CALLING_AE_QUALIFIER,
           TAG_CALLING_AP_INVOCATION_ID)
#: Smallest segment size a node may be configured with: the copied header (two AP titles, A8,
#: A3) and the user-information wrapper take 40-70 bytes, and some data must follow.
MIN_SEGMENT_SIZE = 128
#: The smallest APDU: ``60 00``.
_MIN_APDU = 2


def _length_size(n: int) -> int:
    return len(encode_length(n))


def _integer(value: int) -> bytes:
    return tlv(TAG_INTEGER, encode_unsigned(value, limits.MAX_INVOCATION_ID_BYTES))


def segment(apdu: bytes, max_size: int) -> list[bytes]:
    """``apdu`` as APDUs of at most ``max_size`` bytes: ``[apdu]`` when it fits, else its
    segments in order. LocalProtocolError for bytes that are not one whole APDU, an APDU that
    is itself a segment, or a ``max_size`` that leaves no room for data after the header."""
    apdu = bytes(apdu)
    if len(apdu) <= max_size:
        return [apdu]
    if len(apdu) > limits.MAX_APDU_SIZE:
        raise LocalProtocolError(f"APDU of {len(apdu)} bytes over {limits.MAX_APDU_SIZE}")
    elements: dict[int, bytes] = {}
    try:
        length, pos = read_length(apdu, 1, len(apdu), "apdu.length")
        if apdu[0] != APDU_TAG or pos + length != len(apdu):
            raise LocalProtocolError("not one whole APDU")
        while pos < len(apdu):
            tag, _, stop = read_tlv(apdu, pos, len(apdu), "apdu")
            if tag == TAG_CALLED_AE_QUALIFIER:
                raise LocalProtocolError("the APDU is a segment already")
            if tag in _COPIED:
                elements[tag] = apdu[pos:stop]
            pos = stop
    except DecodeError as exc:
        raise LocalProtocolError(f"cannot segment: {exc}") from None
    if TAG_CALLING_AP_INVOCATION_ID not in elements:
        raise LocalProtocolError("cannot segment an APDU without A8")
    a3 = tlv(TAG_CALLED_AE_QUALIFIER, _integer(len(apdu)))
    prefix = b"".join(elements[t] for t in (TAG_ASO_CONTEXT, TAG_CALLED_AP_TITLE) if t in elements)
    prefix += a3 + b"".join(elements[t] for t in _COPIED[2:] if t in elements)

    def size(offset: int, count: int) -> int:
        inner = len(_integer(offset)) + 1 + _length_size(count) + count
        external = 1 + _length_size(inner) + inner
        body = len(prefix) + 1 + _length_size(external) + external
        return 1 + _length_size(body) + body

    out: list[bytes] = []
    offset = 0
    while offset < len(apdu):
        count = min(len(apdu) - offset, max(0, max_size - size(offset, 0)))
        excess = size(offset, count) - max_size
        while count > 0 and excess > 0:
            count -= excess  # the length fields grew with the data: one or two steps
            excess = size(offset, count) - max_size
        if count <= 0:
            raise LocalProtocolError(f"a segment of at most {max_size} bytes has no room for "
                                     f"data after its {size(offset, 0)}-byte header")
        chunk = apdu[offset:offset + count]
        inner = _integer(offset) + bytes((TAG_OCTET_ALIGNED,)) + encode_length(count) + chunk
        user = tlv(TAG_USER_INFORMATION, tlv(TAG_EXTERNAL, inner))
        out.append(tlv(APDU_TAG, prefix + user))
        offset += count
    return out


@dataclass(frozen=True)
class ReassemblyLimits:
    """Bounds of a :class:`Reassembler` (module docstring). ``max_pending`` 0 turns
    reassembly off: every segment is answered SGNP."""

    max_size: int = limits.DEFAULT_MAX_APDU_SIZE
    max_pending: int = 64
    max_per_association: int = 4
    max_ranges: int = 10
    max_buffered: int = 4 * 1024 * 1024
    timeout: float = 60.0


@dataclass
class _Message:
    association: Hashable
    total: int
    started: float
    ranges: list[tuple[int, bytearray]] = field(default_factory=list)
    held: int = 0


Key = tuple[Hashable, str | None, int]


class Reassembler:
    """Reassembles segmented APDUs of every association of one node (module docstring)."""

    def __init__(self, bounds: ReassemblyLimits | None = None) -> None:
        self.limits = bounds or ReassemblyLimits()
        self._pending: OrderedDict[Key, _Message] = OrderedDict()
        self.buffered = 0
        self.stats = {"segments": 0, "reassembled": 0, "errors": 0, "evicted": 0,
                      "expired": 0}

    @property
    def pending(self) -> int:
        """Messages being reassembled."""
        return len(self._pending)

    def feed(self, header: SegmentHeader, association: Hashable, now: float) -> bytes | None:
        """Take one segment; the whole APDU when this one completes it, else None.

        Raises SGERR (a segment that contradicts itself or its message: the message is
        dropped), RQTL (a total over ``max_size``; ``max_size`` set) or SGNP (reassembly off).
        """
        bounds = self.limits
        self.stats["segments"] += 1
        self.expire(now)
        if bounds.max_pending <= 0:
            raise SGNP("this node does not reassemble segments")
        total, offset, data = header.total, header.offset, header.payload
        if total > bounds.max_size:
            self.stats["errors"] += 1
            raise RQTL(f"a segmented APDU of {total} bytes; at most {bounds.max_size}",
                       max_size=bounds.max_size)
        if total < _MIN_APDU or offset >= total or not data or offset + len(data) > total:
            self.stats["errors"] += 1
            raise SGERR(f"segment of {len(data)} bytes at {offset} of a {total}-byte APDU")
        title = header.calling_ap_title
        key: Key = (association, str(title.absolute()) if title is not None else None,
                    header.calling_ap_invocation_id)
        message = self._pending.get(key)
        if message is None:
            if offset == 0 and len(data) == total:
                return self._whole(bytes(data))
            self._make_room(association, len(data))
            message = _Message(association, total, now)
            self._pending[key] = message
        elif message.total != total:
            self._drop(key)
            self.stats["errors"] += 1
            raise SGERR(f"segment says the APDU is {total} bytes, an earlier one {message.total}")
        else:
            self._make_room(association, len(data), keep=key)
        try:
            grown = _merge(message.ranges, offset, data, bounds.max_ranges)
        except SGERR:
            self._drop(key)
            self.stats["errors"] += 1
            raise
        message.held += grown
        self.buffered += grown
        if len(message.ranges) == 1 and len(message.ranges[0][1]) == total:
            self._drop(key)
            return self._whole(bytes(message.ranges[0][1]))
        return None

    def expire(self, now: float) -> int:
        """Drop every message incomplete for ``timeout`` seconds; how many were dropped."""
        dropped = 0
        while self._pending:
            key, message = next(iter(self._pending.items()))
            if now - message.started < self.limits.timeout:
                break
            self._drop(key)
            dropped += 1
        self.stats["expired"] += dropped
        return dropped

    def drop(self, association: Hashable) -> None:
        """The association ended: its incomplete messages go with it."""
        for key in [k for k, m in self._pending.items() if m.association == association]:
            self._drop(key)

    def _whole(self, data: bytes) -> bytes:
        try:
            ok = data[0] == APDU_TAG and apdu_size(data, 0, len(data)) == len(data)
        except DecodeError:
            ok = False
        if not ok:
            self.stats["errors"] += 1
            raise SGERR("the reassembled bytes are not one APDU of the announced size")
        self.stats["reassembled"] += 1
        return data

    def _make_room(self, association: Hashable, incoming: int, keep: Key | None = None) -> None:
        bounds = self.limits
        budget = max(bounds.max_buffered, bounds.max_size)
        mine = [k for k, m in self._pending.items() if m.association == association]
        while keep is None and len(mine) >= bounds.max_per_association:
            self._evict(mine.pop(0))
        while keep is None and len(self._pending) >= bounds.max_pending:
            self._evict(next(iter(self._pending)))
        while self.buffered + incoming > budget:
            victim = next((k for k in self._pending if k != keep), None)
            if victim is None:
                break
            self._evict(victim)

    def _evict(self, key: Key) -> None:
        self._drop(key)
        self.stats["evicted"] += 1

    def _drop(self, key: Key) -> None:
        message = self._pending.pop(key, None)
        if message is not None:
            self.buffered -= message.held


def _merge(ranges: list[tuple[int, bytearray]], start: int, data: bytes, max_ranges: int) -> int:
    """Put ``data`` at ``start`` into the sorted, disjoint ``ranges`` (merging what it touches
    or overlaps); the number of new bytes held. SGERR when an overlap disagrees or the
    ranges would be more than ``max_ranges``."""
    end = start + len(data)
    i = 0
    while i < len(ranges) and ranges[i][0] + len(ranges[i][1]) < start:
        i += 1
    j = i
    while j < len(ranges) and ranges[j][0] <= end:
        j += 1
    touching = ranges[i:j]
    for s, buf in touching:
        lo, hi = max(start, s), min(end, s + len(buf))
        if lo < hi and buf[lo - s:hi - s] != data[lo - start:hi - start]:
            raise SGERR(f"segments disagree on bytes {lo} .. {hi - 1}")
    before = sum(len(buf) for _, buf in touching)
    if not touching:
        if len(ranges) >= max_ranges:
            raise SGERR(f"more than {max_ranges} separate ranges of one APDU")
        ranges.insert(i, (start, bytearray(data)))
        return len(data)
    sources: list[tuple[int, bytes | bytearray]] = sorted([(start, data), *touching],
                                                          key=lambda item: item[0])
    first_start, first = sources[0]
    # In-order arrival (the usual case) extends the first range in place: no quadratic copy.
    merged = first if isinstance(first, bytearray) else bytearray(first)
    for s, piece in sources[1:]:
        reach = first_start + len(merged)
        if s + len(piece) > reach:
            merged += piece[reach - s:]
    ranges[i:j] = [(first_start, merged)]
    return len(merged) - before
