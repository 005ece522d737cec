"""`c1222 relay` on loopback, started as a user would: a master relay, two levels of relays and
meters that register with the empty title behind the lower one (docs/network.md).

The client is the project's own Requester/Client, speaking to the master relay only and
reaching every meter by its assigned title alone.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import (
    DeregisterRequest,
    ErrorResponse,
    FullReadRequest,
    IdentifyRequest,
    IdentifyResponse,
    OkResponse,
    ReadResponse,
    RegisterRequest,
    RegisterResponse,
    Request,
    ResolveRequest,
    ResolveResponse,
    Response,
    TraceRequest,
    TraceResponse,
)
from c1222.codes import ResponseCode
from c1222.crypto.nonces import RandomNonceSource, TimeIvSource
from c1222.relay.node import STATISTIC_CODES
from c1222.session.registrar import decode_native
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig, ServiceContext
from c1222.tables.access import Principal
from c1222.tables.decade12 import NetworkStatistics
from c1222.tables.engine import TableEnv, decode_record
from c1222.tables.types import TableContext
from c1222.transport.client import Client, responses
from c1222.transport.endpoint import Endpoint, Link
from tests.e2e.procs import Running
from tests.e2e.test_meter import KEY_HEX, KEYS
from tests.e2e.test_meter_network import free_port

BASE = "2.16.124.113620.1.22.0.123"
MASTER, R1, R2 = f"{BASE}.1", f"{BASE}.2", f"{BASE}.3"
HEADEND = Uid.parse(f"{BASE}.4")
BRANCH = f"{BASE}.9000"
REGISTERED = re.compile(r"meter ([0-9.]+) assigned by the master relay")


def security(mode: int) -> list[str]:
    return [] if mode == 0 else ["--security-mode", str(mode), "--key", f"2:{KEY_HEX}"]


def relay(title: str, mode: int, *extra: str, listen: str = "127.0.0.1:0") -> Running:
    return Running(["relay", "--ap-title", title, "--listen", listen, "-v", *security(mode),
                    *extra])


def where(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


class Net:
    """The processes of one test; all are stopped (or killed) at the end."""

    def __init__(self) -> None:
        self.procs: list[Running] = []

    def start(self, proc: Running) -> Running:
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.proc.poll() is None:
                proc.kill()


def statistics(read: Response) -> dict[int, int]:
    """Table 127 as {code: value} (the relay's Table 0 is little-endian, two's complement)."""
    assert isinstance(read, ReadResponse), read
    table = decode_record(NetworkStatistics, read.table_data.data,
                          TableEnv(TableContext(), {}))
    return {s.statistic_code: s.statistic_value for s in table.statistics}


class Caller:
    """One requester (one nonce source: no two requests share an IV and A8) on one link."""

    def __init__(self, mode: int) -> None:
        self.requester = Requester(HEADEND, TimeIvSource(time.time), keys=KEYS,
                                   security_mode=mode, key_id=2 if mode else None)
        self.client = Client(self.requester)

    async def connect(self, address: tuple[str, int]) -> Link:
        return await self.client.connect(*address)

    async def call(self, services: Sequence[Request], called: str | Uid,
                   timeout: float = 10.0, link: Link | None = None) -> Response:
        title = called if isinstance(called, Uid) else Uid.parse(called)
        apdu = await self.client.call(services, called=title, timeout=timeout, link=link)
        self.last = apdu
        return responses(apdu)[0]

    async def until(self, services: Sequence[Request], called: str, kind: type,
                    timeout: float) -> Response:
        """Ask until the answer is a ``kind`` (a path that is coming back)."""
        deadline = time.monotonic() + timeout
        answer: object = None
        while time.monotonic() < deadline:
            try:
                answer = await self.call(services, called, timeout=5.0)
            except Exception as exc:  # noqa: BLE001 - a time-out while the path heals
                answer = exc
            if isinstance(answer, kind):
                return answer
            await asyncio.sleep(0.3)
        raise AssertionError(f"no {kind.__name__} from {called} in {timeout} s: {answer!r}")


@pytest.mark.parametrize("mode", [0, 2])
def test_meters_behind_two_relays_get_titles_and_are_reached_by_title(
        tmp_path: Path, mode: int) -> None:
    net = Net()
    try:
        master = net.start(relay(MASTER, mode, "--master", "--reg-delay", "1",
                                 "--assign-branch", BRANCH, "--forward-timeout", "5"))
        master_at = master.address()
        r1 = net.start(relay(R1, mode, "--upstream", where(master_at), "--forward-timeout",
                             "5", "--connect-timeout", "2"))
        r1_at = r1.address()
        r2 = net.start(relay(R2, mode, "--upstream", where(r1_at)))
        r2_at = r2.address()
        meters = [net.start(Running(["meter", "--listen", "127.0.0.1:0", "--relay",
                                     where(r2_at), "--serial-number", str(n + 1),
                                     "--state-dir", str(tmp_path / f"m{n}"),
                                     *security(mode)]))
                  for n in range(2)]
        places = [m.address() for m in meters]
        titles = [m.wait_for(REGISTERED, 30).group(1) for m in meters]
        assert len(set(titles)) == 2 and all(t.startswith(BRANCH + ".") for t in titles)
        assert "listening on tcp+udp" in master.lines[0] and "(master)" in master.lines[0]

        async def scenario() -> None:
            caller = Caller(mode)
            await caller.connect(master_at)
            for title, place in zip(titles, places):
                read = await caller.call([FullReadRequest(1)], title)
                assert isinstance(read, ReadResponse), read
                # mode 0: every relay on the way set the proxy bit; secured: untouched
                assert caller.last.epsem.proxy_service_used == (mode == 0)
                resolved = await caller.call([ResolveRequest(Uid.parse(title))], MASTER)
                assert isinstance(resolved, ResolveResponse), resolved
                assert decode_native(resolved.native_address) == place
                traced = await caller.call([TraceRequest(Uid.parse(title))], MASTER)
                assert isinstance(traced, TraceResponse), traced
                assert [str(t) for t in traced.ap_titles] == [MASTER, R1, R2]
            unknown = await caller.call([FullReadRequest(1)], f"{BASE}.77")
            assert isinstance(unknown, ErrorResponse)
            assert unknown.response_code == ResponseCode.UAT
            # the relay's own tables, over C12.22, through the master and R1
            stats = statistics(await caller.call([FullReadRequest(127)], R2))
            assert stats[STATISTIC_CODES["apdus_forwarded"]] >= 4
            assert stats[STATISTIC_CODES["registrations_received"]] >= 2
            identity = await caller.call([IdentifyRequest()], R1)
            assert isinstance(identity, IdentifyResponse)
            if mode != 2:
                return
            # the middle relay stops: NETR (or NETT) within the request's time-out
            r1.kill()
            failed = await caller.call([FullReadRequest(1)], titles[0], timeout=15.0)
            assert isinstance(failed, ErrorResponse), failed
            assert failed.response_code in (ResponseCode.NETR, ResponseCode.NETT)
            # it comes back on its address: R2 registers anew, the meters re-register, and
            # reads resume with no operator action
            net.start(relay(R1, mode, "--upstream", where(master_at), listen=where(r1_at)))
            for title in titles:
                await caller.until([FullReadRequest(1)], title, ReadResponse, 45.0)
            await caller.client.close()

        asyncio.run(scenario())
        for proc in (*meters, r2, master):
            assert proc.stop() == 0
    finally:
        net.close()


async def _registers(address: tuple[str, int], services: Sequence[RegisterRequest],
                     source: str = "127.0.0.1", mode: int = 2) -> list[Response]:
    """Register requests on one TCP connection from ``source`` (a loopback address)."""
    requester = Requester(None, RandomNonceSource(), keys=KEYS, security_mode=mode,
                          key_id=2 if mode else None)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    await loop.sock_connect(sock, address)
    reader, writer = await asyncio.open_connection(sock=sock)
    answers = []
    try:
        for service in services:
            requester.ap_title = service.ap_title if service.ap_title.arcs else None
            pending = requester.request([service], None)
            writer.write(pending.data)
            answers.append(await asyncio.wait_for(_read_response(reader, requester, pending), 10))
    finally:
        writer.close()
    return answers


async def _read_response(reader: asyncio.StreamReader, requester: Requester, pending) -> Response:
    head = await reader.readexactly(2)
    length = head[1]
    extra = b""
    if length & 0x80:
        extra = await reader.readexactly(length & 0x7F)
        length = int.from_bytes(extra, "big")
    data = head + extra + await reader.readexactly(length)
    return responses(requester.accept(data, pending, time.time()))[0]


def _register(title: str | None, port: int = 1153) -> RegisterRequest:
    return RegisterRequest(node_type=0x20, connection_type=0xF0, device_class=b"TEST",
                           ap_title=Uid.parse(title) if title else Uid((), relative=True),
                           serial_number=Uid.parse(".1"),
                           native_address=bytes([127, 0, 0, 1]) + port.to_bytes(2, "big"),
                           registration_period=600)


def test_hostile_nodes_cannot_take_titles_flood_or_loop(tmp_path: Path) -> None:
    net = Net()
    try:
        master = net.start(relay(MASTER, 2, "--master", "--assign-branch", BRANCH))
        master_at = master.address()
        lower = net.start(relay(R1, 2, "--upstream", where(master_at), "--max-per-source", "3"))
        lower_at = lower.address()
        lower.wait_for("registered upstream", 30)
        # a routing loop: A's upstream is B and B's is A (neither is the master)
        a_port, b_port = free_port(), free_port()
        loop_a = net.start(relay(f"{BASE}.51", 0, "--upstream", f"127.0.0.1:{b_port}",
                                 "--forward-timeout", "5", listen=f"127.0.0.1:{a_port}"))
        loop_b = net.start(relay(f"{BASE}.52", 0, "--upstream", f"127.0.0.1:{a_port}",
                                 "--forward-timeout", "5", listen=f"127.0.0.1:{b_port}"))
        loop_a.address()
        loop_b.address()

        async def scenario() -> None:
            held = f"{BASE}.600"
            # a title held from 127.0.0.1 cannot be taken from 127.0.0.2 (mode 2: ISC)
            (first,) = await _registers(master_at, [_register(held)])
            assert isinstance(first, RegisterResponse), first
            (forged,) = await _registers(master_at, [_register(held, 9)], source="127.0.0.2")
            assert isinstance(forged, ErrorResponse) and forged.response_code == ResponseCode.ISC
            (again,) = await _registers(master_at, [_register(held)])
            assert isinstance(again, RegisterResponse)  # the holder itself still may
            # a flood of empty-title Registers from one address through a relay is capped
            flood = await _registers(lower_at, [_register(None)] * 5, source="127.0.0.3")
            granted = [a for a in flood if isinstance(a, RegisterResponse)]
            refused = [a for a in flood if isinstance(a, ErrorResponse)]
            assert len(granted) == 3 and len({str(a.reg_ap_title) for a in granted}) == 3
            assert [a.response_code for a in refused] == [ResponseCode.ONP] * 2
            # a response nobody asked for, and junk, are dropped; the relay goes on
            caller = Caller(2)
            link = await caller.connect(lower_at)
            stray = acse.encode(acse.Apdu(
                epsem=Epsem(services=(OkResponse(),)), calling_ap_invocation_id=5,
                called_ap_invocation_id=12345, called_ap_title=Uid.parse(f"{BASE}.999"),
                calling_ap_title=Uid.parse(f"{BASE}.998")))
            await link.send(stray)
            await link.send(b"\x60\x03\xa1\x01\x00")  # framed, but no APDU inside
            stats = statistics(await caller.call([FullReadRequest(127)], R1, link=link))
            assert stats[STATISTIC_CODES["responses_unmatched"]] >= 1
            assert stats[STATISTIC_CODES["apdus_dropped"]] >= 2
            assert stats[STATISTIC_CODES["registrations_denied"]] >= 2
            # a message sent round the loop comes back refused, not forever
            looper = Caller(0)
            await looper.connect(("127.0.0.1", a_port))
            lost = await looper.call([FullReadRequest(1)], f"{BASE}.888", timeout=15.0)
            assert isinstance(lost, ErrorResponse), lost
            assert lost.response_code in (ResponseCode.NETR, ResponseCode.NETT)
            stats = statistics(await looper.call([FullReadRequest(127)], f"{BASE}.51"))
            assert stats[STATISTIC_CODES["loops_refused"]] >= 1
            await caller.client.close()
            await looper.client.close()

        asyncio.run(scenario())
        assert lower.stop() == 0 and master.stop() == 0
    finally:
        net.close()


class _Host:
    """A notification host in-process: registers with the master relay and records the
    Register and Deregister requests the master sends it (design-16 decision 6)."""

    def __init__(self) -> None:
        self.heard: list[Request] = []
        self.responder = Responder(ResponderConfig(ap_title=HEADEND), self,
                                   RandomNonceSource())
        self.endpoint = Endpoint(self._on_request)

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        reply = self.responder.receive(data, link.id, time.time())
        return reply.data, reply.close

    def handle(self, request: Request, ctx: ServiceContext) -> Response:
        self.heard.append(request)
        return OkResponse()

    def authenticate(self, user_id: int, password: bytes) -> Principal:
        raise AssertionError("not used")

    def notice(self, event: str, ctx: ServiceContext | None, detail: str = "") -> None:
        pass


def test_the_master_tells_notification_hosts_who_registers() -> None:
    net = Net()
    try:
        master = net.start(relay(MASTER, 0, "--master", "--assign-branch", BRANCH))
        master_at = master.address()

        async def scenario() -> None:
            host = _Host()
            client = Client(Requester(HEADEND, RandomNonceSource()), host.endpoint)
            await client.connect(*master_at)
            answer = await client.call([RegisterRequest(
                node_type=0x0C, connection_type=0xF0, device_class=b"HEND", ap_title=HEADEND,
                serial_number=Uid.parse(".4"), native_address=bytes([127, 0, 0, 1, 4, 129]),
                registration_period=600)], called=Uid.parse(MASTER))
            assert isinstance(responses(answer)[0], RegisterResponse)
            (granted,) = await _registers(master_at, [_register(None, 4242)], mode=0)
            assert isinstance(granted, RegisterResponse)
            title = granted.reg_ap_title

            async def heard(kind: type) -> Request:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    for request in host.heard:
                        if isinstance(request, kind) and request.ap_title == title:
                            return request
                    await asyncio.sleep(0.05)
                raise AssertionError(f"no {kind.__name__} for {title}: {host.heard}")

            told = await heard(RegisterRequest)
            assert told.native_address == bytes([127, 0, 0, 1]) + (4242).to_bytes(2, "big")
            assert told.node_type == 0x20 and told.device_class == b"TEST"
            gone = await client.call([DeregisterRequest(title)], called=Uid.parse(MASTER))
            assert isinstance(responses(gone)[0], OkResponse)
            await heard(DeregisterRequest)
            await client.close()
            await host.endpoint.close()

        asyncio.run(scenario())
        assert master.stop() == 0
    finally:
        net.close()
