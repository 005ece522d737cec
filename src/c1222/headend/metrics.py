"""The head-end's Prometheus metrics (docs/headend.md, "Metrics"), served at ``/metrics``.

:class:`HeadEndMetrics` holds them in a ``CollectorRegistry`` of its own, one per
:class:`~c1222.headend.server.HeadEnd`, so several head-ends in one process never share a
series. The head-end updates them where the events happen (a registration, a message in or
out, a collection, a failed storage write); gauges of its state (nodes registered, meters
flagged, connections open) are read when scraped.

Label values come only from bounded sets: the kind of node (from its node-type bits), the
outcome of a read, EPSEM service names of the codec and response codes of the standard
(``other`` for anything else; :mod:`c1222.transport.metrics`). No label carries an AP title,
address or anything else a peer picks, so a fleet (or a hostile peer) cannot multiply the
series: the number of series is fixed by the code, not by the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from c1222.codec.acse import Apdu
from c1222.codec.services import RegisterRequest, Request, Response
from c1222.codes import NodeType, ResponseCode
from c1222.errors import (
    DecodeError,
    LimitExceeded,
    RemoteProtocolError,
    ResponseTimeout,
    SecurityError,
    ServiceError,
    TransportError,
)
from c1222.headend.storage import StorageError
from c1222.transport.endpoint import Endpoint
from c1222.transport.metrics import LATENCY_BUCKETS, EndpointCollector, code_label, service_label

__all__ = ["CollectionCounts", "NODE_KINDS", "PREFIX", "READ_OUTCOMES", "HeadEndMetrics", "node_kind",
           "read_outcome"]

PREFIX = "c1222_headend"
#: The ``node_type`` label: a node's role, from its node-type bits (C12.22 digest 7.1).
NODE_KINDS = ("master_relay", "relay", "host", "end_device", "other")
#: The ``outcome`` label of a read (a collection of one meter); see :func:`read_outcome`.
READ_OUTCOMES = ("ok", "timeout", "unreachable", "refused", "security_error", "decode_error",
                 "over_limit", "protocol_error", "storage_error", "error")


def node_kind(node_type: int) -> str:
    """The role a Register's node-type byte claims, the most central first: a node that is
    a relay and an end device counts as a relay."""
    if node_type & NodeType.MASTER_RELAY:
        return "master_relay"
    if node_type & NodeType.RELAY:
        return "relay"
    if node_type & (NodeType.HOST | NodeType.NOTIFICATION_HOST | NodeType.AUTHENTICATION_HOST):
        return "host"
    if node_type & NodeType.END_DEVICE:
        return "end_device"
    return "other"


def read_outcome(exc: BaseException | None) -> tuple[str, str]:
    """``(outcome, code)`` of a read that ended with ``exc`` (None: it succeeded). ``code``
    is the response code of a refused read (``isc``, ``dnr``, ...), else empty."""
    if exc is None:
        return "ok", ""
    if isinstance(exc, (asyncio.TimeoutError, asyncio.CancelledError, ResponseTimeout)):
        return "timeout", ""
    if isinstance(exc, (TransportError, OSError)):
        return "unreachable", ""
    if isinstance(exc, ServiceError):
        return "refused", code_label(exc.code)
    if isinstance(exc, SecurityError):
        return "security_error", ""
    if isinstance(exc, DecodeError):  # before LimitExceeded: DecodeLimitExceeded is both
        return "decode_error", ""
    if isinstance(exc, LimitExceeded):
        return "over_limit", ""
    if isinstance(exc, RemoteProtocolError):
        return "protocol_error", ""
    if isinstance(exc, StorageError):
        return "storage_error", ""
    return "error", ""


class HeadEndMetrics:
    """Every metric of one head-end; ``registry`` is what ``/metrics`` serves."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, p = self.registry, PREFIX
        if process:  # the process's CPU, memory, open files; Python's version and GC
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.registrations = Counter(
            f"{p}_registrations", "Register requests, by the node's role and the answer "
            "(ok, or the response code of a refusal)", ["node_type", "outcome"], registry=r)
        self.nodes_registered = Gauge(f"{p}_nodes_registered", "nodes registered now",
                                      registry=r)
        self.reads = Counter(
            f"{p}_reads", "collections of one meter (scheduled or asked for), by outcome; "
            "code: the response code of a refused read", ["outcome", "code"], registry=r)
        self.read_seconds = Histogram(
            f"{p}_read_duration_seconds", "time a successful collection of one meter took",
            buckets=LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram(
            f"{p}_request_duration_seconds", "round trip of each request the head-end sent "
            "and got an answer to", buckets=LATENCY_BUCKETS, registry=r)
        self.readings_stored = Counter(f"{p}_readings_stored", "readings newly stored",
                                       registry=r)
        self.meters_over_limit = Gauge(
            f"{p}_meters_over_limit", "registered meters flagged over a collector bound",
            registry=r)
        self.meters_failing = Gauge(
            f"{p}_meters_failing", "registered meters whose latest collection failed",
            registry=r)
        self.requests = Counter(
            f"{p}_requests", "EPSEM request services in messages sent (out) and received "
            "(in), by service", ["direction", "service"], registry=r)
        self.responses = Counter(
            f"{p}_responses", "EPSEM response services in messages received (in: meters' "
            "answers) and sent (out: the head-end's), by the service answered and the "
            "response code", ["direction", "service", "code"], registry=r)
        self.undecoded = Counter(
            f"{p}_undecoded_messages", "messages that did not decode (or not verify)",
            ["direction"], registry=r)
        self.storage_errors = Counter(
            f"{p}_storage_errors", "storage writes that failed, by what was written",
            ["operation"], registry=r)
        self.log_dropped = Counter(
            f"{p}_log_dropped_messages", "messages left out of the log while storage stalled",
            registry=r)
        self.log_queue = Gauge(f"{p}_log_queue_messages", "messages waiting to be logged",
                               registry=r)
        # series that exist from the start, so a rate() works from the first event
        for outcome in READ_OUTCOMES:
            if outcome != "refused":
                self.reads.labels(outcome, "")
        self.registrations.labels("end_device", "ok")
        for operation in ("readings", "node", "message_log"):
            self.storage_errors.labels(operation)
        for direction in ("in", "out"):
            self.undecoded.labels(direction)

    def watch(self, *, endpoint: Endpoint, nodes: Callable[[], float],
              over_limit: Callable[[], float], failing: Callable[[], float],
              log_queue: Callable[[], float],
              collection: Callable[[], CollectionCounts] | None = None) -> None:
        """Read these when scraped: the endpoint's connections and refusals, the gauges
        of the head-end's state, and the collector's accounting."""
        self.registry.register(EndpointCollector(endpoint, PREFIX))
        if collection is not None:
            self.registry.register(CollectionCollector(collection))
        self.nodes_registered.set_function(nodes)
        self.meters_over_limit.set_function(over_limit)
        self.meters_failing.set_function(failing)
        self.log_queue.set_function(log_queue)

    # ------------------------------------------------------------------ events

    def registered(self, node_type: int) -> None:
        self.registrations.labels(node_kind(node_type), "ok").inc()

    def message(self, direction: str, apdu: Apdu | None, answers: Apdu | None = None) -> None:
        """One message in or out. A response's services are counted by the request services
        they answer (``answers``, the request message, paired in order); a refused Register
        counts as a registration with the refusal's code (a granted one is counted by
        :meth:`registered`, which also sees those answered with no response)."""
        if apdu is None:
            self.undecoded.labels(direction).inc()
            return
        services = apdu.epsem.services
        asked = ([s for s in answers.epsem.services if isinstance(s, Request)]
                 if answers is not None else [])
        answered = 0
        for service in services:
            if isinstance(service, Request):
                self.requests.labels(direction, service_label(service)).inc()
            elif isinstance(service, Response):
                request = asked[answered] if answered < len(asked) else None
                answered += 1
                code = code_label(service.response_code)
                self.responses.labels(direction, service_label(request), code).inc()
                if (direction == "out" and isinstance(request, RegisterRequest)
                        and service.response_code != ResponseCode.OK):
                    self.registrations.labels(node_kind(request.node_type), code).inc()

    def read(self, exc: BaseException | None, seconds: float) -> None:
        """One collection of a meter ended: with ``exc``, or (None) successfully after
        ``seconds``."""
        outcome, code = read_outcome(exc)
        self.reads.labels(outcome, code).inc()
        if exc is None:
            self.read_seconds.observe(seconds)
        elif outcome == "storage_error":
            self.storage_errors.labels("readings").inc()


@dataclass
class CollectionCounts:
    """What the collector's scheduler counted (:mod:`c1222.headend.schedule`): ``totals``
    over all intervals and ``last`` of the last whole interval, by count name (due, read,
    failed, late, skipped, retries, gone, in a fixed order); failed reads by reason
    (``timeout``, ``refused:isc``, ...); reads running and owed now."""

    totals: dict[str, int]
    last: dict[str, int]
    reasons: dict[str, int]
    running: int
    owed: int


class CollectionCollector(Collector):
    """The collection series, read from the scheduler's counts when scraped (the counts
    live in one place, the plan; the pure planner stays free of Prometheus). The ``reason``
    of a failure is split into the ``outcome`` and ``code`` labels of ``reads_total``, a
    fixed set."""

    HELP = {"due": "meters the collector set out to read (owned, registered meters, once "
                   "an interval)",
            "read": "meters read (after retries), counted in the interval they were due in",
            "failed": "meters whose reads failed after every attempt of their interval",
            "late": "meters read after their interval ended",
            "skipped": "meters passed over, a read of an earlier interval still owed",
            "retries": "attempts after a meter's first in an interval",
            "gone": "due meters that left (deregistered, forgotten) before being read"}

    def __init__(self, counts: Callable[[], CollectionCounts]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        c, p = self.counts(), PREFIX
        for name, value in c.totals.items():
            yield CounterMetricFamily(f"{p}_collection_meters_{name}",
                                      f"{self.HELP.get(name, name)}, every interval",
                                      value=value)
        for name, value in c.last.items():
            yield GaugeMetricFamily(f"{p}_collection_last_meters_{name}",
                                    f"{self.HELP.get(name, name)}, in the last whole interval "
                                    "(late reads still add to it)", value=value)
        failures = CounterMetricFamily(
            f"{p}_collection_failures", "meters whose scheduled reads failed, by the reason "
            "of the last attempt", labels=["outcome", "code"])
        for reason, value in c.reasons.items():
            outcome, _, code = reason.partition(":")
            failures.add_metric([outcome, code], value)
        yield failures
        yield GaugeMetricFamily(f"{p}_collection_reads_running", "scheduled reads under way",
                                value=c.running)
        yield GaugeMetricFamily(f"{p}_collection_reads_owed", "meters whose read of this "
                                "or an earlier interval is queued, waiting to retry or "
                                "running", value=c.owed)
