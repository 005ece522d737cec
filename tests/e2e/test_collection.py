"""The collector's scheduler end to end: a real `c1222 headend` at a short interval reading
two real `c1222 fleet`s (250 meters) and three hostile meters, all through the public
interfaces (the CLI, GET /api/collection, GET /api/nodes, /metrics).

Every interval is accounted (due = read + failed + skipped + gone once settled); the reads are
spread over the interval (each meter's completion offsets are not bunched at its start); a
fleet worker killed with kill -9 turns its meters' reads into failures counted with their
reason while the other fleet is still read in full; a meter that never answers, one that
answers every request with an error and one that deregisters while it is being read are
counted by reason (timeout, refused:isc, gone); the head-end's output holds no traceback and
no "Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.native import encode_native_address
from c1222.codec.services import DeregisterRequest, RegisterRequest
from c1222.codes import NodeType
from c1222.crypto.nonces import RandomNonceSource
from c1222.errors import ISC
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig
from c1222.transport.endpoint import Endpoint, Link
from tests.e2e.procs import Running, children
from tests.e2e.test_fleet import HEADEND, fleet, poll, workers

INTERVAL = 8.0
BASE = "2.16.124.113620.1.22.0.123"
SILENT, ERRORS, LEAVER = (f"{BASE}.9{n}" for n in (1, 2, 3))
KEPT = 200  # fleet A: 2 workers, serials 100000..
KILLED = 50  # fleet B: 1 worker, serials 300000.., killed


class _Refuser:
    """Answers every request (and the Security service) with ISC."""

    def handle(self, request: Any, ctx: Any) -> Any:
        raise ISC("this meter refuses everything")

    def authenticate(self, user_id: int, password: bytes) -> Any:
        raise ISC("no")

    def notice(self, event: str, ctx: Any, detail: str = "") -> None:
        pass


class HostileMeters:
    """Three meters on one endpoint (its own event loop, in a thread), registered with the
    head-end over connections they keep open: SILENT never answers, ERRORS answers ISC to
    everything, LEAVER deregisters as soon as it is read (and does not answer that read)."""

    def __init__(self, headend: tuple[str, int]) -> None:
        self.headend = headend
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.requests: dict[str, int] = {SILENT: 0, ERRORS: 0, LEAVER: 0}
        self.left = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._links: dict[str, Link] = {}
        self.refuser = Responder(ResponderConfig(ap_title=Uid.parse(ERRORS)), _Refuser(),
                                 RandomNonceSource())

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        apdu = acse.decode(data)
        called = str(apdu.called_ap_title.absolute()) if apdu.called_ap_title else ""
        if called not in self.requests:
            return None, False  # an answer to our own Register or Deregister: not a request
        self.requests[called] += 1
        if called == ERRORS:
            reply = self.refuser.receive(data, link.id, time.time())
            return reply.data, reply.close
        if called == LEAVER and not self.left:
            self.left = True
            task = asyncio.ensure_future(self._send(LEAVER, DeregisterRequest(
                Uid.parse(LEAVER))))
            self._tasks.add(task)
        return None, False  # no answer: the head-end's read waits for its time-out

    async def _send(self, title: str, service: Any) -> None:
        requester = Requester(Uid.parse(title), RandomNonceSource())
        link = self._links[title]
        pending = requester.request([service], Uid.parse(HEADEND))
        data = await self.endpoint.exchange(link, pending.data, pending.invocation_id,
                                            timeout=20)
        assert requester.accept(data, pending, time.time()) is not None

    async def _start(self) -> None:
        self.endpoint = Endpoint(self._on_request)
        listening = await self.endpoint.listen("127.0.0.1", 0)
        for title in self.requests:
            self._links[title] = await self.endpoint.connect(*self.headend, "tcp", 10)
            await self._send(title, RegisterRequest(
                node_type=NodeType.END_DEVICE, connection_type=0x40, device_class=b"EVIL",
                ap_title=Uid.parse(title), serial_number=Uid.parse(".1"),
                # a new connection from the head-end comes back here, to the same behaviour
                native_address=encode_native_address(*listening), registration_period=3600))

    def __enter__(self) -> HostileMeters:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.endpoint.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _unix(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_fleet_is_read_spread_over_accounted_intervals_with_failures_by_reason(
        tmp_path: Path) -> None:
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", f"sqlite:///{tmp_path}/headend.db",
                       "--collect-interval", str(INTERVAL), "--log-interval", "0",
                       "--collect-concurrency", "32", "--max-registrations-per-address", "0",
                       "--max-connections", "4096", "--max-connections-per-address", "4096"])
    kept = killed = None
    try:
        address = headend.address()
        found = headend.wait_for(r"console at http (\S+):(\d+)")
        web = f"http://{found.group(1)}:{found.group(2)}"
        target = f"{address[0]}:{address[1]}"
        kept = fleet("--meters", str(KEPT), "--workers", "2", "--headend", target,
                     "--ramp", "1")
        killed = fleet("--meters", str(KILLED), "--headend", target, "--ramp", "1",
                       "--serial-base", "300000")
        workers(kept, 2)
        workers(killed, 1)
        kept.wait_for(rf"fleet: all {KEPT} meters registered", 120)
        killed.wait_for(rf"fleet: all {KILLED} meters registered", 120)
        everyone = KEPT + KILLED + 3

        with HostileMeters(address) as hostile:
            def collection() -> dict[str, Any]:
                return httpx.get(f"{web}/api/collection", timeout=20).json()

            # intervals that began with every meter registered, and are settled (ended
            # before the interval before the current one: any late read is in)
            def settled(view: dict[str, Any]) -> list[dict[str, Any]]:
                return [i for i in view["history"][1:] if i["due"] >= everyone - 1]

            def two_settled() -> dict[str, Any] | None:
                v = collection()
                return v if len(settled(v)) >= 2 else None

            view = poll(two_settled, 12 * INTERVAL, "two settled intervals with every meter due")
            assert view["interval"] == INTERVAL and view["concurrency"] == 32
            for interval in settled(view):
                # every due meter accounted for: read, failed, skipped or gone
                assert interval["pending"] == 0, interval
                assert interval["read"] + interval["failed"] + interval["skipped"] \
                    + interval["gone"] == interval["due"]
                assert interval["read"] >= KEPT + KILLED, interval  # the fleets in full
            # the hostile meters: each failure has its reason, the leaver is gone
            assert hostile.left and hostile.requests[SILENT] >= 1
            reasons = view["reasons"]
            assert reasons.get("refused:isc", 0) >= 2, view
            assert reasons.get("timeout", 0) >= 1, view
            intervals = [view["current"], *view["history"]]
            assert sum(i["gone"] for i in intervals) >= 1, view  # deregistered mid-read
            assert sum(i["skipped"] for i in intervals) >= 1, view  # silent: still reading
            assert LEAVER not in {n["ap_title"] for n in httpx.get(
                f"{web}/api/nodes?state=registered&latest=false", timeout=20).json()}

            # spread: each meter's read ends at about the same offset of every interval;
            # those offsets cover the interval, not its first moments
            nodes = httpx.get(f"{web}/api/nodes?state=registered&latest=false",
                              timeout=20).json()
            start = view["current"]["start"]
            offsets = [(_unix(n["read_status"]["last_success"]) - start) % INTERVAL
                       for n in nodes if n["read_status"] and n["read_status"]["last_success"]]
            assert len(offsets) >= KEPT + KILLED
            eighths = {int(o / INTERVAL * 8) for o in offsets}
            assert len(eighths) >= 6, sorted(offsets)
            early = sum(o < INTERVAL / 4 for o in offsets) / len(offsets)
            assert early < 0.6, sorted(offsets)

            # kill -9 the second fleet's worker: its meters fail, counted with their reason;
            # the first fleet is still read in full
            (pid,) = _worker_pids(killed)
            import os
            import signal

            os.kill(pid, signal.SIGKILL)
            killed_at = time.time()

            def failed_after_kill() -> dict[str, Any] | None:
                v = collection()
                done = [i for i in settled(v) if i["start"] > killed_at]
                return v if done else None

            view = poll(failed_after_kill, 8 * INTERVAL, "a settled interval after the kill")
            after = [i for i in settled(view) if i["start"] > killed_at][-1]
            assert after["read"] >= KEPT, after
            assert after["failed"] >= KILLED, after
            assert after["reasons"].get("unreachable", 0) >= KILLED - 2, after
            assert after["retries"] >= 1, after  # unreachable is tried again
            metrics = httpx.get(f"{web}/metrics", timeout=20).text
            assert 'c1222_headend_collection_failures_total{code="",outcome="unreachable"}' \
                in metrics
    finally:
        for run in (kept, killed):
            if run is not None and run.proc.poll() is None:
                run.stop()
        status = headend.stop()
    text = "\n".join(headend.lines)
    assert status == 0, text[-4000:]
    assert "Traceback" not in text and "never retrieved" not in text, text[-4000:]
    assert "was destroyed but it is pending" not in text, text[-4000:]


def _worker_pids(run: Running) -> list[int]:
    """The fleet's worker processes (multiprocessing spawn children)."""
    return [pid for pid in children(run.proc.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
