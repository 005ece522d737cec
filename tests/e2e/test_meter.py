"""`c1222 meter` started as a user would, driven over real loopback sockets by our own stack.

Every service in each security mode over TCP and UDP, the error codes a real head-end meets,
registration, the display feed, persistence through kill -9, and a pcap judged by tshark.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from c1222.codec.ber import Uid
from c1222.codec.services import (
    DefaultReadRequest,
    DeregisterRequest,
    DisconnectRequest,
    FullReadRequest,
    FullWriteRequest,
    IdentifyRequest,
    IdentifyResponse,
    LogoffRequest,
    LogonRequest,
    LogonResponse,
    PartialReadIndexRequest,
    PartialReadOffsetRequest,
    PartialWriteIndexRequest,
    PartialWriteOffsetRequest,
    ReadResponse,
    RegisterRequest,
    ResolveRequest,
    SecurityRequest,
    TableData,
    TerminateRequest,
    TraceRequest,
    WaitRequest,
)
from c1222.codes import ResponseCode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import TimeIvSource
from c1222.session.requester import Requester
from c1222.tables.access import pad_password
from c1222.transport.client import Client, responses
from tests.e2e.procs import Running

METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")
HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")
KEY_HEX = "000102030405060708090A0B0C0D0E0F"
KEYS = KeyTable.from_cli([f"2:{KEY_HEX}"])
PASSWORD = pad_password("PASSWORD")
OK = ResponseCode.OK


def start_meter(tmp: Path, *extra: str, state: str = "state") -> Running:
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--state-dir", str(tmp / state),
                     "--key", f"2:{KEY_HEX}", *extra])
    meter.address()
    return meter


def client(mode: int) -> Client:
    return Client(Requester(HEADEND, TimeIvSource(time.time), keys=KEYS, security_mode=mode,
                            key_id=2 if mode else None))


async def call(c: Client, *services, called: Uid = METER, **options) -> list:
    return responses(await c.call(list(services), called=called, timeout=10, **options))


async def every_service(address: tuple[str, int], transport: str, mode: int) -> dict[str, int]:
    """Run every service and every negative case; return the response code of each."""
    c = client(mode)
    await c.connect(*address, transport)
    codes: dict[str, int] = {}
    try:
        ident = (await call(c, IdentifyRequest()))[0]
        assert isinstance(ident, IdentifyResponse) and ident.std == 3
        assert ident.device_identity is not None
        codes["identify"] = ident.response_code
        table0 = (await call(c, FullReadRequest(0)))[0]
        assert isinstance(table0, ReadResponse) and len(table0.table_data.data) > 20
        codes["full_read"] = table0.response_code
        part = (await call(c, PartialReadOffsetRequest(1, 4, 8)))[0]
        assert part.table_data.data == (await call(c, FullReadRequest(1)))[0] \
            .table_data.data[4:12]
        codes["partial_read_offset"] = part.response_code
        codes["partial_read_index"] = (await call(
            c, SecurityRequest(PASSWORD, 2), PartialReadIndexRequest(28, (1,), 1)))[1] \
            .response_code
        codes["default_read"] = (await call(c, SecurityRequest(PASSWORD, 2),
                                            DefaultReadRequest()))[1].response_code
        # negative cases
        codes["wrong_password"] = (await call(c, SecurityRequest(pad_password("nope"), 2)))[0] \
            .response_code
        codes["no_clearance"] = (await call(c, FullReadRequest(23)))[0].response_code
        reader = await call(c, SecurityRequest(pad_password("READER"), 1),
                            FullWriteRequest(6, TableData(bytes(1))))
        codes["reader_write"] = reader[1].response_code
        codes["unknown_table"] = (await call(c, SecurityRequest(PASSWORD, 2),
                                             FullReadRequest(99)))[1].response_code
        codes["unknown_title"] = (await call(
            c, IdentifyRequest(), called=Uid.parse("2.16.124.113620.1.22.0.123.9999")))[0] \
            .response_code
        table6 = (await call(c, SecurityRequest(PASSWORD, 2), FullReadRequest(6)))[1] \
            .table_data.data
        bad = TableData(table6, checksums=bytes([TableData(table6).computed_checksums()[0] ^ 1]))
        codes["bad_checksum"] = (await call(c, SecurityRequest(PASSWORD, 2),
                                            FullWriteRequest(6, bad)))[1].response_code
        codes["logoff_without_logon"] = (await call(c, LogoffRequest()))[0].response_code
        # writes (operator) change exactly what they say
        changed = b"OWNER-E2E".ljust(20, b" ") + table6[20:]
        codes["full_write"] = (await call(c, SecurityRequest(PASSWORD, 2),
                                          FullWriteRequest(6, TableData(changed))))[1] \
            .response_code
        codes["partial_write_offset"] = (await call(
            c, SecurityRequest(PASSWORD, 2),
            PartialWriteOffsetRequest(6, 0, TableData(b"PARTIAL"))))[1].response_code
        codes["partial_write_index"] = (await call(
            c, SecurityRequest(PASSWORD, 2),
            PartialWriteIndexRequest(6, (0,), TableData(b"INDEXED".ljust(20, b" ")))))[1] \
            .response_code
        after = (await call(c, SecurityRequest(PASSWORD, 2), FullReadRequest(6)))[1] \
            .table_data.data
        assert after[:20] == b"INDEXED".ljust(20, b" ") and after[20:] == table6[20:]
        # a session
        logon = (await call(c, LogonRequest(2, b"e2e".ljust(10), 30)))[0]
        assert isinstance(logon, LogonResponse)
        codes["logon"] = logon.response_code
        codes["logon_twice"] = (await call(c, LogonRequest(2, b"e2e".ljust(10), 30)))[0] \
            .response_code
        codes["security"] = (await call(c, SecurityRequest(PASSWORD)))[0].response_code
        codes["session_read"] = (await call(c, FullReadRequest(23)))[0].response_code
        codes["wait"] = (await call(c, WaitRequest(10)))[0].response_code
        codes["logoff"] = (await call(c, LogoffRequest()))[0].response_code
        codes["terminate"] = (await call(c, TerminateRequest()))[0].response_code
        # relay services an end device does not offer
        for name, service in (("register", RegisterRequest(0x20, 0, b"SIMU", HEADEND,
                                                           Uid.parse(".1"), b"x", 60)),
                              ("resolve", ResolveRequest(METER)), ("trace", TraceRequest(METER))):
            codes[name] = (await call(c, service))[0].response_code
        codes["deregister_other"] = (await call(c, DeregisterRequest(HEADEND)))[0].response_code
        codes["deregister"] = (await call(c, DeregisterRequest(METER)))[0].response_code
        codes["disconnect"] = (await call(c, DisconnectRequest()))[0].response_code
    finally:
        await c.close()
    return codes


EXPECTED = {
    "identify": OK, "full_read": OK, "partial_read_offset": OK, "partial_read_index": OK,
    "default_read": OK, "wrong_password": ResponseCode.ISC, "no_clearance": ResponseCode.ISC,
    "reader_write": ResponseCode.ISC, "unknown_table": ResponseCode.SNS,
    "unknown_title": ResponseCode.UAT, "bad_checksum": ResponseCode.ERR,
    "logoff_without_logon": ResponseCode.ISSS, "full_write": OK, "partial_write_offset": OK,
    "partial_write_index": OK, "logon": OK, "logon_twice": ResponseCode.ISSS, "security": OK,
    "session_read": OK, "wait": OK, "logoff": OK, "terminate": OK,
    "register": ResponseCode.SNS, "resolve": ResponseCode.SNS, "trace": ResponseCode.SNS,
    "deregister_other": ResponseCode.UAT, "deregister": OK, "disconnect": OK,
}


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_every_service_in_each_security_mode(tmp_path: Path, mode: int) -> None:
    meter = start_meter(tmp_path, "--security-mode", str(mode), "--pcap",
                        str(tmp_path / "run.pcap"))
    try:
        address = meter.address()
        for transport in ("tcp", "udp"):
            codes = asyncio.run(every_service(address, transport, mode))
            assert codes == {k: int(v) for k, v in EXPECTED.items()}, transport
        if mode:  # a weaker request is refused with SME
            weaker = asyncio.run(_identify(address, mode - 1))
            assert weaker == ResponseCode.SME
    finally:
        assert meter.stop() == 0, "\n".join(meter.lines[-40:])
    assert (tmp_path / "run.pcap").stat().st_size > 1000


async def _identify(address: tuple[str, int], mode: int) -> int:
    c = client(mode)
    await c.connect(*address)
    try:
        return (await call(c, IdentifyRequest()))[0].response_code
    finally:
        await c.close()


def test_meter_prints_its_address_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    meter = start_meter(tmp_path)
    host, port = meter.address()
    assert host == "127.0.0.1" and port > 0
    assert meter.stop() == 0, "\n".join(meter.lines[-40:])
    assert any("meter stopped" in line for line in meter.lines)


def test_bad_profile_is_a_clear_error(tmp_path: Path) -> None:
    profile = tmp_path / "bad.toml"
    profile.write_text('ap_title = "not a title"\n')
    bad = Running(["meter", "--profile", str(profile), "--listen", "127.0.0.1:0"])
    bad.proc.wait(30)
    bad._reader.join(5)
    assert bad.proc.returncode == 2
    assert any("ap_title" in line for line in bad.lines)
    profile.write_text('speed = "fast"\n')
    bad = Running(["meter", "--profile", str(profile), "--listen", "127.0.0.1:0"])
    bad.proc.wait(30)
    bad._reader.join(5)
    assert bad.proc.returncode == 2 and any("speed" in line for line in bad.lines)


async def _kept_state(address: tuple[str, int]) -> tuple[int, list[tuple], int]:
    """What must survive a restart: the Wh register, the history log entries (sequence,
    code) and the number of load-profile intervals recorded."""
    from c1222.tables.readings import decoded, history_entries

    c = client(0)
    await c.connect(*address)
    numbers = (0, 23, 61, 63, 71, 74)
    try:
        got = await call(c, SecurityRequest(PASSWORD, 2),
                         *(FullReadRequest(n) for n in numbers))
        tables = dict(zip(numbers, (r.table_data.data for r in got[1:])))
    finally:
        await c.close()
    wh = int.from_bytes(tables[23][:6], "little", signed=True)  # one INT48 summation
    events = [(e["seq"], e["code"]) for e in history_entries(tables)]
    status = decoded({n: tables[n] for n in (0, 61, 63)})[63].status_set(1)
    dims = decoded({n: tables[n] for n in (0, 61)})[61].data_set(1)
    intervals = max(status.nbr_valid_blocks - 1, 0) * dims.nbr_blk_ints + status.nbr_valid_int
    return wh, events, intervals


def test_registers_load_profile_and_event_log_survive_kill_9(tmp_path: Path) -> None:
    meter = start_meter(tmp_path, "--speed", "1200")
    address = meter.address()
    time.sleep(3)  # an hour of simulated use: four 15-minute intervals
    wh, events, intervals = asyncio.run(_kept_state(address))
    assert wh > 0 and intervals >= 2 and events
    time.sleep(1.5)  # one save interval after the read
    meter.kill()
    again = start_meter(tmp_path, "--speed", "1200")
    try:
        wh2, events2, intervals2 = asyncio.run(_kept_state(again.address()))
        assert wh2 >= wh
        assert intervals2 >= intervals
        assert events2[: len(events)] == events  # the kept log, then the new power-up
        assert events2[len(events):] and events2[-1][1] == 2
    finally:
        again.stop()


async def _remote_switch(address: tuple[str, int], parm: bytes) -> tuple[bytes, dict, list]:
    """Run manufacturer procedure 0 (remote connect/disconnect), then read Table 8, the
    present values and the history log."""
    from c1222.tables.procedures import table7_request
    from c1222.tables.readings import CONTEXT_TABLES, history_entries, meter_values
    from c1222.tables.store import TableStore

    c = client(0)
    await c.connect(*address)
    try:
        sec = SecurityRequest(PASSWORD, 2)
        table0 = (await call(c, FullReadRequest(0)))[0].table_data.data
        body = table7_request(TableStore({0: table0}), 0, 7, parm, mfg=True)
        done = await call(c, sec, FullWriteRequest(7, TableData(body)), FullReadRequest(8))
        await asyncio.sleep(2.5)  # the meter measures a couple of seconds with the relay so
        reads = await call(c, sec, *(FullReadRequest(n) for n in (*CONTEXT_TABLES, 23, 28, 71,
                                                                    74)))
        tables = dict(zip((*CONTEXT_TABLES, 23, 28, 71, 74),
                          (r.table_data.data for r in reads[1:])))
        return done[2].table_data.data, meter_values(tables), history_entries(tables)
    finally:
        await c.close()


def test_remote_disconnect_stops_the_load_and_connect_restores_it(tmp_path: Path) -> None:
    profile = tmp_path / "resistive.toml"
    profile.write_text('load = { type = "resistive", watts = 1000 }\n')
    meter = start_meter(tmp_path, "--profile", str(profile))
    try:
        address = meter.address()
        table8, values, events = asyncio.run(_remote_switch(address, b"\x00"))
        assert table8[-1] == 0 and table8[-2] == 0  # completed; relay open
        assert values["active_power"] == 0 and values["current"] == 0
        assert 200 < values["voltage"] < 240  # the meter still sees the mains
        assert 49 in [e["code"] for e in events]  # control point changed
        table8, values, _ = asyncio.run(_remote_switch(address, b"\x01"))
        assert table8[-1] == 1
        assert 950 < values["active_power"] < 1050
    finally:
        assert meter.stop() == 0, "\n".join(meter.lines[-40:])
