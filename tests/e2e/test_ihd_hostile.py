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
from tests.e2e.hostile import (FLOOD, Collector, GoodPeer, Target, Watch, claims_and_drips,
                               exchange, first_codes, forge, garbage, held_flood, mutate,
                               raise_fd_limit, refusal_codes, report, send_in_background, tcp,
                               udp_blast, udp_exchange)
from tests.e2e.procs import Running
from tests.e2e.test_meter import KEY_HEX, KEYS, METER

IHD = Uid.parse("2.16.124.113620.1.22.0.123.8437.1")
CALL_TIMEOUT = 10.0
MAX_GAP = 20.0
RSS_SLACK_KIB = 60 * 1024
SME, UAT = ResponseCode.SME, ResponseCode.UAT


def requester(mode: int, title: Uid = METER, keys: KeyTable = KEYS) -> Requester:
    return Requester(title, RandomNonceSource(), keys=keys, security_mode=mode,
                     key_id=2 if mode else None)


class SampleWatch(Watch):
    """Times (monotonic) at which the page showed a new sample (polls /api/live)."""

    join = 15.0

    def __init__(self, web: str) -> None:
        self.web = web
        self.errors: list[str] = []
        super().__init__()

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

    def stalled(self) -> str:
        return "the display shows no new sample"


class System(Target):
    """A display and a meter feeding it every second."""

    who = "display"
    max_gap = MAX_GAP
    gap_message = "the display showed no new sample for {gap:.1f} s"
    rss_slack_kib = RSS_SLACK_KIB

    def __init__(self, tmp: Path, mode: int = 0) -> None:
        self.mode = mode
        self.ihd = self.server = Running(
            ["ihd", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--state-dir",
             str(tmp / "ihd"), "--security-mode", str(mode), "--key", f"2:{KEY_HEX}"])
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

    def good_peer(self, transport: str) -> GoodReader:
        return GoodReader(self, transport)

    def assert_unhurt(self, start: float, end: float) -> str:
        samples, gap = self.working(start, end)
        self.assert_clean_log()
        return f"display: {samples} new samples shown during the attack, longest gap {gap:.1f} s"


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


# ---------------------------------------------------------------------------- 1. length, drip


def test_length_claims_and_drips_get_nothing(tmp_path: Path) -> None:
    system = System(tmp_path)
    try:
        drip_data = requester(0).request([FullWriteRequest(28, TableData(b"\x00" * 40))],
                                         IHD).data
        claims_and_drips(system, drip_data, "a write")
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
    try:
        garbage(system, _mutants)
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 3. flood


def test_flood_of_connections_and_the_meter_still_feeds_the_display(tmp_path: Path) -> None:
    raise_fd_limit(FLOOD + 256)
    system = System(tmp_path)
    try:
        held_flood(system, lambda: asyncio.run(_read_table0(system)) == system.table0, True)
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 4. storm, meters


def test_udp_storm_and_writes_from_many_made_up_meters(tmp_path: Path) -> None:
    system = System(tmp_path)
    try:
        r = requester(0)
        storm = [r.request([IdentifyRequest()], IHD).data for _ in range(3000)]
        # Table 0 as written by 200 meters that do not exist: the display takes writes from its
        # own meter only (--meter-ap-title), so every one is refused UAT and none is kept.
        fakes = [requester(0, Uid((2, 16, 124, 113620, 1, 22, 0, 666, n))).request(
            [FullWriteRequest(0, TableData(system.table0))], IHD).data for n in range(200)]
        with system.attack() as (clients, rss, times):
            answers = udp_blast(system.address, storm, pace=20)
            fake_codes = first_codes(udp_blast(system.address, fakes, pace=1))
        report("display: UDP storm and made-up meters",
               f"3000 Identify requests: {len(answers)} answers",
               f"Table 0 from 200 made-up meters: {fake_codes.count(UAT)} UAT, "
               f"{len(fake_codes) - fake_codes.count(UAT)} other",
               rss.line(system.who), *(c.check() for c in clients), system.assert_unhurt(*times))
        assert len(answers) > 1000
        assert fake_codes and set(fake_codes) == {UAT}
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
        with system.attack() as (clients, rss, times):
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
               rss.line(system.who), *(c.check() for c in clients), system.assert_unhurt(*times))
        assert all(s == refusal for s in seen)
        assert refusal_codes(replays) == [refusal, refusal]
        assert rss.peak - rss.before < RSS_SLACK_KIB
    finally:
        system.stop()
