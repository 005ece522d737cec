"""Retention: what the head-end keeps of peer-driven rows, and the task that prunes the rest.

Peers make the head-end write rows: every message in and out is logged, every Register
writes a node. Without a bound a UDP storm or a Register/Deregister loop fills the disk
(docs/storage.md, "Retention"). :func:`prune_once` applies a :class:`Retention` to a
storage; :func:`retention_loop` does it every ``interval`` seconds for as long as the
head-end runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from c1222.errors import C1222Error, ConfigurationError

from .core import AsyncStorage

__all__ = ["Retention", "Pruned", "prune_once", "retention_loop"]

log = logging.getLogger("c1222.headend.storage")

DAY = 86_400.0


@dataclass(frozen=True)
class Retention:
    """How much the head-end keeps; ``None`` switches one bound off.

    * ``message_age``: seconds a logged message is kept (7 days).
    * ``max_messages``: rows the message log keeps at most, the newest (100,000).
    * ``node_age``: seconds a deregistered node, or one whose registration expired, is kept
      after that (7 days); its readings stay.
    * ``max_deregistered``: deregistered nodes kept at most, the most recently seen (10,000).
    * ``reading_age``: seconds readings are kept, in whole UTC days (``None``: for ever, the
      default; readings are the data the head-end exists for). On PostgreSQL whole daily
      partitions are dropped.
    * ``interval``: seconds between two prunes (60).

    Each pass also makes the readings partitions of the coming days (PostgreSQL).
    """

    message_age: float | None = 7 * DAY
    max_messages: int | None = 100_000
    node_age: float | None = 7 * DAY
    max_deregistered: int | None = 10_000
    interval: float = 60.0
    reading_age: float | None = None

    def __post_init__(self) -> None:
        for name in ("message_age", "node_age", "reading_age"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 <= value < 1e10):
                raise ConfigurationError(f"retention {name} must be seconds >= 0, not {value!r}")
        for name in ("max_messages", "max_deregistered"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise ConfigurationError(f"retention {name} must be a count >= 0, "
                                         f"not {value!r}")
        if not (isinstance(self.interval, (int, float)) and 0 < self.interval < 1e7):
            raise ConfigurationError(f"retention interval must be seconds > 0, "
                                     f"not {self.interval!r}")


@dataclass(frozen=True)
class Pruned:
    """What one pass removed."""

    messages: int
    nodes: list[str]
    reading_days: list[date] = field(default_factory=list)
    partitions_made: int = field(default=0, compare=False)


async def prune_once(storage: AsyncStorage, retention: Retention, now: datetime) -> Pruned:
    """Apply ``retention`` at time ``now``: old and surplus messages, aged-out nodes, readings
    of days past ``reading_age``; and make the coming days' readings partitions."""
    messages = 0
    if retention.message_age is not None or retention.max_messages is not None:
        before = (now - timedelta(seconds=retention.message_age)
                  if retention.message_age is not None else None)
        messages = await storage.prune_messages(retention.max_messages, before)
    nodes: list[str] = []
    if retention.node_age is not None or retention.max_deregistered is not None:
        # Without an age only the count bound applies: nothing is old before the epoch.
        before = (now - timedelta(seconds=retention.node_age) if retention.node_age is not None
                  else datetime(1970, 1, 1, tzinfo=timezone.utc))
        nodes = await storage.prune_nodes(before, retention.max_deregistered)
    made = await storage.ensure_partitions(now)
    days: list[date] = []
    if retention.reading_age is not None:
        days = await storage.prune_readings(now - timedelta(seconds=retention.reading_age))
    return Pruned(messages, nodes, days, made)


async def retention_loop(storage: AsyncStorage, retention: Retention,
                         on_nodes_removed: Callable[[list[str]], None],
                         clock: Callable[[], float] = time.time) -> None:
    """Prune now and every ``retention.interval`` seconds until cancelled; the titles of the
    removed nodes go to ``on_nodes_removed`` (the head-end drops them from its registry).
    A failing database is logged and tried again at the next pass."""
    while True:
        try:
            pruned = await prune_once(storage, retention,
                                      datetime.fromtimestamp(clock(), timezone.utc))
        except C1222Error as exc:
            log.warning("retention pass failed: %s", exc)
        else:
            if pruned.nodes:
                on_nodes_removed(pruned.nodes)
            if pruned.messages or pruned.nodes or pruned.reading_days:
                log.info("retention: %d messages, %d nodes and %d days of readings removed",
                         pruned.messages, len(pruned.nodes), len(pruned.reading_days))
        await asyncio.sleep(retention.interval)
