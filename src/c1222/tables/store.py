"""The table store: a meter's tables as bytes, with the services' response codes.

(docs/spec c1219 sections 1 and 15.4.) The store keeps every table as bytes, because
partial writes change bytes, and decodes on demand through the registry with a
:class:`~c1222.tables.engine.TableEnv` built from its own Table 0 and dimension tables.

Service methods (``full_read``, ``partial_read_offset`` ...) are what the meter's
dispatcher calls; a request that cannot be served raises the
:class:`~c1222.errors.ServiceError` subclass naming the response code:

* table not in the store, a pending or user-defined table id -> :class:`SNS`
* offset/index access the meter's DATA_ACCESS_METHOD does not offer -> :class:`SNS`
* write to a table not in STD_TBLS_WRITE / MFG_TBLS_WRITE (read-only) -> :class:`IAR`
* offset, count or index outside the table, or data that does not decode -> :class:`IAR`
* the access policy refuses the user -> :class:`ISC`
* the table is locked (a write while the meter holds it) -> :class:`DLK`
* the table has no data yet (e.g. Table 8 before any procedure) -> :class:`DNR`

Local methods (``get``, ``put``, ``get_bytes``, ``put_bytes``) are the meter's own
access and bypass access control. Nothing here reads a clock: ``now`` is an argument.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from c1222.errors import DLK, DNR, IAR, SNS, DecodeError, LocalProtocolError
from c1222.tables.access import AccessPolicy, Principal
from c1222.tables.decade0 import GenConfig
from c1222.tables.engine import Node, TableEnv
from c1222.tables.registry import (
    DIMENSION_TABLES,
    MFG_BASE,
    TableId,
    decode_table,
    encode_table,
    table_elements,
)
from c1222.tables.types import DataAccessMethod, TimeDate

#: Tables whose size varies with their content (section 5.7).
VARIABLE_SIZE_TABLES: Final = frozenset({7, 8})
PROC_INITIATE: Final = 7
PROC_RESPONSE: Final = 8

WriteHook = Callable[["TableStore", int, Principal | None, TimeDate | None], None]
ReadHook = Callable[["TableStore", int, TimeDate | None], None]

TableRef = int | TableId


class TableStore:
    """A meter's C12.19 tables, addressed by number (0-2039 standard, 2048 + n for MTn)."""

    def __init__(self, tables: Mapping[int, bytes], *, policy: AccessPolicy | None = None) -> None:
        if 0 not in tables:
            raise LocalProtocolError("a table store needs Table 0")
        # Immutable bytes: a write replaces a table's bytes whole, so a read hands them out
        # without a copy.
        self._data: dict[int, bytes] = {n: bytes(b) for n, b in tables.items()}
        self.policy = policy if policy is not None else AccessPolicy(public_read=frozenset(tables),
                                                                     public_write=frozenset(tables))
        self._decoded: dict[int, Any] = {}
        self._env: TableEnv | None = None
        self._locked: set[int] = set()
        self._not_ready: set[int] = set()
        self._write_hooks: dict[int, list[WriteHook]] = {}
        self._read_hooks: dict[int, list[ReadHook]] = {}

    # ------------------------------------------------------------------ local access

    @property
    def gen_config(self) -> GenConfig:
        return self.get(0)

    @property
    def env(self) -> TableEnv:
        """The environment layouts are coded with: this store's Table 0 and dimension tables."""
        if self._env is None:
            self._env = TableEnv(self.gen_config.context(), self._lookup)
        return self._env

    def _lookup(self, number: int) -> Any:
        return self.get(number) if number in self._data else None

    def numbers(self) -> list[int]:
        """The tables this store holds, in order."""
        return sorted(self._data)

    def __contains__(self, number: object) -> bool:
        return number in self._data

    def get_bytes(self, number: int) -> bytes:
        return self._data[number]

    def get(self, number: int) -> Any:
        """The decoded value of a table (cached until the table changes)."""
        if number not in self._decoded:
            if number == 0:
                self._decoded[0] = decode_table(0, self._data[0])
            else:
                self._decoded[number] = decode_table(number, self._data[number], self.env)
        return self._decoded[number]

    def put(self, number: int, value: Any) -> None:
        """Replace a table by an encoded value; the size must not change (except tables 7/8)."""
        self.put_bytes(number, encode_table(number, value, self.env))

    def put_bytes(self, number: int, data: bytes) -> None:
        if number in self._data and number not in VARIABLE_SIZE_TABLES and number != 0 \
                and len(data) != len(self._data[number]):
            raise LocalProtocolError(
                f"table {number}: {len(data)} bytes, the table has {len(self._data[number])}")
        self._data[number] = bytes(data)
        self._changed(number)

    def _changed(self, number: int) -> None:
        if number == 0 or number in DIMENSION_TABLES:
            self._decoded.clear()
            self._env = None
        else:
            self._decoded.pop(number, None)

    # ------------------------------------------------------------------ state and hooks

    def lock(self, number: int) -> None:
        """Refuse writes with DLK until :meth:`unlock` (e.g. while the meter updates it)."""
        self._locked.add(number)

    def unlock(self, number: int) -> None:
        self._locked.discard(number)

    def set_ready(self, number: int, ready: bool = True) -> None:
        """Mark a table as having (or not yet having) data; reads of a not-ready table give DNR."""
        (self._not_ready.discard if ready else self._not_ready.add)(number)

    def is_ready(self, number: int) -> bool:
        return number not in self._not_ready

    def on_write(self, number: int, hook: WriteHook) -> None:
        """Call ``hook(store, number, principal, now)`` after every service write of a table."""
        self._write_hooks.setdefault(number, []).append(hook)

    def on_read(self, number: int, hook: ReadHook) -> None:
        """Call ``hook(store, number, now)`` before every service read (to refresh live data)."""
        self._read_hooks.setdefault(number, []).append(hook)

    # ------------------------------------------------------------------ checks

    def _key(self, table: TableRef) -> int:
        if isinstance(table, TableId):
            if table.pending or table.user_defined:
                raise SNS(f"pending / user-defined table {table.number} not supported")
            key = table.key
        # Package numbering: 0-2039 standard, 2048 + n manufacturer; nothing above. A number
        # in range is its own key (TableId(n % MFG_BASE, n >= MFG_BASE).key == n).
        elif 0 <= table < 2 * MFG_BASE:
            key = table
        else:
            raise SNS(f"table {table} not supported")
        if key not in self._data:
            raise SNS(f"table {key} not supported")
        return key

    def _access_method(self, offset: bool) -> None:
        method = self.gen_config.format_control_2.data_access_method
        wanted = DataAccessMethod.OFFSET if offset else DataAccessMethod.INDEX
        if not method & wanted:
            raise SNS(f"{'offset' if offset else 'index'} access not offered (DATA_ACCESS_METHOD "
                      f"{method})")

    def _writable(self, key: int) -> bool:
        gc = self.gen_config
        if key >= MFG_BASE:
            return key - MFG_BASE in gc.mfg_tbls_write
        return key in gc.std_tbls_write

    def _check_read(self, table: TableRef, principal: Principal | None,
                    now: TimeDate | None) -> int:
        key = self._key(table)
        self.policy.check_table(key, principal, write=False)
        hooks = self._read_hooks.get(key)
        if hooks:
            for hook in hooks:
                hook(self, key, now)
        if key in self._not_ready:
            raise DNR(f"table {key} has no data yet")
        return key

    def _check_write(self, table: TableRef, principal: Principal | None) -> int:
        key = self._key(table)
        if not self._writable(key):
            raise IAR(f"table {key} is read-only")
        self.policy.check_table(key, principal, write=True)
        if key in self._locked:
            raise DLK(f"table {key} is locked")
        return key

    # ------------------------------------------------------------------ reads

    def full_read(self, table: TableRef, *, principal: Principal | None = None,
                  now: TimeDate | None = None) -> bytes:
        """Full read (0x30)."""
        key = self._check_read(table, principal, now)
        return self._data[key]

    def partial_read_offset(self, table: TableRef, offset: int, count: int, *,
                            principal: Principal | None = None,
                            now: TimeDate | None = None) -> bytes:
        """Partial read by offset (0x3F): ``count`` bytes from ``offset``; beyond the end -> IAR."""
        self._access_method(offset=True)
        key = self._check_read(table, principal, now)
        data = self._data[key]
        if offset < 0 or count < 0 or offset + count > len(data):
            raise IAR(f"table {key}: bytes {offset}..{offset + count} outside its "
                      f"{len(data)} bytes")
        return data[offset : offset + count]

    def partial_read_index(self, table: TableRef, indices: Sequence[int], count: int, *,
                           principal: Principal | None = None,
                           now: TimeDate | None = None) -> bytes:
        """Partial read by index (0x31-0x39): ``count`` elements from the element ``indices``
        selects, siblings at the last level (see :meth:`element_span`)."""
        self._access_method(offset=False)
        key = self._check_read(table, principal, now)
        start, end = self.element_span(key, indices, count)
        return self._data[key][start:end]

    def element_span(self, number: int, indices: Sequence[int], count: int = 1) -> tuple[int, int]:
        """Byte range of ``count`` consecutive elements starting at the element path ``indices``.

        Index i at one level selects the i-th present member of a record or the i-th element
        of an array. A table without a layout is indexed by byte. Out of range -> IAR.
        [UNVERIFIED: the standard's exact index and element-count semantics.]
        """
        data = self._data[number]
        if not indices or count < 1 or any(i < 0 for i in indices):
            raise IAR("an index read needs at least one index and a count >= 1")
        try:
            tree = table_elements(number, data, self.env)
        except DecodeError:
            tree = None
        if tree is None:
            nodes: tuple[Node, ...] = tuple(Node(str(i), i, i + 1) for i in range(len(data)))
        else:
            nodes = tree
        for depth, index in enumerate(indices):
            last = depth == len(indices) - 1
            if last:
                if index + count > len(nodes):
                    raise IAR(f"table {number}: elements {index}..{index + count - 1} out of range")
                return nodes[index].start, nodes[index + count - 1].end
            if index >= len(nodes) or not nodes[index].children:
                raise IAR(f"table {number}: index path {list(indices)} out of range")
            nodes = nodes[index].children
        raise IAR("unreachable index path")  # pragma: no cover

    # ------------------------------------------------------------------ writes

    def _commit(self, key: int, new: bytes, principal: Principal | None,
                now: TimeDate | None) -> None:
        if key != PROC_INITIATE:
            # Only data that decodes under the table's layout may be stored.
            try:
                decode_table(key, new, self.env if key else None)
            except DecodeError as exc:
                raise IAR(f"table {key}: data does not decode ({exc.reason})") from None
        self._data[key] = bytes(new)
        self._changed(key)
        self._not_ready.discard(key)
        for hook in self._write_hooks.get(key, ()):
            hook(self, key, principal, now)

    def full_write(self, table: TableRef, data: bytes, *, principal: Principal | None = None,
                   now: TimeDate | None = None) -> None:
        """Full write (0x40): the data must be exactly the table's size (Table 7 at least 3)."""
        key = self._check_write(table, principal)
        if key == PROC_INITIATE:
            if len(data) < 3:
                raise IAR("a Table 7 write carries at least PROC and SEQ_NBR (3 bytes)")
        elif key not in VARIABLE_SIZE_TABLES and len(data) != len(self._data[key]):
            raise IAR(f"table {key}: full write of {len(data)} bytes, table has "
                      f"{len(self._data[key])}")
        self._commit(key, bytes(data), principal, now)

    def partial_write_offset(self, table: TableRef, offset: int, data: bytes, *,
                             principal: Principal | None = None,
                             now: TimeDate | None = None) -> None:
        """Partial write by offset (0x4F). Table 7 accepts only offset 0 (a whole request)."""
        self._access_method(offset=True)
        key = self._check_write(table, principal)
        if key == PROC_INITIATE:
            if offset != 0:
                raise IAR("Table 7 is written whole")
            self.full_write(key, data, principal=principal, now=now)
            return
        self._write_range(key, offset, data, principal, now)

    def partial_write_index(self, table: TableRef, indices: Sequence[int], data: bytes, *,
                            principal: Principal | None = None,
                            now: TimeDate | None = None) -> None:
        """Partial write by index (0x41-0x49): ``data`` replaces bytes from the element's start."""
        self._access_method(offset=False)
        key = self._check_write(table, principal)
        if key == PROC_INITIATE:
            raise IAR("Table 7 is written whole")
        start, _end = self.element_span(key, indices, 1)
        self._write_range(key, start, data, principal, now)

    def _write_range(self, key: int, offset: int, data: bytes, principal: Principal | None,
                     now: TimeDate | None) -> None:
        current = self._data[key]
        if offset < 0 or offset + len(data) > len(current):
            raise IAR(f"table {key}: bytes {offset}..{offset + len(data)} outside its "
                      f"{len(current)} bytes")
        new = bytearray(current)
        new[offset : offset + len(data)] = data
        self._commit(key, bytes(new), principal, now)


__all__ = ["TableStore", "VARIABLE_SIZE_TABLES", "PROC_INITIATE", "PROC_RESPONSE"]
