"""``c1222 headend --publish nats://HOST:PORT``: every stored reading on a JetStream stream
(docs/storage.md, "Scaling out"; message format in :mod:`c1222.headend.stream`).

The head-end calls :meth:`Publisher.publish` after ``store_readings`` returned, so only
committed readings are published: the local database stays the record, the stream is a
feed of it. ``publish`` never waits: the readings go to a bounded in-memory outbox, which
one task drains in batches, each message acknowledged by JetStream (``PubAck``) before it
leaves the outbox. A batch whose acknowledgements do not all come back is sent again
whole; JetStream drops the copies by their ``Nats-Msg-Id`` (the natural key).

When NATS is down or unreachable the head-end keeps collecting and storing; the outbox
holds up to ``max_outbox`` readings (the oldest are dropped beyond it, counted), and the
publisher reconnects with back-off. The outage is one WARNING, its end another. The
outbox is not persisted: readings waiting in it when the head-end stops or is killed are
not published (they are in the head-end's database; counted as ``lost`` at a clean stop).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from .storage import Reading
from .stream import DUPLICATE_WINDOW, NatsTarget, encode_message, message_id, subject_for

__all__ = ["Publisher"]

log = logging.getLogger("c1222.headend.publish")

#: Readings held while NATS is unreachable (about 250 bytes each: ~25 MB).
MAX_OUTBOX = 100_000
#: Messages sent before waiting for their acknowledgements.
BATCH = 256
#: Seconds to wait for JetStream's acknowledgement of one message.
ACK_TIMEOUT = 5.0
#: Back-off between two connection attempts, seconds (doubling up to the maximum).
RETRY_MIN, RETRY_MAX = 0.2, 5.0
#: Seconds a clean stop spends sending what the outbox still holds.
STOP_FLUSH = 5.0


class Publisher:
    """Publish readings of one head-end to ``target``'s stream (``await start()``,
    ``publish(ap_title, readings)``, ``await stop()``); ``stats`` counts what happened."""

    def __init__(self, target: NatsTarget, *, max_outbox: int = MAX_OUTBOX,
                 duplicate_window: float = DUPLICATE_WINDOW) -> None:
        self.target = target
        self.max_outbox = max_outbox
        self.duplicate_window = duplicate_window
        self._outbox: collections.deque[tuple[str, str, bytes]] = collections.deque()
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._nc: Any = None
        self._js: Any = None
        self._down: str | None = None  # why NATS is unusable, while it is
        self._dropped_this_outage = False
        self.stats = {"published": 0, "duplicates": 0, "dropped": 0, "lost": 0,
                      "outbox": 0, "connects": 0, "failures": 0}

    @property
    def connected(self) -> bool:
        return self._js is not None and self._down is None

    async def start(self) -> None:
        """Start the sending task (connecting happens there: NATS down is not an error)."""
        self._task = asyncio.create_task(self._run(), name="c1222-publish")

    def publish(self, ap_title: str, readings: Sequence[Reading]) -> None:
        """Queue the readings of one node, committed to the local database; never waits."""
        subject = subject_for(self.target.prefix, ap_title)
        for reading in readings:
            self._outbox.append((subject, message_id(ap_title, reading),
                                 encode_message(ap_title, reading)))
        self._trim()
        self._wanted.set()

    def _trim(self) -> None:
        over = len(self._outbox) - self.max_outbox
        if over > 0:
            for _ in range(over):
                self._outbox.popleft()
            self.stats["dropped"] += over
            if not self._dropped_this_outage:
                self._dropped_this_outage = True
                log.warning("NATS outbox full (%d readings): dropping the oldest; they stay in "
                            "the head-end's database", self.max_outbox)
        self.stats["outbox"] = len(self._outbox)

    async def stop(self) -> None:
        """Send what the outbox holds (up to STOP_FLUSH seconds), then close; what is left
        is counted ``lost`` and said."""
        if self._task is not None:
            if self._outbox and self.connected:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._drained(), STOP_FLUSH)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._outbox:
            self.stats["lost"] += len(self._outbox)
            log.warning("%d readings were not published to %s (NATS unreachable); they are in "
                        "the head-end's database", len(self._outbox), self.target.display)
            self._outbox.clear()
        self.stats["outbox"] = 0
        await self._close()

    async def _drained(self) -> None:
        while self._outbox:
            await asyncio.sleep(0.05)

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
                    log.warning("NATS at %s is reachable again: publishing the %d readings held",
                                self.target.display, len(self._outbox))
                    self._down = None
                    self._dropped_this_outage = False
                delay = RETRY_MIN
                if not self._outbox:
                    self._wanted.clear()
                    await self._wanted.wait()
                await self._send_batch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect, never crash
                self.stats["failures"] += 1
                why = f"{type(exc).__name__}: {exc}".strip(": ")
                if self._down is None:
                    log.warning("cannot publish readings to NATS at %s (%s): holding them, up "
                                "to %d, and retrying", self.target.display, why,
                                self.max_outbox)
                self._down = why
                await self._close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _connect(self) -> None:
        import nats
        from nats.js.errors import BadRequestError

        async def quiet(exc: Exception) -> None:
            """nats-py logs every error with a traceback; we say it once, as a WARNING."""

        # We reconnect ourselves (with the outbox kept), so nats-py does not.
        # (max_reconnect_attempts=0 would retry the first connect for ever)
        nc = await nats.connect(self.target.servers, connect_timeout=2, allow_reconnect=False,
                                max_reconnect_attempts=1, reconnect_time_wait=0.1,
                                error_cb=quiet)
        try:
            js = nc.jetstream(timeout=ACK_TIMEOUT)
            try:
                await js.add_stream(name=self.target.stream, subjects=[self.target.subjects],
                                    duplicate_window=self.duplicate_window)
            except BadRequestError:
                # The stream exists with another configuration (an operator's limits): use it
                # as it is, provided it holds our subjects.
                info = await js.stream_info(self.target.stream)
                if self.target.subjects not in (info.config.subjects or []):
                    raise RuntimeError(f"stream {self.target.stream} exists without subjects "
                                       f"{self.target.subjects}") from None
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._nc, self._js = nc, js
        self.stats["connects"] += 1

    async def _send_batch(self) -> None:
        batch = [self._outbox[i] for i in range(min(BATCH, len(self._outbox)))]
        acks = await asyncio.gather(
            *(self._js.publish(subject, body, timeout=ACK_TIMEOUT, stream=self.target.stream,
                               headers={"Nats-Msg-Id": msg_id})
              for subject, msg_id, body in batch), return_exceptions=True)
        # Every acknowledged message leaves the outbox; the first failure ends the batch and
        # the rest is sent again (the server drops the copies of those it did store).
        sent = 0
        for ack in acks:
            if isinstance(ack, BaseException):
                break
            sent += 1
            self.stats["published"] += 1
            if getattr(ack, "duplicate", False):
                self.stats["duplicates"] += 1
        # The outbox may have been trimmed meanwhile (publish() from the loop): drop by identity.
        for item in batch[:sent]:
            if self._outbox and self._outbox[0] is item:
                self._outbox.popleft()
        self.stats["outbox"] = len(self._outbox)
        if sent < len(batch):
            failure = next(a for a in acks if isinstance(a, BaseException))
            raise failure if isinstance(failure, Exception) else RuntimeError(str(failure))
