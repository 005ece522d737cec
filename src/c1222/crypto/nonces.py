"""Injected sources of IVs and invocation ids (C12.22 digest 1.2, 2.4, 2.6).

The pure layers never draw randomness or read a clock themselves (architecture rule 1):
they are handed a :class:`NonceSource`. Production code uses :class:`RandomNonceSource` or
:class:`TimeIvSource`; tests use :class:`FixedNonceSource` or :class:`SequenceNonceSource`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar, Final

from c1222.codec.ber import FROM_BYTES
from c1222.crypto.nonce_source import NonceSource
from c1222.errors import LocalProtocolError

__all__ = [
    "IV_SIZE",
    "MAX_INVOCATION_ID",
    "FixedNonceSource",
    "NonceSource",
    "RandomNonceSource",
    "SequenceNonceSource",
    "TimeIvSource",
    "is_recommended_invocation_id",
]

#: The AC iv-element is 4 octets (digest 2.4).
IV_SIZE: Final = 4
#: Largest invocation id a source hands out: 4 bytes with the top bit clear (digest 1.2).
MAX_INVOCATION_ID: Final = 0x7FFF_FFFF


class _Urandom:
    """``os.urandom`` drawn a block at a time: a node answering thousands of requests a second
    makes one getrandom call per 1,024 invocation ids instead of one each (about 1 µs each).
    A forked child starts a block of its own, so two processes never share ids."""

    BLOCK: ClassVar[int] = 4096
    _generation: ClassVar[list[int]] = [0]  # bumped in every forked child

    __slots__ = ("_buf", "_pos", "_seen")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._seen = -1

    def __call__(self, size: int) -> bytes:
        pos = self._pos
        end = pos + size
        if end > len(self._buf) or self._seen != self._generation[0]:
            self._buf = os.urandom(max(self.BLOCK, size))
            self._seen = self._generation[0]
            pos, end = 0, size
        self._pos = end
        return self._buf[pos:end]


def _forked() -> None:
    _Urandom._generation[0] += 1


os.register_at_fork(after_in_child=_forked)


def is_recommended_invocation_id(value: int) -> bool:
    """True for 1..0x7FFFFFFF whose minimal big-endian leading byte has its top bit clear.

    Such ids encode identically as "minimal unsigned" and as "signed DER" INTEGERs, so every
    receiver rebuilds the same authenticated cleartext (digest 1.2 recommendation).
    """
    return 0 < value <= MAX_INVOCATION_ID and value.bit_length() % 8 != 0


def _invocation_id_from(raw: bytes) -> int:
    # Deterministic mapping (no retry loop, so a degenerate injected source cannot hang).
    value = FROM_BYTES(raw, "big") & MAX_INVOCATION_ID
    if value.bit_length() % 8 == 0:
        value >>= 1  # leading byte 0x80-0xFF becomes 0x40-0x7F; 0 stays 0
    return value or 1


def _sized_span(size: int) -> tuple[int, int]:
    # Ids of exactly ``size`` bytes, the leading one 0x01-0x7F: (lowest, how many). A
    # January-2008-draft device reads only 1- or 2-byte A8s as 2008 form, so a tester must
    # know the size it sends, not a bound.
    low = 1 << (8 * (size - 1)) if size > 1 else 1
    return low, (1 << (8 * size - 1)) - low


def _sized_invocation_id(raw: bytes, size: int) -> int:
    low, count = _sized_span(size)
    return low + FROM_BYTES(raw, "big") % count


def _next_sized(value: int, size: int) -> int:
    low, count = _sized_span(size)
    return low + (value - low + 1) % count


def _check_id_size(size: int | None) -> int | None:
    if size is not None and size not in (1, 2, 3, 4):
        raise LocalProtocolError("an invocation id is 1 to 4 bytes")
    return size


class RandomNonceSource:
    """Random IVs and invocation ids from ``randbytes`` (``os.urandom``, a block at a time, by
    default).

    Invocation ids are 1 to 4 bytes; with ``invocation_id_size`` every one encodes in exactly
    that many bytes (the conformance tester's ``--invocation-id-size``).

    This is what MSDK does for sessionless requests (digest 2.6). Two random IVs in a row
    coincide with probability 2**-32; the previous IV is remembered so that never happens.
    """

    __slots__ = ("_id_size", "_last_iv", "_randbytes")

    def __init__(self, randbytes: Callable[[int], bytes] | None = None, *,
                 invocation_id_size: int | None = None) -> None:
        self._randbytes = randbytes if randbytes is not None else _Urandom()
        self._last_iv: bytes | None = None
        self._id_size = _check_id_size(invocation_id_size)

    def iv(self) -> bytes:
        iv = self._randbytes(IV_SIZE)
        if iv == self._last_iv:
            iv = ((FROM_BYTES(iv, "big") + 1) & 0xFFFFFFFF).to_bytes(IV_SIZE, "big")
        self._last_iv = iv
        return iv

    def invocation_id(self) -> int:
        if self._id_size is not None:
            return _sized_invocation_id(self._randbytes(4), self._id_size)
        return _invocation_id_from(self._randbytes(4))

    def __repr__(self) -> str:
        size = "" if self._id_size is None else f"invocation_id_size={self._id_size}"
        return f"RandomNonceSource({size})"


class TimeIvSource:
    """IV = current Unix time, big-endian seconds, never going back (digest 2.4, MSDK).

    ``clock`` returns Unix seconds (pass ``time.time``). Messages sent within one second share
    the IV; what keeps each message's EAX' nonce and replay key (calling title, key id, IV,
    A8) unique is the invocation id, which this source never hands out twice for one IV.
    Call :meth:`invocation_id` and then :meth:`iv` for a message (as the requester and the
    responder do): the IV is then the second the id was drawn for. When the clock steps
    back, the IV stays at the previous second.

    (An IV that moved on by one for every message in the same second ran ahead of the clock
    under load — 1000 requests a second put it 15 minutes ahead within a second — and a
    receiver that checks IV freshness, as a meter does by default, then refused them all.)
    """

    #: Ids remembered for one IV second at most; beyond it the IV moves on by one second.
    #: (A ClassVar, so that compiled code reads the class's value, which a test may lower.)
    MAX_IDS_PER_SECOND: ClassVar[int] = 65536

    __slots__ = ("_capacity", "_clock", "_id_size", "_last", "_pending", "_randbytes", "_used")

    def __init__(
        self, clock: Callable[[], float], randbytes: Callable[[int], bytes] | None = None, *,
        invocation_id_size: int | None = None,
    ) -> None:
        self._clock = clock
        self._randbytes = randbytes if randbytes is not None else _Urandom()
        self._id_size = _check_id_size(invocation_id_size)
        # Ids one IV second can give: a 1-byte size has only 127 (then the IV moves on).
        self._capacity = self.MAX_IDS_PER_SECOND if invocation_id_size is None else min(
            self.MAX_IDS_PER_SECOND, _sized_span(invocation_id_size)[1])
        self._last: int | None = None
        self._used: set[int] = set()  # invocation ids handed out for the IV `_last`
        self._pending = False  # an id was drawn for `_last` and its IV not yet taken

    def _tick(self) -> int:
        value = int(self._clock()) & 0xFFFFFFFF
        last = self._last
        # Compare modulo 2**32 so the wrap in 2106 counts as "later", not "earlier".
        if last is not None and (value - last) % (1 << 32) >= 1 << 31:
            value = last  # the clock stepped back (or we moved on): stay
        if value != last:
            self._last = value
            self._used.clear()
        elif len(self._used) >= self._capacity:
            self._last = (value + 1) & 0xFFFFFFFF
            self._used.clear()
        assert self._last is not None
        return self._last

    def iv(self) -> bytes:
        value = self._last if self._pending and self._last is not None else self._tick()
        self._pending = False
        return value.to_bytes(IV_SIZE, "big")

    def invocation_id(self) -> int:
        self._tick()
        size = self._id_size
        raw = self._randbytes(4)
        value = _invocation_id_from(raw) if size is None else _sized_invocation_id(raw, size)
        # Bounded walk to the next id not yet used for this IV (a degenerate injected source
        # cannot hang it: at most len(used) + 1 steps, fewer than the size can give).
        while value in self._used:
            value = _next_recommended(value) if size is None else _next_sized(value, size)
        self._used.add(value)
        self._pending = True
        return value

    def iv_for(self, invocation_id: int) -> bytes:
        """An IV under which ``invocation_id`` was not used yet, for a message whose A8 is
        already chosen (``c1222 encode`` keeps each record's): the current second, or the
        next free one when the same A8 came twice within it (else the nonce would repeat)."""
        last = self._tick()
        while invocation_id in self._used:
            last = self._last = (last + 1) & 0xFFFFFFFF
            self._used.clear()
        self._used.add(invocation_id)
        self._pending = False
        return last.to_bytes(IV_SIZE, "big")

    def __repr__(self) -> str:
        return "TimeIvSource()"


def _next_recommended(value: int) -> int:
    value += 1
    if value.bit_length() % 8 == 0:  # leading byte 0x80-0xFF: jump to the next length
        value = 1 << value.bit_length()
    return value if value <= MAX_INVOCATION_ID else 1


def _check_iv(iv: bytes) -> bytes:
    iv = bytes(iv)
    if len(iv) != IV_SIZE:
        raise LocalProtocolError("IV must be 4 bytes")
    return iv


def _check_invocation_id(value: int) -> int:
    # 0 is allowed here: in a session A8 restarts at 0 after Logon (digest 2.6).
    if not 0 <= value <= 0xFFFFFFFF:
        raise LocalProtocolError("invocation id must fit in 4 bytes")
    return value


class FixedNonceSource:
    """Always the same IV and invocation id — for reproducing vectors such as Example 8."""

    __slots__ = ("_invocation_id", "_iv")

    def __init__(self, iv: bytes, invocation_id: int) -> None:
        self._iv = _check_iv(iv)
        self._invocation_id = _check_invocation_id(invocation_id)

    def iv(self) -> bytes:
        return self._iv

    def invocation_id(self) -> int:
        return self._invocation_id

    def __repr__(self) -> str:
        return f"FixedNonceSource(iv={self._iv.hex()}, invocation_id={self._invocation_id})"


class SequenceNonceSource:
    """Hands out the given IVs and invocation ids in order — for tests.

    Running out raises LocalProtocolError (a test asked for more than it prepared).
    """

    __slots__ = ("_invocation_ids", "_ivs")

    def __init__(self, ivs: Iterable[bytes] = (), invocation_ids: Iterable[int] = ()) -> None:
        self._ivs: Iterator[bytes] = iter(ivs)
        self._invocation_ids: Iterator[int] = iter(invocation_ids)

    def iv(self) -> bytes:
        try:
            return _check_iv(next(self._ivs))
        except StopIteration:
            raise LocalProtocolError("no IV left in the sequence") from None

    def invocation_id(self) -> int:
        try:
            return _check_invocation_id(next(self._invocation_ids))
        except StopIteration:
            raise LocalProtocolError("no invocation id left in the sequence") from None

    def __repr__(self) -> str:
        return "SequenceNonceSource()"
