"""A utility's fleet on one machine: `c1222 fleet` against the head-end, read every interval.

The head-end (:class:`c1222.headend.server.HeadEnd`, SQLite in a temporary folder, its
collector as the CLI runs it: each meter read at its slot, the slots spread over the first
90 % of the interval, 64 reads at once, up to 3 attempts, 10 s time-out; load profile and
event log off) runs in this process with its connection caps raised to the fleet's size; the fleet is
``c1222 fleet --meters N --workers 2 --ramp 0`` started as a user would. For each size the
meters register as fast as the head-end answers (no ramp; 200 in flight per fleet worker),
then the collector reads every meter once per interval (60 s by
default) for ``--intervals`` intervals, each accounted by the collector's scheduler itself
(``HeadEnd.scheduler.plan``, what GET /api/collection shows): meters due, read within the
interval, read late (after its interval ended), failed, skipped (a read of an earlier interval
still owed), retries.

Figures per size: registrations per second, read success per interval (the worst interval),
p50/p99 request-response latency (head-end side) and p50/p99 of a whole collection of one
meter (Security + 3 reads, from its start to its end), RSS per meter of the head-end (growth from before the fleet) and of the fleet's
workers (their whole RSS / N), CPU per read (head-end, fleet), and the plain asyncio echo
floor measured in the same run (benchmarks/meter.py's echo server, 8 connections). A text
plot of how the cost grows with N follows the table (matplotlib is not installed).

    .venv/bin/python benchmarks/fleet.py [--meters 1000,5000,10000] [--interval 60]
                                         [--intervals 2] [--timeout 900]

**The matrix** (``--headend-workers 1,2``): for each size and each W, ``c1222 headend
--workers W`` (W = 1: one process) over PostgreSQL (a schema of the run's own, dropped after;
``--pg`` or C1222_TEST_POSTGRES, else 127.0.0.1:5432/test) and ``c1222 fleet``, both started
as a user would. Every worker's /metrics is scraped each second (benchmarks/_metrics.py); the
intervals are each worker's own, from the first that began after every meter registered,
summed over the workers (due, read, failed, skipped); exchange p50/p99 from the head-end's
message log; CPU and memory of the head-end's and the fleet's process trees. Its own section
of BENCHMARKS.md, with the echo floor measured in the same run and a text plot (matplotlib is
not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _metrics  # noqa: E402
import meter as meter_bench  # noqa: E402
from _report import machine, write_section  # noqa: E402

from c1222.headend.server import HeadEnd, HeadEndConfig  # noqa: E402
from c1222.transport.endpoint import EndpointLimits  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
LOAD_AT_START = os.getloadavg()[0]


def rss_kib(pid: int | str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def workers_of(pid: int) -> list[int]:
    """The fleet's worker processes (multiprocessing spawn children)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for child in children:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(int(child))
    return out


@dataclass
class Interval:
    """One interval as the scheduler accounted it (``schedule.IntervalStats``)."""

    due: int
    read: int = 0     # read, within the interval or late
    late: int = 0     # read after the interval ended
    failed: int = 0   # every attempt failed
    skipped: int = 0  # a read of an earlier interval still owed
    retries: int = 0

    @property
    def done(self) -> int:
        """Meters read within the interval."""
        return self.read - self.late


@dataclass
class Result:
    meters: int
    registration_rate: float
    intervals: list[Interval]
    latency: list[float]
    collection: list[float]
    headend_kib: float
    fleet_kib: float
    headend_cpu: float
    fleet_cpu: float
    reads: int
    summary: list[str] = field(default_factory=list)
    transport: str = "tcp"

    @property
    def worst(self) -> float:
        return min(i.done / i.due for i in self.intervals) if self.intervals else 0.0


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def measure(count: int, interval: float, intervals: int, timeout: float,
                  fleet_workers: int, transport: str = "tcp") -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        headend = HeadEnd(HeadEndConfig(listen=("127.0.0.1", 0), db=f"sqlite:///{tmp}/b.db",
                                        collect_interval=interval, log_interval=0,
                                        max_registrations_per_address=0,
                                        max_nodes=count + 100))
        rss_before = rss_kib()
        host, port = await headend.start()
        headend.endpoint.limits = EndpointLimits(max_connections=count + 1024,
                                                 max_per_address=count + 1024)
        registered: list[float] = []
        original = headend.registrar.on_registered
        headend.registrar.on_registered = lambda node: (registered.append(time.perf_counter()),
                                                        original(node))
        # the scheduler's IntervalStats (filled in as reads end), with the meters due as each
        # began (meters that register mid-interval add to it)
        starts: list[tuple[Any, int]] = []
        headend.scheduler.on_interval = lambda stats: starts.append((stats, stats.due))
        records: list[tuple[float, float, bool]] = []
        collect_one = headend._collect_one

        async def recorded(ap_title: str, logs: bool) -> BaseException | None:
            began = time.monotonic()
            failure = await collect_one(ap_title, logs)
            records.append((began, time.monotonic(), failure is None))
            return failure

        headend._collect_one = recorded  # type: ignore[method-assign]
        proc = subprocess.Popen(
            [sys.executable, "-m", "c1222.cli", "fleet", "--meters", str(count), "--workers",
             str(fleet_workers), "--headend", f"{host}:{port}", "--ramp", "0",
             "--transport", transport],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(
            line.rstrip() for line in proc.stdout), daemon=True).start()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        try:
            while len(registered) < count:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{len(registered)} of {count} registered:\n"
                                       + "\n".join(lines[-20:]))
                await asyncio.sleep(0.2)
            reg_rate = (count - 1) / (registered[-1] - registered[0]) if count > 1 else 0.0
            # the first interval that starts with every meter registered, then `intervals`
            while not starts or starts[-1][1] < count:
                await asyncio.sleep(0.1)
            first = len(starts) - 1
            began = time.monotonic()
            headend.latencies.clear()
            workers = workers_of(proc.pid)
            cpu0 = time.process_time(), sum(cpu_seconds(w) for w in workers)
            reads0 = headend.stats["reads"]
            # one interval more, so that the late reads of the last measured one are in
            while len(starts) < first + intervals + 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("time-box reached while reading")
                await asyncio.sleep(0.2)
            cpu1 = time.process_time(), sum(cpu_seconds(w) for w in workers)
            reads = headend.stats["reads"] - reads0
            latency = list(headend.latencies)
            headend_kib = (rss_kib() - rss_before) / count
            fleet_kib = sum(rss_kib(w) for w in workers) / count
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            await headend.stop()
    measured = [Interval(s.due, s.read, s.late, s.failed, s.skipped, s.retries)
                for s, _due in starts[first:first + intervals]]
    collections = [ended - start for start, ended, ok in records if ok and start >= began]
    return Result(count, reg_rate, measured, latency, collections, headend_kib, fleet_kib,
                  cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], reads,
                  [line for line in lines if line.startswith(("fleet summary", "  "))],
                  transport)


# ---------------------------------------------------------------------------- the matrix

@dataclass
class CliResult:
    """One size × head-end workers, the head-end run as `c1222 headend --workers W`."""

    meters: int
    headend_workers: int
    registration_rate: float
    intervals: list[dict]     # per interval, summed over the workers: due/read/failed/skipped
    exchange: list[float]     # p50, p99 seconds (the message log)
    collection: list[float]   # p50, p99 seconds (the head-end's histogram, interpolated)
    headend_kib: float
    fleet_kib: float
    headend_cpu: float
    fleet_cpu: float
    reads: int
    transport: str = "tcp"
    summary: list[str] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return min((i["read"] / i["due"] if i["due"] else 0.0) for i in self.intervals) \
            if self.intervals else 0.0


def _pg_base() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.servers import PG_DEFAULT

    return os.environ.get("C1222_TEST_POSTGRES", PG_DEFAULT)


def measure_cli(count: int, interval: float, intervals: int, timeout: float,
                fleet_workers: int, transport: str, headend_workers: int,
                pg_base: str, concurrency: int | None = None) -> CliResult:
    """`c1222 headend --workers W` over PostgreSQL (a schema of this run's own) and `c1222
    fleet`, both as a user starts them; every worker's /metrics scraped each second."""
    import psycopg

    schema = f"c1222_bench_{os.getpid()}_{headend_workers}"
    db = f"{pg_base}?schema={schema}"
    caps = str(min(65535, count + 1024))
    args = [sys.executable, "-m", "c1222.cli", "headend", "--listen", "127.0.0.1:0",
            "--http", "127.0.0.1:0", "--db", db, "--collect-interval", f"{interval:g}",
            "--log-interval", "0", "--max-registrations-per-address", "0",
            "--max-nodes", str(count + 100), "--max-connections", caps,
            "--max-connections-per-address", caps]
    if headend_workers > 1:
        args += ["--workers", str(headend_workers)]
    if concurrency is not None:
        args += ["--collect-concurrency", str(concurrency)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    headend = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(
        line.rstrip() for line in headend.stdout), daemon=True).start()  # type: ignore[union-attr]
    fleet: subprocess.Popen | None = None
    fleet_lines: list[str] = []
    scrapes: list[list[dict]] = []
    stop = threading.Event()
    deadline = time.monotonic() + timeout
    try:
        def wait_for(pattern: str, source: list[str], proc: subprocess.Popen) -> re.Match:
            while True:
                for line in list(source):
                    found = re.search(pattern, line)
                    if found:
                        return found
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"no {pattern!r}:\n" + "\n".join(source[-20:]))
                time.sleep(0.2)

        host, port = wait_for(r"listening on tcp\S* (\S+):(\d+)", lines, headend).groups()
        wait_for(r"console at http (\S+):(\d+)", lines, headend)
        if headend_workers > 1:
            wait_for(rf"worker {headend_workers - 1} pid \d+ console", lines, headend)
            consoles = [m.groups() for m in (re.search(r"worker \d+ pid \d+ console at http "
                                                       r"(\S+):(\d+)", x) for x in lines) if m]
        else:
            consoles = [wait_for(r"console at http (\S+):(\d+)", lines, headend).groups()]
        urls = [f"http://{h}:{p}/metrics" for h, p in consoles]

        def scraper() -> None:
            while not stop.is_set():
                try:
                    scrapes.append([_metrics.scrape(url) for url in urls])
                except OSError:
                    pass
                stop.wait(1.0)

        threading.Thread(target=scraper, daemon=True).start()
        rss_before = _metrics.tree_rss_kib(headend.pid)
        fleet = subprocess.Popen(
            [sys.executable, "-m", "c1222.cli", "fleet", "--meters", str(count), "--workers",
             str(fleet_workers), "--headend", f"{host}:{port}", "--ramp", "0",
             "--transport", transport],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        threading.Thread(target=lambda: fleet_lines.extend(
            line.rstrip() for line in fleet.stdout), daemon=True).start()  # type: ignore
        done = wait_for(r"fleet: all [\d,]+ meters registered in ([\d.]+) s", fleet_lines,
                        fleet)
        reg_rate = count / max(0.001, float(done.group(1)))
        # each worker takes the others' registrations within 10 s: measure from the first
        # interval of each worker that begins after that
        settled = time.time() + (10 if headend_workers > 1 else 0)

        consoles_http = [f"http://{h}:{p}" for h, p in consoles]
        api = _metrics.collection_history(consoles_http[0]) is not None

        def worker_rows(w: int, more: int = 1) -> tuple[bool, list[dict] | None]:
            """(an interval began after ``settled``, the ``intervals`` measured ones once
            they and ``more`` are over: with one more, the last one's late reads are in)."""
            if api:  # the collector's own accounting: GET /api/collection
                history = _metrics.collection_history(consoles_http[w]) or []
                after = sorted((i for i in history if i["start"] >= settled),
                               key=lambda i: i["number"])
                ended = [i for i in after if i["end"] <= time.time()]
                began = bool(after)
                if len(ended) < intervals + more:
                    return began, None
                return began, [{"due": i["due"], "read": i["read"] - i.get("late", 0),
                                "failed": i["failed"], "skipped": i["skipped"],
                                "late": i.get("late", 0)} for i in ended[:intervals]]
            marks = _metrics.boundaries([row[w] for row in list(scrapes)])
            k = next((k for k, m in enumerate(marks) if m["t"] > settled), None)
            if k is None:
                return False, None
            if len(marks) <= k + intervals:
                return True, None
            return True, _metrics.interval_rows(marks, k, intervals)

        while not all(worker_rows(w)[0] for w in range(len(urls))):
            if time.monotonic() > deadline:
                raise RuntimeError("no interval began after every meter registered")
            time.sleep(1)
        cpu0 = _metrics.tree_cpu(headend.pid), _metrics.tree_cpu(fleet.pid)
        wall0 = time.time()
        # CPU over the measured intervals; then (scheduler) one interval more for late reads
        for more in (0, 1) if api else (0,):
            while True:
                done_rows = [worker_rows(w, more)[1] for w in range(len(urls))]
                if all(r is not None for r in done_rows):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("time-box reached while reading")
                time.sleep(1)
            if not more:
                cpu1 = _metrics.tree_cpu(headend.pid), _metrics.tree_cpu(fleet.pid)
                wall1 = time.time()
                headend_kib = (_metrics.tree_rss_kib(headend.pid) - rss_before) / count
                fleet_kib = _metrics.tree_rss_kib(fleet.pid) / count
        stop.set()
        rows = [{"due": 0, "read": 0, "failed": 0, "skipped": 0, "late": 0}
                for _ in range(intervals)]
        for worker in done_rows:
            for j, row in enumerate(worker or []):
                for key, value in row.items():
                    rows[j][key] = rows[j].get(key, 0) + value
        # the collection histogram between the scrapes nearest the measured window, summed
        buckets_start: dict = {}
        buckets_end: dict = {}
        name = _metrics.M + "read_duration_seconds_bucket"
        taken = list(scrapes)
        begin = next((row for row in taken if row[0]["t"] >= wall0), taken[-1])
        finish = [row for row in taken if row[0]["t"] <= wall1][-1]
        for edge, into in ((begin, buckets_start), (finish, buckets_end)):
            for worker in edge:
                for le, value in worker.get(name, {}).items():
                    into[le] = into.get(le, 0) + value
        # every read done in the window, late ones of earlier intervals too: the CPU's work
        done_reads = int(sum(w.get(_metrics.READS_OK, 0) for w in finish)
                         - sum(w.get(_metrics.READS_OK, 0) for w in begin))
        with psycopg.connect(pg_base, autocommit=True) as conn:
            found = conn.execute(
                f'SELECT ap_title, direction, time FROM "{schema}".messages WHERE time >= '
                "to_timestamp(%s) AND time < to_timestamp(%s) ORDER BY id",
                (wall0, wall1)).fetchall()
        exchanges = _metrics.pair_exchanges(found)
    finally:
        stop.set()
        for proc in (fleet, headend):
            if proc is None:
                continue
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(Exception), psycopg.connect(pg_base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return CliResult(
        count, headend_workers, reg_rate, rows,
        [_metrics.percentile(exchanges, .5), _metrics.percentile(exchanges, .99)],
        [_metrics.bucket_percentile(buckets_start, buckets_end, .5),
         _metrics.bucket_percentile(buckets_start, buckets_end, .99)],
        headend_kib, fleet_kib, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1],
        done_reads, transport,
        [line for line in fleet_lines if line.startswith(("fleet summary", "  "))])


def report_matrix(results: list[CliResult], interval: float, intervals: int,
                  echo: tuple[float, float, float], missing: list[str],
                  load_start: float, concurrency: int | None = None) -> list[str]:
    lines = [machine(), "", f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load "
             f"average at the start {load_start:.1f}, at the end {os.getloadavg()[0]:.1f} (a "
             "shared machine: other sessions' work runs beside it; absolute figures move by "
             "tens of per cent between runs).", "",
             f"`c1222 headend --workers W` (W = 1: one process) over PostgreSQL (one schema a "
             f"run), collector every {interval:g} s, at most "
             f"{concurrency or 64} reads at once per worker (--collect-concurrency), and `c1222 fleet --workers 2 --ramp 0` "
             "on the same 2 cores, loopback TCP (UDP where marked), both started as a user "
             "starts them. Each worker's /metrics is scraped every second; per interval, "
             "summed over the workers (each counts its own intervals, measured from the first "
             f"that began after every meter registered, {intervals} intervals): meters due, "
             "read within the interval (success), read late (after it ended), failed, skipped "
             "(a read of an earlier interval still owed) — the collector's own accounting "
             "(GET /api/collection). Reads done = every successful collection in the measured "
             "window, late ones of earlier intervals included; CPU per read divides by it. "
             "Exchange = request sent to "
             "response received, from the head-end's message log; collection = one meter's "
             "whole collection, interpolated in the histogram's buckets (coarse). CPU: the "
             "head-end's process tree and the fleet's, over the measured intervals, per read; "
             "memory: the head-end's RSS growth from before the fleet started, the fleet's "
             "whole RSS, per meter.", "",
             "| meters | head-end workers | registrations/s | read success per interval "
             "(of due) | "
             "worst: late / failed / skipped | reads done | exchange p50 / p99 ms | "
             "collection p50 / p99 ms | head-end KiB/meter | fleet KiB/meter | "
             "CPU ms/read (head-end + fleet) |",
             "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        worst = min(r.intervals, key=lambda i: i["read"] / max(1, i["due"]))
        late = worst.get("late", 0)
        success = ", ".join(f"{i['read'] / max(1, i['due']):.2%} of {i['due']:,}"
                            for i in r.intervals)
        per = lambda cpu: cpu / max(1, r.reads) * 1000  # noqa: E731
        lines.append(
            f"| {r.meters:,}{' (UDP)' if r.transport == 'udp' else ''} | {r.headend_workers} "
            f"| {r.registration_rate:,.0f} | {success} | {late} / {worst['failed']} / "
            f"{worst['skipped']} | {r.reads:,} | {r.exchange[0] * 1e3:.1f} / {r.exchange[1] * 1e3:.1f} "
            f"| {r.collection[0] * 1e3:.0f} / {r.collection[1] * 1e3:.0f} "
            f"| {r.headend_kib:.1f} | {r.fleet_kib:.1f} "
            f"| {per(r.headend_cpu + r.fleet_cpu):.2f} ({per(r.headend_cpu):.2f} + "
            f"{per(r.fleet_cpu):.2f}) |")
    lines += ["", f"Echo floor, same run: a plain asyncio echo server answers {echo[0]:,.0f} "
              f"requests/s at 8 connections (p50 {echo[1]:.2f} ms, p99 {echo[2]:.2f} ms).", ""]
    if results:
        lines += ["How the cost grows (text plot: CPU ms per read, head-end + fleet; "
                  "matplotlib is not installed):", "", "```"]
        top = max((r.headend_cpu + r.fleet_cpu) / max(1, r.reads) for r in results) or 1
        for r in results:
            cost = (r.headend_cpu + r.fleet_cpu) / max(1, r.reads)
            bar = "#" * max(1, round(40 * cost / top))
            lines.append(f"{r.meters:>7,} meters, {r.headend_workers} worker"
                         f"{'s' if r.headend_workers > 1 else ' '}  {bar:<40} "
                         f"{cost * 1000:6.2f} ms/read  success {100 * r.worst:6.2f} %")
        lines += ["```", ""]
    if missing:
        lines += ["Not measured in this run: " + "; ".join(missing) + ".", ""]
    sizes = ",".join(dict.fromkeys(str(r.meters) for r in results))
    workers = ",".join(dict.fromkeys(str(r.headend_workers) for r in results))
    lines.append(f"Run: `.venv/bin/python benchmarks/fleet.py --meters {sizes} "
                 f"--headend-workers {workers} --interval {interval:g} --intervals "
                 f"{intervals}`.")
    return lines


def echo_floor() -> tuple[float, float, float]:
    """The plain asyncio echo server: requests/s and p50/p99 ms at 8 connections."""
    requester, pending = meter_bench.build(0, 4000)
    server = meter_bench.echo_server(b"\x60\x03\xa1\x01\x00")
    try:
        run = meter_bench.load(server.address, [p.data for p in pending], 8)
    finally:
        server.stop()
    return run.rate, run.percentile(0.5) * 1000, run.percentile(0.99) * 1000


def report(results: list[Result], interval: float, echo: tuple[float, float, float],
           missing: list[str]) -> list[str]:
    lines = [machine(), "", f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load "
             f"average at the start {LOAD_AT_START:.1f}, at the end {os.getloadavg()[0]:.1f} "
             f"(a shared machine: absolute figures "
             "move by tens of per cent between runs).", "",
             f"`c1222 fleet --workers 2` and the head-end (one process, SQLite, its current "
             f"collector: every meter each {interval:g} s at its slot, the slots spread over the "
             "first 90 % of the interval, 64 reads at once, up to 3 attempts, Security + Tables "
             "28, 23, 52) on the same 2 cores, loopback TCP (UDP where marked: each meter's "
             "registration connection is a file descriptor on both sides, and this machine's "
             "hard limit is 20,000). Each interval as the collector's scheduler accounts it "
             "(GET /api/collection): success = meters read within the interval / meters due, "
             "the worst measured interval (a meter is read at most once an interval); late = "
             "read after its interval ended, skipped = not read because a read of an earlier "
             "interval was still owed. A collection = one meter's Security + 3 reads, from "
             "its start to its end (no wait for a slot: reads start at their slot).", "",
             "| meters | registrations/s | read success (worst interval) | late / failed / "
             "skipped | exchange p50 / p99 ms | collection p50 / p99 "
             "ms | head-end KiB/meter | fleet KiB/meter | CPU ms/read (head-end + fleet) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        worst = min(r.intervals, key=lambda i: i.done / i.due)
        per_read = (r.headend_cpu + r.fleet_cpu) / max(1, r.reads) * 1000
        lines.append(
            f"| {r.meters:,}{' (UDP)' if r.transport == 'udp' else ''} "
            f"| {r.registration_rate:,.0f} | {100 * r.worst:.2f} % "
            f"({len(r.intervals)} intervals) | {worst.late} / {worst.failed} / {worst.skipped} "
            f"| {pct(r.latency, .5):.1f} / {pct(r.latency, .99):.1f} "
            f"| {pct(r.collection, .5):.0f} / {pct(r.collection, .99):.0f} "
            f"| {r.headend_kib:.1f} | {r.fleet_kib:.1f} "
            f"| {per_read:.2f} ({r.headend_cpu / max(1, r.reads) * 1000:.2f} + "
            f"{r.fleet_cpu / max(1, r.reads) * 1000:.2f}) |")
    lines += ["", f"Echo floor, same run: a plain asyncio echo server answers {echo[0]:,.0f} "
              f"requests/s at 8 connections (p50 {echo[1]:.2f} ms, p99 {echo[2]:.2f} ms); a "
              "collection is 4 exchanges.", ""]
    if results:
        lines += ["How the cost grows (text plot; CPU ms per read, head-end + fleet, and p99 of "
                  "a meter's collection):", "", "```"]
        top = max((r.headend_cpu + r.fleet_cpu) / max(1, r.reads) for r in results) or 1
        for r in results:
            cost = (r.headend_cpu + r.fleet_cpu) / max(1, r.reads)
            bar = "#" * max(1, round(40 * cost / top))
            lines.append(f"{r.meters:>7,} meters  {bar:<40} {cost * 1000:6.2f} ms/read  "
                         f"p99 {pct(r.collection, .99):7.0f} ms")
        lines += ["```", ""]
    if missing:
        lines += ["Not measured in this run: " + "; ".join(missing) + ".", ""]
    lines.append("Run: `.venv/bin/python benchmarks/fleet.py --meters "
                 + ",".join(str(r.meters) for r in results)
                 + "".join(f" --transport {r.meters}=udp" for r in results
                           if r.transport == "udp")
                 + f" --interval {interval:g}`.")
    return lines


def matrix(args: argparse.Namespace) -> None:
    """Every size × every head-end worker count, each in a fresh head-end and fleet."""
    pg = args.pg or _pg_base()
    # SIGTERM (a time-box from outside) stops the head-end and fleet of the run under way too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    transports = dict(item.split("=") for item in args.transport.split(",") if "=" in item)
    default = next((t for t in args.transport.split(",") if "=" not in t), "tcp")
    results: list[CliResult] = []
    missing: list[str] = []
    load_start = os.getloadavg()[0]
    echo = echo_floor()  # first: the section is written after every run, so a run stopped
    # at its time-box keeps what it measured
    runs = [(int(count), int(workers)) for count in args.meters.split(",")
            for workers in args.headend_workers.split(",")]
    for index, (count, workers) in enumerate(runs):
        try:
            result = measure_cli(count, args.interval, args.intervals, args.timeout,
                                 args.fleet_workers, transports.get(str(count), default),
                                 workers, pg, args.collect_concurrency)
        except (RuntimeError, OSError) as exc:
            print(f"{count} meters, {workers} workers: {exc}", file=sys.stderr)
            missing.append(f"{count:,} meters with {workers} worker(s) "
                           f"({str(exc).splitlines()[0]})")
        else:
            results.append(result)
            print(f"{count} meters, {workers} workers: success {result.worst:.4f}, "
                  f"reads {result.reads}, {dataclasses.asdict(result)}", flush=True)
        later = [f"{c:,} meters with {w} worker(s) (not reached: the run was stopped)"
                 for c, w in runs[index + 1:]]
        lines = report_matrix(results, args.interval, args.intervals, echo,
                              missing + later, load_start, args.collect_concurrency)
        if not args.no_write:
            write_section("Fleet: meters × head-end workers (benchmarks/fleet.py "
                          "--headend-workers)", lines)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", default="1000,5000,10000")
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--intervals", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0, help="time-box of each size")
    parser.add_argument("--fleet-workers", type=int, default=2)
    parser.add_argument("--transport", default="tcp",
                        help="tcp, udp, or SIZE=udp,... per size (e.g. 20000=udp)")
    parser.add_argument("--headend-workers",
                        help="the matrix: run `c1222 headend --workers W` over PostgreSQL for "
                        "each W of this list (e.g. 1,2) and each size (its own section)")
    parser.add_argument("--pg", help="PostgreSQL for --headend-workers [C1222_TEST_POSTGRES "
                        "or postgresql://postgres@127.0.0.1:5432/test]")
    parser.add_argument("--collect-concurrency", type=int,
                        help="the head-end's --collect-concurrency (default: its own, 64)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one size, JSON out
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.headend_workers:
        matrix(args)
        return
    results: list[Result] = []
    missing = ["head-end workers (this section is one in-process head-end over SQLite: "
               "`--headend-workers 1,2` measures `c1222 headend --workers`, its own section)",
               "kill -9 of a head-end worker (tests/e2e/test_headend_workers.py)",
               "the shaped WAN and a relay (benchmarks/network.py --part fleet)"]
    default, transports = "tcp", {}
    for item in args.transport.split(","):
        size, _, kind = item.rpartition("=")
        if size:
            transports[int(size)] = kind
        else:
            default = kind
    if args.one:
        try:
            result = asyncio.run(measure(args.one, args.interval, args.intervals, args.timeout,
                                         args.fleet_workers, transports.get(args.one, default)))
        except RuntimeError as exc:
            print(json.dumps({"error": str(exc).splitlines()[0]}))
            return
        print(json.dumps(dataclasses.asdict(result)))
        return
    for count in (int(x) for x in args.meters.split(",")):
        # each size in a fresh process: the head-end's RSS growth is then its own
        run = subprocess.run(
            [sys.executable, __file__, "--one", str(count), "--interval", str(args.interval),
             "--intervals", str(args.intervals), "--timeout", str(args.timeout),
             "--fleet-workers", str(args.fleet_workers), "--transport", args.transport],
            capture_output=True, text=True, timeout=args.timeout + 300)
        try:
            data = json.loads(run.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            data = {"error": f"exit {run.returncode}: {run.stderr.strip()[-300:]}"}
        if "error" in data:
            print(f"{count} meters: {data['error']}", file=sys.stderr)
            missing.append(f"{count:,} meters ({data['error']})")
            continue
        data["intervals"] = [Interval(**i) for i in data["intervals"]]
        result = Result(**data)
        results.append(result)
        print(f"{count}: success {result.worst:.4f}, reads {result.reads}", flush=True)
        print("\n".join(result.summary), flush=True)
    echo = echo_floor()
    lines = report(results, args.interval, echo, missing)
    if not args.no_write:
        write_section("Fleet: thousands of meters read every interval (benchmarks/fleet.py)",
                      lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
