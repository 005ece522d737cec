"""Application-layer segmentation with real processes (docs/segmentation.md): the meter's
Table 64 (39,080 bytes) read with ONE Full Read by the head-end through links that carry APDUs
of at most 512 bytes, in security mode 2: the response crosses as segments and arrives whole,
its MAC verified; a 39 KB Full Write crosses the other way the same way. Both nodes record the
wire in pcaps (tests/interop/test_segments_tshark.py hands them to tshark)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from c1222.codec import acse
from c1222.transport.pcap import read_capture
from tests.e2e.procs import Running

METER = "2.16.124.113620.1.22.0.123.8437"
KEY = "2:000102030405060708090A0B0C0D0E0F"
SEGMENT = 512
#: Table 64 of the default profile: 40 blocks x 96 intervals, 2 channels.
TABLE_64_SIZE = 39_080
#: Mid-interval, clock almost frozen: no load-profile interval ends during the test, so
#: Table 64 changes only by our write.
START = "1700000400"


@dataclass
class Network:
    headend: Running
    meter: Running
    web: str
    headend_pcap: Path
    meter_pcap: Path

    def service(self, name: str, params: dict[str, object]) -> dict[str, object]:
        reply = httpx.post(f"{self.web}/api/nodes/{METER}/services/{name}", json=params,
                           timeout=60)
        assert reply.status_code == 200, reply.text
        body: dict[str, object] = reply.json()
        return body


def start(tmp: Path) -> Network:
    headend_pcap, meter_pcap = tmp / "headend.pcap", tmp / "meter.pcap"
    sizes = ["--segment-size", str(SEGMENT), "--max-apdu-size", "65536",
             "--security-mode", "2", "--key", KEY]
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", f"sqlite:///{tmp / 'headend.db'}", "--collect-interval", "3600",
                       "--log-interval", "0", "--pcap", str(headend_pcap), *sizes])
    host, port = headend.address()
    web = headend.wait_for(r"console at http (\S+):(\d+)")
    profile = tmp / "meter.toml"
    profile.write_text("writable_tables = [5, 6, 7, 64]\n")
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend", f"{host}:{port}",
                     "--profile", str(profile), "--state-dir", str(tmp / "meter"),
                     "--speed", "0.01", "--start-time", START, "--pcap", str(meter_pcap),
                     *sizes])
    meter.address()
    network = Network(headend, meter, f"http://{web.group(1)}:{web.group(2)}", headend_pcap,
                      meter_pcap)
    _wait_registered(network)
    return network


def _wait_registered(network: Network, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = httpx.get(f"{network.web}/api/nodes", timeout=10).json()
        if any(n["ap_title"] == METER for n in nodes):
            return
        time.sleep(0.2)
    raise AssertionError("the meter did not register:\n" + "\n".join(network.meter.lines))


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    tmp = tmp_path_factory.mktemp("segmentation")
    running = start(tmp)
    try:
        yield running
    finally:
        assert running.meter.stop() == 0
        assert running.headend.stop() == 0


def table_data(exchange: dict[str, object]) -> str:
    response = exchange["response"]
    # mode 2: the head-end decrypted it and verified its MAC (Requester.accept), or it would
    # report an error and no response tree
    assert isinstance(response, dict) and response["decrypted"]
    services = response["json"]["services"]  # type: ignore[index]
    assert response["json"]["security_mode"] == 2  # type: ignore[index]
    return str(services[-1]["table_data"]["data"])


def apdus(path: Path) -> list[bytes]:
    return [record.data for record in read_capture(path, ports=None)]


def test_table_64_is_read_whole_with_one_full_read_through_512_byte_apdus(
        network: Network) -> None:
    exchange = network.service("read", {"table": 64})
    assert exchange["error"] is None and exchange["response_codes"] == ["ok", "ok"]
    data = bytes.fromhex(table_data(exchange))
    assert len(data) == TABLE_64_SIZE
    response_size = len(bytes.fromhex(str(exchange["response"]["hex"])))  # type: ignore[index]
    assert response_size > TABLE_64_SIZE
    # On the wire: nothing over 512 bytes, and the response went as segments.
    wire = apdus(network.meter_pcap)
    assert max(map(len, wire)) <= SEGMENT
    segments = [h for h in map(acse.segment_header, wire) if h is not None]
    assert any(h.total == response_size for h in segments)
    assert sum(len(h.payload) for h in segments if h.total == response_size) >= response_size


def test_a_full_write_larger_than_512_bytes_crosses_whole(network: Network) -> None:
    before = bytes.fromhex(table_data(network.service("read", {"table": 64})))
    changed = before[:1000] + bytes(b ^ 0x5A for b in before[1000:3000]) + before[3000:]
    written = network.service("write", {"table": 64, "data": changed.hex()})
    assert written["error"] is None and written["response_codes"] == ["ok", "ok"]
    request_size = len(bytes.fromhex(str(written["request"]["hex"])))  # type: ignore[index]
    assert request_size > TABLE_64_SIZE
    after = bytes.fromhex(table_data(network.service("read", {"table": 64})))
    assert after == changed
    wire = apdus(network.headend_pcap)
    assert max(map(len, wire)) <= SEGMENT
    assert any(h is not None and h.total == request_size for h in map(acse.segment_header, wire))
