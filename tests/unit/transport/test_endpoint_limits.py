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


# ------------------------------------------------ connection slots (issue 15 finding 9)

PING = bytes([0x60, 0x02, 0xA8, 0x00])  # a whole (tiny) APDU
PONG = bytes([0x60, 0x02, 0xA8, 0x01])


async def _answering(limits: EndpointLimits) -> tuple[Endpoint, tuple[str, int]]:
    async def on_request(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        return PONG, False

    endpoint = Endpoint(on_request, limits_=limits)
    return endpoint, await endpoint.listen("127.0.0.1", 0)


async def _open(address: tuple[str, int], source: str):
    return await asyncio.open_connection(*address, local_addr=(source, 0))


async def _closed_by_peer(reader: asyncio.StreamReader, wait: float = 1.0) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), wait) == b""
    except asyncio.TimeoutError:
        return False
    except ConnectionError:
        return True


async def _served(address: tuple[str, int], source: str) -> bool:
    reader, writer = await _open(address, source)
    try:
        writer.write(PING)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(PONG)), 5) == PONG
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    finally:
        writer.close()


def test_one_address_gets_at_most_max_per_address_connections() -> None:
    async def main() -> None:
        endpoint, address = await _answering(EndpointLimits(max_per_address=3))
        try:
            held = [await _open(address, "127.0.0.2") for _ in range(5)]
            closed = [await _closed_by_peer(r, 0.3) for r, _ in held]
            assert closed == [False, False, False, True, True]
            assert endpoint.stats["connections_refused"] == 2
            assert await _served(address, "127.0.0.3")  # another address is not shut out
            for _, w in held[:3]:
                w.close()
            await asyncio.sleep(0.2)
            assert await _served(address, "127.0.0.2")  # slots come back when closed
        finally:
            await endpoint.close()
    asyncio.run(main())


def test_when_every_slot_is_held_the_longest_idle_connection_makes_room() -> None:
    """Before: with every slot held by quiet peers, a newcomer was closed at once."""
    async def main() -> None:
        endpoint, address = await _answering(EndpointLimits(max_connections=4))
        try:
            held = []
            for i in range(4):
                held.append(await _open(address, f"127.0.0.{i + 2}"))
                await asyncio.sleep(0.05)
            # The first peer speaks now, so the second is the one idle the longest.
            held[0][1].write(PING)
            await held[0][0].readexactly(len(PONG))
            assert await _served(address, "127.0.0.9")
            closed = [await _closed_by_peer(r, 0.3) for r, _ in held]
            assert closed == [False, True, False, False]
            assert endpoint.stats["connections_evicted"] == 1
            assert endpoint.connections <= 4
        finally:
            await endpoint.close()
    asyncio.run(main())


def test_a_connection_in_the_middle_of_an_apdu_is_never_evicted() -> None:
    async def main() -> None:
        endpoint, address = await _answering(EndpointLimits(max_connections=2))
        try:
            first = await _open(address, "127.0.0.2")
            first[1].write(PING[:3])  # half an APDU: the idlest, but mid-message
            await first[1].drain()
            await asyncio.sleep(0.1)
            second = await _open(address, "127.0.0.3")
            await asyncio.sleep(0.1)
            assert await _served(address, "127.0.0.4")  # the quiet second one made room
            assert not await _closed_by_peer(first[0], 0.3)
            assert await _closed_by_peer(second[0], 0.3)
            # Both slots mid-message: the newcomer is refused, nobody is cut off.
            third = await _open(address, "127.0.0.5")
            third[1].write(PING[:3])
            await third[1].drain()
            await asyncio.sleep(0.1)
            late = await _open(address, "127.0.0.6")
            assert await _closed_by_peer(late[0], 0.5)
            assert not await _closed_by_peer(first[0], 0.2)
            first[1].write(PING[3:])  # and the held message still completes
            assert await first[0].readexactly(len(PONG)) == PONG
        finally:
            await endpoint.close()
    asyncio.run(main())
