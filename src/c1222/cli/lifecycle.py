"""Running a node until Ctrl-C (or SIGTERM), the same way for every long-running command."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import click

#: Seconds a shutdown may take before the process ends anyway.
STOP_TIMEOUT = 15.0


async def run_until_interrupted(name: str, start: Callable[[], Awaitable[list[str]]],
                                stop: Callable[[], Awaitable[None]]) -> None:
    """Start, print the lines ``start`` returns (the addresses), wait for Ctrl-C or SIGTERM,
    then stop. A second Ctrl-C, or a stop that takes over STOP_TIMEOUT, ends the process."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    try:
        lines = await start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen: {exc.strerror or exc}") from None
    for line in lines:
        click.echo(line)
    try:
        await interrupted.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: os._exit(130))
        try:
            await asyncio.wait_for(stop(), STOP_TIMEOUT)
        except asyncio.TimeoutError:
            click.echo(f"{name}: shutdown timed out", err=True)
        click.echo(f"{name} stopped")
