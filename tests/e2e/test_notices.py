"""A notice travels head-end -> meter -> display over C12.22, between real processes:
`c1222 headend`, `c1222 meter` and `c1222 ihd` started as a user would, on 127.0.0.1
(docs/headend.md and docs/ihd.md, "Notices"). Secured (mode 2) end to end; and hostile
writes of the notice table straight to a meter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from c1222.codec.services import FullReadRequest, FullWriteRequest, SecurityRequest, TableData
from c1222.codes import ResponseCode
from c1222.tables.notice import NOTICE_TABLE, CustomerNotice, NoticeKind, cleared
from c1222.tables.profile import build_tables
from c1222.tables.registry import encode_table
from c1222.tables.types import TimeDate
from tests.e2e.procs import Running
from tests.e2e.test_meter import PASSWORD, call, client, start_meter

METER = "2.16.124.113620.1.22.0.123.8437"
KEY = "2:000102030405060708090A0B0C0D0E0F"
SECURED = ["--security-mode", "2", "--key", KEY]


@dataclass
class System:
    headend: Running
    meter: Running
    display: Running
    console: str  # the head-end's base URL
    page: str  # the display's base URL

    def stop(self) -> None:
        codes = [p.stop() for p in (self.meter, self.display, self.headend)]
        assert codes == [0, 0, 0], codes


def start_system(tmp: Path, *, secured: bool = True) -> System:
    """A head-end, a display and a meter registered with the one and feeding the other."""
    sec = SECURED if secured else []
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", f"sqlite:///{tmp / 'h.db'}", "--collect-interval", "3600",
                       "--log-interval", "0", *sec])
    display = meter = None
    try:
        h_host, h_port = headend.address()
        web = headend.wait_for(r"console at http (\S+):(\d+)")
        display = Running(["ihd", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                           "--state-dir", str(tmp / "display"), *sec])
        d_host, d_port = display.address()
        page = display.wait_for(r"page at http (\S+):(\d+)")
        meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend", f"{h_host}:{h_port}",
                         "--ihd", f"{d_host}:{d_port}", "--state-dir", str(tmp / "meter"),
                         *sec])
        meter.address()
        system = System(headend, meter, display, f"http://{web.group(1)}:{web.group(2)}",
                        f"http://{page.group(1)}:{page.group(2)}")
        poll(lambda: any(n["ap_title"] == METER and n["state"] == "registered"
                         for n in httpx.get(f"{system.console}/api/nodes?latest=false",
                                            timeout=5).json()), "the meter registers")
        poll(lambda: httpx.get(f"{system.page}/api/live", timeout=5).json()["sample"],
             "the display receives samples")
        return system
    except BaseException:
        for p in (meter, display, headend):
            if p is not None:
                p.kill()
        raise


def poll(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def display_notice(system: System) -> dict[str, Any] | None:
    return httpx.get(f"{system.page}/api/notices", timeout=5).json()["notice"]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    s = start_system(tmp_path_factory.mktemp("notices"))
    yield s
    s.stop()


def test_a_notice_reaches_the_display_and_a_clear_takes_it_down(system: System) -> None:
    body = {"kind": "peak", "limit_kw": 1.5, "minutes": 30, "id": 501,
            "text_ko": "오늘 18시까지 피크 시간입니다", "text_en": "Peak period until 18:00"}
    r = httpx.put(f"{system.console}/api/nodes/{METER}/notice", json=body, timeout=20)
    assert r.status_code == 200 and r.json()["accepted"], r.text
    shown = poll(lambda: display_notice(system), "the notice reaches the display", 10)
    assert (shown["id"], shown["kind"], shown["limit_w"]) == (501, "peak", 1500)
    assert shown["text_ko"] == body["text_ko"] and shown["text_en"] == body["text_en"]
    assert shown["end"] - shown["start"] == 30 * 60
    r = httpx.delete(f"{system.console}/api/nodes/{METER}/notice", timeout=20)
    assert r.status_code == 200 and r.json()["accepted"]
    poll(lambda: display_notice(system) is None, "the display takes the notice down", 10)


def test_the_meter_keeps_its_notice_across_a_restart(tmp_path: Path) -> None:
    s = start_system(tmp_path, secured=False)
    try:
        r = httpx.put(f"{s.console}/api/nodes/{METER}/notice",
                      json={"kind": "text", "text_en": "Kept", "minutes": 600}, timeout=20)
        assert r.json()["accepted"]
        poll(lambda: display_notice(s), "the notice reaches the display", 10)
        s.meter.kill()  # kill -9: the notice was saved with the write that set it
        host, port = s.display.address()
        h_host, h_port = s.headend.address()
        s.meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend", f"{h_host}:{h_port}",
                           "--ihd", f"{host}:{port}", "--state-dir", str(tmp_path / "meter")])
        s.meter.address()
        back = poll(lambda: httpx.get(f"{s.console}/api/nodes/{METER}/notice",
                                      timeout=10).json() if _registered(s) else None,
                    "the restarted meter answers")
        assert back["notice"]["text_en"] == "Kept"
    finally:
        s.stop()


def _registered(s: System) -> bool:
    nodes = httpx.get(f"{s.console}/api/nodes?latest=false", timeout=5).json()
    return any(n["ap_title"] == METER and n["state"] == "registered" and n["connected"]
               for n in nodes)


# ------------------------------------------------------------------------------------------
# hostile writes of MT2 to a real meter over C12.22 (mode 2, the right key)


def test_hostile_writes_of_the_notice_table_are_refused(tmp_path: Path) -> None:
    env = build_tables().store.env  # the default meter's Table 0
    good = encode_table(NOTICE_TABLE, CustomerNotice(
        9, NoticeKind.TEXT, 0, 0, TimeDate(2026, 12, 6, 9, 0, 0), TimeDate(2026, 12, 6, 10, 0, 0),
        "점검 안내", "Maintenance"), env)
    bad_utf8 = good[:22] + b"\xc3\x28" + good[24:]
    backwards = good[:10] + good[16:22] + good[10:16] + good[22:]
    operator = SecurityRequest(PASSWORD, 2)
    reader = SecurityRequest(b"READER".ljust(20), 1)
    meter = start_meter(tmp_path, "--security-mode", "2")
    address = meter.address()

    async def attempts() -> dict[str, list[int]]:
        c = client(2)
        await c.connect(*address, timeout=10)
        out = {}
        for name, services in {
            "no security": [FullWriteRequest(NOTICE_TABLE, TableData(good))],
            "the reader": [reader, FullWriteRequest(NOTICE_TABLE, TableData(good))],
            "bad UTF-8": [operator, FullWriteRequest(NOTICE_TABLE, TableData(bad_utf8))],
            "end before start": [operator, FullWriteRequest(NOTICE_TABLE, TableData(backwards))],
            "one byte short": [operator, FullWriteRequest(NOTICE_TABLE, TableData(good[:-1]))],
            "bad checksum": [operator, FullWriteRequest(
                NOTICE_TABLE, TableData(good, checksums=bytes([(-sum(good) + 1) & 0xFF])))],
        }.items():
            out[name] = [r.response_code for r in await call(c, *services)]
        read = await call(c, operator, FullReadRequest(NOTICE_TABLE))
        out["unchanged"] = [int(read[1].table_data.data == encode_table(
            NOTICE_TABLE, cleared(env), env))]
        out["operator"] = [r.response_code for r in await call(
            c, operator, FullWriteRequest(NOTICE_TABLE, TableData(good)))]
        read = await call(c, operator, FullReadRequest(NOTICE_TABLE))
        out["written"] = [int(read[1].table_data.data == good)]
        c.link.close()
        return out

    try:
        got = asyncio.run(attempts())
    finally:
        assert meter.stop() == 0
    ISC, IAR, ERR = ResponseCode.ISC, ResponseCode.IAR, ResponseCode.ERR
    assert got == {"no security": [ISC], "the reader": [0, ISC], "bad UTF-8": [0, IAR],
                   "end before start": [0, IAR], "one byte short": [0, IAR],
                   "bad checksum": [0, ERR], "unchanged": [1], "operator": [0, 0],
                   "written": [1]}
