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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", default="1000,5000,10000")
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--intervals", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0, help="time-box of each size")
    parser.add_argument("--fleet-workers", type=int, default=2)
    parser.add_argument("--transport", default="tcp",
                        help="tcp, udp, or SIZE=udp,... per size (e.g. 20000=udp)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one size, JSON out
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
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
