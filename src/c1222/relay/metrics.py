"""A relay's Prometheus metrics (issue 14; docs/network.md "Metrics"), served by
``c1222 relay --metrics HOST:PORT``.

:class:`RelayCollector` reads them when scraped from what the relay already counts
(``Relay.statistics()``, the same counters as Table 127; ``Relay.refused`` and
``Relay.denied`` by response code; the routes and pending forwards; at the master its
registrar and notification queues): nothing is counted twice and nothing runs between
scrapes. :func:`relay_registry` puts it in a ``CollectorRegistry`` of the relay's own (never
the global one: several relays in one process keep their own counts) with the endpoint's
connections, refusals and segments (:class:`~c1222.transport.metrics.EndpointCollector`) and
the process's figures. :class:`MetricsServer` serves a registry with
:func:`~c1222.transport.http.metrics_app` under :func:`~c1222.transport.http.uvicorn_config`'s
bounds.

Labels take values only from fixed sets: a drop reason of this module, a response code of
the standard (``other`` beyond), the relay's role. No AP title, address or anything else a
peer picks is ever a label, so a network of any size makes the same series.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from c1222.codes import ResponseCode
from c1222.transport.endpoint import Address
from c1222.transport.http import HttpLimits, metrics_app, uvicorn_config
from c1222.transport.metrics import EndpointCollector, code_label

__all__ = ["DROP_REASONS", "PREFIX", "MetricsServer", "RelayCollector", "relay_registry"]

PREFIX = "c1222_relay"
#: ``apdus_dropped_total{reason}`` -> the ``Relay.stats`` counter of that reason.
DROP_REASONS = {
    "undecodable": "reception_errors",         # the header did not decode
    "unmatched_response": "responses_unmatched",  # a response nobody here asked for
    "requester_gone": "responses_orphaned",    # its requester's association had closed
    "overloaded": "overload_drops",            # even the BSY answers were backed up
}
#: Codes whose series exist from the start (so a rate() works from the first one): the errors
#: a relay answers with itself (docs/network.md "Forwarding", "Security rules").
REFUSAL_CODES = (ResponseCode.UAT, ResponseCode.NETR, ResponseCode.NETT, ResponseCode.BSY,
                 ResponseCode.ISC, ResponseCode.ONP)
DENIAL_CODES = (ResponseCode.ISC, ResponseCode.ONP)

#: Relay.stats counter -> (metric name after the prefix, help); all counters.
_COUNTERS = {
    "apdus_received": ("apdus_received", "APDUs received (whole, after reassembly)"),
    "apdus_sent": ("apdus_sent", "APDUs sent: forwarded, passed back, and the relay's own "
                                 "answers and requests"),
    "apdus_forwarded": ("apdus_forwarded", "requests forwarded towards their called title and "
                                           "responses passed back to their requester"),
    "octets_received": ("octets_received", "octets of the APDUs received"),
    "octets_sent": ("octets_sent", "octets of the APDUs sent"),
    "loops_refused": ("loops_refused", "requests refused (NETR) as having gone round a "
                                       "routing loop"),
    "registrations_received": ("registrations_received",
                               "Register requests received from downstream (relay), "
                               "registrations accepted (master)"),
    "registrations_forwarded": ("registrations_forwarded",
                                "Register and Deregister requests forwarded upstream"),
    "deregistrations_requested": ("deregistrations", "Deregister requests forwarded "
                                                     "(relay) or served (master)"),
}
_UPSTREAM = {
    "registrations_sent": ("upstream_registrations_sent",
                           "Register requests this relay sent upstream for itself"),
    "registrations_failed": ("upstream_registrations_failed",
                             "registrations of this relay upstream that failed (retried)"),
}
_MASTER = {
    "notifications_sent": ("notifications_sent",
                           "Register and Deregister notifications a notification host took"),
    "notifications_failed": ("notifications_failed",
                             "notifications that failed (retried), or fell off a full queue"),
}


def _by_code(name: str, text: str, counts: Mapping[int, int],
             seeded: tuple[ResponseCode, ...]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, text, labels=["code"])
    values = {code_label(code): 0 for code in seeded}
    for code, n in counts.items():
        label = code_label(code)
        values[label] = values.get(label, 0) + n
    for label, n in sorted(values.items()):
        family.add_metric([label], n)
    return family


class RelayCollector(Collector):
    """Every ``c1222_relay_*`` figure of one :class:`~c1222.relay.node.Relay` but the
    endpoint's, read from it when scraped."""

    def __init__(self, relay: Any) -> None:
        self.relay = relay

    def collect(self) -> Iterator[Metric]:
        relay, p = self.relay, PREFIX
        stats = relay.statistics()
        info = GaugeMetricFamily(f"{p}_info", "1; role: master or relay", labels=["role"])
        info.add_metric(["master" if relay.master else "relay"], 1)
        yield info
        for key, (name, text) in _COUNTERS.items():
            yield CounterMetricFamily(f"{p}_{name}", text, value=stats.get(key, 0))
        dropped = CounterMetricFamily(f"{p}_apdus_dropped", "APDUs dropped unanswered, by "
                                      "reason", labels=["reason"])
        counted = 0
        for reason, key in DROP_REASONS.items():
            counted += stats.get(key, 0)
            dropped.add_metric([reason], stats.get(key, 0))
        # a drop the relay gives no reason for (none today) still adds up to the total
        dropped.add_metric(["other"], max(stats.get("apdus_dropped", 0) - counted, 0))
        yield dropped
        yield _by_code(f"{p}_refusals", "error responses the relay itself answered with, by "
                       "response code (UAT no route, NETR next hop unreachable, NETT no answer "
                       "in time, BSY too many pending, ISC/ONP a Register refused)",
                       relay.refused, REFUSAL_CODES)
        denied: dict[int, int] = dict(relay.denied)
        if relay.registrar is not None:
            for code, n in relay.registrar.refused.items():
                denied[code] = denied.get(code, 0) + n
        yield _by_code(f"{p}_registrations_denied", "Register (and Deregister) requests "
                       "refused: by this relay, the relays above or the master; by response "
                       "code", denied, DENIAL_CODES)
        yield GaugeMetricFamily(f"{p}_routes", "routes (titles reachable through this relay) "
                                "held now", value=stats.get("routes", 0))
        yield GaugeMetricFamily(f"{p}_routes_limit", "routes held at most (--max-routes)",
                                value=relay.config.max_routes)
        yield GaugeMetricFamily(f"{p}_pending_forwards", "forwarded requests awaiting their "
                                "answer", value=stats.get("pending_forwards", 0))
        yield GaugeMetricFamily(f"{p}_pending_forwards_limit", "forwarded requests awaiting "
                                "answers at most (--max-pending; BSY beyond)",
                                value=relay.config.max_pending)
        if relay.master:
            for key, (name, text) in _MASTER.items():
                yield CounterMetricFamily(f"{p}_{name}", text, value=stats.get(key, 0))
            yield GaugeMetricFamily(f"{p}_registered_nodes", "nodes registered with the master "
                                    "now", value=len(relay.registrar.nodes))
            yield GaugeMetricFamily(f"{p}_notification_hosts", "notification hosts "
                                    "registered now", value=len(relay.hosts))
            yield GaugeMetricFamily(f"{p}_notifications_queued", "notifications waiting to be "
                                    "sent, all hosts", value=relay.notifications_queued)
        else:
            for key, (name, text) in _UPSTREAM.items():
                yield CounterMetricFamily(f"{p}_{name}", text, value=stats.get(key, 0))
            event = relay.upstream_registered
            yield GaugeMetricFamily(f"{p}_upstream_registered", "1 while this relay is "
                                    "registered upstream",
                                    value=1 if event is not None and event.is_set() else 0)


def relay_registry(relay: Any, *, process: bool = True) -> CollectorRegistry:
    """A registry of ``relay``'s own: :class:`RelayCollector`, the endpoint's collector and
    (``process``) the process's CPU, memory and open files, Python's version and GC."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(relay))
    registry.register(EndpointCollector(relay.endpoint, PREFIX))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class MetricsServer:
    """``registry`` served over HTTP (``GET``/``HEAD`` on any path; 405 otherwise) by uvicorn
    on the running event loop, bounded by ``http_limits`` (connections, header size and
    time; transport/http.py). ``await start()`` returns the address; ``await stop()``."""

    def __init__(self, registry: CollectorRegistry, address: Address,
                 http_limits: HttpLimits | None = None) -> None:
        import uvicorn

        self.config = uvicorn_config(metrics_app(registry), address[0], address[1],
                                     http_limits, lifespan="off")
        self.server = uvicorn.Server(self.config)
        # the node's own loop handles Ctrl-C and stops the server
        self.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        self._task: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket | None = None) -> Address:
        """Serve on ``sock`` (already bound, as ``cli.params.listening_socket`` makes) or on
        the address given; OSError when it cannot listen (bound here: uvicorn would exit the
        process instead)."""
        if sock is None:
            sock = _bound(self.config.host, self.config.port)
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
                raise OSError(f"cannot serve metrics on {self.config.host}:{self.config.port}")
            await asyncio.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return host, port

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)


def _bound(host: str, port: int) -> socket.socket:
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
