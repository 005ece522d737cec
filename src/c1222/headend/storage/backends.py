"""The two database backends behind :class:`~c1222.headend.storage.core.Storage`.

A backend owns one connection and knows its dialect: placeholders, how a time and
bytes are stored, how to get the id of a new row, how to lock a migration. The
:class:`Storage` above it holds the lock that serialises threads, so a backend is
never used by two threads at once.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from c1222.errors import ConfigurationError

__all__ = ["PostgresBackend", "SqliteBackend", "redact_url"]

#: Seconds a writer waits for another process's write lock (SQLite) or a connection (PostgreSQL).
LOCK_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def redact_url(url: str) -> str:
    """``url`` fit to print: the password (user-info or ``password=`` parameter) is ``***``."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://<unparsable>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = "&".join(
        f"{pair.split('=', 1)[0]}=***" if pair.split("=", 1)[0].lower() == "password" else pair
        for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class Tx:
    """The statements of one transaction, with the backend's placeholder style."""

    def __init__(self, cursor: Any, placeholder: str) -> None:
        self.cursor = cursor
        self._ph = placeholder

    def _sql(self, sql: str) -> str:
        return sql if self._ph == "?" else sql.replace("?", self._ph)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if not params and self._ph != "?":
            # Without parameters psycopg leaves % alone (a migration's format('%I', ...)).
            self.cursor.execute(sql)
        else:
            self.cursor.execute(self._sql(sql), tuple(params))
        return self.cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run ``sql`` once per row; the number of rows changed (both drivers sum it)."""
        self.cursor.executemany(self._sql(sql), rows)
        return max(self.cursor.rowcount, 0)


class SqliteBackend:
    """SQLite in WAL mode with ``synchronous=FULL``: a returned COMMIT is on disk."""

    dialect = "sqlite"
    #: Byte order for text, so both backends list nodes in the same order.
    binary_collation = "BINARY"
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: str, display: str) -> None:
        self.display = display
        try:
            # isolation_level=None: the driver opens no transaction of its own; every
            # write is an explicit BEGIN IMMEDIATE ... COMMIT below.
            self._conn = sqlite3.connect(path, timeout=LOCK_TIMEOUT, isolation_level=None,
                                         check_same_thread=False)
            # WAL lets readers (a second process, the sqlite3 shell) work during writes;
            # FULL syncs the WAL at each commit, so an acknowledged commit survives a
            # kill -9 and a power cut (NORMAL would survive only the kill).
            self.journal_mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open SQLite database {display}: {exc}") from None

    @contextmanager
    def transaction(self, synced: bool = True) -> Iterator[Tx]:
        """One write transaction. ``synced=False`` commits without syncing the WAL (safe
        from a kill -9, not from a power cut): for rows peers drive, not readings."""
        cursor = self._conn.cursor()
        if not synced:
            cursor.execute("PRAGMA synchronous=NORMAL")  # only outside a transaction
        try:
            # IMMEDIATE takes the write lock now, so two writers queue on busy_timeout
            # instead of one failing at its first write with "database is locked".
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(cursor, "?")
                cursor.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        finally:
            if not synced:
                self._conn.execute("PRAGMA synchronous=FULL")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def prepare_migration(self, tx: Tx) -> None:
        """Nothing: BEGIN IMMEDIATE already excludes a second process migrating."""

    @staticmethod
    def insert_returning_id(tx: Tx, sql: str, params: Sequence[Any]) -> int:
        return int(tx.execute(sql, params).lastrowid)

    @staticmethod
    def time_in(when: datetime | None) -> str | None:
        # Fixed-width text in UTC: compares and sorts as the times do.
        if when is None:
            return None
        return when.astimezone(timezone.utc).replace(tzinfo=None).isoformat(
            timespec="microseconds") + "Z"

    @staticmethod
    def time_out(value: str | None) -> datetime | None:
        if value is None:
            return None
        return datetime.fromisoformat(value.rstrip("Z")).replace(tzinfo=timezone.utc)

    def close(self) -> None:
        self._conn.close()


class PostgresBackend:
    """PostgreSQL through psycopg 3: one connection, one transaction per call."""

    dialect = "postgresql"
    # Byte order whatever the database's locale (en_US would ignore the dots in AP titles).
    binary_collation = '"C"'

    def __init__(self, url: str, display: str, schema: str | None = None) -> None:
        import psycopg  # only when asked for: the SQLite default does not need it

        self._psycopg = psycopg
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self.display = display
        self.journal_mode = None
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - a port that is not a number raises here, not in libpq
        except ValueError as exc:
            raise ConfigurationError(f"malformed database URL {display}: {exc}") from None
        pairs = [p for p in parts.query.split("&") if p] if parts.query else []
        # ``schema`` is ours, not libpq's: take it out before libpq sees the URL.
        for pair in [p for p in pairs if p.split("=", 1)[0] == "schema"]:
            pairs.remove(pair)
            if schema is None:
                schema = unquote(pair.split("=", 1)[1]) if "=" in pair else ""
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(f"schema {schema!r} in {display} is not a plain SQL name")
        self.schema = schema
        self._secrets = [s for s in (parts.password, _raw_password(parts.netloc)) if s]
        self._conninfo = urlunsplit(parts._replace(query="&".join(pairs)))
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if not any(p.split("=", 1)[0] == "connect_timeout" for p in pairs):
            self._kwargs["connect_timeout"] = CONNECT_TIMEOUT
        try:
            self._conn = self._connect()
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"cannot connect to PostgreSQL at {display}: {self.scrub(exc)}") from None

    def scrub(self, exc: BaseException) -> str:
        """The text of a driver error with any password in it replaced by ``***``."""
        text = str(exc).strip()
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _connect(self) -> Any:
        conn = self._psycopg.connect(self._conninfo, **self._kwargs)
        if self.schema:
            # search_path may name a schema that does not exist yet: migration creates it.
            from psycopg import sql

            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        return conn

    def _live(self) -> Any:
        # A server restart breaks the connection; the next call reconnects rather than
        # failing for ever. The call that saw the break has already failed (not acknowledged).
        if self._conn.closed or self._conn.broken:
            self._conn.close()
            self._conn = self._connect()
        return self._conn

    @contextmanager
    def transaction(self, synced: bool = True) -> Iterator[Tx]:
        """One transaction; ``synced=False`` does not wait for the WAL flush at commit."""
        conn = self._live()
        with conn.transaction(), conn.cursor() as cursor:
            if not synced:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            yield Tx(cursor, "%s")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._live().execute(sql.replace("?", "%s"), tuple(params)).fetchall()

    def prepare_migration(self, tx: Tx) -> None:
        # Two head-ends starting at once on one database: the second waits here, then
        # finds the schema up to date. The lock ends with the transaction.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))",
                   ("c1222 storage " + (self.schema or "") + " "
                    + tx.execute("SHOW search_path").fetchone()[0],))
        if self.schema:
            from psycopg import sql

            tx.cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(self.schema)))

    @staticmethod
    def insert_returning_id(tx: Tx, sql: str, params: Sequence[Any]) -> int:
        return int(tx.execute(sql + " RETURNING id", params).fetchone()[0])

    @staticmethod
    def time_in(when: datetime | None) -> datetime | None:
        return when

    @staticmethod
    def time_out(value: datetime | None) -> datetime | None:
        # The server answers in the session's zone; the API promises UTC.
        return None if value is None else value.astimezone(timezone.utc)

    def close(self) -> None:
        self._conn.close()


def _raw_password(netloc: str) -> str | None:
    """The password as written in the URL (percent-encoded), to scrub it from messages."""
    userinfo = netloc.rsplit("@", 1)[0] if "@" in netloc else ""
    return userinfo.split(":", 1)[1] if ":" in userinfo else None
