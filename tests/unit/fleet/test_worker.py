"""One fleet worker served in-process (no sockets): requests routed by called AP title, each
meter's tables built on first use and showing its own household, UAT for unknown titles, and
a remote disconnect that opens one meter's relay only."""

from __future__ import annotations

import asyncio
import time

import pytest

from c1222.codec.ber import Uid
from c1222.codec.services import (
    ErrorResponse, FullReadRequest, FullWriteRequest, IdentifyRequest, IdentifyResponse,
    OkResponse, ReadResponse, SecurityRequest, TableData,
)
from c1222.codes import ResponseCode
from c1222.crypto.nonces import RandomNonceSource
from c1222.fleet.node import FleetWorker, WorkerConfig
from c1222.session.requester import Requester
from c1222.tables.access import pad_password
from c1222.tables.decade2 import PresentRegisterData
from c1222.tables.procedures import MfgProc, table7_request

EVENING = 1767225600 + 9 * 3600 + 600  # 18:10 KST
HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")


class FakeLink:
    def __init__(self, link_id: int) -> None:
        self.id = link_id


@pytest.fixture
def worker() -> FleetWorker:
    return FleetWorker(WorkerConfig(first=10, count=8, seed=3, start_time=EVENING, speed=1.0))


def call(worker: FleetWorker, title: str, *services: object) -> list:
    requester = Requester(HEADEND, RandomNonceSource())
    pending = requester.request(list(services), Uid.parse(title))  # type: ignore[arg-type]
    data, _ = asyncio.run(worker._on_request(pending.data, FakeLink(1)))  # type: ignore[arg-type]
    assert data is not None
    return list(requester.accept(data, pending, time.time()).epsem.services)


def title(i: int) -> str:
    return f"2.16.124.113620.1.22.0.123.{100000 + i}"


LOGIN = SecurityRequest(pad_password("PASSWORD"), 2)


def test_requests_reach_the_meter_they_name_and_only_it_is_built(worker: FleetWorker) -> None:
    assert all(m.node is None for m in worker.meters)
    answer = call(worker, title(13), IdentifyRequest())
    assert isinstance(answer[0], IdentifyResponse)
    assert answer[0].device_identity.identity == b"00100013"
    assert [m.index for m in worker.meters if m.node is not None] == [13]
    # its tables carry its identity, not the template's
    store = worker.meters[3].node.tables.store  # type: ignore[union-attr]
    assert store.get(1).mfg_serial_number == "00100013"
    assert store.get(6).misc_id == ".123.100013"


def test_each_meter_shows_its_own_household(worker: FleetWorker) -> None:
    powers = []
    for i in (10, 14, 17):
        answer = call(worker, title(i), LOGIN, FullReadRequest(28))
        assert isinstance(answer[0], OkResponse) and isinstance(answer[1], ReadResponse)
        row = i - 10
        present = worker.meters[row].node.tables.store.get(28)  # type: ignore[union-attr]
        assert isinstance(present, PresentRegisterData)
        assert present.present_value[0] == round(float(worker._last.active_power[row]))
        powers.append(present.present_value[0])
    assert len(set(powers)) > 1


def test_an_unknown_title_is_uat_and_builds_nothing(worker: FleetWorker) -> None:
    answer = call(worker, title(99), IdentifyRequest())
    assert isinstance(answer[0], ErrorResponse) and answer[0].response_code == ResponseCode.UAT
    assert all(m.node is None for m in worker.meters)
    assert worker.stats.unknown_title == 1


def test_a_remote_disconnect_opens_one_meters_relay(worker: FleetWorker) -> None:
    call(worker, title(12), IdentifyRequest())
    store = worker.meters[2].node.tables.store  # type: ignore[union-attr]
    request = table7_request(store, MfgProc.REMOTE_CONNECT_DISCONNECT, 1, b"\x00", mfg=True)
    answer = call(worker, title(12), LOGIN, FullWriteRequest(7, TableData(request)))
    assert all(isinstance(a, OkResponse) for a in answer), answer
    assert worker.bank.disconnected.tolist() == [False, False, True] + [False] * 5
    second = worker.bank.measure_second(EVENING + 3600)
    assert second.active_power[2] == 0 and (second.active_power[[0, 1, 3]] > 0).all()


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x60\x80" + b"\xff" * 20, b"\x60\x05\xa2\x03\x80",
                                  bytes(range(256)), b"\x60\x84\x7f\xff\xff\xff"])
def test_garbage_on_the_shared_port_gets_no_answer_and_builds_nothing(
        worker: FleetWorker, data: bytes) -> None:
    reply, close = asyncio.run(worker._on_request(data, FakeLink(1)))  # type: ignore[arg-type]
    assert reply is None and close is False
    assert all(m.node is None for m in worker.meters)
    assert worker.stats.undecodable + worker.stats.unknown_title == 1
