"""The head-end's Prometheus metrics (docs/headend.md, "Metrics"): what each event counts, the
read outcomes against meter doubles on 127.0.0.1 (ok, decode error, over-limit, refused,
time-out, unreachable), registrations over the wire, the per-interval gauges, bounded labels
under a flood of titles, and ``/metrics`` parsed with the Prometheus client's own parsers,
also for odd methods, queries and Accept headers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import (
    ErrorResponse,
    FullReadRequest,
    OkResponse,
    RegisterRequest,
    SecurityRequest,
    UnknownRequest,
)
from c1222.codes import ResponseCode
from c1222.crypto.nonces import TimeIvSource
from c1222.errors import (
    ISC,
    BerError,
    C1222Error,
    DecodeError,
    DecodeLimitExceeded,
    LimitExceeded,
    ResponseTimeout,
    SecurityError,
    TransportError,
    UnexpectedMessage,
)
from c1222.headend.metrics import HeadEndMetrics, node_kind, read_outcome
from c1222.headend.server import HeadEnd, HeadEndConfig
from c1222.headend.storage import StorageError
from c1222.headend.web import create_app
from c1222.session.requester import Requester
from c1222.tables import decade2 as d2
from c1222.tables.profile import MeterProfile
from c1222.tables.registry import encode_table
from c1222.transport.client import Client, responses
from c1222.transport.http import metrics_app
from c1222.transport.metrics import code_label, service_label
from tests.unit.headend.meter_double import MeterDouble

TITLE = "2.16.124.113620.1.22.0.123.7001"
SMALL = MeterProfile(ap_title=TITLE, lp_nbr_blks=4, lp_nbr_blk_ints=3, nbr_history_entries=5)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a text exposition, parsed by prometheus_client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(headend: HeadEnd) -> Samples:
    return parse(generate_latest(headend.metrics.registry).decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run(tmp: Path, body: Callable[[HeadEnd, MeterDouble], Awaitable[None]], *,
        register: bool = True, **config: Any) -> None:
    """``body`` with a started head-end and a meter double (in its registry unless not
    ``register``), on a fresh loop."""
    async def main() -> None:
        settings = dict(listen=("127.0.0.1", 0), db=f"sqlite:///{tmp / 'h.db'}",
                        collect_interval=3600.0, log_interval=0.0, timeout=5.0)
        headend = HeadEnd(HeadEndConfig(**{**settings, **config}))  # type: ignore[arg-type]
        await headend.start()
        meter = await MeterDouble(TITLE, SMALL).start()
        if register:
            node = meter.node()
            headend.registrar.nodes[node.ap_title] = node
        try:
            await body(headend, meter)
        finally:
            await meter.stop()
            await headend.stop()

    asyncio.run(main())


# ------------------------------------------------------------------ pure pieces


@pytest.mark.parametrize(("exc", "expected"), [
    (None, ("ok", "")),
    (asyncio.TimeoutError(), ("timeout", "")),
    (asyncio.CancelledError(), ("timeout", "")),
    (ResponseTimeout("no response from x within 5 s"), ("timeout", "")),
    (TransportError("cannot connect"), ("unreachable", "")),
    (ConnectionRefusedError(), ("unreachable", "")),
    (ISC("read of table 23: response code 0x03"), ("refused", "isc")),
    (SecurityError(), ("security_error", "")),
    (BerError("bad length", 3, "apdu"), ("decode_error", "")),
    (DecodeLimitExceeded("too deep", 0, "x"), ("decode_error", "")),
    (LimitExceeded("over-limit: Table 64 is 2 MB"), ("over_limit", "")),
    (UnexpectedMessage("2 responses to 3 reads"), ("protocol_error", "")),
    (StorageError("disk full"), ("storage_error", "")),
    (C1222Error("the decoder process died"), ("error", "")),
    (RuntimeError("a bug"), ("error", "")),
])
def test_every_read_failure_has_one_bounded_outcome(exc: BaseException | None,
                                                    expected: tuple[str, str]) -> None:
    assert read_outcome(exc) == expected


def test_labels_come_from_bounded_sets() -> None:
    assert [node_kind(t) for t in (0x20, 0x21, 0x02, 0x04, 0x08, 0x10, 0x00, 0x40, 0xFF)] == [
        "end_device", "relay", "master_relay", "host", "host", "host", "other", "other",
        "master_relay"]
    assert [code_label(c) for c in (0, 3, 0x12, 0x13, 0xFF, -1, None, "ok")] == [
        "ok", "isc", "sgerr", "other", "other", "other", "other", "other"]
    assert service_label(FullReadRequest(23)) == "full_read"
    assert service_label(UnknownRequest(request_code=0x99)) == "unknown"
    assert service_label(None) == "unknown"


def _apdu(*services: Any) -> Apdu:
    return Apdu(epsem=Epsem(services=services), calling_ap_invocation_id=1)


def test_responses_count_by_the_service_they_answer_and_their_code() -> None:
    m = HeadEndMetrics(process=False)
    request = _apdu(SecurityRequest(b" " * 20, 2), FullReadRequest(23), FullReadRequest(99))
    m.message("out", request)
    # ok, sns, and a third answer nobody asked for with a code the standard lacks
    m.message("in", _apdu(OkResponse(), ErrorResponse(response_code=ResponseCode.SNS),
                          ErrorResponse(response_code=0x1F)), answers=request)
    m.message("in", None)
    reg = RegisterRequest(node_type=0x21, connection_type=0x40, device_class=b"SIMU",
                          ap_title=Uid.parse(TITLE), serial_number=Uid.parse(".1"),
                          native_address=b"x", registration_period=60)
    m.message("in", _apdu(reg))
    m.message("out", _apdu(ErrorResponse(response_code=ResponseCode.ONP)), answers=_apdu(reg))
    s = parse(generate_latest(m.registry).decode())
    assert value(s, "c1222_headend_requests_total", direction="out", service="full_read") == 2
    assert value(s, "c1222_headend_requests_total", direction="out", service="security") == 1
    assert value(s, "c1222_headend_responses_total", direction="in", service="security",
                 code="ok") == 1
    assert value(s, "c1222_headend_responses_total", direction="in", service="full_read",
                 code="ok") == 0
    assert value(s, "c1222_headend_responses_total", direction="in", service="full_read",
                 code="sns") == 1
    assert value(s, "c1222_headend_responses_total", direction="in", service="full_read",
                 code="other") == 1
    assert value(s, "c1222_headend_undecoded_messages_total", direction="in") == 1
    assert value(s, "c1222_headend_requests_total", direction="in", service="register") == 1
    assert value(s, "c1222_headend_registrations_total", node_type="relay",
                 outcome="onp") == 1


def test_each_head_end_has_its_own_registry(tmp_path: Path) -> None:
    one = HeadEnd(HeadEndConfig(db=f"sqlite:///{tmp_path / 'a.db'}"))
    two = HeadEnd(HeadEndConfig(db=f"sqlite:///{tmp_path / 'b.db'}"))
    assert one.metrics.registry is not two.metrics.registry
    one.metrics.registered(0x20)
    assert value(scrape(one), "c1222_headend_registrations_total", node_type="end_device",
                 outcome="ok") == 1
    assert value(scrape(two), "c1222_headend_registrations_total", node_type="end_device",
                 outcome="ok") == 0
    assert value(scrape(one), "process_start_time_seconds") > 0  # the process, too


# ------------------------------------------------------------------ reads by outcome


def test_reads_count_by_outcome_against_a_meter(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        await headend.collect(TITLE)
        s = scrape(headend)
        assert value(s, "c1222_headend_reads_total", outcome="ok", code="") == 1
        assert value(s, "c1222_headend_read_duration_seconds_count") == 1
        assert value(s, "c1222_headend_read_duration_seconds_sum") > 0
        assert value(s, "c1222_headend_request_duration_seconds_count") >= 1
        assert value(s, "c1222_headend_readings_stored_total") > 0
        assert value(s, "c1222_headend_requests_total", direction="out",
                     service="full_read") >= 3
        assert value(s, "c1222_headend_responses_total", direction="in", service="full_read",
                     code="ok") >= 3
        assert value(s, "c1222_headend_tcp_connections") == 1
        assert value(s, "c1222_headend_nodes_registered") == 1

        # a table the readers cannot make sense of: a decode error
        select = d2.PresentRegisterSelect((), (9, 2, 3, 4, 5))  # Table 12 has 6 entries
        meter.lying.fake[27] = encode_table(27, select, meter.store.env)
        headend._context.pop(TITLE)  # context tables are read once per meter
        with pytest.raises(DecodeError):
            await headend.collect(TITLE)
        meter.lying.fake.pop(27)
        headend._context.pop(TITLE)
        # a table over the bound: over-limit (and the meter is flagged)
        meter.lying.fake[16] = bytes(5000)
        with pytest.raises(LimitExceeded, match="over-limit: Table 16 is 5000 bytes"):
            await headend.collect(TITLE)
        s = scrape(headend)
        assert value(s, "c1222_headend_meters_over_limit") == 1
        meter.lying.fake.pop(16)
        # the meter refuses the head-end's password: refused, with the meter's code
        headend.config.password = "WRONG"
        with pytest.raises(ISC):
            await headend.collect(TITLE)
        headend.config.password = "PASSWORD"
        s = scrape(headend)
        assert value(s, "c1222_headend_reads_total", outcome="decode_error", code="") == 1
        assert value(s, "c1222_headend_reads_total", outcome="over_limit", code="") == 1
        assert value(s, "c1222_headend_reads_total", outcome="refused", code="isc") == 1
        assert value(s, "c1222_headend_responses_total", direction="in", service="security",
                     code="isc") >= 1
        assert value(s, "c1222_headend_meters_failing") == 1
        assert value(s, "c1222_headend_read_duration_seconds_count") == 1  # successes only
        await headend.collect(TITLE)
        assert value(scrape(headend), "c1222_headend_meters_failing") == 0

    run(tmp_path, body, max_table_bytes=4096)


def test_a_silent_meter_is_a_timeout_and_a_closed_port_unreachable(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        node = headend.registrar.nodes[TITLE]
        node.native_address, node.peer = f"127.0.0.1:{port}".encode(), None
        with pytest.raises(ResponseTimeout):
            await headend.collect(TITLE)
        # the collector's read: a timeout too, returned (not raised) to the scheduler
        assert isinstance(await headend._collect_one(TITLE, False), ResponseTimeout)
        silent.close()
        await meter.stop()
        node.native_address, node.peer = f"127.0.0.1:{port}".encode(), None
        with pytest.raises(TransportError):
            await headend.collect(TITLE)
        s = scrape(headend)
        assert value(s, "c1222_headend_reads_total", outcome="timeout", code="") == 2
        assert value(s, "c1222_headend_reads_total", outcome="unreachable", code="") == 1
        assert value(s, "c1222_headend_request_duration_seconds_count") == 0

    run(tmp_path, body, timeout=0.3)


def test_the_collector_fills_the_interval_gauges(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        deadline = time.monotonic() + 20
        while True:
            s = scrape(headend)
            if value(s, "c1222_headend_collection_last_meters_read") == 1:
                break
            assert time.monotonic() < deadline, s
            await asyncio.sleep(0.05)
        assert value(s, "c1222_headend_collection_last_meters_due") == 1
        assert value(s, "c1222_headend_collection_last_meters_failed") == 0
        assert value(s, "c1222_headend_collection_meters_due_total") >= 2
        assert value(s, "c1222_headend_collection_meters_read_total") >= 1
        assert value(s, "c1222_headend_reads_total", outcome="ok", code="") >= 1

    run(tmp_path, body, collect_interval=0.1)


# ------------------------------------------------------------------ registrations


async def _register(headend: HeadEnd, title: str, node_type: int = 0x20) -> int:
    client = Client(Requester(Uid.parse(title), TimeIvSource(time.time)))
    assert headend.address is not None
    await client.connect(*headend.address)
    try:
        answer = await client.call(
            [RegisterRequest(node_type=node_type, connection_type=0x40, device_class=b"SIMU",
                             ap_title=Uid.parse(title), serial_number=Uid.parse(".1"),
                             native_address=b"127.0.0.1:1", registration_period=60)],
            called=headend.ap_title, timeout=5)
    finally:
        await client.close()
    return responses(answer)[0].response_code


def test_registrations_count_by_role_and_answer_and_titles_never_become_labels(
        tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        assert await _register(headend, "2.16.124.113620.1.22.0.5.1") == 0
        assert await _register(headend, "2.16.124.113620.1.22.0.5.2", 0x01) == 0
        # the registry is full (max_nodes 2): ONP, counted as such
        assert await _register(headend, "2.16.124.113620.1.22.0.5.3") == ResponseCode.ONP
        s = scrape(headend)
        assert value(s, "c1222_headend_registrations_total", node_type="end_device",
                     outcome="ok") == 1
        assert value(s, "c1222_headend_registrations_total", node_type="relay",
                     outcome="ok") == 1
        assert value(s, "c1222_headend_registrations_total", node_type="end_device",
                     outcome="onp") == 1
        assert value(s, "c1222_headend_nodes_registered") == 2
        assert value(s, "c1222_headend_responses_total", direction="out", service="register",
                     code="onp") == 1
        # a flood of distinct titles adds counts, never series
        before = set(s)
        for n in range(40):
            await _register(headend, f"2.16.124.113620.1.22.0.6.{n}")
        after = scrape(headend)
        assert set(after) == before
        assert value(after, "c1222_headend_registrations_total", node_type="end_device",
                     outcome="onp") == 41
        assert not any("2.16.124" in v for _, labels in after for _, v in labels)

    run(tmp_path, body, register=False, max_nodes=2)


# ------------------------------------------------------------------ /metrics over HTTP


def test_metrics_route_serves_the_text_format_and_refuses_odd_methods(tmp_path: Path) -> None:
    async def body(headend: HeadEnd, meter: MeterDouble) -> None:
        await headend.collect(TITLE)
        app = create_app(headend)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://headend") as client:
            answer = await client.get("/metrics")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
            s = parse(answer.text)
            assert value(s, "c1222_headend_reads_total", outcome="ok", code="") == 1
            head = await client.head("/metrics")
            assert head.status_code == 200 and head.content == b""
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
                odd = await client.request(method, "/metrics", content=b"x" * 100)
                assert odd.status_code == 405, method
            # queries are ignored, whatever they hold (no name[] filtering, no echo)
            for query in ("?name[]=c1222_headend_reads_total", "?%ff%fe=%00", "?a=" + "b" * 8000,
                          "?name[]=" + "&name[]=".join(str(n) for n in range(500))):
                odd = await client.get("/metrics" + query)
                assert odd.status_code == 200 and parse(odd.text).keys() == s.keys(), query
            # prometheus_client's own negotiation raises on these (a 500): not here
            for accept in ("text/plain; version=garbage", "application/openmetrics-text; "
                           "version=x.y", "*/*;q=abc", ",,,;;;==", "text/plain; version=1" +
                           ".0" * 2000):
                odd = await client.get("/metrics", headers={"accept": accept})
                assert odd.status_code == 200 and "garbage" not in odd.headers["content-type"]
                assert "x.y" not in odd.headers["content-type"]
            raw = await client.get("/metrics", headers={"accept": b"text/\xff\xfe"})
            assert raw.status_code == 200
            # what Prometheus 3 asks for: OpenMetrics, parsed with its own parser
            om = await client.get("/metrics", headers={"accept": (
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
                "text/plain;version=0.0.4;q=0.3,*/*;q=0.2")})
            assert om.headers["content-type"].startswith("application/openmetrics-text")
            families = {f.name: f for f in om_families(om.text)}
            reads = families["c1222_headend_reads"]
            assert reads.type == "counter"
            assert any(x.labels.get("outcome") == "ok" and x.value == 1 for x in reads.samples)
            assert families["c1222_headend_read_duration_seconds"].type == "histogram"
            assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]

    run(tmp_path, body)


def test_metrics_app_serves_any_registry_for_servers_without_fastapi() -> None:
    m = HeadEndMetrics(process=False)
    m.registered(0x02)

    async def body() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=metrics_app(m.registry)),
                                     base_url="http://relay") as client:
            answer = await client.get("/metrics?x=%ff")
            assert answer.status_code == 200
            assert value(parse(answer.text), "c1222_headend_registrations_total",
                         node_type="master_relay", outcome="ok") == 1
            assert (await client.head("/metrics")).content == b""
            refused = await client.post("/metrics", content=b"{}")
            assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"

    asyncio.run(body())
