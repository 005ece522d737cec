"""``c1222 headend --publish nats://HOST:PORT``: every stored reading on a JetStream stream
(docs/storage.md, "Scaling out"; message format in :mod:`c1222.headend.stream`).

A transactional outbox: with ``--publish`` the head-end's storage writes every reading into
the ``outbox`` table in the same transaction that stores it (``open_storage(...,
outbox=True)``), so only committed readings are published and none is lost between the
commit and the stream. One task sends the outbox in batches, oldest first; JetStream
acknowledges each message (``PubAck``) and only then is it deleted from the outbox. A
batch cut short (a lost connection, a kill -9) is sent again; JetStream drops the copies
by their ``Nats-Msg-Id`` (the natural key) and ``c1222 sink`` by its key after the window.

When NATS is down or unreachable the head-end keeps collecting and storing; the outbox
grows in the database up to ``max_outbox`` readings (beyond that the oldest leave the
outbox unpublished, counted; they stay in ``readings``), and the publisher reconnects
with back-off. The outage is one WARNING, its end another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .storage import AsyncStorage
from .stream import (
    DUPLICATE_WINDOW,
    NatsTarget,
    connect_stream,
    encode_message,
    message_id,
    subject_for,
)

__all__ = ["Publisher"]

log = logging.getLogger("c1222.headend.publish")

#: Readings the outbox holds at most while NATS is unreachable (~2 h of 10,000 meters read
#: every minute; some 200 bytes each in the database).
MAX_OUTBOX = 5_000_000
#: Messages sent before waiting for their acknowledgements.
BATCH = 256
#: Seconds to wait for JetStream's acknowledgement of one message.
ACK_TIMEOUT = 5.0
#: Back-off between two connection attempts, seconds (doubling up to the maximum).
RETRY_MIN, RETRY_MAX = 0.2, 5.0
#: Seconds between two looks at the outbox when nothing woke the publisher (rows another
#: process left, e.g. the head-end killed before it published them, are found anyway).
IDLE_POLL = 5.0
#: Seconds a clean stop spends sending what the outbox still holds.
STOP_FLUSH = 5.0


class Publisher:
    """Publish the outbox of ``storage`` (opened with ``outbox=True``) to ``target``'s stream:
    ``await start()``, ``wake()`` after each store, ``await stop()``; ``stats`` counts."""

    def __init__(self, target: NatsTarget, storage: AsyncStorage, *,
                 max_outbox: int = MAX_OUTBOX,
                 duplicate_window: float = DUPLICATE_WINDOW) -> None:
        self.target = target
        self.storage = storage
        self.max_outbox = max_outbox
        self.duplicate_window = duplicate_window
        self._wanted = asyncio.Event()
        self._empty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._nc: Any = None
        self._js: Any = None
        self._down: str | None = None  # why NATS is unusable, while it is
        self._dropped_this_outage = False
        self.stats = {"published": 0, "duplicates": 0, "dropped": 0, "connects": 0,
                      "failures": 0, "outbox": 0}

    @property
    def connected(self) -> bool:
        return self._js is not None and self._down is None

    async def start(self) -> None:
        """Start the sending task (connecting happens there: NATS down is not an error).
        Readings a previous run left in the outbox go first."""
        self._wanted.set()
        self._task = asyncio.create_task(self._run(), name="c1222-publish")

    def wake(self) -> None:
        """New readings are in the outbox (committed): send them now. Never waits."""
        self._wanted.set()

    async def stop(self) -> None:
        """Send what the outbox holds (up to STOP_FLUSH seconds), then close. What is left
        stays in the outbox for the next run with --publish."""
        if self._task is not None:
            if self.connected:
                self._empty.clear()
                self._wanted.set()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._empty.wait(), STOP_FLUSH)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            left = await self.storage.outbox_count()
            self.stats["outbox"] = left
            if left:
                log.warning("%d readings wait in the outbox for %s; they are sent at the "
                            "next start with --publish", left, self.target.display)
        await self._close()

    async def _close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    # ------------------------------------------------------------------ sending

    async def _run(self) -> None:
        delay = RETRY_MIN
        while True:
            try:
                if self._js is None:
                    await self._connect()
                if self._down is not None:
                    log.warning("NATS at %s is reachable again: publishing the readings held",
                                self.target.display)
                    self._down = None
                    self._dropped_this_outage = False
                delay = RETRY_MIN
                if not await self._send_batch():
                    self._empty.set()
                    self._wanted.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wanted.wait(), IDLE_POLL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: retry, never crash
                self.stats["failures"] += 1
                why = f"{type(exc).__name__}: {exc}".strip(": ")
                if self._down is None:
                    log.warning("cannot publish readings to NATS at %s (%s): holding them in "
                                "the outbox, up to %d, and retrying", self.target.display, why,
                                self.max_outbox)
                self._down = why
                await self._close()
                await self._trim()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _trim(self) -> None:
        with contextlib.suppress(Exception):  # the database may be the one failing
            dropped = await self.storage.outbox_trim(self.max_outbox)
            if dropped:
                self.stats["dropped"] += dropped
                if not self._dropped_this_outage:
                    self._dropped_this_outage = True
                    log.warning("NATS outbox full (%d readings): the oldest are not "
                                "published; they stay in the head-end's database",
                                self.max_outbox)

    async def _connect(self) -> None:
        nc, js = await connect_stream(self.target, duplicate_window=self.duplicate_window,
                                      timeout=ACK_TIMEOUT)
        self._nc, self._js = nc, js
        self.stats["connects"] += 1

    async def _send_batch(self) -> bool:
        """Send the oldest waiting readings; False when the outbox was empty."""
        batch = await self.storage.outbox_batch(BATCH)
        if not batch:
            self.stats["outbox"] = 0
            return False
        acks = await asyncio.gather(
            *(self._js.publish(subject_for(self.target.prefix, ap_title),
                               encode_message(ap_title, reading), timeout=ACK_TIMEOUT,
                               stream=self.target.stream,
                               headers={"Nats-Msg-Id": message_id(ap_title, reading)})
              for _, ap_title, reading in batch), return_exceptions=True)
        done = [row[0] for row, ack in zip(batch, acks) if not isinstance(ack, BaseException)]
        self.stats["published"] += len(done)
        self.stats["duplicates"] += sum(1 for a in acks if getattr(a, "duplicate", False))
        # Acknowledged ones leave the outbox; the others are sent again (a copy that did
        # reach the stream is dropped there by its message id).
        await self.storage.outbox_done(done)
        if len(done) < len(batch):
            failure = next(a for a in acks if isinstance(a, BaseException))
            raise failure if isinstance(failure, Exception) else RuntimeError(str(failure))
        return True
