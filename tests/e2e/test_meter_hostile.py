"""Hostile peers do not hurt `c1222 meter` (transport limits, digest 6.1/6.2, the MAC check).

Each test starts a real meter, takes a snapshot of its static tables, starts a well-behaved
head-end that reads tables 0, 1, 5 and 6 over and over (every call must come back OK, with the
snapshot's bytes, within CALL_TIMEOUT), runs one attack at the same time, and then checks that
the meter is still running, that tables 0, 1, 5 and 6 are byte-identical to the snapshot, that
the history log (74) gained no event, that nothing was logged as a traceback, and that the
attack itself got nothing: no answer, or only a well-formed refusal.

The attacks: a length claiming gigabytes, a byte-a-second drip, garbage on TCP and UDP, a flood
of connections past ``max_connections``, a storm of bad MACs against a Full Write of Table 6
with the operator's password, and replays of captured requests on another association.

Run with ``-s`` to see what each attack met (connections closed, responses, RSS, latencies).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from c1222.codec import acse
from c1222.codec.services import (
    FullReadRequest,
    FullWriteRequest,
    IdentifyRequest,
    PartialReadOffsetRequest,
    SecurityRequest,
    TableData,
)
from c1222.codes import ResponseCode, SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.policy import unprotect
from c1222.crypto.replay import ReplayWindow
from c1222.errors import SecurityError
from c1222.tables.readings import history_entries
from c1222.transport.client import Client, responses
from tests.e2e.hostile import (CLAIMS, FLOOD, HUGE, Address, Collector, GoodPeer, RssSampler,
                               exchange, forge, garbage_datagrams, garbage_streams, is_closed,
                               mutate, open_flood, push, raise_fd_limit, refusal_codes, report,
                               rss_kib, send_each, send_quietly, split_send, spray, stop_framed,
                               tcp, udp_blast, udp_exchange, udp_receive_errors)
from tests.e2e.procs import Running
from tests.e2e.test_meter import KEYS, METER, PASSWORD, client, start_meter

#: Every call of the well-behaved client must come back within this many seconds.
CALL_TIMEOUT = 2.0
#: Tables the good client reads and that must not change at all.
STRICT = (0, 1, 5, 6)
#: Tables read for the event-log check (74 with its context).
SNAPSHOT = (*STRICT, 71, 74)
#: Meter RSS may grow by at most this much during an attack (KiB).
RSS_SLACK_KIB = 50 * 1024
OK = ResponseCode.OK
SME = ResponseCode.SME


# ---------------------------------------------------------------------------- the meter


async def _read_tables(address: Address, mode: int, numbers: Iterable[int]) -> dict[int, bytes]:
    c = client(mode)
    await c.connect(*address)
    try:
        out = {}
        for n in numbers:
            got = responses(await c.call([SecurityRequest(PASSWORD, 2), FullReadRequest(n)],
                                         called=METER, timeout=10))
            assert [r.response_code for r in got] == [OK, OK], (n, got)
            out[n] = got[1].table_data.data
        return out
    finally:
        await c.close()


def snapshot(address: Address, mode: int) -> dict[int, bytes]:
    return asyncio.run(_read_tables(address, mode, SNAPSHOT))


def assert_unhurt(meter: Running, address: Address, mode: int,
                  before: dict[int, bytes]) -> None:
    """The meter runs, its static tables are byte-identical and its log gained no event."""
    assert meter.proc.poll() is None, "the meter died:\n" + "\n".join(meter.lines)
    after = snapshot(address, mode)
    for n in STRICT:
        assert after[n] == before[n], f"table {n} changed"
    old, new = history_entries(before), history_entries(after)
    assert new[:len(old)] == old, "the history log lost or rewrote entries"
    assert new[len(old):] == [], f"events logged during the attack: {new[len(old):]}"
    assert not any("Traceback" in line or "ERROR" in line for line in meter.lines), \
        "\n".join(meter.lines)


# ---------------------------------------------------------------------------- the good client


class GoodClient(GoodPeer):
    """A head-end reading tables 0, 1, 5 and 6 in a loop (see :class:`GoodPeer`): every read
    must be OK, return the expected bytes and take less than CALL_TIMEOUT (UDP: that includes
    the resends of :meth:`Endpoint.exchange`).
    """

    calls = "reads"
    minimum = 20

    def __init__(self, address: Address, mode: int, expected: dict[int, bytes],
                 transport: str = "tcp", pause: float = 0.02,
                 tables: tuple[int, ...] = STRICT) -> None:
        super().__init__(address, lambda: client(mode), transport, pause)
        self.mode = mode
        self.expected = expected
        self.tables = tables

    async def step(self, c: Client) -> bool:
        for n in self.tables:
            got = await self.timed(c, [SecurityRequest(PASSWORD, 2), FullReadRequest(n)],
                                   METER, CALL_TIMEOUT, f"table {n} ")
            if got is None:
                return False
            codes = [r.response_code for r in got]
            if codes != [OK, OK] or got[1].table_data.data != self.expected[n]:
                self.failures.append(f"table {n}: {codes} {got[-1]!r:.200}")
                return False
        return True


# ---------------------------------------------------------------------------- 1. huge length


def test_length_claiming_gigabytes_is_refused_before_buffering(tmp_path: Path) -> None:
    meter = start_meter(tmp_path, "--security-mode", "0")
    try:
        address = meter.address()
        before = snapshot(address, 0)
        rss = RssSampler(meter.proc.pid)
        claims = CLAIMS
        bulk = random.Random(1).randbytes(1 << 20)
        closed, answered, pushed = 0, 0, 0
        with GoodClient(address, 0, before) as good, \
                GoodClient(address, 0, before, "udp") as good_udp:
            for round_ in range(4):
                # 16 connections at once: the claim, then a megabyte each pushed after it.
                peers = []
                for k in range(16):
                    sock = tcp(address)
                    peers.append((sock, Collector(sock)))
                    send_quietly(sock, claims[(round_ * 16 + k) % len(claims)])
                for sock, _ in peers:
                    pushed += push(sock, bulk)
                for _, peer in peers:
                    closed += peer.wait_closed(5)
                    answered += peer.raw
                    peer.stop()
            echoes = udp_blast(address, [HUGE + bulk[:1400]] * 500 + [HUGE] * 500)
        peak = rss.stop()
        lines = [f"TCP connections closed by the meter: {closed} of 64; bytes answered: "
                 f"{answered}; bytes we managed to push after the claim: {pushed:,}",
                 f"UDP datagrams with the claim: 1000, answers: {len(echoes)}",
                 rss.line("meter"),
                 good.check(), good_udp.check()]
        report("huge length", *lines)
        assert closed == 64 and answered == 0 and echoes == []
        assert peak - rss.before < RSS_SLACK_KIB
        assert_unhurt(meter, address, 0, before)
    finally:
        assert meter.stop() == 0


# ---------------------------------------------------------------------------- 2. drip


def _drip(address: Address, data: bytes, *, peers: int, seconds: float,
          until_closed: bool = False) -> list[Collector]:
    """``peers`` connections each sending ``data`` one byte a second for ``seconds`` (or
    until the meter closes every one, with ``until_closed``)."""
    collectors = [Collector(tcp(address)) for _ in range(peers)]
    start = time.monotonic()
    for i, byte in enumerate(data):
        send_each(collectors, bytes([byte]))
        if until_closed and all(c.closed_after is not None for c in collectors):
            break
        next_tick = start + i + 1
        if next_tick - start > seconds:
            break
        time.sleep(max(0.0, next_tick - time.monotonic()))
    return collectors


def _drip_request() -> bytes:
    """A valid cleartext Full Write of Table 6 with the operator's password (~250 bytes)."""
    request = client(0).requester.request(
        [SecurityRequest(PASSWORD, 2), FullWriteRequest(6, TableData(b"DRIPPED".ljust(230)))],
        METER)
    return request.data


def test_drip_gets_no_answer_while_others_are_served(tmp_path: Path) -> None:
    meter = start_meter(tmp_path, "--security-mode", "0")
    try:
        address = meter.address()
        before = snapshot(address, 0)
        with GoodClient(address, 0, before) as good, \
                GoodClient(address, 0, before, "udp") as good_udp:
            drips = _drip(address, _drip_request(), peers=32, seconds=6)
            time.sleep(0.5)
        answered = sum(len(c.apdus) + c.raw for c in drips)
        still_open = sum(c.closed_after is None for c in drips)
        for c in drips:
            c.stop()
        report("drip", f"32 connections dripping a valid write, 1 byte/s for 6 s: "
                       f"{answered} bytes answered, {still_open} still open (message_timeout "
                       "is 30 s)", good.check(), good_udp.check())
        assert answered == 0
        assert_unhurt(meter, address, 0, before)
    finally:
        assert meter.stop() == 0


def test_drip_is_cut_off_after_message_timeout(tmp_path: Path) -> None:
    """A started APDU must complete within message_timeout (3 s here): a 40-byte Identify
    dripped at one byte a second is closed at 3 s, never answered; the idle time-out still
    closes a quiet connection."""
    meter = start_meter(tmp_path, "--security-mode", "0", "--message-timeout", "3",
                        "--idle-timeout", "6")
    try:
        address = meter.address()
        before = snapshot(address, 0)
        request = client(0).requester.request([IdentifyRequest()], METER).data
        with GoodClient(address, 0, before, pause=0.2) as good:
            quiet = Collector(tcp(address))
            drips = _drip(address, request, peers=4, seconds=8, until_closed=True)
            assert quiet.wait_closed(8)
        closed = [c.closed_after for c in drips]
        answered = sum(len(c.apdus) for c in drips)
        for c in [*drips, quiet]:
            c.stop()
        report("drip to the time-out", f"closed after {closed} s; {answered} answers; a quiet "
               f"connection closed after {quiet.closed_after:.1f} s", good.check())
        assert answered == 0
        assert all(t is not None and 2.5 < t < 4.5 for t in closed), closed
        assert 5.5 < quiet.closed_after < 7.5  # type: ignore[operator]
        assert_unhurt(meter, address, 0, before)
    finally:
        assert meter.stop() == 0


# ---------------------------------------------------------------------------- 3. garbage


def _mutants(rng: random.Random, count: int) -> list[bytes]:
    """Valid cleartext requests (no password: nothing they could become may write), mutated."""
    requester = client(0).requester
    templates = [requester.request(services, METER).data for services in (
        [IdentifyRequest()], [FullReadRequest(0)], [PartialReadOffsetRequest(1, 4, 8)],
        [FullReadRequest(6)], [FullWriteRequest(6, TableData(b"MUTANT".ljust(230)))])]
    return mutate(rng, templates, count)


def test_garbage_on_tcp_and_udp_gets_no_answer_or_a_well_formed_one(tmp_path: Path) -> None:
    meter = start_meter(tmp_path, "--security-mode", "0")
    rng = random.Random(0xC1222)
    try:
        address = meter.address()
        before = snapshot(address, 0)
        streams = garbage_streams(rng, _mutants, 4, 400)
        datagrams = garbage_datagrams(rng, _mutants, 2000, 2000, 3000, headed=1000)
        rss = RssSampler(meter.proc.pid)
        with GoodClient(address, 0, before) as good, \
                GoodClient(address, 0, before, "udp") as good_udp:
            peers, answers_udp, dropped = spray(address, streams, datagrams)
        peak = rss.stop()
        tcp_answers = [a for p in peers for a in p.apdus]
        kinds = ("random", "framed noise", "mutated requests")
        per_kind = [(sum(p.closed_after is not None for p in peers[4 * k:4 * k + 4]),
                     sum(len(p.apdus) for p in peers[4 * k:4 * k + 4])) for k in range(3)]
        stop_framed(peers)
        codes_tcp = refusal_codes(tcp_answers)  # every answer decodes as a response
        codes_udp = refusal_codes(answers_udp)
        lines = [f"TCP {kind}: 4 connections, {closed} closed by the meter, {n} answers"
                 for kind, (closed, n) in zip(kinds, per_kind)]
        lines += [f"UDP: {len(datagrams)} datagrams, {len(answers_udp)} answers, {dropped} "
                  "dropped by the kernel (full receive buffer); response codes seen: "
                  f"{sorted({c for _, cs in codes_tcp + codes_udp for c in cs})}",
                  rss.line("meter"),
                  good.check(), good_udp.check()]
        report("garbage", *lines)
        assert per_kind[0] == (4, 0), "random bytes must close the connection unanswered"
        assert per_kind[1][1] == 0, "framed noise must get no answer"
        assert peak - rss.before < RSS_SLACK_KIB
        assert_unhurt(meter, address, 0, before)
    finally:
        assert meter.stop() == 0


# ---------------------------------------------------------------------------- 4. flood


def test_flood_of_connections_is_capped_and_the_good_client_is_served(tmp_path: Path) -> None:
    raise_fd_limit(FLOOD + 256)
    meter = start_meter(tmp_path, "--security-mode", "0")
    try:
        address = meter.address()
        before = snapshot(address, 0)
        rss = RssSampler(meter.proc.pid)
        with GoodClient(address, 0, before) as good, \
                GoodClient(address, 0, before, "udp") as good_udp:
            served_before = len(good.latencies)
            start = time.monotonic()
            flood, failed_connects = open_flood(address)
            opened = time.monotonic() - start
            time.sleep(1.0)
            refused = sum(is_closed(s) for s in flood)
            held = len(flood) - refused
            latecomer = asyncio.run(_late_client(address))  # all slots taken: what happens?
            time.sleep(2.0)  # the good clients go on while the flood is held
            refused_later = sum(is_closed(s) for s in flood)
            served_during = len(good.latencies) - served_before
            held_peak = rss_kib(meter.proc.pid)
            for sock in flood:
                sock.close()
            time.sleep(0.5)
            after_flood = asyncio.run(_late_client(address))
        peak = rss.stop()
        report("flood", f"{FLOOD} connections opened in {opened:.1f} s ({failed_connects} "
                        f"connect failures): {refused} closed at once by the meter, {held} "
                        f"held (cap 64 per address, the good TCP client holds one); after 3 s: "
                        f"{FLOOD - refused_later} still held",
               f"a new TCP client while the flood holds every slot: {latecomer}",
               f"a new TCP client after the flood is gone: {after_flood}",
               f"good TCP client reads while the flood was held: {served_during}",
               f"meter RSS before {rss.before / 1024:.1f} MiB, holding {held_peak / 1024:.1f} "
               f"MiB, peak {peak / 1024:.1f} MiB",
               good.check(), good_udp.check())
        assert failed_connects == 0
        # One address (loopback) may hold 64 (max_per_address); the good client holds one.
        assert held == 63 and refused == FLOOD - 63, (held, refused)
        assert served_during >= 10
        assert after_flood == "served"
        assert peak - rss.before < RSS_SLACK_KIB
        assert_unhurt(meter, address, 0, before)
    finally:
        assert meter.stop() == 0


async def _late_client(address: Address) -> str:
    c = client(0)
    try:
        await c.connect(*address)
        got = responses(await c.call([FullReadRequest(1)], called=METER, timeout=CALL_TIMEOUT))
        return "served" if got[0].response_code == OK else f"answered {got[0].response_code}"
    except Exception as exc:  # noqa: BLE001 - what happened is the observation
        return f"refused ({type(exc).__name__}: {exc})"
    finally:
        await c.close()


# ---------------------------------------------------------------------------- 5. bad MACs


def _forged_writes(count: int, evil: bytes, rng: random.Random) -> list[bytes]:
    """Secured Full Writes of Table 6 with the operator's password, each with a fresh IV and
    invocation id; one bit of the MAC (or, one time in four, of the ciphertext) flipped."""
    requester = client(2).requester
    return forge(lambda: requester.request(
        [SecurityRequest(PASSWORD, 2), FullWriteRequest(6, TableData(evil))], METER).data,
        count, rng, 40)


def test_storm_of_bad_macs_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    meter = start_meter(tmp_path, "--security-mode", "2")
    rng = random.Random(5)
    try:
        address = meter.address()
        before = snapshot(address, 2)
        evil = b"PWNED".ljust(20) + before[6][20:]
        # Sanity: the unflipped message would have been accepted; a flipped one fails the MAC.
        good_write = client(2).requester.request(
            [SecurityRequest(PASSWORD, 2), FullWriteRequest(6, TableData(evil))], METER).data
        unprotect(good_write, KEYS, replay=ReplayWindow(), now=time.time(), minimum_mode=2)
        forged_tcp = _forged_writes(4000, evil, rng)
        forged_udp = _forged_writes(3000, evil, rng)
        for data in forged_tcp[:40]:
            with pytest.raises(SecurityError):
                unprotect(data, KEYS, replay=ReplayWindow(), now=time.time(), minimum_mode=2)
        # Also: the right key id with another key, and a key id the meter does not have.
        other = KeyTable.from_cli(["2:" + "55" * 16, "7:" + "66" * 16])
        for kid in (2, 7):
            requester = client(2).requester
            requester.keys, requester.key_id = other, kid
            forged_udp += [requester.request(
                [SecurityRequest(PASSWORD, 2), FullWriteRequest(6, TableData(evil))],
                METER).data for _ in range(250)]
        rss = RssSampler(meter.proc.pid)
        with GoodClient(address, 2, before) as good, \
                GoodClient(address, 2, before, "udp") as good_udp:
            peers = split_send(address, forged_tcp, 4)
            dropped = udp_receive_errors()
            answers_udp = udp_blast(address, forged_udp, pace=5)  # about 4,000 a second
            dropped = udp_receive_errors() - dropped
            for peer in peers:
                peer.wait_count(len(forged_tcp) // 4, timeout=30, quiet=3)
        peak = rss.stop()
        answers_tcp = [a for p in peers for a in p.apdus]
        closed = sum(p.closed_after is not None for p in peers)
        for p in peers:
            p.stop()
        codes_tcp, codes_udp = refusal_codes(answers_tcp), refusal_codes(answers_udp)
        refusal = (SecurityMode.CLEARTEXT, (SME,))
        report("bad MACs", f"TCP: {len(forged_tcp)} forged writes on 4 connections, "
                           f"{len(answers_tcp)} answers, {codes_tcp.count(refusal)} of them "
                           f"cleartext SME; {closed} connections closed",
               f"UDP: {len(forged_udp)} forged writes (incl. 250 under a wrong key, 250 under "
               f"an unknown key id), {len(answers_udp)} answers, {codes_udp.count(refusal)} "
               f"cleartext SME; {dropped} datagrams dropped by the kernel (full receive "
               "buffer)",
               rss.line("meter"),
               good.check(), good_udp.check())
        # Each one is refused: a cleartext SME, or no answer at all (or the link closed).
        assert all(c == refusal for c in codes_tcp + codes_udp)
        assert peak - rss.before < RSS_SLACK_KIB
        assert_unhurt(meter, address, 2, before)
    finally:
        assert meter.stop() == 0


# ---------------------------------------------------------------------------- 6. replays


def test_replays_on_another_association_are_refused(tmp_path: Path) -> None:
    meter = start_meter(tmp_path, "--security-mode", "2")
    try:
        address = meter.address()
        before = snapshot(address, 2)
        refusal = [(SecurityMode.CLEARTEXT, (SME,))]
        requester = client(2).requester

        def secured(*services: object) -> bytes:
            return requester.request(list(services), METER).data  # type: ignore[arg-type]

        def udp_refused(data: bytes) -> bool:
            return refusal_codes([udp_exchange(address, data, CALL_TIMEOUT)]) == refusal

        # Table 6 is written on purpose here: the good clients read the other strict tables.
        with GoodClient(address, 2, before, tables=(0, 1, 5)) as good, \
                GoodClient(address, 2, before, "udp", tables=(0, 1, 5)) as good_udp:
            a, b = tcp(address), tcp(address)
            # A captured read: answered on its connection (and the identical bytes again
            # there: a resend gets the cached answer, digest 6.2), refused everywhere else.
            read = secured(SecurityRequest(PASSWORD, 2), FullReadRequest(6))
            first = exchange(a, read)
            assert acse.decode(first).epsem.security_mode == SecurityMode.CIPHERTEXT_AUTHENTICATED
            assert exchange(a, read) == first
            assert refusal_codes([exchange(b, read)]) == refusal
            assert udp_refused(read)
            # A captured write, then another write: replaying the first elsewhere must not
            # put its value back; resending it on its own connection returns the cached OK
            # without writing again.
            value_a = b"REPLAY-A".ljust(20) + before[6][20:]
            value_b = b"REPLAY-B".ljust(20) + before[6][20:]
            write_a = secured(SecurityRequest(PASSWORD, 2), FullWriteRequest(6, TableData(value_a)))
            ok_a = exchange(a, write_a)
            assert acse.decode(ok_a).epsem.security_mode == SecurityMode.CIPHERTEXT_AUTHENTICATED
            write_b = secured(SecurityRequest(PASSWORD, 2), FullWriteRequest(6, TableData(value_b)))
            exchange(a, write_b)
            assert snapshot(address, 2)[6] == value_b
            assert refusal_codes([exchange(b, write_a)]) == refusal
            assert udp_refused(write_a)
            c = tcp(address)
            assert refusal_codes([exchange(c, write_a)]) == refusal
            assert exchange(a, write_a) == ok_a  # the resend cache, not a second write
            assert snapshot(address, 2)[6] == value_b
            time.sleep(0.5)  # the good clients go on a little
        for sock in (a, b, c):
            sock.close()
        restore = secured(SecurityRequest(PASSWORD, 2), FullWriteRequest(6, TableData(before[6])))
        with tcp(address) as d:
            exchange(d, restore)
        report("replays", "a replayed read and a replayed write on another TCP connection and "
                          "on UDP: cleartext SME each; the resend on the first connection got "
                          "the cached answer and wrote nothing",
               good.check(minimum=5), good_udp.check(minimum=5))
        assert_unhurt(meter, address, 2, before)
    finally:
        assert meter.stop() == 0
