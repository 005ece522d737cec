"""The display's ``/metrics`` for Prometheus (issue 14; docs/ihd.md "Metrics").

Every app gets its own :class:`prometheus_client.CollectorRegistry` (never the global one, so
two displays in one process, as in the tests, do not clash). The figures are read when
Prometheus scrapes, from the objects that already count them (the history, the C12.22 node,
the MQTT publisher): nothing is counted twice and nothing runs between scrapes.

Metrics (all prefixed ``c1222_ihd_``):

``feed_age_seconds`` (gauge): seconds since the meter's last sample was received (absent
before the first); ``samples_total``: samples the history accepted;
``feed_writes_accepted_total``: table writes from the meter answered OK;
``feed_writes_refused_total{reason}``: writes refused (title, table, checksum, no_context,
undecodable); ``mqtt_connected`` (gauge): 1 while connected to the MQTT broker;
``mqtt_messages_published_total``; ``mqtt_connections_total``;
``http_requests_total{path,status}``: HTTP requests answered, by route (a fixed set: any other
path counts as ``other``, so a scanner cannot grow the label set). See docs/ihd.md "Metrics".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "c1222_ihd_"
#: The paths counted by name; any other (a scanner's guesses) is "other", so the label set
#: stays bounded whatever a client asks for.
PATHS = frozenset({"/", "/api/live", "/api/history", "/api/history.csv", "/api/summary",
                   "/api/month", "/events", "/metrics", "/api/notices", "/api/power-limit"})


def route_of(path: str) -> str:
    if path in PATHS:
        return path
    return "/static" if path.startswith("/static/") else "other"


class HttpCount:
    """ASGI middleware: counts each answered request by route and status."""

    def __init__(self, app: Any, counts: Counter[tuple[str, str]]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope.get("path", ""))

        async def counting_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.counts[(route, str(message["status"]))] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


class HttpCollector(Collector):
    def __init__(self, counts: Counter[tuple[str, str]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(PREFIX + "http_requests", "HTTP requests answered",
                                     labels=["path", "status"])
        for (path, status), n in sorted(self.counts.items()):
            family.add_metric([path, status], n)
        yield family


class HistoryCollector(Collector):
    """Feed age and accepted samples, from :class:`~c1222.ihd.history.History`."""

    def __init__(self, history: Any) -> None:
        self.history = history

    def collect(self) -> Iterator[Metric]:
        age = self.history.age()
        if age is not None:
            yield GaugeMetricFamily(PREFIX + "feed_age_seconds",
                                    "Seconds since the meter's last sample was received",
                                    value=max(age, 0.0))
        yield CounterMetricFamily(PREFIX + "samples", "Samples the history accepted",
                                  value=self.history.seq)


class NodeCollector(Collector):
    """Table writes accepted and refused, from :class:`~c1222.ihd.node.DisplayServices`."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(PREFIX + "feed_writes_accepted",
                                  "Table writes from the meter answered OK",
                                  value=self.services.accepted)
        refused = CounterMetricFamily(PREFIX + "feed_writes_refused",
                                      "Table writes refused, by reason", labels=["reason"])
        for reason, n in sorted(dict(self.services.refused).items()):
            refused.add_metric([reason], n)
        yield refused


class MqttCollector(Collector):
    """Connection state and messages, from :class:`~c1222.ihd.mqtt.HomeAssistant`
    (or None without ``--mqtt``: connected 0, nothing published)."""

    def __init__(self, feed: Any) -> None:
        self.feed = feed

    def collect(self) -> Iterator[Metric]:
        f = self.feed
        yield GaugeMetricFamily(PREFIX + "mqtt_connected", "1 while connected to the MQTT broker",
                                value=1 if f is not None and f.connected else 0)
        yield CounterMetricFamily(PREFIX + "mqtt_messages_published", "MQTT messages published",
                                  value=0 if f is None else f.published)
        yield CounterMetricFamily(PREFIX + "mqtt_connections", "MQTT connections made",
                                  value=0 if f is None else f.connections)


def install(app: Any, history: Any, collectors: Iterable[Collector] = ()
            ) -> CollectorRegistry:
    """Count ``app``'s requests (outermost middleware) and give it a registry of its own
    with the history's, the requests' and ``collectors``' figures; ``/metrics`` serves it."""
    counts: Counter[tuple[str, str]] = Counter()
    app.add_middleware(HttpCount, counts=counts)
    reg = CollectorRegistry(auto_describe=False)
    for c in (HistoryCollector(history), HttpCollector(counts), *collectors):
        reg.register(c)
    return reg
