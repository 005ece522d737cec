"""C12.19 data tables (docs/tables.md; docs/spec c1219).

Pure code: Table 0 driven types, one declarative layout per standard table, the
registry, the table store with its response codes, procedures through Tables 7/8,
access control and the default single-phase meter profile.

The names the meter and the head-end use::

    from c1222.tables import (TableStore, build_tables, MeterProfile, decode_table,
                              encode_table, TableContext, ProcedureEngine, AccessPolicy)
"""

from __future__ import annotations

from c1222.tables.access import AccessPolicy, Permission, Principal, User
from c1222.tables.decade0 import GenConfig
from c1222.tables.engine import TableEnv, to_jsonable
from c1222.tables.procedures import (
    ProcedureEngine, ProcedureHooks, ProcedureOutcome, ProcResult, StdProc, table7_request,
)
from c1222.tables.profile import MeterProfile, MeterTables, build_tables, default_store
from c1222.tables.registry import (
    TABLES, RawTable, TableId, decode_table, encode_table, make_env, table_name, table_size,
)
from c1222.tables.store import TableStore
from c1222.tables.types import TableContext, TimeDate, TimeOfDay

__all__ = [
    "AccessPolicy", "Permission", "Principal", "User", "GenConfig", "TableEnv", "to_jsonable",
    "ProcedureEngine", "ProcedureHooks", "ProcedureOutcome", "ProcResult", "StdProc",
    "table7_request", "MeterProfile", "MeterTables", "build_tables", "default_store", "TABLES",
    "RawTable", "TableId", "decode_table", "encode_table", "make_env", "table_name", "table_size",
    "TableStore", "TableContext", "TimeDate", "TimeOfDay",
]
