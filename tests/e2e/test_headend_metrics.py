"""`c1222 headend` and `c1222 meter` started as a user would; the head-end's ``/metrics``
scraped over HTTP and parsed with the Prometheus client's own parser: the registration and
the reads are counted as they happen, the read latency histogram fills, and a meter that
stops turns its reads into failures counted with their reason."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.procs import Running

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(web: str) -> Samples:
    answer = httpx.get(f"{web}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(web: str, done: Callable[[Samples], bool], what: str,
               timeout: float = 40.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(web)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, f"{what}: {sorted(samples.items())}"
        time.sleep(0.2)


def raw_status(host: str, port: int, request: bytes) -> int:
    """The status of a hand-made request on a raw socket (bytes httpx would not send)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
    return int(head.split(b" ", 2)[1])


def test_metrics_follow_registrations_reads_and_a_meter_that_stops(tmp_path: Path) -> None:
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", f"sqlite:///{tmp_path / 'headend.db'}",
                       "--collect-interval", "0.5", "--log-interval", "0"])
    meter: Running | None = None
    try:
        address = headend.address()
        found = headend.wait_for(r"console at http (\S+):(\d+)")
        web = f"http://{found.group(1)}:{found.group(2)}"
        before = scrape(web)
        assert value(before, "c1222_headend_reads_total", outcome="ok", code="") == 0
        assert value(before, "c1222_headend_nodes_registered") == 0

        meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend",
                         f"{address[0]}:{address[1]}", "--state-dir", str(tmp_path / "meter")])
        meter.address()
        ok = wait_until(web, lambda s: value(s, "c1222_headend_reads_total", outcome="ok",
                                             code="") >= 3, "three good reads")
        assert value(ok, "c1222_headend_registrations_total", node_type="end_device",
                     outcome="ok") >= 1
        assert value(ok, "c1222_headend_nodes_registered") == 1
        assert value(ok, "c1222_headend_requests_total", direction="in",
                     service="register") >= 1
        assert value(ok, "c1222_headend_responses_total", direction="in", service="full_read",
                     code="ok") >= 3
        assert value(ok, "c1222_headend_read_duration_seconds_count") >= 3
        assert value(ok, "c1222_headend_read_duration_seconds_bucket", le="+Inf") >= 3
        assert value(ok, "c1222_headend_request_duration_seconds_count") >= 3
        assert value(ok, "c1222_headend_readings_stored_total") > 0
        assert value(ok, "c1222_headend_collection_meters_read_total") >= 3
        assert value(ok, "c1222_headend_tcp_connections") >= 1  # the meter's registration
        assert value(ok, "process_resident_memory_bytes") > 0
        failed_before = sum(v for (name, labels), v in ok.items()
                            if name == "c1222_headend_reads_total"
                            and dict(labels)["outcome"] != "ok")

        assert meter.stop() == 0, "\n".join(meter.lines[-40:])
        meter = None
        # its connection closes, and the head-end's reads of its native address are refused
        down = wait_until(web, lambda s: value(s, "c1222_headend_reads_total",
                                               outcome="unreachable", code="") >= 2,
                          "reads of the stopped meter counted as unreachable")
        failed = sum(v for (name, labels), v in down.items()
                     if name == "c1222_headend_reads_total" and dict(labels)["outcome"] != "ok")
        assert failed > failed_before
        assert value(down, "c1222_headend_meters_failing") == 1
        # each attempt is a read; an interval's meter fails once its attempts are spent (an
        # unreachable meter is tried again within the interval), counted with the reason
        down = wait_until(web, lambda s: value(
            s, "c1222_headend_collection_meters_failed_total") >= 2, "two failed intervals")
        assert value(down, "c1222_headend_collection_failures_total", outcome="unreachable",
                     code="") >= 2
        assert value(down, "c1222_headend_collection_meters_retries_total") >= 1
        down = wait_until(web, lambda s: value(s, "c1222_headend_collection_last_meters_failed")
                          == 1, "an interval whose read failed")
        assert value(down, "c1222_headend_collection_last_meters_read") == 0
        assert value(down, "c1222_headend_collection_last_meters_due") == 1
        # no label took its value from the peer: the meter's AP title is nowhere
        assert not any("2.16.124" in v for _, labels in down for _, v in labels)
        assert httpx.post(f"{web}/metrics", timeout=10).status_code == 405
        host, port = found.group(1), int(found.group(2))
        for raw, status in (
                (b"GET /metrics?%ff%00&name[]=x&name[]=" + b"y" * 4000 + b" HTTP/1.1\r\n"
                 b"Host: h\r\nAccept: text/plain; version=\xff\xfe\r\n\r\n", 200),
                (b"GET /metrics HTTP/1.1\r\nHost: h\r\nAccept: application/openmetrics-"
                 b"text; version=x.y\r\nAccept-Encoding: gzip\r\n\r\n", 200),
                (b"BREW /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", 405)):
            assert raw_status(host, port, raw) == status, raw[:40]
    finally:
        if meter is not None:
            meter.stop()
        assert headend.stop() == 0
