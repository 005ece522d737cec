"""The head-end's storage: one interface, SQLite or PostgreSQL behind it (docs/storage.md).

:class:`Storage` is synchronous and thread-safe (one lock serialises the calls on
its one connection). The asyncio head-end uses :class:`AsyncStorage`, which runs
every call on one dedicated worker thread, so calls complete in the order they
were made and the event loop never waits on a disk or a server.

A ``store_*``/``log_*``/``upsert_*`` call returns only after its transaction has
committed: that return is the acknowledgement. An exception means nothing of the
call is stored (a transaction is all or nothing); storing readings again is always
safe, since a reading already stored is skipped. Readings are synced to disk at each
commit; the rows peers drive (nodes, the message log) and prunes are not, so a flood
of Registers cannot queue a disk sync per message ahead of the collector's readings.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any, TypeVar

from c1222.errors import C1222Error, ConfigurationError

from .backends import PostgresBackend, SqliteBackend, redact_url
from .migrations import MIGRATIONS, PARTITION_FUNCTION, SCHEMA_VERSION
from .records import (
    KINDS, AuditRecord, MessageRecord, NodeRecord, Reading, UserRecord, _check_ap_title, utc,
)

__all__ = ["AsyncStorage", "SchemaTooNew", "Storage", "StorageError", "open_async_storage",
           "open_storage"]

T = TypeVar("T")


class StorageError(C1222Error):
    """The database failed a call (lost connection, disk full, lock time-out): nothing stored."""


class SchemaTooNew(ConfigurationError):
    """The database was written by a newer c1222 whose schema this one does not know."""


_NODE_COLUMNS = ("ap_title, native_address, node_type, connection_type, device_class, "
                 "serial_number, registration_period, registered_at, last_seen, state, via")
_READING_COLUMNS = "kind, time, name, value, extra"
_MESSAGE_COLUMNS = "id, time, direction, peer, transport, raw, summary, ap_title, json"
# Keep the first row of a natural key: a second store of one reading is a no-op.
_INSERT_READING = ("INSERT INTO readings (ap_title, kind, time, name, value, extra) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (ap_title, kind, time, name) DO NOTHING")
#: Days of readings partitions made ahead of today (and kept behind it) on PostgreSQL, so a
#: reading normally lands in its day's partition, not the default one.
PARTITION_DAYS_AHEAD = 7
PARTITION_DAYS_BEHIND = 1
_INSERT_OUTBOX = ("INSERT INTO outbox (ap_title, kind, time, name, value, extra) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
_SEEN = "last_seen = CASE WHEN last_seen IS NULL OR last_seen < ? THEN ? ELSE last_seen END"


def open_storage(url: str, *, schema: str | None = None, outbox: bool = False) -> Storage:
    """Open (creating and migrating as needed) the storage named by ``url``.

    ``url`` is ``sqlite://PATH`` (``sqlite:///var/lib/c1222/head.db`` is absolute,
    ``sqlite://:memory:`` is private to this object), a plain file path (SQLite), or
    ``postgresql://user:password@host:port/dbname`` (also ``postgres://``), whose
    parameters go to libpq except ``schema=NAME``, which like the ``schema`` argument
    puts every table in that PostgreSQL schema (created if missing).

    With ``outbox`` every reading stored is also put in the publishing outbox, in the same
    transaction (``--publish``; :meth:`Storage.outbox_batch`).

    Raises :class:`~c1222.errors.ConfigurationError` naming the URL, password hidden,
    when it is malformed, unreachable, or holds a schema that cannot be migrated.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("the database URL is empty")
    display = redact_url(url)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme in ("", "sqlite"):
        path = rest if sep else url
        if not path:
            raise ConfigurationError(f"database URL {display} names no file "
                                     "(sqlite:///absolute/path.db, sqlite://relative.db)")
        if schema is not None:
            raise ConfigurationError(f"a schema ({schema!r}) is for PostgreSQL, not {display}")
        backend: SqliteBackend | PostgresBackend = SqliteBackend(path, display)
    elif scheme in ("postgresql", "postgres"):
        backend = PostgresBackend(url, display, schema)
    else:
        raise ConfigurationError(f"unsupported database URL {display}: use sqlite://PATH, "
                                 "a file path, or postgresql://user@host/dbname")
    storage = Storage(backend, display)
    storage.outbox = outbox
    try:
        storage._migrate()
        storage.ensure_partitions(datetime.now(timezone.utc))
    except BaseException:
        storage.close()
        raise
    return storage


class Storage:
    """Registry, readings and message log in one database (make it with :func:`open_storage`)."""

    def __init__(self, backend: SqliteBackend | PostgresBackend, url: str) -> None:
        self._db = backend
        #: The URL with its password hidden, fit for logs.
        self.url = url
        self._lock = threading.RLock()
        self._closed = False
        #: Store readings in the publishing outbox too (open_storage(..., outbox=True)).
        self.outbox = False

    def __repr__(self) -> str:
        return f"<Storage {self.url}>"

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db.dialect

    def close(self) -> None:
        """Close the connection; later calls raise :class:`StorageError`. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    @contextmanager
    def _use(self, what: str) -> Iterator[Any]:
        with self._lock:
            if self._closed:
                raise StorageError(f"{what}: storage {self.url} is closed")
            try:
                yield self._db
            except self._db.errors as exc:
                text = self._db.scrub(exc) if hasattr(self._db, "scrub") else str(exc)
                raise StorageError(f"{what} failed on {self.url}: {text}") from exc

    # -- schema ----------------------------------------------------------------------------

    def _migrate(self) -> None:
        try:
            with self._use("migration") as db, db.transaction() as tx:
                db.prepare_migration(tx)
                # The bootstrap table is the same in every version and dialect.
                tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER "
                           "PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)")
                current = tx.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version"
                                     ).fetchone()[0]
                if current > SCHEMA_VERSION:
                    raise SchemaTooNew(
                        f"database {self.url} has schema version {current}, newer than the "
                        f"{SCHEMA_VERSION} this c1222 knows: upgrade c1222 to open it")
                # All pending migrations in the one transaction: a crash leaves the old
                # version intact, never a half-migrated schema.
                now = datetime.now(timezone.utc).isoformat(timespec="seconds")
                for migration in MIGRATIONS[current:]:
                    for statement in migration.statements(db.dialect):
                        tx.execute(statement)
                    tx.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                               (migration.version, migration.description, now))
        except StorageError as exc:
            raise ConfigurationError(
                f"cannot bring {self.url} to schema version {SCHEMA_VERSION}: {exc}") from None

    @property
    def schema_version(self) -> int:
        """The schema version of the database (always :data:`SCHEMA_VERSION` once open)."""
        with self._use("schema version") as db:
            return int(db.query("SELECT MAX(version) FROM schema_version")[0][0])

    # -- registry --------------------------------------------------------------------------

    def upsert_node(self, node: NodeRecord) -> None:
        """Insert ``node`` or replace every field of the node with its AP title."""
        if not isinstance(node, NodeRecord):
            raise TypeError(f"upsert_node takes a NodeRecord, not {type(node).__name__}")
        updates = ", ".join(f"{c} = excluded.{c}" for c in _NODE_COLUMNS.split(", ")[1:])
        with self._use("upsert_node") as db, db.transaction(synced=False) as tx:
            tx.execute(f"INSERT INTO nodes ({_NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                       f"ON CONFLICT (ap_title) DO UPDATE SET {updates}",
                       (node.ap_title, node.native_address, node.node_type, node.connection_type,
                        node.device_class, node.serial_number, node.registration_period,
                        db.time_in(node.registered_at), db.time_in(node.last_seen), node.state,
                        node.via))

    def get_node(self, ap_title: str) -> NodeRecord | None:
        """The node with this AP title, or None."""
        with self._use("get_node") as db:
            rows = db.query(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE ap_title = ?", (ap_title,))
            return self._node(db, rows[0]) if rows else None

    def list_nodes(self, state: str | None = None) -> list[NodeRecord]:
        """Every node (or those in ``state``), ordered by AP title as text."""
        where, params = ("WHERE state = ?", (state,)) if state is not None else ("", ())
        with self._use("list_nodes") as db:
            rows = db.query(f"SELECT {_NODE_COLUMNS} FROM nodes {where} "
                            f"ORDER BY ap_title COLLATE {db.binary_collation}", params)
            return [self._node(db, row) for row in rows]

    def mark_seen(self, ap_title: str, when: datetime) -> bool:
        """Move the node's ``last_seen`` forward to ``when`` (never back); False if unknown."""
        when_db = self._time(when, "seen time")
        with self._use("mark_seen") as db, db.transaction(synced=False) as tx:
            return tx.execute(f"UPDATE nodes SET {_SEEN} WHERE ap_title = ?",
                              (when_db, when_db, ap_title)).rowcount > 0

    def deregister(self, ap_title: str, when: datetime) -> bool:
        """Mark the node deregistered (kept with its readings); False if unknown."""
        when_db = self._time(when, "deregistration time")
        with self._use("deregister") as db, db.transaction(synced=False) as tx:
            return tx.execute(f"UPDATE nodes SET state = 'deregistered', {_SEEN} "
                              "WHERE ap_title = ?", (when_db, when_db, ap_title)).rowcount > 0

    def count_nodes(self, state: str | None = None) -> int:
        """How many nodes are stored (or in ``state``)."""
        where, params = ("WHERE state = ?", (state,)) if state is not None else ("", ())
        with self._use("count_nodes") as db:
            return int(db.query(f"SELECT COUNT(*) FROM nodes {where}", params)[0][0])

    def prune_nodes(self, before: datetime, max_deregistered: int | None = None) -> list[str]:
        """Age out nodes (their readings stay); the AP titles removed, in byte order.

        Removed: deregistered nodes last seen before ``before``; registered nodes whose
        registration expired before ``before`` (expiry: the later of ``registered_at`` and
        ``last_seen``, plus ``registration_period``); and, beyond ``max_deregistered``, the
        deregistered nodes seen longest ago (so Register/Deregister cycles with fresh titles
        cannot grow the table between two passes).
        """
        before = utc(before, "before")
        cutoff = self._db.time_in(before)
        limit = None if max_deregistered is None else self._count(max_deregistered,
                                                                 "max_deregistered")
        with self._use("prune_nodes") as db, db.transaction(synced=False) as tx:
            gone = {row[0] for row in tx.execute(
                "SELECT ap_title FROM nodes WHERE state = 'deregistered' AND "
                "(last_seen IS NULL OR last_seen < ?)", (cutoff,)).fetchall()}
            # Expiry is at or after last_seen: only nodes last seen before the cutoff can
            # have expired before it, so the index narrows the rows checked here.
            for title, period, registered, seen in tx.execute(
                    "SELECT ap_title, registration_period, registered_at, last_seen FROM nodes "
                    "WHERE state = 'registered' AND (last_seen IS NULL OR last_seen < ?)",
                    (cutoff,)).fetchall():
                times = [t for t in (db.time_out(registered), db.time_out(seen)) if t]
                if times and max(times) + timedelta(seconds=int(period)) < before:
                    gone.add(title)
            if limit is not None:
                rows = tx.execute("SELECT ap_title FROM nodes WHERE state = 'deregistered' "
                                  "ORDER BY last_seen IS NULL, last_seen DESC, ap_title").fetchall()
                gone.update(row[0] for row in rows[limit:])
            titles = sorted(gone, key=lambda t: t.encode())
            for start in range(0, len(titles), 500):  # under any driver's parameter limit
                chunk = titles[start:start + 500]
                tx.execute(f"DELETE FROM nodes WHERE ap_title IN "
                           f"({', '.join('?' * len(chunk))})", chunk)
        return titles

    @staticmethod
    def _node(db: Any, row: Sequence[Any]) -> NodeRecord:
        return NodeRecord(row[0], row[1], int(row[2]), int(row[3]), row[4], row[5], int(row[6]),
                          db.time_out(row[7]), db.time_out(row[8]), row[9], row[10])

    def _time_window(self, where: list[str], params: list[Any], since: Any, until: Any) -> None:
        """Add ``since <= time < until`` (either end optional) to a query's conditions."""
        if since is not None:
            where.append("time >= ?")
            params.append(self._time(since, "since"))
        if until is not None:
            where.append("time < ?")
            params.append(self._time(until, "until"))

    def _time(self, when: datetime, what: str) -> Any:
        return self._db.time_in(utc(when, what))

    # -- readings --------------------------------------------------------------------------

    def store_readings(self, ap_title: str, readings: Sequence[Reading]) -> int:
        """Store ``readings`` of one node in one transaction; the number newly stored.

        Returns after the commit: every reading given is then stored (now or before),
        even if the process is killed next. Readings already stored are skipped
        (counted out), so a retry after a crash or an error never duplicates.
        """
        _check_ap_title(ap_title)
        rows = []
        for reading in readings:
            if not isinstance(reading, Reading):
                raise TypeError(f"store_readings takes Readings, not {type(reading).__name__}")
            rows.append((ap_title, reading.kind, self._db.time_in(reading.time), reading.name,
                         reading.value, reading.extra))
        if not rows:
            return 0
        with self._use("store_readings") as db, db.transaction() as tx:
            return self._insert(tx, rows)

    def _insert(self, tx: Any, rows: list[tuple[Any, ...]]) -> int:
        new = tx.executemany(_INSERT_READING, rows)
        if self.outbox:
            # Every reading given, not only the new ones: a copy already published is
            # dropped by the stream (its message id is the natural key) or by the sink.
            tx.executemany(_INSERT_OUTBOX, rows)
        return new

    def store_many(self, rows: Sequence[tuple[str, Reading]]) -> int:
        """Store readings of any nodes, ``(ap_title, reading)`` pairs, in ONE transaction; the
        number newly stored. What ``c1222 sink`` commits before it acknowledges a batch."""
        values = []
        for ap_title, reading in rows:
            _check_ap_title(ap_title)
            if not isinstance(reading, Reading):
                raise TypeError(f"store_many takes Readings, not {type(reading).__name__}")
            values.append((ap_title, reading.kind, self._db.time_in(reading.time), reading.name,
                           reading.value, reading.extra))
        if not values:
            return 0
        with self._use("store_many") as db, db.transaction() as tx:
            return self._insert(tx, values)

    # -- publishing outbox (docs/storage.md, "Scaling out") --------------------------------

    def outbox_batch(self, limit: int) -> list[tuple[int, str, Reading]]:
        """The oldest ``limit`` readings waiting to be published: ``(id, ap_title, reading)``."""
        with self._use("outbox_batch") as db:
            rows = db.query(f"SELECT id, ap_title, {_READING_COLUMNS} FROM outbox "
                            "ORDER BY id LIMIT ?", (self._count(limit, "limit"),))
            return [(int(r[0]), r[1], self._reading(db, r[2:])) for r in rows]

    def outbox_done(self, ids: Sequence[int]) -> int:
        """Remove published readings from the outbox; the number removed."""
        ids = [int(i) for i in ids]
        removed = 0
        with self._use("outbox_done") as db, db.transaction(synced=False) as tx:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                removed += max(tx.execute(f"DELETE FROM outbox WHERE id IN "
                                          f"({', '.join('?' * len(chunk))})", chunk).rowcount, 0)
        return removed

    def outbox_count(self) -> int:
        """Readings waiting to be published."""
        with self._use("outbox_count") as db:
            return int(db.query("SELECT COUNT(*) FROM outbox")[0][0])

    def outbox_trim(self, keep: int) -> int:
        """Drop all but the newest ``keep`` waiting readings (the bound while NATS is away);
        the number dropped. They stay stored in ``readings``."""
        with self._use("outbox_trim") as db, db.transaction(synced=False) as tx:
            return max(tx.execute(
                "DELETE FROM outbox WHERE id <= "
                "(SELECT id FROM outbox ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self._count(keep, "keep"),)).rowcount, 0)

    def ensure_partitions(self, now: datetime, ahead: int = PARTITION_DAYS_AHEAD,
                          behind: int = PARTITION_DAYS_BEHIND) -> int:
        """PostgreSQL: make the readings partitions of the UTC days from ``now - behind`` to
        ``now + ahead`` that are missing (rows of those days waiting in the default partition
        move in); the number made. SQLite has one table: 0.

        Opening the storage and each retention pass call it, so a partition exists days
        before its first reading."""
        if self.dialect != "postgresql":
            return 0
        today = utc(now, "now").date()
        days = [today + timedelta(days=n) for n in range(-self._count(behind, "behind"),
                                                           self._count(ahead, "ahead") + 1)]
        made = 0
        with self._use("ensure_partitions") as db, db.transaction(synced=False) as tx:
            for day in days:
                made += bool(tx.execute(f"SELECT {PARTITION_FUNCTION}(?)", (day,)).fetchone()[0])
        return made

    def reading_partitions(self) -> list[date]:
        """PostgreSQL: the UTC days that have a readings partition, oldest first ([] on
        SQLite). The default partition is not listed."""
        if self.dialect != "postgresql":
            return []
        with self._use("reading_partitions") as db:
            rows = db.query("SELECT c.relname FROM pg_inherits i "
                            "JOIN pg_class c ON c.oid = i.inhrelid "
                            "WHERE i.inhparent = 'readings'::regclass "
                            "AND c.relname ~ '^readings_p[0-9]{8}$'")
        return sorted(datetime.strptime(r[0][len("readings_p"):], "%Y%m%d").date()
                      for r in rows)

    def prune_readings(self, before: datetime) -> list[date]:
        """Remove the readings of the whole UTC days that end at or before ``before``; those
        days, oldest first. PostgreSQL drops their partitions (no row-by-row delete, no
        vacuum debt); rows in the default partition (wrong meter clocks) are kept. SQLite
        deletes the rows of those days."""
        cutoff = utc(before, "before").date()  # days before this one have ended by `before`
        if self.dialect == "postgresql":
            days = [d for d in self.reading_partitions() if d < cutoff]
            with self._use("prune_readings") as db, db.transaction(synced=False) as tx:
                for day in days:
                    tx.execute(f"DROP TABLE readings_p{day:%Y%m%d}")
            return days
        limit = self._db.time_in(datetime(cutoff.year, cutoff.month, cutoff.day,
                                          tzinfo=timezone.utc))
        with self._use("prune_readings") as db, db.transaction(synced=False) as tx:
            days = sorted(date.fromisoformat(r[0]) for r in tx.execute(
                "SELECT DISTINCT substr(time, 1, 10) FROM readings WHERE time < ?",
                (limit,)).fetchall())
            tx.execute("DELETE FROM readings WHERE time < ?", (limit,))
        return days

    def readings(self, ap_title: str, kind: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, limit: int | None = None,
                 newest_first: bool = False) -> list[Reading]:
        """The node's readings with ``since <= time < until``, oldest first.

        Ties in time keep kind order, then the order they were stored in (the channels
        of an interval come back as given). ``limit`` keeps the first ``limit`` rows of
        that order; with ``newest_first`` the order is reversed before the limit.
        """
        where, params = ["ap_title = ?"], [ap_title]
        if kind is not None:
            self._check_kind(kind)
            where.append("kind = ?")
            params.append(kind)
        self._time_window(where, params, since, until)
        order = "time DESC, kind DESC, id DESC" if newest_first else "time, kind, id"
        sql = (f"SELECT {_READING_COLUMNS} FROM readings WHERE {' AND '.join(where)} "
               f"ORDER BY {order}")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(self._count(limit, "limit"))
        with self._use("readings") as db:
            return [self._reading(db, row) for row in db.query(sql, params)]

    def latest(self, ap_title: str, kind: str) -> list[Reading]:
        """The node's readings of ``kind`` at the most recent time there is one (in stored order).

        That is the last present-value snapshot, the last register read, every channel
        of the last interval, or the last event(s); an empty list when there are none.
        """
        self._check_kind(kind)
        with self._use("latest") as db:
            rows = db.query(
                f"SELECT {_READING_COLUMNS} FROM readings WHERE ap_title = ? AND kind = ? AND "
                "time = (SELECT MAX(time) FROM readings WHERE ap_title = ? AND kind = ?) "
                "ORDER BY id", (ap_title, kind, ap_title, kind))
            return [self._reading(db, row) for row in rows]

    def count_readings(self, ap_title: str | None = None, kind: str | None = None) -> int:
        """How many readings are stored (of one node and/or kind)."""
        where, params = [], []
        if ap_title is not None:
            where.append("ap_title = ?")
            params.append(ap_title)
        if kind is not None:
            self._check_kind(kind)
            where.append("kind = ?")
            params.append(kind)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._use("count_readings") as db:
            return int(db.query(f"SELECT COUNT(*) FROM readings{clause}", params)[0][0])

    @staticmethod
    def _reading(db: Any, row: Sequence[Any]) -> Reading:
        return Reading(row[0], db.time_out(row[1]), row[2], row[3], row[4])

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"reading kind {kind!r} is not one of {KINDS}")

    @staticmethod
    def _count(n: int, what: str) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{what} must be a non-negative int, not {n!r}")
        return n

    # -- message log -----------------------------------------------------------------------

    def log_message(self, record: MessageRecord) -> int:
        """Append ``record`` to the message log (its ``id`` is ignored); the new id."""
        if not isinstance(record, MessageRecord):
            raise TypeError(f"log_message takes a MessageRecord, not {type(record).__name__}")
        with self._use("log_message") as db, db.transaction(synced=False) as tx:
            return db.insert_returning_id(
                tx, "INSERT INTO messages (time, direction, peer, transport, raw, summary, "
                "ap_title, json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (db.time_in(record.time), record.direction, record.peer, record.transport,
                 record.raw, record.summary, record.ap_title, record.json))

    def log_messages(self, records: Sequence[MessageRecord]) -> list[int]:
        """Append several records in one transaction (a busy head-end batches its log);
        their new ids, in order."""
        with self._use("log_messages") as db, db.transaction(synced=False) as tx:
            return [db.insert_returning_id(
                tx, "INSERT INTO messages (time, direction, peer, transport, raw, summary, "
                "ap_title, json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (db.time_in(r.time), r.direction, r.peer, r.transport, r.raw, r.summary,
                 r.ap_title, r.json)) for r in records]

    def messages(self, ap_title: str | None = None, limit: int = 100,
                 before_id: int | None = None) -> list[MessageRecord]:
        """Up to ``limit`` logged messages, newest first; page on with ``before_id``."""
        where, params = [], []
        if ap_title is not None:
            where.append("ap_title = ?")
            params.append(ap_title)
        if before_id is not None:
            where.append("id < ?")
            params.append(int(before_id))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        params.append(self._count(limit, "limit"))
        with self._use("messages") as db:
            rows = db.query(f"SELECT {_MESSAGE_COLUMNS} FROM messages{clause} "
                            "ORDER BY id DESC LIMIT ?", params)
            return [self._message(db, row) for row in rows]

    def message(self, id: int) -> MessageRecord | None:
        """The logged message with this id, or None (never logged, or pruned)."""
        with self._use("message") as db:
            rows = db.query(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (int(id),))
            return self._message(db, rows[0]) if rows else None

    def count_messages(self) -> int:
        """How many messages the log holds."""
        with self._use("count_messages") as db:
            return int(db.query("SELECT COUNT(*) FROM messages")[0][0])

    def prune_messages(self, keep: int | None = None, before: datetime | None = None) -> int:
        """Delete the messages logged before ``before`` and all but the newest ``keep``
        (either or both, in one transaction); the number deleted."""
        keep = None if keep is None else self._count(keep, "keep")
        cutoff = None if before is None else self._time(before, "before")
        deleted = 0
        with self._use("prune_messages") as db, db.transaction(synced=False) as tx:
            if cutoff is not None:
                deleted += max(tx.execute("DELETE FROM messages WHERE time < ?",
                                          (cutoff,)).rowcount, 0)
            if keep is not None:
                # The id of the newest message to drop; NULL (nothing deleted) when few enough.
                deleted += max(tx.execute(
                    "DELETE FROM messages WHERE id <= "
                    "(SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?)", (keep,)
                ).rowcount, 0)
        return deleted

    @staticmethod
    def _message(db: Any, row: Sequence[Any]) -> MessageRecord:
        return MessageRecord(time=db.time_out(row[1]), direction=row[2], peer=row[3],
                             transport=row[4], raw=bytes(row[5]), summary=row[6],
                             ap_title=row[7], json=row[8], id=int(row[0]))

    # -- accounts, API tokens and the audit log (docs/headend.md, "Sign-in and roles") -------

    def add_user(self, user: UserRecord) -> bool:
        """Add an account; False (nothing changed) when the name is taken."""
        with self._use("add_user") as db, db.transaction() as tx:
            if tx.execute("SELECT 1 FROM users WHERE name = ?", (user.name,)).fetchone():
                return False
            tx.execute("INSERT INTO users (name, role, password_hash, created_at) "
                       "VALUES (?, ?, ?, ?)", (user.name, user.role, user.password_hash,
                                               db.time_in(user.created_at)))
            return True

    def update_user(self, name: str, *, role: str | None = None,
                    password_hash: str | None = None) -> bool:
        """Change an account's role and/or password hash; False if there is no such account."""
        sets, params = [], []
        if role is not None:
            UserRecord(name, role, "", datetime.now(timezone.utc))  # checks the role
            sets.append("role = ?")
            params.append(role)
        if password_hash is not None:
            sets.append("password_hash = ?")
            params.append(password_hash)
        if not sets:
            return self.get_user(name) is not None
        with self._use("update_user") as db, db.transaction() as tx:
            return tx.execute(f"UPDATE users SET {', '.join(sets)} WHERE name = ?",
                              (*params, name)).rowcount > 0

    def get_user(self, name: str) -> UserRecord | None:
        with self._use("get_user") as db:
            rows = db.query("SELECT name, role, password_hash, created_at FROM users "
                            "WHERE name = ?", (name,))
            return self._user(db, rows[0]) if rows else None

    def list_users(self) -> list[UserRecord]:
        """Every account, by name."""
        with self._use("list_users") as db:
            rows = db.query("SELECT name, role, password_hash, created_at FROM users "
                            f"ORDER BY name COLLATE {db.binary_collation}")
            return [self._user(db, row) for row in rows]

    def count_users(self, role: str | None = None) -> int:
        where, params = ("WHERE role = ?", (role,)) if role is not None else ("", ())
        with self._use("count_users") as db:
            return int(db.query(f"SELECT COUNT(*) FROM users {where}", params)[0][0])

    def remove_user(self, name: str) -> bool:
        """Remove an account and its API tokens; False if there is no such account."""
        with self._use("remove_user") as db, db.transaction() as tx:
            tx.execute("DELETE FROM api_tokens WHERE user_name = ?", (name,))
            return tx.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def add_token(self, user: str, token_hash: str, label: str, when: datetime) -> int | None:
        """Store an API token's hash for ``user``; its id, or None if there is no such user."""
        when_db = self._time(when, "token time")
        with self._use("add_token") as db, db.transaction() as tx:
            if not tx.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone():
                return None
            return db.insert_returning_id(
                tx, "INSERT INTO api_tokens (user_name, token_hash, label, created_at) "
                "VALUES (?, ?, ?, ?)", (user, token_hash, label, when_db))

    def token_user(self, token_hash: str) -> UserRecord | None:
        """The account an API token (by its hash) belongs to, or None."""
        with self._use("token_user") as db:
            rows = db.query("SELECT u.name, u.role, u.password_hash, u.created_at FROM "
                            "api_tokens t JOIN users u ON u.name = t.user_name "
                            "WHERE t.token_hash = ?", (token_hash,))
            return self._user(db, rows[0]) if rows else None

    def count_tokens(self, user: str | None = None) -> int:
        where, params = ("WHERE user_name = ?", (user,)) if user is not None else ("", ())
        with self._use("count_tokens") as db:
            return int(db.query(f"SELECT COUNT(*) FROM api_tokens {where}", params)[0][0])

    @staticmethod
    def _user(db: Any, row: Sequence[Any]) -> UserRecord:
        return UserRecord(row[0], row[1], row[2], db.time_out(row[3]))

    def log_audit(self, record: AuditRecord) -> int:
        """Append a command to the audit log (committed and synced: it is evidence)."""
        with self._use("log_audit") as db, db.transaction() as tx:
            return db.insert_returning_id(
                tx, "INSERT INTO audit (time, user_name, address, action, ap_title, params, "
                "status, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (db.time_in(record.time), record.user, record.address, record.action,
                 record.ap_title, record.params, int(record.status), record.result))

    def audit(self, user: str | None = None, ap_title: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              limit: int = 100, before_id: int | None = None) -> list[AuditRecord]:
        """Audit entries with ``since <= time < until``, newest first (page with
        ``before_id``)."""
        where, params = [], []
        for column, value in (("user_name = ?", user), ("ap_title = ?", ap_title)):
            if value is not None:
                where.append(column)
                params.append(value)
        self._time_window(where, params, since, until)
        if before_id is not None:
            where.append("id < ?")
            params.append(int(before_id))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        params.append(self._count(limit, "limit"))
        with self._use("audit") as db:
            rows = db.query("SELECT id, time, user_name, address, action, ap_title, params, "
                            f"status, result FROM audit{clause} ORDER BY id DESC LIMIT ?",
                            params)
            return [AuditRecord(time=db.time_out(r[1]), user=r[2], address=r[3], action=r[4],
                                ap_title=r[5], params=r[6], status=int(r[7]), result=r[8],
                                id=int(r[0])) for r in rows]


class AsyncStorage:
    """:class:`Storage` for asyncio: each call runs on one worker thread, in call order.

    One thread (not a pool) keeps the order of calls: a reading stored before a
    query is seen by it. A cancelled call may still complete in the thread; since
    storing is idempotent, the caller may simply store again.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="c1222-storage")
        self._closed = False

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, functools.partial(fn, *args, **kwargs))

    async def __aenter__(self) -> AsyncStorage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def url(self) -> str:
        return self.storage.url

    async def aclose(self) -> None:
        """Finish the queued calls, then close the storage. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._call(self.storage.close)
        self._worker.shutdown(wait=False)

    async def upsert_node(self, node: NodeRecord) -> None:
        return await self._call(self.storage.upsert_node, node)

    async def get_node(self, ap_title: str) -> NodeRecord | None:
        return await self._call(self.storage.get_node, ap_title)

    async def list_nodes(self, state: str | None = None) -> list[NodeRecord]:
        return await self._call(self.storage.list_nodes, state)

    async def mark_seen(self, ap_title: str, when: datetime) -> bool:
        return await self._call(self.storage.mark_seen, ap_title, when)

    async def deregister(self, ap_title: str, when: datetime) -> bool:
        return await self._call(self.storage.deregister, ap_title, when)

    async def store_readings(self, ap_title: str, readings: Sequence[Reading]) -> int:
        return await self._call(self.storage.store_readings, ap_title, list(readings))

    async def readings(self, ap_title: str, kind: str | None = None,
                       since: datetime | None = None, until: datetime | None = None,
                       limit: int | None = None, newest_first: bool = False) -> list[Reading]:
        return await self._call(self.storage.readings, ap_title, kind, since, until, limit,
                                newest_first)

    async def store_many(self, rows: Sequence[tuple[str, Reading]]) -> int:
        return await self._call(self.storage.store_many, list(rows))

    async def outbox_batch(self, limit: int) -> list[tuple[int, str, Reading]]:
        return await self._call(self.storage.outbox_batch, limit)

    async def outbox_done(self, ids: Sequence[int]) -> int:
        return await self._call(self.storage.outbox_done, list(ids))

    async def outbox_count(self) -> int:
        return await self._call(self.storage.outbox_count)

    async def outbox_trim(self, keep: int) -> int:
        return await self._call(self.storage.outbox_trim, keep)

    async def ensure_partitions(self, now: datetime) -> int:
        return await self._call(self.storage.ensure_partitions, now)

    async def prune_readings(self, before: datetime) -> list[date]:
        return await self._call(self.storage.prune_readings, before)

    async def latest(self, ap_title: str, kind: str) -> list[Reading]:
        return await self._call(self.storage.latest, ap_title, kind)

    async def count_readings(self, ap_title: str | None = None, kind: str | None = None) -> int:
        return await self._call(self.storage.count_readings, ap_title, kind)

    async def log_message(self, record: MessageRecord) -> int:
        return await self._call(self.storage.log_message, record)

    async def log_messages(self, records: Sequence[MessageRecord]) -> list[int]:
        return await self._call(self.storage.log_messages, list(records))

    async def messages(self, ap_title: str | None = None, limit: int = 100,
                       before_id: int | None = None) -> list[MessageRecord]:
        return await self._call(self.storage.messages, ap_title, limit, before_id)

    async def message(self, id: int) -> MessageRecord | None:
        return await self._call(self.storage.message, id)

    async def count_messages(self) -> int:
        return await self._call(self.storage.count_messages)

    async def prune_messages(self, keep: int | None = None,
                             before: datetime | None = None) -> int:
        return await self._call(self.storage.prune_messages, keep, before)

    async def count_nodes(self, state: str | None = None) -> int:
        return await self._call(self.storage.count_nodes, state)

    async def prune_nodes(self, before: datetime,
                          max_deregistered: int | None = None) -> list[str]:
        return await self._call(self.storage.prune_nodes, before, max_deregistered)

    async def add_user(self, user: UserRecord) -> bool:
        return await self._call(self.storage.add_user, user)

    async def update_user(self, name: str, *, role: str | None = None,
                          password_hash: str | None = None) -> bool:
        return await self._call(self.storage.update_user, name, role=role,
                                password_hash=password_hash)

    async def get_user(self, name: str) -> UserRecord | None:
        return await self._call(self.storage.get_user, name)

    async def list_users(self) -> list[UserRecord]:
        return await self._call(self.storage.list_users)

    async def count_users(self, role: str | None = None) -> int:
        return await self._call(self.storage.count_users, role)

    async def remove_user(self, name: str) -> bool:
        return await self._call(self.storage.remove_user, name)

    async def add_token(self, user: str, token_hash: str, label: str,
                        when: datetime) -> int | None:
        return await self._call(self.storage.add_token, user, token_hash, label, when)

    async def token_user(self, token_hash: str) -> UserRecord | None:
        return await self._call(self.storage.token_user, token_hash)

    async def log_audit(self, record: AuditRecord) -> int:
        return await self._call(self.storage.log_audit, record)

    async def audit(self, user: str | None = None, ap_title: str | None = None,
                    since: datetime | None = None, until: datetime | None = None,
                    limit: int = 100, before_id: int | None = None) -> list[AuditRecord]:
        return await self._call(self.storage.audit, user, ap_title, since, until, limit,
                                before_id)


async def open_async_storage(url: str, *, schema: str | None = None,
                             outbox: bool = False) -> AsyncStorage:
    """:func:`open_storage` off the event loop (opening may migrate), wrapped in AsyncStorage."""
    storage = await asyncio.to_thread(open_storage, url, schema=schema, outbox=outbox)
    return AsyncStorage(storage)
