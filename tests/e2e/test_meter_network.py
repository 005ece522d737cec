"""`c1222 meter` on the network: it registers with a head-end (and keeps registered), can be
read over the connection it opened, and feeds the in-home display every second, riding out
either peer going away and coming back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from c1222.codec.ber import Uid
from c1222.codec.services import FullReadRequest, IdentifyResponse, IdentifyRequest
from c1222.crypto.nonces import RandomNonceSource, TimeIvSource
from c1222.headend.registry import Node, RegistrarServices
from c1222.ihd.node import DisplayServices
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig
from c1222.transport.client import Client, responses
from c1222.transport.endpoint import Endpoint, Link
from tests.e2e.procs import Running
from tests.e2e.test_meter import HEADEND, KEY_HEX, KEYS, METER
from tests.servers import free_port

IHD = Uid.parse("2.16.124.113620.1.22.0.123.8437.1")


class Peer:
    """An in-process C12.22 node (head-end or display) on a real loopback port."""

    def __init__(self, title: Uid, services: object, port: int = 0) -> None:
        self.responder = Responder(ResponderConfig(ap_title=title, keys=KEYS), services,
                                   RandomNonceSource())
        self.endpoint = Endpoint(self._on_request,
                                 on_link_closed=lambda link: self.responder.close(link.id))
        self.port = port

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        reply = self.responder.receive(data, link.id, time.time())
        return reply.data, reply.close

    async def start(self) -> int:
        _, self.port = await self.endpoint.listen("127.0.0.1", self.port)
        return self.port


async def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_registers_retries_reregisters_and_is_read_over_its_own_connection(tmp_path: Path
                                                                           ) -> None:
    port = free_port()
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend", f"127.0.0.1:{port}",
                     "--state-dir", str(tmp_path / "m"), "--speed", "10",
                     "--security-mode", "1", "--key", f"2:{KEY_HEX}"])
    meter_address = meter.address()

    async def scenario() -> None:
        registrations: list[Node] = []
        registrar = RegistrarServices(HEADEND, reg_period=30,
                                      on_registered=registrations.append)
        await asyncio.sleep(2.5)  # the head-end is down: the meter retries with back-off
        headend = Peer(HEADEND, registrar, port)
        await headend.start()
        try:
            await wait_until(lambda: registrations, 15, "the first registration")
            node = registrations[0]
            assert node.ap_title == str(METER)
            assert node.node_type == 0x20 and node.device_class == b"SIMU"
            assert node.address == f"{meter_address[0]}:{meter_address[1]}"
            assert node.serial_number == ".8437"
            # read the meter over the connection it opened to register
            link = headend.endpoint.find_link(node.peer)
            assert link is not None
            reader = Client(Requester(HEADEND, TimeIvSource(time.time), keys=KEYS,
                                      security_mode=1, key_id=2), headend.endpoint)
            got = responses(await reader.call([IdentifyRequest(), FullReadRequest(0)],
                                              called=METER, link=link, timeout=10))
            assert isinstance(got[0], IdentifyResponse) and got[1].response_code == 0
            # 30 s granted at 10x speed: re-registration within about 2.4 s
            await wait_until(lambda: len(registrations) >= 2, 10, "a re-registration")
            # the connection drops: the meter registers again
            link.close()
            count = len(registrations)
            await wait_until(lambda: len(registrations) > count, 10,
                             "registration after the connection dropped")
        finally:
            await headend.endpoint.close()

    try:
        asyncio.run(scenario())
    finally:
        assert meter.stop() == 0


def test_feeds_the_display_every_second_and_resumes_after_it_returns(tmp_path: Path) -> None:
    port = free_port()
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--ihd", f"127.0.0.1:{port}",
                     "--state-dir", str(tmp_path / "m"), "--speed", "30"])
    meter.address()

    async def scenario() -> None:
        samples: list = []
        display = Peer(IHD, DisplayServices(samples.append), port)
        await display.start()
        await wait_until(lambda: len(samples) >= 3, 10, "three samples")
        first, third = samples[0], samples[2]
        assert 200 < first.voltage < 240 and first.active_power >= 0
        assert third.time > first.time  # the meter's (simulated) clock moves on
        assert third.energy_wh >= first.energy_wh
        await display.endpoint.close()  # the display goes away ...
        await asyncio.sleep(2.5)
        count = len(samples)
        display = Peer(IHD, DisplayServices(samples.append), port)  # ... and comes back
        await display.start()  # empty: it needs the context tables again
        try:
            await wait_until(lambda: len(samples) >= count + 2, 10, "the feed to resume")
        finally:
            await display.endpoint.close()

    try:
        asyncio.run(scenario())
    finally:
        assert meter.stop() == 0
