"""One hostile meter must not stall the head-end (issue 15, finding 1).

A real `c1222 headend` process reads a real `c1222 meter` and a hostile meter: an in-process
software meter whose Tables 61 and 63 claim 12,000 load-profile blocks, all valid and all new
at every read (its Table 64 would be 11.7 MB; any slice of it is made on demand). While the
head-end collects both, the test calls the console API back to back and checks that every
request completes quickly, that the good meter's readings keep arriving each interval, and
that the hostile meter is flagged and read only within the bounds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import threading
import time
from pathlib import Path

import httpx

from c1222.headend.storage import open_storage
from c1222.meter.config import MeterConfig
from c1222.meter.node import Meter
from tests.e2e.procs import Running
from tests.e2e.test_headend import METER, start_headend
from tests.unit.headend.meter_double import LyingStore, huge_lp_claim

HOSTILE = "2.16.124.113620.1.22.0.123.6666"
BLOCKS = 12_000
#: The head-end's --max-lp-blocks (its default is 1024: near it, and proves the flag works).
MAX_BLOCKS = 1000
#: Seconds of API calls measured while the head-end reads the hostile meter.
RUN = 20.0
#: Seconds of the same calls before the hostile meter starts (the machine's own figure).
BASELINE = 5.0
#: A request slower than this is a stall (generous: the machine may be loaded).
HANG = 2.0
#: The good meter is read every 0.5 s; a gap longer than this is a stall of its reads.
GAP = 5.0
STORED = re.compile(r"^(\S+ \S+) .*stored \d+ readings for (\S+) at")


class HostileMeter(threading.Thread):
    """A software meter on its own event loop whose load-profile tables lie."""

    def __init__(self, tmp: Path, headend: tuple[str, int]) -> None:
        super().__init__(daemon=True, name="hostile-meter")
        self.loop = asyncio.new_event_loop()
        self.meter = Meter(MeterConfig(ap_title=HOSTILE, serial_number="00006666",
                                       listen=("127.0.0.1", 0), headend=headend,
                                       state_dir=tmp / "hostile"))
        self.lying = LyingStore(self.meter.store)
        fake, size, slicer = huge_lp_claim(self.meter.store, BLOCKS)
        seqs = itertools.count(BLOCKS - 1, BLOCKS)

        def table63() -> bytes:
            # every read claims a whole new list: the worst a bounded reader can be asked
            return huge_lp_claim(self.meter.store, BLOCKS, last_seq=next(seqs))[0][63]

        self.lying.fake.update({61: fake[61], 63: table63})
        self.lying.virtual[64] = (size, slicer)
        self.table64_size = size
        self.meter.services.store = self.lying  # type: ignore[assignment]

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore

    def __enter__(self) -> HostileMeter:
        self.start()
        self.call(self.meter.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.meter.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.join(10)


def start_meter(tmp: Path, headend: tuple[str, int]) -> Running:
    """The well-behaved meter (a modest speed: on a loaded machine a meter simulating
    600 s a second spends its time measuring, not answering)."""
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend",
                     f"{headend[0]}:{headend[1]}", "--state-dir", str(tmp / "meter"),
                     "--speed", "10"])
    meter.address()
    return meter


def node(web: str, title: str) -> dict[str, object] | None:
    answer = httpx.get(f"{web}/api/nodes/{title}", timeout=30)
    return answer.json() if answer.status_code == 200 else None


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s")


def call_api(web: str, seconds: float) -> tuple[list[float], list[str]]:
    """``GET /api/nodes`` back to back for ``seconds``: each call's latency, and failures."""
    latencies, failures = [], []
    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        while time.monotonic() - started < seconds:
            begun = time.perf_counter()
            try:
                answer = client.get(f"{web}/api/nodes")
                if answer.status_code != 200:
                    failures.append(f"status {answer.status_code}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            latencies.append(time.perf_counter() - begun)
            time.sleep(0.02)
    return sorted(latencies), failures


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def test_a_hostile_meter_leaves_the_api_and_the_other_meters_on_time(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'headend.db'}"
    headend, address, web = start_headend(db,
                                          "--max-lp-blocks", str(MAX_BLOCKS))
    good = start_meter(tmp_path, address)
    try:
        headend.wait_for(f"stored \\d+ readings for {METER}", 60)
        alone, _failed = call_api(web, BASELINE)  # the same calls without a hostile meter
        with HostileMeter(tmp_path, address) as hostile:
            wait_until(lambda: node(web, HOSTILE) is not None, 30, "the hostile meter registers")
            wait_until(lambda: 64 in hostile.lying.partial_reads, 30,
                       "the head-end reads the hostile load profile")
            first_line = len(headend.lines)
            latencies, failures = call_api(web, RUN)
            lines = headend.lines[first_line:]
            shown = node(web, HOSTILE)
            reads = list(hostile.lying.partial_reads.get(64, []))
            rss = peak_rss_mb(headend.proc.pid)
    finally:
        good.kill()  # its shutdown is test_headend's business, not this test's
        stopped = headend.stop()
    assert stopped == 0

    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    good_times = [dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
                  for m in map(STORED.search, lines) if m and m.group(2) == METER]
    gaps = [(b - a).total_seconds() for a, b in zip(good_times, good_times[1:])]
    print(f"\nAPI under a hostile meter: {len(latencies)} requests in {RUN:.0f} s, "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms;"
          f" good meter stored {len(good_times)} times, longest gap "
          f"{max(gaps, default=0):.2f} s; hostile Table 64: {len(reads)} partial reads, "
          f"{sum(n for _o, n in reads)} bytes of a claimed {hostile.table64_size}; "
          f"head-end peak RSS {rss} MB; without the hostile meter: p50 "
          f"{percentile(alone, 0.5) * 1000:.1f} ms, p99 {percentile(alone, 0.99) * 1000:.1f} ms")
    assert not failures, failures[:5]
    assert latencies[-1] < HANG, f"an API request took {latencies[-1]:.1f} s"
    assert len(good_times) >= RUN / 2 and max(gaps) < GAP, gaps
    assert shown is not None
    status = shown["read_status"]
    assert isinstance(status, dict)
    assert status["over_limit"] == \
        f"over-limit: Table 61 claims {BLOCKS} blocks > max {MAX_BLOCKS}"
    # read within the bound: the newest MAX_BLOCKS blocks of each claim, never the 11.7 MB
    block = hostile.table64_size // BLOCKS
    assert reads and all(offset >= (BLOCKS - MAX_BLOCKS) * block for offset, _n in reads)
    # the good meter's history log came in through the incremental reader (its power-up)
    with open_storage(db) as storage:
        assert any(r.value == 2 for r in storage.readings(METER, kind="event"))
