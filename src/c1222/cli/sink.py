"""`c1222 sink`: a durable NATS JetStream consumer writing the head-ends' readings stream into a
database exactly once (docs/storage.md, "Scaling out")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import click

from c1222.cli.lifecycle import run_until_interrupted
from c1222.cli.params import DatabaseUrlType, NatsUrlType, seconds


@click.command()
@click.option("--nats", "target", type=NatsUrlType(), required=True,
              help="the stream to consume: nats://HOST:PORT[?stream=NAME&prefix=A.B] "
              "(as the head-end's --publish)")
@click.option("--db", type=DatabaseUrlType(), required=True,
              help="where the readings go: postgresql://USER@HOST/DB (or sqlite:///FILE)")
@click.option("--durable", default="c1222-sink", show_default=True,
              help="the durable consumer's name (sinks with one name share the work)")
@click.option("--batch", type=click.IntRange(1, 10_000), default=500, show_default=True,
              help="messages per fetch and per database transaction")
@click.option("--ack-wait", type=seconds(0.5, maximum=3600.0), default=30.0, show_default=True,
              help="seconds before JetStream redelivers a message not acknowledged")
@click.option("-v", "--verbose", count=True, help="-v: log each batch")
def sink(target: Any, db: str, durable: str, batch: int, ack_wait: float, verbose: int) -> None:
    """Consume the readings stream and store each reading exactly once.

    Each batch is stored in one transaction (a reading already stored is skipped), then
    acknowledged; a malformed message is skipped and counted. Ctrl-C stops it with a summary.
    """
    import re

    from c1222.headend.sink import SinkConfig

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", durable):
        raise click.BadParameter("1-64 letters, digits, - or _", param_hint="'--durable'")
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_run(target, db, SinkConfig(durable=durable, batch=batch, ack_wait=ack_wait)))


async def _run(target: Any, db: str, config: Any) -> None:
    from c1222.errors import ConfigurationError
    from c1222.headend.sink import Sink
    from c1222.headend.storage import open_async_storage

    node: Sink | None = None
    running: asyncio.Task[None] | None = None

    async def start() -> list[str]:
        nonlocal node, running
        try:
            storage = await open_async_storage(db)
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), param_hint="'--db'") from None
        node = Sink(target, storage, config)
        try:
            await node.start()
        except Exception as exc:  # noqa: BLE001 - whatever nats-py raises, one line
            await storage.aclose()
            raise click.ClickException(
                f"cannot consume {target.stream} at {target.display}: "
                f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        running = asyncio.create_task(node.run())
        return [f"sink consuming {target.subjects} of stream {target.stream} at "
                f"{target.display} as {config.durable} into {storage.url}"]

    async def stop() -> None:
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running
        if node is not None:
            await node.stop()
            await node.storage.aclose()
            click.echo(node.summary())

    await run_until_interrupted("sink", start, stop)
