"""The meter ends idle Logon sessions of other associations without walking every session on
every request (issue 11): at most once a second, and still within a second of their time-out."""

from __future__ import annotations

from dataclasses import dataclass

from c1222.codec.ber import Uid
from c1222.codec.services import FullReadRequest, LogonRequest
from c1222.codes import ResponseCode
from c1222.crypto.nonces import TimeIvSource
from c1222.meter.config import MeterConfig
from c1222.meter.node import Meter
from c1222.session.requester import Requester
from c1222.transport.client import responses

HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")


@dataclass
class _Link:
    id: int


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_idle_sessions_of_other_associations_end_and_the_walk_is_once_a_second() -> None:
    clock = _Clock()
    meter = Meter(MeterConfig(), wall=clock)
    requester = Requester(HEADEND, TimeIvSource(clock), security_mode=0)
    walks = 0
    responder = meter.responder

    class Counted:
        """The meter's responder, its walks over all sessions counted (a wrapper: the
        responder may be compiled, and a compiled object's methods cannot be replaced)."""

        def expire(self, now: float) -> None:
            nonlocal walks
            walks += 1
            responder.expire(now)

        def __getattr__(self, name: str) -> object:
            return getattr(responder, name)

    meter.responder = Counted()  # type: ignore[assignment]

    def ask(link: int, services: list) -> list[ResponseCode]:
        pending = requester.request(services, meter.ap_title)
        data, _ = meter._on_request(pending.data, _Link(link))  # the endpoint's call
        assert data is not None
        return [r.response_code for r in responses(requester.accept(data, pending, clock.now))]

    assert ask(1, [LogonRequest(2, b"operator  ", 5)]) == [ResponseCode.OK]
    assert meter.responder.session(1) is not None
    for _ in range(200):  # many requests within one second: one walk
        assert ask(2, [FullReadRequest(1)]) == [ResponseCode.OK]
    assert walks == 1
    clock.now += 6.5  # past association 1's 5 s idle time-out
    assert ask(2, [FullReadRequest(1)]) == [ResponseCode.OK]
    assert walks == 2
    assert meter.responder.session(1) is None  # ended though association 1 sent nothing
    clock.now -= 100  # a wall clock set back: the next request walks again
    ask(2, [FullReadRequest(1)])
    assert walks == 3
