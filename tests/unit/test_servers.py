"""tests/servers.py: a missing server and missing programs skip on a developer's machine and
fail under C1222_REQUIRE_ALL=1 (CI), saying why."""

from __future__ import annotations

import pytest

from tests import servers

DEAD_PG = "postgresql://postgres@127.0.0.1:1/test"
DEAD_NATS = "nats://127.0.0.1:1"


@pytest.fixture
def no_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh machine where neither the servers nor their programs are installed."""
    monkeypatch.setattr(servers, "pg_program", lambda name: None)
    monkeypatch.setattr(servers.shutil, "which", lambda name: None)
    monkeypatch.setattr(servers.os.path, "exists", lambda path: False)


@pytest.mark.parametrize("find, url, says", [
    (servers.find_postgres, DEAD_PG, "PostgreSQL is not reachable at " + DEAD_PG),
    (servers.find_nats, DEAD_NATS, "NATS with JetStream is not reachable at " + DEAD_NATS),
])
def test_a_missing_server_fails_under_require_all_and_skips_elsewhere(
        no_programs: None, monkeypatch: pytest.MonkeyPatch, find: object, url: str,
        says: str) -> None:
    monkeypatch.setenv("C1222_REQUIRE_ALL", "1")
    with pytest.raises(pytest.fail.Exception, match="C1222_REQUIRE_ALL=1 requires it") as failed:
        find(url)  # type: ignore[operator]
    assert says in str(failed.value) and "not found" in str(failed.value)
    monkeypatch.delenv("C1222_REQUIRE_ALL")
    with pytest.raises(pytest.skip.Exception, match=says.replace(".", r"\.")):
        find(url)  # type: ignore[operator]
