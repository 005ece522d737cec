"""The in-home display as one process: its C12.22 node and its web page, on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from c1222.crypto.keys import KeyTable
from c1222.errors import C1222Error, ConfigurationError
from c1222.crypto.nonces import TimeIvSource
from c1222.ihd.history import History
from c1222.ihd.node import DisplayServices, ihd_title
from c1222.ihd.notices import NoticeBoard
from c1222.session.responder import Responder, ResponderConfig
from c1222.transport.endpoint import Address, Endpoint, Link

log = logging.getLogger("c1222.ihd")


class Display:
    """``await start()`` returns the C12.22 and HTTP addresses; ``await stop()`` ends both."""

    def __init__(self, *, listen: Address, http: Address, state_dir: Path,
                 ap_title: str | None = None, keys: KeyTable | None = None,
                 security_mode: int = 0, tz: str = "Asia/Seoul",
                 meter_ap_title: str | None = None) -> None:
        self.listen_at = listen
        self.http_at = http
        try:  # before anything is opened: a bad title is a usage error, not a traceback
            title = ihd_title(ap_title)
            self.notices = NoticeBoard(state_dir)
            self.services = DisplayServices(self._sample, meter_ap_title,
                                            on_notice=self.notices.set_notice)
        except C1222Error as exc:
            raise ConfigurationError(f"AP title (dotted, e.g. 2.16.124.113620.1.22.0.123.8437)"
                                     f": {exc}") from None
        self.history = History(state_dir, tz=tz)
        self._anchor: tuple[float, float] | None = None  # (meter time, wall time) of the last
        self.responder = Responder(
            ResponderConfig(ap_title=title, keys=keys or KeyTable(),
                            minimum_mode=security_mode),
            self.services, TimeIvSource(time.time))
        self.endpoint = Endpoint(self._on_request,
                                 on_link_closed=lambda link: self.responder.close(link.id))
        self._server = None
        self._task: asyncio.Task[None] | None = None

    def _sample(self, sample: object) -> None:
        self._anchor = (sample.time, time.time())  # type: ignore[attr-defined]
        self.history.add(sample)  # type: ignore[arg-type]

    def meter_clock(self) -> float:
        """"Now" on the meter's clock, which runs ahead of ours in a sped-up simulation:
        the last sample's time plus the wall time since it came (so windows and the billed
        month follow the meter, and a silent meter still ages)."""
        if self._anchor is None:
            return time.time()
        meter_time, wall = self._anchor
        return meter_time + (time.time() - wall)

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        reply = self.responder.receive(data, link.id, time.time())
        return reply.data, reply.close

    async def start(self) -> tuple[Address, Address]:
        import uvicorn

        from c1222.ihd.web import create_app
        from c1222.transport.http import uvicorn_config

        address = await self.endpoint.listen(*self.listen_at)
        app = create_app(self.history, clock=self.meter_clock, notices=self.notices)
        config = uvicorn_config(app, self.http_at[0], self.http_at[1], lifespan="on")
        self._server = uvicorn.Server(config)
        # Our event loop handles Ctrl-C and stops the server itself.
        self._server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
                raise OSError("the web server stopped at start")
            await asyncio.sleep(0.02)
        sock = self._server.servers[0].sockets[0].getsockname()
        return address, (sock[0], sock[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        await self.endpoint.close()
        close = getattr(self.history, "close", None)
        if close is not None:
            close()
