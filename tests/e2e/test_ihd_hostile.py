"""Hostile peers do not hurt `c1222 ihd` (the in-home display's C12.22 side).

Each test starts a real display and a real `c1222 meter` feeding it every second. A good client
reads back, in a loop over TCP and UDP, the Table 0 the meter wrote (as the meter: the display
keeps tables per calling AP title); every answer must be OK with the same bytes within
CALL_TIMEOUT. Then one attack runs; afterwards the display must still run with no traceback
logged, and its page must have shown new samples from the meter throughout (no gap of more than
MAX_GAP seconds: a hang bound, not a speed test).

The attacks: lengths claiming gigabytes and drips, garbage on TCP and UDP, a flood of
connections, a UDP storm with writes from many made-up meters, bad MACs, and replays.

Run with ``-s`` to see what each attack met.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import httpx

from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.services import (
    FullReadRequest,
    FullWriteRequest,
    IdentifyRequest,
    ReadResponse,
    TableData,
)
from c1222.codes import ResponseCode, SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import RandomNonceSource
from c1222.session.requester import Requester
from c1222.transport.client import Client, responses
from tests.e2e import hostile
from tests.e2e.hostile import (
    CLAIMS,
    FLOOD,
    HUGE,
    Collector,
    GoodPeer,
    claim_and_push,
    drip_slowly,
    exchange,
    first_codes,
    forge,
    garbage_datagrams,
    garbage_streams,
    is_closed,
    mutate,
    open_flood,
    raise_fd_limit,
    refusal_codes,
    report,
    send_in_background,
    spray,
    stop_framed,
    tcp,
    udp_blast,
    udp_exchange,
)
from tests.e2e.procs import Running
from tests.e2e.test_meter import KEY_HEX, KEYS, METER

IHD = Uid.parse("2.16.124.113620.1.22.0.123.8437.1")
CALL_TIMEOUT = 10.0
MAX_GAP = 20.0
RSS_SLACK_KIB = 60 * 1024
#: Meters one display follows (c1222.ihd.node.MAX_METERS).
MAX_METERS = 16
OK, ONP, SME = ResponseCode.OK, ResponseCode.ONP, ResponseCode.SME


def requester(mode: int, title: Uid = METER, keys: KeyTable = KEYS) -> Requester:
    return Requester(title, RandomNonceSource(), keys=keys, security_mode=mode,
                     key_id=2 if mode else None)


class SampleWatch:
    """Times (monotonic) at which the page showed a new sample (polls /api/live)."""

    def __init__(self, web: str) -> None:
        self.web = web
        self.times: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = None
        with httpx.Client(timeout=10) as http:
            while not self._stop.wait(0.2):
                try:
                    sample = http.get(f"{self.web}/api/live").json()["sample"]
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self.errors.append(repr(exc))
                    continue
                if sample is not None and sample["time"] != last:
                    last = sample["time"]
                    self.times.append(time.monotonic())

    def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.times)
        while len(self.times) < start + count:
            assert time.monotonic() < deadline, "the display shows no new sample"
            time.sleep(0.1)

    def max_gap(self, start: float, end: float) -> tuple[int, float]:
        inside = [t for t in self.times if start <= t <= end]
        edges = [start, *inside, end]
        return len(inside), max(b - a for a, b in zip(edges, edges[1:]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


class System:
    """A display and a meter feeding it every second."""

    def __init__(self, tmp: Path, mode: int = 0) -> None:
        self.mode = mode
        self.ihd = Running(["ihd", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                            "--state-dir", str(tmp / "ihd"), "--security-mode", str(mode),
                            "--key", f"2:{KEY_HEX}"])
        self.meter: Running | None = None
        self.watch: SampleWatch | None = None
        try:
            self.address = self.ihd.address()
            web = self.ihd.wait_for(r"page at http (\S+):(\d+)")
            self.watch = SampleWatch(f"http://{web.group(1)}:{web.group(2)}")
            self.meter = Running(
                ["meter", "--listen", "127.0.0.1:0", "--ihd",
                 f"{self.address[0]}:{self.address[1]}", "--ihd-ap-title", str(IHD),
                 "--state-dir", str(tmp / "meter"), "--speed", "10",
                 "--security-mode", str(mode), "--key", f"2:{KEY_HEX}"])
            self.meter.address()
            self.watch.wait(2, 60)
            self.table0 = asyncio.run(_read_table0(self))
        except BaseException:
            self.stop()
            raise

    def assert_unhurt(self, start: float, end: float) -> str:
        assert self.ihd.proc.poll() is None, "the display died:\n" + "\n".join(self.ihd.lines)
        assert self.meter is not None and self.meter.proc.poll() is None
        assert self.watch is not None
        samples, gap = self.watch.max_gap(start, end)
        assert gap < MAX_GAP, f"the display showed no new sample for {gap:.1f} s"
        self.watch.wait(2, 30)
        bad = [line for line in self.ihd.lines if "Traceback" in line or " ERROR " in line]
        assert not bad, "\n".join(self.ihd.lines[-80:])
        return f"display: {samples} new samples shown during the attack, longest gap {gap:.1f} s"

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        codes = []
        if self.meter is not None:
            codes.append(self.meter.stop())
        codes.append(self.ihd.stop())
        assert codes == [0] * len(codes), codes


async def _read_table0(system: System, transport: str = "tcp") -> bytes:
    c = Client(requester(system.mode))
    try:
        await c.connect(*system.address, transport)
        got = responses(await c.call([FullReadRequest(0)], called=IHD, timeout=CALL_TIMEOUT))
        assert isinstance(got[0], ReadResponse), got
        return got[0].table_data.data
    finally:
        await c.close()


class GoodReader(GoodPeer):
    """Reads back Table 0 as the meter, in a loop (see :class:`GoodPeer`)."""

    calls = "reads"

    def __init__(self, system: System, transport: str) -> None:
        super().__init__(system.address, lambda: Client(requester(system.mode)), transport,
                         0.05)
        self.system = system

    async def step(self, c: Client) -> bool:
        got = await self.timed(c, [FullReadRequest(0)], IHD, CALL_TIMEOUT)
        if got is None:
            return False
        if not (isinstance(got[0], ReadResponse)
                and got[0].table_data.data == self.system.table0):
            self.failures.append(f"read answered {got!r:.200}")
            return False
        return True


def attack(system: System, transports: tuple[str, ...] = ("tcp", "udp")):
    """Good readers running, the display's RSS sampled (:func:`hostile.attack`)."""
    return hostile.attack(system.ihd.proc.pid, lambda t: GoodReader(system, t), transports)


# ---------------------------------------------------------------------------- 1. length, drip


def test_length_claims_and_drips_get_nothing(tmp_path: Path) -> None:
    system = System(tmp_path)
    try:
        bulk = random.Random(1).randbytes(256 * 1024)
        drip_data = requester(0).request([FullWriteRequest(28, TableData(b"\x00" * 40))],
                                         IHD).data
        with attack(system) as (clients, rss, times):
            drips = [Collector(tcp(system.address)) for _ in range(16)]
            peers = claim_and_push(system.address, CLAIMS[:3], bulk, 24)
            echoes = udp_blast(system.address, [HUGE + bulk[:1400]] * 300 + [HUGE] * 300,
                               pace=10)
            drip_slowly(drips, drip_data[:6])
            closed = sum(p.wait_closed(5) for p in peers)
        answered = sum(p.raw for p in peers)
        drip_answers = sum(c.raw for c in drips)
        for c in [*peers, *drips]:
            c.stop()
        report("display: length claims and drips",
               f"24 TCP connections claiming gigabytes: {closed} closed, {answered} bytes "
               f"answered; 600 UDP claims: {len(echoes)} answers",
               f"16 drips of a write, 1 byte/s for 6 s: {drip_answers} bytes answered",
               rss.line("display"), *(c.check() for c in clients), system.assert_unhurt(*times))
        assert closed == 24 and answered == 0 and echoes == [] and drip_answers == 0
        assert rss.peak - rss.before < RSS_SLACK_KIB
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 2. garbage


def _mutants(rng: random.Random, count: int) -> list[bytes]:
    """Writes and reads the display takes, mutated (sent as a made-up meter, so a mutant that
    still decodes cannot touch the good meter's tables)."""
    r = requester(0, Uid.parse("2.16.124.113620.1.22.0.666.1"))
    templates = [r.request(services, IHD).data for services in (
        [IdentifyRequest()], [FullReadRequest(0)],
        [FullWriteRequest(28, TableData(rng.randbytes(40)))],
        [FullWriteRequest(0, TableData(rng.randbytes(30)))])]
    return mutate(rng, templates, count)


def test_garbage_on_tcp_and_udp_gets_no_answer_or_a_well_formed_one(tmp_path: Path) -> None:
    system = System(tmp_path)
    rng = random.Random(0xC1222)
    try:
        streams = garbage_streams(rng, _mutants, 3, 300)
        datagrams = garbage_datagrams(rng, _mutants, 1500, 1500, 2000)
        with attack(system) as (clients, rss, times):
            peers, answers_udp, dropped = spray(system.address, streams, datagrams)
        tcp_answers = [a for p in peers for a in p.apdus]
        random_closed = sum(p.closed_after is not None for p in peers[:3])
        noise_answers = sum(len(p.apdus) for p in peers[3:6])
        stop_framed(peers)
        codes = first_codes(tcp_answers) + first_codes(answers_udp)
        report("display: garbage",
               f"TCP: 3 random streams ({random_closed} closed), 3 of framed noise "
               f"({noise_answers} answers), 3 of mutated requests; {len(tcp_answers)} answers",
               f"UDP: {len(datagrams)} datagrams, {len(answers_udp)} answers, {dropped} dropped "
               f"by the kernel; response codes seen {sorted(set(codes))}",
               rss.line("display"), *(c.check() for c in clients), system.assert_unhurt(*times))
        assert random_closed == 3 and noise_answers == 0
        assert rss.peak - rss.before < RSS_SLACK_KIB
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 3. flood


def test_flood_of_connections_and_the_meter_still_feeds_the_display(tmp_path: Path) -> None:
    raise_fd_limit(FLOOD + 256)
    system = System(tmp_path)
    try:
        with attack(system, ("udp",)) as (clients, rss, times):
            flood, failed = open_flood(system.address)
            time.sleep(4.0)
            refused = sum(is_closed(s) for s in flood)
            for sock in flood:
                sock.close()
            time.sleep(0.5)
            after = asyncio.run(_read_table0(system)) == system.table0
        lines = [f"{FLOOD} connections holding 60 KiB of a frame: {failed} connect failures, "
                 f"{refused} closed by the display", f"a new TCP client after the flood "
                 f"served: {after}", rss.line("display"), *(c.check() for c in clients)]
        try:
            lines.append(system.assert_unhurt(*times))
        finally:
            report("display: connection flood", *lines)
        assert after
        assert rss.peak - rss.before < RSS_SLACK_KIB
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 4. storm, meters


def test_udp_storm_and_writes_from_many_made_up_meters(tmp_path: Path) -> None:
    system = System(tmp_path)
    try:
        r = requester(0)
        storm = [r.request([IdentifyRequest()], IHD).data for _ in range(3000)]
        # Table 0 as written by 200 meters that do not exist: the display follows 16 at most.
        fakes = [requester(0, Uid((2, 16, 124, 113620, 1, 22, 0, 666, n))).request(
            [FullWriteRequest(0, TableData(system.table0))], IHD).data for n in range(200)]
        with attack(system) as (clients, rss, times):
            answers = udp_blast(system.address, storm, pace=20)
            fake_codes = first_codes(udp_blast(system.address, fakes, pace=1))
        report("display: UDP storm and made-up meters",
               f"3000 Identify requests: {len(answers)} answers",
               f"Table 0 from 200 made-up meters: {fake_codes.count(OK)} OK, "
               f"{fake_codes.count(ONP)} ONP",
               rss.line("display"), *(c.check() for c in clients), system.assert_unhurt(*times))
        assert len(answers) > 1000
        assert fake_codes.count(OK) <= MAX_METERS - 1 and set(fake_codes) <= {OK, ONP}
        assert rss.peak - rss.before < RSS_SLACK_KIB
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 5. MACs, replays


def test_bad_macs_and_replays_are_refused(tmp_path: Path) -> None:
    system = System(tmp_path, 2)
    rng = random.Random(5)
    refusal = (SecurityMode.CLEARTEXT, (SME,))
    try:
        r = requester(2)
        evil = TableData(rng.randbytes(40))
        forged = forge(lambda: r.request([FullWriteRequest(28, evil)], IHD).data, 2000, rng, 30)
        other = KeyTable.from_cli(["2:" + "55" * 16])
        forged += [requester(2, keys=other).request([FullWriteRequest(28, evil)], IHD).data
                   for _ in range(300)]
        with attack(system) as (clients, rss, times):
            peer = Collector(tcp(system.address))
            send_in_background(peer.sock, b"".join(forged[:1000]))
            answers_udp = udp_blast(system.address, forged[1000:], pace=5)
            peer.wait_count(1000, timeout=30, quiet=3)
            # A captured read: answered where it was sent, refused on another association.
            a, b = tcp(system.address), tcp(system.address)
            captured = r.request([FullReadRequest(0)], IHD)
            first = exchange(a, captured.data)
            assert acse.decode(first).epsem.security_mode == SecurityMode.CIPHERTEXT_AUTHENTICATED
            replays = [exchange(b, captured.data)]
            replays.append(udp_exchange(system.address, captured.data, CALL_TIMEOUT))
            a.close()
            b.close()
        seen = refusal_codes(peer.apdus) + refusal_codes(answers_udp)
        peer.stop()
        report("display: bad MACs and replays",
               f"2300 forged writes of Table 28 (300 under another key): {len(seen)} answers, "
               f"{seen.count(refusal)} cleartext SME",
               "a captured read replayed on another TCP connection and on UDP: "
               f"{refusal_codes(replays)}",
               rss.line("display"), *(c.check() for c in clients), system.assert_unhurt(*times))
        assert all(s == refusal for s in seen)
        assert refusal_codes(replays) == [refusal, refusal]
        assert rss.peak - rss.before < RSS_SLACK_KIB
    finally:
        system.stop()
