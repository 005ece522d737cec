"""Every test talks to head-ends with the credentials of tests/auth.py (one place), and no test
runs against a compiled module older than its source (c1222.build)."""

import pytest

import tests.auth  # noqa: F401  - sets the token in the environment and in httpx clients
from c1222 import build


def pytest_configure(config):
    stale = build.stale()
    if stale:
        pytest.exit(f"compiled extensions older than their source: {', '.join(stale)}; run "
                    "`make compile` (or `make uncompile` for pure Python)", returncode=4)
