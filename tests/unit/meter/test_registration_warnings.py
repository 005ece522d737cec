"""A lasting registration trouble is a WARNING at once, then at most every WARN_EVERY seconds,
and its end is a WARNING too (the default log level shows all three)."""

from __future__ import annotations

import logging

import pytest

from c1222.errors import SME, SecurityError, TransportError
from c1222.meter.registration import WARN_EVERY, Trouble


def test_one_warning_per_interval_then_one_when_it_ends(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = logging.getLogger("test.trouble")
    trouble = Trouble(log, WARN_EVERY, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.trouble"):
        for _ in range(100):  # a retry every 6 s for 10 minutes
            trouble.failed("unreachable", "cannot reach the head-end")
            now[0] += 6.0
        trouble.ended("registered with the head-end")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["cannot reach the head-end",
                        "cannot reach the head-end (51 failed attempts so far)",
                        "registered with the head-end, after 100 failed attempts"]
    assert sum(r.levelno == logging.INFO for r in caplog.records) == 98


def test_another_kind_of_trouble_is_warned_at_once(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.trouble2")
    trouble = Trouble(log, WARN_EVERY, clock=lambda: 0.0)
    with caplog.at_level(logging.WARNING, logger="test.trouble2"):
        trouble.failed("unreachable", "a")
        trouble.failed("unreachable", "a")
        trouble.failed("security", "b")
        trouble.ended("c")
        trouble.failed("security", "b")  # a new episode after recovering
    assert [r.getMessage() for r in caplog.records] == [
        "a", "b", "c, after 3 failed attempts", "b"]


def test_a_registration_that_never_failed_is_not_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    trouble = Trouble(logging.getLogger("test.trouble3"), WARN_EVERY)
    with caplog.at_level(logging.WARNING, logger="test.trouble3"):
        trouble.ended("registered")
    assert caplog.records == []


@pytest.mark.parametrize(("error", "kind", "words"), [
    (SecurityError("the response from x failed our security check"), "security",
     "its response failed our security check"),
    (SME("registration refused"), "security", "answered SME"),
    (TransportError("cannot connect to 127.0.0.1:9: refused"), "unreachable",
     "cannot reach the head-end: cannot connect to 127.0.0.1:9"),
    (OSError("network is down"), "unreachable", "cannot reach the head-end at 127.0.0.1:9"),
])
def test_each_failure_is_explained(error: Exception, kind: str, words: str) -> None:
    from types import SimpleNamespace

    from c1222.meter.registration import Registration

    meter = SimpleNamespace(config=SimpleNamespace(headend=("127.0.0.1", 9), security_mode=2,
                                                   key_id=2))
    explained = Registration.explain(SimpleNamespace(meter=meter, _where=lambda: "127.0.0.1:9"),
                                     error)  # type: ignore[arg-type]
    assert explained[0] == kind and words in explained[1], explained
    if kind == "security":
        assert "mode 2, key id 2" in explained[1]


def test_a_deregister_just_after_the_register_answer_is_not_lost() -> None:
    # The head-end may deregister a meter the moment it has answered its Register; the meter
    # must then register again at once, not hold the registration for its whole period.
    import asyncio
    import contextlib
    import random
    from types import SimpleNamespace

    from c1222.meter.registration import Registration

    async def scenario() -> int:
        meter = SimpleNamespace(deregistered=asyncio.Event(), reg_delay=0,
                                config=SimpleNamespace(speed=1.0, relay=None,
                                                       headend=("127.0.0.1", 9)))
        reg = Registration.__new__(Registration)
        reg.meter, reg.via_relay, reg.rng = meter, False, random.Random(1)
        reg.registered = asyncio.Event()
        reg.client = SimpleNamespace(link=SimpleNamespace(closed=False))
        calls = 0

        async def register_once() -> object:
            nonlocal calls
            calls += 1
            if calls == 1:
                meter.deregistered.set()  # arrives with the answer, before the hold begins
            return SimpleNamespace(reg_period=3600)

        reg.register_once = register_once  # type: ignore[method-assign]
        task = asyncio.ensure_future(reg.run())
        for _ in range(100):  # up to 5 s: the old code held for the period (55 minutes)
            await asyncio.sleep(0.05)
            if calls >= 2:
                break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return calls

    assert asyncio.run(scenario()) >= 2
