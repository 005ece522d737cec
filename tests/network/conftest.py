"""Fixtures of the network tests: a bed of namespaces, removed after the test whatever happens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.network.netbed import Bed, require_netbed


@pytest.fixture
def bed() -> Iterator[Bed]:
    """An empty bed; skips without root/ip/tc/iptables (fails under C1222_REQUIRE_ALL=1)."""
    require_netbed()
    with Bed() as made:
        yield made
