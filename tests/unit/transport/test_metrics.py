"""What every server's metrics share (c1222.transport.metrics, transport.http.metrics_app): an
endpoint's connections and refusals read when scraped, and a registry served alone on uvicorn
over a real socket, as a server without a web app (a relay) would serve it."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from c1222.transport.endpoint import Endpoint, EndpointLimits
from c1222.transport.http import metrics_app, uvicorn_config
from c1222.transport.metrics import EndpointCollector


def samples(text: str) -> dict[str, float]:
    return {s.name: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if not s.labels}


def test_endpoint_collector_reads_connections_and_refusals_when_scraped() -> None:
    async def body() -> None:
        endpoint = Endpoint(limits_=EndpointLimits(max_per_address=1))
        registry = CollectorRegistry()
        registry.register(EndpointCollector(endpoint, "c1222_test"))
        host, port = await endpoint.listen("127.0.0.1", 0)
        try:
            first = await asyncio.open_connection(host, port)
            second = await asyncio.open_connection(host, port)  # over the per-address cap
            assert await second[0].read() == b""  # closed at once
            deadline = asyncio.get_running_loop().time() + 10
            while endpoint.connections != 1:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            s = samples(generate_latest(registry).decode())
            assert s["c1222_test_tcp_connections"] == 1
            assert s["c1222_test_tcp_connections_refused_total"] == 1
            assert s["c1222_test_frames_refused_total"] == 0
            first[1].close()
            second[1].close()
        finally:
            await endpoint.close()

    asyncio.run(body())


def test_metrics_app_served_alone_on_uvicorn() -> None:
    import uvicorn

    registry = CollectorRegistry()
    forwarded = Counter("c1222_relay_apdus_forwarded", "APDUs forwarded", registry=registry)
    forwarded.inc(3)

    async def body() -> None:
        server = uvicorn.Server(uvicorn_config(metrics_app(registry), "127.0.0.1", 0))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        served = asyncio.create_task(server.serve())
        deadline = asyncio.get_running_loop().time() + 10
        while not server.started:
            assert not served.done() and asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                answer = await client.get("/metrics")
                assert answer.status_code == 200
                assert samples(answer.text)["c1222_relay_apdus_forwarded_total"] == 3
                assert (await client.delete("/metrics")).status_code == 405
        finally:
            server.should_exit = True
            await asyncio.wait_for(served, 10)

    asyncio.run(body())
