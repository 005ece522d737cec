"""The TCP link as a protocol (issue 11): requests served in the read that brought them when the
handler is a plain function, in a task with the link paused when it is a coroutine; either way
in order, one answer per request; a peer that does not read its answers is not read (bounded);
one timer per link still closes an idle link. Real loopback sockets, generous time-outs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from c1222.codec.framing import StreamFramer
from c1222.transport.endpoint import Endpoint, EndpointLimits, Link


def _apdu(n: int, size: int = 0) -> bytes:
    """A whole APDU carrying ``n`` (and ``size`` bytes of padding) that the handler echoes."""
    body = bytes([0xA8, 0x02]) + n.to_bytes(2, "big") + bytes(size)
    assert len(body) < 0x80 or size
    if len(body) < 0x80:
        return bytes([0x60, len(body)]) + body
    return bytes([0x60, 0x82]) + len(body).to_bytes(2, "big") + body


def _number(apdu: bytes) -> int:
    start = 2 if apdu[1] < 0x80 else 4
    return int.from_bytes(apdu[start + 2:start + 4], "big")


async def _answers(reader: asyncio.StreamReader, count: int, timeout: float = 20.0
                   ) -> list[bytes]:
    framer = StreamFramer(1 << 20)
    out: list[bytes] = []

    async def read() -> None:
        while len(out) < count:
            chunk = await reader.read(65536)
            if not chunk:
                return
            out.extend(framer.feed(chunk))

    await asyncio.wait_for(read(), timeout)
    return out


def _run(handler: Callable[[bytes, Link], object], check: Callable[..., Awaitable[None]],
         limits: EndpointLimits | None = None) -> None:
    async def main() -> None:
        endpoint = Endpoint(handler, limits_=limits)  # type: ignore[arg-type]
        address = await endpoint.listen("127.0.0.1", 0)
        try:
            await check(endpoint, address)
        finally:
            await endpoint.close()
    asyncio.run(main())


def test_pipelined_requests_to_a_plain_handler_are_answered_in_order() -> None:
    seen: list[int] = []

    def handler(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        seen.append(_number(data))
        return _apdu(_number(data) + 1000), False

    async def check(endpoint: Endpoint, address: tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"".join(_apdu(n) for n in range(500)))  # one write: many per read
        got = await _answers(reader, 500)
        writer.close()
        assert [_number(a) for a in got] == [n + 1000 for n in range(500)]
        assert seen == list(range(500))

    _run(handler, check)


def test_coroutine_and_plain_answers_mixed_keep_the_order_of_the_requests() -> None:
    """Every third request is served by a coroutine that awaits; the requests behind it wait
    (the link is not read meanwhile) and no answer overtakes another."""
    async def slow(n: int) -> tuple[bytes | None, bool]:
        await asyncio.sleep(0.002)
        return _apdu(n), False

    def handler(data: bytes, link: Link) -> object:
        n = _number(data)
        return slow(n) if n % 3 == 0 else (_apdu(n), False)

    async def check(endpoint: Endpoint, address: tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(*address)
        for part in range(3):  # in several writes, while coroutines are pending
            writer.write(b"".join(_apdu(n) for n in range(part * 100, part * 100 + 100)))
            await asyncio.sleep(0.01)
        got = await _answers(reader, 300)
        writer.close()
        assert [_number(a) for a in got] == list(range(300))

    _run(handler, check)


def test_a_handler_that_raises_costs_its_request_only() -> None:
    def handler(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        if _number(data) == 1:
            raise RuntimeError("the node's bug")
        return _apdu(_number(data)), False

    async def check(endpoint: Endpoint, address: tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(_apdu(0) + _apdu(1) + _apdu(2))
        got = await _answers(reader, 2)
        writer.close()
        assert [_number(a) for a in got] == [0, 2]
        assert endpoint.connections == 1

    _run(handler, check)


def test_close_after_the_answer_sends_the_answer_first() -> None:
    def handler(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        return _apdu(_number(data)), _number(data) == 1

    async def check(endpoint: Endpoint, address: tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(_apdu(0) + _apdu(1) + _apdu(2))  # 2 is never served: closed after 1
        got = await _answers(reader, 3)
        assert [_number(a) for a in got] == [0, 1]
        assert await asyncio.wait_for(reader.read(1), 10) == b""
        writer.close()

    _run(handler, check)


def test_a_peer_that_does_not_read_its_answers_is_not_read_either() -> None:
    """Small requests asking for large answers, never read: the endpoint stops reading, so
    what it holds stays bounded (the kernel's buffers and one read's worth), and when the peer
    reads at last it gets every answer, in order."""
    answer_size = 16 * 1024
    served: list[int] = []

    def handler(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        served.append(_number(data))
        return _apdu(_number(data), answer_size), False

    async def check(endpoint: Endpoint, address: tuple[str, int]) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(address)
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        total = 4000  # 64 MB of answers if all were buffered
        writer.write(b"".join(_apdu(n) for n in range(total)))
        for _ in range(400):  # a busy machine may take a while to fill the buffers
            await asyncio.sleep(0.05)
            links = list(endpoint._tcp_links)
            if links and links[0]._stream is not None \
                    and not links[0]._stream.transport.is_reading():  # type: ignore[union-attr]
                break
        (link,) = endpoint._tcp_links
        stream = link._stream
        assert stream is not None and stream.transport is not None
        assert not stream.transport.is_reading()
        await asyncio.sleep(0.5)  # and it stays so
        assert not stream.transport.is_reading()
        buffered = stream.transport.get_write_buffer_size()
        assert buffered < 8 * 1024 * 1024, buffered  # not 64 MB
        assert len(served) < total
        # The peer reads now: every answer comes, in order.
        got = await _answers(reader, total, 60)
        writer.close()
        assert [_number(a) for a in got] == list(range(total))
        assert all(len(a) > answer_size for a in got)

    _run(handler, check)


def test_an_idle_link_is_closed_by_its_timer_and_an_active_one_is_not() -> None:
    def handler(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        return _apdu(_number(data)), False

    async def check(endpoint: Endpoint, address: tuple[str, int]) -> None:
        idle_reader, idle_writer = await asyncio.open_connection(*address)
        reader, writer = await asyncio.open_connection(*address)
        # the active link sends a request every 0.2 s for 2 s: 4 idle time-outs' worth
        for n in range(10):
            writer.write(_apdu(n))
            assert [_number(a) for a in await _answers(reader, 1)] == [n]
            await asyncio.sleep(0.2)
        assert await asyncio.wait_for(idle_reader.read(1), 10) == b""
        assert endpoint.stats["timeouts"] == 1
        assert endpoint.connections == 1
        idle_writer.close()
        writer.close()

    _run(handler, check, EndpointLimits(idle_timeout=0.5, message_timeout=0.5))


def test_an_answer_and_the_close_right_after_it_reach_the_caller_in_that_order() -> None:
    """A peer that answers and closes at once (both in one read): the caller waiting for the
    answer gets it and runs on before the link is reported closed, as with a stream reader
    (the fleet re-registers from on_link_closed only once its registration completed)."""
    from c1222.codec.acse import Apdu
    from c1222.codec.epsem import Epsem
    from c1222.codec.services import OkResponse

    answer = Apdu(Epsem((OkResponse(),)), calling_ap_invocation_id=9,
                  called_ap_invocation_id=5).encode()
    events: list[str] = []

    def handler(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        return answer, True

    async def check(endpoint: Endpoint, address: tuple[str, int]) -> None:
        client = Endpoint(on_link_closed=lambda link: events.append("closed"))
        try:
            for _ in range(20):
                link = await client.connect(*address)
                got = await client.exchange(link, _apdu(1), 5, timeout=10)
                events.append("answered" if got == answer else "wrong")
                for _ in range(100):
                    if link.closed:
                        break
                    await asyncio.sleep(0.01)
                assert link.closed
        finally:
            await client.close()
        assert events == ["answered", "closed"] * 20

    _run(handler, check)


def test_answers_of_one_loop_iteration_leave_together_after_every_link_was_served() -> None:
    """Requests read in one loop iteration on several links are all served before any answer
    is written (one wake-up of the peers for the lot, not one per answer); each link still
    gets its own answers, in order. Seen from the peers: while the handler serves the later
    links, no earlier link has its answer yet."""
    clients: list[socket.socket] = []
    answered_early: list[bool] = []

    def handler(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        # Has any client received an answer already? (peek; never blocks)
        early = False
        for sock in clients:
            try:
                early |= bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
            except BlockingIOError:
                pass
        answered_early.append(early)
        return _apdu(_number(data) + 1000), False

    async def check(endpoint: Endpoint, address: tuple[str, int]) -> None:
        for _ in range(4):
            clients.append(socket.create_connection(address))
        await asyncio.sleep(0.1)  # every connection accepted
        for n, sock in enumerate(clients):  # all four are readable at the next select
            sock.sendall(_apdu(n) + _apdu(n + 10))
        loop = asyncio.get_running_loop()
        for n, sock in enumerate(clients):
            sock.setblocking(False)
            framer, got = StreamFramer(1 << 16), []
            while len(got) < 2:
                got.extend(framer.feed(await asyncio.wait_for(loop.sock_recv(sock, 4096), 20)))
            assert [_number(a) for a in got] == [n + 1000, n + 1010]
            sock.close()
        assert answered_early == [False] * 8

    _run(handler, check)
