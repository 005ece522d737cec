"""The meter registers with its head-end (digest 7.2) and stays registered.

On start: connect to the head-end, send Register (node type end device, device class, AP title,
serial number, native address, registration period), and keep the connection open so the
head-end can read the meter over it. Re-register before the period the head-end granted runs
out (a 5-minute margin as ITR does, or a fifth of short periods), when the connection drops, and
after a Deregister. While the head-end is unreachable, retry with exponential back-off
(1 s doubling to 60 s, with jitter so a fleet does not retry in step).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from c1222.codec.ber import Uid
from c1222.codec.services import RegisterRequest, RegisterResponse
from c1222.codes import NodeType
from c1222.crypto.nonces import TimeIvSource
from c1222.errors import C1222Error
from c1222.session.requester import Requester
from c1222.transport.client import Client, responses
from c1222.transport.endpoint import Address

if TYPE_CHECKING:
    from c1222.meter.node import Meter

log = logging.getLogger("c1222.meter.registration")

#: connection-type bits (digest 7.2): connectionless and connection mode, both accepted.
CONNECTION_TYPE = 0xF0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
RESPONSE_TIMEOUT = 10.0


def serial_number_uid(serial: str) -> Uid:
    """The serial number as a UID: one relative arc for a numeric serial, else one arc per
    byte (digest 7.2 carries the ESN as a UID without saying how it is formed)."""
    if serial.isdigit():
        return Uid.parse(f".{int(serial)}")
    return Uid.parse("." + ".".join(str(b) for b in serial.encode("latin-1")))


class Registration:
    """Keeps one meter registered. ``registered`` is set while a registration is in force."""

    def __init__(self, meter: Meter, listening: Address) -> None:
        self.meter = meter
        self.listening = listening
        config = meter.config
        self.headend_title = Uid.parse(config.headend_ap_title)
        self.requester = Requester(meter.ap_title, TimeIvSource(meter.wall), keys=config.keys,
                                   security_mode=config.security_mode, key_id=config.key_id)
        self.client = Client(self.requester, meter.endpoint, clock=meter.wall)
        self.registered = asyncio.Event()
        self.response: RegisterResponse | None = None
        self.rng = random.Random()

    def request(self) -> RegisterRequest:
        cfg = self.meter.config
        host, port = self.listening
        return RegisterRequest(
            node_type=NodeType.END_DEVICE, connection_type=CONNECTION_TYPE,
            device_class=self.meter.services.device_class,
            ap_title=self.meter.ap_title,
            serial_number=serial_number_uid(cfg.serial_number),
            # Native address: "host:port" in ASCII [UNVERIFIED: RFC 6142's binary form could
            # not be read]; the head-end reaches the meter there when no connection is open.
            native_address=f"{host}:{port}".encode("ascii"),
            registration_period=cfg.registration_period)

    async def register_once(self) -> RegisterResponse:
        host, port = self.meter.config.headend  # type: ignore[misc]
        link = self.client.link
        if link is None or link.closed:
            link = await self.client.connect(host, port, self.meter.config.headend_transport)
        apdu = await self.client.call([self.request()], called=self.headend_title,
                                      timeout=RESPONSE_TIMEOUT)
        found = responses(apdu)
        if not found or not isinstance(found[0], RegisterResponse):
            code = found[0].response_code if found else None
            raise C1222Error(f"registration refused (response code {code})")
        return found[0]

    async def run(self) -> None:
        backoff = BACKOFF_FIRST
        assert self.meter.deregistered is not None
        while True:
            try:
                self.response = await self.register_once()
            except (C1222Error, OSError) as exc:
                self.registered.clear()
                wait = backoff * (0.5 + self.rng.random())
                log.info("registration with %s failed (%s); retrying in %.1f s",
                         self.meter.config.headend, exc, wait)
                await asyncio.sleep(wait)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            backoff = BACKOFF_FIRST
            self.registered.set()
            log.info("registered with %s", self.meter.config.headend)
            await self._hold(self.response.reg_period)
            self.registered.clear()

    async def _hold(self, period: int) -> None:
        """Wait until re-registration is due: the period (minus its margin) runs out, the
        connection closes, or the head-end deregisters us."""
        deregistered = self.meter.deregistered
        assert deregistered is not None
        deregistered.clear()
        speed = self.meter.config.speed
        due = None
        if period > 0:
            margin = 300 if period > 1500 else period / 5
            due = (period - margin) / speed  # the period runs on the meter's simulated clock
        loop = asyncio.get_running_loop()
        deadline = None if due is None else loop.time() + due
        while True:
            link = self.client.link
            if link is None or link.closed or deregistered.is_set():
                return
            if deadline is not None and loop.time() >= deadline:
                return
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.client.close()
