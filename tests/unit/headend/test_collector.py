"""The collector against meter doubles on 127.0.0.1: incremental load profile and history log,
bounds on what a meter's tables claim, failures kept per meter, decodes off the event loop, and
no task whose exception nobody retrieves."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from c1222.errors import C1222Error, DecodeError
from c1222.headend import server as headend_server
from c1222.headend.server import HeadEnd, HeadEndConfig, node_json
from c1222.tables import decade2 as d2
from c1222.tables.lists import append_history, append_lp_interval
from c1222.tables.profile import MeterProfile
from c1222.tables.registry import encode_table
from c1222.tables.types import TimeDate
from tests.unit.headend.meter_double import MeterDouble, huge_lp_claim

TITLE = "2.16.124.113620.1.22.0.123.7001"
SMALL = MeterProfile(ap_title=TITLE, lp_nbr_blks=4, lp_nbr_blk_ints=3, nbr_history_entries=5)


def run(tmp: Path, body: Callable[[HeadEnd, MeterDouble], Awaitable[None]], *,
        profile: MeterProfile | None = None, **config: Any) -> list[dict[str, Any]]:
    """Run ``body`` with a started head-end and a meter double it knows; returns what reached
    the loop's exception handler (a task exception nobody retrieved would land there)."""
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        settings = dict(listen=("127.0.0.1", 0), db=f"sqlite:///{tmp / 'h.db'}",
                        collect_interval=3600.0, log_interval=0.0, timeout=5.0)
        headend = HeadEnd(HeadEndConfig(**{**settings, **config}))  # type: ignore[arg-type]
        await headend.start()
        meter = await MeterDouble(TITLE, profile or SMALL).start()
        await asyncio.sleep(0.05)  # the collector's first pass (nothing registered yet)
        node = meter.node()
        headend.registrar.nodes[node.ap_title] = node
        try:
            await body(headend, meter)
        finally:
            await meter.stop()
            await headend.stop()
            gc.collect()
            await asyncio.sleep(0)

    asyncio.run(main())
    return errors


def at(minute: int) -> TimeDate:
    return TimeDate(2026, 1, 1 + minute // 1440, minute // 60 % 24, minute % 60, 0)


async def intervals(headend: HeadEnd) -> list[tuple[str, str, float]]:
    assert headend.storage is not None
    rows = await headend.storage.readings(TITLE, kind="interval")
    return [(r.time.isoformat(), r.name, r.value) for r in rows]


def reads_of(meter: MeterDouble, table: int) -> list[tuple[int, int]]:
    return meter.lying.partial_reads.pop(table, [])


# ------------------------------------------------------------------ finding 6: errors


def test_a_source_past_table_12_fails_the_collection_with_its_reason(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        select = d2.PresentRegisterSelect((), (9, 2, 3, 4, 5))  # Table 12 has 6 entries
        meter.lying.fake[27] = encode_table(27, select, meter.store.env)
        with pytest.raises(DecodeError, match="Table 27 selects source 9"):
            await headend.collect(TITLE)
        status = headend.status(TITLE)
        assert status.consecutive_failures == 1 and status.last_success is None
        assert "Table 27 selects source 9" in (status.last_error or "")
        shown = node_json(headend.registrar.nodes[TITLE], status)["read_status"]
        assert shown["consecutive_failures"] == 1 and shown["last_failure"].endswith("Z")
        # the console's "Read now": a 502 naming the reason, not a 500
        from c1222.headend.web import create_app

        app = create_app(headend)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://headend") as client:
            answer = await client.post(f"/api/nodes/{TITLE}/collect")
            assert answer.status_code == 502 and "source 9" in answer.json()["detail"]
            node = (await client.get(f"/api/nodes/{TITLE}")).json()
            assert node["read_status"]["consecutive_failures"] == 2
        # and the scheduled collector: counted, logged, no task exception left behind
        for _ in range(3):
            await headend._collect_one(TITLE, False)
        assert status.consecutive_failures == 5
        meter.lying.fake.pop(27)
        await headend.collect(TITLE)
        assert status.consecutive_failures == 0 and status.last_success is not None
        assert "source 9" in (status.last_error or "")  # the last failure stays visible

    errors = run(tmp_path, body)
    assert errors == []


def test_no_collector_task_leaves_an_exception_unretrieved(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(tables: Any) -> dict[str, float]:
        raise RuntimeError("a reader bug")  # not a C1222Error: the last-resort path

    monkeypatch.setattr(headend_server, "meter_values", broken)

    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        for _ in range(200):  # the collector, every 20 ms
            if headend.status(TITLE).consecutive_failures >= 3:
                break
            await asyncio.sleep(0.05)
        status = headend.status(TITLE)
        assert status.consecutive_failures >= 3
        assert status.last_error == "RuntimeError: a reader bug"

        async def failing_write() -> None:
            raise C1222Error("disk full")

        headend._spawn_write(failing_write())
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.INFO, logger="c1222.headend"):
        errors = run(tmp_path, body, collect_interval=0.02)
    assert errors == []
    assert "never retrieved" not in caplog.text
    assert "collecting 2.16.124.113620.1.22.0.123.7001 failed unexpectedly" in caplog.text
    assert "a storage write failed: disk full" in caplog.text


def test_a_short_partial_read_is_an_error_not_a_hang(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        append_lp_interval(meter.store, 1, at(15), (1, 2))
        meter.lying.short_reads.add(64)
        with pytest.raises(C1222Error, match="partial read of table 64 at 0"):
            await headend.collect(TITLE, logs=True)
        assert "bytes for" in (headend.status(TITLE).last_error or "")

    assert run(tmp_path, body) == []


# ------------------------------------------------------------------ incremental lists


def test_load_profile_is_read_incrementally_across_the_wrap_and_a_reset(
        tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        size = len(meter.store.get_bytes(64)) // 4  # one block
        for k in range(5):  # block 0 full (3 intervals), block 1 with 2
            append_lp_interval(meter.store, 1, at(15 * (k + 1)), (k, 100 + k))
        await headend.collect(TITLE, logs=True)
        assert reads_of(meter, 64) == [(0, 2 * size)]
        assert len(await intervals(headend)) == 5 * 2
        append_lp_interval(meter.store, 1, at(90), (5, 105))  # fills block 1
        await headend.collect(TITLE, logs=True)
        assert reads_of(meter, 64) == [(size, size)]  # only the block that grew
        assert len(await intervals(headend)) == 6 * 2
        await headend.collect(TITLE, logs=True)
        assert reads_of(meter, 64) == []  # nothing new: nothing read
        for k in range(6, 18):  # four more blocks: the list of 4 wraps
            append_lp_interval(meter.store, 1, at(15 * (k + 1)), (k, 100 + k))
        await headend.collect(TITLE, logs=True)
        assert reads_of(meter, 64) == [(2 * size, 2 * size), (0, 2 * size)]
        stored = await intervals(headend)
        assert len(stored) == 18 * 2 and len(set(stored)) == 18 * 2
        assert sorted(v for _t, name, v in stored if name == "ch0") == list(range(18))

        # The meter is replaced by a fresh one (its block sequence starts again at 0).
        fresh = await MeterDouble(TITLE, SMALL).start()
        try:
            node = fresh.node()
            headend.registrar.nodes[node.ap_title] = node
            append_lp_interval(fresh.store, 1, at(2000), (50, 150))
            await headend.collect(TITLE, logs=True)
            assert reads_of(fresh, 64) == [(0, size)]
            assert (at(2000).to_datetime().isoformat() + "+00:00", "ch0", 50.0) \
                in await intervals(headend)
        finally:
            await fresh.stop()

    assert run(tmp_path, body) == []


def test_history_log_is_read_incrementally_across_the_wrap(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        assert headend.storage is not None
        base = len(await headend.storage.readings(TITLE, kind="event"))
        # the double logged no event yet: 3 now
        for k in range(3):
            append_history(meter.store, at(k), 2, user_id=k, force=True)
        await headend.collect(TITLE, logs=True)
        first = reads_of(meter, 74)
        header = first[0]
        assert header[0] == 0 and len(first) == 2  # the header, then the 3 entries
        entry = first[1][1] // 3
        assert first[1] == (header[1], 3 * entry)
        for k in range(3, 9):  # 6 more: the log of 5 wraps
            append_history(meter.store, at(k), 2, user_id=k, force=True)
        await headend.collect(TITLE, logs=True)
        # the newest 5 are all that is left: elements 4, then 0..3 (oldest first)
        assert reads_of(meter, 74) == [header, (header[1] + 4 * entry, entry),
                                       (header[1], 4 * entry)]
        events = await headend.storage.readings(TITLE, kind="event")
        assert len(events) - base == 3 + 5
        await headend.collect(TITLE, logs=True)
        assert reads_of(meter, 74) == [header]  # no new entry: the header only

    assert run(tmp_path, body) == []


# ------------------------------------------------------------------ finding 1: bounds


def test_a_huge_load_profile_claim_is_flagged_and_read_only_within_the_bound(
        tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        fake, size, slicer = huge_lp_claim(meter.store, 12_000)
        meter.lying.fake.update(fake)
        meter.lying.virtual[64] = (size, slicer)
        block = size // 12_000
        await headend.collect(TITLE, logs=True)
        status = headend.status(TITLE)
        assert status.over_limit == "over-limit: Table 61 claims 12000 blocks > max 40"
        assert status.last_error is None and status.last_success is not None
        reads = reads_of(meter, 64)
        assert sum(n for _o, n in reads) == 40 * block  # the newest 40 blocks, no more
        assert reads[0][0] == (12_000 - 40) * block
        shown = headend.node_json(headend.registrar.nodes[TITLE])["read_status"]
        assert shown["over_limit"] == status.over_limit
        await headend.collect(TITLE, logs=True)
        assert reads_of(meter, 64) == []  # the same claim again: nothing new to read
        # a claim within the bounds (the double's real 40 blocks) clears the flag
        meter.lying.fake.clear()
        meter.lying.virtual.clear()
        headend._context.pop(TITLE)
        await headend.collect(TITLE, logs=True)
        assert status.over_limit is None

    assert run(tmp_path, body, profile=MeterProfile(ap_title=TITLE), max_lp_blocks=40) == []


def test_a_block_over_the_byte_bound_is_not_read(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        append_lp_interval(meter.store, 1, at(15), (1, 2))
        await headend.collect(TITLE, logs=True)
        block = len(meter.store.get_bytes(64)) // 40
        assert headend.status(TITLE).over_limit == \
            f"over-limit: a Table 64 block is {block} bytes > max 600"
        assert reads_of(meter, 64) == []

    assert run(tmp_path, body, profile=MeterProfile(ap_title=TITLE),
               max_table_bytes=600) == []


def test_a_full_read_over_the_byte_bound_is_refused_and_flagged(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        meter.lying.fake[16] = bytes(5000)
        with pytest.raises(C1222Error, match="over-limit: Table 16 is 5000 bytes > max 4096"):
            await headend.collect(TITLE)
        status = headend.status(TITLE)
        assert status.over_limit == "over-limit: Table 16 is 5000 bytes > max 4096"
        assert "Table 16 is 5000 bytes" in (status.last_error or "")

    assert run(tmp_path, body, max_table_bytes=4096) == []


def test_bounds_below_one_are_refused() -> None:
    from c1222.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_lp_blocks"):
        HeadEndConfig(max_lp_blocks=0)


def test_decodes_run_in_another_process_and_survive_its_death(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        child = await headend._decode(os.getpid)
        assert child != os.getpid()
        with pytest.raises(C1222Error, match="decoder process died"):
            await headend._decode(os._exit, 1)
        assert await headend._decode(os.getpid) not in (child, os.getpid())
        # and a collection decodes there: the load profile is stored
        append_lp_interval(meter.store, 1, at(15), (7, 8))
        await headend.collect(TITLE, logs=True)
        assert [v for _t, name, v in await intervals(headend) if name == "ch0"] == [7.0]

    assert run(tmp_path, body) == []


def test_a_claimed_host_name_is_refused_without_a_name_lookup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's native address is the peer's word: the head-end connects to IP addresses only,
    so a hostile Register cannot make it wait on name resolution."""
    import socket

    from c1222.errors import TransportError

    looked_up: list[str] = []

    def no_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        raise AssertionError("name lookup")

    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        node = headend.registrar.nodes[TITLE]
        node.native_address = b"meter.example.invalid:1153"
        node.peer = None
        monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
        with pytest.raises(TransportError, match="not an IP address"):
            await headend.collect(TITLE)
        assert "not an IP address" in (headend.status(TITLE).last_error or "")

    assert run(tmp_path, body) == []
    assert looked_up == []


def test_a_meter_that_stops_being_read_is_a_warning_once_and_so_is_its_recovery(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        select = d2.PresentRegisterSelect((), (9, 2, 3, 4, 5))
        meter.lying.fake[27] = encode_table(27, select, meter.store.env)
        for _ in range(3):
            await headend._collect_one(TITLE, False)
        meter.lying.fake.pop(27)
        await headend._collect_one(TITLE, False)

    with caplog.at_level(logging.INFO, logger="c1222.headend"):
        assert run(tmp_path, body) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO
             and "failed" in r.getMessage()]
    assert len([w for w in warnings if "failed" in w and "source 9" in w]) == 1
    assert len(infos) == 2  # the repeats stay below the default level
    assert any("works again, after 3 failed collections" in w for w in warnings)


# ------------------------------------------------------------------ the scheduler's accounting


def test_every_interval_is_accounted_in_the_api_and_metrics(tmp_path: Path) -> None:
    from c1222.headend.web import create_app

    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        app = create_app(headend)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://headend") as client:
            async def until(check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
                for _ in range(400):
                    view = (await client.get("/api/collection")).json()
                    if check(view):
                        return view
                    await asyncio.sleep(0.05)
                raise AssertionError(view)

            view = await until(lambda v: len(v["history"]) >= 3)
            assert view["interval"] == 0.4
            assert view["concurrency"] == headend.config.max_parallel
            assert view["attempts"] == 3
            for past in view["history"][:-1]:  # the first began before the meter was known
                assert (past["due"], past["read"], past["failed"], past["pending"]) \
                    == (1, 1, 0, 0), view
                assert past["end"] - past["start"] == pytest.approx(0.4)
            # the meter goes away: its reads fail as unreachable, after retries
            node = headend.registrar.nodes[TITLE]
            await meter.stop()
            node.native_address = f"{meter.address[0]}:{meter.address[1]}".encode()
            node.peer = None
            view = await until(lambda v: any(p["failed"] for p in v["history"])
                               and v["totals"]["retries"] >= 1)
            failed = next(p for p in view["history"] if p["failed"])
            assert failed["reasons"] == {"unreachable": 1} and failed["retries"] <= 2
            assert view["reasons"] == {"unreachable": view["totals"]["failed"]}
            assert len((await client.get("/api/collection?history=1")).json()["history"]) == 1
            for bad in ("-1", "61", "many", "1e9"):
                assert (await client.get(f"/api/collection?history={bad}")).status_code == 422
            text = (await client.get("/metrics")).text
            assert 'c1222_headend_collection_failures_total{code="",outcome="unreachable"}' \
                in text
            assert "c1222_headend_collection_meters_retries_total" in text

    assert run(tmp_path, body, collect_interval=0.4) == []
