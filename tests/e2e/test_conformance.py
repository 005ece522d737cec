"""`c1222 conformance` started as a user would, against `c1222 meter` and a broken test double.

Against our meter it must pass every service the meter offers in each security mode, over TCP
and UDP, with only the expected NOT TESTED (Resolve and Trace are relay services: SNS from an
end device; deregistering the target needs --deregister); with --listen the meter's Register
passes. tshark judges the pcap of each run. Against a double that answers one service wrongly
it must report exactly that FAIL. An unreachable target is a message, not a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from c1222.cli.main import cli
from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.services import Request, Response
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import RandomNonceSource
from c1222.meter.services import MeterServices
from c1222.session.responder import Responder, ResponderConfig, ServiceContext
from c1222.tables.access import GROUP_ALL, Principal
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.types import TimeDate
from c1222.transport.endpoint import Address, Endpoint, Link
from c1222.transport.pcap import read_capture
from tests.e2e.procs import Running
from tests.interop.tshark import require_tshark, tshark_fields
from tests.servers import free_port

KEY_HEX = "000102030405060708090A0B0C0D0E0F"
KEY = {2: bytes.fromhex(KEY_HEX)}
#: Credentials of the default meter's operator (user 2); the reader (user 1) is the default.
CREDENTIALS = ["--user-id", "2", "--password", "PASSWORD"]
#: What may be NOT TESTED against our meter, and why.
EXPECTED_NOT_TESTED = {"resolve": "NOT SUPPORTED", "trace": "NOT SUPPORTED",
                       "deregister": "--deregister", "segmentation": "--segment-size"}
SECURED_ONLY = {"bad_mac", "unknown_key_id"}  # the cases of modes 1 and 2 only


class Conformance(Running):
    """`c1222 conformance ARGS` as a subprocess."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(["conformance", *args])

    def finish(self, timeout: float = 60.0) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("conformance hung:\n" + "\n".join(self.lines)) from None
        self._reader.join(5)
        return self.proc.returncode


def start_meter(tmp: Path, mode: int, *extra: str, listen: str = "127.0.0.1:0") -> Running:
    return Running(["meter", "--listen", listen, "--state-dir", str(tmp / "meter"),
                    "--security-mode", str(mode), "--key", f"2:{KEY_HEX}", *extra])


def judge(report: dict, *, mode: int) -> None:
    """Every case PASS, or NOT TESTED exactly where expected for our meter."""
    rows = {(c["case"], c["mode"], c["transport"]): c for c in report["cases"]}
    assert report["exit_status"] == 0 and report["error"] is None
    for transport in report["transports"]:
        for case in _case_ids():
            if case in SECURED_ONLY and mode == 0:
                assert (case, mode, transport) not in rows
                continue
            row = rows[(case, mode, transport)]
            if case in EXPECTED_NOT_TESTED:
                assert row["verdict"] == "NOT TESTED", row
                assert EXPECTED_NOT_TESTED[case] in row["reason"], row
            else:
                assert row["verdict"] == "PASS", row
    assert report["summary"]["fail"] == 0


def _case_ids() -> list[str]:
    from c1222.headend.conformance import CASES

    return [c.id for c in CASES]


def judge_pcap(pcap: Path, report: dict, ports: tuple[int, ...], mode: int) -> None:
    """tshark: nothing malformed; in secured modes every secured message "Crypto good" except
    the deliberate bad-MAC and unknown-key-id requests; only the deliberate bad checksums
    flagged."""
    require_tshark()
    deliberate = {bytes.fromhex(x["request_hex"]) for c in report["cases"]
                  if c["case"] in SECURED_ONLY for x in c["exchanges"]}
    decode_as = [o for p in ports for o in ("-d", f"tcp.port=={p},c1222",
                                            "-d", f"udp.port=={p},c1222")]
    rows = tshark_fields(pcap, ["_ws.malformed", "_ws.expert.message", "c1222.crypto_good"],
                         keys=KEY, display_filter="c1222", extra_options=decode_as)
    captured = {c.frame: c.data for c in read_capture(pcap, ports=ports) if c.ok}
    assert len(rows) == len(captured) > 50
    secured = 0
    for row in rows:
        data = captured[int(row["frame.number"][0])]
        assert not row["_ws.malformed"], row
        for message in row["_ws.expert.message"]:
            assert message.startswith("Bad checksum") or data in deliberate, row
        if data in deliberate:
            assert row["c1222.crypto_good"] == ["0"], row
        elif acse.decode(data).epsem.security_mode:
            secured += 1
            assert row["c1222.crypto_good"] == ["1"], row
    assert (secured > 50) == bool(mode)
    assert len(deliberate) == (2 * len(report["transports"]) if mode else 0)


def run_tester(tester: Conformance, tmp: Path) -> tuple[int, dict]:
    status = tester.finish()
    report = json.loads((tmp / "report.json").read_text())
    return status, report


def outputs(tmp: Path) -> list[str]:
    return ["--json", str(tmp / "report.json"), "--junit", str(tmp / "report.xml"),
            "--pcap", str(tmp / "run.pcap")]


def test_meter_passes_in_mode_0_tcp_and_udp(tmp_path: Path) -> None:
    meter = start_meter(tmp_path, 0)
    try:
        host, port = meter.address()
        tester = Conformance([f"{host}:{port}", "--transport", "both", "--security-mode", "0",
                              *CREDENTIALS, *outputs(tmp_path)])
        status, report = run_tester(tester, tmp_path)
    finally:
        assert meter.stop() == 0, "\n".join(meter.lines[-40:])
    assert status == 0, "\n".join(tester.lines)
    judge(report, mode=0)
    register = next(c for c in report["cases"] if c["case"] == "register")
    assert register["verdict"] == "NOT TESTED" and "--listen" in register["reason"]
    assert any("PASSED" in line for line in tester.lines)
    suites = ET.parse(tmp_path / "report.xml").getroot()
    assert suites.get("failures") == "0" and int(suites.get("tests")) == len(report["cases"])
    judge_pcap(tmp_path / "run.pcap", report, (port,), 0)


def test_meter_registers_with_the_tester_and_passes_in_mode_1(tmp_path: Path) -> None:
    # No HOST:PORT: the tester learns the meter's address from its registration.
    tester = Conformance(["--listen", "127.0.0.1:0", "--transport", "both",
                          "--security-mode", "1", "--key", f"2:{KEY_HEX}", *CREDENTIALS,
                          *outputs(tmp_path)])
    listen = tester.address()
    meter = start_meter(tmp_path, 1, "--headend", f"{listen[0]}:{listen[1]}")
    try:
        status, report = run_tester(tester, tmp_path)
    finally:
        assert meter.stop() == 0, "\n".join(meter.lines[-40:])
    assert status == 0, "\n".join(tester.lines)
    judge(report, mode=1)
    register = next(c for c in report["cases"] if c["case"] == "register")
    assert register["verdict"] == "PASS", register
    assert register["exchanges"][0]["direction"] == "in"
    assert report["called_ap_title"] == "2.16.124.113620.1.22.0.123.8437"
    meter_port = int(report["target"].rsplit(":", 1)[1])
    judge_pcap(tmp_path / "run.pcap", report, (meter_port, listen[1]), 1)


def test_deregistered_meter_registers_again_with_the_tester(tmp_path: Path) -> None:
    """--deregister with --listen: the meter answers its Deregister OK and registers with the
    tester again (c1222.md 7.3), which the tester sees on the wire."""
    tester = Conformance(["--listen", "127.0.0.1:0", "--case", "register,identify,deregister",
                          "--deregister", "--register-timeout", "20", *outputs(tmp_path)])
    listen = tester.address()
    meter = start_meter(tmp_path, 0, "--headend", f"{listen[0]}:{listen[1]}")
    try:
        status, report = run_tester(tester, tmp_path)
    finally:
        assert meter.stop() == 0
    assert status == 0, "\n".join(tester.lines)
    row = next(c for c in report["cases"] if c["case"] == "deregister")
    assert row["verdict"] == "PASS" and "registered again (seen by a Register to the tester)" \
        in row["reason"], row


def test_meter_passes_in_mode_2_with_listen_and_target(tmp_path: Path) -> None:
    # Both ports chosen first, so the tester listens before the meter starts registering.
    listen = meter_port = free_port()
    while meter_port == listen:
        meter_port = free_port()
    tester = Conformance([f"127.0.0.1:{meter_port}", "--listen", f"127.0.0.1:{listen}",
                          "--transport", "both", "--security-mode", "2",
                          "--key", f"2:{KEY_HEX}", *CREDENTIALS, *outputs(tmp_path)])
    tester.address()
    meter = start_meter(tmp_path, 2, "--headend", f"127.0.0.1:{listen}",
                        listen=f"127.0.0.1:{meter_port}")
    try:
        status, report = run_tester(tester, tmp_path)
    finally:
        assert meter.stop() == 0, "\n".join(meter.lines[-40:])
    assert status == 0, "\n".join(tester.lines)
    judge(report, mode=2)
    assert next(c for c in report["cases"] if c["case"] == "register")["verdict"] == "PASS"
    judge_pcap(tmp_path / "run.pcap", report, (meter_port, listen), 2)


# --------------------------------------------------------------------------- a broken meter


class WrongPasswordAccepted:
    """The deliberate bug: user 2 gets in with any password (Security answers OK). The
    meter's own services do the rest (wrapped: they may be compiled, and a compiled class
    cannot be subclassed here)."""

    def __init__(self, services: MeterServices) -> None:
        self.services = services

    def handle(self, request: Request, ctx: ServiceContext) -> Response:
        return self.services.handle(request, ctx)

    def notice(self, event: str, ctx: ServiceContext | None, detail: str = "") -> None:
        self.services.notice(event, ctx, detail)

    def authenticate(self, user_id: int, password: bytes) -> Principal:
        if user_id == 2:
            return Principal(2, GROUP_ALL)
        return self.services.authenticate(user_id, password)


@contextlib.contextmanager
def broken_meter() -> Iterator[Address]:
    """An in-process C12.22 node: the default meter's tables behind the bug above."""
    title = Uid.parse("2.16.124.113620.1.22.0.123.7777")

    def clock() -> TimeDate:
        return TimeDate.from_datetime(dt.datetime.fromtimestamp(int(time.time()),
                                                                dt.timezone.utc))

    tables = build_tables(MeterProfile(ap_title=str(title)), now=clock())
    services = WrongPasswordAccepted(MeterServices(tables, title, clock=clock))
    responder = Responder(ResponderConfig(ap_title=title, keys=KeyTable(KEY)), services,
                          RandomNonceSource())

    async def on_request(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        reply = responder.receive(data, link.id, time.time())
        return reply.data, reply.close

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    endpoint = Endpoint(on_request, on_link_closed=lambda link: responder.close(link.id))
    try:
        yield asyncio.run_coroutine_threadsafe(endpoint.listen("127.0.0.1", 0), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(endpoint.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_broken_meter_fails_exactly_the_wrong_case(tmp_path: Path) -> None:
    with broken_meter() as (host, port):
        tester = Conformance([f"{host}:{port}", *CREDENTIALS, "--json",
                              str(tmp_path / "report.json"), "--junit",
                              str(tmp_path / "report.xml")])
        status, report = run_tester(tester, tmp_path)
    assert status == 1, "\n".join(tester.lines)
    failures = [c for c in report["cases"] if c["verdict"] == "FAIL"]
    assert [(c["case"], c["response"]) for c in failures] == [("wrong_password", "OK (0x00)")]
    assert "wrong password was accepted" in failures[0]["reason"]
    others = {c["case"]: c["verdict"] for c in report["cases"] if c["verdict"] != "FAIL"}
    assert {k for k, v in others.items() if v == "NOT TESTED"} == \
        set(EXPECTED_NOT_TESTED) | {"register"}
    assert any("FAIL" in line and "wrong_password" in line for line in tester.lines)
    suites = ET.parse(tmp_path / "report.xml").getroot()
    failed = [case.get("name") for case in suites.iter("testcase")
              if case.find("failure") is not None]
    assert failed == ["wrong_password"]


# --------------------------------------------------------------------------- errors


def test_unreachable_target_is_a_clear_message(tmp_path: Path) -> None:
    tester = Conformance([f"127.0.0.1:{free_port()}", "--json", str(tmp_path / "r.json")])
    status = tester.finish()
    output = "\n".join(tester.lines)
    assert status == 3, output
    assert "cannot reach the target at 127.0.0.1" in output and "Traceback" not in output
    assert json.loads((tmp_path / "r.json").read_text())["error"].startswith("cannot reach")


@pytest.mark.parametrize(("args", "message"), [
    (["nowhere:port"], "bad port"),
    ([], "HOST:PORT"),
    (["127.0.0.1:1153", "--security-mode", "1"], "need a key"),
    (["127.0.0.1:1153", "--security-mode", "3"], "0, 1 and 2"),
    (["127.0.0.1:1153", "--password", "x" * 21], "longer than 20"),
    (["127.0.0.1:1153", "--case", "no_such_case"], "no such case"),
])
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["conformance", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_list_shows_every_case() -> None:
    result = CliRunner().invoke(cli, ["conformance", "--list"], terminal_width=200)
    assert result.exit_code == 0
    for case in [*_case_ids(), "register"]:
        assert case in result.output
