"""A relay's Prometheus metrics (relay/metrics.py; docs/network.md "Metrics"): the collector
over a master relay and a relay in-process on 127.0.0.1 as registrations, forwards, refusals
and drops happen; no AP title ever becomes a label; and the metrics served alone by
``MetricsServer`` under hostile HTTP (odd methods, a body declared and never sent, a junk
Accept header)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import (
    ErrorResponse,
    FullReadRequest,
    OkResponse,
    RegisterRequest,
    RegisterResponse,
)
from c1222.codes import ResponseCode
from c1222.crypto.nonces import RandomNonceSource
from c1222.relay.metrics import MetricsServer, relay_registry
from c1222.relay.node import Relay, RelayConfig
from c1222.session.registrar import encode_native
from c1222.session.requester import Requester
from c1222.transport.client import Client, responses
from c1222.transport.endpoint import Endpoint, Link

BASE = "2.16.124.113620.1.22.0.123"
MASTER, RELAY = f"{BASE}.1", f"{BASE}.2"
HEADEND = Uid.parse(f"{BASE}.4")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: object) -> Samples:
    text = generate_latest(registry).decode()  # type: ignore[arg-type]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, (key, sorted(samples))
    return samples[key]


async def until(done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


class Node:
    """A node that registers (through whatever it connects to) and never answers."""

    def __init__(self, title: str) -> None:
        self.heard: list[bytes] = []
        self.endpoint = Endpoint(self._on_request)
        self.client = Client(Requester(Uid.parse(title), RandomNonceSource()), self.endpoint)
        self.title = Uid.parse(title)

    async def _on_request(self, data: bytes, link: Link) -> tuple[bytes | None, bool]:
        self.heard.append(data)
        return None, False

    async def register(self, address: tuple[str, int]) -> object:
        await self.client.connect(*address)
        apdu = await self.client.call([RegisterRequest(
            node_type=0x20, connection_type=0xF0, device_class=b"TEST", ap_title=self.title,
            serial_number=Uid.parse(".7"), native_address=encode_native("127.0.0.1", 9),
            registration_period=600)], called=Uid.parse(MASTER))
        return responses(apdu)[0]

    async def close(self) -> None:
        await self.endpoint.close()


def test_the_collector_follows_registrations_forwards_refusals_and_drops() -> None:
    async def scenario() -> None:
        master = Relay(RelayConfig(ap_title=MASTER, listen=("127.0.0.1", 0), master=True,
                                   forward_timeout=0.3, max_per_source=2))
        master_at = await master.start()
        relay = Relay(RelayConfig(ap_title=RELAY, listen=("127.0.0.1", 0),
                                  upstream=master_at, master_ap_title=MASTER,
                                  forward_timeout=1.0, max_per_source=2))
        relay_at = await relay.start()
        at_master, at_relay = (relay_registry(master, process=False),
                               relay_registry(relay, process=False))
        nodes: list[Node] = []
        caller = Client(Requester(HEADEND, RandomNonceSource()))
        try:
            first = scrape(at_master)
            assert value(first, "c1222_relay_info", role="master") == 1
            assert value(first, "c1222_relay_registrations_denied_total", code="onp") == 0
            assert value(first, "c1222_relay_refusals_total", code="uat") == 0
            assert value(first, "c1222_relay_routes_limit") == 100_000
            await asyncio.wait_for(relay.upstream_registered.wait(), 10)  # type: ignore[union-attr]
            s = scrape(at_relay)
            assert value(s, "c1222_relay_info", role="relay") == 1
            assert value(s, "c1222_relay_upstream_registered") == 1
            assert value(s, "c1222_relay_upstream_registrations_sent_total") >= 1
            assert ("c1222_relay_notifications_sent_total", ()) not in s  # the master's only

            # three nodes register through the relay: two get through, the third is over
            # the relay's per-address cap (ONP, the relay's own refusal)
            for n in range(3):
                nodes.append(Node(f"{BASE}.{700 + n}"))
                answer = await nodes[-1].register(relay_at)
                assert isinstance(answer, RegisterResponse if n < 2 else ErrorResponse)
            s = scrape(at_relay)
            assert value(s, "c1222_relay_registrations_received_total") == 3
            assert value(s, "c1222_relay_registrations_forwarded_total") == 2
            assert value(s, "c1222_relay_registrations_denied_total", code="onp") == 1
            assert value(s, "c1222_relay_refusals_total", code="onp") == 1
            assert value(s, "c1222_relay_routes") == 2
            m = scrape(at_master)
            assert value(m, "c1222_relay_registered_nodes") == 3  # the relay and two nodes
            assert value(m, "c1222_relay_registrations_received_total") == 3

            # directly at the master: 127.0.0.1 holds the relay's title and one more at most
            nodes.append(Node(f"{BASE}.710"))
            nodes.append(Node(f"{BASE}.711"))
            assert isinstance(await nodes[-2].register(master_at), RegisterResponse)
            refused = await nodes[-1].register(master_at)
            assert isinstance(refused, ErrorResponse)
            m = scrape(at_master)
            assert value(m, "c1222_relay_registrations_denied_total", code="onp") == 1
            assert master.statistics()["registrations_denied"] == 1  # Table 127 too

            # a read of a node behind the relay that never answers: the master answers NETT
            # after its 0.3 s; the relay's own NETT (1 s) comes up late and is dropped
            await caller.connect(*master_at)
            apdu = await caller.call([FullReadRequest(1)], called=nodes[0].title, timeout=10)
            answer = responses(apdu)[0]
            assert isinstance(answer, ErrorResponse)
            assert answer.response_code == ResponseCode.NETT
            await until(lambda: len(nodes[0].heard) == 1, "the read reached the node")
            apdu = await caller.call([FullReadRequest(1)], called=Uid.parse(f"{BASE}.999"),
                                     timeout=10)
            assert responses(apdu)[0].response_code == ResponseCode.UAT  # type: ignore[union-attr]
            m = scrape(at_master)
            assert value(m, "c1222_relay_refusals_total", code="nett") == 1
            assert value(m, "c1222_relay_refusals_total", code="uat") == 1
            assert value(m, "c1222_relay_apdus_forwarded_total") >= 1
            assert value(m, "c1222_relay_pending_forwards") == 0
            s = scrape(at_relay)
            assert value(s, "c1222_relay_apdus_forwarded_total") >= 3  # 2 Registers, the read
            assert value(s, "c1222_relay_octets_received_total") > 0
            await until(lambda: relay.statistics()["nett_sent"] == 1, "the relay's NETT")
            # the relay's NETT went up to the master, which no longer waits for it
            await until(lambda: master.statistics()["responses_unmatched"] == 1,
                        "the late NETT dropped at the master")
            m = scrape(at_master)
            assert value(m, "c1222_relay_apdus_dropped_total", reason="unmatched_response") == 1

            # junk and a stray response, straight at the relay: dropped, by reason
            link = await caller.connect(*relay_at)
            await link.send(b"\x60\x03\xa1\x01\x00")  # framed, but no APDU inside
            await link.send(acse.encode(acse.Apdu(
                epsem=Epsem(services=(OkResponse(),)), calling_ap_invocation_id=5,
                called_ap_invocation_id=12345, called_ap_title=Uid.parse(f"{BASE}.998"),
                calling_ap_title=Uid.parse(f"{BASE}.997"))))
            await until(lambda: relay.statistics()["apdus_dropped"] >= 2, "two drops")
            s = scrape(at_relay)
            assert value(s, "c1222_relay_apdus_dropped_total", reason="undecodable") == 1
            assert value(s, "c1222_relay_apdus_dropped_total", reason="unmatched_response") == 1
            assert value(s, "c1222_relay_apdus_dropped_total", reason="other") == 0
            assert value(s, "c1222_relay_tcp_connections") >= 3
            assert value(s, "c1222_relay_segments_sent_total") == 0

            # no label anywhere took a title (or any value a peer chose)
            for samples in (scrape(at_master), scrape(at_relay)):
                assert not any("2.16.124" in v or "127.0.0" in v
                               for _, labels in samples for _, v in labels)
        finally:
            await caller.close()
            for node in nodes:
                await node.close()
            await relay.stop()
            await master.stop()

    asyncio.run(scenario())


def raw(port: int, request: bytes) -> bytes:
    """What a hand-made request on a raw socket gets back, up to the server's close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


def test_the_server_answers_get_and_head_405_otherwise_and_holds_nothing() -> None:
    async def scenario() -> None:
        relay = Relay(RelayConfig(ap_title=MASTER, listen=("127.0.0.1", 0), master=True))
        await relay.start()
        server = MetricsServer(relay_registry(relay), ("127.0.0.1", 0))
        host, port = await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                answer = await client.get("/metrics")
                assert answer.status_code == 200
                assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
                assert "c1222_relay_routes 0.0" in answer.text
                assert "process_resident_memory_bytes" in answer.text
                head = await client.head("/metrics")
                assert head.status_code == 200 and head.content == b""
                om = await client.get("/metrics",
                                      headers={"accept": "application/openmetrics-text"})
                assert om.headers["content-type"].startswith("application/openmetrics-text")
                assert om.text.endswith("# EOF\n")
                for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
                    odd = await client.request(method, "/metrics", content=b"x")
                    assert odd.status_code == 405, method
                    assert odd.headers["allow"] == "GET, HEAD"
            loop = asyncio.get_running_loop()
            for request, status in (
                    # a body declared (1 GB) and never sent: 405 at once, nothing read
                    (b"POST /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000\r\n\r\n",
                     b" 405 "),
                    (b"GET /metrics?%ff%00&name[]=x HTTP/1.1\r\nHost: h\r\n"
                     b"Accept: text/plain; version=\xff\xfe\r\n\r\n", b" 200 "),
                    # headers that never end, past the 16 KiB cap: 400, not held
                    (b"GET /metrics HTTP/1.1\r\nHost: h\r\nX: " + b"x" * 70_000, b" 400 ")):
                answer = await loop.run_in_executor(None, raw, port, request)
                assert status in answer.split(b"\r\n", 1)[0], (request[:40], answer[:80])
        finally:
            await server.stop()
            await relay.stop()

    asyncio.run(scenario())


def test_a_taken_port_is_an_os_error_not_an_exit() -> None:
    async def scenario() -> None:
        relay = Relay(RelayConfig(ap_title=MASTER, listen=("127.0.0.1", 0), master=True))
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            server = MetricsServer(relay_registry(relay, process=False), taken.getsockname())
            with pytest.raises(OSError):
                await server.start()
            await server.stop()

    asyncio.run(scenario())
