"""The head-end's storage: registry, readings and message log (docs/storage.md).

SQLite (a file in WAL mode) by default, PostgreSQL (psycopg 3) for
``postgresql://`` URLs, behind one interface::

    storage = open_storage("sqlite:///var/lib/c1222/head.db")
    storage.store_readings("2.16.124.113620.1.22.0.5", [Reading("register", now, "wh", 1234.0)])

The schema is versioned and migrated on open; a store call returns once its
transaction has committed, which is the acknowledgement that the data survives a
kill -9 of the head-end.
"""

from .backends import redact_url
from .core import (
    AsyncStorage,
    SchemaTooNew,
    Storage,
    StorageError,
    open_async_storage,
    open_storage,
)
from .migrations import MIGRATIONS, SCHEMA_VERSION, Migration
from .records import (
    DIRECTIONS,
    ROLES,
    AuditRecord,
    UserRecord,
    KINDS,
    NODE_STATES,
    TRANSPORTS,
    MessageRecord,
    NodeRecord,
    Reading,
    canonical_json,
    event_reading,
    interval_readings,
)
from .retention import Pruned, Retention, prune_once, retention_loop

__all__ = [
    "DIRECTIONS",
    "ROLES",
    "AuditRecord",
    "UserRecord",
    "KINDS",
    "MIGRATIONS",
    "NODE_STATES",
    "SCHEMA_VERSION",
    "TRANSPORTS",
    "AsyncStorage",
    "MessageRecord",
    "Migration",
    "NodeRecord",
    "Pruned",
    "Reading",
    "Retention",
    "SchemaTooNew",
    "Storage",
    "StorageError",
    "canonical_json",
    "event_reading",
    "interval_readings",
    "open_async_storage",
    "open_storage",
    "prune_once",
    "redact_url",
    "retention_loop",
]
