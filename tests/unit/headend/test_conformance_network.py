"""The conformance tester through a relay, against a fake master relay (only wire messages:
the tester works with anyone's relay) in front of a meter double: as a notification host it
judges the master relay's notification of the meter as Register, then every case passes through
the relay, Resolve and Trace included; a relay that answers them wrongly fails them."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from c1222.codec.ber import Uid
from click.testing import CliRunner

from c1222.cli.main import cli
from c1222.headend.conformance import CaseSettings, Report, Settings, Verdict
from c1222.headend.conformance import Tester as ConformanceTester
from c1222.tables.access import pad_password
from tests.unit.headend.fake_master import MASTER_TITLE, FakeMaster, Route
from tests.unit.headend.meter_double import MeterDouble

METER = "2.16.124.113620.1.22.0.123.9001"
RELAY = "2.16.124.113620.1.22.0.123.60"
CASES = CaseSettings(password=pad_password("PASSWORD"), reader_password=pad_password("READER"),
                     segment_size=128)


class KeepsConnection(MeterDouble):
    """A wrong meter: answers Disconnect OK and keeps its connection (and session) open."""

    async def _on_request(self, data: bytes, link: Any) -> tuple[bytes | None, bool]:
        return (await super()._on_request(data, link))[0], False


def run(how: str, tamper: Any = None, meter_type: type[MeterDouble] = MeterDouble,
        cases: CaseSettings = CASES, register_timeout: float = 10.0, others: int = 0
        ) -> tuple[Report, FakeMaster]:
    async def main() -> tuple[Report, FakeMaster]:
        master = await FakeMaster().start()
        meter = await meter_type(METER).start()
        assert master.address is not None and meter.address is not None
        master.routes[METER] = Route(meter.address, path=(RELAY,))
        if tamper is not None:
            tamper(master)
        options: dict[str, Any] = (
            {"master_relay": master.address,
             "called_ap_title": Uid.parse(METER) if others else None} if how == "master" else
            {"via_relay": master.address, "called_ap_title": Uid.parse(METER)})
        tester = ConformanceTester(Settings(modes=(0,), cases=cases, timeout=3.0,
                                            quiet_timeout=0.5,
                                            register_timeout=register_timeout, **options))
        task = asyncio.ensure_future(tester.run())
        try:
            if how == "master":
                deadline = time.monotonic() + 10
                while master.registers == 0:  # the tester registered as notification host
                    assert time.monotonic() < deadline and not task.done()
                    await asyncio.sleep(0.02)
                for n in range(others):  # a large network: the catch-up of other nodes
                    await master.notify(f"2.16.124.113620.1.22.0.123.7000.{n}")
                await master.notify(METER)
            return await asyncio.wait_for(task, 60), master
        finally:
            await meter.stop()
            await master.stop()

    return asyncio.run(main())


def verdicts(report: Report) -> dict[str, tuple[Verdict, str]]:
    return {r.case: (r.verdict, r.reason) for r in report.results}


def test_every_case_passes_through_the_master_relay_register_resolve_and_trace_too() -> None:
    report, master = run("master")
    got = verdicts(report)
    assert report.error is None, report.error
    assert got.pop("deregister")[0] is Verdict.NOT_TESTED  # only with --deregister
    assert {c: v for c, v in got.items() if v[0] is not Verdict.PASS} == {}
    assert "notified by the master relay" in got["register"][1]
    host, port = master.routes[METER].address
    assert f"native address {host}:{port}" in got["resolve"][1]
    assert f"path {MASTER_TITLE} > {RELAY}" in got["trace"][1]
    assert "UAT for" in got["trace"][1]
    assert master.forwarded > 10  # the meter's cases went through the relay
    assert master.left == ["2.16.124.113620.1.22.0.123.4"]  # it deregistered at the end
    assert "the target's association ended" in got["disconnect"][1], got["disconnect"]


def test_the_target_is_found_after_a_flood_of_other_notifications() -> None:
    """Hostile or merely large: 200 notifications of other nodes before the target's (more
    than the 64 arrivals the report records) — the Register case of --called-ap-title still
    finds the target's."""
    report, _ = run("master", others=200,
                    cases=dataclasses.replace(CASES, segment_size=None))
    verdict, reason = verdicts(report)["register"]
    assert verdict is Verdict.PASS and "notified by the master relay" in reason, reason
    assert len(report.results[0].exchanges) <= 64


def test_disconnect_through_a_relay_fails_a_meter_that_keeps_its_session() -> None:
    """Through a relay the tester cannot see the target close its connection (the relay's):
    it opens a session, and after the Disconnect a Logoff must be refused, not answered OK."""
    report, _ = run("master", meter_type=KeepsConnection)
    verdict, reason = verdicts(report)["disconnect"]
    assert verdict is Verdict.FAIL and "session survived Disconnect" in reason, reason


def test_deregister_through_a_relay_fails_a_meter_that_does_not_register_again() -> None:
    """With --deregister through the master relay the tester waits for the master relay's
    notification that the target registered again (c1222.md 7.3); this fake network's meter
    answers OK and never registers again."""
    report, _ = run("master", cases=dataclasses.replace(CASES, deregister=True),
                    register_timeout=1.0)
    verdict, reason = verdicts(report)["deregister"]
    assert verdict is Verdict.FAIL and "did not register again within 1 s" in reason, reason


def test_via_relay_finds_the_relay_title_and_judges_its_answers() -> None:
    def wrong(master: FakeMaster) -> None:
        master.routes[METER].path = ()  # fine: [master] is a path
        master.routes[METER + ".65000"] = Route(("127.0.0.1", 9))  # "knows" a bogus title

    report, _ = run("via", wrong)
    got = verdicts(report)
    assert "relay " + MASTER_TITLE in " ".join(report.notes)
    # a relay that resolves a title no node has fails both
    assert got["resolve"][0] is Verdict.FAIL and "expected UAT" in got["resolve"][1]
    assert got["trace"][0] is Verdict.FAIL
    assert got["register"][0] is Verdict.NOT_TESTED
    assert got["identify"][0] is Verdict.PASS and got["disconnect"][0] is Verdict.PASS


def test_a_relay_as_the_target_is_judged_by_the_relay_rules() -> None:
    """The fake master relay as the device: it answers Trace of its own title, so the services
    a relay need not serve (rules.RELAY_NEED_NOT_SERVE) are NOT TESTED when refused (its ISC
    to Security); the refusals every node owes still fail (SNS to an oversized request)."""
    async def main() -> Report:
        master = await FakeMaster().start()
        try:
            tester = ConformanceTester(Settings(
                target=master.address, modes=(0,), timeout=3.0, quiet_timeout=0.5,
                cases=dataclasses.replace(CASES, segment_size=None)))
            return await asyncio.wait_for(tester.run(), 60)
        finally:
            await master.stop()

    report = asyncio.run(main())
    got = verdicts(report)
    assert any("judged as a relay" in note for note in report.notes), report.notes
    assert got["security"] == (Verdict.NOT_TESTED,  # ISC is a FAIL against a meter
                           "a relay need not serve this (ISC; conformance rules: "
                           "RELAY_NEED_NOT_SERVE)")
    assert got["oversized"][0] is Verdict.FAIL  # RQTL is owed by every node, relays too
    assert got["identify"][0] is Verdict.PASS and got["trace"][0] is Verdict.PASS


def test_bad_relay_options_are_one_line_usage_errors() -> None:
    """Hostile or wrong command lines: exit 2, one line naming the problem, nothing sent."""
    cases = {
        ("--via-relay", "127.0.0.1:9"): "--via-relay needs the target's --called-ap-title",
        ("--via-relay", "127.0.0.1:9", "--master-relay", "127.0.0.1:9"): "not both",
        ("127.0.0.1:9", "--via-relay", "127.0.0.1:9", "--called-ap-title", METER):
            "not HOST:PORT",
        ("--via-relay", "x" * 400): "is not HOST:PORT",
        ("--master-relay", "127.0.0.1:0"): "",
        ("--segment-size", "12", "127.0.0.1:9"): "128",
        ("--target-role", "meter", "127.0.0.1:9"): "meter",
        ("--relay-ap-title", "1.2.x", "127.0.0.1:9"): "1.2.x",
    }
    for args, says in cases.items():
        result = CliRunner().invoke(cli, ["conformance", *args])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and says in result.output, (args, result.output)


def test_a_neighbour_with_the_same_serial_is_not_taken_for_the_target_registering_again(
        ) -> None:
    """Simulated meters may share a serial number (this fake master gives every node the
    same). After the Deregister, a node the tester saw registered before registers again: that
    is another device, not the target under a new title, so the case still FAILs when the
    target itself never registers again."""
    neighbour = "2.16.124.113620.1.22.0.123.7000.0"
    told: list[asyncio.Task[Any]] = []

    class TellsOfTheNeighbour(MeterDouble):
        master: FakeMaster | None = None

        async def _on_request(self, data: bytes, link: Any) -> tuple[bytes | None, bool]:
            reply = self.responder.receive(data, link.id, time.time())
            if reply.request is not None and self.master is not None and any(
                    type(s).__name__ == "DeregisterRequest"
                    for s in reply.request.epsem.services):
                told.append(asyncio.ensure_future(self.master.notify(neighbour)))
            return reply.data, reply.close

    def tamper(master: FakeMaster) -> None:
        TellsOfTheNeighbour.master = master

    report, _ = run("master", tamper=tamper, meter_type=TellsOfTheNeighbour, others=1,
                    cases=dataclasses.replace(CASES, deregister=True, segment_size=None),
                    register_timeout=2.0)
    assert told, "the fake network never saw the Deregister"
    verdict, reason = verdicts(report)["deregister"]
    assert verdict is Verdict.FAIL and "did not register again" in reason, reason
