"""The relay in-process on loopback (relay/node.py): its answers when it cannot deliver — NETT
after --forward-timeout, NETR when the next hop's association drops, BSY beyond max_pending —
a UDP requester's resend forwarded again (not taken for a loop), and its multicast titles."""

from __future__ import annotations

import asyncio
import time

from c1222.codec.ber import Uid
from c1222.codec.services import (
    ErrorResponse, FullReadRequest, IdentifyRequest, IdentifyResponse, RegisterRequest,
    RegisterResponse,
)
from c1222.codes import ResponseCode
from c1222.crypto.nonces import RandomNonceSource
from c1222.relay.node import Relay, RelayConfig
from c1222.session.registrar import encode_native
from c1222.session.requester import Requester
from c1222.transport.client import Client, responses
from c1222.transport.endpoint import Endpoint, Link

MASTER = "2.16.124.113620.1.22.0.123.1"
SILENT = Uid.parse("2.16.124.113620.1.22.0.123.700")
HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")


class Silent:
    """A node that registers with the master and then never answers what it is sent."""

    def __init__(self) -> None:
        self.heard: list[bytes] = []
        self.endpoint = Endpoint(self._on_request)
        self.client = Client(Requester(SILENT, RandomNonceSource()), self.endpoint)

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        self.heard.append(data)
        return None, False

    async def register(self, master: tuple[str, int]) -> Link:
        link = await self.client.connect(*master)
        apdu = await self.client.call([RegisterRequest(
            node_type=0x20, connection_type=0xF0, device_class=b"TEST", ap_title=SILENT,
            serial_number=Uid.parse(".7"), native_address=encode_native("127.0.0.1", 9),
            registration_period=600)], called=Uid.parse(MASTER))
        assert isinstance(responses(apdu)[0], RegisterResponse)
        return link


async def _read(client: Client, link: Link | None = None, timeout: float = 10.0) -> int:
    apdu = await client.call([FullReadRequest(1)], called=SILENT, timeout=timeout, link=link)
    answer = responses(apdu)[0]
    assert isinstance(answer, ErrorResponse), answer
    return answer.response_code


def test_nett_netr_and_bsy_from_the_relay() -> None:
    async def scenario() -> None:
        master = Relay(RelayConfig(ap_title=MASTER, listen=("127.0.0.1", 0), master=True,
                                   forward_timeout=0.5, max_pending=1))
        address = await master.start()
        silent = Silent()
        node_link = await silent.register(address)
        requester = Client(Requester(HEADEND, RandomNonceSource()))
        await requester.connect(*address)
        try:
            assert await _read(requester) == ResponseCode.NETT
            assert len(silent.heard) == 1  # it did go out
            # one request pending fills max_pending=1: the next is BSY at once
            first = asyncio.ensure_future(_read(requester))
            await _until(lambda: len(silent.heard) == 2)
            assert await _read(requester) == ResponseCode.BSY
            assert await first == ResponseCode.NETT
            # the node's association drops while a request waits: NETR
            pending = asyncio.ensure_future(_read(requester))
            await _until(lambda: len(silent.heard) == 3)
            node_link.close()
            assert await pending == ResponseCode.NETR
            stats = master.statistics()
            assert stats["nett_sent"] == 2 and stats["busy_sent"] == 1
            assert stats["netr_sent"] >= 1
        finally:
            await requester.close()
            await silent.endpoint.close()
            await master.stop()

    asyncio.run(scenario())


def test_a_udp_resend_is_forwarded_again_not_refused_as_a_loop() -> None:
    async def scenario() -> None:
        master = Relay(RelayConfig(ap_title=MASTER, listen=("127.0.0.1", 0), master=True,
                                   forward_timeout=4.5))
        address = await master.start()
        silent = Silent()
        await silent.register(address)
        requester = Client(Requester(HEADEND, RandomNonceSource()))
        link = await requester.connect(*address, transport="udp")
        try:
            # the endpoint resends the identical datagram at 2 s and 4 s; NETT comes at 4.5 s
            code = await _read(requester, link, timeout=6.0)
            assert code == ResponseCode.NETT
            assert len(silent.heard) == 3 and len(set(silent.heard)) == 1
            assert master.statistics()["loops_refused"] == 0
        finally:
            await requester.close()
            await silent.endpoint.close()
            await master.stop()

    asyncio.run(scenario())


async def _until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)



def test_a_multicast_title_is_answered_by_the_relay() -> None:
    async def scenario() -> None:
        group = Uid.parse("2.16.124.113620.1.22.0.123.800")
        master = Relay(RelayConfig(ap_title=MASTER, listen=("127.0.0.1", 0), master=True,
                                   multicast=(str(group),)))
        address = await master.start()
        client = Client(Requester(HEADEND, RandomNonceSource()))
        await client.connect(*address)
        try:
            apdu = await client.call([IdentifyRequest()], called=group)
            assert isinstance(responses(apdu)[0], IdentifyResponse)
            assert apdu.calling_ap_title == Uid.parse(MASTER)
            other = await client.call([IdentifyRequest()], called=Uid.parse(f"{MASTER}.9"))
            assert responses(other)[0].response_code == ResponseCode.UAT  # routed nowhere
        finally:
            await client.close()
            await master.stop()

    asyncio.run(scenario())


def test_table_64_crosses_relays_whose_links_carry_512_byte_apdus() -> None:
    """About 40 KB of load profile, mode 2, through a master relay and a relay that re-segment
    on every link (the transport reassembles before the relay routes): whole and verified."""
    from c1222.codec.services import ReadResponse, SecurityRequest
    from c1222.crypto.keys import KeyTable
    from c1222.crypto.nonces import TimeIvSource
    from c1222.meter.config import MeterConfig
    from c1222.meter.node import Meter
    from c1222.transport.endpoint import EndpointLimits

    keys = KeyTable.from_cli(["2:000102030405060708090A0B0C0D0E0F"])
    small = {"segment_size": 512, "max_apdu_size": 65535, "security_mode": 2, "keys": keys}

    async def scenario() -> None:
        master = Relay(RelayConfig(ap_title=MASTER, listen=("127.0.0.1", 0), master=True,
                                   reg_delay=0, **small))
        relay = Relay(RelayConfig(ap_title="2.16.124.113620.1.22.0.123.2",
                                  listen=("127.0.0.1", 0), upstream=await master.start(),
                                  **small))
        meter = Meter(MeterConfig(listen=("127.0.0.1", 0), relay=await relay.start(),
                                  request_title=True, **small))
        await meter.start()
        client = Client(Requester(HEADEND, TimeIvSource(time.time), keys=keys,
                                  security_mode=2, key_id=2),
                        Endpoint(limits_=EndpointLimits(segment_size=512, max_apdu_size=65535)))
        try:
            await asyncio.wait_for(meter.registration.registered.wait(), 20)
            await client.connect(*master.address)  # type: ignore[misc]
            apdu = await client.call([SecurityRequest(b"PASSWORD".ljust(20), 2),
                                      FullReadRequest(64)], called=meter.ap_title, timeout=30)
            read = responses(apdu)[-1]
            assert isinstance(read, ReadResponse) and len(read.table_data.data) > 30_000
            # (its content moves each load-profile interval; its size does not)
            assert len(read.table_data.data) == len(meter.store.get_bytes(64))
            for node in (master, relay):  # every hop took segments in and sent segments out
                assert node.endpoint.stats["segments_received"] > 60
                assert node.endpoint.stats["segments_sent"] > 60
        finally:
            await client.close()
            await meter.stop()
            await relay.stop()
            await master.stop()

    asyncio.run(scenario())
