"""The head-end as a notification host of a master relay (headend/network.py).

Pure calls first (NetworkRegistrar with a made-up master relay: who may notify, the caps, the
flood bound), then a started head-end with a fake master relay on 127.0.0.1 (only wire
messages): it registers, learns a meter from the notification, reads it by title through the
master relay, names a relay's NETR, and shows the network with Trace and Resolve.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import (
    DeregisterRequest,
    ErrorResponse,
    FullReadRequest,
    OkResponse,
    ReadResponse,
    RegisterRequest,
    RegisterResponse,
)
from c1222.codes import NodeType, ResponseCode
from c1222.errors import DecodeError, ISC, ONP
from c1222.headend.network import (
    MasterRelay,
    NetworkRegistrar,
    decode_native_address,
    encode_native_address,
    native_address_text,
    relay_refusal,
)
from c1222.headend.registry import RegistrarServices
from c1222.headend.server import HeadEnd, HeadEndConfig
from c1222.headend.web import create_app
from c1222.session.responder import ServiceContext
from tests.unit.headend.fake_master import MASTER_TITLE, FakeMaster, Route
from tests.unit.headend.meter_double import MeterDouble

HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")
MASTER = Uid.parse(MASTER_TITLE)
METER = "2.16.124.113620.1.22.0.123.9001"
RELAY = "2.16.124.113620.1.22.0.123.60"
MASTER_LINK, OTHER_LINK = 7, 8
HOSTS = {MASTER_LINK: "10.0.0.1", OTHER_LINK: "10.0.0.66"}


# --------------------------------------------------------------------------- pure calls


def registrar(**kw: Any) -> tuple[NetworkRegistrar, list[str]]:
    told: list[str] = []
    inner = RegistrarServices(HEADEND, on_registered=lambda n: told.append("+" + n.ap_title),
                              on_deregistered=lambda n: told.append("-" + n.ap_title),
                              source_of=HOSTS.get, **kw)
    master = MasterRelay(("10.0.0.1", 1153), title=MASTER, link_id=MASTER_LINK,
                         host="10.0.0.1")
    return NetworkRegistrar(inner, master, host_of=HOSTS.get), told


def register(title: str, node_type: int = 0x20) -> RegisterRequest:
    return RegisterRequest(node_type=node_type, connection_type=0xF0, device_class=b"SIMU",
                           ap_title=Uid.parse(title), serial_number=Uid.parse(".1"),
                           native_address=encode_native_address("10.1.0.9", 1153),
                           registration_period=600)


def ctx(request: Any, peer: int, calling: Uid | None = MASTER, now: float = 1000.0
        ) -> ServiceContext:
    apdu = Apdu(epsem=Epsem(services=(request,)), calling_ap_invocation_id=1,
                called_ap_title=HEADEND, calling_ap_title=calling)
    return ServiceContext(peer=peer, now=now, apdu=apdu)


def test_a_notification_from_the_master_relay_records_the_node_via_it() -> None:
    net, told = registrar(max_per_source=1)
    for n in range(3):  # the per-address cap (1) does not apply: the master relay vouches
        request = register(f"{METER}{n}")
        answer = net.handle(request, ctx(request, MASTER_LINK))
        assert isinstance(answer, RegisterResponse) and answer.reg_ap_title == request.ap_title
    node = net.registrar.nodes[f"{METER}0"]
    assert node.extra["via"] == MASTER_TITLE and node.peer is None
    assert told == [f"+{METER}{n}" for n in range(3)]
    assert net.master.notifications["registered"] == 3
    itself = register(str(HEADEND))  # the master relay telling us of ourselves: not a node
    assert isinstance(net.handle(itself, ctx(itself, MASTER_LINK)), RegisterResponse)
    assert str(HEADEND) not in net.registrar.nodes
    # from the master relay's address over another link (it connected to us) also counts
    request = register(f"{METER}9")
    other = {**HOSTS, 9: "10.0.0.1"}
    net.host_of = other.get
    net.handle(request, ctx(request, 9))
    assert f"{METER}9" in net.registrar.nodes


def test_a_notification_from_elsewhere_is_refused_and_counted() -> None:
    net, told = registrar()
    request = register(METER)
    with pytest.raises(ISC, match="not from the master relay"):
        net.handle(request, ctx(request, OTHER_LINK))
    assert not net.registrar.nodes and not told
    assert net.master.notifications["refused"] == 1


def test_a_node_of_the_master_relay_is_deregistered_by_it_only() -> None:
    net, told = registrar(protect_titles=True)
    request = register(METER)
    net.handle(request, ctx(request, MASTER_LINK))
    bye = DeregisterRequest(Uid.parse(METER))
    with pytest.raises(ISC):  # a direct Deregister from anyone else
        net.handle(bye, ctx(bye, OTHER_LINK, calling=Uid.parse(METER)))
    again = register(METER)  # secured: no one else registers its title while it runs
    with pytest.raises(ISC):
        net.handle(again, ctx(again, OTHER_LINK, calling=Uid.parse(METER)))
    assert isinstance(net.handle(bye, ctx(bye, MASTER_LINK)), OkResponse)
    assert METER not in net.registrar.nodes and told == [f"+{METER}", f"-{METER}"]


def test_a_direct_registration_still_works_with_a_master_relay() -> None:
    net, _ = registrar()
    request = register(METER)
    net.handle(request, ctx(request, OTHER_LINK, calling=Uid.parse(METER)))
    node = net.registrar.nodes[METER]
    assert "via" not in node.extra and node.source == "10.0.0.66"


def test_a_notification_flood_is_bounded_by_max_nodes() -> None:
    net, told = registrar(max_nodes=50)
    refused = 0
    for n in range(500):
        request = register(f"{METER}.{n}")
        try:
            net.handle(request, ctx(request, MASTER_LINK))
        except ONP:
            refused += 1
    assert len(net.registrar.nodes) == 50 and refused == 450 and len(told) == 50
    # re-notifying a known node is an update, never refused; the same registration again
    # and again moves its last_seen and costs no storage write nor event
    request = register(f"{METER}.0")
    for n in range(1000):
        answer = net.handle(request, ctx(request, MASTER_LINK, now=2000.0 + n))
        assert isinstance(answer, RegisterResponse)
    assert len(told) == 50 and net.registrar.nodes[f"{METER}.0"].last_seen == 2999.0
    changed = dataclasses.replace(request, registration_period=900)
    net.handle(changed, ctx(changed, MASTER_LINK))
    assert len(told) == 51  # a real change is stored and announced


def test_relay_refusal_names_the_code_and_the_relay() -> None:
    def answer(code: int, calling: str) -> Apdu:
        return Apdu(epsem=Epsem(services=(ErrorResponse(response_code=code),)),
                    calling_ap_invocation_id=2, called_ap_invocation_id=1,
                    called_ap_title=HEADEND, calling_ap_title=Uid.parse(calling))

    text = relay_refusal(answer(ResponseCode.NETR, RELAY), METER)
    assert text is not None and text.startswith("NETR (Network Not Reachable) from relay "
                                                 + RELAY)
    assert "NETT" in (relay_refusal(answer(ResponseCode.NETT, RELAY), METER) or "")
    assert relay_refusal(answer(ResponseCode.UAT, METER), METER) is None  # the node's own
    assert relay_refusal(answer(ResponseCode.ISC, RELAY), METER) is None


def test_native_addresses_in_both_forms() -> None:
    assert decode_native_address(bytes([10, 0, 0, 5, 0x04, 0x81])) == ("10.0.0.5", 1153)
    assert decode_native_address(b"127.0.0.1:4000") == ("127.0.0.1", 4000)
    assert native_address_text(encode_native_address("::1", 9)) == "[::1]:9"
    assert native_address_text(b"\x01\x02\x03") == "010203"
    with pytest.raises(DecodeError):
        decode_native_address(b"meter.example.org:1153")  # a name: never looked up


# --------------------------------------------------------------------------- on the wire


def run(tmp: Path, body: Callable[[HeadEnd, FakeMaster, MeterDouble], Awaitable[None]],
        **config: Any) -> None:
    async def main() -> None:
        master = await FakeMaster().start()
        meter = await MeterDouble(METER).start()
        assert master.address is not None and meter.address is not None
        master.routes[METER] = Route(meter.address, path=(RELAY,))
        headend = HeadEnd(HeadEndConfig(
            listen=("127.0.0.1", 0), db=f"sqlite:///{tmp / 'h.db'}", collect_interval=3600.0,
            log_interval=0.0, timeout=3.0, master_relay=master.address, **config))
        await headend.start()
        try:
            assert headend.master_link is not None
            await asyncio.wait_for(headend.master_link.changed.wait(), 10)
            await body(headend, master, meter)
        finally:
            await headend.stop()
            await meter.stop()
            await master.stop()

    asyncio.run(main())


async def until(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_learns_a_meter_from_the_master_relay_and_reads_it_by_title(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, master: FakeMaster, meter: MeterDouble) -> None:
        assert headend.master is not None and headend.master.title == MASTER
        assert master.registers == 1
        answer = await master.notify(METER)
        assert isinstance(answer.epsem.services[0], RegisterResponse)
        node = headend.registrar.nodes[METER]
        assert node.extra["via"] == MASTER_TITLE
        exchange = await headend.call(METER, [FullReadRequest(1)])
        assert exchange.error is None
        assert isinstance(exchange.response.epsem.services[0], ReadResponse)
        assert await headend.collect(METER) > 0  # the collector reads it the same way
        stored = await headend.storage.get_node(METER)  # type: ignore[union-attr]
        assert stored is not None and stored.via == MASTER_TITLE
        # the relay below the master cannot reach it any more: a named NETR, counted
        master.routes[METER].down = True
        exchange = await headend.call(METER, [FullReadRequest(1)])
        assert exchange.error is not None and exchange.error.startswith("NETR")
        assert MASTER_TITLE in exchange.error
        with pytest.raises(Exception, match="NETR"):
            await headend.collect(METER)
        assert "NETR" in (headend.status(METER).last_error or "")
        # a Deregister notification removes it
        await master.notify(METER, deregister=True)
        assert METER not in headend.registrar.nodes

    run(tmp_path, body)


def test_a_notification_under_another_title_or_from_another_link_is_refused(
        tmp_path: Path) -> None:
    async def body(headend: HeadEnd, master: FakeMaster, meter: MeterDouble) -> None:
        # the master's link, but a calling title that is not the master relay's: a direct
        # registration on behalf of someone else, capped per address like any other
        answer = await master.notify(METER, calling=Uid.parse(RELAY))
        assert METER in headend.registrar.nodes
        assert "via" not in headend.registrar.nodes[METER].extra
        del headend.registrar.nodes[METER]
        # the master's title from a stranger's connection (another address would be refused
        # the same way; 127.0.0.1 is the master's host here, so the host check is unit-tested)
        assert headend.master is not None
        headend.master.host = "192.0.2.1"
        stranger = await master.endpoint.connect(*headend.address)  # type: ignore[misc]
        answer = await master.notify(METER, link=stranger)
        assert answer.epsem.services[0].response_code == ResponseCode.ISC
        assert METER not in headend.registrar.nodes
        assert headend.master.notifications["refused"] == 1

    run(tmp_path, body)


def test_the_network_view_traces_and_resolves_through_the_master(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, master: FakeMaster, meter: MeterDouble) -> None:
        await master.notify(METER)
        app = create_app(headend)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as client:
            view = (await client.get("/api/network")).json()
            assert view["master_relay"]["ap_title"] == MASTER_TITLE
            assert view["master_relay"]["registered"] is True
            [top] = view["relays"]
            assert top["master"] and [n["ap_title"] for n in top["nodes"]] == [METER]
            traced = (await client.post(f"/api/network/nodes/{METER}/trace")).json()
            assert traced["path"] == [MASTER_TITLE, RELAY] and traced["error"] is None
            resolved = (await client.post(f"/api/network/nodes/{METER}/resolve")).json()
            host, port = meter.address  # type: ignore[misc]
            assert resolved["native_address"] == f"{host}:{port}"
            view = (await client.get("/api/network")).json()
            behind = {r["ap_title"]: r for r in view["relays"]}
            assert [n["ap_title"] for n in behind[RELAY]["nodes"]] == [METER]
            assert behind[RELAY]["nodes"][0]["path"]["path"] == [MASTER_TITLE, RELAY]
            unknown = (await client.post(f"/api/network/nodes/{METER}.5/trace")).json()
            assert unknown["path"] is None and unknown["error"].startswith("UAT")
            bad = await client.post("/api/network/nodes/not-a-title/trace")
            assert bad.status_code == 404
            nodes = (await client.get("/api/nodes")).json()
            assert [n["via"] for n in nodes] == [MASTER_TITLE]
            # the node page's Resolve button asks the master relay for a node behind it
            answer = (await client.post(f"/api/nodes/{METER}/services/resolve")).json()
            assert answer["response_codes"] == ["ok"], answer
            assert MASTER_TITLE in str(answer["response"]["json"])

    run(tmp_path, body)


def test_re_registers_after_the_link_drops(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, master: FakeMaster, meter: MeterDouble) -> None:
        assert headend.master_link is not None and master.headend_link is not None
        headend.master_link.changed.clear()
        master.headend_link.close()
        await asyncio.wait_for(headend.master_link.changed.wait(), 15)
        assert master.registers == 2 and headend.master is not None
        assert headend.master.registered

    run(tmp_path, body)


def test_a_notification_before_the_register_response_is_read_is_the_masters() -> None:
    """The endpoint dispatches a notification queued behind the master relay's Register
    response before the registering task has read the response: over the link the head-end
    opened to it, the caller is the master relay."""
    net, _ = registrar()
    net.master.title = None
    request = register(RELAY, node_type=NodeType.RELAY)
    net.handle(request, ctx(request, MASTER_LINK))
    assert net.master.title == MASTER
    assert net.registrar.nodes[RELAY].extra["via"] == MASTER_TITLE
    stranger = register(METER)  # but not from another link: an ordinary direct Register
    net.master.title = None
    net.handle(stranger, ctx(stranger, OTHER_LINK, calling=Uid.parse(RELAY)))
    assert net.master.title is None and "via" not in net.registrar.nodes[METER].extra


def test_re_registers_before_the_granted_period_ends(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, master: FakeMaster, meter: MeterDouble) -> None:
        first = master.headend_link
        await until(lambda: master.registers >= 2, "a second Register", 10)
        assert master.headend_link is first and first is not None and not first.closed

    run(tmp_path, body, reg_period=2)  # granted 2 s: the next Register after 1.6 s
