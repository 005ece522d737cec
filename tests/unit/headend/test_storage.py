"""The head-end's storage (docs/storage.md), each test on SQLite and on PostgreSQL.

PostgreSQL comes from tests/servers.py (``C1222_TEST_POSTGRES``, default 127.0.0.1:5432, or a
private instance); each test uses a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.servers import pg_base  # noqa: F401 - the fixture

from c1222.errors import ConfigurationError
from c1222.headend.storage import (
    SCHEMA_VERSION,
    MessageRecord,
    NodeRecord,
    Pruned,
    Reading,
    Retention,
    SchemaTooNew,
    Storage,
    StorageError,
    event_reading,
    interval_readings,
    open_async_storage,
    open_storage,
    prune_once,
    redact_url,
    retention_loop,
)

AP = "2.16.124.113620.1.22.0.5"
AP2 = "2.16.124.113620.1.22.0.6"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@dataclass
class Target:
    """One database to open (and reopen) in a test, and raw access to it."""

    dialect: str
    url: str  # what open_storage takes, schema included
    path: Path | None = None  # SQLite file
    base_url: str = ""  # PostgreSQL without the schema
    schema: str = ""

    def open(self) -> Storage:
        return open_storage(self.url)

    @contextmanager
    def raw(self) -> Iterator[Any]:
        """A driver connection in autocommit, on the test's schema, with ``?`` placeholders."""
        if self.dialect == "sqlite":
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                yield conn
            finally:
                conn.close()
        else:
            import psycopg

            with psycopg.connect(self.base_url, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                conn.execute(f"SET search_path TO {self.schema}")
                yield _QmarkConnection(conn)


class _QmarkConnection:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: tuple = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params)


def _with_param(url: str, param: str) -> str:
    return url + ("&" if "?" in url else "?") + param


def _target(dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if dialect == "sqlite":
        path = tmp_path / "head.db"
        yield Target("sqlite", f"sqlite://{path}", path=path)
        return
    base = request.getfixturevalue("pg_base")
    # A schema per test: runs in parallel or after a crash never see each other's rows.
    schema = f"c1222_test_{secrets.token_hex(6)}"
    yield Target("postgresql", _with_param(base, f"schema={schema}"), base_url=base, schema=schema)
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    yield from _target(request.param, request, tmp_path)


@pytest.fixture
def pg_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    yield from _target("postgresql", request, tmp_path)


@pytest.fixture
def store(target: Target) -> Iterator[Storage]:
    storage = target.open()
    yield storage
    storage.close()


def _node(ap_title: str = AP, **changes: Any) -> NodeRecord:
    node = NodeRecord(ap_title, "127.0.0.1:40123", node_type=0x04, connection_type=0x01,
                      device_class="53494D55", serial_number="SN-0001",
                      registration_period=3600, registered_at=T0, last_seen=T0)
    return replace(node, **changes)


def _message(i: int, ap_title: str | None = AP, direction: str = "in") -> MessageRecord:
    return MessageRecord(T0 + timedelta(seconds=i), direction, "127.0.0.1:1153", "tcp",
                         bytes([0x60, i % 256]) + bytes(range(256)), f"message {i}", ap_title,
                         f'{{"n":{i}}}')


# -- registry ------------------------------------------------------------------------------


def test_nodes_round_trip_update_seen_and_deregister(store: Storage) -> None:
    node = _node()
    store.upsert_node(node)
    store.upsert_node(_node(AP2, native_address="10.0.0.2:1153", registered_at=None,
                            last_seen=None))
    assert store.get_node(AP) == node
    assert [n.ap_title for n in store.list_nodes()] == [AP, AP2]

    # Registering again replaces every field.
    moved = replace(node, native_address="127.0.0.1:50000", registration_period=60)
    store.upsert_node(moved)
    assert store.get_node(AP) == moved

    # last_seen only moves forward: a late, older sighting does not undo a newer one.
    assert store.mark_seen(AP, T0 + timedelta(hours=2))
    assert store.mark_seen(AP, T0 + timedelta(hours=1))
    assert store.get_node(AP).last_seen == T0 + timedelta(hours=2)
    assert store.mark_seen(AP2, T0)
    assert store.get_node(AP2).last_seen == T0

    assert store.deregister(AP, T0 + timedelta(hours=3))
    gone = store.get_node(AP)
    assert gone.state == "deregistered" and gone.last_seen == T0 + timedelta(hours=3)
    assert [n.ap_title for n in store.list_nodes("registered")] == [AP2]
    assert [n.ap_title for n in store.list_nodes("deregistered")] == [AP]


def test_nodes_are_listed_in_byte_order_of_their_titles(store: Storage) -> None:
    # Same order on both backends, whatever PostgreSQL's locale (en_US ignores the dots).
    titles = ["2.16.124.113620.1.22.0.10", "2.16.124.113620.1.22.0.1.5", AP, "2.16.124.1136201"]
    for title in titles:
        store.upsert_node(_node(title))
    assert [n.ap_title for n in store.list_nodes()] == sorted(titles)


def test_unknown_node(store: Storage) -> None:
    assert store.get_node(AP) is None
    assert not store.mark_seen(AP, T0)
    assert not store.deregister(AP, T0)
    assert store.list_nodes() == []


# -- readings ------------------------------------------------------------------------------


def _all_kinds(t: datetime = T0) -> list[Reading]:
    return [
        Reading("present", t, "voltage", 239.8),
        Reading("present", t, "current", 4.25),
        Reading("present", t, "active_power", 1010.5),
        Reading("present", t, "power_factor", 0.99),
        Reading("register", t, "wh", 123456789.0),
        Reading("register", t, "varh", 4567.0),
        *interval_readings(t, {"wh": 250.0, "varh": 12.0}, status=0x02,
                           channel_status={"varh": 0x01}),
        event_reading(t, seq=41, code=2, argument=b"\x00\xff", user_id=7),
        event_reading(t, seq=42, code=2),  # same second, same code: kept apart by seq
    ]


def test_readings_round_trip_every_kind(store: Storage) -> None:
    readings = _all_kinds()
    assert store.store_readings(AP, readings) == len(readings)
    back = store.readings(AP)
    # Oldest first; same time: by kind, then in the order stored.
    assert back == sorted(readings, key=lambda r: r.kind)
    assert store.readings(AP, kind="interval") == readings[6:8]
    assert back[0].details == {"argument": "00ff", "code": 2, "seq": 41, "user_id": 7}
    assert store.readings(AP, kind="interval")[1].details == {"channel_status": 1, "status": 2}
    assert store.readings(AP2) == []
    assert store.count_readings() == len(readings)
    assert store.count_readings(AP, "event") == 2


def test_storing_again_never_duplicates(store: Storage) -> None:
    readings = _all_kinds()
    assert store.store_readings(AP, readings) == len(readings)
    assert store.store_readings(AP, readings) == 0
    # A retry that overlaps: only the new ones count; the first value of a key is kept.
    later = Reading("register", T0 + timedelta(minutes=15), "wh", 1.0)
    changed = replace(readings[4], value=-1.0)
    assert store.store_readings(AP, [changed, later, later]) == 1
    assert store.count_readings(AP) == len(readings) + 1
    assert store.readings(AP, kind="register", until=T0 + timedelta(seconds=1))[0].value \
        == 123456789.0
    # The same instant written in another zone is the same key.
    paris = T0.astimezone(timezone(timedelta(hours=2)))
    assert store.store_readings(AP, [Reading("present", paris, "voltage", 1.0)]) == 0
    # The key includes the node: the same reading of another node is new.
    assert store.store_readings(AP2, readings[:1]) == 1
    assert store.store_readings(AP, []) == 0


def test_reading_filters_order_and_latest(store: Storage) -> None:
    times = [T0 + timedelta(minutes=15 * i) for i in range(6)]
    for i, t in enumerate(reversed(times)):  # stored newest first: order comes from time
        store.store_readings(AP, [Reading("register", t, "wh", 5 - i),
                                  *interval_readings(t, {"wh": 10.0 * (5 - i), "varh": 1.0})])
    regs = store.readings(AP, kind="register")
    assert [r.time for r in regs] == times and [r.value for r in regs] == [0, 1, 2, 3, 4, 5]
    # since inclusive, until exclusive
    window = store.readings(AP, kind="register", since=times[1], until=times[4])
    assert [r.time for r in window] == times[1:4]
    assert [r.value for r in store.readings(AP, kind="register", limit=2)] == [0, 1]
    newest = store.readings(AP, kind="register", limit=2, newest_first=True)
    assert [r.value for r in newest] == [5, 4]
    assert store.readings(AP, kind="register", limit=0) == []
    assert len(store.readings(AP, since=times[5])) == 3
    # latest: everything at the most recent time of the kind, in stored order
    assert [(r.name, r.value) for r in store.latest(AP, "interval")] == [("wh", 50.0),
                                                                         ("varh", 1.0)]
    assert store.latest(AP, "register") == [Reading("register", times[5], "wh", 5)]
    assert store.latest(AP, "event") == []
    assert store.latest(AP2, "register") == []
    # Times come back in UTC whatever zone they went in with.
    tokyo = timezone(timedelta(hours=9))
    store.store_readings(AP2, [Reading("present", T0.astimezone(tokyo), "voltage", 230.0)])
    assert store.readings(AP2)[0].time.tzinfo is timezone.utc
    assert store.readings(AP2, since=T0.astimezone(tokyo))[0].time == T0
    with pytest.raises(ValueError, match="kind"):
        store.readings(AP, kind="bogus")
    with pytest.raises(ValueError, match="limit"):
        store.readings(AP, limit=-1)


# -- message log ---------------------------------------------------------------------------


def test_message_log_round_trip_and_paging(store: Storage) -> None:
    ids = [store.log_message(_message(i, AP if i % 2 else AP2, "in" if i % 3 else "out"))
           for i in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == 10
    first = store.message(ids[0])
    assert first == replace(_message(0, AP2, "out"), id=ids[0])
    assert first.raw == bytes([0x60, 0]) + bytes(range(256))
    assert store.message(ids[-1] + 1000) is None
    # newest first, paged with before_id
    page = store.messages(limit=4)
    assert [m.id for m in page] == ids[:-5:-1]
    page2 = store.messages(limit=4, before_id=page[-1].id)
    assert [m.id for m in page2] == ids[-5:-9:-1]
    assert [m.id for m in store.messages(ap_title=AP)] == [ids[i] for i in (9, 7, 5, 3, 1)]
    assert store.messages(ap_title=AP, limit=1, before_id=ids[3]) == [store.message(ids[1])]
    # Messages of no node (e.g. from an unknown peer) are logged too.
    anon = store.log_message(_message(99, None))
    assert store.message(anon).ap_title is None


def test_a_batch_of_messages_is_one_call_in_order(store: Storage) -> None:
    batch = [_message(i, AP) for i in range(5)]
    ids = store.log_messages(batch)
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [store.message(i) for i in ids] == [replace(m, id=i) for m, i in zip(batch, ids)]
    assert store.log_messages([]) == []


def test_prune_messages_keeps_the_newest_and_never_reuses_ids(store: Storage) -> None:
    ids = [store.log_message(_message(i)) for i in range(10)]
    assert store.prune_messages(keep=20) == 0
    assert store.prune_messages(keep=3) == 7
    assert [m.id for m in store.messages()] == ids[:-4:-1]
    assert store.prune_messages(keep=0) == 3
    assert store.messages() == []
    assert store.log_message(_message(10)) > ids[-1]
    with pytest.raises(ValueError):
        store.prune_messages(-1)


def test_prune_messages_by_age_and_count_in_one_call(store: Storage) -> None:
    ids = [store.log_message(_message(i)) for i in range(10)]  # at T0 + 0..9 s
    assert store.count_messages() == 10
    assert store.prune_messages() == 0  # no bound given: nothing goes
    # Older than T0 + 3 s: messages 0, 1, 2.
    assert store.prune_messages(before=T0 + timedelta(seconds=3)) == 3
    assert [m.id for m in store.messages()] == ids[:2:-1]
    # Both bounds: age takes 3 and 4, the count keeps the newest 2 of the other 5.
    assert store.prune_messages(keep=2, before=T0 + timedelta(seconds=5)) == 5
    assert [m.id for m in store.messages()] == [ids[9], ids[8]]
    assert store.count_messages() == 2
    with pytest.raises(ValueError):
        store.prune_messages(before=datetime(2024, 1, 1))  # naive


def _aged_nodes(store: Storage) -> dict[str, NodeRecord]:
    day = timedelta(days=1)
    nodes = {
        # Registered, period 1 h, last seen T0: expired at T0 + 1 h.
        "expired": _node("2.16.124.113620.1.22.0.11", last_seen=T0, registration_period=3600),
        # Registered at T0 with a 30-day period: still valid at any cutoff below.
        "long": _node("2.16.124.113620.1.22.0.12", registration_period=30 * 86400),
        # Registered, period 1 h, seen again at T0 + 2 days: expires T0 + 2 days + 1 h.
        "fresh": _node("2.16.124.113620.1.22.0.13", last_seen=T0 + 2 * day),
        "dereg_old": _node("2.16.124.113620.1.22.0.14", state="deregistered", last_seen=T0),
        "dereg_new": _node("2.16.124.113620.1.22.0.15", state="deregistered",
                           last_seen=T0 + 2 * day),
        # No times at all: its age is unknown, so it is never aged out.
        "timeless": _node("2.16.124.113620.1.22.0.16", registered_at=None, last_seen=None),
    }
    for node in nodes.values():
        store.upsert_node(node)
    store.store_readings(nodes["dereg_old"].ap_title, [Reading("register", T0, "wh", 1.0)])
    return nodes


def test_prune_nodes_ages_out_deregistered_and_expired_nodes_but_keeps_readings(
        store: Storage) -> None:
    nodes = _aged_nodes(store)
    title = {k: n.ap_title for k, n in nodes.items()}
    # Cutoff T0 + 1 day: "expired" lapsed at T0 + 1 h and "dereg_old" left at T0.
    assert store.prune_nodes(T0 + timedelta(days=1)) == sorted(
        [title["expired"], title["dereg_old"]], key=str.encode)
    assert store.get_node(title["expired"]) is None
    assert store.get_node(title["dereg_old"]) is None
    # Readings outlive their node.
    assert store.readings(title["dereg_old"]) == [Reading("register", T0, "wh", 1.0)]
    assert store.count_nodes() == 4
    assert store.prune_nodes(T0 + timedelta(days=1)) == []
    # Later cutoff: "fresh" lapsed at T0 + 2 days + 1 h, "dereg_new" left at T0 + 2 days.
    assert store.prune_nodes(T0 + timedelta(days=3)) == sorted(
        [title["fresh"], title["dereg_new"]], key=str.encode)
    assert {n.ap_title for n in store.list_nodes()} == {title["long"], title["timeless"]}


def test_prune_nodes_caps_deregistered_nodes_keeping_the_latest(store: Storage) -> None:
    titles = [f"2.16.124.113620.1.22.0.{100 + i}" for i in range(6)]
    for i, title in enumerate(titles):
        store.upsert_node(_node(title, state="deregistered", last_seen=T0 + timedelta(hours=i)))
    store.upsert_node(_node(AP))  # registered: never counted against the cap
    removed = store.prune_nodes(T0 - timedelta(days=1), max_deregistered=2)
    assert removed == titles[:4]
    assert store.count_nodes("deregistered") == 2
    assert {n.ap_title for n in store.list_nodes("deregistered")} == set(titles[4:])
    assert store.get_node(AP) is not None
    assert store.prune_nodes(T0 - timedelta(days=1), max_deregistered=0) == titles[4:]
    with pytest.raises(ValueError):
        store.prune_nodes(T0, max_deregistered=-1)


def test_prune_nodes_removes_more_than_one_statement_s_worth(store: Storage) -> None:
    # 1,200 titles: more than one DELETE's chunk of parameters.
    for i in range(1200):
        store.upsert_node(_node(f"2.16.124.113620.1.22.1.{i}", state="deregistered"))
    assert len(store.prune_nodes(T0 + timedelta(seconds=1))) == 1200
    assert store.count_nodes() == 0


def test_retention_pass_applies_every_bound(target: Target) -> None:
    async def main() -> None:
        async with await open_async_storage(target.url) as store:
            for i in range(10):
                await store.log_message(_message(i))
            await store.upsert_node(_node(AP, state="deregistered", last_seen=T0))
            await store.upsert_node(_node(AP2, last_seen=T0 + timedelta(days=10)))
            now = T0 + timedelta(days=10)
            # The count bound keeps 4 messages; AP left 10 days ago, AP2 was seen just now.
            pruned = await prune_once(store, Retention(message_age=None, max_messages=4,
                                                       node_age=86400.0), now)
            assert pruned == Pruned(6, [AP])
            assert await store.count_messages() == 4
            # The age bound alone: the last 4 are 10 days old.
            pruned = await prune_once(store, Retention(message_age=86400.0, max_messages=None,
                                                       node_age=None, max_deregistered=None),
                                      now)
            assert pruned == Pruned(4, [])
            assert await store.count_nodes() == 1

    asyncio.run(main())


def test_retention_loop_reports_removed_nodes_and_outlives_a_failing_database(
        target: Target, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = await open_async_storage(target.url)
        await store.upsert_node(_node(AP, state="deregistered", last_seen=T0))
        for i in range(5):
            await store.log_message(_message(i))
        removed: list[list[str]] = []
        task = asyncio.create_task(retention_loop(
            store, Retention(max_messages=2, node_age=60.0, interval=0.05), removed.append,
            clock=lambda: (T0 + timedelta(days=1)).timestamp()))
        for _ in range(200):  # bounded: 10 s at most
            if removed:
                break
            await asyncio.sleep(0.05)
        assert removed == [[AP]]
        assert await store.count_messages() == 2
        store.storage.close()  # every later pass fails: logged, and the loop goes on
        await asyncio.sleep(0.2)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.aclose()

    with caplog.at_level("WARNING", logger="c1222.headend.storage"):
        asyncio.run(main())
    assert any("retention pass failed" in r.getMessage() for r in caplog.records)


def test_readings_are_synced_at_commit_and_peer_driven_rows_are_not(tmp_path: Path) -> None:
    # What SQLite was told around each write (the sync itself cannot be seen from here).
    store = open_storage(f"sqlite://{tmp_path / 'head.db'}")
    statements: list[str] = []
    store._db._conn.set_trace_callback(statements.append)

    def mode_of(call: Any) -> str:
        statements.clear()
        call()
        pragmas = [s for s in statements if s.startswith("PRAGMA synchronous")]
        return ",".join(pragmas) or "FULL (the connection's setting)"

    full = "FULL (the connection's setting)"
    unsynced = "PRAGMA synchronous=NORMAL,PRAGMA synchronous=FULL"
    assert mode_of(lambda: store.store_readings(AP, _all_kinds())) == full
    assert mode_of(lambda: store.upsert_node(_node())) == unsynced
    assert mode_of(lambda: store.mark_seen(AP, T0)) == unsynced
    assert mode_of(lambda: store.log_messages([_message(1)])) == unsynced
    assert mode_of(lambda: store.prune_messages(0)) == unsynced
    assert mode_of(lambda: store.deregister(AP, T0)) == unsynced
    assert mode_of(lambda: store.prune_nodes(T0 + timedelta(days=1))) == unsynced
    # Back to FULL after each: the next reading is synced again.
    assert store._db._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.close()


def test_unsynced_writes_work_on_postgresql(pg_target: Target) -> None:
    with pg_target.open() as store:
        store.upsert_node(_node())
        assert store.log_messages([_message(1)]) and store.count_messages() == 1
        # SET LOCAL lasts for its transaction only: the session's setting is untouched.
        assert store._db.query("SHOW synchronous_commit")[0][0] == "on"


def test_retention_settings_are_checked() -> None:
    for bad in ({"message_age": -1.0}, {"node_age": float("nan")}, {"max_messages": -1},
                {"max_deregistered": 1.5}, {"interval": 0}, {"message_age": float("inf")}):
        with pytest.raises(ConfigurationError):
            Retention(**bad)
    assert Retention().max_messages == 100_000 and Retention().message_age == 7 * 86400


# -- schema --------------------------------------------------------------------------------

# Version 1 as it was released, written out here on purpose: it must never change.
_V1 = {
    "sqlite": ("TEXT", "INTEGER PRIMARY KEY", "REAL"),
    "postgresql": ("TIMESTAMPTZ", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                   "DOUBLE PRECISION"),
}


def _v1_tables(raw: Any, dialect: str) -> None:
    """The nodes and readings tables as version 1 released them."""
    time_t, ident, real = _V1[dialect]
    raw.execute(f"""CREATE TABLE nodes (ap_title TEXT PRIMARY KEY,
        native_address TEXT NOT NULL, node_type INTEGER NOT NULL DEFAULT 0,
        connection_type INTEGER NOT NULL DEFAULT 0, device_class TEXT NOT NULL DEFAULT '',
        serial_number TEXT NOT NULL DEFAULT '', registration_period INTEGER NOT NULL DEFAULT 0,
        registered_at {time_t}, last_seen {time_t},
        state TEXT NOT NULL DEFAULT 'registered')""")
    raw.execute(f"""CREATE TABLE readings (id {ident}, ap_title TEXT NOT NULL,
        kind TEXT NOT NULL, time {time_t} NOT NULL, name TEXT NOT NULL, value {real} NOT NULL,
        extra TEXT, UNIQUE (ap_title, kind, time, name))""")


def test_migrates_a_version_1_database(target: Target) -> None:
    t = T0.isoformat().replace("+00:00", ".000000Z") if target.dialect == "sqlite" else T0
    with target.raw() as raw:
        raw.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                    "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
        raw.execute("INSERT INTO schema_version VALUES (1, 'registry and readings', "
                    "'2024-01-01T00:00:00+00:00')")
        _v1_tables(raw, target.dialect)
        raw.execute("INSERT INTO nodes (ap_title, native_address, registered_at) VALUES (?, ?, ?)",
                    (AP, "127.0.0.1:1", t))
        raw.execute("INSERT INTO readings (ap_title, kind, time, name, value) "
                    "VALUES (?, 'register', ?, 'wh', 42.0)", (AP, t))
    with target.open() as store:
        assert store.schema_version == SCHEMA_VERSION == 6
        assert store.get_node(AP) == NodeRecord(AP, "127.0.0.1:1", registered_at=T0)
        assert store.readings(AP) == [Reading("register", T0, "wh", 42.0)]
        assert store.store_readings(AP, [Reading("register", T0, "wh", 42.0)]) == 0
        assert store.message(store.log_message(_message(1))).summary == "message 1"
    with target.raw() as raw:
        versions = raw.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [v[0] for v in versions] == [1, 2, 3, 4, 5, 6]


# Version 2's message log as it was released (version 1 is built by the test above).
_V2_MESSAGES = {
    "sqlite": ("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT", "BLOB"),
    "postgresql": ("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "TIMESTAMPTZ", "BYTEA"),
}


def test_migrates_a_version_2_database(target: Target) -> None:
    m_ident, m_time, blob = _V2_MESSAGES[target.dialect]
    t = T0.isoformat().replace("+00:00", ".000000Z") if target.dialect == "sqlite" else T0
    with target.raw() as raw:
        raw.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                    "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
        raw.execute("INSERT INTO schema_version VALUES (1, 'registry and readings', '2024'), "
                    "(2, 'message log; readings by time', '2024')")
        _v1_tables(raw, target.dialect)
        raw.execute(f"""CREATE TABLE messages (id {m_ident}, time {m_time} NOT NULL,
            direction TEXT NOT NULL, peer TEXT NOT NULL, ap_title TEXT, transport TEXT NOT NULL,
            raw {blob} NOT NULL, summary TEXT NOT NULL DEFAULT '', json TEXT)""")
        raw.execute("CREATE INDEX messages_by_node ON messages (ap_title, id)")
        raw.execute("CREATE INDEX readings_by_time ON readings (ap_title, time)")
        raw.execute("INSERT INTO nodes (ap_title, native_address, registered_at, last_seen, "
                    "state) VALUES (?, ?, ?, ?, 'deregistered')", (AP, "127.0.0.1:1", t, t))
        raw.execute("INSERT INTO messages (time, direction, peer, transport, raw) "
                    "VALUES (?, 'in', '127.0.0.1:1', 'udp', ?)", (t, b"\x60\x00"))
    with target.open() as store:
        assert store.schema_version == SCHEMA_VERSION == 6
        assert store.count_messages() == 1
        # The old rows are pruned by the new calls.
        assert store.prune_messages(before=T0 + timedelta(seconds=1)) == 1
        assert store.prune_nodes(T0 + timedelta(seconds=1)) == [AP]
    with target.raw() as raw:
        versions = raw.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [v[0] for v in versions] == [1, 2, 3, 4, 5, 6]


def test_reopening_keeps_data_and_does_not_migrate_again(target: Target) -> None:
    with target.open() as store:
        store.upsert_node(_node())
        store.store_readings(AP, _all_kinds())
        message_id = store.log_message(_message(1))
    with target.open() as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.get_node(AP) == _node()
        assert store.count_readings(AP) == len(_all_kinds())
        assert store.message(message_id) is not None
    with target.raw() as raw:
        assert raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_is_refused(target: Target) -> None:
    target.open().close()
    with target.raw() as raw:
        raw.execute("INSERT INTO schema_version VALUES (?, 'from the future', 'later')",
                    (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        target.open()
    assert issubclass(SchemaTooNew, ConfigurationError)


def test_sqlite_file_is_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "head.db"
    with open_storage(str(path)) as store:  # a plain path is SQLite
        assert store.dialect == "sqlite"
        assert store._db._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with open_storage("sqlite://:memory:") as store:
        assert store.store_readings(AP, _all_kinds()[:1]) == 1


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("url, shown", [
    ("mysql://meter:s3cret@db.example/head", "mysql://meter:***@db.example/head"),
    ("", "empty"),
    ("sqlite://", "sqlite://"),
    ("oracle://x/y?password=s3cret&sslmode=require", "oracle://x/y?password=***&sslmode=require"),
    ("postgresql://meter:s3cret@[::1/head", "postgresql://<unparsable>"),
    ("postgresql://meter:s3cret@h:port/head", "postgresql://meter:***@h:port/head"),
])
def test_bad_url_is_named_without_its_password(url: str, shown: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_storage(url)
    assert shown in str(info.value) and "s3cret" not in str(info.value)


def test_unreachable_postgresql_hides_the_password() -> None:
    # Port 1 on loopback refuses at once: no server needed for this one.
    with pytest.raises(ConfigurationError) as info:
        open_storage("postgresql://meter:s3cret@127.0.0.1:1/head?connect_timeout=2")
    text = str(info.value)
    assert "postgresql://meter:***@127.0.0.1:1/head" in text and "s3cret" not in text


def test_unusable_sqlite_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot open SQLite"):
        open_storage(f"sqlite://{tmp_path}/no/such/dir/head.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigurationError, match="junk.db"):
        open_storage(str(junk))
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        open_storage(str(tmp_path / "x.db"), schema="x")


def test_bad_schema_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="plain SQL name"):
        open_storage("postgresql://u@127.0.0.1:1/db?schema=x;drop")


def test_redact_url() -> None:
    assert redact_url("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url("/var/lib/head.db") == "/var/lib/head.db"
    assert "pw" not in redact_url("postgresql://h/db?user=u&Password=pw")


def test_records_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="naive"):
        Reading("register", datetime(2024, 1, 1), "wh", 1.0)
    with pytest.raises(ValueError, match="kind"):
        Reading("energy", T0, "wh", 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        Reading("present", T0, "voltage", float("nan"))
    with pytest.raises(ValueError, match="JSON"):
        Reading("event", T0, "1", 1.0, extra="{not json")
    with pytest.raises(ValueError, match="dotted"):
        NodeRecord("2.16.0124", "x")
    with pytest.raises(ValueError, match="hex"):
        NodeRecord(AP, "x", device_class="XYZ")
    with pytest.raises(ValueError, match="direction"):
        replace(_message(1), direction="sideways")


def test_closed_storage_raises(store: Storage) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        store.readings(AP)


def test_postgresql_reconnects_after_losing_its_connection(pg_target: Target) -> None:
    target = pg_target
    with target.open() as store:
        store.store_readings(AP, _all_kinds()[:1])
        pid = store._db._conn.info.backend_pid
        with target.raw() as raw:
            raw.execute("SELECT pg_terminate_backend(?)", (pid,))
        with pytest.raises(StorageError):  # the call that finds the break fails, unacknowledged
            store.store_readings(AP, _all_kinds())
        assert store.store_readings(AP, _all_kinds()) == len(_all_kinds()) - 1


# -- concurrency ---------------------------------------------------------------------------


def test_threads_storing_at_once_lose_and_duplicate_nothing(target: Target) -> None:
    stores = [target.open(), target.open()]  # two connections, as two head-end processes
    threads, batches = 8, 25
    new_counts: list[int] = []
    ids: list[int] = []
    barrier = threading.Barrier(threads)
    lock = threading.Lock()

    def work(n: int) -> None:
        store = stores[n % 2]
        barrier.wait()
        for b in range(batches):
            t = T0 + timedelta(seconds=b)
            # "a" and "b" are stored by every thread; f"t{n}" by this one only.
            got = store.store_readings(AP, [Reading("present", t, "a", b),
                                            Reading("present", t, "b", b),
                                            Reading("present", t, f"t{n}", n)])
            message_id = store.log_message(_message(b))
            with lock:
                new_counts.append(got)
                ids.append(message_id)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    try:
        expected = batches * 2 + threads * batches
        assert sum(new_counts) == expected  # each row counted by exactly one store call
        assert stores[0].count_readings(AP) == expected
        assert len(set(ids)) == len(ids) == threads * batches
        assert len(stores[1].messages(limit=10_000)) == threads * batches
    finally:
        for s in stores:
            s.close()


def test_async_storage_keeps_call_order(target: Target) -> None:
    async def main() -> None:
        async with await open_async_storage(target.url) as store:
            await store.upsert_node(_node())
            ids = await asyncio.gather(*(store.log_message(_message(i)) for i in range(20)))
            assert ids == sorted(ids)
            stored = await asyncio.gather(store.store_readings(AP, _all_kinds()),
                                          store.store_readings(AP, _all_kinds()))
            assert stored == [len(_all_kinds()), 0]
            assert await store.count_readings(AP) == len(_all_kinds())
            assert (await store.get_node(AP)).serial_number == "SN-0001"
            assert [m.summary for m in await store.messages(limit=2)] == ["message 19",
                                                                          "message 18"]

    asyncio.run(main())


# -- durability ----------------------------------------------------------------------------

# A collector in miniature: store one 15-minute interval (3 channels) and a register read
# per step, and print the step only once store_readings has returned (the acknowledgement).
_COLLECTOR = """
import sys
from datetime import datetime, timedelta, timezone
from c1222.headend.storage import Reading, interval_readings, open_storage
url, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = open_storage(url)
t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
for i in range(start, stop):
    end = t0 + timedelta(minutes=15 * i)
    new = store.store_readings("%s", interval_readings(end, {"wh": i, "varh": -i, "vah": 2 * i})
                               + [Reading("register", end, "wh", i)])
    print(i, new, flush=True)
""" % AP


def _collector(url: str, start: int, stop: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _COLLECTOR, url, str(start), str(stop)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_during_collection_loses_no_acknowledged_reading(target: Target) -> None:
    target.open().close()  # migrate first, so the child's start-up is quick
    child = _collector(target.url, 0, 1_000_000)
    acknowledged: list[int] = []
    deadline = time.monotonic() + 15
    while len(acknowledged) < 120:
        line = child.stdout.readline()
        assert line and time.monotonic() < deadline, f"collector stopped: {child.stderr.read()}"
        acknowledged.append(int(line.split()[0]))
    os.kill(child.pid, signal.SIGKILL)  # mid-run: the child is inside a store call or close to it
    child.wait()
    # Lines printed before the kill are acknowledged too (a torn last line still names its step).
    acknowledged += [int(line.split()[0]) for line in child.stdout.read().splitlines()
                     if line.strip()]
    child.stdout.close()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    last = max(acknowledged)

    with target.open() as store:
        stored = {int(r.value) for r in store.readings(AP, kind="register")}
        assert set(acknowledged) <= stored  # every acknowledged reading is there
        # ... and at most the one being stored at the kill, all or nothing of it.
        assert stored - set(acknowledged) <= {last + 1}
        for end, rows in _by_time(store.readings(AP, kind="interval")).items():
            assert len(rows) == 3, f"interval {end} half stored: {rows}"

    # Restart: the collector reads everything again from the start; only the missing is new.
    again = _collector(target.url, 0, last + 5)
    out, err = again.communicate(timeout=30)
    assert again.returncode == 0, err
    new = {int(i): int(n) for i, n in (line.split() for line in out.splitlines())}
    assert all(new[i] == 0 for i in range(last + 1))
    assert new[last + 1] in (0, 4) and all(new[i] == 4 for i in range(last + 2, last + 5))
    with target.raw() as raw:
        total, distinct = raw.execute(
            "SELECT COUNT(*), COUNT(DISTINCT kind || name || CAST(time AS TEXT)) FROM readings"
        ).fetchone()
    assert total == distinct == 4 * (last + 5)


def _by_time(readings: list[Reading]) -> dict[datetime, list[Reading]]:
    groups: dict[datetime, list[Reading]] = {}
    for r in readings:
        groups.setdefault(r.time, []).append(r)
    return groups


def test_the_publishing_outbox_is_written_with_the_readings_and_emptied_by_id(
        target: Target) -> None:
    readings = [Reading("register", T0 + timedelta(minutes=i), "wh", float(i)) for i in range(5)]
    with target.open() as store:
        store.store_readings(AP, readings[:1])
        assert store.outbox_count() == 0  # off unless asked for (--publish)
    with open_storage(target.url, outbox=True) as store:
        assert store.store_readings(AP, readings) == 4
        store.store_many([(AP2, readings[0])])
        batch = store.outbox_batch(3)
        assert [(a, r) for _, a, r in batch] == [(AP, r) for r in readings[:3]]  # oldest first
        assert store.outbox_done([i for i, _, _ in batch]) == 3
        assert [r for _, _, r in store.outbox_batch(10)] == [*readings[3:], readings[0]]
        assert store.outbox_trim(1) == 2  # the newest one stays
        assert [(a, r) for _, a, r in store.outbox_batch(10)] == [(AP2, readings[0])]
        assert store.count_readings() == 6  # readings are not touched


def test_a_node_reached_through_a_master_relay_keeps_its_via(target: Target) -> None:
    master = "2.16.124.113620.1.22.0.123.77"
    with target.open() as store:
        store.upsert_node(NodeRecord(AP, "10.0.0.5:1153", registered_at=T0, via=master))
        assert store.get_node(AP).via == master
        store.upsert_node(NodeRecord(AP, "10.0.0.5:1153", registered_at=T0))  # now direct
        assert store.get_node(AP).via is None
    with pytest.raises(ValueError, match="via"):
        NodeRecord(AP, "x", via="not a title")
