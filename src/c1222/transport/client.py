"""A C12.22 client: a :class:`~c1222.session.requester.Requester` on an
:class:`~c1222.transport.endpoint.Endpoint` link, so one call sends services and returns the
verified, typed response APDU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.services import Request, Response
from c1222.errors import SecurityError
from c1222.session.requester import Pending, Requester
from c1222.transport.endpoint import Endpoint, Link


class Client:
    """Requests from ``requester``'s node over ``endpoint`` (one is created when not given)."""

    def __init__(self, requester: Requester, endpoint: Endpoint | None = None, *,
                 clock: Callable[[], float] = time.time,
                 on_message: Callable[[str, Link, bytes, Apdu | None], None] | None = None
                 ) -> None:
        self.requester = requester
        self.endpoint = endpoint if endpoint is not None else Endpoint()
        self._owns = endpoint is None
        self.clock = clock
        self.on_message = on_message  # ("out"|"in", link, bytes, decoded) for message logs
        self.link: Link | None = None

    async def connect(self, host: str, port: int, transport: str = "tcp",
                      timeout: float = 10.0) -> Link:
        self.link = await self.endpoint.connect(host, port, transport, timeout)
        return self.link

    async def send(self, pending: Pending, *, link: Link | None = None,
                   timeout: float = 30.0) -> Apdu:
        """Send a built request and return its checked response."""
        link = link or self.link
        if link is None:
            raise RuntimeError("connect() first or pass a link")
        if self.on_message is not None:
            self.on_message("out", link, pending.data, pending.apdu)
        data = await self.endpoint.exchange(link, pending.data, pending.invocation_id,
                                            timeout=timeout)
        try:
            apdu = self.requester.accept(data, pending, self.clock())
        except Exception as exc:
            if self.on_message is not None:
                self.on_message("in", link, data, None)
            if type(exc) is SecurityError:
                # say whose response, so a log line points at the peer whose key differs
                raise SecurityError(f"the response from {link.name} failed our security check "
                                    "(MAC, key id or replay)") from None
            raise
        if self.on_message is not None:
            self.on_message("in", link, data, apdu)
        return apdu

    async def call(self, services: Sequence[Request], *, called: Uid | None,
                   link: Link | None = None, timeout: float = 30.0, **options: int | None
                   ) -> Apdu:
        """Send ``services`` to ``called`` and return the response APDU."""
        pending = self.requester.request(services, called, **options)  # type: ignore[arg-type]
        return await self.send(pending, link=link, timeout=timeout)

    async def close(self) -> None:
        if self.link is not None:
            self.link.close()
        if self._owns:
            await self.endpoint.close()


def responses(apdu: Apdu) -> list[Response]:
    """The response services of a response APDU."""
    return [s for s in apdu.epsem.services if isinstance(s, Response)]
