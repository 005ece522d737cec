"""The pure parts of the display's Home Assistant feed (c1222.ihd.mqtt) and its /metrics
(c1222.ihd.metrics): URLs, names, discovery payloads, the state, the bounded request labels."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from c1222.errors import ConfigurationError
from c1222.ihd import mqtt
from c1222.ihd.history import History, Sample
from c1222.ihd.metrics import MqttCollector, NodeCollector, route_of
from c1222.ihd.node import DisplayServices
from c1222.ihd.web import create_app, summary


@pytest.mark.parametrize(("url", "want"), [
    ("mqtt://127.0.0.1", ("127.0.0.1", 1883, False, None, None)),
    ("mqtts://broker.lan", ("broker.lan", 8883, True, None, None)),
    ("mqtt://ha:p%40ss:w@[::1]:1884/", ("::1", 1884, False, "ha", "p@ss:w")),
    ("mqtt://user@h:1", ("h", 1, False, "user", None)),
])
def test_urls(url: str, want: tuple[object, ...]) -> None:
    s = mqtt.parse_url(url)
    assert (s.host, s.port, s.tls, s.username, s.password) == want
    assert "p@ss" not in s.url and "p@ss" not in repr(s)  # shown in logs: never the password


@pytest.mark.parametrize("url", [
    "", "127.0.0.1:1883", "http://h", "mqtt://", "mqtt://h:0", "mqtt://h:65536",
    "mqtt://h:x", "mqtt://h/topic", "mqtt://h?x=1", "mqtt://[::1", "mqtt://h#f",
    "mqtt://" + "h" * 2000, "mqtt://a%0Ab@h", "mqtt://" + "u" * 200 + "@h",
    "mqtt://u:" + "p" * 1100 + "@h",
])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        mqtt.parse_url(url)


def test_names() -> None:
    assert mqtt.check_prefix("homeassistant") == "homeassistant"
    assert mqtt.check_prefix("home/ha") == "home/ha"
    for bad in ("", "a/+", "#", "a//b", "/a", "a/", "$SYS", "a\0b", "x" * 200):
        with pytest.raises(ConfigurationError):
            mqtt.check_prefix(bad)
    assert mqtt.check_node_id("c1222_a-1") == "c1222_a-1"
    for bad in ("", "a/b", "a b", "é", "x" * 65):
        with pytest.raises(ConfigurationError):
            mqtt.check_node_id(bad)
    assert mqtt.node_id_of("2.16.124.113620.1.22.0.123.8437") == \
        "c1222_2_16_124_113620_1_22_0_123_8437"
    assert mqtt.NODE_ID.fullmatch(mqtt.node_id_of(".123.8437"))


def test_discovery_payloads() -> None:
    s = mqtt.MqttSettings("h", 1883, prefix="ha")
    dev = mqtt.device("2.16.124.113620.1.22.0.123.8437", "n1", manufacturer="SIMU",
                      page="http://127.0.0.1:8080/")
    configs = mqtt.discovery(s, "n1", dev)
    assert set(configs) == {f"ha/sensor/n1/{x.key}/config" for x in mqtt.SENSORS}
    energy = configs["ha/sensor/n1/energy/config"]
    assert energy["device_class"] == "energy" and energy["state_class"] == "total_increasing"
    assert energy["unit_of_measurement"] == "kWh" and energy["unique_id"] == "n1_energy"
    assert energy["state_topic"] == "c1222/n1/state"
    assert energy["availability_topic"] == "c1222/n1/availability"
    assert energy["device"] == dev and dev["configuration_url"] == "http://127.0.0.1:8080/"
    assert "last_reset_value_template" not in energy
    bill = configs["ha/sensor/n1/bill/config"]
    assert (bill["device_class"], bill["state_class"], bill["unit_of_measurement"]) == \
        ("monetary", "total", "KRW")
    assert "{{ value_json.last_reset }}" == bill["last_reset_value_template"]
    pf = configs["ha/sensor/n1/power_factor/config"]
    assert "unit_of_measurement" not in pf  # Home Assistant's power_factor without a unit
    assert len({c["unique_id"] for c in configs.values()}) == len(mqtt.SENSORS)


def test_state_from_the_summary(tmp_path: Path) -> None:
    h = History(tmp_path, tz="Asia/Seoul")
    try:
        now = time.time()
        assert mqtt.state(summary(h, now, days=False)) is None  # no sample: nothing to publish
        h.add(Sample(now - 1, 221.5, 2.0, 420.0, 443.0, 0.948, 1_234_567.0))
        h.add(Sample(now, 221.0, 2.1, 430.0, 453.0, 0.949, 1_234_568.0))
        body = mqtt.state(summary(h, now, days=False), "2026-12-01T00:00:00+09:00")
        assert body is not None
        assert (body["power"], body["voltage"], body["current"]) == (430.0, 221.0, 2.1)
        assert body["energy"] == 1234.568 and body["power_factor"] == 0.949
        assert isinstance(body["bill"], int) and body["block"] == 1
        assert body["projection"] is None  # under 15 minutes of data: no projection
        assert body["last_reset"] == "2026-12-01T00:00:00+09:00"
        stale = summary(h, now, days=False)
        stale["live"]["stale"] = True
        assert mqtt.state(stale) is None
    finally:
        h.close()


def test_request_labels_are_bounded() -> None:
    assert route_of("/api/live") == "/api/live"
    assert route_of("/static/app.js") == "/static"
    assert {route_of(f"/x{i}") for i in range(1000)} == {"other"}


def test_metrics_in_a_registry_per_app(tmp_path: Path) -> None:
    class Feed:
        connected, published, connections = True, 7, 1

    async def go() -> tuple[str, str]:
        h1, h2 = History(tmp_path / "a"), History(tmp_path / "b")
        services = DisplayServices(lambda s: None)
        services.refused["title"] = 3
        a1 = create_app(h1, collectors=[NodeCollector(services), MqttCollector(Feed())])
        a2 = create_app(h2, collectors=[MqttCollector(None)])  # two apps, one process
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(a1),
                                         base_url="http://t") as c1, \
                    httpx.AsyncClient(transport=httpx.ASGITransport(a2),
                                      base_url="http://t") as c2:
                for path in ("/api/live", "/nope", "/../../etc/passwd", "/api/live"):
                    await c1.get(path)
                return (await c1.get("/metrics")).text, (await c2.get("/metrics")).text
        finally:
            h1.close()
            h2.close()

    one, two = asyncio.run(go())
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(one) for s in f.samples}
    assert values[("c1222_ihd_http_requests_total",
                   (("path", "/api/live"), ("status", "200")))] == 2
    assert values[("c1222_ihd_http_requests_total", (("path", "other"), ("status", "404")))] == 2
    assert values[("c1222_ihd_feed_writes_refused_total", (("reason", "title"),))] == 3
    assert values[("c1222_ihd_mqtt_connected", ())] == 1
    assert values[("c1222_ihd_mqtt_messages_published_total", ())] == 7
    assert ("c1222_ihd_feed_age_seconds", ()) not in values  # no sample yet
    others = {s.name: s.value for f in text_string_to_metric_families(two) for s in f.samples}
    assert others["c1222_ihd_mqtt_connected"] == 0
    assert "c1222_ihd_http_requests_total" not in others  # the other app's requests
