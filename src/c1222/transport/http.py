"""Bounds on what an HTTP client can make our web apps hold or wait for (architecture rule 8).

Both web apps (the head-end's console and API, the display's page) are served by uvicorn,
which by itself waits for a declared body for ever and reads request headers for as long as
a client trickles them. Here, in one place:

* :class:`BodyLimit`, ASGI middleware: a request body is read here, before the app sees it,
  counted while it streams in: over ``max_body`` bytes (declared or sent) is **413**, not
  all there within ``body_timeout`` seconds is **408**; both close the connection, so a
  client that declared 100 MB and sent one byte is answered and dropped at once. The app
  then gets the whole body in one message and never waits on a slow client.
* :func:`uvicorn_config`: a ``uvicorn.Config`` whose connections are closed when a request's
  line and headers are not complete within ``header_timeout`` seconds (slowloris), with
  headers capped at ``max_header_bytes`` (h11 answers 400) and at most ``max_connections``
  open at once (uvicorn answers 503).

:class:`HttpLimits` holds the numbers (docs/headend.md, "Limits").

Prometheus metrics of any server (docs/headend.md, "Metrics"): :func:`metrics_exposition`
renders a ``prometheus_client`` registry in the format a scraper's ``Accept`` header asks
for, and :func:`metrics_app` is an ASGI app serving it (``GET``/``HEAD``, 405 otherwise) for
a server that has no FastAPI app to add a route to.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from c1222 import limits

__all__ = ["BodyLimit", "HttpLimits", "limit_body", "metrics_app", "metrics_exposition",
           "uvicorn_config"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP client may make a server hold or wait for."""

    #: Largest request body, bytes (413 over it).
    max_body: int = limits.MAX_HTTP_BODY_SIZE
    #: Seconds for the whole body to arrive once the headers are in (408 after).
    body_timeout: float = 20.0
    #: Seconds for the request line and headers to arrive (the connection is closed after).
    header_timeout: float = 10.0
    #: Largest request line plus headers, bytes (h11 answers 400 over it).
    max_header_bytes: int = 16 * 1024
    #: Connections open at once (uvicorn answers 503 over it).
    max_connections: int = 256
    #: Seconds an idle keep-alive connection stays open.
    keep_alive: int = 5


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})  # the rest of the body is not read
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: the request body read under :class:`HttpLimits`, then handed on."""

    def __init__(self, app: App, http_limits: HttpLimits | None = None) -> None:
        self.app = app
        self.limits = http_limits or HttpLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:  # the HTTP parser refuses these first; never trust it here
                    await _refuse(send, 400, "bad Content-Length")
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if declared is None and not chunked:  # no body: nothing to wait for (event streams)
            await self.app(scope, receive, send)
            return
        cap = self.limits.max_body
        if declared is not None and declared > cap:
            await _refuse(send, 413, f"request body over {cap} bytes")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                await _refuse(send, 408, f"request body not received within "
                                         f"{self.limits.body_timeout:g} s")
                return
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                await _refuse(send, 413, f"request body over {cap} bytes")
                return
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        given = False

        async def replay() -> Message:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls: wait for a disconnect, as usual

        await self.app(scope, replay, send)


def limit_body(app: Any, http_limits: HttpLimits | None = None) -> Any:
    """Add :class:`BodyLimit` to a Starlette/FastAPI app (outermost); returns the app."""
    app.add_middleware(BodyLimit, http_limits=http_limits or HttpLimits())
    return app


def _protocol(header_timeout: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete
    within ``header_timeout`` seconds of the connection (or of the previous response)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle:  # a request's headers are complete
                self._disarm()

        def on_response_complete(self) -> None:
            cycle = self.cycle
            super().on_response_complete()
            if self.cycle is cycle and not self.transport.is_closing():
                self._arm()  # the next request's headers are on the clock too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def uvicorn_config(app: Any, host: str, port: int, http_limits: HttpLimits | None = None,
                   **options: Any) -> Any:
    """A ``uvicorn.Config`` serving ``app`` under ``http_limits`` (``options`` go to uvicorn;
    the default log level is ``warning``)."""
    import uvicorn

    bounds = http_limits or HttpLimits()
    options.setdefault("log_level", "warning")
    return uvicorn.Config(app, host=host, port=port, http=_protocol(bounds.header_timeout),
                          h11_max_incomplete_event_size=bounds.max_header_bytes,
                          limit_concurrency=bounds.max_connections,
                          timeout_keep_alive=bounds.keep_alive, **options)


def metrics_exposition(registry: Any, accept: str | None = None) -> tuple[bytes, str]:
    """The metrics of ``registry`` and their content type: OpenMetrics 1.0.0 when ``accept``
    names ``application/openmetrics-text`` (as Prometheus asks), else the Prometheus text
    format 0.0.4.

    The header is only searched, never parsed or echoed: ``prometheus_client``'s own
    negotiation raises on a version such as ``version=x`` (a 500) and copies the client's
    version into the response's Content-Type. Query parameters are not used either."""
    from prometheus_client import exposition
    from prometheus_client.openmetrics import exposition as openmetrics

    if accept and "application/openmetrics-text" in accept.lower():
        return openmetrics.generate_latest(registry), openmetrics.CONTENT_TYPE_LATEST
    return exposition.generate_latest(registry), exposition.CONTENT_TYPE_PLAIN_0_0_4


def metrics_app(registry: Any) -> App:
    """An ASGI app answering ``GET`` and ``HEAD`` with :func:`metrics_exposition` of
    ``registry`` (any path, any query), anything else with 405. Mount it in a Starlette app,
    or serve it alone with :func:`uvicorn_config`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served alone: nothing to start or stop
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method = scope.get("method", "")
        if method not in ("GET", "HEAD"):
            body = b"method not allowed\n"
            headers = [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain")]
            status = 405
        else:
            accept = ",".join(value.decode("latin-1") for name, value in scope.get("headers", ())
                              if name.lower() == b"accept")
            body, content_type = metrics_exposition(registry, accept)
            headers = [(b"content-type", content_type.encode("latin-1")),
                       (b"cache-control", b"no-cache")]
            status = 200
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    return app
