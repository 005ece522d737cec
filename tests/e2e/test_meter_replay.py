"""A captured secured request is never served twice, not even after a kill -9 (issue 15
finding 2): the real `c1222 meter` serves a secured remote disconnect and then a connect
(procedure writes to Table 7), is killed with SIGKILL right after answering, restarts on the
same state directory, and the same bytes sent again are refused (SME) — the load stays
connected and the disconnect is not logged again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.framing import StreamFramer
from c1222.codec.services import FullReadRequest, FullWriteRequest, SecurityRequest, TableData
from c1222.codes import ResponseCode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import RandomNonceSource, TimeIvSource
from c1222.session.requester import Requester
from c1222.tables.access import pad_password
from c1222.tables.procedures import load_disconnected, table7_request
from c1222.tables.readings import history_entries
from c1222.tables.store import TableStore
from tests.e2e.procs import Running

METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")
HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")
KEY_HEX = "000102030405060708090A0B0C0D0E0F"
KEYS = KeyTable.from_cli([f"2:{KEY_HEX}"])
PASSWORD = pad_password("PASSWORD")
EVENT_CONTROL_POINT_CHANGED = 49


def start(tmp: Path, replay: str) -> Running:
    profile = tmp / "meter.toml"
    profile.write_text(f'replay_protection = "{replay}"\n'
                       'load = { type = "resistive", watts = 1000 }\n')
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--state-dir", str(tmp / "state"),
                     "--key", f"2:{KEY_HEX}", "--security-mode", "1", "--profile", str(profile)])
    meter.address()
    return meter


async def send(address: tuple[str, int], data: bytes) -> bytes:
    """The raw bytes on a new TCP connection, as an attacker replays them; the answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 10)
    try:
        writer.write(data)
        await writer.drain()
        framer = StreamFramer()
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, "the meter closed the connection without answering"
            apdus = framer.feed(chunk)
            if apdus:
                return apdus[0]
    finally:
        writer.close()


async def serve(address: tuple[str, int], requester: Requester, services: list) -> tuple:
    """One secured request: its bytes and the response codes of its answer."""
    pending = requester.request(services, METER)
    answer = requester.accept(await send(address, pending.data), pending, time.time())
    return pending.data, [s.response_code for s in answer.epsem.services], answer


async def read(address: tuple[str, int], requester: Requester, *numbers: int) -> dict:
    _, codes, answer = await serve(address, requester, [SecurityRequest(PASSWORD, 2),
                                                        *(FullReadRequest(n) for n in numbers)])
    assert set(codes) == {ResponseCode.OK}
    return dict(zip(numbers, (r.table_data.data for r in answer.epsem.services[1:])))


def refused(answer: bytes) -> bool:
    apdu = acse.decode(answer)
    return [s.response_code for s in apdu.epsem.services] == [ResponseCode.SME]


def disconnected(tables: dict) -> bool:
    return load_disconnected(TableStore({0: tables[0], 3: tables[3]}))


@pytest.mark.parametrize("replay", ["time", "window"])
def test_a_request_served_before_a_kill_9_is_refused_after_the_restart(
        tmp_path: Path, replay: str) -> None:
    nonces = TimeIvSource(time.time) if replay == "time" else RandomNonceSource()
    requester = Requester(HEADEND, nonces, keys=KEYS, security_mode=2, key_id=2)
    meter = start(tmp_path, replay)
    try:
        address = meter.address()
        table0 = asyncio.run(read(address, requester, 0))[0]

        def switch(parm: bytes) -> list:
            body = table7_request(TableStore({0: table0}), 0, 7, parm, mfg=True)
            return [SecurityRequest(PASSWORD, 2), FullWriteRequest(7, TableData(body))]

        # A remote disconnect, then a connect: what an attacker would replay is the first.
        cut, codes, _ = asyncio.run(serve(address, requester, switch(b"\x00")))
        assert codes == [ResponseCode.OK, ResponseCode.OK]
        assert refused(asyncio.run(send(address, cut)))  # a replay while it runs
        restore, codes, _ = asyncio.run(serve(address, requester, switch(b"\x01")))
        assert codes == [ResponseCode.OK, ResponseCode.OK]
    finally:
        meter.kill()  # SIGKILL right after the last answer: nothing saved on the way out
    meter = start(tmp_path, replay)
    try:
        address = meter.address()
        assert refused(asyncio.run(send(address, cut)))
        assert refused(asyncio.run(send(address, restore)))
        tables = asyncio.run(read(address, requester, 0, 3, 71, 74))
        assert not disconnected(tables)  # the replayed disconnect did not happen
        codes = [e["code"] for e in history_entries(tables)]
        assert codes.count(EVENT_CONTROL_POINT_CHANGED) == 2  # nor was it logged again
        # A fresh request is still served after the restart.
        _, codes, _ = asyncio.run(serve(address, requester, switch(b"\x00")))
        assert codes == [ResponseCode.OK, ResponseCode.OK]
        assert disconnected(asyncio.run(read(address, requester, 0, 3)))
    finally:
        assert meter.stop() == 0
    journal = tmp_path / "state" / "replay-journal"
    assert journal.stat().st_size < 64 * 1024  # compacted at start, not growing unbounded


def test_time_mode_refuses_an_iv_far_from_the_meter_clock(tmp_path: Path) -> None:
    stale = Requester(HEADEND, TimeIvSource(lambda: time.time() - 3600), keys=KEYS,
                      security_mode=2, key_id=2)
    meter = start(tmp_path, "time")
    try:
        pending = stale.request([SecurityRequest(PASSWORD, 2), FullReadRequest(0)], METER)
        assert refused(asyncio.run(send(meter.address(), pending.data)))
    finally:
        assert meter.stop() == 0
