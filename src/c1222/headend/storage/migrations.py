"""The schema, as an ordered list of migrations (docs/storage.md, "Schema and migrations").

Migration *n* takes a database from version *n - 1* to *n*. A released migration is
never edited: a change to the schema is a new migration at the end of the list.
Where the dialects differ each migration carries both texts; SQLite stores times as
fixed-width ISO-8601 UTC text (``2024-05-01T12:00:00.000000Z``, which sorts as time
does) and bytes as BLOB, PostgreSQL as ``timestamptz`` and ``bytea``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration"]


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
        4, "nodes reached through a master relay",
        # The master relay's title for a node learned from its notification (NULL: the node
        # registered with the head-end itself); c1222-network.md, docs/headend.md "Network".
        sqlite=("ALTER TABLE nodes ADD COLUMN via TEXT",),
        postgresql=("ALTER TABLE nodes ADD COLUMN via TEXT",),
    ),
)

#: The newest schema this code knows.
SCHEMA_VERSION = MIGRATIONS[-1].version
assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
