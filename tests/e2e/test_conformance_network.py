"""`c1222 conformance` through a real relay network (master relay, relay, meter that asked for
its title), as a user runs it: registered with the master relay as a notification host, the
tester judges the master relay's notification of the meter as Register and runs every case
through the master relay in security modes 0 and 2 — all 13 services PASS, Resolve and Trace
included, and a request larger than the tester's segment size sent as segments through the
relays (only the self-Deregister is NOT TESTED: it needs --deregister); and the same run
against the relay itself, judged by the rules for relays."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

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
        "--json", str(out)])
    status = run.finish(120)
    report = json.loads(out.read_text())
    lines = "\n".join(run.lines)
    assert status == 0, lines
    assert report["error"] is None and report["summary"]["fail"] == 0, lines
    rows = report["cases"]
    assert {r["service"] for r in rows if r["verdict"] == "PASS"} == SERVICES
    untested = {(r["case"], r["mode"]) for r in rows if r["verdict"] != "PASS"}
    assert untested == {("deregister", 0), ("deregister", 2)}, lines
    title = report["called_ap_title"]
    assert title.startswith("2.16.124.113620.1.22.0.123.9000."), title  # assigned
    for mode in (0, 2):
        by_case = {r["case"]: r for r in rows if r["mode"] == mode}
        assert f"path {RELAY}" in by_case["trace"]["reason"] or \
            f"path {MASTER} > {RELAY}" in by_case["trace"]["reason"], by_case["trace"]
        assert "native address 127.0.0.1:" in by_case["resolve"]["reason"]
        assert "UAT for" in by_case["resolve"]["reason"]
        assert "the request went in" in by_case["segmentation"]["reason"]
    register = next(r for r in rows if r["case"] == "register")
    assert f"notified by the master relay {MASTER}" in register["reason"]


def test_the_relay_itself_passes_as_a_relay_in_modes_0_and_2(net: RelayNet,
                                                             tmp_path: Path) -> None:
    """The relay as the device: its Identify, Read of Table 0, Resolve and Trace of its own
    title PASS; what a relay need not serve is NOT TESTED, nothing FAILs."""
    host, port = net.relay_address
    out = tmp_path / "relay.json"
    run = Conformance([f"{host}:{port}", "--security-mode", "0,2", "--key", f"2:{KEY_HEX}",
                       "--reader-password", "", "--timeout", "10", "--segment-size", "128",
                       "--json", str(out)])
    status = run.finish(120)
    report = json.loads(out.read_text())
    lines = "\n".join(run.lines)
    assert status == 0 and report["summary"]["fail"] == 0, lines
    assert report["called_ap_title"] == RELAY
    assert any("judged as a relay" in note for note in report["notes"]), lines
    for mode in (0, 2):
        by_case = {r["case"]: r for r in report["cases"] if r["mode"] == mode}
        for case in ("identify", "full_read", "partial_read_offset", "resolve", "trace",
                     "unknown_ap_title", "oversized", "segmentation"):
            assert by_case[case]["verdict"] == "PASS", by_case[case]
        assert f"path {RELAY}" in by_case["trace"]["reason"]
