"""``c1222 sink``: a durable JetStream consumer that writes the readings stream into a
database exactly once (docs/storage.md, "Scaling out").

Exactly once in the table, from at-least-once delivery: each fetched batch is stored in
ONE transaction with ``ON CONFLICT DO NOTHING`` on the natural key, and only after that
commit are its messages acknowledged. A sink killed between commit and acknowledgement
gets the batch again (after the consumer's ``ack_wait``), and storing it again adds
nothing. A message that is not a reading (malformed, or on the wrong subject) is counted
and terminated (``term``: never redelivered), never stored, never fatal. While the
database fails nothing is acknowledged; the batch comes back and the sink retries with
back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from .storage import AsyncStorage, Reading
from .stream import BadMessage, NatsTarget, connect_stream, decode_message

__all__ = ["Sink", "SinkConfig"]

log = logging.getLogger("c1222.sink")

RETRY_MIN, RETRY_MAX = 0.2, 5.0


@dataclass(frozen=True)
class SinkConfig:
    """``durable``: the consumer's name (a second sink with the same name shares its work);
    ``batch``: messages per fetch and per transaction; ``ack_wait``: seconds before JetStream
    redelivers a message not acknowledged (a killed sink's batch comes back after it)."""

    durable: str = "c1222-sink"
    batch: int = 500
    ack_wait: float = 30.0
    fetch_timeout: float = 1.0


class Sink:
    """``await start()``; ``await run()`` until cancelled; ``await stop()``. ``stats`` is the
    counters (received, stored, duplicates, malformed, batches, acked, storage_errors,
    nats_errors)."""

    def __init__(self, target: NatsTarget, storage: AsyncStorage,
                 config: SinkConfig = SinkConfig()) -> None:
        self.target = target
        self.storage = storage
        self.config = config
        self.stats = {"received": 0, "stored": 0, "duplicates": 0, "malformed": 0,
                      "batches": 0, "acked": 0, "storage_errors": 0, "nats_errors": 0}
        self._nc: Any = None
        self._sub: Any = None
        self._down: str | None = None

    async def start(self) -> None:
        """Connect, make the stream (as the head-end would) and the durable consumer.
        Raises what nats-py raises when NATS cannot be reached at all."""
        await self._connect()

    async def _connect(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        nc, js = await connect_stream(self.target)
        try:
            self._sub = await js.pull_subscribe(
                self.target.subjects, durable=self.config.durable, stream=self.target.stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                      deliver_policy=DeliverPolicy.ALL,
                                      ack_wait=self.config.ack_wait,
                                      max_ack_pending=max(self.config.batch * 4, 1000)))
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._nc = nc

    async def run(self) -> None:
        """Fetch, store, acknowledge, until cancelled; NATS or database failures are logged
        once per outage and retried with back-off."""
        delay = RETRY_MIN
        while True:
            try:
                if self._nc is None:
                    await self._connect()
                await self.step()
                if self._down is not None:
                    log.warning("sink working again after: %s", self._down)
                    self._down = None
                delay = RETRY_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep consuming whatever fails
                why = f"{type(exc).__name__}: {exc}".strip(": ")
                if self._down is None:
                    log.warning("sink stalled (retrying): %s", why)
                self._down = why
                if not _is_storage_error(exc):
                    self.stats["nats_errors"] += 1
                    await self._close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def step(self) -> int:
        """One fetch: store its readings in one transaction, then acknowledge; the number of
        messages handled (0 when the stream had nothing for ``fetch_timeout``)."""
        from nats.errors import TimeoutError as NatsTimeout

        try:
            msgs = await self._sub.fetch(self.config.batch, timeout=self.config.fetch_timeout)
        except (NatsTimeout, asyncio.TimeoutError):
            return 0
        good: list[tuple[str, Reading]] = []
        keep: list[Any] = []
        for msg in msgs:
            self.stats["received"] += 1
            try:
                good.append(decode_message(msg.subject, msg.data, self.target.prefix))
                keep.append(msg)
            except Exception as exc:  # noqa: BLE001 - BadMessage, or a bug: never a poison
                self.stats["malformed"] += 1
                log.warning("skipped a message on %s: %s", msg.subject[:120],
                            exc if isinstance(exc, BadMessage) else f"unexpected {exc!r:.200}")
                with contextlib.suppress(Exception):
                    await msg.term()
        if good:
            try:
                stored = await self.storage.store_many(good)
            except Exception as exc:
                self.stats["storage_errors"] += 1
                if not _refused_row(exc):
                    raise  # an outage: nothing acknowledged, the batch comes back
                # The database refuses a row (a constraint of its own): one at a time, so
                # that row is skipped and the others stored, not the batch refused for ever.
                stored, keep = await self._one_by_one(good, keep)
            self.stats["stored"] += stored
            self.stats["duplicates"] += len(keep) - stored
        self.stats["batches"] += 1
        # After the commit: a kill before these acks costs a redelivery, never a duplicate.
        for msg in keep:
            await msg.ack()
            self.stats["acked"] += 1
        return len(msgs)

    async def _one_by_one(self, good: list[tuple[str, Reading]], msgs: list[Any]
                          ) -> tuple[int, list[Any]]:
        stored, kept = 0, []
        for row, msg in zip(good, msgs):
            try:
                stored += await self.storage.store_many([row])
            except Exception as exc:
                if not _refused_row(exc):
                    raise
                self.stats["malformed"] += 1
                log.warning("skipped a message on %s: the database refuses it: %s",
                            msg.subject[:120], exc)
                with contextlib.suppress(Exception):
                    await msg.term()
            else:
                kept.append(msg)
        return stored, kept

    async def _close(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def stop(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.flush(2)  # the last acks reach the server
        await self._close()

    def summary(self) -> str:
        """One line for the end of a run."""
        s = self.stats
        return (f"sink: {s['received']} messages, {s['stored']} readings stored, "
                f"{s['duplicates']} duplicates skipped, {s['malformed']} malformed skipped, "
                f"{s['acked']} acknowledged in {s['batches']} batches; "
                f"{s['storage_errors']} storage and {s['nats_errors']} NATS errors")


def _refused_row(exc: BaseException) -> bool:
    """A database error caused by the data of a row (a constraint, a value out of range), not
    by the database being away: retrying the same row would fail the same way."""
    import sqlite3

    cause = exc.__cause__
    if isinstance(cause, (sqlite3.IntegrityError, sqlite3.DataError)):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(cause, (psycopg.DataError, psycopg.IntegrityError))


def _is_storage_error(exc: BaseException) -> bool:
    from .storage import StorageError

    return isinstance(exc, StorageError)
