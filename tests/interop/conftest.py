"""Fixtures of the interop tests: the tshark judge and the captures made by others."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.tshark import require_captures, require_tshark


@pytest.fixture(scope="session")
def tshark() -> str:
    """Path of tshark; the test skips without it (fails under C1222_REQUIRE_ALL=1)."""
    return require_tshark()


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    """../shared/captures; the test skips without it (fails under C1222_REQUIRE_ALL=1)."""
    return require_captures()
