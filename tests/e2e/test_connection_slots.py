"""Quiet peers holding every TCP slot no longer shut out a newcomer (issue 15 finding 9).

256 connections are opened from eight loopback addresses (127.0.0.2-9, 32 each) and held
silent; the real `c1222 headend` then still takes a new meter's registration, and the real
`c1222 meter` still serves a new client. One address alone cannot take more than
``max_per_address`` (64) slots.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from c1222.codec.ber import Uid
from c1222.codec.services import IdentifyRequest
from c1222.codes import ResponseCode
from c1222.crypto.nonces import TimeIvSource
from c1222.session.requester import Requester
from c1222.transport.client import Client, responses
from tests.e2e.hostile import raise_fd_limit
from tests.e2e.procs import Running

METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")
HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")
HELD = 256
SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]


def hold(address: tuple[str, int], count: int, sources: list[str]) -> list[socket.socket]:
    """``count`` silent connections, spread over ``sources``; bounded in time."""
    held = []
    deadline = time.monotonic() + 60
    for i in range(count):
        assert time.monotonic() < deadline, "opening the held connections took too long"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((sources[i % len(sources)], 0))
        sock.settimeout(5)
        sock.connect(address)
        held.append(sock)
    return held


def closed_count(socks: list[socket.socket]) -> int:
    n = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            n += sock.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            n += 1
    return n


async def identify(address: tuple[str, int]) -> int:
    c = Client(Requester(HEADEND, TimeIvSource(time.time)))
    await c.connect(*address)
    try:
        got = responses(await c.call([IdentifyRequest()], called=METER, timeout=10))
        return got[0].response_code
    finally:
        await c.close()


def test_a_new_meter_registers_while_quiet_peers_hold_every_head_end_slot(
        tmp_path: Path) -> None:
    raise_fd_limit(HELD + 256, "holding every slot")
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", f"sqlite:///{tmp_path}/h.db", "-v"])
    held: list[socket.socket] = []
    meter = None
    try:
        address = headend.address()
        held = hold(address, HELD, SOURCES)
        time.sleep(0.5)
        assert closed_count(held) == 0  # all 256 slots are taken by silent peers
        meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend",
                         f"{address[0]}:{address[1]}", "--state-dir", str(tmp_path / "m"),
                         "-v"])
        meter.address()
        meter.wait_for("registered with", timeout=60)
        assert closed_count(held) >= 1  # the longest-idle silent peer made room
    finally:
        for sock in held:
            sock.close()
        if meter is not None:
            assert meter.stop() == 0, "\n".join(meter.lines[-40:])
        assert headend.stop() == 0


def test_a_meter_serves_a_new_client_while_its_slots_are_held(tmp_path: Path) -> None:
    raise_fd_limit(HELD + 256, "holding every slot")
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "m")])
    held: list[socket.socket] = []
    try:
        address = meter.address()
        held = hold(address, HELD, SOURCES)
        time.sleep(0.5)
        assert closed_count(held) == 0
        for _ in range(3):  # each newcomer takes the slot of the longest-idle held one
            assert asyncio.run(identify(address)) == ResponseCode.OK
        # One address cannot take more than max_per_address (64) of the slots.
        flood = hold(address, 80, ["127.0.0.20"])
        time.sleep(0.5)
        assert closed_count(flood) == 80 - 64
        for sock in flood:
            sock.close()
    finally:
        for sock in held:
            sock.close()
        assert meter.stop() == 0, "\n".join(meter.lines[-40:])


def test_the_head_ends_connection_caps_are_options(tmp_path: Path) -> None:
    # A fleet of simulated meters on one host needs more than 64 connections from one address
    # (docs/fleet.md); the caps are the head-end's options, checked both ways here.
    raise_fd_limit(512, "connections over the default per-address cap")
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", f"sqlite:///{tmp_path}/h.db", "--max-connections", "300",
                       "--max-connections-per-address", "100"])
    flood: list[socket.socket] = []
    try:
        address = headend.address()
        flood = hold(address, 120, ["127.0.0.30"])
        time.sleep(0.5)
        assert closed_count(flood) == 120 - 100  # not 120 - 64: the option raised the cap
    finally:
        for sock in flood:
            sock.close()
        assert headend.stop() == 0
