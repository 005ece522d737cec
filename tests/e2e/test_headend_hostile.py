"""Hostile peers do not hurt `c1222 headend` (transport limits, registration caps, retention).

Each test starts a real head-end and a real, well-behaved `c1222 meter` that registers with it
and is read by its collector every 0.5 s; a good client resolves the meter's AP title over TCP
and UDP in a loop (every answer must be the meter's address, within CALL_TIMEOUT). Then one
attack runs, and afterwards the head-end must still be running with no traceback logged, the
meter must still be registered and read (no gap of more than MAX_GAP seconds between two stored
readings during the attack: a hang bound, not a speed test), and what the attack could make the
head-end keep (registry, node rows, message rows, RSS) must stay under its bound.

The attacks: lengths claiming gigabytes and byte-a-second drips, garbage on TCP and UDP, a flood
of connections, Register floods with random titles and Register/Deregister cycles, a UDP storm
of valid requests against the message log, bad MACs, and replays with an attempt to take over
the meter's title from another address.

Run with ``-s`` to see what each attack met.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import threading
import time
from pathlib import Path

import httpx

from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.native import native_address_from_text
from c1222.codec.services import (
    DeregisterRequest,
    IdentifyRequest,
    RegisterRequest,
    ResolveRequest,
    ResolveResponse,
)
from c1222.codes import ResponseCode, SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import RandomNonceSource
from c1222.headend.storage import open_storage
from c1222.session.requester import Requester
from c1222.transport.client import Client, responses
from tests.e2e.hostile import (FLOOD, Address, Collector, GoodPeer, Target, Watch, claims_and_drips,
                               exchange, first_codes, forge, garbage, held_flood, mutate,
                               raise_fd_limit, refusal_codes, report, send_quietly, split_send, tcp,
                               udp_blast, udp_exchange)
from tests.e2e.procs import Running
from tests.e2e.test_meter import HEADEND, KEY_HEX, KEYS, METER

#: Every call of the good client must come back within this many seconds.
CALL_TIMEOUT = 10.0
#: The collector must store a reading of the good meter at least this often during an attack.
MAX_GAP = 20.0
#: Head-end RSS may grow by at most this much during an attack (KiB).
RSS_SLACK_KIB = 60 * 1024
#: The calling title of the attacker's and the good client's requests.
CLIENT = Uid.parse("2.16.124.113620.1.22.0.123.77")
PER_ADDRESS = 64
OK, ONP, ISC, SME = ResponseCode.OK, ResponseCode.ONP, ResponseCode.ISC, ResponseCode.SME
STORED = re.compile(rf"stored \d+ readings for {re.escape(str(METER))} ")


def requester(mode: int, keys: KeyTable = KEYS) -> Requester:
    return Requester(CLIENT, RandomNonceSource(), keys=keys, security_mode=mode,
                     key_id=2 if mode else None)


def register(title: Uid, native: bytes = b"127.0.0.1:9", period: int = 60) -> RegisterRequest:
    return RegisterRequest(node_type=0x20, connection_type=0x40, device_class=b"EVIL",
                           ap_title=title, serial_number=Uid.parse(".1"),
                           native_address=native, registration_period=period)


def random_title(rng: random.Random) -> Uid:
    return Uid((2, 16, 124, 113620, 1, 22, 0, 666, rng.randrange(1 << 30)))


class ReadWatch(Watch):
    """Times (monotonic) at which the head-end logged a stored reading of the good meter."""

    def __init__(self, headend: Running) -> None:
        self.headend = headend
        super().__init__()

    def _run(self) -> None:
        seen = 0
        while not self._stop.wait(0.05):
            lines = self.headend.lines[seen:]
            seen += len(lines)
            now = time.monotonic()
            self.times += [now for line in lines if STORED.search(line)]

    def stalled(self) -> str:
        return "the good meter is not being read:\n" + "\n".join(self.headend.lines[-30:])


class System(Target):
    """A head-end on a fresh SQLite file and a meter registered with it, being read."""

    who = "head-end"
    max_gap = MAX_GAP
    gap_message = "the good meter went {gap:.1f} s without being read"
    rss_slack_kib = RSS_SLACK_KIB

    def __init__(self, tmp: Path, mode: int = 0, *extra: str) -> None:
        self.mode = mode
        self.db = f"sqlite:///{tmp / 'headend.db'}"
        self.headend = self.server = Running(
            ["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", self.db,
             "--collect-interval", "0.5", "--log-interval", "0", "--reg-period", "30",
             "--security-mode", str(mode), "--key", f"2:{KEY_HEX}", "-v", *extra])
        try:
            self.address = self.headend.address()
            web = self.headend.wait_for(r"console at http (\S+):(\d+)")
            self.web = f"http://{web.group(1)}:{web.group(2)}"
            self.watch = ReadWatch(self.headend)
            self.meter = Running(
                ["meter", "--listen", "127.0.0.1:0", "--headend",
                 f"{self.address[0]}:{self.address[1]}", "--state-dir", str(tmp / "meter"),
                 "--speed", "10", "--security-mode", str(mode), "--key", f"2:{KEY_HEX}"])
            self.meter.address()
            self.watch.wait(2, 60)
            with open_storage(self.db) as storage:
                node = storage.get_node(str(METER))
            assert node is not None and node.state == "registered"
            # stored as text; Resolve answers the binary form (codec.native)
            self.native = native_address_from_text(node.native_address)
        except BaseException:
            self.stop()
            raise

    def good_peer(self, transport: str) -> GoodResolver:
        return GoodResolver(self, transport)

    def storage_counts(self) -> dict[str, int]:
        with open_storage(self.db) as storage:
            return {"registered": storage.count_nodes("registered"),
                    "deregistered": storage.count_nodes("deregistered"),
                    "messages": storage.count_messages()}

    def registry_size(self) -> int:
        """Registered nodes the head-end shows (its registry in memory and its node rows)."""
        got = httpx.get(f"{self.web}/api/nodes", params={"latest": "false",
                                                         "state": "registered"}, timeout=30)
        got.raise_for_status()
        return len(got.json())

    def assert_unhurt(self, start: float, end: float) -> str:
        reads, gap = self.working(start, end)
        with open_storage(self.db) as storage:
            node = storage.get_node(str(METER))
        assert node is not None and node.state == "registered"
        assert native_address_from_text(node.native_address) == self.native, \
            "the meter's address changed"
        self.assert_clean_log()
        return f"collector: {reads} reads of the good meter during the attack, longest gap " \
               f"{gap:.1f} s"


class GoodResolver(GoodPeer):
    """A client resolving the meter's title in a loop (see :class:`GoodPeer`); every answer
    must be OK with the meter's native address, within CALL_TIMEOUT."""

    calls = "resolves"

    def __init__(self, system: System, transport: str = "tcp") -> None:
        super().__init__(system.address, lambda: Client(requester(system.mode)), transport,
                         0.05)
        self.system = system

    async def step(self, c: Client) -> bool:
        got = await self.timed(c, [ResolveRequest(METER)], HEADEND, CALL_TIMEOUT)
        if got is None:
            return False
        if not (isinstance(got[0], ResolveResponse)
                and got[0].native_address == self.system.native):
            self.failures.append(f"resolve answered {got!r:.200}")
            return False
        return True


def codes_of(apdus: list[bytes]) -> list[int]:
    """The first response code of each (cleartext) answer, -1 for an answer without services
    (to a request that had none). Requests are left out: a title the attacker registered is
    read by the collector over the association it registered on."""
    return first_codes(a for a in apdus if acse.decode(a).is_response)


# ---------------------------------------------------------------------------- 1. length, drip


def test_length_claims_and_drips_get_nothing_while_the_meter_is_served(tmp_path: Path) -> None:
    system = System(tmp_path)
    try:
        drip_data = requester(0).request([register(random_title(random.Random(3)))],
                                         HEADEND).data
        claims_and_drips(system, drip_data, "a Register")
        assert system.storage_counts()["registered"] == 1
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 2. garbage


def _mutants(rng: random.Random, count: int) -> list[bytes]:
    """Valid requests to the head-end, mutated."""
    r = requester(0)
    templates = [r.request(services, HEADEND).data for services in (
        [IdentifyRequest()], [ResolveRequest(METER)], [register(random_title(rng))],
        [DeregisterRequest(random_title(rng))])]
    return mutate(rng, templates, count)


def test_garbage_on_tcp_and_udp_gets_no_answer_or_a_well_formed_one(tmp_path: Path) -> None:
    system = System(tmp_path)
    try:
        counts = garbage(system, _mutants, codes_of, system.storage_counts)
        # Mutated Registers may register titles, but never more than one address may hold.
        assert counts is not None and counts["registered"] <= PER_ADDRESS
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 3. flood


def test_flood_of_connections_and_the_meter_is_still_served(tmp_path: Path) -> None:
    raise_fd_limit(FLOOD + 256)
    system = System(tmp_path)
    try:
        held_flood(system, lambda: asyncio.run(_late_resolve(system)), "served")
    finally:
        system.stop()


async def _late_resolve(system: System) -> str:
    c = Client(requester(system.mode))
    try:
        await c.connect(*system.address)
        got = responses(await c.call([ResolveRequest(METER)], called=HEADEND,
                                     timeout=CALL_TIMEOUT))
        return "served" if isinstance(got[0], ResolveResponse) else f"answered {got[0]!r}"
    except Exception as exc:  # noqa: BLE001 - what happened is the observation
        return f"refused ({type(exc).__name__}: {exc})"
    finally:
        await c.close()


# ---------------------------------------------------------------------------- 4. Register floods


def test_register_floods_with_random_titles_stay_bounded_and_age_out(tmp_path: Path) -> None:
    # Registrations granted 5 s; nodes gone 1 s after they lapse or deregister.
    system = System(tmp_path, 0, "--reg-period", "5", "--node-retention", "1",
                    "--prune-interval", "0.5")
    rng = random.Random(15)
    try:
        r = requester(0)
        floods = [r.request([register(random_title(rng))], HEADEND).data for _ in range(2000)]
        cycles = b"".join(r.request([request], HEADEND).data
                          for title in (random_title(rng) for _ in range(800))
                          for request in (register(title), DeregisterRequest(title)))
        with system.attack() as (clients, rss, times):
            peer = Collector(tcp(system.address))
            send_quietly(peer.sock, cycles)
            peer.wait_count(1600, timeout=60, quiet=5)
            cycle_codes = codes_of(peer.apdus)
            peer.stop()
            after_cycles = system.storage_counts()
            sizes: list[int] = []
            done = threading.Event()

            def sample() -> None:  # the registry's size while the flood runs
                while not done.wait(0.5):
                    with contextlib.suppress(httpx.HTTPError):
                        sizes.append(system.registry_size())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            flood_start = time.monotonic()
            answers = udp_blast(system.address, floods, pace=10)
            flood_seconds = time.monotonic() - flood_start
            done.set()
            sampler.join(30)
            sizes.append(system.registry_size())
            peak_registry = max(sizes)
        flood_codes = codes_of(answers)
        # Every flooded title lapses 5 s after it registered: the registry shrinks back.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts = system.storage_counts()
            if counts["registered"] + counts["deregistered"] == 1 and system.registry_size() == 1:
                break
            time.sleep(0.5)
        report("head-end: Register floods",
               f"2000 Registers with random titles from one address: {flood_codes.count(OK)} "
               f"OK, {flood_codes.count(ONP)} ONP, {2000 - len(flood_codes)} unanswered in "
               f"{flood_seconds:.1f} s; registry at most {peak_registry} nodes ({len(sizes)} "
               "samples)",
               f"800 Register+Deregister cycles: {len(cycle_codes)} answers "
               f"{sorted(set(cycle_codes))}; rows right after: {after_cycles}",
               f"rows after the registrations lapsed: {counts}",
               rss.line(system.who), *(c.check() for c in clients), system.assert_unhurt(*times))
        # The cap: the meter's title and 63 of the flood's from 127.0.0.1 at a time, the rest
        # refused (a title lapsed and aged out 6 s after it registered frees its place, so a
        # slow flood gets 63 more per 6 s).
        assert set(flood_codes) <= {OK, ONP}
        assert flood_codes.count(OK) <= (PER_ADDRESS - 1) * (1 + int(flood_seconds / 6))
        assert peak_registry <= PER_ADDRESS
        assert cycle_codes == [OK] * 1600
        # Deregistered rows are aged out (1 s), so 800 cycles do not leave 800 rows behind.
        assert counts == {"registered": 1, "deregistered": 0, "messages": counts["messages"]}
        assert system.registry_size() == 1
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 5. UDP storm


def test_udp_storm_leaves_the_message_log_bounded_by_retention(tmp_path: Path) -> None:
    system = System(tmp_path, 0, "--max-messages", "500", "--message-retention", "5",
                    "--prune-interval", "0.5")
    try:
        r = requester(0)
        storm = [r.request([IdentifyRequest()], HEADEND).data for _ in range(4000)]
        with system.attack() as (clients, rss, times):
            answers = udp_blast(system.address, storm, pace=20)
            # Within a few passes the log is back under its cap (plus the traffic of a pass).
            deadline = time.monotonic() + 20
            while (count := system.storage_counts()["messages"]) > 600:
                assert time.monotonic() < deadline, f"{count} messages still logged"
                time.sleep(0.5)
        ended = time.time()
        time.sleep(7)  # past the 5 s age: every message of the storm is gone
        with open_storage(system.db) as storage:
            oldest = storage.messages(limit=600)[-1].time.timestamp()
            count_after = storage.count_messages()
        report("head-end: UDP storm",
               f"4000 Identify requests: {len(answers)} answers; message rows back to {count} "
               f"(cap 500) after the storm, {count_after} 7 s later, the oldest "
               f"{ended + 7 - oldest:.1f} s old (age 5 s)",
               rss.line(system.who), *(c.check() for c in clients), system.assert_unhurt(*times))
        assert len(answers) > 1000  # the storm got through to the log
        assert count <= 600 and count_after <= 600
        assert oldest > ended - 1  # nothing of the storm is left
        assert rss.peak - rss.before < RSS_SLACK_KIB
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 6. bad MACs


def _forged_registers(count: int, rng: random.Random) -> list[bytes]:
    """Secured Registers of random titles with one bit of the MAC or ciphertext flipped."""
    r = requester(2)
    return forge(lambda: r.request([register(random_title(rng))], HEADEND).data, count, rng,
                 30)


def test_storm_of_bad_macs_registers_nothing(tmp_path: Path) -> None:
    system = System(tmp_path, 2)
    rng = random.Random(5)
    try:
        forged_tcp = _forged_registers(1500, rng)
        forged_udp = _forged_registers(1500, rng)
        other = KeyTable.from_cli(["2:" + "55" * 16])  # the right key id, another key
        forged_udp += [requester(2, other).request([register(random_title(rng))], HEADEND).data
                       for _ in range(300)]
        with system.attack() as (clients, rss, times):
            peers = split_send(system.address, forged_tcp, 3)
            answers_udp = udp_blast(system.address, forged_udp, pace=5)
            for peer in peers:
                peer.wait_count(len(forged_tcp) // 3, timeout=30, quiet=3)
        answers_tcp = [a for p in peers for a in p.apdus]
        for p in peers:
            p.stop()
        seen = refusal_codes(answers_tcp) + refusal_codes(answers_udp)
        refusal = (SecurityMode.CLEARTEXT, (SME,))
        counts = system.storage_counts()
        report("head-end: bad MACs",
               f"{len(forged_tcp)} forged Registers on 3 TCP connections, {len(answers_tcp)} "
               f"answers; {len(forged_udp)} on UDP, {len(answers_udp)} answers; "
               f"{seen.count(refusal)} of the answers cleartext SME",
               f"rows after: {counts}", rss.line(system.who), *(c.check() for c in clients),
               system.assert_unhurt(*times))
        assert all(s == refusal for s in seen)
        assert counts["registered"] == 1 and counts["deregistered"] == 0
        assert rss.peak - rss.before < RSS_SLACK_KIB
    finally:
        system.stop()


# ---------------------------------------------------------------------------- 7. replays, hijack


def _from(host: str, address: Address, data: bytes) -> bytes:
    """One TCP exchange from a socket bound to ``host`` (another source address)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        sock.settimeout(CALL_TIMEOUT)
        sock.connect(address)
        return exchange(sock, data)


def test_replays_are_refused_and_the_meter_s_title_cannot_be_taken(tmp_path: Path) -> None:
    system = System(tmp_path, 2)
    try:
        refusal = [(SecurityMode.CLEARTEXT, (SME,))]
        r = requester(2)
        title = random_title(random.Random(7))
        with system.attack() as (clients, rss, times):
            a, b = tcp(system.address), tcp(system.address)
            captured = r.request([register(title)], HEADEND)
            first = exchange(a, captured.data)
            assert [s.response_code for s in responses(r.accept(first, captured, time.time()))
                    ] == [OK]
            assert exchange(a, captured.data) == first  # a resend: the cached answer
            assert refusal_codes([exchange(b, captured.data)]) == refusal
            assert refusal_codes([udp_exchange(system.address, captured.data, CALL_TIMEOUT)]
                                 ) == refusal
            # A captured Deregister replayed after the node registered again: refused.
            dereg = r.request([DeregisterRequest(title)], HEADEND)
            assert [s.response_code for s in responses(
                r.accept(exchange(a, dereg.data), dereg, time.time()))] == [OK]
            again = r.request([register(title)], HEADEND)
            assert [s.response_code for s in responses(
                r.accept(exchange(a, again.data), again, time.time()))] == [OK]
            assert refusal_codes([exchange(b, dereg.data)]) == refusal
            # Someone holding the key, at another address, claims the meter's title: ISC,
            # and cannot deregister it either.
            hijack = r.request([register(METER, b"127.0.0.2:1153")], HEADEND)
            got = r.accept(_from("127.0.0.2", system.address, hijack.data), hijack, time.time())
            assert [s.response_code for s in responses(got)] == [ISC]
            evict = r.request([DeregisterRequest(METER)], HEADEND)
            got = r.accept(_from("127.0.0.2", system.address, evict.data), evict, time.time())
            assert [s.response_code for s in responses(got)] == [ISC]
            time.sleep(1.0)  # the good clients go on resolving the meter's own address
            for sock in (a, b):
                sock.close()
        with open_storage(system.db) as storage:
            held = storage.get_node(str(title))
        report("head-end: replays and hijack",
               "a captured Register and Deregister replayed on another TCP connection and on "
               "UDP: cleartext SME; a secured Register and Deregister of the meter's title from "
               "127.0.0.2: ISC", rss.line(system.who), *(c.check(minimum=5) for c in clients),
               system.assert_unhurt(*times))
        assert held is not None and held.state == "registered"
    finally:
        system.stop()
