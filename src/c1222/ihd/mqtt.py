"""The display in Home Assistant over MQTT (issue 14; docs/ihd.md "Home Assistant").

The display publishes its meter as one Home Assistant device through MQTT discovery
(Home Assistant's "MQTT discovery" and "MQTT sensor" pages):

* a **retained config** per sensor at ``<prefix>/sensor/<node_id>/<key>/config`` with
  ``unique_id``, ``device``, ``state_topic``, ``value_template``, ``availability_topic``,
  ``device_class``, ``state_class`` and ``unit_of_measurement`` (:func:`discovery`), so the
  energy sensor (kWh, ``energy``, ``total_increasing``) and the bill (KRW, ``monetary``,
  ``total`` with ``last_reset`` at the start of the billing month) can be picked in the
  Energy dashboard without YAML;
* one **JSON state** at ``c1222/<node_id>/state`` once a second while the meter feeds the
  display (:func:`state`); with no fresh sample nothing is published and the sensors expire
  (``expire_after``), so Home Assistant never shows an old value as the present one;
* **availability** ``online``/``offline`` at ``c1222/<node_id>/availability`` (retained), with
  ``offline`` as the last will (a ``kill -9`` of the display) and published on a clean stop;
* the configs and state **again** when Home Assistant announces ``online`` on
  ``<prefix>/status`` (its birth message after a restart).

The broker going away never stops the display: :class:`HomeAssistant` reconnects with a
back-off (1 s doubling to 30 s), logs one WARNING when it is lost and one when it is back, and
queues nothing while down (each tick publishes the latest state only). It speaks MQTT 5 and
tells the broker the largest packet it takes (:data:`MAX_PACKET`), so a huge retained message on
``<prefix>/status`` is dropped by the broker, not held by the display.

The parsing and the payloads here are pure (:func:`parse_url`, :func:`discovery`,
:func:`state`); :class:`HomeAssistant` is the asyncio client (aiomqtt, imported on first use).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from c1222 import __version__
from c1222.errors import ConfigurationError

log = logging.getLogger("c1222.ihd.mqtt")

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
#: Home Assistant's default discovery prefix.
DEFAULT_PREFIX = "homeassistant"
#: Where the display's own topics live: c1222/<node_id>/state and .../availability.
TOPIC_ROOT = "c1222"
#: Home Assistant's node_id and object_id alphabet (discovery topic format).
NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PREFIX = 128
MAX_USER = 128
MAX_PASSWORD = 1024
#: Largest packet the broker may send us (MQTT 5 Maximum Packet Size): we only ever receive
#: Home Assistant's "online"/"offline"; anything bigger is dropped by the broker.
MAX_PACKET = 4096
#: Seconds between state messages.
INTERVAL = 1.0
#: Back-off between connection attempts: doubling from the first to the last.
BACKOFF = (1.0, 30.0)
#: Seconds a connection must have lasted for the back-off to start again from the first.
STABLE = 30.0
#: Seconds a sensor keeps its value without a new state (the page's stale notice comes at 5).
EXPIRE_AFTER = 10
#: Seconds for a connect or a publish to complete before the connection counts as lost
#: (a broker that hangs up before its CONNACK is only noticed then: aiomqtt waits for it).
TIMEOUT = 5.0
KEEPALIVE = 15


@dataclass(frozen=True)
class MqttSettings:
    """Where and how to publish. ``node_id`` None: made from the meter's AP title."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    prefix: str = DEFAULT_PREFIX
    node_id: str | None = None
    ca_file: str | None = None

    @property
    def url(self) -> str:
        """The broker's URL as shown in logs: never the password."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_url(text: str) -> MqttSettings:
    """``mqtt://[USER[:PASSWORD]@]HOST[:PORT]`` or ``mqtts://...`` (TLS, port 8883).

    ConfigurationError says what is wrong, without echoing a password."""
    if len(text) > 1000:
        raise ConfigurationError(f"the MQTT URL is {len(text)} characters long")
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:  # a port that is not a number or out of range, a bad [v6]
        raise ConfigurationError(f"not an MQTT URL: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigurationError("an MQTT URL starts with mqtt:// or mqtts:// "
                                 "(e.g. mqtt://127.0.0.1:1883)")
    if not host:
        raise ConfigurationError("the MQTT URL has no host (e.g. mqtt://127.0.0.1:1883)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError("the MQTT URL is mqtt://[USER[:PASSWORD]@]HOST[:PORT] with "
                                 "nothing after the port")
    if port == 0:
        raise ConfigurationError("the MQTT URL's port cannot be 0")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    check_credentials(username, password)
    return MqttSettings(host=host, port=port or DEFAULT_PORTS[parts.scheme],
                        tls=parts.scheme == "mqtts", username=username, password=password)


def check_credentials(username: str | None, password: str | None) -> None:
    """A user name we can show in a log line, a password MQTT can carry (never echoed)."""
    if username is not None and (not 0 < len(username) <= MAX_USER
                                 or not username.isprintable()):
        raise ConfigurationError(f"an MQTT user name is 1 to {MAX_USER} printable characters")
    if password is not None and len(password.encode()) > MAX_PASSWORD:
        raise ConfigurationError(f"an MQTT password is at most {MAX_PASSWORD} bytes")


def check_prefix(prefix: str) -> str:
    """A discovery prefix is a topic without wildcards, empty levels or a leading '$'."""
    if not prefix or len(prefix) > MAX_PREFIX:
        raise ConfigurationError(f"the discovery prefix must be 1 to {MAX_PREFIX} characters")
    if any(c in prefix for c in "+#\0") or prefix.startswith("$") or "" in prefix.split("/"):
        raise ConfigurationError("the discovery prefix is a topic such as 'homeassistant' "
                                 "(no +, #, empty levels or leading $)")
    return prefix


def check_node_id(node_id: str) -> str:
    if not NODE_ID.fullmatch(node_id):
        raise ConfigurationError("a node id is 1 to 64 letters, digits, '_' or '-'")
    return node_id


def node_id_of(meter_title: str) -> str:
    """The default node id: the meter's AP title, ``c1222_2_16_124_113620_1_22_0_123_8437``."""
    return "c1222_" + "_".join(arc for arc in meter_title.split(".") if arc)


@dataclass(frozen=True)
class Sensor:
    """One Home Assistant sensor of the meter's device, read from the JSON state's ``key``."""

    key: str
    name: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    precision: int | None = None
    icon: str | None = None
    #: the state carries ``last_reset`` (a total that starts again each billing month)
    last_reset: bool = False


#: What the display publishes (Home Assistant sensor device classes and state classes).
SENSORS = (
    Sensor("power", "Power", "W", "power", "measurement", 0),
    Sensor("energy", "Energy delivered", "kWh", "energy", "total_increasing", 3),
    Sensor("voltage", "Voltage", "V", "voltage", "measurement", 1),
    Sensor("current", "Current", "A", "current", "measurement", 2),
    Sensor("apparent_power", "Apparent power", "VA", "apparent_power", "measurement", 0),
    Sensor("power_factor", "Power factor", None, "power_factor", "measurement", 3),
    # monetary takes state class total only; last_reset marks the start of each month's bill
    Sensor("bill", "Bill this month", "KRW", "monetary", "total", 0, last_reset=True),
    Sensor("block", "Tariff block", None, None, None, 0, icon="mdi:stairs"),
    Sensor("projection", "Month-end projection", "KRW", "monetary", None, 0),
)


def topics(settings: MqttSettings, node_id: str) -> dict[str, str]:
    base = f"{TOPIC_ROOT}/{node_id}"
    return {"state": f"{base}/state", "availability": f"{base}/availability",
            "status": f"{settings.prefix}/status"}


def device(meter_title: str, node_id: str, *, manufacturer: str | None = None,
           page: str | None = None) -> dict[str, Any]:
    """The Home Assistant device of the meter: identified by its AP title, named after its
    last arc; ``manufacturer`` from Table 0's DEVICE_CLASS when the display has it."""
    out: dict[str, Any] = {
        "identifiers": [node_id],
        "name": f"Electricity meter {meter_title.rsplit('.', 1)[-1]}",
        "manufacturer": manufacturer or "unknown (ANSI C12.22 meter)",
        "model": "ANSI C12.19/C12.22 electricity meter",
        "serial_number": meter_title,
        "sw_version": f"c1222 in-home display {__version__}",
    }
    if page:
        out["configuration_url"] = page
    return out


def discovery(settings: MqttSettings, node_id: str, dev: Mapping[str, Any]
              ) -> dict[str, dict[str, Any]]:
    """The retained discovery configs, topic -> payload (Home Assistant MQTT discovery:
    ``<prefix>/<component>/<node_id>/<object_id>/config``)."""
    t = topics(settings, node_id)
    out: dict[str, dict[str, Any]] = {}
    for s in SENSORS:
        config: dict[str, Any] = {
            "name": s.name,
            "unique_id": f"{node_id}_{s.key}",
            "state_topic": t["state"],
            # "None" (a JSON null) is Home Assistant's "unknown": no bill without a tariff
            "value_template": f"{{{{ value_json.{s.key} }}}}",
            "availability_topic": t["availability"],
            "payload_available": "online",
            "payload_not_available": "offline",
            "expire_after": EXPIRE_AFTER,
            "device": dict(dev),
            "origin": {"name": "c1222", "sw_version": __version__},
        }
        for name, value in (("unit_of_measurement", s.unit), ("device_class", s.device_class),
                            ("state_class", s.state_class), ("icon", s.icon),
                            ("suggested_display_precision", s.precision)):
            if value is not None:
                config[name] = value
        if s.last_reset:
            config["last_reset_value_template"] = "{{ value_json.last_reset }}"
        out[f"{settings.prefix}/sensor/{node_id}/{s.key}/config"] = config
    return out


def state(summary: Mapping[str, Any], last_reset: str | None = None) -> dict[str, Any] | None:
    """The JSON state from the display's ``/api/summary`` body (``c1222.ihd.web.summary``);
    None when there is no fresh sample (nothing to publish: the sensors expire).
    ``last_reset``: the start of the billing month (ISO 8601 with its offset)."""
    live = summary.get("live") or {}
    sample = live.get("sample")
    if sample is None or live.get("stale", True):
        return None
    bill, projection, block = summary.get("bill"), summary.get("projection"), summary.get("block")
    return {
        "time": sample["time"],
        "power": sample["active_power"],
        "energy": round(sample["energy_wh"] / 1000.0, 3),
        "voltage": sample["voltage"],
        "current": sample["current"],
        "apparent_power": sample["apparent_power"],
        "power_factor": sample["power_factor"],
        "month_kwh": summary.get("month_kwh"),
        "bill": None if bill is None else bill["total"],
        "last_reset": last_reset,
        "block": None if block is None else block["block"],
        "projection": None if projection is None else projection["total"],
    }


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class HomeAssistant:
    """Publishes the display to Home Assistant until :meth:`stop`; never raises for the broker.

    ``summary`` returns the display's summary body (``c1222.ihd.web.summary``) and the start
    of its billing month (ISO 8601) when called;
    ``dev`` the device dict (it may change once the meter's Table 0 arrives: the configs are
    published again then). ``connected``, ``published`` and ``connections`` are for /metrics.
    """

    def __init__(self, settings: MqttSettings, node_id: str, *,
                 summary: Callable[[], tuple[Mapping[str, Any], str | None]],
                 dev: Callable[[], dict[str, Any]], interval: float = INTERVAL) -> None:
        self.settings = settings
        self.node_id = node_id
        self.topics = topics(settings, node_id)
        self._summary = summary
        self._device = dev
        self.interval = interval
        self.connected = False
        self.published = 0
        self.connections = 0
        self.failures = 0  # consecutive failed attempts
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._announced: dict[str, Any] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="mqtt")

    async def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` and disconnect (a clean stop sends no last will)."""
        self._stop.set()
        if self._task is None:
            return
        if self.connected:  # say "offline" (the task does, then disconnects)
            await asyncio.wait({self._task}, timeout=timeout)
        # connecting or backing off (nobody to tell), or a broker that hangs: just go
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def run(self) -> None:
        import aiomqtt

        delay = BACKOFF[0]
        loop = asyncio.get_running_loop()
        _quiet_dropped_futures(loop, aiomqtt.MqttError)
        while not self._stop.is_set():
            began = loop.time()
            try:
                await self._session()
            # (anything else too: the display must outlive a surprise in its MQTT side)
            except Exception as exc:  # aiomqtt.MqttError, OSError, ssl.SSLError, ...
                self._failed(exc)
            else:
                continue  # stopped
            if self.failures == 1 and loop.time() - began > STABLE:
                delay = BACKOFF[0]  # it had been up a while: retry soon
            # (a broker that drops each connection at once backs off like one that refuses)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, BACKOFF[1])

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        # paho's own account of a lost connection says more than aiomqtt's "not connected"
        reason = _CLIENT_ERRORS.last or _reason(exc)
        if self.failures == 1:
            log.warning("MQTT broker %s: %s; the display keeps working and retries "
                        "(back-off up to %.0f s)", self.settings.url, reason, BACKOFF[1])
        else:
            log.debug("MQTT broker %s: attempt %d failed: %s", self.settings.url,
                      self.failures, reason)

    def _client(self) -> Any:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.MaximumPacketSize = MAX_PACKET
        s = self.settings
        tls = None
        if s.tls:
            tls = ssl.create_default_context(cafile=s.ca_file)
        client = aiomqtt.Client(
            # the pid: two displays given one node id must not take each other's session
            # over in a loop
            s.host, s.port, username=s.username, password=s.password,
            identifier=f"c1222-ihd-{self.node_id}-{os.getpid()}",
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(self.topics["availability"], b"offline", qos=1, retain=True),
            timeout=TIMEOUT, keepalive=KEEPALIVE, properties=props, tls_context=tls,
            logger=_CLIENT_LOG,
            # bounded: we publish the latest state only and read one small topic
            max_queued_incoming_messages=16, max_queued_outgoing_messages=64)
        _bound_packets(client)
        return client

    async def _session(self) -> None:
        _CLIENT_ERRORS.last = None
        client = self._client()
        try:
            await self._connected_session(client)
        finally:
            # aiomqtt leaves a lost connection's error in a future nobody reads, which asyncio
            # would log with a traceback when it is collected: read it (it is ours to report)
            lost = getattr(client, "_disconnected", None)
            if isinstance(lost, asyncio.Future) and lost.done() and not lost.cancelled():
                lost.exception()

    async def _connected_session(self, client: Any) -> None:
        async with client:
            self.connected = True
            self.connections += 1
            try:
                await client.subscribe(self.topics["status"], qos=1)
                await self._announce(client)
                # back only once it works (a broker that hangs up at once is still failing)
                if self.failures:
                    log.warning("MQTT broker %s: connected again after %d failed attempt(s)",
                                self.settings.url, self.failures)
                else:
                    log.info("MQTT broker %s: connected", self.settings.url)
                self.failures = 0
                tasks = {asyncio.create_task(self._listen(client)),
                         asyncio.create_task(self._tick(client)),
                         asyncio.create_task(self._stop.wait())}
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                await self._publish(client, self.topics["availability"], b"offline", qos=1,
                                    retain=True)
            finally:
                self.connected = False

    async def _publish(self, client: Any, topic: str, payload: bytes, *, qos: int = 0,
                       retain: bool = False) -> None:
        await client.publish(topic, payload, qos=qos, retain=retain, timeout=TIMEOUT)
        self.published += 1

    async def _announce(self, client: Any) -> None:
        """Configs, then ``online``, then the state (Home Assistant's order: an entity is
        created from its config, then takes its availability and value)."""
        dev = self._device()
        for topic, config in discovery(self.settings, self.node_id, dev).items():
            await self._publish(client, topic, _dumps(config), qos=1, retain=True)
        self._announced = dev
        await self._publish(client, self.topics["availability"], b"online", qos=1, retain=True)
        await self._send_state(client)

    async def _send_state(self, client: Any) -> None:
        # the summary reads the history's database: off the event loop the node answers on
        body = state(*await asyncio.to_thread(self._summary))
        if body is not None:
            await self._publish(client, self.topics["state"], _dumps(body))

    async def _tick(self, client: Any) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.interval
            await asyncio.sleep(max(due - loop.time(), 0.0))
            if loop.time() - due > self.interval:  # a stall: skip, do not catch up
                due = loop.time()
            if self._device() != self._announced:  # the meter's Table 0 arrived
                await self._announce(client)
            else:
                await self._send_state(client)

    async def _listen(self, client: Any) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if message.topic.matches(self.topics["status"]) and payload.strip() == b"online":
                log.info("Home Assistant is online: discovery configs published again")
                await self._announce(client)


class _LastError(logging.Handler):
    """Keeps the last error paho-mqtt or aiomqtt logged, for our one WARNING line."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = _reason(Exception(record.getMessage()))


#: The client library's log: its errors feed our WARNING instead of being printed as they
#: come (several lines per lost connection, some of them about its own internals).
_CLIENT_LOG = logging.getLogger("c1222.ihd.mqtt.client")
_CLIENT_LOG.propagate = False
_CLIENT_ERRORS = _LastError()
_CLIENT_LOG.addHandler(_CLIENT_ERRORS)


def _quiet_dropped_futures(loop: asyncio.AbstractEventLoop, error: type) -> None:
    """aiomqtt replaces, unread, the future holding a connection's error when the connection
    is lost as it is made (a broker that hangs up right after CONNACK); asyncio would log it
    with a traceback when collected. We report that loss ourselves: drop only those."""
    previous = loop.get_exception_handler()
    if getattr(previous, "c1222_mqtt", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), error) and "future" in context:
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.c1222_mqtt = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


def _bound_packets(client: Any) -> None:
    """Hang up on a broker that sends a packet over MAX_PACKET despite the Maximum Packet
    Size we declared (a broker that ignores it, or a hostile one): paho-mqtt would read any
    packet whole (up to 256 MB), so the check is put on its socket reads. paho counts the
    error as a lost connection, and we reconnect with back-off."""
    paho = getattr(client, "_client", None)
    recv = getattr(paho, "_sock_recv", None)
    if recv is None or not isinstance(getattr(paho, "_in_packet", None), dict):
        return  # another paho-mqtt: the broker's own enforcement of MAX_PACKET remains

    def bounded_recv(bufsize: int) -> bytes:
        packet = paho._in_packet
        if packet.get("have_remaining") and packet.get("remaining_length", 0) > MAX_PACKET:
            raise ConnectionError(f"the broker sent a {packet['remaining_length']}-byte packet;"
                                  f" at most {MAX_PACKET} are taken")
        return recv(bufsize)  # type: ignore[no-any-return]

    paho._sock_recv = bounded_recv


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
