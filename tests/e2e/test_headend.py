"""`c1222 headend` and `c1222 meter` started as a user would: the meter registers, the head-end
reads it, readings land in SQLite and in PostgreSQL (tests/servers.py), the API shows them, and a
kill -9 of the head-end loses no acknowledged reading and duplicates none."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import httpx

from c1222.headend.storage import open_storage
from tests.e2e.procs import Running
from tests.servers import pg_base, pg_url  # noqa: F401 - fixtures

METER = "2.16.124.113620.1.22.0.123.8437"
STORED = re.compile(r"stored (\d+) readings for (\S+) at (\S+)")


def start_headend(db: str, *extra: str) -> tuple[Running, tuple[str, int], str]:
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", db, "--collect-interval", "0.5", "--log-interval", "2", "-v",
                       *extra])
    address = headend.address()
    web = headend.wait_for(r"console at http (\S+):(\d+)")
    return headend, address, f"http://{web.group(1)}:{web.group(2)}"


def start_meter(tmp: Path, headend: tuple[str, int]) -> Running:
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend",
                     f"{headend[0]}:{headend[1]}", "--state-dir", str(tmp / "meter"),
                     "--speed", "600"])
    meter.address()
    return meter


def wait_for_kinds(db: str, kinds: set[str], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open_storage(db) as storage:
            seen = {r.kind for r in storage.readings(METER)}
        if kinds <= seen:
            return
        time.sleep(0.5)
    raise AssertionError(f"only {seen} stored, wanted {kinds}")


def run_system(tmp: Path, db: str) -> None:
    headend, address, web = start_headend(db)
    meter = start_meter(tmp, address)
    try:
        wait_for_kinds(db, {"present", "register", "interval", "event"})
        with open_storage(db) as storage:
            node = storage.get_node(METER)
            assert node is not None and node.state == "registered"
            assert node.node_type == 0x20 and node.native_address.startswith("127.0.0.1:")
            present = storage.latest(METER, "present")
            values = {r.name: r.value for r in present}
            assert 200 < values["voltage"] < 240 and 0 <= values["power_factor"] <= 1
            assert storage.messages(METER, limit=5)
        nodes = httpx.get(f"{web}/api/nodes", timeout=10).json()
        assert any(n["ap_title"] == METER for n in nodes)
        readings = httpx.get(f"{web}/api/nodes/{METER}/readings",
                             params={"kind": "present"}, timeout=10).json()
        assert readings
    finally:
        try:  # the head-end is stopped even when the meter's stop fails (no process left over)
            assert meter.stop() == 0, "\n".join(meter.lines[-40:])
        finally:
            assert headend.stop() == 0


def test_readings_land_in_sqlite_and_the_api_shows_them(tmp_path: Path) -> None:
    run_system(tmp_path, f"sqlite:///{tmp_path / 'headend.db'}")


def test_readings_land_in_postgresql(tmp_path: Path, pg_url: str) -> None:
    run_system(tmp_path, pg_url)


def test_kill_9_loses_no_acknowledged_reading_and_duplicates_none(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'headend.db'}"
    headend, address, _ = start_headend(db)
    meter = start_meter(tmp_path, address)
    try:
        deadline = time.monotonic() + 30
        while len([m for line in headend.lines if (m := STORED.search(line))
                   and int(m.group(1))]) < 5:
            assert time.monotonic() < deadline, "\n".join(headend.lines)
            time.sleep(0.2)
        headend.kill()  # in the middle of collecting
        acknowledged = [(m.group(2), dt.datetime.fromisoformat(m.group(3)))
                        for line in headend.lines if (m := STORED.search(line))
                        and int(m.group(1))]
        with open_storage(db) as storage:
            times = {r.time for r in storage.readings(METER, kind="present")}
            assert all(when in times for _, when in acknowledged)
            before = storage.count_readings(METER)
        # restarted, it collects again: what it had is kept once, new readings are added
        headend, address, _ = start_headend(db, "--listen", f"127.0.0.1:{address[1]}")
        deadline = time.monotonic() + 30
        while not any(STORED.search(line) for line in headend.lines):
            assert time.monotonic() < deadline, "\n".join(headend.lines)
            time.sleep(0.2)
        headend.stop()
        with open_storage(db) as storage:
            rows = storage.readings(METER)
            keys = [(r.kind, r.time, r.name) for r in rows]
            assert len(keys) == len(set(keys))
            events = [r for r in rows if r.kind == "event"]
            assert len({r.name for r in events}) == len(events)
            assert storage.count_readings(METER) >= before
    finally:
        meter.stop()
        if headend.proc.poll() is None:
            headend.stop()
