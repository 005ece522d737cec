"""The schema, as an ordered list of migrations (docs/storage.md, "Schema and migrations").

Migration *n* takes a database from version *n - 1* to *n*. A released migration is
never edited: a change to the schema is a new migration at the end of the list.
Where the dialects differ each migration carries both texts; SQLite stores times as
fixed-width ISO-8601 UTC text (``2024-05-01T12:00:00.000000Z``, which sorts as time
does) and bytes as BLOB, PostgreSQL as ``timestamptz`` and ``bytea``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "PARTITION_FUNCTION", "SCHEMA_VERSION", "Migration"]

#: PostgreSQL: the function that creates the readings partition of one UTC day (version 4).
PARTITION_FUNCTION = "c1222_readings_partition"
#: Days around "now" whose partitions the version-4 migration makes for rows already stored;
#: older or later rows (a meter with a wrong clock) stay in the default partition.
MIGRATION_DAYS_BEHIND = 400
MIGRATION_DAYS_AHEAD = 8


@dataclass(frozen=True)
class Migration:
    """The statements that take the schema to ``version``, per dialect."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


def _nodes(time: str) -> str:
    return f"""CREATE TABLE nodes (
    ap_title            TEXT PRIMARY KEY,
    native_address      TEXT NOT NULL,
    node_type           INTEGER NOT NULL DEFAULT 0,
    connection_type     INTEGER NOT NULL DEFAULT 0,
    device_class        TEXT NOT NULL DEFAULT '',
    serial_number       TEXT NOT NULL DEFAULT '',
    registration_period INTEGER NOT NULL DEFAULT 0,
    registered_at       {time},
    last_seen           {time},
    state               TEXT NOT NULL DEFAULT 'registered'
)"""


def _readings(ident: str, time: str, real: str) -> str:
    # The UNIQUE natural key is what makes re-storing a reading a no-op (ON CONFLICT DO NOTHING).
    return f"""CREATE TABLE readings (
    id       {ident},
    ap_title TEXT NOT NULL,
    kind     TEXT NOT NULL,
    time     {time} NOT NULL,
    name     TEXT NOT NULL,
    value    {real} NOT NULL,
    extra    TEXT,
    UNIQUE (ap_title, kind, time, name)
)"""


def _messages(ident: str, time: str, blob: str) -> str:
    return f"""CREATE TABLE messages (
    id        {ident},
    time      {time} NOT NULL,
    direction TEXT NOT NULL,
    peer      TEXT NOT NULL,
    ap_title  TEXT,
    transport TEXT NOT NULL,
    raw       {blob} NOT NULL,
    summary   TEXT NOT NULL DEFAULT '',
    json      TEXT
)"""


def _outbox(ident: str, time: str, real: str) -> str:
    # The readings still to publish (--publish): written in the transaction that stores them,
    # deleted once the stream acknowledged them, so a kill -9 or a NATS outage loses none.
    return f"""CREATE TABLE outbox (
    id       {ident},
    ap_title TEXT NOT NULL,
    kind     TEXT NOT NULL,
    time     {time} NOT NULL,
    name     TEXT NOT NULL,
    value    {real} NOT NULL,
    extra    TEXT
)"""


def _partitioned_readings() -> tuple[str, ...]:
    """Version 4, PostgreSQL: ``readings`` becomes a table partitioned by RANGE on ``time``,
    one partition per UTC day plus a default partition, rebuilt in place with every row and id.

    A day, not a month: at 10,000 meters read every minute a day is ~100 M rows, a month
    would be one 3 G-row table; retention drops whole days, and a query on a day range scans
    only those days. The natural key includes ``time``, so it stays a UNIQUE constraint
    (PostgreSQL requires the partition key in it); ``id`` is no longer a primary key (it
    would have to include ``time``) but stays unique in practice, drawn from one identity.
    """
    fn = PARTITION_FUNCTION
    return (
        # Out of the way: the old table, its constraints, index and identity sequence.
        "ALTER TABLE readings RENAME TO readings_v3",
        "ALTER TABLE readings_v3 ALTER COLUMN id DROP IDENTITY",
        "ALTER TABLE readings_v3 RENAME CONSTRAINT readings_pkey TO readings_v3_pkey",
        "ALTER TABLE readings_v3 RENAME CONSTRAINT readings_ap_title_kind_time_name_key "
        "TO readings_v3_key",
        "ALTER INDEX readings_by_time RENAME TO readings_v3_by_time",
        """CREATE TABLE readings (
    id       BIGINT GENERATED ALWAYS AS IDENTITY,
    ap_title TEXT NOT NULL,
    kind     TEXT NOT NULL,
    time     TIMESTAMPTZ NOT NULL,
    name     TEXT NOT NULL,
    value    DOUBLE PRECISION NOT NULL,
    extra    TEXT,
    UNIQUE (ap_title, kind, time, name)
) PARTITION BY RANGE (time)""",
        "CREATE INDEX readings_by_time ON readings (ap_title, time)",
        # Rows of a day with no partition (a wrong meter clock, a day not yet made) land here.
        "CREATE TABLE readings_default PARTITION OF readings DEFAULT",
        # The partition of one UTC day, if missing: the rows of that day already in the
        # default partition move into it first (ATTACH would refuse otherwise). Two head-ends
        # making the same day queue on the advisory lock; the second finds it made.
        f"""CREATE FUNCTION {fn}(day date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    part text := 'readings_p' || to_char(day, 'YYYYMMDD');
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('c1222 readings partitions ' || current_schema()));
    IF to_regclass(quote_ident(part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE readings INCLUDING DEFAULTS)', part);
    EXECUTE format('WITH moved AS (DELETE FROM readings_default WHERE time >= $1 AND time < $2 '
                   'RETURNING *) INSERT INTO %I SELECT * FROM moved', part) USING lo, hi;
    EXECUTE format('ALTER TABLE %I ADD CHECK (time >= %L AND time < %L)', part, lo, hi);
    EXECUTE format('ALTER TABLE readings ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   part, lo, hi);
    RETURN true;
END $$""",
        f"SELECT {fn}(day) FROM (SELECT DISTINCT (time AT TIME ZONE 'UTC')::date AS day "
        f"FROM readings_v3 WHERE time >= now() - interval '{MIGRATION_DAYS_BEHIND} days' "
        f"AND time < now() + interval '{MIGRATION_DAYS_AHEAD} days') AS days",
        "INSERT INTO readings (id, ap_title, kind, time, name, value, extra) "
        "OVERRIDING SYSTEM VALUE SELECT id, ap_title, kind, time, name, value, extra "
        "FROM readings_v3",
        # New ids continue after the old ones.
        "SELECT setval(pg_get_serial_sequence('readings', 'id'), "
        "COALESCE((SELECT MAX(id) FROM readings_v3), 0) + 1, false)",
        "DROP TABLE readings_v3",
    )


def _accounts(ident: str, time: str) -> tuple[str, ...]:
    """Version 6: operator accounts, their API tokens and the audit log (docs/headend.md,
    "Sign-in and roles"). Only hashes are stored: Argon2id for passwords, SHA-256 for the
    tokens (random 256-bit values, so a fast hash loses nothing)."""
    return (
        f"""CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    {time} NOT NULL
)""",
        f"""CREATE TABLE api_tokens (
    id         {ident},
    user_name  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    label      TEXT NOT NULL DEFAULT '',
    created_at {time} NOT NULL
)""",
        f"""CREATE TABLE audit (
    id        {ident},
    time      {time} NOT NULL,
    user_name TEXT,
    address   TEXT NOT NULL DEFAULT '',
    action    TEXT NOT NULL,
    ap_title  TEXT,
    params    TEXT,
    status    INTEGER NOT NULL,
    result    TEXT NOT NULL DEFAULT ''
)""",
        "CREATE INDEX audit_by_time ON audit (time)",
        "CREATE INDEX audit_by_user ON audit (user_name, id)",
        "CREATE INDEX audit_by_node ON audit (ap_title, id)",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "registry and readings",
        sqlite=(_nodes("TEXT"), _readings("INTEGER PRIMARY KEY", "TEXT", "REAL")),
        postgresql=(_nodes("TIMESTAMPTZ"),
                    _readings("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                              "TIMESTAMPTZ", "DOUBLE PRECISION")),
    ),
    Migration(
        2, "message log; readings by time",
        # AUTOINCREMENT: ids never come back after a prune, so a client paging with
        # before_id never sees a new message under an old id.
        sqlite=(_messages("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT", "BLOB"),
                "CREATE INDEX messages_by_node ON messages (ap_title, id)",
                "CREATE INDEX readings_by_time ON readings (ap_title, time)"),
        postgresql=(_messages("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                              "TIMESTAMPTZ", "BYTEA"),
                    "CREATE INDEX messages_by_node ON messages (ap_title, id)",
                    "CREATE INDEX readings_by_time ON readings (ap_title, time)"),
    ),
    Migration(
        3, "retention: messages by time, nodes by state",
        # Retention deletes messages older than an age and ages out stale nodes every
        # minute; without these indexes each pass would scan the whole table.
        sqlite=("CREATE INDEX messages_by_time ON messages (time)",
                "CREATE INDEX nodes_by_state ON nodes (state, last_seen)"),
        postgresql=("CREATE INDEX messages_by_time ON messages (time)",
                    "CREATE INDEX nodes_by_state ON nodes (state, last_seen)"),
    ),
    Migration(
        4, "readings partitioned by day (PostgreSQL); publishing outbox",
        # SQLite has no partitioning: the embedded default keeps one table.
        sqlite=(_outbox("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT", "REAL"),),
        postgresql=(*_partitioned_readings(),
                    _outbox("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "TIMESTAMPTZ",
                            "DOUBLE PRECISION")),
    ),
    Migration(
        5, "nodes reached through a master relay",
        # The master relay's title for a node learned from its notification (NULL: the node
        # registered with the head-end itself); c1222-network.md, docs/headend.md "Network".
        sqlite=("ALTER TABLE nodes ADD COLUMN via TEXT",),
        postgresql=("ALTER TABLE nodes ADD COLUMN via TEXT",),
    ),
    Migration(
        6, "operator accounts, API tokens and the audit log",
        sqlite=_accounts("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT"),
        postgresql=_accounts("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "TIMESTAMPTZ"),
    ),
)

#: The newest schema this code knows.
SCHEMA_VERSION = MIGRATIONS[-1].version
assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
