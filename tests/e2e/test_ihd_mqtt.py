"""`c1222 ihd --mqtt` against a real Mosquitto: the display in Home Assistant (issue 14).

A real `c1222 meter` feeds a real `c1222 ihd --mqtt mqtt://...`; a test client subscribes with
aiomqtt as Home Assistant would: the retained discovery configs carry what Home Assistant
needs, the state comes about once a second with the meter's values (the same as the page's
/api/live), availability goes ``offline`` on a clean stop and, through the last will, on
``kill -9``; configs come again when Home Assistant says ``online``; the display reconnects
after the broker restarts. ``/metrics`` is read with prometheus_client's own parser.

Hostile: a broker that refuses the connection or closes it (one WARNING, the page keeps
working), a huge retained message on ``homeassistant/status``, a "broker" that sends a packet
claiming 200 MB, and a TLS broker whose certificate the display does not trust.

The broker is a private Mosquitto on a free port (tests/mosquitto.py explains why).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from c1222.ihd.mqtt import SENSORS
from tests.e2e.procs import Running
from tests.mosquitto import Mosquitto, broker

NODE = "c1222_2_16_124_113620_1_22_0_123_8437"
STATE = f"c1222/{NODE}/state"
AVAILABILITY = f"c1222/{NODE}/availability"
CONFIG = "homeassistant/sensor/" + NODE + "/{}/config"
DEADLINE = 30.0


@dataclass(frozen=True)
class Names:
    """The topics of one display: the defaults on a private broker; on the machine's broker
    (no mosquitto binary) a prefix and node id of the test's own, so that a Home Assistant
    using that broker neither sees the test's meter nor hears its "online"."""

    prefix: str = "homeassistant"
    node: str = NODE

    @property
    def state(self) -> str:
        return f"c1222/{self.node}/state"

    @property
    def availability(self) -> str:
        return f"c1222/{self.node}/availability"

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    def config(self, key: str) -> str:
        return f"{self.prefix}/sensor/{self.node}/{key}/config"

    def args(self) -> list[str]:
        return [] if self == Names() else ["--mqtt-prefix", self.prefix,
                                           "--mqtt-node-id", self.node]


@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    retain: bool
    at: float  # monotonic

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """An MQTT client in a thread of its own, collecting every message on ``topics``."""

    def __init__(self, host: str, port: int, topics: tuple[str, ...] = ("#",)) -> None:
        self.host, self.port, self.topics = host, port, topics
        self.messages: list[Msg] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._run(),), daemon=True)
        self._stop: asyncio.Event | None = None
        self._client: aiomqtt.Client | None = None
        self._thread.start()
        assert self._ready.wait(15), "the test's MQTT client did not connect"

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        async with aiomqtt.Client(self.host, self.port) as client:
            self._client = client
            for topic in self.topics:
                await client.subscribe(topic, qos=1)
            self._ready.set()
            reader = asyncio.create_task(self._read(client))
            await self._stop.wait()
            reader.cancel()

    async def _read(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            self.messages.append(Msg(str(m.topic), payload, bool(m.retain), time.monotonic()))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        assert self._client is not None
        asyncio.run_coroutine_threadsafe(
            self._client.publish(topic, payload, qos=1, retain=retain), self._loop).result(15)

    def wait(self, what: str, test: Callable[[list[Msg]], Any],
             timeout: float = DEADLINE) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = test(list(self.messages))
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {what} in {timeout} s; got "
                             f"{[(m.topic, m.payload[:80]) for m in self.messages[-20:]]}")

    def on(self, topic: str, since: float = 0.0) -> list[Msg]:
        return [m for m in self.messages if m.topic == topic and m.at >= since]

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


def retained(host: str, port: int, topic: str, timeout: float = DEADLINE,
             want: bytes | None = None) -> bytes:
    """The retained message on ``topic`` (a fresh client, as Home Assistant after a restart),
    polled until it is ``want`` when given."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        sub = Subscriber(host, port, (topic,))
        try:
            got = sub.wait("retained message", lambda ms: [m for m in ms if m.retain], 2.0)
            last = got[-1].payload
        except AssertionError:
            last = None
        finally:
            sub.close()
        if last is not None and (want is None or last == want):
            return last
    raise AssertionError(f"retained {topic}: {last!r}, wanted {want!r}")


def metrics(web: str) -> dict[str, float]:
    """``/metrics`` through prometheus_client's parser: sample name{labels} -> value."""
    text = httpx.get(f"{web}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


def start_display(tmp: Path, url: str, *extra: str) -> tuple[Running, str, tuple[str, int]]:
    ihd = Running(["ihd", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--state-dir",
                   str(tmp / "ihd"), "--mqtt", url, *extra])
    try:
        feed = ihd.address()
        page = ihd.wait_for(r"page at http (\S+):(\d+)")
        ihd.wait_for("publishing to Home Assistant")
    except BaseException:
        ihd.kill()
        raise
    return ihd, f"http://{page.group(1)}:{page.group(2)}", feed


def start_meter(tmp: Path, feed: tuple[str, int]) -> Running:
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--ihd", f"{feed[0]}:{feed[1]}",
                     "--state-dir", str(tmp / "meter")])
    meter.address()
    return meter


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Any]:
    """A private broker (the test stops it, or needs it to itself)."""
    b = broker(tmp_path, private=True)
    yield b
    b.stop()


@pytest.fixture
def any_broker(tmp_path: Path) -> Iterator[tuple[Any, Names]]:
    """A private broker, else the machine's with names of the test's own (cleaned after)."""
    b = broker(tmp_path)
    tag = uuid.uuid4().hex[:12]
    names = Names() if b.private else Names(f"c1222-test-{tag}", f"test_{tag}")
    yield b, names
    if not b.private:  # leave no retained config or availability behind
        sub = Subscriber(b.host, b.port, ())
        for topic in [names.config(x.key) for x in SENSORS] + [names.availability]:
            sub.publish(topic, b"", retain=True)
        sub.close()
    b.stop()


def test_home_assistant_sees_the_meter(tmp_path: Path, any_broker: tuple[Any, Names]) -> None:
    mosquitto, n = any_broker
    sub = Subscriber(mosquitto.host, mosquitto.port, (f"{n.prefix}/#", f"c1222/{n.node}/#"))
    ihd, web, feed = start_display(tmp_path, mosquitto.url, *n.args())
    meter = start_meter(tmp_path, feed)
    try:
        # --- discovery: every sensor, with what Home Assistant and its Energy dashboard need
        configs = sub.wait("every config", lambda ms: (
            {k: m.json() for k in (s.key for s in SENSORS) for m in ms
             if m.topic == n.config(k)} if all(
                any(m.topic == n.config(s.key) for m in ms) for s in SENSORS) else None))
        for s in SENSORS:
            c = configs[s.key]
            assert c["unique_id"] == f"{n.node}_{s.key}"
            assert c["state_topic"] == n.state and c["availability_topic"] == n.availability
            assert c["value_template"] == f"{{{{ value_json.{s.key} }}}}"
            assert c["device"]["identifiers"] == [n.node]
            for field in ("device_class", "state_class"):
                assert c.get(field) == getattr(s, field)
            assert c.get("unit_of_measurement") == s.unit
        energy, power, bill = configs["energy"], configs["power"], configs["bill"]
        assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) \
            == ("energy", "total_increasing", "kWh")
        assert (power["device_class"], power["state_class"], power["unit_of_measurement"]) \
            == ("power", "measurement", "W")
        assert (bill["device_class"], bill["state_class"], bill["unit_of_measurement"]) \
            == ("monetary", "total", "KRW")
        assert bill["last_reset_value_template"] == "{{ value_json.last_reset }}"
        # once the meter's Table 0 is in, the device names its maker (the simulator's SIMU)
        sub.wait("the maker in the device", lambda ms: any(
            m.topic == n.config("power") and m.json()["device"]["manufacturer"] == "SIMU"
            for m in ms))
        assert retained(mosquitto.host, mosquitto.port, n.config("energy"))
        assert retained(mosquitto.host, mosquitto.port, n.availability) == b"online"

        # --- state about once a second, with the meter's values (those of the page)
        start = time.monotonic()
        states = sub.wait("5 states", lambda ms: (
            s if len(s := [m for m in ms if m.topic == n.state and m.at >= start]) >= 5 else None))
        gaps = [b.at - a.at for a, b in zip(states, states[1:])]
        assert max(gaps) < 5.0, gaps  # a hang bound, not a speed test
        # once a second, not a flood: no more states than seconds (a slow machine sends fewer)
        span = states[-1].at - states[0].at
        assert len(states) - 1 <= span + 1.5, (len(states), span)
        live = sub.wait("a state equal to /api/live", lambda ms: _matching(web, sub, n))
        state, sample = live
        assert state["power"] == sample["active_power"] and state["voltage"] == sample["voltage"]
        assert state["current"] == sample["current"]
        assert state["power_factor"] == sample["power_factor"]
        assert state["energy"] == round(sample["energy_wh"] / 1000, 3)
        summary = httpx.get(f"{web}/api/summary", timeout=10).json()
        assert state["bill"] == summary["bill"]["total"] and isinstance(state["bill"], int)
        assert state["block"] == summary["block"]["block"]
        assert state["last_reset"].startswith(summary["month"] + "-01T00:00:00")

        # --- Home Assistant restarts: its "online" brings every config again
        mark = time.monotonic()
        sub.publish(n.status, b"online")
        sub.wait("configs again", lambda ms: all(
            any(m.topic == n.config(s.key) and m.at >= mark for m in ms) for s in SENSORS))

        # --- /metrics, with the Prometheus client's own parser: counters move
        first = metrics(web)
        assert first["c1222_ihd_mqtt_connected"] == 1
        assert first["c1222_ihd_feed_age_seconds"] < 10
        second = sub.wait("counters to move", lambda ms: _moved(web, first))
        assert second["c1222_ihd_samples_total"] > first["c1222_ihd_samples_total"]
        assert second["c1222_ihd_feed_writes_accepted_total"] > \
            first["c1222_ihd_feed_writes_accepted_total"]
        assert second["c1222_ihd_http_requests_total{path=/api/live,status=200}"] >= 1
        assert second["c1222_ihd_tcp_connections"] >= 1  # the meter's feed connection

        # --- a clean stop: "offline", kept for whoever subscribes next
        meter.stop()
        assert ihd.stop() == 0
        assert retained(mosquitto.host, mosquitto.port, n.availability, want=b"offline")
        assert not any("Traceback" in line for line in ihd.lines), ihd.lines
    finally:
        sub.close()
        meter.stop()
        ihd.stop()


def _matching(web: str, sub: Subscriber, n: Names
              ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    sample = httpx.get(f"{web}/api/live", timeout=10).json()["sample"]
    if sample is None:
        return None
    for m in reversed(sub.on(n.state)):
        state = m.json()
        if state["time"] == sample["time"]:
            return state, sample
    return None


def _moved(web: str, before: dict[str, float]) -> dict[str, float] | None:
    now = metrics(web)
    keys = ("c1222_ihd_mqtt_messages_published_total", "c1222_ihd_samples_total",
            "c1222_ihd_feed_writes_accepted_total")
    return now if all(now[k] > before[k] for k in keys) else None


def test_kill_9_leaves_offline_through_the_last_will(tmp_path: Path,
                                                     any_broker: tuple[Any, Names]) -> None:
    b, n = any_broker
    ihd, web, _ = start_display(tmp_path, b.url, *n.args())
    try:
        assert retained(b.host, b.port, n.availability, want=b"online")
        ihd.kill()
        assert retained(b.host, b.port, n.availability, want=b"offline")
    finally:
        ihd.kill()


def test_the_display_reconnects_when_the_broker_comes_back(tmp_path: Path,
                                                          mosquitto: Mosquitto) -> None:
    ihd, web, _ = start_display(tmp_path, mosquitto.url)
    try:
        assert _poll(lambda: metrics(web)["c1222_ihd_mqtt_connected"] == 1)
        mosquitto.stop()
        ihd.wait_for(r"WARNING.*MQTT broker .*keeps working")
        assert _poll(lambda: metrics(web)["c1222_ihd_mqtt_connected"] == 0)
        assert httpx.get(f"{web}/api/live", timeout=10).status_code == 200  # still working
        mosquitto.start()
        ihd.wait_for(r"WARNING.*MQTT broker .*connected again", timeout=60)
        # the broker kept nothing (no persistence): "online" is the display's new announcement
        assert retained(mosquitto.host, mosquitto.port, AVAILABILITY, want=b"online")
        assert metrics(web)["c1222_ihd_mqtt_connections_total"] >= 2
        assert ihd.stop() == 0
        assert not any("Traceback" in line for line in ihd.lines), ihd.lines
    finally:
        ihd.kill()


def _poll(test: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():
            return True
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------------------------------
# Hostile brokers


class SlammingServer:
    """Accepts TCP connections and closes each at once (a broker that hangs up)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.accepted = 0
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("kind", ["refuses", "hangs up"])
def test_a_broker_that_refuses_or_hangs_up_is_one_warning(tmp_path: Path, kind: str) -> None:
    slam = None
    if kind == "refuses":  # a password file with nobody in it: CONNACK "not authorised"
        (tmp_path / "passwd").write_text("")
        b = broker(tmp_path, private=True,
                   extra=["allow_anonymous false", f"password_file {tmp_path / 'passwd'}"])
        url = f"mqtt://someone:wrong@{b.host}:{b.port}"
    else:
        slam = SlammingServer()
        url = f"mqtt://127.0.0.1:{slam.port}"
    ihd, web, _ = start_display(tmp_path, url)
    try:
        ihd.wait_for(r"WARNING.*MQTT broker")
        assert "wrong" not in "\n".join(ihd.lines)  # the password is never shown
        # it keeps trying (with back-off) and keeps quiet about it; the page keeps working
        if slam is not None:
            # (aiomqtt notices a hang-up before CONNACK at its time-out only, 5 s)
            assert _poll(lambda: slam.accepted >= 2)
        else:
            assert _poll(lambda: b.log.read_text().count("New connection from") >= 3)
        assert httpx.get(f"{web}/api/live", timeout=10).status_code == 200
        assert metrics(web)["c1222_ihd_mqtt_connected"] == 0
        assert sum("WARNING" in line or "ERROR" in line for line in ihd.lines) == 1, ihd.lines
        assert ihd.stop() == 0
        assert not any("Traceback" in line for line in ihd.lines), ihd.lines
    finally:
        ihd.kill()
        if slam is not None:
            slam.close()
        else:
            b.stop()


#: A retained message far over what the display takes (c1222.ihd.mqtt.MAX_PACKET), and the
#: display's own peak RSS without it (66 MB measured, with or without the message; without
#: the bound, 264 MB).
HUGE = 64 * 1024 * 1024
BASE_RSS_KIB = 100 * 1024


def test_a_huge_retained_status_is_not_taken(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sub = Subscriber(mosquitto.host, mosquitto.port, ("homeassistant/#",))
    ihd = None
    try:
        sub.publish("homeassistant/status", b"online" + b" " * HUGE, retain=True)
        ihd, web, _ = start_display(tmp_path, mosquitto.url)
        assert retained(mosquitto.host, mosquitto.port, AVAILABILITY, want=b"online")
        # a normal "online" still brings the configs: the display is subscribed and listening
        mark = time.monotonic()
        sub.publish("homeassistant/status", b"online")
        sub.wait("configs again", lambda ms: any(
            m.topic == CONFIG.format("power") and m.at >= mark for m in ms))
        assert metrics(web)["c1222_ihd_mqtt_connected"] == 1
        peak = _peak_rss_kib(ihd)  # the broker sent the huge message before that "online"
        assert peak < BASE_RSS_KIB + HUGE // 1024 // 2, peak  # it never held the message
        assert ihd.stop() == 0
        assert not any("Traceback" in line for line in ihd.lines), ihd.lines
    finally:
        sub.close()
        if ihd is not None:
            ihd.kill()


def _peak_rss_kib(proc: Running) -> int:
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class OversizeBroker:
    """Answers CONNACK (MQTT 5), then sends a PUBLISH that claims ``claim`` bytes and streams
    them until the client hangs up: a broker that ignores our Maximum Packet Size."""

    def __init__(self, claim: int = 200 * 1024 * 1024) -> None:
        self.claim = claim
        self.sent: list[int] = []  # bytes of the claimed packet sent, per connection
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        length, n = b"", self.claim
        while True:  # MQTT's variable-length integer
            n, digit = divmod(n, 128)
            length += bytes([digit | (0x80 if n else 0)])
            if not n:
                break
        sent = 0
        with conn:
            try:
                conn.recv(4096)  # CONNECT
                conn.sendall(b"\x20\x03\x00\x00\x00" + b"\x30" + length)
                chunk = b"\0" * 65536
                while sent < self.claim:
                    conn.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
        self.sent.append(sent)

    def close(self) -> None:
        self.sock.close()


def test_a_broker_sending_a_huge_packet_is_hung_up_on(tmp_path: Path) -> None:
    evil = OversizeBroker()
    ihd, web, _ = start_display(tmp_path, f"mqtt://127.0.0.1:{evil.port}")
    try:
        ihd.wait_for(r"WARNING.*MQTT broker .*sent a 209715200-byte packet; at most 4096")
        assert _poll(lambda: len(evil.sent) >= 2)  # it hung up, and came back after a pause
        # what it read before hanging up is what the sockets' buffers held, not the 200 MB
        assert max(evil.sent) < evil.claim // 4, evil.sent
        assert _peak_rss_kib(ihd) < BASE_RSS_KIB, _peak_rss_kib(ihd)
        assert httpx.get(f"{web}/api/live", timeout=10).status_code == 200
        assert ihd.stop() == 0
        # one line for the trouble, none for each attempt, no "connected again" that was not
        assert sum("WARNING" in line or "ERROR" in line for line in ihd.lines) == 1, ihd.lines
        assert not any("Traceback" in line for line in ihd.lines), ihd.lines
    finally:
        ihd.kill()
        evil.close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, PEM."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "broker.crt", folder / "broker.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_mqtts_with_the_brokers_ca_and_not_without(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    b = broker(tmp_path, private=True, extra=[f"certfile {cert}", f"keyfile {key}"])
    url = f"mqtts://127.0.0.1:{b.port}"
    good, web, _ = start_display(tmp_path / "good", url, "--mqtt-ca", str(cert))
    bad, bad_web, _ = start_display(tmp_path / "bad", url)  # the system's CAs: refused
    try:
        assert _poll(lambda: metrics(web)["c1222_ihd_mqtt_connected"] == 1)
        bad.wait_for(r"WARNING.*MQTT broker mqtts://127\.0\.0\.1.*(certificate|verify)")
        assert metrics(bad_web)["c1222_ihd_mqtt_connected"] == 0
        assert good.stop() == 0 and bad.stop() == 0
    finally:
        good.kill()
        bad.kill()
        b.stop()
