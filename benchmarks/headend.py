"""How much the head-end sustains: 1,000 simulated meters on loopback register and are read.

The head-end (:class:`c1222.headend.server.HeadEnd`, SQLite in a temporary folder) runs in this
process; the fleet is ``c1222 fleet`` (docs/fleet.md) in a second process, one worker: N
C12.22 end devices, each with its own AP title, tables and household, each on its own TCP
connection. They register as fast as the head-end answers (no ramp, 100 at a time); then
the head-end's collector reads every meter (Tables 28, 23, 52 plus the context once) and
stores the values, for a fixed time (load profile and event log reads are off: they are
minutes apart in operation).

Figures: registrations per second, collector reads per second, p50/p99 request-response
latency as the head-end sees it, RSS per registered meter; beside them the plain asyncio echo
figure measured by benchmarks/meter.py on the same machine (read from BENCHMARKS.md).

    .venv/bin/python benchmarks/headend.py [--meters 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPORT, machine, write_section  # noqa: E402

from c1222.headend.server import HeadEnd, HeadEndConfig  # noqa: E402
from c1222.transport.endpoint import EndpointLimits  # noqa: E402


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------- the fleet


def start_fleet(host: str, port: int, count: int) -> subprocess.Popen[str]:
    """`c1222 fleet` (one worker, no ramp, 100 registrations in flight), as a user starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "c1222.cli", "fleet", "--meters", str(count), "--workers", "1",
         "--headend", f"{host}:{port}", "--ramp", "0", "--max-in-flight", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


# --------------------------------------------------------------------------- the head-end


async def measure(count: int, seconds: float) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        headend = HeadEnd(HeadEndConfig(listen=("127.0.0.1", 0), db=f"sqlite:///{tmp}/b.db",
                                        collect_interval=0.05, log_interval=0,
                                        max_parallel=128, timeout=30,
                                        max_registrations_per_address=0))
        host, port = await headend.start()
        headend.endpoint.limits = EndpointLimits(max_connections=count + 10, max_per_address=count + 10)
        times: list[float] = []
        headend.registrar.on_registered = lambda node, f=headend.registrar.on_registered: (
            times.append(time.perf_counter()), f(node))
        rss_before = rss_kib()
        proc = start_fleet(host, port, count)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 600
            while len(times) < count:  # every meter registered (the fleet's own line may lag)
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{len(times)} of {count} meters registered")
                await asyncio.sleep(0.1)
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # never block it
            reg_rate = (count - 1) / (times[-1] - times[0])
            rss_registered = rss_kib()
            headend.latencies.clear()
            reads_before, stored_before = headend.stats["reads"], headend.stats["stored"]
            start = time.perf_counter()
            await asyncio.sleep(seconds)
            elapsed = time.perf_counter() - start
            reads = headend.stats["reads"] - reads_before
            stored = headend.stats["stored"] - stored_before
            lat = sorted(headend.latencies)
            failures = headend.stats["read_failures"]
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            await headend.stop()
    p50 = statistics.median(lat) * 1000
    p99 = lat[int(len(lat) * 0.99)] * 1000
    per_meter = (rss_registered - rss_before) / count
    echo = _echo_figure()
    lines = [
        machine(),
        "",
        f"{count} simulated meters (`c1222 fleet`, one worker, one TCP connection each) against the head-end "
        f"(this process, SQLite WAL, synchronous=FULL), loopback:",
        "",
        "| figure | value |",
        "|---|---|",
        f"| registrations per second (100 in flight) | {reg_rate:,.0f} |",
        f"| collector reads per second (Security + 3 full reads, values stored) | "
        f"{reads / elapsed:,.0f} |",
        f"| readings stored per second | {stored / elapsed:,.0f} |",
        f"| request-response latency p50 / p99 (head-end side, {len(lat):,} exchanges) | "
        f"{p50:.1f} ms / {p99:.1f} ms |",
        f"| RSS per registered meter (head-end) | {per_meter:.1f} KiB |",
        f"| failed reads | {failures} |",
    ]
    if echo:
        lines.append(f"| plain asyncio echo server, 8 connections (benchmarks/meter.py, same "
                     f"machine) | {echo} requests/s |")
    lines += ["", "Run: `.venv/bin/python benchmarks/headend.py` "
              f"(--meters {count} --seconds {seconds:g})."]
    return lines


def _echo_figure() -> str | None:
    """The echo server's rate at 8 connections, mode 0, from benchmarks/meter.py's table."""
    if not REPORT.exists():
        return None
    for line in REPORT.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[:2] == ["0", "8"]:
            return cells[6]
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    lines = asyncio.run(measure(args.meters, args.seconds))
    write_section("Head-end: registrations and reads with many meters", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
