"""Reads through C12.22 relays: on the shaped WAN of the test bed, and the relay's cost on loopback.

Three parts, each a section of BENCHMARKS.md (docs/network-testbed.md):

- **link**: the test bed's shaped WAN alone (tests/network/netbed.py, two hosts): RTT p50/p99 of
  200 UDP echoes, packet loss from the iptables counters, throughput of a TCP transfer.
- **wan**: the issue's network in namespaces (head-end host, master relay, gateway, shaped WAN,
  relay, a meter behind it). A client in the head-end's host (a head-end stand-in, re-run of this
  script with ``--client``) sends N reads (Security + Full Read of Table 28, mode 2) to the
  master relay, called AP title = the meter's, at a fixed concurrency (one TCP connection per
  worker, one request at a time on each). A read that gets no answer within ``--timeout`` (or an
  error response from a relay) is retried with a new request on a new connection, up to
  ``--retries`` times. Success rate, p50/p99 latency (of the successful reads, retries included),
  the retries, and the TCP retransmissions every host of the bed counted (/proc/net/snmp).
- **loopback**: no shaping, 127.0.0.1: the same reads straight to the meter, through a plain
  asyncio TCP forwarder in front of it (the reference: a byte pipe per connection), and through
  ``c1222 relay --master`` (the meter registered through it); request rates and the relay's and
  the forwarder's CPU time per forwarded read, measured in the same run.
- **fleet**: ``c1222 fleet --relay`` (``--meters``, 1,000 by default) on a host behind
  ``c1222 relay``, across the shaped WAN from the master relay and ``c1222 headend`` (its CLI,
  SQLite, collector every ``--interval`` s), mode 2. Every meter registers with the empty title
  through the relays; then ``--intervals`` collection intervals are accounted from the head-end's
  own /metrics (scraped from its host every second): meters due, read, failed, skipped per
  interval, the p50/p99 of a meter's collection and of one exchange (interpolated in the
  histogram's buckets), the bytes each way through the WAN (tc's counters at both ends) against
  the link's rate, TCP retransmissions, and the CPU and memory of every node.

    .venv/bin/python benchmarks/network.py [--part all|link|wan|loopback|fleet] [--reads 1000]
                                           [--meters 1000] [--interval 60] [--intervals 3]

The network parts need root, ip, tc and iptables (as the network tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
# The nodes started in the bed's hosts run this tree's c1222, whatever the venv installed.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "src"), str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                      if p])

import _metrics  # noqa: E402
from _report import machine, write_section  # noqa: E402

from c1222.codec.ber import Uid  # noqa: E402
from c1222.codec.framing import StreamFramer  # noqa: E402
from c1222.codec.services import FullReadRequest, SecurityRequest  # noqa: E402
from c1222.codes import ResponseCode  # noqa: E402
from c1222.crypto.keys import KeyTable  # noqa: E402
from c1222.crypto.nonces import TimeIvSource  # noqa: E402
from c1222.errors import C1222Error  # noqa: E402
from c1222.session.requester import Requester  # noqa: E402
from c1222.tables.access import pad_password  # noqa: E402
from c1222.transport.client import responses  # noqa: E402

METER_TITLE = "2.16.124.113620.1.22.0.123.8437"
PASSWORD = pad_password("PASSWORD")
MODE = 2
Address = tuple[str, int]


# ---------------------------------------------------------------------------- the client


@dataclass
class Reads:
    """What a batch of reads gave."""

    ok: int = 0
    failed: int = 0
    retries: int = 0
    timeouts: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


async def read_many(address: Address, meter: str, count: int, concurrency: int, key: str,
                    timeout: float, retries: int) -> Reads:
    """``count`` verified reads of Table 28 from ``meter`` through ``address``."""
    keys = KeyTable.from_cli([key])
    requester = Requester(Uid.parse("2.16.124.113620.1.22.0.123.4"), TimeIvSource(time.time),
                          keys=keys, security_mode=MODE, key_id=2)
    called = Uid.parse(meter)
    result = Reads()
    todo = iter(range(count))

    async def worker() -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        framer = StreamFramer(64 * 1024)
        for _ in todo:
            start = time.perf_counter()
            for attempt in range(retries + 1):
                if attempt:
                    result.retries += 1
                pending = requester.request([SecurityRequest(PASSWORD, 2), FullReadRequest(28)],
                                            called)
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
                        framer = StreamFramer(64 * 1024)
                    reader, writer = conn
                    writer.write(pending.data)
                    got: list[bytes] = []
                    deadline = time.perf_counter() + timeout
                    while not got:
                        chunk = await asyncio.wait_for(reader.read(65536),
                                                       max(0.0, deadline - time.perf_counter()))
                        if not chunk:
                            raise ConnectionError("closed")
                        got = framer.feed(chunk)
                except (asyncio.TimeoutError, OSError) as exc:
                    # A late answer must not be taken for the next request's: new connection.
                    if isinstance(exc, asyncio.TimeoutError):
                        result.timeouts += 1
                    if conn is not None:
                        conn[1].close()
                    conn = None
                    continue
                try:
                    codes = [r.response_code for r in
                             responses(requester.accept(got[0], pending, time.time()))]
                except C1222Error as exc:
                    codes = [type(exc).__name__]
                name = ",".join(c.name if isinstance(c, ResponseCode) else str(c) for c in codes)
                result.codes[name] = result.codes.get(name, 0) + 1
                if codes == [ResponseCode.OK, ResponseCode.OK]:
                    result.ok += 1
                    result.latencies.append(time.perf_counter() - start)
                    break
            else:
                result.failed += 1
        if conn is not None:
            conn[1].close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - began
    return result


def client_main(spec: str) -> None:
    """``--client JSON``: run :func:`read_many` here (in a bed's host) and print its result."""
    args = json.loads(spec)
    reads = asyncio.run(read_many((args["host"], args["port"]), args["meter"], args["count"],
                                  args["concurrency"], args["key"], args["timeout"],
                                  args["retries"]))
    print(json.dumps(reads.__dict__), flush=True)


# ---------------------------------------------------------------------------- the forwarder


async def _forwarder(upstream: Address) -> None:
    """A plain asyncio TCP forwarder: a byte pipe each way per connection (the reference)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"forwarder listening on tcp+udp {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def retransmissions(hosts) -> int:
    """TCP segments retransmitted, summed over the bed's hosts (each namespace's own counter)."""
    total = 0
    for host in hosts:
        snmp = host.run("cat", "/proc/net/snmp").stdout.splitlines()
        tcp = [line.split()[1:] for line in snmp if line.startswith("Tcp:")]
        total += int(dict(zip(tcp[0], tcp[1]))["RetransSegs"])
    return total


# ---------------------------------------------------------------------------- the parts


def part_link() -> list[str]:
    from tests.network.netbed import Bed, WanShape, measure_wan, sweep_stale

    sweep_stale()
    shape = WanShape()
    with Bed() as bed:
        a, b = bed.host("a"), bed.host("b")
        wan = bed.wan(a, "10.16.2.1", b, "10.16.2.2", shape)
        f = measure_wan(wan, probes=200, interval=0.02, transfer=65536)
    print(f)
    return [
        machine(),
        "",
        f"The test bed's shaped WAN (tests/network/netbed.py, docs/network-testbed.md): delay "
        f"{shape.delay * 1e3:.0f} ms ± {shape.jitter * 1e3:.0f} ms each way (uniform, in "
        f"order, the layer-2 link process), loss {shape.loss:.0%} each way (iptables "
        f"statistic), {shape.rate_kbit} kbit/s each way (tbf). Measured from one end: "
        f"{f['probes']} UDP echoes 20 ms apart, then {f['transfer_bytes'] // 1024} KiB "
        "through a TCP echo.",
        "",
        "| RTT min | RTT p50 | RTT p99 | RTT max | echoes lost | packets dropped / entered "
        "| TCP echo throughput, each way |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {f['rtt_min'] * 1e3:.0f} ms | {f['rtt_p50'] * 1e3:.0f} ms "
        f"| {f['rtt_p99'] * 1e3:.0f} ms | {f['rtt_max'] * 1e3:.0f} ms "
        f"| {f['probes'] - f['answered']} of {f['probes']} ({f['round_trip_loss']:.1%}) "
        f"| {f['packets_dropped']} / {f['packets_in']} ({f['packet_loss']:.1%}) "
        f"| {f['throughput_kbit_s']:.0f} kbit/s |",
        "",
        "Echoes arrive in order: a probe sent 20 ms after another never overtakes it, so the "
        "RTT sits above twice the mean delay; the throughput includes TCP's slow start and its "
        "retransmissions over a 300 ms path.",
    ]


def part_wan(reads: int, concurrency: int, timeout: float, retries: int) -> list[str]:
    from tests.network import nodes
    from tests.network.netbed import Bed, WanShape, build_network, sweep_stale

    sweep_stale()
    with tempfile.TemporaryDirectory(prefix="c1222-bench-net-") as tmp, Bed() as bed:
        net = build_network(bed, meters=1, deep_meters=0, shape=WanShape())
        master = nodes.master_relay(net.master, MODE)
        master.address(60)
        relay = nodes.relay(net.relay, net.master.ip, nodes.RELAY_TITLE, MODE)
        relay.address(60)
        state = Path(tmp) / "meter"
        state.mkdir()
        meter = nodes.meter(net.meters[0], net.relay.ip, state, MODE,
                            title=METER_TITLE)
        meter.address(60)
        # Registered when the master relay routes a read to it: poll with a few reads.
        probe_spec = dict(host=net.master.ip, port=nodes.PORT, meter=METER_TITLE, count=1,
                          concurrency=1, key=nodes.KEY, timeout=5.0, retries=0)
        deadline = time.monotonic() + 120
        while True:
            out = net.headend.run(sys.executable, __file__, "--client", json.dumps(probe_spec),
                                  timeout=60)
            if json.loads(out.stdout.splitlines()[-1])["ok"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the meter was never reachable through the relays:\n"
                                   + "\n".join(master.lines[-20:] + relay.lines[-20:]
                                               + meter.lines[-20:]))
            time.sleep(1)
        hosts = list(bed.hosts.values())
        before = retransmissions(hosts)
        spec = dict(probe_spec, count=reads, concurrency=concurrency, timeout=timeout,
                    retries=retries)
        out = net.headend.run(sys.executable, __file__, "--client", json.dumps(spec),
                              timeout=3600)
        result = Reads(**json.loads(out.stdout.splitlines()[-1]))
        retrans = retransmissions(hosts) - before
    print(result.__dict__ | {"latencies": len(result.latencies)}, f"retransmissions {retrans}")
    codes = ", ".join(f"{k} {v}" for k, v in sorted(result.codes.items()))
    return [
        machine(),
        "",
        f"{reads:,} reads (Security + Full Read of Table 28, mode 2) from the head-end's host to "
        "a meter behind the relay, through the master relay and the relay over the shaped WAN "
        "(150 ms ± 50 ms each way, 1 % loss each way, 150 kbit/s; section above), by AP title "
        f"alone. {concurrency} workers, one TCP connection each, one read at a time; a read "
        f"unanswered in {timeout:g} s is sent again (new request, new connection), at most "
        f"{retries} times.",
        "",
        "| reads | succeeded | failed | p50 latency | p99 latency | retries (time-outs) "
        "| TCP retransmissions (all hosts) | reads/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {reads:,} | {result.ok:,} ({result.ok / reads:.1%}) | {result.failed} "
        f"| {result.percentile(0.5) * 1e3:.0f} ms | {result.percentile(0.99) * 1e3:.0f} ms "
        f"| {result.retries} ({result.timeouts}) | {retrans} "
        f"| {reads / result.seconds:.1f} |",
        "",
        f"Answers by response codes: {codes}. A read is one round trip of the WAN at least "
        "(the connections stay open; the relays add their hops on the LANs and their own "
        "work); the p99 is where TCP retransmitted a lost segment (its time-out is at least "
        "200 ms plus the RTT). The time-out of a read (10 s) is far above that, so TCP, not "
        "the client, recovers every loss.",
    ]


# ---------------------------------------------------------------------------- fleet over the WAN

def sent_bytes(host, ifname: str) -> int:
    """Bytes the interface's root qdisc (the tbf) sent: what went onto the WAN from there."""
    text = host.run("tc", "-s", "qdisc", "show", "dev", ifname).stdout
    found = re.search(r"Sent (\d+) bytes", text)
    return int(found.group(1)) if found else 0


def exchange_latencies(db: Path, since: float, until: float) -> list[float]:
    """Request -> response times from the head-end's message log (each logged with its time):
    per AP title, an "in" message pairs with the "out" message before it."""
    import datetime as dt
    import sqlite3

    lo = dt.datetime.fromtimestamp(since, dt.timezone.utc).isoformat()
    hi = dt.datetime.fromtimestamp(until, dt.timezone.utc).isoformat()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
        rows = con.execute("SELECT ap_title, direction, time FROM messages WHERE time >= ? "
                           "AND time < ? ORDER BY id", (lo, hi)).fetchall()
    return _metrics.pair_exchanges(rows)


def part_fleet(meters: int, interval: float, intervals: int, timeout: float) -> list[str]:
    from tests.network import nodes
    from tests.network.netbed import Bed, WanShape, build_network, sweep_stale

    sweep_stale()
    shape = WanShape()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="c1222-bench-fleet-") as tmp, Bed() as bed:
        net = build_network(bed, meters=1, deep_meters=0, shape=shape)
        assert net.wan is not None
        master = nodes.master_relay(net.master, MODE, *nodes.FLEET_RELAY)
        master.address(60)
        headend = nodes.headend(net.headend, net.master.ip, Path(tmp), MODE,
                                "--collect-interval", f"{interval:g}", "--log-interval", "0",
                                *nodes.FLEET_HEADEND)
        headend.address(60)
        web = "http://{}:{}".format(*headend.wait_for(r"console at http (\S+):(\d+)", 60)
                                    .groups())
        relay = nodes.relay(net.relay, net.master.ip, nodes.RELAY_TITLE, MODE,
                            *nodes.FLEET_RELAY)
        relay.address(60)
        scraper = net.headend.start([sys.executable, _metrics.__file__, f"{web}/metrics",
                                     str(timeout)])
        hosts = list(bed.hosts.values())
        fleet = nodes.fleet(net.meters[0], net.relay.ip, meters, MODE)
        fleet.wait_for(r"fleet: all [\d,]+ meters registered", timeout)
        registered_in = time.monotonic() - started

        def scrapes() -> list[dict]:
            return [json.loads(line)[0] for line in list(scraper.lines)
                    if line.startswith("[")]

        def boundaries() -> list[dict]:
            return _metrics.boundaries(scrapes())

        def full_start() -> int | None:
            return _metrics.full_start(boundaries(), meters)

        deadline = time.monotonic() + timeout
        while full_start() is None:
            if time.monotonic() > deadline:
                raise RuntimeError("never an interval with every meter due:\n"
                                   + "\n".join(headend.lines[-20:]))
            time.sleep(1)
        first = full_start()
        assert first is not None
        wan_before = (sent_bytes(net.gateway, net.wan.a_if), sent_bytes(net.relay, net.wan.b_if))
        retrans_before = retransmissions(hosts)
        pids = {"head-end": headend.proc.pid, "master relay": master.proc.pid,
                "relay": relay.proc.pid, "fleet": fleet.proc.pid}
        cpu_before = {name: _metrics.tree_cpu(pid) for name, pid in pids.items()}
        window_start, wall_start = time.monotonic(), time.time()
        # interval k runs from boundary k to k+1; its gauges are published at k+1
        while len(boundaries()) < first + intervals + 2:
            if time.monotonic() > deadline:
                raise RuntimeError("time-box reached while reading")
            time.sleep(1)
        window = time.monotonic() - window_start
        wan_after = (sent_bytes(net.gateway, net.wan.a_if), sent_bytes(net.relay, net.wan.b_if))
        retrans = retransmissions(hosts) - retrans_before
        cpu = {name: _metrics.tree_cpu(pid) - cpu_before[name] for name, pid in pids.items()}
        rss = {name: _metrics.tree_rss_kib(pid) for name, pid in pids.items()}
        marks = boundaries()
        exchanges = exchange_latencies(Path(tmp) / "headend.db", wall_start, time.time())
        fleet.stop()
        summary = [line for line in fleet.lines if line.startswith(("fleet summary", "  "))]
    rows = _metrics.interval_rows(marks, first + 1, intervals)
    start, end = marks[first + 1], marks[first + intervals + 1]
    read_bucket = _metrics.M + "read_duration_seconds_bucket"
    reads = sum(r["read"] for r in rows)
    down = (wan_after[0] - wan_before[0]) * 8 / window / 1000
    up = (wan_after[1] - wan_before[1]) * 8 / window / 1000
    worst = min(rows, key=lambda r: r["read"] / max(1, r["due"]))
    result = {"meters": meters, "registered_in": registered_in, "intervals": rows,
              "collection_p50": _metrics.bucket_percentile(start[read_bucket],
                                                           end[read_bucket], .5),
              "collection_p99": _metrics.bucket_percentile(start[read_bucket],
                                                           end[read_bucket], .99),
              "exchanges": len(exchanges),
              "exchange_p50": _metrics.percentile(exchanges, .5),
              "exchange_p99": _metrics.percentile(exchanges, .99),
              "down_kbit_s": down, "up_kbit_s": up, "retransmissions": retrans,
              "cpu": cpu, "rss": rss, "window": window}
    print(json.dumps(result))
    print("\n".join(summary))
    success = ", ".join(f"{r['read'] / max(1, r['due']):.2%}" for r in rows)
    per_read = {name: seconds / max(1, reads) * 1000 for name, seconds in cpu.items()}
    return [
        machine(),
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
        f"{os.getloadavg()[0]:.1f} at the end. `c1222 fleet --relay` ({meters:,} meters, one "
        "process, TCP: each meter keeps its registration connection to the relay) on a host "
        "behind `c1222 relay`, across the test bed's shaped WAN (150 ms ± 50 ms each way, 1 % "
        f"loss each way, {shape.rate_kbit} kbit/s each way; sections above) from `c1222 relay "
        "--master` and `c1222 headend --master-relay` (SQLite, collector every "
        f"{interval:g} s: one request of Security and Full Reads of Tables 23, 28, 52 per "
        "meter (and of the context tables the first time), 64 meters at a time, 10 s "
        "time-out), mode 2. Every meter registers with the empty title through the relay and "
        "gets its "
        "title from the master relay, which tells the head-end; the head-end reads each meter "
        "by title through the master relay, the WAN and the relay. Accounted from the "
        "head-end's /metrics, scraped every second in its host.",
        "",
        "| meters | all registered after | read success per interval (read / due) | worst: "
        "failed / skipped | collection p50 / p99 | exchange p50 / p99 | WAN use, down / up "
        "(of the rate) | TCP retransmissions | CPU ms/read: head-end, master, relay, fleet |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        f"| {meters:,} | {registered_in:.0f} s | {success} | {worst['failed']} / "
        f"{worst['skipped']} "
        f"| {result['collection_p50'] * 1e3:.0f} / {result['collection_p99'] * 1e3:.0f} ms "
        f"| {result['exchange_p50'] * 1e3:.0f} / {result['exchange_p99'] * 1e3:.0f} ms "
        f"| {down:.0f} / {up:.0f} kbit/s ({down / shape.rate_kbit:.0%} / "
        f"{up / shape.rate_kbit:.0%}) | {retrans:,} "
        f"| {per_read['head-end']:.2f}, {per_read['master relay']:.2f}, "
        f"{per_read['relay']:.2f}, {per_read['fleet']:.2f} |",
        "",
        f"Memory (RSS) at the end: head-end {rss['head-end'] / 1024:.0f} MiB, master relay "
        f"{rss['master relay'] / 1024:.0f} MiB, relay {rss['relay'] / 1024:.0f} MiB, fleet "
        f"{rss['fleet'] / 1024:.0f} MiB. Down = the gateway's tbf toward the field (requests), "
        "up = the relay's toward the utility (responses), over the measured "
        f"{window:.0f} s. Exchange = request sent to response received, from the head-end's "
        f"message log ({len(exchanges):,} exchanges); collection = a meter's whole collection "
        "(the exchange, decoding, storing), interpolated inside the head-end's histogram "
        "buckets (0.1, 0.25, 0.5, 1, 2.5, 5, 10 s), so coarse. A read counts in the interval "
        "it finished in.",
        "",
        f"Run: `benchmarks/network.py --part fleet --meters {meters} --interval {interval:g} "
        f"--intervals {intervals}` (as root).",
    ]


class Proc:
    """A subprocess on loopback that prints ``listening on tcp+udp HOST:PORT``."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            found = re.search(r"listening on tcp\S* (\S+):(\d+)", line)
            if found:
                self.address: Address = (found.group(1), int(found.group(2)))
                threading.Thread(target=self._drain, daemon=True).start()
                self.lines = seen
                return
        raise RuntimeError(f"{args} did not start:\n{''.join(seen)}")

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            del self.lines[:-200]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def part_loopback(requests: int, rounds: int) -> list[str]:
    from tests.network import nodes

    key = nodes.KEY
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="c1222-bench-relay-") as tmp:
        try:
            master = Proc(["-m", "c1222.cli", "relay", "--master", "--ap-title",
                           nodes.MASTER_TITLE, "--listen", "127.0.0.1:0", "--assign-branch",
                           nodes.ASSIGN_BRANCH, "--security-mode", str(MODE), "--key", key])
            procs.append(master)
            meter = Proc(["-m", "c1222.cli", "meter", "--listen", "127.0.0.1:0", "--ap-title",
                          METER_TITLE, "--relay", f"127.0.0.1:{master.address[1]}",
                          "--state-dir", tmp, "--security-mode", str(MODE), "--key", key])
            procs.append(meter)
            forwarder = Proc([__file__, "--forwarder", f"127.0.0.1:{meter.address[1]}"])
            procs.append(forwarder)
            targets = {"direct": meter.address, "forwarder": forwarder.address,
                       "relay": master.address}
            # The relay routes the meter's title once the meter has registered through it.
            deadline = time.monotonic() + 60
            while asyncio.run(read_many(master.address, METER_TITLE, 1, 1, key, 2.0, 0)).ok != 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the relay never routed the meter:\n"
                                       + "".join(master.lines[-30:] + meter.lines[-30:]))
                time.sleep(0.5)
            best: dict[tuple[str, int], Reads] = {}
            cpu: dict[str, list[float]] = {"forwarder": [], "relay": []}
            pids = {"forwarder": forwarder.proc.pid, "relay": master.proc.pid}
            for round_ in range(rounds):
                for conns in (1, 8):
                    # Each round starts with another target: a burst of someone else's work
                    # on the shared machine does not always land on the same one.
                    order = list(targets.items())
                    order = order[round_ % 3:] + order[:round_ % 3]
                    for name, address in order:
                        used = cpu_seconds(pids[name]) if name in pids else 0.0
                        run = asyncio.run(read_many(address, METER_TITLE, requests, conns, key,
                                                    10.0, 0))
                        if run.ok != requests:
                            raise RuntimeError(f"{name}: {run.codes}, {run.failed} failed")
                        if name in pids:
                            cpu[name].append((cpu_seconds(pids[name]) - used) / requests)
                        if (name, conns) not in best or run.seconds < best[name, conns].seconds:
                            best[name, conns] = run
        finally:
            for proc in reversed(procs):
                proc.stop()
    lines = [
        machine().rstrip(".") + f". Load average after the run: {os.getloadavg()[0]:.1f} (a "
        "shared machine: absolute figures move between runs; figures of one row are measured "
        "in the same run).",
        "",
        f"One `c1222 meter` (mode 2) on 127.0.0.1, registered through `c1222 relay --master`; "
        f"{requests:,} reads (Security + Full Read of Table 28, verified) per figure, straight "
        "to the meter, through a plain asyncio TCP forwarder in front of the meter (a byte pipe "
        "per connection: the floor of forwarding in Python), and through the relay (called AP "
        f"title = the meter's; the relay routes it on the meter's registration). Best of "
        f"{rounds} rounds; CPU = the forwarding process's user + system time per read (one "
        "request and its response forwarded), the median over the rounds.",
        "",
        "| connections | direct reads/s | forwarder reads/s | relay reads/s "
        "| direct p50 ms | forwarder p50 ms | relay p50 ms | forwarder CPU µs/read "
        "| relay CPU µs/read |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for conns in (1, 8):
        d, f, r = best["direct", conns], best["forwarder", conns], best["relay", conns]
        lines.append(
            f"| {conns} | {requests / d.seconds:,.0f} | {requests / f.seconds:,.0f} "
            f"| {requests / r.seconds:,.0f} | {d.percentile(0.5) * 1e3:.2f} "
            f"| {f.percentile(0.5) * 1e3:.2f} | {r.percentile(0.5) * 1e3:.2f} "
            f"| {statistics.median(cpu['forwarder'][conns == 8::2]) * 1e6:,.0f} "
            f"| {statistics.median(cpu['relay'][conns == 8::2]) * 1e6:,.0f} |")
    lines += [
        "",
        "The relay's extra work over the forwarder: it decodes every APDU's header (A2 to "
        "route, A8 and the calling title to pair the response), keeps the pending forward, "
        "counts it in Table 127 and frames whole APDUs; it does not verify or re-encode "
        "transit messages (it forwards the bytes unchanged). When the load average is above "
        "the number of cores, the rates and latencies measure the scheduler more than the "
        "code (a forwarded read can then beat a direct one); the CPU columns hold better.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "link", "wan", "loopback", "fleet"],
                        default="all")
    parser.add_argument("--meters", type=int, default=1000, help="fleet: meters")
    parser.add_argument("--interval", type=float, default=60.0, help="fleet: collect interval")
    parser.add_argument("--intervals", type=int, default=3, help="fleet: intervals measured")
    parser.add_argument("--time-box", type=float, default=1800.0, help="fleet: time-box, s")
    parser.add_argument("--reads", type=int, default=1000, help="reads over the WAN")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds before a read over the WAN is sent again")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="reads per loopback figure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--forwarder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client)
        return
    if args.forwarder:
        host, _, port = args.forwarder.rpartition(":")
        asyncio.run(_forwarder((host, int(port))))
        return
    if args.part in ("all", "link"):
        write_section("Network: the shaped WAN of the test bed (benchmarks/network.py)",
                      part_link())
    if args.part in ("all", "wan"):
        write_section("Network: 1,000 reads through relays over the shaped WAN "
                      "(benchmarks/network.py)",
                      part_wan(args.reads, args.concurrency, args.timeout, args.retries))
    if args.part in ("all", "fleet"):
        write_section("Network: a fleet through a relay over the shaped WAN "
                      "(benchmarks/network.py)",
                      part_fleet(args.meters, args.interval, args.intervals, args.time_box))
    if args.part in ("all", "loopback"):
        write_section("Network: the relay's forwarding cost on loopback (benchmarks/network.py)",
                      part_loopback(args.requests, args.rounds))


if __name__ == "__main__":
    main()
