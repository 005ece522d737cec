"""transport.http: the body cap and time-out middleware with hand-made ASGI messages, and
that both web apps use it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from c1222.transport.http import BodyLimit, HttpLimits, uvicorn_config

LIMITS = HttpLimits(max_body=100, body_timeout=0.2)


class App:
    """An ASGI app that records the body it was given."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.receive: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        self.bodies.append(message.get("body", b""))
        assert message.get("more_body", False) is False
        self.receive = receive
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def run(headers: list[tuple[bytes, bytes]], messages: list[dict[str, Any]],
        *, stall: bool = False) -> tuple[App, list[dict[str, Any]], int]:
    """Call BodyLimit once; the app, what it sent and how many messages it read."""
    app = App()
    sent: list[dict[str, Any]] = []
    queue = list(messages)
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if not queue:
            if stall:
                await asyncio.sleep(3600)  # a client that declared more and went quiet
            return {"type": "http.disconnect"}
        read += 1
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(asyncio.wait_for(BodyLimit(app, LIMITS)(scope, receive, send), 10))
    return app, sent, read


def status(sent: list[dict[str, Any]]) -> int:
    return sent[0]["status"]


def chunk(data: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


def test_a_body_in_chunks_reaches_the_app_whole() -> None:
    app, sent, _ = run([(b"transfer-encoding", b"chunked")],
                       [chunk(b"ab", True), chunk(b"cd", True), chunk(b"", False)])
    assert status(sent) == 200 and app.bodies == [b"abcd"]


def test_a_declared_size_over_the_cap_is_413_without_reading_and_closes() -> None:
    app, sent, read = run([(b"content-length", b"100000000")], [chunk(b"x", True)])
    assert status(sent) == 413 and read == 0 and app.bodies == []
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {"detail": "request body over 100 bytes"}


def test_chunks_over_the_cap_are_413_as_soon_as_they_pass_it() -> None:
    app, sent, read = run([(b"transfer-encoding", b"chunked")],
                          [chunk(b"x" * 60, True), chunk(b"x" * 60, True), chunk(b"x", False)])
    assert status(sent) == 413 and read == 2 and app.bodies == []


def test_a_body_that_stops_coming_is_408() -> None:
    app, sent, _ = run([(b"content-length", b"50")], [chunk(b"x", True)], stall=True)
    assert status(sent) == 408 and app.bodies == []
    assert (b"connection", b"close") in sent[0]["headers"]


def test_a_request_without_a_body_goes_straight_through() -> None:
    app, sent, read = run([], [chunk(b"", False)])
    assert status(sent) == 200 and read == 1  # the app read it itself


@pytest.mark.parametrize("value", [b"12x", b"-", b""])
def test_a_bad_content_length_is_400(value: bytes) -> None:
    app, sent, _ = run([(b"content-length", value)], [])
    assert status(sent) == 400 and app.bodies == []


def test_a_client_gone_mid_body_is_not_answered() -> None:
    app, sent, _ = run([(b"content-length", b"50")], [chunk(b"x", True)])
    assert sent == [] and app.bodies == []


def test_both_web_apps_read_bodies_through_it(tmp_path: Any) -> None:
    from c1222.headend.server import HeadEnd, HeadEndConfig
    from c1222.headend.web import create_app as headend_app
    from c1222.ihd.history import History
    from c1222.ihd.web import create_app as ihd_app

    headend = HeadEnd(HeadEndConfig(listen=("127.0.0.1", 0), db=f"sqlite:///{tmp_path}/h.db"))
    history = History(tmp_path / "ihd")
    try:
        for app in (headend_app(headend), ihd_app(history)):
            assert any(m.cls is BodyLimit for m in app.user_middleware)
    finally:
        history.close()


def test_the_uvicorn_config_carries_the_limits() -> None:
    config = uvicorn_config(object(), "127.0.0.1", 0, HttpLimits(max_connections=7,
                                                                 max_header_bytes=4096))
    assert config.limit_concurrency == 7 and config.h11_max_incomplete_event_size == 4096
    assert config.http.__name__ == "HeaderTimeoutProtocol"
