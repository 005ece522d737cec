"""`c1222 headend --workers 2` started as a user would, over PostgreSQL and NATS JetStream
(tests/servers.py), with a `c1222 fleet` of 150 meters and `c1222 sink` (docs/headend.md,
"Workers"): the workers share the port and split collection by AP title; kill -9 of one of
them during collection: the supervisor restarts it, its meters are read again within two
intervals of its restart, and every acknowledged reading is in PostgreSQL exactly once and in
the sink's table exactly once (the same set). Bad uses of --workers are one-line errors."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest

from c1222.headend.server import shard_of
from tests.e2e.procs import C1222, Running, alive
from tests.e2e.test_nats import (  # noqa: F401 - the stream fixture
    start_sink, stream, stream_messages, wait_until,
)
from tests.servers import nats_url, pg_base  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

METERS = 150
INTERVAL = 4.0
FIRST = 100000  # the fleet's first serial: titles TITLE_BASE.100000 ...
TITLE_BASE = "2.16.124.113620.1.22.0.123"
ACK = re.compile(r"stored (\d+) readings for (\S+) at (\S+)")
WORKER = re.compile(r"worker (\d+) pid (\d+) console at http")


def query(db: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    """Rows of ``sql`` in the schema of ``db`` (a URL with ?schema=)."""
    import psycopg

    base, _, schema = db.partition("?schema=")
    with psycopg.connect(base, options=f"-c search_path={schema}") as conn:
        return conn.execute(sql).fetchall()


def latest(db: str) -> dict[str, dt.datetime]:
    """Per meter, the time of its newest reading (the meter's clock)."""
    return dict(query(db, "SELECT ap_title, MAX(time) FROM readings GROUP BY ap_title"))


def all_readings(db: str) -> list[tuple]:  # type: ignore[type-arg]
    """Every reading, by its natural key (with its value), in one order."""
    return sorted(query(db, "SELECT ap_title, kind, time, name, value FROM readings"))


def test_kill_9_of_a_worker_loses_and_duplicates_nothing(stream: str, pg_base: str) -> None:
    tag = uuid.uuid4().hex[:8]
    headend_db = f"{pg_base}?schema=c1222_wk_{tag}"
    sink_db = f"{pg_base}?schema=c1222_wks_{tag}"
    titles = [f"{TITLE_BASE}.{FIRST + i}" for i in range(METERS)]
    victims = {t for t in titles if shard_of(t, 2) == 1}
    headend = Running(["headend", "--workers", "2", "--listen", "127.0.0.1:0",
                       "--http", "127.0.0.1:0", "--db", headend_db, "--publish", stream,
                       "--collect-interval", str(INTERVAL), "--log-interval", "0",
                       "--max-connections-per-address", "1000",
                       "--max-registrations-per-address", "0", "-v"])
    fleet = sink = None
    try:
        host, port = headend.address(90)
        pids = {int(m.group(1)): int(m.group(2))
                for line in headend.lines if (m := WORKER.search(line))}
        assert sorted(pids) == [0, 1], headend.lines
        fleet = Running(["fleet", "--meters", str(METERS), "--headend", f"{host}:{port}",
                         "--serial-base", str(FIRST)])
        fleet.wait_for(rf"all {METERS} meters registered", 90)
        sink = start_sink(stream, sink_db)
        wait_until(lambda: len(latest(headend_db)) == METERS, "every meter read",
                   timeout=90, proc=headend)
        # Kill worker 1 while it collects: right after one of its meters got a new reading.
        before = latest(headend_db)
        wait_until(lambda: any(latest(headend_db).get(t, before[t]) > before[t]
                               for t in victims), "worker 1 collecting", proc=headend)
        os.kill(pids[1], signal.SIGKILL)
        killed = time.time()
        restarted = headend.wait_for(r"worker 1 restarted: pid (\d+)", 90)
        assert int(restarted.group(1)) != pids[1]
        pids[1] = int(restarted.group(1))
        ready = time.time()
        # Each of its meters is read again within two intervals of the new worker's start
        # (the bound; the meter's clock has whole seconds, hence the second's slack).
        wait_until(lambda: all(latest(headend_db)[t].timestamp() >= killed for t in victims),
                   "worker 1's meters read again", timeout=90, proc=headend)
        again = latest(headend_db)
        late = {t: again[t].timestamp() - ready for t in victims
                if again[t].timestamp() > ready + 2 * INTERVAL + 1}
        assert not late, f"read later than two intervals after the restart: {late}"
        print(f"worker 1 restarted {ready - killed:.1f} s after the kill; its meters read "
              f"again at most {max(again[t].timestamp() for t in victims) - ready:.1f} s "
              "after that (meter clock, whole seconds)")
        # Worker 0's meters were read on through the kill.
        assert all(again[t] > before[t] for t in set(titles) - victims)

        assert fleet.stop() == 0
        assert headend.stop() == 0  # each worker sends its outbox before it ends
        assert not any(alive(pid) for pid in pids.values())
        stored = all_readings(headend_db)
        keys = {(t, kind, when, name) for t, kind, when, name, _ in stored}
        assert len(stored) == len(keys)  # PostgreSQL: each natural key once
        # Every acknowledged reading ("stored N readings for T at TIME", after the commit)
        # is in PostgreSQL, including those of the killed worker.
        acked = {(m.group(2), dt.datetime.fromisoformat(m.group(3)))
                 for line in headend.lines if (m := ACK.search(line)) and int(m.group(1))}
        assert acked and acked <= {(t, when) for t, _, when, _, _ in stored}
        assert len({t for t, _ in acked} & victims) == len(victims)
        # JetStream holds each once (message id = natural key), and the sink's table the
        # same set, each once.
        assert stream_messages(stream) == len(stored)
        wait_until(lambda: len(all_readings(sink_db)) == len(stored),
                   f"{len(stored)} readings in the sink's table", proc=sink)
        assert all_readings(sink_db) == stored
        assert sink.stop() == 0
    finally:
        for proc in (fleet, sink, headend):
            if proc is not None and proc.proc.poll() is None:
                proc.kill()
        import psycopg

        with psycopg.connect(pg_base, autocommit=True) as conn:
            for db in (headend_db, sink_db):
                conn.execute(f'DROP SCHEMA IF EXISTS "{db.split("=")[-1]}" CASCADE')


def test_meters_on_udp_are_read_by_the_worker_that_owns_them(pg_base: str) -> None:
    """Over UDP the registrations from the fleet's one socket all reach one worker (the
    kernel hashes the flow); each worker still reads the meters it owns, from a link of its
    own at their native address (never the shared port's flow, whose answers could reach the
    other worker; tests/unit/transport/test_endpoint_reuse_port.py for UDP requests), and no
    read times out."""
    import httpx

    tag = uuid.uuid4().hex[:8]
    db = f"{pg_base}?schema=c1222_wku_{tag}"
    headend = Running(["headend", "--workers", "2", "--listen", "127.0.0.1:0",
                       "--http", "127.0.0.1:0", "--db", db, "--collect-interval", "1",
                       "--log-interval", "0", "--max-registrations-per-address", "0"])
    fleet = None
    try:
        host, port = headend.address(90)
        consoles = [m.group(1) for line in headend.lines
                    if (m := re.search(r"worker \d pid \d+ console at http (\S+)", line))]
        fleet = Running(["fleet", "--meters", "40", "--transport", "udp",
                         "--headend", f"{host}:{port}"])
        fleet.wait_for(r"all 40 meters registered", 90)
        wait_until(lambda: len(latest(db)) == 40, "every meter read", timeout=90, proc=headend)

        def outcomes() -> list[dict[str, float]]:
            out = []
            for console in consoles:
                text = httpx.get(f"http://{console}/metrics", timeout=30).text
                out.append({m.group(1): float(m.group(2)) for m in re.finditer(
                    r'^c1222_headend_reads_total\{code="[^"]*",outcome="([^"]+)"\} (\S+)',
                    text, re.M)})
            return out

        wait_until(lambda: all(o.get("ok", 0) >= 40 for o in outcomes()),
                   "both workers reading", timeout=90, proc=headend)
        assert all(o.get("timeout", 0) == 0 for o in outcomes()), outcomes()
        # Every worker's API lists every node and reads any of them (a meter registered
        # with the other worker: through storage and its native address).
        for console in consoles:
            nodes = httpx.get(f"http://{console}/api/nodes", timeout=30).json()
            assert len({n["ap_title"] for n in nodes}) == 40
            for title in (f"{TITLE_BASE}.{FIRST}", f"{TITLE_BASE}.{FIRST + 1}"):
                read = httpx.post(f"http://{console}/api/nodes/{title}/services/read",
                                  json={"table": 1}, timeout=60).json()
                assert read["error"] is None and read["response_codes"][-1] == "ok", read
        assert fleet.stop() == 0
        # kill -9 of the supervisor: no worker outlives it holding the port
        workers = [int(m.group(1)) for line in headend.lines
                   if (m := re.search(r"worker \d pid (\d+)", line))]
        headend.kill()
        wait_until(lambda: not any(alive(pid) for pid in workers), "the workers ending",
                   timeout=60)
    finally:
        for proc in (fleet, headend):
            if proc is not None and proc.proc.poll() is None:
                proc.kill()
        import psycopg

        with psycopg.connect(pg_base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "c1222_wku_{tag}" CASCADE')


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "2", "--db", "sqlite:///x.db"], "need a postgresql:// --db"),
    (["--workers", "0"], "'--workers'"),
    (["--workers", "65"], "'--workers'"),
    (["--workers", "two"], "'--workers'"),
    (["--workers", "3", "--http", "127.0.0.1:65534", "--db", "postgresql://u@127.0.0.1/x"],
     "over 65535"),
    (["--workers", "2", "--db", "postgresql://u@127.0.0.1/x", "--pcap", "x.pcap"],
     "not with --pcap"),
    (["--workers", "2", "--db", "postgresql://u@127.0.0.1/x", "--master-relay",
      "127.0.0.1:1153"], "not with --master-relay"),
    (["--workers", "2", "--db", "postgresql://u@127.0.0.1:1/x"], "'--db'"),
    (["--worker", "2/2:1153"], "'--worker'"),
    (["--worker", "0/2"], "'--worker'"),
])
def test_bad_workers_options_are_one_line_errors(tmp_path: Path, args: list[str],
                                                 message: str) -> None:
    import subprocess

    done = subprocess.run([*C1222, "headend", "--listen", "127.0.0.1:0", "--http",
                           "127.0.0.1:0", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_console_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import socket
    import subprocess

    from c1222.cli.params import bind_problem

    with socket.socket() as held:  # port P + 1, worker 1's console; P itself free
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        if taken < 1025 or bind_problem(("127.0.0.1", taken - 1), udp=False):
            pytest.skip("no free port below the held one this time")
        done = subprocess.run([*C1222, "headend", "--workers", "2", "--listen", "127.0.0.1:0",
                               "--http", f"127.0.0.1:{taken - 1}",
                               "--db", "postgresql://u@127.0.0.1:1/x"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done
    assert done.stderr.strip() == (
        "c1222 headend: error: Invalid value for '--http': worker 1's console: "
        f"port {taken} is in use (on 127.0.0.1); pick another or stop what holds it"), done
