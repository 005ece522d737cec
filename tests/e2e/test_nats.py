"""`c1222 headend --publish nats://...` and `c1222 sink` started as a user would, with a real
meter, NATS JetStream and PostgreSQL (tests/servers.py): every stored reading reaches the
sink's table exactly once, through a kill -9 of the sink; JetStream drops a reading published
twice; NATS down at the start and in the middle costs nothing; malformed messages are
skipped and counted; bad URLs are one-line errors (docs/storage.md, "Scaling out")."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from c1222.headend.publish import Publisher
from c1222.headend.storage import Reading, open_async_storage, open_storage
from c1222.headend.stream import message_id, parse_nats_url, subject_for
from tests.e2e.procs import Running
from tests.servers import nats_url, pg_base, pg_url, private_nats  # noqa: F401 - fixtures

METER = "2.16.124.113620.1.22.0.123.8437"
STORED = re.compile(r"stored (\d+) readings for ")
SUMMARY = re.compile(r"sink: (\d+) messages, (\d+) readings stored, (\d+) duplicates skipped, "
                     r"(\d+) malformed skipped")


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0,
               proc: Running | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s"
                                 + ("\n" + "\n".join(proc.lines[-40:]) if proc else ""))
        time.sleep(0.2)


@pytest.fixture
def stream(nats_url: str) -> Iterator[str]:
    """A stream and subjects of this test's own (other runs share the machine's NATS)."""
    tag = uuid.uuid4().hex[:10]
    yield f"{nats_url}?stream=T{tag}&prefix=t{tag}.readings"
    asyncio.run(_delete_stream(nats_url, f"T{tag}"))


async def _delete_stream(url: str, name: str) -> None:
    import nats

    nc = await nats.connect(url, allow_reconnect=False, error_cb=_quiet)
    try:
        await nc.jetstream().delete_stream(name)
    except Exception:  # noqa: BLE001 - never made (the test failed early)
        pass
    await nc.close()


async def _quiet(exc: Exception) -> None:
    pass


def stream_messages(url: str) -> int:
    """Messages the stream holds (0 before it exists)."""
    target = parse_nats_url(url)

    async def count() -> int:
        import nats
        from nats.js.errors import NotFoundError

        nc = await nats.connect(target.servers, allow_reconnect=False, error_cb=_quiet)
        try:
            return (await nc.jetstream().stream_info(target.stream)).state.messages
        except NotFoundError:
            return 0
        finally:
            await nc.close()

    return asyncio.run(count())


def count(db: str) -> int:
    with open_storage(db) as storage:
        return storage.count_readings()


def keys(db: str) -> list[tuple[str, str, dt.datetime, str, float]]:
    with open_storage(db) as storage:
        return sorted((METER, r.kind, r.time, r.name, r.value) for r in storage.readings(METER))


def start_headend(db: str, publish: str, *extra: str) -> Running:
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", db, "--publish", publish, "--collect-interval", "0.3", "-v",
                       *extra])
    headend.address()
    return headend


def start_meter(tmp: Path, headend: Running) -> Running:
    host, port = headend.address()
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend", f"{host}:{port}",
                     "--state-dir", str(tmp / "meter")])
    meter.address()
    return meter


def start_sink(stream: str, db: str, *extra: str) -> Running:
    sink = Running(["sink", "--nats", stream, "--db", db, "--ack-wait", "1", "--batch", "20",
                    *extra])
    sink.wait_for(r"sink consuming")
    return sink


def stored_lines(headend: Running) -> int:
    return sum(1 for line in headend.lines if (m := STORED.search(line)) and int(m.group(1)))


def test_every_stored_reading_reaches_the_sink_exactly_once_through_kill_9s(
        tmp_path: Path, stream: str, pg_base: str) -> None:
    tag = uuid.uuid4().hex[:8]
    headend_db, sink_db = (f"{pg_base}?schema=c1222_he_{tag}", f"{pg_base}?schema=c1222_sk_{tag}")
    headend = start_headend(headend_db, stream)
    port = headend.address()[1]
    meter = start_meter(tmp_path, headend)
    sink = start_sink(stream, sink_db)
    try:
        wait_until(lambda: count(sink_db) >= 20, "20 readings in the sink's table", proc=sink)
        sink.kill()  # mid-stream: batches fetched, maybe stored, not all acknowledged
        first = count(sink_db)
        before = stored_lines(headend)
        wait_until(lambda: stored_lines(headend) >= before + 3, "3 more collections",
                   proc=headend)
        headend.kill()  # mid-collection: readings committed, maybe not yet published
        headend = start_headend(headend_db, stream, "--listen", f"127.0.0.1:{port}")
        wait_until(lambda: stored_lines(headend) >= 3, "collections after the restart",
                   proc=headend)
        sink = start_sink(stream, sink_db)
        wait_until(lambda: count(sink_db) > first, "the restarted sink storing", proc=sink)
        assert meter.stop() == 0
        assert headend.stop() == 0  # its outbox is sent before it ends
        stored = count(headend_db)
        # JetStream holds each stored reading once (the message id is the natural key) ...
        assert stream_messages(stream) == stored
        # ... and the sink's table has each of them exactly once.
        wait_until(lambda: count(sink_db) == stored, f"{stored} readings in the sink's table",
                   proc=sink)
        assert keys(sink_db) == keys(headend_db)
        assert sink.stop() == 0
        summary = SUMMARY.search("\n".join(sink.lines))
        assert summary is not None, sink.lines
        assert int(summary.group(4)) == 0  # nothing malformed
    finally:
        for proc in (meter, sink, headend):
            if proc.proc.poll() is None:
                proc.kill()
        import psycopg

        with psycopg.connect(pg_base, autocommit=True) as conn:
            for db in (headend_db, sink_db):
                conn.execute(f'DROP SCHEMA IF EXISTS "{db.split("=")[-1]}" CASCADE')


def test_a_reading_published_twice_is_stored_once_by_jetstream(stream: str) -> None:
    target = parse_nats_url(stream)
    reading = Reading("register", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc), "wh", 7.0)

    async def run() -> tuple[dict[str, int], object]:
        import nats

        storage = await open_async_storage("sqlite://:memory:", outbox=True)
        await storage.store_readings(METER, [reading])
        await storage.store_readings(METER, [reading])  # a retry: in the outbox twice
        publisher = Publisher(target, storage)
        await publisher.start()
        while publisher.stats["published"] < 2:
            await asyncio.sleep(0.05)
        await publisher.stop()
        assert await storage.outbox_count() == 0
        await storage.aclose()
        nc = await nats.connect(target.servers, error_cb=_quiet)
        msg = await nc.jetstream().get_last_msg(target.stream,
                                                subject_for(target.prefix, METER))
        await nc.close()
        return publisher.stats, msg

    stats, msg = asyncio.run(run())
    assert stats["duplicates"] == 1
    assert stream_messages(stream) == 1
    assert msg.headers["Nats-Msg-Id"] == message_id(METER, reading)
    assert json.loads(msg.data)["value"] == 7.0


def test_nats_down_at_start_and_in_the_middle_costs_no_reading(tmp_path: Path) -> None:
    nats = private_nats()  # a server this test takes down; not started yet
    url = f"{nats.url}?stream=DOWN&prefix=down.readings"
    db = f"sqlite://{tmp_path / 'headend.db'}"
    headend = start_headend(db, url)
    meter = start_meter(tmp_path, headend)
    try:
        wait_until(lambda: stored_lines(headend) >= 3, "collecting with NATS down",
                   proc=headend)
        warnings = [x for x in headend.lines if "cannot publish readings to NATS" in x]
        assert len(warnings) == 1 and "WARNING" in warnings[0]
        nats.start()
        headend.wait_for("NATS at .* is reachable again", 30)
        wait_until(lambda: stream_messages(url) >= count(db) > 0, "the held readings published")
        nats.stop()  # in the middle
        before = stored_lines(headend)
        wait_until(lambda: stored_lines(headend) >= before + 3, "collecting on", proc=headend)
        wait_until(lambda: sum("cannot publish readings to NATS" in x
                               for x in headend.lines) == 2, "one warning per outage",
                   proc=headend)
        nats.start()
        wait_until(lambda: sum("reachable again" in x for x in headend.lines) == 2,
                   "the second recovery", proc=headend)
        assert meter.stop() == 0
        assert headend.stop() == 0
        assert stream_messages(url) == count(db)  # nothing lost, nothing twice
        assert not any("Traceback" in x for x in headend.lines), headend.lines
    finally:
        for proc in (meter, headend):
            if proc.proc.poll() is None:
                proc.kill()
        nats.close()


def test_the_outbox_is_bounded_while_nats_is_unreachable_and_sent_at_the_next_start(
        tmp_path: Path, stream: str, caplog: pytest.LogCaptureFixture) -> None:
    dead = private_nats()  # never started: nothing listens on its port
    live = parse_nats_url(stream)
    down = parse_nats_url(f"{dead.url}?stream={live.stream}&prefix={live.prefix}")
    when = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    db = f"sqlite://{tmp_path / 'headend.db'}"

    async def run(target: object, wait: Callable[[Publisher], bool]) -> Publisher:
        storage = await open_async_storage(db, outbox=True)
        publisher = Publisher(target, storage, max_outbox=100)  # type: ignore[arg-type]
        await publisher.start()
        if target is down:
            await storage.store_readings(METER, [Reading("register", when, f"r{i}", float(i))
                                                 for i in range(1000)])
            publisher.wake()
        while not wait(publisher):
            await asyncio.sleep(0.05)
        await publisher.stop()
        await storage.aclose()
        return publisher

    with caplog.at_level(logging.WARNING, "c1222.headend.publish"):
        first = asyncio.run(run(down, lambda p: p.stats["dropped"] >= 900))
    dead.close()
    assert first.stats["dropped"] == 900 and first.stats["published"] == 0
    assert first.stats["outbox"] == 100  # bounded, and kept for the next run
    said = [r.getMessage() for r in caplog.records]
    assert sum("cannot publish" in m for m in said) == 1
    assert sum("outbox full" in m for m in said) == 1
    assert any("100 readings wait in the outbox" in m for m in said)
    # The next start with NATS there sends what the last one held: the newest 100.
    second = asyncio.run(run(live, lambda p: p.stats["published"] >= 100))
    assert second.stats["outbox"] == 0 and stream_messages(stream) == 100
    with open_storage(db) as storage:
        assert storage.count_readings() == 1000  # dropped from the outbox, not from storage


def _hostile_messages(prefix: str) -> list[tuple[str, bytes]]:
    good = {"ap_title": METER, "kind": "register", "time": "2024-05-01T12:00:00.000000Z",
            "name": "wh", "value": 1.0, "extra": None}
    subject = subject_for(prefix, METER)

    def bad(**change: object) -> tuple[str, bytes]:
        return subject, json.dumps({**good, **change}).encode()

    return [
        (subject, b"\xff\xfe not json"),
        (subject, b"[1, 2, 3]"),
        (subject, b"[" * 100_000),  # deeper than the JSON parser goes (and too large)
        (subject, json.dumps({**good, "name": "x" * 20_000}).encode()),
        bad(kind="gas"),
        bad(value="NaN"),
        (subject, json.dumps(good).replace('"value": 1.0', '"value": Infinity').encode()),
        bad(name="w\u0000h"),
        bad(name="\ud800"),
        (subject, json.dumps(good).replace('"value": 1.0', '"value": ' + "9" * 400).encode()),
        bad(time="2024-05-01T12:00:00"),
        bad(time="2024-05-01T12:00:00+05:00Z"),
        bad(time="yesterday Z"),
        bad(ap_title="not.an.oid"),
        bad(ap_title="1." + "9" * 500),
        bad(extra={"nested": 1}),
        (subject_for(prefix, "2.16.124.113620.1.22.0.99"), json.dumps(good).encode()),
        (subject, json.dumps({**good, "name": "the-good-one"}).encode()),
    ]


def test_the_sink_skips_and_counts_malformed_messages(tmp_path: Path, stream: str) -> None:
    target = parse_nats_url(stream)
    messages = _hostile_messages(target.prefix)

    async def publish() -> None:
        import nats

        nc = await nats.connect(target.servers, error_cb=_quiet)
        js = nc.jetstream()
        await js.add_stream(name=target.stream, subjects=[target.subjects])
        for subject, data in messages:
            await js.publish(subject, data)
        await nc.close()

    asyncio.run(publish())
    db = f"sqlite://{tmp_path / 'sink.db'}"
    sink = start_sink(stream, db)
    try:
        wait_until(lambda: count(db) == 1, "the one good reading stored", proc=sink)
        wait_until(lambda: sum("skipped a message" in x for x in sink.lines)
                   == len(messages) - 1, "every bad message skipped", proc=sink)
        assert sink.stop() == 0
    finally:
        if sink.proc.poll() is None:
            sink.kill()
    summary = SUMMARY.search("\n".join(sink.lines))
    assert summary is not None, sink.lines
    assert summary.groups() == (str(len(messages)), "1", "0", str(len(messages) - 1))
    assert not any("Traceback" in x for x in sink.lines), sink.lines
    with open_storage(db) as storage:
        assert [r.name for r in storage.readings(METER)] == ["the-good-one"]


def test_a_row_the_sinks_database_refuses_is_skipped_and_the_rest_stored(
        tmp_path: Path, stream: str) -> None:
    target = parse_nats_url(stream)
    when = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    names = ["a", "poison", "b", "c"]
    db = f"sqlite://{tmp_path / 'sink.db'}"
    open_storage(db).close()
    import sqlite3

    with sqlite3.connect(tmp_path / "sink.db") as conn:  # a constraint of the MDM's own
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON readings WHEN NEW.name = 'poison' "
                     "BEGIN SELECT RAISE(ABORT, 'poison refused'); END")

    async def run() -> dict[str, int]:
        from c1222.headend.sink import Sink, SinkConfig

        source = await open_async_storage("sqlite://:memory:", outbox=True)
        await source.store_readings(METER, [Reading("register", when, n, 1.0) for n in names])
        publisher = Publisher(target, source)
        await publisher.start()
        while publisher.stats["published"] < len(names):
            await asyncio.sleep(0.05)
        await publisher.stop()
        await source.aclose()
        storage = await open_async_storage(db)
        sink = Sink(target, storage, SinkConfig(durable="poison", batch=10))
        await sink.start()
        while sink.stats["received"] < len(names):
            await sink.step()
        await sink.stop()
        await storage.aclose()
        return sink.stats

    stats = asyncio.run(run())
    assert stats["stored"] == 3 and stats["malformed"] == 1 and stats["acked"] == 3
    with open_storage(db) as storage:
        assert sorted(r.name for r in storage.readings(METER)) == ["a", "b", "c"]


@pytest.mark.parametrize("url, says", [
    ("http://127.0.0.1:4222", "must start with nats://"),
    ("nats://", "names no host"),
    ("nats://127.0.0.1", "names no port"),
    ("nats://127.0.0.1:99999", "Port out of range"),
    ("nats://u:secret@h:1/x", "nats://u:***@h:1/x has a path"),
    ("nats://h:1?stream=a.b", "stream 'a.b' must be"),
    ("nats://h:1?stream=" + "s" * 65, "must be 1-64"),
    ("nats://h:1?prefix=a..b", "prefix 'a..b' must be"),
    ("nats://h:1?prefix=a.>", "prefix 'a.>' must be"),
    ("nats://h:1?retention=1", "unknown parameter 'retention'"),
    ("nats://[::1:1", "malformed NATS URL"),
])
def test_a_bad_nats_url_is_a_configuration_error_naming_it(url: str, says: str) -> None:
    from c1222.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as error:
        parse_nats_url(url)
    assert says in str(error.value) and "secret" not in str(error.value)


@pytest.mark.parametrize("args, says", [
    (["headend", "--publish", "nats://u:secret@h:1/x"], "nats://u:***@h:1/x has a path"),
    (["sink", "--db", "sqlite://:memory:", "--nats", "nats://h"], "names no port"),
    (["sink", "--db", "sqlite://:memory:", "--nats", "nats://h:1", "--durable", "a b"],
     "1-64 letters"),
    (["sink", "--db", "mysql://x", "--nats", "nats://h:1"], "unsupported database"),
])
def test_bad_urls_and_options_are_one_line_errors(args: list[str], says: str) -> None:
    proc = Running(args)
    assert proc.proc.wait(60) == 2
    proc.stop()
    assert len(proc.lines) == 1 and proc.lines[0].startswith(f"c1222 {args[0]}: error: "), \
        proc.lines
    assert says in proc.lines[0] and "secret" not in proc.lines[0]


def test_a_sink_without_nats_says_so_in_one_line() -> None:
    nats = private_nats()  # never started
    proc = Running(["sink", "--db", "sqlite://:memory:", "--nats", nats.url])
    assert proc.proc.wait(60) == 1
    proc.stop()
    nats.close()
    assert len(proc.lines) == 1 and proc.lines[0].startswith("c1222 sink: error: cannot "
                                                             "consume"), proc.lines
