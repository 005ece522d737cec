"""A meter double for the collector's tests: a real C12.22 responder (the meter's own services
over TCP on 127.0.0.1) whose tables the test shapes, and which can lie about them.

* :class:`MeterDouble` serves a :class:`~c1222.tables.store.TableStore` built from a
  :class:`~c1222.tables.profile.MeterProfile` (small load profile and history log, so a test
  can fill and wrap them), counts the partial reads of each table, and can serve tampered
  bytes for a table (``fake``) or a virtual table of any size (``virtual``: any slice is
  made on demand, so a claim of tens of MB costs nothing here).
* :func:`huge_lp_claim` builds the tampered Tables 61 and 63 and a virtual Table 64 of a
  meter that claims ``blocks`` load-profile blocks, all of them valid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from c1222.codec.ber import Uid
from c1222.crypto.nonces import TimeIvSource
from c1222.errors import IAR
from c1222.headend.registry import Node
from c1222.meter.services import MeterServices
from c1222.session.responder import Responder, ResponderConfig
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.registry import encode_table, make_env
from c1222.tables.store import TableStore
from c1222.tables.types import TimeDate
from c1222.transport.endpoint import Endpoint, Link

Slicer = Callable[[int, int], bytes]


class LyingStore:
    """A TableStore that answers some reads with other bytes; everything else is the real
    store's (access control, hooks and writes included)."""

    def __init__(self, store: TableStore) -> None:
        self._store = store
        self.fake: dict[int, bytes | Callable[[], bytes]] = {}  # a callable: made per read
        self.virtual: dict[int, tuple[int, Slicer]] = {}  # table -> (size, slicer)
        self.partial_reads: dict[int, list[tuple[int, int]]] = {}
        self.short_reads: set[int] = set()  # tables whose partial reads answer a byte short

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def __contains__(self, number: object) -> bool:
        return number in self._store

    def full_read(self, table: int, **kw: Any) -> bytes:
        if table in self.virtual:
            size, slicer = self.virtual[table]
            return slicer(0, size)
        if table in self.fake:
            return self._fake(table)
        return self._store.full_read(table, **kw)

    def _fake(self, table: int) -> bytes:
        fake = self.fake[table]
        return fake() if callable(fake) else fake

    def partial_read_offset(self, table: int, offset: int, count: int, **kw: Any) -> bytes:
        self.partial_reads.setdefault(table, []).append((offset, count))
        if table in self.virtual:
            size, slicer = self.virtual[table]
            if offset < 0 or count < 0 or offset + count > size:
                raise IAR(f"table {table}: bytes {offset}..{offset + count} outside {size}")
            data = slicer(offset, count)
        elif table in self.fake:
            data = self._fake(table)[offset:offset + count]
        else:
            data = self._store.partial_read_offset(table, offset, count, **kw)
        return data[:-1] if table in self.short_reads and data else data


class MeterDouble:
    """A responder on 127.0.0.1 serving a built table store; ``node()`` is the registry
    entry a head-end reaches it by (tests put it in ``headend.registrar.nodes``)."""

    def __init__(self, ap_title: str, profile: MeterProfile | None = None,
                 now: TimeDate | None = None) -> None:
        self.ap_title = ap_title
        self.tables = build_tables(profile or MeterProfile(ap_title=ap_title),
                                   now=now or TimeDate(2026, 1, 1, 0, 0, 0))
        self.store: TableStore = self.tables.store
        self.lying = LyingStore(self.store)
        services = MeterServices(self.tables, Uid.parse(ap_title),
                                 clock=lambda: TimeDate(2026, 1, 1, 0, 0, 0))
        services.store = self.lying  # type: ignore[assignment]
        self.responder = Responder(ResponderConfig(ap_title=Uid.parse(ap_title)), services,
                                   TimeIvSource(time.time))
        self.endpoint = Endpoint(self._on_request,
                                 on_link_closed=lambda link: self.responder.close(link.id))
        self.address: tuple[str, int] | None = None

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        reply = self.responder.receive(data, link.id, time.time())
        return reply.data, reply.close

    async def start(self) -> MeterDouble:
        self.address = await self.endpoint.listen("127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        await self.endpoint.close()

    def node(self) -> Node:
        assert self.address is not None
        now = time.time()
        return Node(ap_title=str(Uid.parse(self.ap_title).absolute()),
                    native_address=f"{self.address[0]}:{self.address[1]}".encode(),
                    node_type=0x20, connection_type=0x40, device_class=b"SIMU",
                    serial_number="1", registration_period=3600, registered_at=now,
                    last_seen=now)


def huge_lp_claim(store: TableStore, blocks: int, *, last_seq: int | None = None
                  ) -> tuple[dict[int, bytes], int, Slicer]:
    """Tampered Tables 61 and 63 claiming ``blocks`` valid blocks of the store's load
    profile, and the size and slicer of a Table 64 to match (every block a copy of the
    store's first block)."""
    gen, t61 = store.get(0), store.get(61)
    dims = replace(t61.lp_data_set1, nbr_blks=blocks)
    claimed = replace(t61, lp_data_set1=dims)
    env = make_env(gen, {61: claimed, 62: store.get(62)})
    t63 = store.get(63)
    status = replace(t63.lp_status_set1, nbr_valid_blocks=blocks,
                     last_block_element=blocks - 1,
                     last_block_seq_nbr=blocks - 1 if last_seq is None else last_seq,
                     nbr_unread_blocks=blocks, nbr_valid_int=dims.nbr_blk_ints)
    fake = {61: encode_table(61, claimed, env),
            63: encode_table(63, t63.with_status_set(1, status), env)}
    real64 = store.get_bytes(64)
    block = real64[:len(real64) // store.get(61).lp_data_set1.nbr_blks]
    size = len(block) * blocks

    def slicer(offset: int, count: int) -> bytes:
        first, last = offset // len(block), -(-(offset + count) // len(block))
        run = block * (last - first)
        start = offset - first * len(block)
        return run[start:start + count]

    return fake, size, slicer
