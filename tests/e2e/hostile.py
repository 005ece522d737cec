"""The hostile-peer toolkit of the e2e attack tests (meter, head-end, in-home display).

Raw peers (:class:`Collector`, :func:`tcp`, :func:`udp_blast`, floods, drips, forged and
mutated messages), the measures taken around an attack (:class:`RssSampler`, kernel UDP
drops), :class:`GoodPeer`, the well-behaved client that must be served throughout (each test
module subclasses it with the calls it makes), and for a server fed by a real meter (head-end,
display) :class:`Target` with :class:`Watch` and the attacks both run the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import select
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import Running

from c1222.codec import acse
from c1222.codec.framing import StreamFramer
from c1222.errors import DecodeError
from c1222.transport.client import Client, responses

Address = tuple[str, int]

HUGE = bytes.fromhex("60847FFFFFFF")  # an APDU claiming 2 GiB
#: Length claims no peer may buffer for.
CLAIMS = (HUGE, bytes.fromhex("6085FFFFFFFFFF"),   # 2 GiB; a 5-octet length
          bytes.fromhex("6083010001"),               # 65,542 bytes: just over max_frame
          bytes.fromhex("608400010000"))             # non-minimal length
#: Connections a flood opens.
FLOOD = 300
#: Default time-out of :func:`exchange` (s).
EXCHANGE_TIMEOUT = 2.0


def report(title: str, *lines: str) -> None:
    print(f"\n[{title}]", *lines, sep="\n  ")


def raise_fd_limit(needed: int, what: str = "the flood") -> None:
    """Raise the soft file-descriptor limit to ``needed``; skip when the hard one is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"{what} needs {needed} file descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# ---------------------------------------------------------------------------- measures


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssSampler:
    """The largest RSS of a process, sampled every 20 ms while running."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = rss_kib(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError, AssertionError):
                self.peak = max(self.peak, rss_kib(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak

    def line(self, who: str) -> str:
        """A line for the report."""
        return f"{who} RSS before {self.before / 1024:.1f} MiB, peak {self.peak / 1024:.1f} MiB"


def udp_receive_errors() -> int:
    """The kernel's count of UDP datagrams dropped on a full receive buffer (all sockets)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
             if line.startswith("Udp:")]
    return int(dict(zip(lines[0][1:], lines[1][1:])).get("RcvbufErrors", 0))


def refusal_codes(apdus: Iterable[bytes]) -> list[tuple[int, tuple[int, ...]]]:
    """(security mode, response codes) of each APDU; every one must decode as a response."""
    out = []
    for data in apdus:
        apdu = acse.decode(data)  # no key needed: refusals are cleartext
        assert apdu.is_response, data.hex()
        out.append((apdu.epsem.security_mode,
                    tuple(s.response_code for s in apdu.epsem.services)))
    return out


def first_codes(apdus: Iterable[bytes]) -> list[int]:
    """The first response code of each (cleartext) answer, -1 for one without services."""
    return [codes[0] if codes else -1 for _, codes in refusal_codes(apdus)]


# ---------------------------------------------------------------------------- the good peer


class GoodPeer:
    """A well-behaved client calling in a loop, in its own thread and event loop.

    It connects when started (TCP: before any flood, so it holds its slot), then runs
    :meth:`step` until stopped, ``pause`` s apart. The first failure ends the loop: it is the
    finding, and :meth:`check` reports it. Subclasses supply :meth:`step`.
    """

    #: What one timed call is called in the report.
    calls = "calls"
    #: Calls :meth:`check` wants at least.
    minimum = 10

    def __init__(self, address: Address, make_client: Callable[[], Client], transport: str,
                 pause: float) -> None:
        self.address = address
        self.make_client = make_client
        self.transport = transport
        self.pause = pause
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> GoodPeer:
        self._thread.start()
        assert self._ready.wait(15), "the good client did not connect"
        assert not self.failures, self.failures
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    async def _main(self) -> None:
        c = self.make_client()
        try:
            await c.connect(*self.address, self.transport)
        except Exception as exc:  # noqa: BLE001 - reported by __enter__
            self.failures.append(f"connect: {exc!r}")
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not await self.step(c):
                    return
                await asyncio.sleep(self.pause)
        finally:
            await c.close()

    async def step(self, c: Client) -> bool:
        """One round of calls; False, with a failure recorded, to stop."""
        raise NotImplementedError

    async def timed(self, c: Client, services: list, called: object, timeout: float,
                    what: str = "") -> list | None:
        """The responses of one call, its latency recorded; None, with the failure, when it
        raised (``what`` heads the failure)."""
        start = time.perf_counter()
        try:
            got = responses(await c.call(services, called=called, timeout=timeout))
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            self.failures.append(f"{what}after {len(self.latencies)} {self.calls}: {exc!r}")
            return None
        self.latencies.append(time.perf_counter() - start)
        return got

    def check(self, minimum: int | None = None) -> str:
        """Assert it was served throughout; a line for the report."""
        minimum = self.minimum if minimum is None else minimum
        assert not self.failures, f"good {self.transport} client: {self.failures}"
        assert len(self.latencies) >= minimum, \
            f"good {self.transport} client made only {len(self.latencies)} {self.calls}"
        lat = sorted(self.latencies)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (f"good {self.transport} client: {len(lat)} {self.calls}, p50 {p50 * 1e3:.1f} "
                f"ms, p99 {p99 * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms")


@contextlib.contextmanager
def attack(pid: int, good_peer: Callable[[str], GoodPeer],
           transports: tuple[str, ...] = ("tcp", "udp"),
           ) -> Iterator[tuple[list[GoodPeer], RssSampler, list[float]]]:
    """Good peers running (one a transport), the RSS of ``pid`` sampled; yields (peers,
    sampler, times): [start, end] of the attack, end set when the block ends."""
    rss = RssSampler(pid)
    times = [time.monotonic(), 0.0]
    with contextlib.ExitStack() as stack:
        peers = [stack.enter_context(good_peer(t)) for t in transports]
        yield peers, rss, times
    times[1] = time.monotonic()
    rss.stop()


# ---------------------------------------------------------------------------- raw peers


class Collector:
    """Reads a TCP socket in a thread until it closes; keeps the whole APDUs received.

    ``closed_after`` is seconds from ``start`` until the peer closed (EOF or reset).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.apdus: list[bytes] = []
        self.raw = 0
        self.start = time.monotonic()
        self.closed_after: float | None = None
        self.framing_error: DecodeError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        framer = StreamFramer()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = self.sock.recv(65536)
            except OSError:  # reset by the peer, or closed by us
                chunk = b""
            if not chunk:
                self.closed_after = time.monotonic() - self.start
                return
            self.raw += len(chunk)
            try:
                self.apdus += framer.feed(chunk)
            except DecodeError as exc:
                self.framing_error = exc
                return

    def wait_closed(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return self.closed_after is not None

    def wait_count(self, count: int, timeout: float, quiet: float = 1.0) -> None:
        """Until ``count`` APDUs came, or none came for ``quiet`` s, or ``timeout``."""
        deadline = time.monotonic() + timeout
        seen, last = -1, time.monotonic()
        while time.monotonic() < deadline and len(self.apdus) < count \
                and self.closed_after is None:
            if len(self.apdus) != seen:
                seen, last = len(self.apdus), time.monotonic()
            elif time.monotonic() - last > quiet:
                break
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self.sock.close()


def stop_framed(collectors: Iterable[Collector]) -> None:
    """Stop each, asserting that what it received always framed."""
    for c in collectors:
        assert c.framing_error is None, c.framing_error
        c.stop()


def tcp(address: Address, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def is_closed(sock: socket.socket) -> bool:
    """True when the peer closed it (EOF or reset); nothing is read."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """Send; False when the peer has closed the connection (reset or broken pipe)."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def send_in_background(sock: socket.socket, data: bytes) -> None:
    """:func:`send_quietly` from a thread, so that the caller can read meanwhile."""
    threading.Thread(target=send_quietly, args=(sock, data), daemon=True).start()


def send_each(collectors: Iterable[Collector], data: bytes) -> None:
    """``data`` on each connection the peer has not closed yet."""
    for c in collectors:
        if c.closed_after is None:
            send_quietly(c.sock, data)


def push(sock: socket.socket, bulk: bytes) -> int:
    """``bulk`` in 64 KiB chunks (2 s each at most) until the peer stops it; bytes pushed."""
    sock.settimeout(2)
    pushed = 0
    for offset in range(0, len(bulk), 1 << 16):
        if not send_quietly(sock, bulk[offset:offset + (1 << 16)]):
            break
        pushed += 1 << 16
    return pushed


def claim_and_push(address: Address, claims: tuple[bytes, ...], bulk: bytes,
                   count: int) -> list[Collector]:
    """``count`` connections one after the other, each a length claim (in turn) and then
    ``bulk`` pushed after it."""
    peers = []
    for k in range(count):
        sock = tcp(address)
        peers.append(Collector(sock))
        send_quietly(sock, claims[k % len(claims)])
        push(sock, bulk)
    return peers


def drip_slowly(collectors: list[Collector], data: bytes) -> None:
    """One byte of ``data`` a second on every connection still open."""
    for byte in data:
        send_each(collectors, bytes([byte]))
        time.sleep(1)


def open_flood(address: Address, count: int = FLOOD) -> tuple[list[socket.socket], int]:
    """``count`` connections, each holding a nearly full frame (60 KiB of a 64 KiB APDU);
    the sockets and how many failed to connect."""
    partial = bytes.fromhex("6082FFF0") + random.Random(2).randbytes(60_000)
    flood: list[socket.socket] = []
    failed = 0
    for _ in range(count):
        try:
            sock = tcp(address, timeout=5)
        except OSError:
            failed += 1
            continue
        sock.settimeout(1)
        send_quietly(sock, partial)
        flood.append(sock)
    return flood, failed


def split_send(address: Address, messages: list[bytes], parts: int) -> list[Collector]:
    """``messages`` dealt round-robin over ``parts`` connections, each sent from a thread."""
    peers = []
    for part in range(parts):
        peer = Collector(tcp(address))
        peers.append(peer)
        send_in_background(peer.sock, b"".join(messages[part::parts]))
    return peers


def udp_blast(address: Address, datagrams: list[bytes], *, wait: float = 1.5,
              pace: int = 0) -> list[bytes]:
    """Send every datagram from one socket; every datagram received back until ``wait`` s
    of quiet after the last one sent. ``pace``: sleep 1 ms after every ``pace`` datagrams."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    got: list[bytes] = []
    done = threading.Event()

    def receive() -> None:
        last = None
        while True:
            ready, _, _ = select.select([sock], [], [], 0.05)
            if ready:
                with contextlib.suppress(OSError):
                    got.append(sock.recv(65536))
                last = time.monotonic()
            elif done.is_set():
                last = last or time.monotonic()
                if time.monotonic() - max(last, done_at[0]) > wait:
                    return

    done_at = [0.0]
    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    for i, data in enumerate(datagrams):
        with contextlib.suppress(OSError):  # ENOBUFS/ECONNREFUSED on a loaded loopback
            sock.sendto(data, address)
        if pace and i % pace == pace - 1:
            time.sleep(0.001)
    done_at[0] = time.monotonic()
    done.set()
    reader.join(60)
    sock.close()
    return got


def spray(address: Address, streams: list[bytes],
          datagrams: list[bytes]) -> tuple[list[Collector], list[bytes], int]:
    """Each stream on a connection of its own (from a thread), the datagrams over UDP; the
    collectors once each went quiet, the UDP answers and the datagrams the kernel dropped."""
    peers = []
    for stream in streams:
        sock = tcp(address)
        sock.settimeout(5)
        peers.append(Collector(sock))
        send_in_background(sock, stream)
    dropped = udp_receive_errors()
    answers_udp = udp_blast(address, datagrams, pace=10)
    dropped = udp_receive_errors() - dropped
    for peer in peers:
        peer.wait_count(10**9, timeout=10)
    return peers, answers_udp, dropped


def exchange(sock: socket.socket, data: bytes, timeout: float = EXCHANGE_TIMEOUT) -> bytes:
    """Send one APDU and read one back (plain blocking socket)."""
    sock.sendall(data)
    framer = StreamFramer()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        assert chunk, "the peer closed the connection"
        got = framer.feed(chunk)
        if got:
            return got[0]
    raise AssertionError("no answer")


def udp_exchange(address: Address, data: bytes, timeout: float) -> bytes:
    """Send one datagram from a fresh socket and read one back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, address)
        try:
            return sock.recv(65536)
        except TimeoutError:
            raise AssertionError("no answer on UDP") from None


# ---------------------------------------------------------------------------- made-up messages


def mutate(rng: random.Random, templates: list[bytes], count: int) -> list[bytes]:
    """Templates with 1-4 random bytes changed after the outer length, so each still frames
    as one APDU."""
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(templates))
        start = 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(start, len(data))] = rng.randrange(256)
        out.append(bytes(data))
    return out


def framed_noise(rng: random.Random, count: int) -> list[bytes]:
    """``60 L`` followed by L random bytes: frames, decodes to nothing."""
    out = []
    for _ in range(count):
        n = rng.randrange(0, 128)
        out.append(bytes([0x60, n]) + rng.randbytes(n))
    return out


Mutants = Callable[[random.Random, int], list[bytes]]


def garbage_streams(rng: random.Random, mutants: Mutants, each: int,
                    apdus: int) -> list[bytes]:
    """``each`` TCP streams of random bytes (64 KiB), then ``each`` of ``apdus`` framed noise
    APDUs, then ``each`` of ``apdus`` mutants."""
    return ([rng.randbytes(64 * 1024) for _ in range(each)]
            + [b"".join(framed_noise(rng, apdus)) for _ in range(each)]
            + [b"".join(mutants(rng, apdus)) for _ in range(each)])


def garbage_datagrams(rng: random.Random, mutants: Mutants, random_count: int,
                      noise_count: int, mutant_count: int, headed: int = 0) -> list[bytes]:
    """Random datagrams, ``headed`` random tails after a 0x60, framed noise and mutants,
    shuffled."""
    datagrams = [rng.randbytes(rng.randrange(1, 1500)) for _ in range(random_count)]
    datagrams += [bytes([0x60]) + rng.randbytes(rng.randrange(0, 200)) for _ in range(headed)]
    datagrams += framed_noise(rng, noise_count)
    datagrams += mutants(rng, mutant_count)
    rng.shuffle(datagrams)
    return datagrams


def forge(make: Callable[[], bytes], count: int, rng: random.Random,
          reach: int) -> list[bytes]:
    """``count`` secured messages from ``make``, each with one bit of its MAC (the last 4
    bytes) flipped, or, one time in four, a bit of its last ``reach`` bytes."""
    out = []
    for i in range(count):
        data = bytearray(make())
        data[len(data) - 1 - rng.randrange(4 if i % 4 else reach)] ^= 1 << rng.randrange(8)
        out.append(bytes(data))
    return out


# ---------------------------------------------------------------------------- meter-fed servers


class Watch:
    """Times (monotonic) at which a thread saw new work of the good meter; subclasses supply
    :meth:`_run` (and set their attributes before calling ``__init__``, which starts it)."""

    #: Seconds :meth:`stop` waits for the thread.
    join = 5.0

    def __init__(self) -> None:
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def stalled(self) -> str:
        """The message when nothing new comes."""
        raise NotImplementedError

    def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.times)
        while len(self.times) < start + count:
            assert time.monotonic() < deadline, self.stalled()
            time.sleep(0.1)

    def max_gap(self, start: float, end: float) -> tuple[int, float]:
        """Times seen in [start, end] and the longest time without one there."""
        inside = [t for t in self.times if start <= t <= end]
        edges = [start, *inside, end]
        return len(inside), max(b - a for a, b in zip(edges, edges[1:]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.join)


class Target:
    """A server process under attack (``server``) and a real meter working with it, watched
    (``watch``); subclasses start them and supply :meth:`good_peer`."""

    #: How the reports call the server.
    who = "server"
    #: The meter's work must be seen at least this often during an attack (s).
    max_gap = 20.0
    #: What :meth:`working` says when it was not.
    gap_message = "no work of the meter for {gap:.1f} s"
    #: The server's RSS may grow by at most this much during an attack (KiB).
    rss_slack_kib = 60 * 1024

    address: Address
    server: Running
    meter: Running | None = None
    watch: Watch | None = None

    def good_peer(self, transport: str) -> GoodPeer:
        raise NotImplementedError

    def attack(self, transports: tuple[str, ...] = ("tcp", "udp"),
               ) -> contextlib.AbstractContextManager[
                   tuple[list[GoodPeer], RssSampler, list[float]]]:
        """:func:`attack` on the server with its good peers."""
        return attack(self.server.proc.pid, self.good_peer, transports)

    def working(self, start: float, end: float) -> tuple[int, float]:
        """Assert both run and the meter's work went on through [start, end] and still does;
        (works seen then, longest gap)."""
        assert self.server.proc.poll() is None, \
            f"the {self.who} died:\n" + "\n".join(self.server.lines[-50:])
        assert self.meter is not None and self.meter.proc.poll() is None
        assert self.watch is not None
        seen, gap = self.watch.max_gap(start, end)
        assert gap < self.max_gap, self.gap_message.format(gap=gap)
        self.watch.wait(2, 30)  # and it goes on afterwards
        return seen, gap

    def assert_clean_log(self) -> None:
        bad = [line for line in self.server.lines if "Traceback" in line or " ERROR " in line]
        assert not bad, "\n".join(self.server.lines[-80:])

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        codes = []
        if self.meter is not None:
            codes.append(self.meter.stop())
        codes.append(self.server.stop())
        assert codes == [0] * len(codes), codes

    def assert_unhurt(self, start: float, end: float) -> str:
        raise NotImplementedError


def claims_and_drips(target: Target, drip_data: bytes, dripped: str) -> None:
    """24 TCP connections claiming gigabytes (256 KiB pushed after each claim), 600 UDP
    datagrams with a claim, and 16 connections dripping ``dripped`` (``drip_data``) one byte a
    second for 6 s, while the good peers are served: every claim is closed, nothing answered."""
    bulk = random.Random(1).randbytes(256 * 1024)
    with target.attack() as (clients, rss, times):
        drips = [Collector(tcp(target.address)) for _ in range(16)]
        peers = claim_and_push(target.address, CLAIMS[:3], bulk, 24)
        echoes = udp_blast(target.address, [HUGE + bulk[:1400]] * 300 + [HUGE] * 300, pace=10)
        drip_slowly(drips, drip_data[:6])
        closed = sum(p.wait_closed(5) for p in peers)
    answered = sum(p.raw for p in peers)
    drip_answers = sum(c.raw for c in drips)
    for c in [*peers, *drips]:
        c.stop()
    report(f"{target.who}: length claims and drips",
           f"24 TCP connections claiming gigabytes: {closed} closed by the {target.who}, "
           f"{answered} bytes answered; 600 UDP claims: {len(echoes)} answers",
           f"16 drips of {dripped}, 1 byte/s for 6 s: {drip_answers} bytes answered",
           rss.line(target.who), *(c.check() for c in clients), target.assert_unhurt(*times))
    assert closed == 24 and answered == 0 and echoes == [] and drip_answers == 0
    assert rss.peak - rss.before < target.rss_slack_kib


def garbage(target: Target, mutants: Mutants,
            codes_of: Callable[[list[bytes]], list[int]] = first_codes,
            rows: Callable[[], dict[str, int]] | None = None) -> dict[str, int] | None:
    """Random bytes, framed noise and mutants on 9 TCP connections and 5,000 datagrams, while
    the good peers are served: random bytes close the connection, framed noise gets no answer,
    every answer decodes as a response. ``rows``: the server's rows after, reported and
    returned."""
    rng = random.Random(0xC1222)
    streams = garbage_streams(rng, mutants, 3, 300)
    datagrams = garbage_datagrams(rng, mutants, 1500, 1500, 2000)
    with target.attack() as (clients, rss, times):
        peers, answers_udp, dropped = spray(target.address, streams, datagrams)
    tcp_answers = [a for p in peers for a in p.apdus]
    random_closed = sum(p.closed_after is not None for p in peers[:3])
    noise_answers = sum(len(p.apdus) for p in peers[3:6])
    stop_framed(peers)
    codes = codes_of(tcp_answers) + codes_of(answers_udp)  # each decodes as a response
    counts = rows() if rows is not None else None
    report(f"{target.who}: garbage",
           f"TCP: 3 random streams ({random_closed} closed), 3 of framed noise "
           f"({noise_answers} answers), 3 of mutated requests; {len(tcp_answers)} answers",
           f"UDP: {len(datagrams)} datagrams, {len(answers_udp)} answers, {dropped} dropped "
           f"by the kernel; response codes seen {sorted(set(codes))}",
           *([f"rows after: {counts}"] if counts is not None else []),
           rss.line(target.who), *(c.check() for c in clients), target.assert_unhurt(*times))
    assert random_closed == 3 and noise_answers == 0
    assert rss.peak - rss.before < target.rss_slack_kib
    return counts


def held_flood(target: Target, late: Callable[[], object], served: object) -> None:
    """A flood (:func:`open_flood`) held 4 s while the good UDP peer and the meter go on;
    then a new TCP client (``late``) must be ``served``."""
    with target.attack(("udp",)) as (clients, rss, times):
        flood, failed = open_flood(target.address)
        time.sleep(4.0)  # the meter must go on being served while the flood is held
        refused = sum(is_closed(s) for s in flood)
        for sock in flood:
            sock.close()
        time.sleep(0.5)
        after = late()
    lines = [f"{FLOOD} connections holding 60 KiB of a frame: {failed} connect failures, "
             f"{refused} closed by the {target.who}",
             f"a new TCP client after the flood: {after}", rss.line(target.who),
             *(c.check() for c in clients)]
    try:
        lines.append(target.assert_unhurt(*times))
    finally:
        report(f"{target.who}: connection flood", *lines)
    assert after == served
    assert rss.peak - rss.before < target.rss_slack_kib
