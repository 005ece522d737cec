"""The once-a-second feed of the in-home display over the home network, in C12.22.

Each second the meter writes its present values (Table 28), current registers (Table 23) and
clock (Table 52, the simulated time) to the display with Full Write services in one APDU (a
notification write). Those tables only make sense with the meter's Table 0 (formats), 11/12
(units), 16 (sources), 21 (dimensions), 22 and 27 (which source each value is), so the first
APDU on every new connection writes those context tables first; a display that answers anything but OK (it restarted and lost them) gets
them again with the next APDU. A display that is away costs one failed connect per second; the
feed resumes by itself when it comes back.

The customer notice the head-end wrote (MT2, :mod:`c1222.tables.notice`) rides on the same
APDU: written with the context (a display that restarted gets it again), and whenever it
changed since the display last answered OK to it; a display that refuses it IAR or SNS (one
that does not keep notices) is not sent the same notice again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from c1222.codec.ber import Uid
from c1222.codec.services import FullWriteRequest, TableData
from c1222.crypto.nonces import TimeIvSource
from c1222.errors import C1222Error
from c1222.tables.notice import NOTICE_TABLE
from c1222.tables.readings import CONTEXT_TABLES
from c1222.session.requester import Requester
from c1222.transport.client import Client, responses

if TYPE_CHECKING:
    from c1222.meter.node import Meter

log = logging.getLogger("c1222.meter.han")

#: Tables the display needs to decode the live ones (see the module docstring).
LIVE_TABLES = (52, 23, 28)  # 28 last: the display samples on it
PERIOD = 1.0
#: The display's default AP title (``c1222.ihd.node.IHD_AP_TITLE``; a test checks they agree).
#: Every feed message carries a called AP title: the EAX' MAC covers A2 (c1222.md 2.2), and a
#: verifier such as Wireshark cannot check a MAC without it.
DISPLAY_AP_TITLE = "2.16.124.113620.1.22.0.123.8437.1"
TIMEOUT = 2.0
#: Answers to the notice write that sending it again would not change: IAR (the display does
#: not keep it, or it does not decode there) and SNS. ONP (no context yet) is tried again.
REFUSED_FOR_GOOD = frozenset({0x02, 0x05})


class HanFeed:
    """Pushes the live tables to the display every second (real time)."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        cfg = meter.config
        self.called = Uid.parse(cfg.ihd_ap_title or DISPLAY_AP_TITLE)
        requester = Requester(meter.ap_title, TimeIvSource(meter.wall), keys=cfg.keys,
                              security_mode=cfg.security_mode, key_id=cfg.key_id)
        self.client = Client(requester, meter.endpoint, clock=meter.wall)
        self.sent = 0
        self.failed = 0
        self._need_context = True
        self._notice_done: bytes | None = None  # the notice the display last took (or refused)
        self._notice_sending: bytes | None = None

    def services(self) -> list[FullWriteRequest]:
        store = self.meter.store
        tables = CONTEXT_TABLES if self._need_context else ()
        notice = store.get_bytes(NOTICE_TABLE) if NOTICE_TABLE in store else None
        self._notice_sending = None
        if notice is not None and (self._need_context or notice != self._notice_done):
            self._notice_sending = notice
            tables += (NOTICE_TABLE,)
        return [FullWriteRequest(n, TableData(store.get_bytes(n))) for n in tables + LIVE_TABLES]

    async def send_once(self) -> bool:
        host, port = self.meter.config.ihd  # type: ignore[misc]
        link = self.client.link
        if link is None or link.closed:
            link = await self.client.connect(host, port, timeout=TIMEOUT)
            self._need_context = True
        services = self.services()
        apdu = await self.client.call(services, called=self.called, timeout=TIMEOUT)
        return self.answered(services, [r.response_code for r in responses(apdu)])

    def answered(self, services: list[FullWriteRequest], codes: list[int]) -> bool:
        """Take the display's answer to :meth:`services`; True when every table but the
        notice was taken (else the context goes again with the next APDU)."""
        by_table = {s.table_id: code for s, code in zip(services, codes)}
        notice = by_table.pop(NOTICE_TABLE, None)
        ok = len(by_table) == len(services) - (notice is not None) and all(
            code == 0 for code in by_table.values())
        if notice is not None and (notice == 0 or notice in REFUSED_FOR_GOOD):
            self._notice_done = self._notice_sending
        self._need_context = not ok
        return ok

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                if await self.send_once():
                    self.sent += 1
                else:
                    self.failed += 1
            except (C1222Error, OSError) as exc:
                self.failed += 1
                log.debug("display feed: %s", exc)
                if self.client.link is not None:
                    self.client.link.close()
            next_at = max(next_at + PERIOD, loop.time())
            await asyncio.sleep(next_at - loop.time())
