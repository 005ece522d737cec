"""The pcap trace of an endpoint holds the first APDU sent on a connection it opened, sent the
moment connect() returns (the conformance run's first Identify request was missing)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from c1222.codec import samples
from c1222.transport.endpoint import Endpoint, Link, PcapTracer
from c1222.transport.pcap import read_capture

REQUEST = samples.messages()[0].encode()  # any whole APDU: the peer does not answer


def test_the_first_apdu_on_a_new_connection_is_traced(tmp_path: Path) -> None:
    async def main() -> None:
        async def ignore(data: bytes, link: Link) -> tuple[bytes | None, bool]:
            return None, False

        server = Endpoint(ignore)
        host, port = await server.listen("127.0.0.1", 0)
        tracer = PcapTracer(str(tmp_path / "t.pcap"))
        client = Endpoint(tracer=tracer)
        try:
            link = await client.connect(host, port)
            await link.send(REQUEST)  # at once, as a client's first request goes
            await link.send(REQUEST)
        finally:
            await client.close()
            await server.close()
            tracer.close()

    asyncio.run(main())
    sent = [c for c in read_capture(tmp_path / "t.pcap", ports=None) if c.ok]
    assert [c.data for c in sent] == [REQUEST, REQUEST]
