"""A request whose link closes while it is being sent fails once, quietly: the waiter that
the close failed too is read, so asyncio logs no 'Future exception was never retrieved'
(seen as ERROR lines in the head-end under tests/e2e/test_headend_hostile.py's garbage)."""

from __future__ import annotations

import asyncio
import gc
import socket
from typing import Any

import pytest

from c1222.errors import TransportError
from c1222.transport.endpoint import Endpoint


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_link_closing_during_the_send_leaves_no_unretrieved_error(transport: str) -> None:
    async def main() -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as peer:  # a peer that never answers
            peer.bind(("127.0.0.1", 0))
            if transport == "tcp":
                peer.listen()
            endpoint = Endpoint()
            link = await endpoint.connect("127.0.0.1", peer.getsockname()[1], transport, 5)
            sends = 0

            async def send(data: bytes) -> None:  # as a failed drain does: close, then raise
                nonlocal sends
                sends += 1
                if sends == (2 if transport == "udp" else 1):
                    link.close()
                    raise TransportError("lost the connection")

            link.send = send  # type: ignore[method-assign]
            with pytest.raises(TransportError):
                await endpoint.exchange(link, b"\x60\x00", 1, timeout=0.3, retries=2)
            await endpoint.close()
        gc.collect()
        await asyncio.sleep(0)
        return errors

    errors = asyncio.run(main())
    assert not [e for e in errors if "never retrieved" in e.get("message", "")], errors
