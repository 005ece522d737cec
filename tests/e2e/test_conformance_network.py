"""`c1222 conformance` through a real relay network (master relay, relay, meter that asked for
its title), as a user runs it: registered with the master relay as a notification host, the
tester judges the master relay's notification of the meter as Register and runs every case
through the master relay in security modes 0 and 2 — all 13 services PASS, Resolve and Trace
included, and a request larger than the tester's segment size sent as segments through the
relays (only the self-Deregister is NOT TESTED: it needs --deregister); and the same run
against the relay itself, judged by the rules for relays."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from c1222.cli.conformance import NETWORK_TESTER_TITLE
from c1222.codec.ber import Uid
from c1222.codec.native import encode_native_address
from c1222.codec.services import RegisterRequest
from c1222.codes import NodeType
from c1222.crypto.nonces import RandomNonceSource
from c1222.headend.conformance.rules import RELAY_NEED_NOT_SERVE
from c1222.headend.registry import RegistrarServices
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig
from c1222.transport.endpoint import Endpoint, Link

from tests.e2e.relay_net import KEY_HEX, MASTER, RELAY, RelayNet
from tests.e2e.test_conformance import Conformance

SERVICES = {"Identify", "Full read", "Partial read offset", "Partial read index", "Default read",
            "Full write", "Partial write offset", "Partial write index", "Logon", "Security",
            "Logoff", "Terminate", "Disconnect", "Wait", "Register", "Deregister", "Resolve",
            "Trace"}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayNet]:
    with RelayNet(tmp_path_factory.mktemp("relaynet")) as running:
        yield running


def test_a_meter_behind_the_relay_passes_every_service_in_modes_0_and_2(
        net: RelayNet, tmp_path: Path) -> None:
    host, port = net.master_address
    out = tmp_path / "report.json"
    run = Conformance([
        "--master-relay", f"{host}:{port}", "--security-mode", "0,2",
        "--key", f"2:{KEY_HEX}", "--user-id", "2", "--password", "PASSWORD",
        "--register-timeout", "20", "--timeout", "10", "--segment-size", "128",
        "--deregister", "--json", str(out)])
    status = run.finish(120)
    report = json.loads(out.read_text())
    lines = "\n".join(run.lines)
    assert status == 0, lines
    assert report["error"] is None and report["summary"]["fail"] == 0, lines
    rows = report["cases"]
    assert {r["service"] for r in rows if r["verdict"] == "PASS"} == SERVICES
    assert all(r["verdict"] == "PASS" for r in rows), lines
    title = report["called_ap_title"]
    assert title.startswith("2.16.124.113620.1.22.0.123.9000."), title  # assigned
    for mode in (0, 2):
        by_case = {r["case"]: r for r in rows if r["mode"] == mode}
        assert f"path {RELAY}" in by_case["trace"]["reason"] or \
            f"path {MASTER} > {RELAY}" in by_case["trace"]["reason"], by_case["trace"]
        assert "native address 127.0.0.1:" in by_case["resolve"]["reason"]
        assert "UAT for" in by_case["resolve"]["reason"]
        assert "the request went in" in by_case["segmentation"]["reason"]
        assert "registered again (seen by the master relay's notification" in \
            by_case["deregister"]["reason"], by_case["deregister"]
        assert "association ended" in by_case["disconnect"]["reason"], by_case["disconnect"]
    register = next(r for r in rows if r["case"] == "register")
    assert f"notified by the master relay {MASTER}" in register["reason"]


def test_the_relay_itself_passes_as_a_relay_in_modes_0_and_2(net: RelayNet,
                                                             tmp_path: Path) -> None:
    """The relay as the device: its Identify, Read of Table 0, Resolve and Trace of its own
    title PASS; what a relay need not serve is NOT TESTED, nothing FAILs."""
    host, port = net.relay_address
    out = tmp_path / "relay.json"
    run = Conformance([f"{host}:{port}", "--security-mode", "0,2", "--key", f"2:{KEY_HEX}",
                       "--password", "PASSWORD", "--timeout", "10", "--segment-size", "128",
                       "--json", str(out)])
    status = run.finish(120)
    report = json.loads(out.read_text())
    lines = "\n".join(run.lines)
    assert status == 0 and report["summary"]["fail"] == 0, lines
    assert report["called_ap_title"] == RELAY
    assert any("judged as a relay" in note for note in report["notes"]), lines
    for mode in (0, 2):
        by_case = {r["case"]: r for r in report["cases"] if r["mode"] == mode}
        # The meters' operator password, refused by a relay (no passwords): its reads go
        # without it, and only what a relay need not serve is NOT TESTED.
        for case in ("identify", "full_read", "partial_read_offset", "default_read", "logon",
                     "logon_twice", "wait", "logoff", "terminate", "out_of_sequence",
                     "wrong_password", "unknown_table", "resolve", "trace", "unknown_ap_title",
                     "oversized", "segmentation", "disconnect"):
            assert by_case[case]["verdict"] == "PASS", by_case[case]
        for row in by_case.values():
            assert row["verdict"] == "PASS" or row["case"] in RELAY_NEED_NOT_SERVE | {
                "register", "partial_write_index", "bad_checksum"}, row
        assert f"path {RELAY}" in by_case["trace"]["reason"]


def _register_and_vanish(master: tuple[str, int]) -> None:
    """A notification host under the tester's title that registers, is told of the nodes
    registered so far, and is gone without a Deregister (a conformance run killed half-way):
    its registration stays at the master relay."""
    title = Uid.parse(NETWORK_TESTER_TITLE)

    async def main() -> None:
        registrar = RegistrarServices(title)
        responder = Responder(ResponderConfig(ap_title=title), registrar, RandomNonceSource())

        async def answer(data: bytes, link: Link) -> tuple[bytes | None, bool]:
            reply = responder.receive(data, link.id, time.time())
            return reply.data, reply.close

        endpoint = Endpoint(answer)
        try:
            link = await endpoint.connect(*master, "tcp", 10)
            requester = Requester(title, RandomNonceSource())
            pending = requester.request([RegisterRequest(
                node_type=NodeType.HOST | NodeType.NOTIFICATION_HOST, connection_type=0xF0,
                device_class=bytes(4), ap_title=title, serial_number=Uid.parse(".1"),
                native_address=encode_native_address(*link.local),
                registration_period=3600)], None)
            data = await endpoint.exchange(link, pending.data, pending.invocation_id, timeout=10)
            assert requester.accept(data, pending, time.time()) is not None
            deadline = time.monotonic() + 30
            while not any(n.node_type & NodeType.END_DEVICE for n in registrar.nodes.values()):
                assert time.monotonic() < deadline, "no catch-up notification of the meter"
                await asyncio.sleep(0.05)  # told of the meter (and answered OK)
        finally:
            await endpoint.close()

    asyncio.run(main())


def test_a_second_run_is_told_of_the_registered_meter(net: RelayNet, tmp_path: Path) -> None:
    """The master relay tells a notification host of every registered node when it registers,
    also when its title is still registered from a run that never deregistered (a new
    association): the Register case of the next run PASSes from that catch-up notification."""
    _register_and_vanish(net.master_address)
    host, port = net.master_address
    out = tmp_path / "again.json"
    run = Conformance(["--master-relay", f"{host}:{port}", "--case", "register,identify",
                       "--register-timeout", "15", "--json", str(out)])
    status = run.finish(60)
    report = json.loads(out.read_text())
    assert status == 0, "\n".join(run.lines)
    assert [r["verdict"] for r in report["cases"]] == ["PASS", "PASS"], report["cases"]


def test_the_relay_through_the_master_relay_registers_too(net: RelayNet, tmp_path: Path) -> None:
    """The relay as the device reached by its title through the master relay, the tester its
    notification host: the master relay's notification of the relay is its Register (PASS),
    and it is judged as a relay (--target-role relay): nothing FAILs."""
    host, port = net.master_address
    out = tmp_path / "relay-via-master.json"
    run = Conformance(["--master-relay", f"{host}:{port}", "--called-ap-title", RELAY,
                       "--target-role", "relay", "--security-mode", "2", "--key",
                       f"2:{KEY_HEX}", "--password", "PASSWORD", "--register-timeout", "20",
                       "--timeout", "10", "--json", str(out)])
    status = run.finish(120)
    report = json.loads(out.read_text())
    assert status == 0 and report["summary"]["fail"] == 0, "\n".join(run.lines)
    by_case = {r["case"]: r for r in report["cases"]}
    assert by_case["register"]["verdict"] == "PASS", by_case["register"]
    assert "node type 0x01" in by_case["register"]["reason"]  # RELAY
    for case in ("identify", "full_read", "logon", "resolve", "trace", "disconnect"):
        assert by_case[case]["verdict"] == "PASS", by_case[case]
