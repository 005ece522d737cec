"""The in-home display as one process: its C12.22 node and its web page, on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from c1222.crypto.keys import KeyTable
from c1222.errors import C1222Error, ConfigurationError
from c1222.crypto.nonces import TimeIvSource
from c1222.ihd.history import History
from c1222.ihd.metrics import MqttCollector, NodeCollector
from c1222.ihd.mqtt import HomeAssistant, MqttSettings, device, node_id_of
from c1222.ihd.node import DisplayServices, ihd_title
from c1222.ihd.notices import NoticeBoard
from c1222.session.responder import Responder, ResponderConfig
from c1222.transport.endpoint import Address, Endpoint, Link
from c1222.transport.metrics import EndpointCollector

log = logging.getLogger("c1222.ihd")


class Display:
    """``await start()`` returns the C12.22 and HTTP addresses; ``await stop()`` ends both."""

    def __init__(self, *, listen: Address, http: Address, state_dir: Path,
                 ap_title: str | None = None, keys: KeyTable | None = None,
                 security_mode: int = 0, tz: str = "Asia/Seoul",
                 meter_ap_title: str | None = None, mqtt: MqttSettings | None = None) -> None:
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
        self.page: str | None = None  # the page's URL, once started
        self.mqtt: HomeAssistant | None = None
        if mqtt is not None:
            self.mqtt = HomeAssistant(mqtt, mqtt.node_id or node_id_of(self.services.meter),
                                      summary=self._summary, dev=self._device)
        self._maker: tuple[bytes, str | None] | None = None  # (Table 0, its DEVICE_CLASS)

    def _summary(self) -> tuple[dict[str, Any], str | None]:
        """The summary body (no days) and the start of its billing month, for MQTT."""
        from c1222.ihd.web import summary

        now = self.meter_clock()
        start = self.history.local_time(now).replace(day=1, hour=0, minute=0, second=0,
                                                     microsecond=0)
        return summary(self.history, now, days=False), start.isoformat()

    def _device(self) -> dict[str, Any]:
        """The meter as a Home Assistant device; its maker from Table 0's DEVICE_CLASS."""
        table0 = self.services.tables.get(0)
        if table0 is not None and (self._maker is None or self._maker[0] != table0):
            self._maker = (table0, _device_class(table0))
        assert self.mqtt is not None
        return device(self.services.meter, self.mqtt.node_id,
                      manufacturer=None if self._maker is None else self._maker[1],
                      page=self.page)

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
        collectors = [NodeCollector(self.services), MqttCollector(self.mqtt),
                      EndpointCollector(self.endpoint, "c1222_ihd")]
        app = create_app(self.history, clock=self.meter_clock, collectors=collectors,
                         notices=self.notices)
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
        if sock[0] not in ("0.0.0.0", "::"):  # a wildcard is no address to link to
            host = f"[{sock[0]}]" if ":" in sock[0] else sock[0]
            self.page = f"http://{host}:{sock[1]}/"
        if self.mqtt is not None:
            self.mqtt.start()  # the display works with or without the broker
        return address, (sock[0], sock[1])

    async def stop(self) -> None:
        if self.mqtt is not None:  # first: "offline" while the display still says so truly
            await self.mqtt.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        await self.endpoint.close()
        close = getattr(self.history, "close", None)
        if close is not None:
            close()


def _device_class(table0: bytes) -> str | None:
    """Table 0's DEVICE_CLASS as text when it is printable ASCII (``SIMU``), else None."""
    from c1222.tables.registry import decode_table

    try:
        raw = decode_table(0, table0).device_class
    except (C1222Error, LookupError, ValueError):
        return None
    text = bytes(raw).decode("ascii", "replace").strip("\0 ")
    return text if text and text.isprintable() and text.isascii() else None
