"""A schema-driven fuzzer (schemathesis) over the head-end's OpenAPI document finds no 500.

Every operation but the endless event stream gets requests that fit its schema and requests
that break it (wrong types, missing or extra fields, out-of-range numbers, odd strings), once
with a free AP title and once with the registered meter's, so the services really reach the
meter; signed in as admin with an API token, so every request reaches its handler. Deterministic (``derandomize``), bounded in examples and in time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from tests.auth import AUTH
from tests.unit.headend.test_web import METER, System

schemathesis = pytest.importorskip("schemathesis")  # the `test` extra installs it
from schemathesis import GenerationMode, openapi  # noqa: E402

#: Examples per operation, per generation mode and AP-title choice.
EXAMPLES = 40
#: The whole run stops starting new operations after this many seconds (a loaded machine).
BUDGET = 240.0


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with System(tmp_path_factory.mktemp("schema"), timeout=2.0) as s:
        s.start_meter()
        s.wait_registered(METER)
        yield s


@pytest.mark.slow
def test_no_request_the_schema_allows_or_forbids_is_a_server_error(system: System) -> None:
    document = httpx.get(f"{system.url}/openapi.json", timeout=20).json()
    schema = openapi.from_dict(document)
    failures: list[str] = []
    sent = 0
    unsatisfiable: list[str] = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/events":  # a stream that never ends by itself
            continue
        titles = [None, METER] if "{ap_title}" in operation.path else [None]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for title in titles:
                if time.monotonic() - started > BUDGET:
                    break
                strategy = operation.as_strategy(
                    mode, path_parameters={"ap_title": title} if title else None)

                @settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                          database=None, phases=[Phase.explicit, Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def run(case: Any) -> None:
                    nonlocal sent
                    # as the tests' admin (tests/auth.py): every route is reached
                    response = case.call(base_url=system.url, timeout=30, headers=AUTH)
                    sent += 1
                    if response.status_code >= 500 and response.status_code != 502:
                        request = response.request
                        failures.append(f"{response.status_code} {case.method} {request.url} "
                                        f"body={request.body!r:.200} -> {response.text[:200]}")

                try:
                    run()
                except Unsatisfiable:  # nothing to break (e.g. only the fixed AP title)
                    unsatisfiable.append(f"{mode.value} {operation.label} {title}")
    # 502 is the documented "the meter did not answer"; anything else 5xx is a bug
    assert not failures, "\n".join(failures[:20])
    assert sent >= 100, f"only {sent} requests were made ({unsatisfiable})"
