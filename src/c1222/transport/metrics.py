"""Prometheus metrics every C12.22 server shares (the head-end's, a relay's, a display's).

Each server keeps its metrics in its own ``prometheus_client.CollectorRegistry`` (never the
global one, so that several servers in one process do not clash) and serves it with
:func:`c1222.transport.http.metrics_app` or :func:`~c1222.transport.http.metrics_exposition`.
What is here:

* :class:`EndpointCollector`: an :class:`~c1222.transport.endpoint.Endpoint`'s open TCP
  connections, what its bounds refused and the segments it sent, received and refused
  (``Endpoint.stats``), read when scraped;
* :func:`service_label` and :func:`code_label`: label values for EPSEM services and response
  codes. Labels take values only from bounded sets (a service name of the codec, a response
  code of the standard, else ``other``): a label made from what a peer chose, such as an AP
  title, would let a fleet or one hostile peer grow the series without bound;
* :data:`LATENCY_BUCKETS`: histogram buckets from 1 ms to 30 s.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from c1222.codec.services import Request
from c1222.codes import ResponseCode
from c1222.transport.endpoint import Endpoint

__all__ = ["LATENCY_BUCKETS", "EndpointCollector", "SERVICES", "code_label", "service_label"]

#: Seconds, for round trips and reads: a LAN answer (ms) to a response time-out (30 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 20.0, 30.0)


def _services(cls: type[Request]) -> set[str]:
    names = {cls.service}
    for sub in cls.__subclasses__():
        names |= _services(sub)
    return names


#: Every request service the codec decodes (``unknown``: a code the standard does not define).
SERVICES = frozenset(_services(Request) - {"request"})
_CODES = {code.value: code.name.lower() for code in ResponseCode}


def service_label(request: object) -> str:
    """The ``service`` label of a request: its codec name (``full_read``, ``register``, ...),
    ``unknown`` for a request that was not decoded or whose code the standard lacks."""
    name = getattr(request, "service", None)
    return name if isinstance(request, Request) and name in SERVICES else "unknown"


def code_label(code: object) -> str:
    """The ``code`` label of a response code: ``ok``, ``sns``, ``isc``, ... (C12.22 digest
    4.4), ``other`` for a value the standard does not define."""
    return _CODES.get(code, "other") if isinstance(code, int) else "other"


#: Endpoint.stats key -> (metric name after the prefix, help).
_ENDPOINT_STATS = {
    "connections_refused": ("tcp_connections_refused",
                            "TCP connections closed at once: over the per-address or total cap"),
    "connections_evicted": ("tcp_connections_evicted",
                            "idle TCP connections closed to make room for a new one"),
    "frames_refused": ("frames_refused",
                       "APDUs refused before buffering (over the frame cap, or not one APDU "
                       "per datagram)"),
    "timeouts": ("tcp_timeouts", "TCP connections closed idle or mid-APDU past their time-out"),
    "udp_dropped": ("udp_dropped", "UDP requests dropped with the queue full"),
    "decode_errors": ("undecodable_apdus", "APDUs whose header did not decode"),
    "segments_sent": ("segments_sent", "APDU segments sent (APDUs over a link's segment size)"),
    "segments_received": ("segments_received", "APDU segments received"),
    "segment_errors": ("segment_errors", "segments refused (they could not be reassembled)"),
}


class EndpointCollector(Collector):
    """``<prefix>_tcp_connections`` (gauge), the endpoint's refusals and segments
    (counters), read from the endpoint when scraped: nothing is counted twice and the
    endpoint stays free of Prometheus."""

    def __init__(self, endpoint: Endpoint, prefix: str) -> None:
        self.endpoint = endpoint
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(f"{self.prefix}_tcp_connections",
                                "TCP connections open (accepted and made)",
                                value=self.endpoint.connections)
        stats = self.endpoint.stats
        for key, (name, text) in _ENDPOINT_STATS.items():
            yield CounterMetricFamily(f"{self.prefix}_{name}", text, value=stats.get(key, 0))
