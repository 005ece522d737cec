"""Endpoint limits against hostile peers, on real loopback sockets with short time-outs."""

from __future__ import annotations

import asyncio
import time

from c1222.transport.endpoint import Endpoint, EndpointLimits, Link


async def _serve(limits: EndpointLimits) -> tuple[Endpoint, list[bytes], tuple[str, int]]:
    got: list[bytes] = []

    async def on_request(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        got.append(data)
        return None, False

    endpoint = Endpoint(on_request, limits_=limits)
    address = await endpoint.listen("127.0.0.1", 0)
    return endpoint, got, address


async def _drip(address: tuple[str, int], data: bytes, interval: float) -> float | None:
    """Send ``data`` a byte every ``interval`` s; seconds until the endpoint closed, or None."""
    reader, writer = await asyncio.open_connection(*address)
    start = time.monotonic()
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), interval) == b"":
                    return time.monotonic() - start
            except asyncio.TimeoutError:
                pass
        return None
    except ConnectionError:
        return time.monotonic() - start
    finally:
        writer.close()


def test_a_drip_is_cut_off_message_timeout_after_its_first_byte() -> None:
    async def main() -> None:
        endpoint, got, address = await _serve(EndpointLimits(message_timeout=1.0,
                                                             idle_timeout=30.0))
        try:
            closed = await _drip(address, bytes([0x60, 0x08]) + bytes(8), 0.3)
            assert closed is not None and 0.9 < closed < 1.6, closed
            assert got == [] and endpoint.stats["timeouts"] == 1
        finally:
            await endpoint.close()
    asyncio.run(main())


def test_whole_messages_in_time_keep_the_connection() -> None:
    async def main() -> None:
        endpoint, got, address = await _serve(EndpointLimits(message_timeout=1.0,
                                                             idle_timeout=30.0))
        try:
            apdu = bytes([0x60, 0x02, 0xA8, 0x00])
            # 4 whole APDUs, each dripped within its own time-out: 2.4 s in all
            assert await _drip(address, apdu * 4, 0.15) is None
            assert got == [apdu] * 4
        finally:
            await endpoint.close()
    asyncio.run(main())
