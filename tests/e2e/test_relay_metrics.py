"""`c1222 relay --metrics` started as a user would: a master relay and a relay, each serving
/metrics, and a meter registered through them (docs/network.md "Metrics"). /metrics is parsed
with the Prometheus client's own parser while a client reads the meter by its title through
both relays: the registration, the forwards, the octets and a UAT are counted where they
happened. Also: odd methods are 405, and a bad --metrics is one line before anything starts."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from c1222.codec.services import ErrorResponse, FullReadRequest, ReadResponse
from c1222.codes import ResponseCode
from tests.e2e.procs import Running
from tests.e2e.test_cli_errors import assert_usage_error, run
from tests.e2e.test_headend_metrics import Samples, scrape
from tests.e2e.test_meter_network import free_port
from tests.e2e.test_relay import BASE, BRANCH, MASTER, R1, REGISTERED, Caller, Net, where

def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, (key, sorted(k for k in samples if k[0].startswith("c1222")))
    return samples[key]


def wait_until(web: str, done: Callable[[Samples], bool], what: str,
               timeout: float = 30.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(web)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def metrics_url(proc: Running) -> str:
    found = proc.wait_for(r"metrics at http (\S+):(\d+)")
    return f"http://{found.group(1)}:{found.group(2)}"


def test_counters_move_as_a_meter_is_read_through_two_relays(tmp_path: Path) -> None:
    net = Net()
    try:
        master = net.start(Running(["relay", "--master", "--ap-title", MASTER, "--listen",
                                    "127.0.0.1:0", "--assign-branch", BRANCH,
                                    "--metrics", "127.0.0.1:0"]))
        master_at, master_web = master.address(), metrics_url(master)
        relay = net.start(Running(["relay", "--ap-title", R1, "--listen", "127.0.0.1:0",
                                   "--upstream", where(master_at), "--metrics", "127.0.0.1:0"]))
        relay_at, relay_web = relay.address(), metrics_url(relay)
        assert "listening on tcp+udp" in relay.lines[0]  # the C12.22 address comes first
        before = scrape(relay_web)
        assert value(before, "c1222_relay_info", role="relay") == 1
        assert value(before, "c1222_relay_routes") == 0
        meter = net.start(Running(["meter", "--listen", "127.0.0.1:0", "--relay",
                                   where(relay_at), "--state-dir", str(tmp_path / "m")]))
        meter.address()
        title = meter.wait_for(REGISTERED, 30).group(1)

        s = wait_until(relay_web, lambda s: value(s, "c1222_relay_routes") == 1,
                       "the relay routes the meter")
        assert value(s, "c1222_relay_registrations_received_total") >= 1
        assert value(s, "c1222_relay_registrations_forwarded_total") >= 1
        assert value(s, "c1222_relay_upstream_registered") == 1
        m = wait_until(master_web, lambda s: value(s, "c1222_relay_registered_nodes") == 2,
                       "the master holds the relay and the meter")
        assert value(m, "c1222_relay_info", role="master") == 1
        assert value(m, "c1222_relay_registrations_received_total") >= 2
        relay_before, master_before = s, m

        async def reads() -> None:
            caller = Caller(0)
            await caller.connect(master_at)
            for _ in range(3):
                read = await caller.call([FullReadRequest(1)], title)
                assert isinstance(read, ReadResponse), read
            lost = await caller.call([FullReadRequest(1)], f"{BASE}.77")
            assert isinstance(lost, ErrorResponse) and lost.response_code == ResponseCode.UAT
            await caller.client.close()

        asyncio.run(reads())
        s, m = scrape(relay_web), scrape(master_web)
        # each read and its answer crossed both relays
        for now, then in ((s, relay_before), (m, master_before)):
            moved = {name: value(now, name) - value(then, name)
                     for name in ("c1222_relay_apdus_forwarded_total",
                                  "c1222_relay_apdus_received_total",
                                  "c1222_relay_apdus_sent_total",
                                  "c1222_relay_octets_received_total",
                                  "c1222_relay_octets_sent_total")}
            assert moved["c1222_relay_apdus_forwarded_total"] >= 6, moved
            assert moved["c1222_relay_apdus_received_total"] >= 6, moved
            assert moved["c1222_relay_octets_sent_total"] > 0, moved
        assert value(m, "c1222_relay_refusals_total", code="uat") == 1
        assert value(s, "c1222_relay_refusals_total", code="uat") == 0
        assert value(m, "c1222_relay_pending_forwards") == 0
        assert value(m, "c1222_relay_tcp_connections") >= 1  # the relay's association
        assert value(m, "process_resident_memory_bytes") > 0
        # no label took a value from the network: neither title nor address is anywhere
        for samples in (s, m):
            assert not any(title in v or "127.0.0" in v for _, labels in samples
                           for _, v in labels)

        host, port = master_web.removeprefix("http://").rsplit(":", 1)
        for method in ("POST", "PUT", "DELETE", "BREW"):
            assert httpx.request(method, f"{master_web}/metrics", content=b"{}",
                                 timeout=10).status_code == 405
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 405 ")  # at once: the body is not read
        assert httpx.head(f"{master_web}/metrics", timeout=10).status_code == 200

        for proc in (meter, relay, master):
            assert proc.stop() == 0
        assert "relay stopped" in master.lines[-1]
        with pytest.raises(httpx.TransportError):  # stopped with the relay
            httpx.get(f"{master_web}/metrics", timeout=5)
    finally:
        net.close()


def test_a_bad_metrics_option_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        used = taken.getsockname()[1]
        free = free_port()
        cases = [
            (["--metrics", "h:p"], "'--metrics'"),
            (["--metrics", "127.0.0.1:99999"], "'--metrics'"),
            (["--metrics", "x" * 5000], "'--metrics'"),
            (["--metrics", f"127.0.0.1:{used}"], "in use"),
            (["--listen", "127.0.0.1:0", "--metrics", "192.0.2.1:9000"],
             "not an address of this machine"),
            (["--listen", f"127.0.0.1:{free}", "--metrics", f"127.0.0.1:{free}"],
             "cannot share the C12.22 port"),
        ]
        for extra, words in cases:
            args = ["relay", "--master", "--ap-title", MASTER, *extra]
            if "--listen" not in extra:
                args += ["--listen", "127.0.0.1:0"]
            line = assert_usage_error(run(args, tmp_path), "relay", words)
            assert len(line) < 200, line
