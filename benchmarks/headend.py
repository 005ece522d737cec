"""How much the head-end sustains: 1,000 simulated meters on loopback register and are read.

The head-end (:class:`c1222.headend.server.HeadEnd`, SQLite in a temporary folder) runs in this
process; the fleet runs in a second process (``--fleet``): N C12.22 end devices, each with its
own AP title and responder over one shared table store, each on its own TCP connection. They
register as fast as the head-end answers (100 at a time); then the head-end's collector reads
every meter (Tables 28, 23, 52 plus the context once) and stores the values, for a fixed time
(load profile and event log reads are off: they are minutes apart in operation).

Figures: registrations per second, collector reads per second, p50/p99 request-response
latency as the head-end sees it, RSS per registered meter; beside them the plain asyncio echo
figure measured by benchmarks/meter.py on the same machine (read from BENCHMARKS.md).

    .venv/bin/python benchmarks/headend.py [--meters 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPORT, machine, write_section  # noqa: E402

from c1222.codec.ber import Uid  # noqa: E402
from c1222.codec.services import RegisterRequest  # noqa: E402
from c1222.crypto.nonces import RandomNonceSource  # noqa: E402
from c1222.headend.server import HeadEnd, HeadEndConfig  # noqa: E402
from c1222.meter.services import MeterServices  # noqa: E402
from c1222.session.requester import Requester  # noqa: E402
from c1222.session.responder import Responder, ResponderConfig  # noqa: E402
from c1222.tables.profile import MeterProfile, build_tables  # noqa: E402
from c1222.tables.types import TimeDate  # noqa: E402
from c1222.transport.client import Client  # noqa: E402
from c1222.transport.endpoint import Endpoint, EndpointLimits, Link  # noqa: E402

HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------- the fleet


async def fleet(host: str, port: int, count: int) -> None:
    tables = build_tables(MeterProfile(), now=TimeDate(2026, 1, 1, 0, 0, 0))
    responders: dict[int, Responder] = {}

    async def on_request(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        reply = responders[link.id].receive(data, link.id, time.time())
        return reply.data, reply.close

    endpoint = Endpoint(on_request, limits_=EndpointLimits(max_connections=count + 10, max_per_address=count + 10))
    limit = asyncio.Semaphore(100)

    async def one(i: int) -> None:
        title = Uid.parse(f"2.16.124.113620.1.22.0.123.{100000 + i}")
        services = MeterServices(tables, title, clock=lambda: TimeDate(2026, 1, 1, 0, 0, 0))
        async with limit:
            link = await endpoint.connect(host, port)
            responders[link.id] = Responder(ResponderConfig(ap_title=title), services,
                                            RandomNonceSource())
            client = Client(Requester(title, RandomNonceSource()), endpoint)
            await client.call([RegisterRequest(0x20, 0xF0, b"SIMU", title, Uid.parse(f".{i}"),
                                               f"{host}:{link.local[1]}".encode(), 3600)],
                              called=HEADEND, link=link, timeout=60)

    await asyncio.gather(*(one(i) for i in range(count)))
    print("registered", flush=True)
    while True:  # the shared clock (Table 52) ticks, so each read is a new reading
        now = TimeDate.from_datetime(dt.datetime.now(dt.timezone.utc))
        clock = tables.store.get(52)
        tables.store.put(52, dataclasses.replace(clock, clock_calendar=now))
        await asyncio.sleep(1)


# --------------------------------------------------------------------------- the head-end


async def measure(count: int, seconds: float) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        headend = HeadEnd(HeadEndConfig(listen=("127.0.0.1", 0), db=f"sqlite:///{tmp}/b.db",
                                        collect_interval=0.05, log_interval=0,
                                        max_parallel=128, timeout=30))
        host, port = await headend.start()
        headend.endpoint.limits = EndpointLimits(max_connections=count + 10, max_per_address=count + 10)
        times: list[float] = []
        headend.registrar.on_registered = lambda node, f=headend.registrar.on_registered: (
            times.append(time.perf_counter()), f(node))
        rss_before = rss_kib()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--fleet", host, str(port), str(count),
            stdout=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 600)
            assert line.strip() == b"registered", line
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
            proc.kill()
            await proc.wait()
            await headend.stop()
    p50 = statistics.median(lat) * 1000
    p99 = lat[int(len(lat) * 0.99)] * 1000
    per_meter = (rss_registered - rss_before) / count
    echo = _echo_figure()
    lines = [
        machine(),
        "",
        f"{count} simulated meters (one process, one TCP connection each) against the head-end "
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
    parser.add_argument("--fleet", nargs=3, metavar=("HOST", "PORT", "COUNT"))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    if args.fleet:
        asyncio.run(fleet(args.fleet[0], int(args.fleet[1]), int(args.fleet[2])))
        return
    lines = asyncio.run(measure(args.meters, args.seconds))
    write_section("Head-end: registrations and reads with many meters", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
