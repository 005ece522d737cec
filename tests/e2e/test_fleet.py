"""`c1222 fleet` started as a user would, against a real `c1222 headend` and head-end doubles.

50 meters over 2 workers register and are read (the head-end's API lists 50 nodes with
readings); the conformance tester passes on a fleet meter what it passes on `c1222 meter`;
a request for a title no worker holds gets UAT on TCP and UDP; Ctrl-C prints the summary.
Hostile head-ends: one that refuses every Register (the fleet backs off: no tight loop), one
that is down when the fleet starts (the meters register once it is up).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from c1222.codec.ber import Uid
from c1222.codec.services import (
    ErrorResponse, IdentifyRequest, IdentifyResponse, RegisterRequest,
    RegisterResponse,
)
from c1222.codes import ResponseCode
from c1222.crypto.nonces import RandomNonceSource
from c1222.errors import BSY
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig
from c1222.transport.client import Client, responses
from c1222.transport.endpoint import Endpoint, Link
from tests.e2e.procs import Running
from tests.e2e.test_conformance import free_port

HEADEND = "2.16.124.113620.1.22.0.123.4"
FIRST = "2.16.124.113620.1.22.0.123.100000"
WORKER = re.compile(r"fleet worker (\d+) listening on tcp\+udp (\S+):(\d+)")


def fleet(*args: str) -> Running:
    return Running(["fleet", *args])


def workers(run: Running, count: int) -> list[tuple[str, int]]:
    run.wait_for(rf"fleet worker {count - 1} listening", 60)
    found = [WORKER.search(line) for line in run.lines]
    return [(m.group(2), int(m.group(3))) for m in found if m]


def summary(run: Running) -> dict[str, int]:
    text = "\n".join(run.lines)
    ok = re.search(r"registrations ok ([\d,]+), failed ([\d,]+)", text)
    end = re.search(r"registered at the end: ([\d,]+) of", text)
    assert ok and end, text
    number = lambda s: int(s.replace(",", ""))  # noqa: E731
    return {"ok": number(ok.group(1)), "failed": number(ok.group(2)),
            "registered": number(end.group(1))}


def start_headend(tmp: Path, *extra: str) -> tuple[Running, tuple[str, int], str]:
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", f"sqlite:///{tmp}/headend.db", "--collect-interval", "1",
                       "--log-interval", "0", *extra])
    address = headend.address()
    web = headend.wait_for(r"console at http (\S+):(\d+)")
    return headend, address, f"http://{web.group(1)}:{web.group(2)}"


def poll(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def conformance(target: tuple[str, int], tmp: Path, name: str, *extra: str) -> dict:
    run = Running(["conformance", f"{target[0]}:{target[1]}", "--user-id", "2",
                   "--password", "PASSWORD", "--json", str(tmp / f"{name}.json"), *extra])
    assert run.proc.wait(120) in (0, 1), "\n".join(run.lines)
    run._reader.join(5)
    return json.loads((tmp / f"{name}.json").read_text())


def ask(address: tuple[str, int], title: str, transport: str) -> list:
    """An Identify of ``title`` at ``address``: the response services."""

    async def go() -> list:
        client = Client(Requester(Uid.parse(HEADEND), RandomNonceSource()))
        try:
            await client.connect(*address, transport)
            apdu = await client.call([IdentifyRequest()], called=Uid.parse(title), timeout=10)
            return responses(apdu)
        finally:
            await client.close()

    return asyncio.run(go())


def test_fleet_registers_is_read_passes_conformance_and_stops_with_a_summary(
        tmp_path: Path) -> None:
    headend, address, web = start_headend(tmp_path)
    run = fleet("--meters", "50", "--workers", "2", "--headend", f"{address[0]}:{address[1]}",
                "--ramp", "1", "--speed", "60")
    single = None
    try:
        ports = workers(run, 2)
        assert len(ports) == 2 and ports[0] != ports[1]
        run.wait_for(r"fleet: all 50 meters registered", 60)

        def read_all() -> bool:
            nodes = httpx.get(f"{web}/api/nodes", timeout=10).json()
            return len(nodes) == 50 and all(n["latest"] for n in nodes)

        poll(read_all, 60, "the head-end lists 50 nodes with readings")
        nodes = httpx.get(f"{web}/api/nodes", timeout=10).json()
        titles = {n["ap_title"] for n in nodes}
        assert titles == {f"2.16.124.113620.1.22.0.123.{100000 + i}" for i in range(50)}
        # each meter's native address is its worker's shared port
        assert {n["native_address"] for n in nodes} == {f"{h}:{p}" for h, p in ports}
        powers = {n["latest"]["values"]["active_power"] for n in nodes}
        assert len(powers) > 5  # households differ

        # a title no worker holds: UAT, on TCP and on UDP
        for transport in ("tcp", "udp"):
            answer = ask(ports[0], "2.16.124.113620.1.22.0.123.999999", transport)
            assert [type(r) for r in answer] == [ErrorResponse], answer
            assert answer[0].response_code == ResponseCode.UAT
        # a fleet meter answers on its worker's port, another worker's meter does not
        assert ask(ports[1], "2.16.124.113620.1.22.0.123.100049", "udp")[0].response_code == 0
        assert ask(ports[0], "2.16.124.113620.1.22.0.123.100049", "tcp")[0].response_code \
            == ResponseCode.UAT

        # conformance: a fleet meter passes what `c1222 meter` passes
        single = Running(["meter", "--listen", "127.0.0.1:0"])
        ours = conformance(ports[0], tmp_path, "fleet", "--called-ap-title", FIRST)
        theirs = conformance(single.address(), tmp_path, "single")
        verdicts = lambda r: {(c["case"], c["mode"], c["transport"]): c["verdict"]  # noqa: E731
                              for c in r["cases"]}
        assert verdicts(ours) == verdicts(theirs)
        assert ours["summary"]["fail"] == 0 and ours["summary"]["pass"] > 10
    finally:
        if single is not None:
            single.stop()
        status = run.stop()
        headend.stop()
    assert status == 0, "\n".join(run.lines)
    counts = summary(run)
    assert counts["registered"] == 50 and counts["ok"] >= 50 and counts["failed"] == 0
    text = "\n".join(run.lines)
    assert re.search(r"requests served: .*full_read [\d,]+", text), text
    assert re.search(r"requests for unknown AP titles [1-9]", text), text
    assert "fleet stopped" in text and "Traceback" not in text


# ------------------------------------------------------------------ hostile head-ends


class _Registrar:
    """A head-end double: answers Register (or refuses it with BSY, or closes the connection
    after answering) and counts them."""

    def __init__(self, refuse: bool, close: bool = False, assign: bool = False) -> None:
        self.refuse = refuse
        self.close = close
        self.assign = assign  # a relay's master: assigns a title to a node that sends none
        self.registers: list[str] = []

    def handle(self, request, ctx):  # type: ignore[no-untyped-def]
        if isinstance(request, RegisterRequest):
            self.registers.append(str(request.ap_title))
            if self.refuse:
                raise BSY("busy")
            ctx.close = self.close
            title = request.ap_title
            if self.assign and not title.arcs:
                title = Uid.parse(f"2.16.124.113620.1.22.0.777.{len(self.registers)}")
            return RegisterResponse(reg_ap_title=title, reg_delay=0,
                                    reg_period=3600, reg_info=0)
        raise BSY("only Register here")

    def authenticate(self, user_id, password):  # type: ignore[no-untyped-def]
        raise BSY("no")

    def notice(self, event, ctx, detail=""):  # type: ignore[no-untyped-def]
        pass


class HeadEndDouble:
    """The double on its own event loop in a thread, on ``port`` (0: any)."""

    def __init__(self, refuse: bool, port: int = 0, close: bool = False,
                 assign: bool = False) -> None:
        self.registrar = _Registrar(refuse, close, assign)
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> HeadEndDouble:
        self.thread.start()
        responder = Responder(ResponderConfig(ap_title=Uid.parse(HEADEND)), self.registrar,
                              RandomNonceSource())

        async def on_request(data: bytes, link: Link) -> tuple[bytes | None, bool]:
            reply = responder.receive(data, link.id, time.time())
            return reply.data, reply.close

        async def start() -> tuple[str, int]:
            self.endpoint = Endpoint(on_request)
            return await self.endpoint.listen("127.0.0.1", self.port)

        self.address = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.endpoint.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(params=["refuses", "closes"])
def refusing(request: pytest.FixtureRequest) -> Iterator[HeadEndDouble]:
    with HeadEndDouble(refuse=request.param == "refuses",
                       close=request.param == "closes") as double:
        yield double


def test_a_head_end_that_refuses_or_drops_every_registration_gets_backed_off_retries(
        refusing: HeadEndDouble) -> None:
    host, port = refusing.address
    run = fleet("--meters", "3", "--headend", f"{host}:{port}", "--ramp", "0")
    try:
        workers(run, 1)
        # every meter tried, and tried again after its back-off
        poll(lambda: len(refusing.registrar.registers) >= 6, 30, "second attempts")
        seen = len(refusing.registrar.registers)
        time.sleep(2)  # a window to count in: a tight loop would send thousands
        later = len(refusing.registrar.registers)
    finally:
        status = run.stop()
    assert status == 0, "\n".join(run.lines)
    # back-off 1, 2, 4 s (x 0.5..1.5): at most a few attempts per meter in the window
    assert later - seen <= 3 * 3, refusing.registrar.registers
    counts = summary(run)
    if refusing.registrar.refuse:
        assert counts["registered"] == 0 and counts["ok"] == 0 and counts["failed"] >= 6
        assert "BSY" in "\n".join(run.lines)  # the summary names the refusal
    else:  # each registration was answered, then its connection closed
        assert counts["ok"] >= 6


def test_a_head_end_down_at_start_is_registered_with_once_it_is_up() -> None:
    port = free_port()
    run = fleet("--meters", "5", "--headend", f"127.0.0.1:{port}", "--ramp", "0")
    try:
        workers(run, 1)
        time.sleep(1.5)  # the head-end is down: the meters' first attempts fail
        with HeadEndDouble(refuse=False, port=port) as double:
            run.wait_for(r"fleet: all 5 meters registered", 30)
            assert len(set(double.registrar.registers)) == 5
    finally:
        status = run.stop()
    assert status == 0, "\n".join(run.lines)
    counts = summary(run)
    assert counts["ok"] >= 5 and 5 <= counts["failed"] <= 5 * 4, counts


def test_through_a_relay_meters_send_empty_titles_and_answer_to_the_assigned_ones() -> None:
    with HeadEndDouble(refuse=False, assign=True) as relay:
        host, port = relay.address
        run = fleet("--meters", "3", "--relay", f"{host}:{port}", "--ramp", "0")
        try:
            (address,) = workers(run, 1)
            run.wait_for(r"fleet: all 3 meters registered", 30)
            assert relay.registrar.registers[:3] == ["."] * 3  # empty relative titles
            assigned = [f"2.16.124.113620.1.22.0.777.{n}" for n in (1, 2, 3)]
            for title in assigned:
                assert isinstance(ask(address, title, "tcp")[0], IdentifyResponse)
            # the titles they were built with are no longer theirs
            assert ask(address, FIRST, "udp")[0].response_code == ResponseCode.UAT
        finally:
            status = run.stop()
    assert status == 0, "\n".join(run.lines)


MASTER = "2:000102030405060708090A0B0C0D0E0F"
OTHER_MASTER = "2:0F0E0D0C0B0A09080706050403020100"


def test_a_mode_2_fleet_with_per_meter_keys_is_read_by_a_head_end_that_derives_them(
        tmp_path: Path) -> None:
    """`c1222 headend --master-key` derives each meter's key as `c1222 fleet --master-key`
    does (crypto.keys.derive_key): every meter registers and is read in mode 2. A head-end with
    another master, or holding the master as a plain shared key, registers none of them."""
    headend, address, web = start_headend(tmp_path, "--security-mode", "2",
                                          "--master-key", MASTER,
                                          "--max-registrations-per-address", "0")
    run = fleet("--meters", "20", "--workers", "2", "--headend", f"{address[0]}:{address[1]}",
                "--ramp", "0", "--security-mode", "2", "--master-key", MASTER)
    try:
        run.wait_for(r"fleet: all 20 meters registered", 60)

        def read_all() -> bool:
            nodes = httpx.get(f"{web}/api/nodes", timeout=10).json()
            return len(nodes) == 20 and all(n["latest"] for n in nodes)

        poll(read_all, 60, "the head-end lists 20 nodes with readings")
    finally:
        status = run.stop()
        headend.stop()
    assert status == 0, "\n".join(run.lines)
    assert summary(run)["failed"] == 0
    # the wrong secret: another master, or the master used as every meter's key
    for wrong, flag in ((OTHER_MASTER, "--master-key"), (MASTER, "--key")):
        name = f"wrong{flag.strip('-')}"
        (tmp_path / name).mkdir()
        other, other_address, other_web = start_headend(
            tmp_path / name, "--security-mode", "2", flag, wrong,
            "--max-registrations-per-address", "0")
        run = fleet("--meters", "3", "--headend", f"{other_address[0]}:{other_address[1]}",
                    "--ramp", "0", "--security-mode", "2", "--master-key", MASTER)
        try:
            run.wait_for(r"fleet worker 0 listening", 60)
            time.sleep(4)  # a few registration attempts each (1 s back-off, doubling)
            assert httpx.get(f"{other_web}/api/nodes", timeout=10).json() == []
        finally:
            status = run.stop()
            other.stop()
        assert status == 0, "\n".join(run.lines)
        counts = summary(run)
        assert counts["ok"] == 0 and counts["registered"] == 0 and counts["failed"] >= 3, counts
