"""Replay protection for receivers of secured messages (C12.22 digest 2.6, 10.3 item 9).

A secured message is identified by (calling AP title, key id, IV, calling AP invocation id):
the sender changes the IV or the invocation id for every message (digest 2.4, 2.6), so the
same tuple arriving twice within the window is a replay. The standard's exact acceptance
rules could not be recovered (digest 10.3 item 9). The window mode needs no clock agreement
with the peer but forgets; the time mode (IV = the sender's Unix time, digest 2.4) never
accepts a message twice, given a receiver that persists what :class:`ReplayWindow` records.

Pure: time enters as ``now`` (seconds, from any monotonic source the caller chooses).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from c1222.codec.ber import FROM_BYTES, as_bytes
from c1222.crypto.eax_prime import BytesLike
from c1222.errors import LocalProtocolError, SecurityError

__all__ = [
    "BURST",
    "DEFAULT_IV_TOLERANCE",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_ENTRIES",
    "MessageId",
    "ReplayWindow",
    "check_iv_freshness",
    "iv_skew",
]

#: Default number of remembered messages (each entry is about 200 bytes).
DEFAULT_MAX_ENTRIES: Final = 10_000
#: Time mode: messages of the latest two IV seconds are kept beyond ``max_entries``, up to this
#: many times it (a burst faster than ``max_entries`` a second is served, not refused).
BURST: Final = 8
#: Default age, in seconds, after which an accepted message is forgotten.
DEFAULT_MAX_AGE: Final = 900.0
#: MSDK's comment: the IV (Unix time) should be within +-15 minutes of UTC (digest 2.4).
DEFAULT_IV_TOLERANCE: Final = 900.0


@dataclass(frozen=True, slots=True, init=False, eq=False)
class MessageId:
    """What makes a secured message unique for replay detection.

    ``calling_ap_title`` is the dotted absolute form (``"2.16.124.113620.1.22.0.123.4"``);
    ``iv`` the 4 IV bytes of the AC element; ``invocation_id`` the A8 value.
    """

    calling_ap_title: str
    key_id: int
    iv: bytes
    invocation_id: int

    def __init__(self, calling_ap_title: str, key_id: int, iv: BytesLike,
                 invocation_id: int) -> None:
        # Written out rather than the dataclass's: the IV is made bytes (hashable) before it
        # is stored, since compiled code refuses a bytearray for a ``bytes`` field.
        iv = as_bytes(iv)
        if not 0 <= key_id <= 0xFF:
            raise LocalProtocolError("key id must be 0-255")
        if len(iv) > 4:
            raise LocalProtocolError("IV must be at most 4 bytes")
        if not 0 <= invocation_id <= 0xFFFFFFFF:
            raise LocalProtocolError("invocation id must fit in 4 bytes")
        object.__setattr__(self, "calling_ap_title", calling_ap_title)
        object.__setattr__(self, "key_id", key_id)
        object.__setattr__(self, "iv", iv)
        object.__setattr__(self, "invocation_id", invocation_id)

    # Written out rather than the dataclass's (eq=False): the generated ones are made with
    # exec and stay interpreted in a compiled build, and the window hashes and compares a
    # MessageId several times per secured request.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MessageId):
            return NotImplemented
        return (self.invocation_id == other.invocation_id and self.iv == other.iv
                and self.key_id == other.key_id
                and self.calling_ap_title == other.calling_ap_title)

    def __hash__(self) -> int:
        return hash((self.calling_ap_title, self.key_id, self.iv, self.invocation_id))


class ReplayWindow:
    """Remembers accepted messages so none is accepted twice.

    Call :meth:`accept` only **after** the MAC has been verified; otherwise forged messages
    could fill the window and push out genuine entries.

    Two modes:

    * **window** (``iv_tolerance`` None): any IV is accepted; a message is remembered for
      ``max_age`` seconds, at most ``max_entries`` of them. A replay older than that (or
      pushed out by newer messages) is no longer recognised.
    * **time** (``iv_tolerance`` in seconds): the IV must be the sender's Unix time within
      ``iv_tolerance`` of ``now`` (digest 2.4, MSDK's +-15 minutes), and above a *floor* that
      only rises: ``now - iv_tolerance`` for the latest ``now`` seen, and the IV of any entry
      pushed out by ``max_entries`` (entries of the latest two seconds are not pushed out
      until the window holds :data:`BURST` times ``max_entries``). A message is remembered
      while its IV is above the floor, and refused by the floor afterwards, so no message is
      ever accepted twice, however old the replay and whatever the clock does later. ``now``
      must then be Unix time.

    ``record`` (if given) is called with each message and ``now`` after the checks and before
    :meth:`accept` returns; a persistent receiver writes it durably there, so a message is on
    disk before it is served. Whatever it raises refuses the message (it is not remembered).
    :meth:`restore` and :meth:`snapshot` carry the window across a restart.
    """

    __slots__ = ("_floor", "_iv_tolerance", "_max_age", "_max_entries", "_now_high",
                 "_record", "_seen")

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_age: float = DEFAULT_MAX_AGE, *,
        iv_tolerance: float | None = None,
        record: Callable[[MessageId, float], None] | None = None,
    ) -> None:
        if max_entries < 1:
            raise LocalProtocolError("max_entries must be at least 1")
        if not max_age > 0:
            raise LocalProtocolError("max_age must be positive")
        if iv_tolerance is not None and not 0 < iv_tolerance < 1 << 30:
            raise LocalProtocolError("iv_tolerance must be positive seconds")
        self._max_entries = max_entries
        self._max_age = max_age
        self._iv_tolerance = iv_tolerance
        self._record = record
        # Insertion order is acceptance order, so the oldest entry is always first.
        self._seen: OrderedDict[MessageId, float] = OrderedDict()
        self._floor: int | None = None  # time mode: IVs below it are refused (Unix seconds)
        self._now_high: float | None = None  # time mode: the latest `now` seen

    @property
    def timed(self) -> bool:
        """True in time mode (IVs must be fresh Unix times)."""
        return self._iv_tolerance is not None

    @property
    def floor(self) -> int | None:
        """Time mode: the lowest IV (Unix seconds) still acceptable; None before any use."""
        return self._floor

    def _advance(self, now: float) -> None:
        if self._iv_tolerance is None:
            return
        if self._now_high is None or now > self._now_high:
            self._now_high = now
        self._raise_floor(math.ceil(self._now_high - self._iv_tolerance))

    def _raise_floor(self, value: int) -> None:
        if self._floor is None or value > self._floor:
            self._floor = value

    def _iv_time(self, message: MessageId) -> int:
        # Unix seconds, unwrapped around the latest `now` (the 2106 wrap, as iv_skew does).
        assert self._now_high is not None
        return int(self._now_high) + int(iv_skew(message.iv, float(int(self._now_high))))

    def _expire(self, now: float) -> None:
        seen = self._seen
        if self._iv_tolerance is not None:
            self._advance(now)
            assert self._floor is not None
            while seen and self._iv_time(next(iter(seen))) < self._floor:
                seen.popitem(last=False)
            return
        while seen:
            oldest = next(iter(seen.values()))
            if now - oldest <= self._max_age:
                break
            seen.popitem(last=False)

    def seen(self, message: MessageId, now: float) -> bool:
        """True when ``message`` was accepted and is still remembered (forgets expired ones)."""
        self._expire(now)
        return message in self._seen

    def check(self, message: MessageId, now: float) -> None:
        """Raise SecurityError (generic) if ``message`` would be refused now; record nothing."""
        if self.seen(message, now):
            raise SecurityError()
        if self._iv_tolerance is not None:
            if len(message.iv) != 4:
                raise SecurityError()
            assert self._floor is not None
            if (abs(iv_skew(message.iv, now)) > self._iv_tolerance
                    or self._iv_time(message) < self._floor):
                raise SecurityError()

    def accept(self, message: MessageId, now: float) -> None:
        """Record ``message``; raise SecurityError (generic) if it is a replay, or (time
        mode) its IV is stale or below the floor."""
        self.check(message, now)
        if self._record is not None:
            self._record(message, now)
        self._add(message, now)

    def _add(self, message: MessageId, now: float) -> None:
        seen = self._seen
        seen[message] = now
        while len(seen) > self._max_entries:
            if self._iv_tolerance is not None:
                assert self._now_high is not None
                iv_time = self._iv_time(next(iter(seen)))
                # Forgotten before its time, an entry takes everything up to its IV second
                # with it: the floor passes that second. For an entry of the latest two seconds
                # that would refuse the fresh requests of a burst (SME for the rest of the
                # second), so such entries are kept, up to BURST times the window's size.
                if (iv_time >= int(self._now_high) - 1
                        and len(seen) <= BURST * self._max_entries):
                    return
                self._raise_floor(iv_time + 1)
            seen.popitem(last=False)

    def snapshot(self) -> tuple[int | None, float | None, list[tuple[MessageId, float]]]:
        """(floor, latest now, entries with their acceptance time) — what :meth:`restore`
        takes."""
        return self._floor, self._now_high, list(self._seen.items())

    def restore(self, floor: int | None, now_high: float | None,
                entries: Iterable[tuple[MessageId, float]]) -> None:
        """Take back what a previous run remembered (its :meth:`snapshot`, or the journal of
        its accepted messages), without calling ``record``."""
        if floor is not None:
            self._raise_floor(floor)
        if now_high is not None:
            self._advance(now_high)
        for message, when in entries:
            self._advance(when)
            self._seen.pop(message, None)
            self._add(message, when)
        if self._now_high is not None:
            self._expire(self._now_high)

    def __len__(self) -> int:
        return len(self._seen)

    def __repr__(self) -> str:
        mode = f"iv_tolerance={self._iv_tolerance}, floor={self._floor}" if self.timed \
            else f"max_age={self._max_age}"
        return f"ReplayWindow(entries={len(self._seen)}, max_entries={self._max_entries}, {mode})"


def iv_skew(iv: BytesLike, now_unix: float) -> float:
    """Seconds by which a time-based IV (big-endian Unix seconds, digest 2.4) leads ``now``.

    Negative when the IV is in the past. The 32-bit value is read modulo 2**32 around
    ``now`` so the 2106 wrap does not look like a 136-year skew.
    """
    if len(iv) != 4:
        raise LocalProtocolError("IV must be 4 bytes")
    diff = (FROM_BYTES(iv, "big") - int(now_unix)) % (1 << 32)
    if diff >= 1 << 31:
        diff -= 1 << 32
    return float(diff) + (int(now_unix) - now_unix)


def check_iv_freshness(
    iv: BytesLike, now_unix: float, tolerance: float = DEFAULT_IV_TOLERANCE
) -> None:
    """Refuse a time-based IV more than ``tolerance`` s from ``now_unix``.

    :class:`ReplayWindow` in time mode applies it (with a floor); on its own it bounds
    nothing a window forgets. Raises SecurityError (generic) when out of tolerance.
    """
    if abs(iv_skew(iv, now_unix)) > tolerance:
        raise SecurityError()
