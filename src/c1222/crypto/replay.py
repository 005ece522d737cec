"""Replay protection for receivers of secured messages (C12.22 digest 2.6, 10.3 item 9).

A secured message is identified by (calling AP title, key id, IV, calling AP invocation id):
the sender changes the IV or the invocation id for every message (digest 2.4, 2.6), so the
same tuple arriving twice within the window is a replay. The standard's exact acceptance
rules could not be recovered (digest 10.3 item 9); this window is the conservative part
that needs no clock agreement with the peer.

Pure: time enters as ``now`` (seconds, from any monotonic source the caller chooses).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from c1222.errors import LocalProtocolError, SecurityError

__all__ = [
    "DEFAULT_IV_TOLERANCE",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_ENTRIES",
    "MessageId",
    "ReplayWindow",
    "check_iv_freshness",
    "iv_skew",
]

#: Default number of remembered messages (each entry is about 200 bytes).
DEFAULT_MAX_ENTRIES = 10_000
#: Default age, in seconds, after which an accepted message is forgotten.
DEFAULT_MAX_AGE = 900.0
#: MSDK's comment: the IV (Unix time) should be within +-15 minutes of UTC (digest 2.4).
DEFAULT_IV_TOLERANCE = 900.0


@dataclass(frozen=True, slots=True)
class MessageId:
    """What makes a secured message unique for replay detection.

    ``calling_ap_title`` is the dotted absolute form (``"2.16.124.113620.1.22.0.123.4"``);
    ``iv`` the 4 IV bytes of the AC element; ``invocation_id`` the A8 value.
    """

    calling_ap_title: str
    key_id: int
    iv: bytes
    invocation_id: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "iv", bytes(self.iv))  # hashable even if given a bytearray
        if not 0 <= self.key_id <= 0xFF:
            raise LocalProtocolError("key id must be 0-255")
        if len(self.iv) > 4:
            raise LocalProtocolError("IV must be at most 4 bytes")
        if not 0 <= self.invocation_id <= 0xFFFFFFFF:
            raise LocalProtocolError("invocation id must fit in 4 bytes")


class ReplayWindow:
    """Remembers accepted messages for ``max_age`` seconds, at most ``max_entries`` of them.

    Call :meth:`accept` only **after** the MAC has been verified; otherwise forged messages
    could fill the window and push out genuine entries. A message older than the window
    (or pushed out by newer ones) is no longer recognised — bound that gap with
    :func:`check_iv_freshness` if the peers' clocks agree.
    """

    __slots__ = ("_max_age", "_max_entries", "_seen")

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_age: float = DEFAULT_MAX_AGE
    ) -> None:
        if max_entries < 1:
            raise LocalProtocolError("max_entries must be at least 1")
        if not max_age > 0:
            raise LocalProtocolError("max_age must be positive")
        self._max_entries = max_entries
        self._max_age = max_age
        # Insertion order is acceptance order, so the oldest entry is always first.
        self._seen: OrderedDict[MessageId, float] = OrderedDict()

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            oldest = next(iter(seen.values()))
            if now - oldest <= self._max_age:
                break
            seen.popitem(last=False)

    def seen(self, message: MessageId, now: float) -> bool:
        """True when ``message`` was accepted within the window (forgets expired entries)."""
        self._expire(now)
        return message in self._seen

    def accept(self, message: MessageId, now: float) -> None:
        """Record ``message``; raise SecurityError (generic) if it is already in the window."""
        if self.seen(message, now):
            raise SecurityError()
        self._seen[message] = now
        while len(self._seen) > self._max_entries:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)

    def __repr__(self) -> str:
        return (
            f"ReplayWindow(entries={len(self._seen)}, max_entries={self._max_entries}, "
            f"max_age={self._max_age})"
        )


def iv_skew(iv: bytes, now_unix: float) -> float:
    """Seconds by which a time-based IV (big-endian Unix seconds, digest 2.4) leads ``now``.

    Negative when the IV is in the past. The 32-bit value is read modulo 2**32 around
    ``now`` so the 2106 wrap does not look like a 136-year skew.
    """
    if len(iv) != 4:
        raise LocalProtocolError("IV must be 4 bytes")
    diff = (int.from_bytes(iv, "big") - int(now_unix)) % (1 << 32)
    if diff >= 1 << 31:
        diff -= 1 << 32
    return float(diff) + (int(now_unix) - now_unix)


def check_iv_freshness(
    iv: bytes, now_unix: float, tolerance: float = DEFAULT_IV_TOLERANCE
) -> None:
    """Optional check: refuse a time-based IV more than ``tolerance`` s from ``now_unix``.

    Not applied by default: peers are not required to use time-based IVs (random IVs are
    legal) and meters' clocks drift. Raises SecurityError (generic) when out of tolerance.
    """
    if abs(iv_skew(iv, now_unix)) > tolerance:
        raise SecurityError()
