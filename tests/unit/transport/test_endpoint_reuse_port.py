"""Endpoints sharing one port (``listen(reuse_port=True)``, head-end workers): both are
listening on TCP and UDP, and a request either one starts over UDP gets its answer back,
although the kernel hands every datagram of the shared port's flow to one of them."""

from __future__ import annotations

import asyncio

from c1222.codec import acse
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import ReadResponse, TableData
from c1222.transport.endpoint import Endpoint, Link

HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")
METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")


def apdu(invocation: int, answers: int | None = None) -> bytes:
    return Apdu(epsem=Epsem(services=(ReadResponse(table_data=TableData(b"x")),)),
                calling_ap_invocation_id=invocation, called_ap_invocation_id=answers,
                called_ap_title=METER, calling_ap_title=HEADEND).encode()


def test_each_worker_gets_the_answers_to_its_own_udp_requests() -> None:
    async def main() -> None:
        async def answer(data: bytes, link: Link) -> tuple[bytes | None, bool]:
            asked = acse.decode(data).calling_ap_invocation_id
            return apdu(1000 + asked, answers=asked), False

        async with Endpoint(answer) as meter, Endpoint() as one, Endpoint() as two:
            host, port = await one.listen("127.0.0.1", 0, reuse_port=True)
            assert await two.listen("127.0.0.1", port, reuse_port=True) == (host, port)
            meter_host, meter_port = await meter.listen("127.0.0.1", 0)
            for worker, invocation in ((one, 1), (two, 2), (one, 3), (two, 4)):
                link = await worker.connect(meter_host, meter_port, "udp", 5)
                assert link.local != (host, port)  # its own socket, not the shared port
                got = await worker.exchange(link, apdu(invocation), invocation,
                                            timeout=10, retries=0)
                assert acse.decode(got).called_ap_invocation_id == invocation
            # both really listen on the shared port: a TCP connection to it is accepted
            for _ in range(4):
                link = await meter.connect(host, port, "tcp", 5)
                link.close()

    asyncio.run(main())
