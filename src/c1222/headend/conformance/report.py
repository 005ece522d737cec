"""The outcome of a conformance run and its machine-readable forms (JSON, JUnit XML).

A :class:`Report` holds one :class:`CaseResult` per case run (a case runs once per security
mode and transport), each with the :class:`ExchangeRecord` of every message it sent and the
answer it saw. ``Report.to_json()`` / ``Report.from_json()`` round-trip; ``junit_xml()`` gives
one ``<testcase>`` per result (``<failure>`` for FAIL, ``<skipped>`` for NOT TESTED) grouped in
one ``<testsuite>`` per security mode and transport, so a CI server can show the run.
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from c1222.codes import ResponseCode

#: Exit statuses of `c1222 conformance`.
EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNTESTED = 3  # the target could not be reached, or no case could run

JSON_FORMAT = "c1222-conformance/1"


class Verdict(str, enum.Enum):
    """What a case concluded about the target."""

    PASS = "PASS"
    FAIL = "FAIL"
    NOT_TESTED = "NOT TESTED"  # a precondition failed, or the target does not offer it


def code_text(code: int | None) -> str:
    """A response code as the table shows it: ``ISC (0x03)``."""
    if code is None:
        return "-"
    try:
        name = ResponseCode(code).name
    except ValueError:
        name = "?"
    return f"{name} ({code:#04x})"


@dataclass
class ExchangeRecord:
    """One request and what came back (or why nothing did).

    ``direction`` is ``out`` for a request the tester sent, ``in`` for one the target sent
    (Register). ``request``/``response`` are the canonical JSON form (digest rule 6) of the
    decoded messages, None when they did not decode; ``note`` says what was done on purpose
    (a flipped MAC bit, an unknown key id).
    """

    transport: str
    request_hex: str
    response_hex: str | None = None
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    error: str | None = None
    violations: list[str] = field(default_factory=list)
    note: str | None = None
    direction: str = "out"

    def to_json(self) -> dict[str, Any]:
        return {"direction": self.direction, "transport": self.transport,
                "note": self.note, "request_hex": self.request_hex, "request": self.request,
                "response_hex": self.response_hex, "response": self.response,
                "error": self.error, "violations": list(self.violations)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExchangeRecord:
        return cls(transport=d["transport"], request_hex=d["request_hex"],
                   response_hex=d.get("response_hex"), request=d.get("request"),
                   response=d.get("response"), error=d.get("error"),
                   violations=list(d.get("violations") or []), note=d.get("note"),
                   direction=d.get("direction", "out"))


@dataclass
class CaseResult:
    """One case in one security mode over one transport."""

    case: str
    service: str
    mode: int | None
    transport: str | None
    verdict: Verdict
    reason: str = ""
    response: str = "-"  # what the target answered, e.g. "ISC (0x03)"
    duration: float = 0.0
    exchanges: list[ExchangeRecord] = field(default_factory=list)

    @property
    def suite(self) -> str:
        """The group this result belongs to: ``mode 1 tcp``, or ``registration``."""
        if self.mode is None and self.transport is None:
            return "registration"
        return f"mode {self.mode} {self.transport}"

    def to_json(self) -> dict[str, Any]:
        return {"case": self.case, "service": self.service, "mode": self.mode,
                "transport": self.transport, "verdict": self.verdict.value,
                "reason": self.reason, "response": self.response,
                "duration": round(self.duration, 4),
                "exchanges": [x.to_json() for x in self.exchanges]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CaseResult:
        return cls(case=d["case"], service=d["service"], mode=d.get("mode"),
                   transport=d.get("transport"), verdict=Verdict(d["verdict"]),
                   reason=d.get("reason", ""), response=d.get("response", "-"),
                   duration=float(d.get("duration", 0.0)),
                   exchanges=[ExchangeRecord.from_json(x) for x in d.get("exchanges", [])])


@dataclass
class Report:
    """A whole run. ``error`` is set when the target could not be tested at all."""

    target: str | None
    called_ap_title: str | None
    calling_ap_title: str
    modes: list[int]
    transports: list[str]
    started: str = ""
    duration: float = 0.0
    results: list[CaseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    invocation_id_size: int | None = None  # bytes of the A8s the run ended up sending

    # ------------------------------------------------------------------ verdicts

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "not_tested": 0}
        for r in self.results:
            out[{"PASS": "pass", "FAIL": "fail", "NOT TESTED": "not_tested"}[r.verdict.value]] += 1
        return out

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.verdict is Verdict.FAIL]

    @property
    def exit_status(self) -> int:
        """0: every tested case passed; 1: a case failed; 3: nothing could be tested."""
        counts = self.counts()
        if counts["fail"]:
            return EXIT_FAILED
        if self.error is not None or not counts["pass"]:
            return EXIT_UNTESTED
        return EXIT_PASSED

    def summary(self) -> str:
        c = self.counts()
        verdict = {EXIT_PASSED: "PASSED", EXIT_FAILED: "FAILED",
                   EXIT_UNTESTED: "NOT TESTED"}[self.exit_status]
        return (f"{verdict}: {c['pass']} passed, {c['fail']} failed, {c['not_tested']} not "
                f"tested (modes {', '.join(map(str, self.modes))}; "
                f"{' and '.join(self.transports)}; {self.duration:.1f} s)")

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        return {"format": JSON_FORMAT, "target": self.target,
                "called_ap_title": self.called_ap_title,
                "calling_ap_title": self.calling_ap_title, "modes": list(self.modes),
                "transports": list(self.transports), "started": self.started,
                "duration": round(self.duration, 3), "error": self.error,
                "notes": list(self.notes), "invocation_id_size": self.invocation_id_size,
                "summary": self.counts(),
                "exit_status": self.exit_status,
                "cases": [r.to_json() for r in self.results]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Report:
        if d.get("format") != JSON_FORMAT:
            raise ValueError(f"not a {JSON_FORMAT} report")
        return cls(target=d.get("target"), called_ap_title=d.get("called_ap_title"),
                   calling_ap_title=d["calling_ap_title"], modes=list(d["modes"]),
                   transports=list(d["transports"]), started=d.get("started", ""),
                   duration=float(d.get("duration", 0.0)),
                   results=[CaseResult.from_json(r) for r in d.get("cases", [])],
                   notes=list(d.get("notes") or []), error=d.get("error"),
                   invocation_id_size=d.get("invocation_id_size"))

    # ------------------------------------------------------------------ JUnit

    def junit_xml(self) -> str:
        """JUnit XML: a ``<testsuite>`` per mode and transport, a ``<testcase>`` per result."""
        counts = self.counts()
        root = ET.Element("testsuites", {
            "name": "c1222 conformance", "tests": str(len(self.results)),
            "failures": str(counts["fail"]), "skipped": str(counts["not_tested"]),
            "errors": "1" if self.error else "0", "time": f"{self.duration:.3f}"})
        suites: dict[str, list[CaseResult]] = {}
        for r in self.results:
            suites.setdefault(r.suite, []).append(r)
        if self.error is not None:
            suites.setdefault("connection", [])
        for name, results in suites.items():
            fails = sum(r.verdict is Verdict.FAIL for r in results)
            skips = sum(r.verdict is Verdict.NOT_TESTED for r in results)
            error = name == "connection" and self.error is not None
            suite = ET.SubElement(root, "testsuite", {
                "name": name, "tests": str(len(results) + error), "failures": str(fails),
                "skipped": str(skips), "errors": str(int(error)),
                "time": f"{sum(r.duration for r in results):.3f}",
                "timestamp": self.started})
            props = ET.SubElement(suite, "properties")
            for key, value in (("target", self.target), ("called_ap_title", self.called_ap_title),
                               ("calling_ap_title", self.calling_ap_title)):
                if value is not None:
                    ET.SubElement(props, "property", {"name": key, "value": value})
            if error:
                case = ET.SubElement(suite, "testcase", {
                    "classname": "c1222.conformance", "name": "reach the target", "time": "0"})
                ET.SubElement(case, "error", {"message": self.error or ""})
            for r in results:
                case = ET.SubElement(suite, "testcase", {
                    "classname": f"c1222.conformance.{name.replace(' ', '_')}",
                    "name": r.case, "time": f"{r.duration:.3f}"})
                seen = f"response: {r.response}" if r.response != "-" else ""
                message = f"{r.reason} [{seen}]" if r.reason and seen else r.reason or seen
                if r.verdict is Verdict.FAIL:
                    failure = ET.SubElement(case, "failure", {"message": message,
                                                              "type": "FAIL"})
                    failure.text = _exchanges_text(r)
                elif r.verdict is Verdict.NOT_TESTED:
                    ET.SubElement(case, "skipped", {"message": message})
                else:
                    out = ET.SubElement(case, "system-out")
                    out.text = f"{message}\n{_exchanges_text(r)}"
        ET.indent(root)
        return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _exchanges_text(result: CaseResult) -> str:
    lines = []
    for x in result.exchanges:
        arrow = "<-" if x.direction == "in" else "->"
        lines.append(f"{arrow} {x.request_hex}" + (f"  ({x.note})" if x.note else ""))
        if x.response_hex is not None:
            lines.append(f"{'->' if x.direction == 'in' else '<-'} {x.response_hex}")
        if x.error:
            lines.append(f"   {x.error}")
        lines += [f"   protocol: {v}" for v in x.violations]
    return "\n".join(lines)
