"""Injected sources of IVs and invocation ids (C12.22 digest 1.2, 2.4, 2.6).

The pure layers never draw randomness or read a clock themselves (architecture rule 1):
they are handed a :class:`NonceSource`. Production code uses :class:`RandomNonceSource` or
:class:`TimeIvSource`; tests use :class:`FixedNonceSource` or :class:`SequenceNonceSource`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, runtime_checkable

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
IV_SIZE = 4
#: Largest invocation id a source hands out: 4 bytes with the top bit clear (digest 1.2).
MAX_INVOCATION_ID = 0x7FFF_FFFF


def is_recommended_invocation_id(value: int) -> bool:
    """True for 1..0x7FFFFFFF whose minimal big-endian leading byte has its top bit clear.

    Such ids encode identically as "minimal unsigned" and as "signed DER" INTEGERs, so every
    receiver rebuilds the same authenticated cleartext (digest 1.2 recommendation).
    """
    return 0 < value <= MAX_INVOCATION_ID and value.bit_length() % 8 != 0


@runtime_checkable
class NonceSource(Protocol):
    """Where a sender gets a fresh IV and a fresh calling AP invocation id (A8)."""

    def iv(self) -> bytes:
        """4 bytes for the AC iv-element; never the same as the previous call's."""
        ...

    def invocation_id(self) -> int:
        """A non-zero id for A8, at most 4 bytes, leading byte's top bit clear."""
        ...


def _invocation_id_from(raw: bytes) -> int:
    # Deterministic mapping (no retry loop, so a degenerate injected source cannot hang).
    value = int.from_bytes(raw, "big") & MAX_INVOCATION_ID
    if value.bit_length() % 8 == 0:
        value >>= 1  # leading byte 0x80-0xFF becomes 0x40-0x7F; 0 stays 0
    return value or 1


def _sized_invocation_id(raw: bytes, size: int) -> int:
    # Exactly ``size`` bytes, the leading one 0x01-0x7F: a January-2008-draft device reads only
    # 1- or 2-byte A8s as 2008 form, so a tester must know the size it sends, not a bound.
    low = 1 << (8 * (size - 1)) if size > 1 else 1
    high = (1 << (8 * size - 1)) - 1
    return low + int.from_bytes(raw, "big") % (high - low + 1)


class RandomNonceSource:
    """Random IVs and invocation ids from ``randbytes`` (``os.urandom`` by default).

    Invocation ids are 1 to 4 bytes; with ``invocation_id_size`` every one encodes in exactly
    that many bytes (the conformance tester's ``--invocation-id-size``).

    This is what MSDK does for sessionless requests (digest 2.6). Two random IVs in a row
    coincide with probability 2**-32; the previous IV is remembered so that never happens.
    """

    __slots__ = ("_id_size", "_last_iv", "_randbytes")

    def __init__(self, randbytes: Callable[[int], bytes] = os.urandom, *,
                 invocation_id_size: int | None = None) -> None:
        if invocation_id_size is not None and invocation_id_size not in (1, 2, 3, 4):
            raise LocalProtocolError("an invocation id is 1 to 4 bytes")
        self._randbytes = randbytes
        self._last_iv: bytes | None = None
        self._id_size = invocation_id_size

    def iv(self) -> bytes:
        iv = self._randbytes(IV_SIZE)
        if iv == self._last_iv:
            iv = ((int.from_bytes(iv, "big") + 1) & 0xFFFFFFFF).to_bytes(IV_SIZE, "big")
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
    """IV = current Unix time, big-endian seconds, strictly increasing (digest 2.4, MSDK).

    ``clock`` returns Unix seconds (pass ``time.time``). When the clock has not advanced
    past the previous IV (same second, or stepped back), the previous IV + 1 is used, so an
    IV never repeats the previous value. Invocation ids are random, as in
    :class:`RandomNonceSource`.
    """

    __slots__ = ("_clock", "_last", "_randbytes")

    def __init__(
        self, clock: Callable[[], float], randbytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._clock = clock
        self._randbytes = randbytes
        self._last: int | None = None

    def iv(self) -> bytes:
        value = int(self._clock()) & 0xFFFFFFFF
        last = self._last
        # Compare modulo 2**32 so the wrap in 2106 counts as "later", not "earlier".
        if last is not None:
            ahead = (value - last) % (1 << 32)
            if ahead == 0 or ahead >= 1 << 31:
                value = (last + 1) & 0xFFFFFFFF
        self._last = value
        return value.to_bytes(IV_SIZE, "big")

    def invocation_id(self) -> int:
        return _invocation_id_from(self._randbytes(4))

    def __repr__(self) -> str:
        return "TimeIvSource()"


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
