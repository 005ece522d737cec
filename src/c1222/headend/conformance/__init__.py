"""`c1222 conformance`: a C12.22 conformance tester for any device (docs/conformance.md).

:mod:`.cases` is the suite as data, :mod:`.rules` the protocol rules every response must keep,
:mod:`.runner` runs the suite over TCP/UDP in the security modes asked for, :mod:`.report`
holds the outcome and writes it as JSON and JUnit XML.
"""

from c1222.headend.conformance.cases import CASES, REGISTER, Case, CaseSettings
from c1222.headend.conformance.report import (
    EXIT_FAILED,
    EXIT_PASSED,
    EXIT_UNTESTED,
    EXIT_USAGE,
    CaseResult,
    ExchangeRecord,
    Report,
    Verdict,
)
from c1222.headend.conformance.runner import DEFAULT_TESTER_TITLE, Settings, Tester, run

__all__ = [
    "CASES", "REGISTER", "Case", "CaseSettings", "EXIT_FAILED", "EXIT_PASSED", "EXIT_UNTESTED",
    "EXIT_USAGE", "CaseResult", "ExchangeRecord", "Report", "Verdict", "DEFAULT_TESTER_TITLE",
    "Settings", "Tester", "run",
]
