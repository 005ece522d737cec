"""Readings partitioned by day on PostgreSQL (schema version 4, docs/storage.md "Scaling out"):
rows land in their day's partition, a wrong clock in the default one, a partition made later
takes its rows from the default, a populated version-3 database keeps every row, and
retention drops whole days. SQLite (one table) is checked to keep the same interface."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from c1222.headend.storage import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AsyncStorage,
    Reading,
    Retention,
    open_storage,
    prune_once,
)
from c1222.headend.storage.backends import SqliteBackend
from tests.servers import pg_base, pg_url  # noqa: F401 - fixtures

AP = "2.16.124.113620.1.22.0.5"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
TODAY = NOW.replace(hour=12, minute=0, second=0)


def _where(url: str) -> dict[datetime, str]:
    """Each reading's time -> the partition holding it."""
    import psycopg

    base, schema = url.split("?schema=")
    with psycopg.connect(base) as conn:
        rows = conn.execute(f'SELECT time, tableoid::regclass::text FROM "{schema}".readings'
                            ).fetchall()
    return {t: part.split(".")[-1] for t, part in rows}


def test_readings_land_in_their_days_partition_and_a_wrong_clock_in_the_default(
        pg_url: str) -> None:
    # The storage reads the clock when it opens: the days it makes lie between what the clock
    # said just before and just after (this module's NOW may be from before a midnight).
    before = datetime.now(timezone.utc)
    with open_storage(pg_url) as store:
        after = datetime.now(timezone.utc)
        days = store.reading_partitions()
        assert days[0] <= (after - timedelta(days=1)).date() and \
            days[-1] >= (before + timedelta(days=7)).date()
        today = before.replace(hour=12, minute=0, second=0, microsecond=0)
        times = [today, today + timedelta(days=1), datetime(2099, 1, 1, tzinfo=timezone.utc)]
        assert store.store_readings(AP, [Reading("register", t, "wh", 1.0) for t in times]) == 3
        where = _where(pg_url)
    assert where[today] == f"readings_p{today:%Y%m%d}"
    assert where[times[1]] == f"readings_p{times[1]:%Y%m%d}"
    assert where[times[2]] == "readings_default"


def test_a_partition_made_later_takes_its_rows_from_the_default(pg_url: str) -> None:
    old = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    readings = [Reading("interval", old + timedelta(minutes=15 * i), "wh", float(i))
                for i in range(40)]  # 10 hours: one day
    with open_storage(pg_url) as store:
        store.store_readings(AP, readings)
        assert set(_where(pg_url).values()) == {"readings_default"}
        assert store.ensure_partitions(old, ahead=0, behind=0) == 1
        assert store.ensure_partitions(old, ahead=0, behind=0) == 0  # made once
        assert set(_where(pg_url).values()) == {"readings_p20240501"}
        assert store.readings(AP) == readings
        assert store.store_readings(AP, readings) == 0  # the key still holds across the move


def _v3(conn: sqlite3.Connection | object, dialect: str) -> None:
    """A version-3 database made by the released migrations 1-3 (never edited)."""
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                 "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
    for migration in MIGRATIONS[:3]:
        for statement in migration.statements(dialect):
            conn.execute(statement)
        conn.execute(f"INSERT INTO schema_version VALUES ({migration.version}, 'v', '2024')")


def _rows() -> list[tuple[str, str, datetime, str, float]]:
    times = [TODAY + timedelta(hours=h) for h in range(-72, 36, 3)]  # 4.5 days around now
    times += [datetime(2024, 5, 1, tzinfo=timezone.utc), datetime(2099, 1, 1, tzinfo=timezone.utc)]
    return [(f"2.16.124.113620.1.22.0.{m}", kind, t, name, float(m * 1000 + i))
            for m in range(1, 6) for i, t in enumerate(times)
            for kind, name in (("register", "wh"), ("present", "voltage"))]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_migrates_a_populated_version_3_database_keeping_every_row_and_id(
        dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    rows = _rows()
    if dialect == "sqlite":
        url = f"sqlite://{tmp_path / 'head.db'}"
        conn = sqlite3.connect(tmp_path / "head.db", isolation_level=None)
        _v3(conn, "sqlite")
        conn.executemany("INSERT INTO readings (ap_title, kind, time, name, value) "
                         "VALUES (?, ?, ?, ?, ?)",
                         [(a, k, SqliteBackend.time_in(t), n, v) for a, k, t, n, v in rows])
        before = conn.execute("SELECT id, ap_title, kind, name, value FROM readings "
                              "ORDER BY id").fetchall()
        conn.close()
    else:
        import psycopg

        url = request.getfixturevalue("pg_url")
        base, schema = url.split("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
            conn.execute(f'SET search_path TO "{schema}"')
            _v3(conn, "postgresql")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO readings (ap_title, kind, time, name, value) "
                                "VALUES (%s, %s, %s, %s, %s)", rows)
            before = conn.execute("SELECT id, ap_title, kind, name, value FROM readings "
                                  "ORDER BY id").fetchall()
    assert len(before) == len(rows)
    with open_storage(url) as store:
        assert store.schema_version == SCHEMA_VERSION == 6
        assert store.count_readings() == len(rows)
        for ap in {r[0] for r in rows}:
            got = store.readings(ap)
            want = sorted((Reading(k, t, n, v) for a, k, t, n, v in rows if a == ap),
                          key=lambda r: (r.time, r.kind))
            assert sorted(got, key=lambda r: (r.time, r.kind)) == want
        # A new row gets an id after the old ones (the identity continues).
        store.store_readings(AP, [Reading("register", NOW, "new", 1.0)])
        after = store._db.query("SELECT id, ap_title, kind, name, value FROM readings "
                                "ORDER BY id")
    assert [tuple(r) for r in after[:-1]] == [tuple(r) for r in before]  # ids kept
    assert after[-1][0] > before[-1][0] and after[-1][3] == "new"
    if dialect == "postgresql":
        where = _where(url)
        recent = [t for t in where if abs(t - NOW) < timedelta(days=3)]
        assert recent and all(where[t] == f"readings_p{t:%Y%m%d}" for t in recent)
        assert where[datetime(2099, 1, 1, tzinfo=timezone.utc)] == "readings_default"


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_reading_retention_drops_whole_days(dialect: str, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    url = (f"sqlite://{tmp_path / 'head.db'}" if dialect == "sqlite"
           else request.getfixturevalue("pg_url"))
    days = [TODAY - timedelta(days=n) for n in (5, 4, 3, 2, 1, 0)]
    with open_storage(url) as store:
        store.ensure_partitions(NOW, behind=5)  # partitions from the first day on
        store.store_readings(AP, [Reading("register", d, "wh", 1.0) for d in days])
        removed = asyncio.run(_prune(store, TODAY))
        # 3 days before noon today: the two days that ended before then go, whole.
        assert removed == [days[0].date(), days[1].date()]
        left = sorted(r.time for r in store.readings(AP))
        assert left == days[2:]
        if dialect == "postgresql":
            assert min(store.reading_partitions()) == days[2].date()


async def _prune(store: object, now: datetime) -> list:
    storage = AsyncStorage(store)  # type: ignore[arg-type]
    pruned = await prune_once(storage, Retention(reading_age=3 * 86400), now)
    storage._worker.shutdown(wait=True)
    return pruned.reading_days
