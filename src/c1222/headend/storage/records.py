"""The records the head-end stores: registered nodes, readings and logged messages.

Every record is a frozen dataclass compared by value. Times are aware datetimes,
normalised to UTC on construction, so a record read back from either backend is
equal to the one stored. A naive datetime is refused: the database cannot guess
its zone and a wrong guess would move readings by hours.
"""

from __future__ import annotations

import json as _json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "DIRECTIONS",
    "KINDS",
    "NODE_STATES",
    "TRANSPORTS",
    "MessageRecord",
    "NodeRecord",
    "Reading",
    "canonical_json",
    "event_reading",
    "interval_readings",
    "utc",
]

#: Kinds of reading: present values, energy registers, load-profile intervals, event-log entries.
KINDS = ("present", "register", "interval", "event")
#: States of a node in the registry.
NODE_STATES = ("registered", "deregistered")
#: Directions of a logged message, seen from the head-end.
DIRECTIONS = ("in", "out")
#: Transports a logged message crossed.
TRANSPORTS = ("tcp", "udp")

# Absolute dotted OID without leading zeros in an arc: one spelling per title, so the
# registry key and the readings' unique key never hold two spellings of one node.
_AP_TITLE = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")


def utc(when: datetime, what: str = "time") -> datetime:
    """``when`` in UTC; a naive datetime (or anything else) raises ``ValueError``."""
    if not isinstance(when, datetime):
        raise ValueError(f"{what} must be a datetime, not {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{what} {when.isoformat()} is naive; give an aware datetime (UTC)")
    return when.astimezone(timezone.utc)


def _check_ap_title(ap_title: object, what: str = "ap_title") -> str:
    if not isinstance(ap_title, str) or not _AP_TITLE.fullmatch(ap_title):
        raise ValueError(f"{what} {ap_title!r} is not an absolute dotted OID "
                         "such as 2.16.124.113620.1.22.0.5")
    return ap_title


def canonical_json(value: Any) -> str:
    """The one text form of a JSON value: sorted keys, no spaces (what the helpers store)."""
    return _json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class NodeRecord:
    """One node of the registry (C12.22 registration service, digest 5.3.2).

    ``native_address`` is the node's address as text ("127.0.0.1:40123", or hex for
    other networks); ``device_class`` is hex text; ``registration_period`` is seconds.
    ``via`` is the AP title of the master relay that told the head-end about the node (it is
    reached through that relay), None for a node that registered with the head-end itself.
    """

    ap_title: str
    native_address: str
    node_type: int = 0
    connection_type: int = 0
    device_class: str = ""
    serial_number: str = ""
    registration_period: int = 0
    registered_at: datetime | None = None
    last_seen: datetime | None = None
    state: str = "registered"
    via: str | None = None

    def __post_init__(self) -> None:
        _check_ap_title(self.ap_title)
        if self.via is not None:
            _check_ap_title(self.via, "via")
        if self.state not in NODE_STATES:
            raise ValueError(f"node state {self.state!r} is not one of {NODE_STATES}")
        if any(c not in "0123456789abcdefABCDEF" for c in self.device_class):
            raise ValueError(f"device_class {self.device_class!r} is not hex text")
        for name in ("node_type", "connection_type", "registration_period"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative int")
        for name in ("registered_at", "last_seen"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, utc(getattr(self, name), name))


@dataclass(frozen=True)
class Reading:
    """One value read from a meter at one time.

    The natural key is (node, ``kind``, ``time``, ``name``): storing the same key twice
    keeps the first row, so re-storing after a crash or a retry never duplicates.

    - ``present``: ``name`` is the quantity ("voltage", "current", "active_power", ...).
    - ``register``: ``name`` is the register ("wh", "vah", "varh", ...).
    - ``interval``: ``time`` is the interval's end, one row per channel (``name``), the
      interval status in ``extra`` (see :func:`interval_readings`).
    - ``event``: ``name`` is the entry's sequence number, ``value`` its event code, the
      rest in ``extra`` (see :func:`event_reading`).

    ``extra`` is JSON text, stored and returned byte for byte.
    """

    kind: str
    time: datetime
    name: str
    value: float
    extra: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"reading kind {self.kind!r} is not one of {KINDS}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("reading name must be a non-empty string")
        value = float(self.value)
        # SQLite stores NaN as NULL; no meter quantity is NaN or infinite anyway.
        if not math.isfinite(value):
            raise ValueError(f"reading {self.name!r} has a non-finite value {value!r}")
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "time", utc(self.time, "reading time"))
        if self.extra is not None:
            if not isinstance(self.extra, str):
                raise ValueError("reading extra must be JSON text")
            try:
                _json.loads(self.extra)
            except ValueError as exc:
                raise ValueError(f"reading extra is not JSON: {exc}") from None

    @property
    def details(self) -> dict[str, Any]:
        """``extra`` parsed (an empty dict when there is none)."""
        return {} if self.extra is None else _json.loads(self.extra)


def interval_readings(end: datetime, values: Mapping[str, float], status: int = 0,
                      channel_status: Mapping[str, int] | None = None) -> list[Reading]:
    """The rows of one load-profile interval (C12.19 Table 64): one per channel.

    Each row carries the interval status and, when given, its channel's status in
    ``extra``, so any one row tells whether the interval was complete.
    """
    rows = []
    for channel, value in values.items():
        extra: dict[str, int] = {"status": int(status)}
        if channel_status and channel in channel_status:
            extra["channel_status"] = int(channel_status[channel])
        rows.append(Reading("interval", end, channel, value, canonical_json(extra)))
    return rows


def event_reading(time: datetime, seq: int, code: int, argument: bytes = b"",
                  user_id: int = 0) -> Reading:
    """One event-log entry (C12.19 Table 76): keyed by its sequence number ``seq``.

    The sequence number is the name so two entries logged in the same second stay
    apart; ``value`` is the event code; ``extra`` holds code, seq, user id and the
    argument as hex.
    """
    extra = {"argument": bytes(argument).hex(), "code": int(code), "seq": int(seq),
             "user_id": int(user_id)}
    return Reading("event", time, str(int(seq)), float(code), canonical_json(extra))


@dataclass(frozen=True)
class MessageRecord:
    """One C12.22 message the head-end sent (``out``) or received (``in``).

    ``raw`` is the APDU as it crossed the wire; ``summary`` a one-line description
    ("Read request table 28"); ``json`` the canonical JSON of the decoded message,
    made by the caller. ``id`` is given by the log (None before it is logged).
    """

    time: datetime
    direction: str
    peer: str
    transport: str
    raw: bytes
    summary: str = ""
    ap_title: str | None = None
    json: str | None = None
    id: int | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", utc(self.time, "message time"))
        if self.direction not in DIRECTIONS:
            raise ValueError(f"message direction {self.direction!r} is not one of {DIRECTIONS}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"message transport {self.transport!r} is not one of {TRANSPORTS}")
        if not isinstance(self.raw, (bytes, bytearray, memoryview)):
            raise ValueError("message raw must be bytes")
        object.__setattr__(self, "raw", bytes(self.raw))
        if self.ap_title is not None:
            _check_ap_title(self.ap_title)


#: The roles of operator accounts, weakest first (docs/headend.md, "Sign-in and roles").
ROLES = ("viewer", "operator", "engineer", "admin")


@dataclass(frozen=True)
class UserRecord:
    """An operator account: its name, role and Argon2 password hash (never the password)."""

    name: str
    role: str
    password_hash: str
    created_at: datetime

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        object.__setattr__(self, "created_at", utc(self.created_at, "created_at"))


@dataclass(frozen=True)
class AuditRecord:
    """One command recorded in the audit log: who (``user``, None when not signed in), from
    where, when, what (``action``, e.g. ``procedure``), on which meter, its parameters as
    JSON text (secrets removed), the HTTP status and the result (e.g. response codes)."""

    time: datetime
    user: str | None
    address: str
    action: str
    status: int
    ap_title: str | None = None
    params: str | None = None
    result: str = ""
    id: int | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", utc(self.time, "audit time"))
