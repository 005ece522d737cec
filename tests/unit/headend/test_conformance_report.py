"""The conformance report's machine-readable forms: JUnit XML (parsed back with
xml.etree, counts per suite and overall) and JSON (a lossless round trip); the exit status."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from c1222.codec import text
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import ErrorResponse, IdentifyRequest
from c1222.codes import ResponseCode
from c1222.headend.conformance import CaseResult, ExchangeRecord, Report, Verdict
from c1222.headend.conformance.report import code_text
from c1222.headend.conformance.rules import header_violations, violations

METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")
TESTER = Uid.parse("2.16.124.113620.1.22.0.123.4")


def _exchange(note: str | None = None) -> ExchangeRecord:
    request = Apdu(Epsem((IdentifyRequest(),)), calling_ap_invocation_id=7,
                   called_ap_title=METER, calling_ap_title=TESTER)
    response = Apdu(Epsem((ErrorResponse(response_code=ResponseCode.ISC),)),
                    calling_ap_invocation_id=9, called_ap_invocation_id=7,
                    called_ap_title=TESTER, calling_ap_title=METER)
    return ExchangeRecord("tcp", request.encode().hex(), response.encode().hex(),
                          text.to_json(request), text.to_json(response), note=note)


def _report() -> Report:
    results = [
        CaseResult("register", "Register", None, None, Verdict.PASS, "registered", "OK (0x00)",
                   0.5, [ExchangeRecord("tcp", "60", "61", direction="in")]),
        CaseResult("identify", "Identify", 0, "tcp", Verdict.PASS, "", "OK (0x00)", 0.01,
                   [_exchange()]),
        CaseResult("wrong_password", "Security", 0, "tcp", Verdict.FAIL,
                   "a wrong password was accepted", "OK (0x00)", 0.02, [_exchange("wrong")]),
        CaseResult("resolve", "Resolve", 0, "tcp", Verdict.NOT_TESTED,
                   "NOT SUPPORTED by the target (SNS)", "SNS (0x02)", 0.01, [_exchange()]),
        CaseResult("identify", "Identify", 1, "udp", Verdict.PASS, "", "OK (0x00)", 0.01),
        CaseResult("bad_mac", "Identify", 1, "udp", Verdict.NOT_TESTED, "tester error: x",
                   "-", 0.0),
    ]
    return Report(target="127.0.0.1:1153", called_ap_title=str(METER),
                  calling_ap_title=str(TESTER), modes=[0, 1], transports=["tcp", "udp"],
                  started="2024-05-01T12:00:00+00:00", duration=1.25, results=results,
                  notes=["a note"])


def test_junit_xml_parses_with_the_right_counts() -> None:
    root = ET.fromstring(_report().junit_xml())
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped"), root.get("errors")) \
        == ("6", "1", "2", "0")
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["registration", "mode 0 tcp", "mode 1 udp"]
    counts = {name: (s.get("tests"), s.get("failures"), s.get("skipped"))
              for name, s in suites.items()}
    assert counts == {"registration": ("1", "0", "0"), "mode 0 tcp": ("3", "1", "1"),
                      "mode 1 udp": ("2", "0", "1")}
    cases = list(root.iter("testcase"))
    assert len(cases) == 6
    failure = suites["mode 0 tcp"].find("testcase[@name='wrong_password']/failure")
    assert failure is not None
    assert failure.get("message") == "a wrong password was accepted [response: OK (0x00)]"
    assert "(wrong)" in (failure.text or "")  # the messages, for whoever reads the CI log
    skipped = suites["mode 0 tcp"].find("testcase[@name='resolve']/skipped")
    assert skipped is not None and "NOT SUPPORTED" in (skipped.get("message") or "")
    bad_mac = suites["mode 1 udp"].find("testcase[@name='bad_mac']/skipped")
    assert bad_mac is not None and bad_mac.get("message") == "tester error: x"
    props = {p.get("name"): p.get("value") for p in suites["mode 0 tcp"].iter("property")}
    assert props["target"] == "127.0.0.1:1153" and props["called_ap_title"] == str(METER)


def test_junit_reports_an_unreachable_target_as_an_error() -> None:
    report = Report(target="127.0.0.1:9", called_ap_title=None, calling_ap_title=str(TESTER),
                    modes=[0], transports=["tcp"], error="cannot reach the target")
    root = ET.fromstring(report.junit_xml())
    assert root.get("errors") == "1" and root.get("tests") == "0"
    error = root.find("testsuite/testcase/error")
    assert error is not None and error.get("message") == "cannot reach the target"
    assert report.exit_status == 3


def test_json_round_trip() -> None:
    report = _report()
    data = json.loads(json.dumps(report.to_json()))
    assert data["summary"] == {"pass": 3, "fail": 1, "not_tested": 2}
    assert data["exit_status"] == 1
    back = Report.from_json(data)
    assert back == report
    assert back.to_json() == data
    exchange = data["cases"][1]["exchanges"][0]
    # Each message in hex and in its canonical JSON form, which decodes to the same bytes.
    assert text.from_json(exchange["request"]).encode().hex() == exchange["request_hex"]
    assert exchange["response"]["services"][0]["response_code"] == "isc"


def test_json_of_another_format_is_refused() -> None:
    with pytest.raises(ValueError, match="report"):
        Report.from_json({"format": "something else"})


@pytest.mark.parametrize(("verdicts", "status"), [
    ([Verdict.PASS, Verdict.NOT_TESTED], 0),
    ([Verdict.PASS, Verdict.FAIL], 1),
    ([Verdict.NOT_TESTED], 3),  # nothing tested is not a pass
    ([], 3),
])
def test_exit_status(verdicts: list[Verdict], status: int) -> None:
    report = Report(target=None, called_ap_title=None, calling_ap_title=str(TESTER),
                    modes=[0], transports=["tcp"],
                    results=[CaseResult("c", "s", 0, "tcp", v) for v in verdicts])
    assert report.exit_status == status


def test_code_text() -> None:
    assert code_text(3) == "ISC (0x03)"
    assert code_text(0x0A) == "ISSS (0x0a)"
    assert code_text(0x7F) == "? (0x7f)"
    assert code_text(None) == "-"


def test_rules_name_each_broken_one() -> None:
    """digest 10.1/12: A4, swapped titles, security no weaker, same key id, one per request."""
    request = Apdu(Epsem((IdentifyRequest(), IdentifyRequest()), security_mode=1),
                   calling_ap_invocation_id=7, called_ap_title=METER, calling_ap_title=TESTER,
                   key_id=2, iv=b"\x00\x00\x00\x01")
    good = Apdu(Epsem((ErrorResponse(response_code=ResponseCode.ISC),) * 2, security_mode=1),
                calling_ap_invocation_id=9, called_ap_invocation_id=7,
                called_ap_title=TESTER.absolute(), calling_ap_title=Uid.parse(".123.8437"),
                key_id=2, iv=b"\x00\x00\x00\x02")
    assert violations(request, good) == []
    bad = Apdu(Epsem((IdentifyRequest(),), security_mode=1), calling_ap_invocation_id=9,
               called_ap_invocation_id=8, called_ap_title=METER, calling_ap_title=TESTER,
               key_id=3, iv=b"\x00\x00\x00\x02")
    found = violations(request, bad)
    assert any("A4 8" in v for v in found)
    assert any("called AP title" in v for v in found)
    assert any("calling AP title" in v for v in found)
    assert any("key id 3" in v for v in found)
    assert any("0 responses to 2" in v for v in found)
    weaker = Apdu(Epsem((ErrorResponse(response_code=ResponseCode.OK),) * 2),
                  calling_ap_invocation_id=9, called_ap_invocation_id=7,
                  called_ap_title=TESTER, calling_ap_title=METER)
    assert any("less secure" in v for v in violations(request, weaker))
    # A refusal (all errors) may come back in cleartext; a UAT names the refusing node.
    refusal = Apdu(Epsem((ErrorResponse(response_code=ResponseCode.UAT),) * 2),
                   calling_ap_invocation_id=9, called_ap_invocation_id=7,
                   called_ap_title=TESTER, calling_ap_title=Uid.parse("2.16.124.113620.1.9"))
    assert violations(request, refusal) == []


def test_header_rules_on_the_bytes() -> None:
    response = Apdu(Epsem((ErrorResponse(response_code=ResponseCode.ISC),)),
                    calling_ap_invocation_id=9, called_ap_invocation_id=7,
                    called_ap_title=TESTER, calling_ap_title=METER)
    data = response.encode()
    assert header_violations(data) == []
    # A8 with a leading 00 (the decoder tolerates it; MeteringSDK does not, digest 12).
    a8 = data.index(bytes.fromhex("a803020109"))
    padded = data[:a8] + bytes.fromhex("a80402020009") + data[a8 + 5:]
    padded = padded[:1] + bytes([padded[1] + 1]) + padded[2:]
    assert any("A8 is 0009" in v for v in header_violations(padded))
    # A2 after A6: not ascending.
    a2 = data.index(b"\xa2")
    a4 = data.index(b"\xa4")
    swapped = data[:a2] + data[a4:a8] + data[a2:a4] + data[a8:]
    assert any("not in ascending order" in v for v in header_violations(swapped))
