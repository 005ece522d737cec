"""`c1222 relay`: a C12.22 relay, or with --master the master relay (docs/network.md)."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import click

from c1222.cli.lifecycle import run_until_interrupted
from c1222.cli.params import (
    AP_TITLE, APDU_SIZE, APDU_SIZE_HELP, KEY, KEY_ID, SECURITY_MODE, SEGMENT_SIZE,
    SEGMENT_SIZE_HELP, AddressType, OutputFile, check_keys, key_table, listening_socket,
    seconds,
)
from c1222.limits import DEFAULT_MAX_APDU_SIZE
from c1222.errors import ConfigurationError
from c1222.transport.endpoint import Address

#: Where --metrics HOST serves when no port is given.
METRICS_PORT = 9122


@click.command()
@click.option("--ap-title", type=AP_TITLE, required=True, help="the relay's own AP title")
@click.option("--listen", type=AddressType(listen=True), default="127.0.0.1:1153",
              show_default=True, help="HOST:PORT for C12.22 over TCP and UDP (port 0 picks one)")
@click.option("--native-address", type=AddressType(),
              help="HOST:PORT the relay registers as its native address (where relays above "
                   "reconnect to it) [the --listen address; give it when listening on 0.0.0.0]")
@click.option("--master", is_flag=True,
              help="be the master relay: the registration authority of the network")
@click.option("--upstream", type=AddressType(),
              help="HOST:PORT of the next relay up, or of the master relay (not with --master)")
@click.option("--master-ap-title", type=AP_TITLE,
              help="the master relay's AP title [learned from its Register response]")
@click.option("--assign-branch", type=AP_TITLE, default="2.16.124.113620.1.22.0.123.9000",
              show_default=True,
              help="master: titles assigned to nodes registering without one are BRANCH.N")
@click.option("--reg-period", type=click.IntRange(1, 0xFFFFFF), default=3600,
              show_default=True,
              help="seconds a registration lasts (master: granted at most; relay: asked for)")
@click.option("--reg-delay", type=click.IntRange(0, 0xFFFF), default=60, show_default=True,
              help="master: the most seconds a node waits at random before re-registering")
@click.option("--forward-timeout", type=seconds(maximum=3600), default=20.0, show_default=True,
              help="seconds to wait for the answer to a forwarded request before NETT")
@click.option("--connect-timeout", type=seconds(maximum=3600), default=5.0, show_default=True,
              help="seconds to connect to a next hop before NETR")
@click.option("--max-routes", type=click.IntRange(1, 10_000_000), default=100_000,
              show_default=True, help="routes (registered titles) kept at most")
@click.option("--max-pending", type=click.IntRange(1, 10_000_000), default=4096,
              show_default=True, help="forwarded requests awaiting an answer (BSY beyond)")
@click.option("--max-per-source", type=click.IntRange(0, 10_000_000), default=64,
              show_default=True,
              help="titles one address may register through this relay (0: no cap)")
@click.option("--max-connections", type=click.IntRange(1, 65535), default=1024,
              show_default=True, help="TCP connections at once (raise it for a fleet of "
              "simulated meters registering over TCP through this relay)")
@click.option("--max-connections-per-address", "max_per_address",
              type=click.IntRange(1, 65535), default=256, show_default=True,
              help="TCP connections at once from one IP address")
@click.option("--multicast", "multicast", type=AP_TITLE, multiple=True,
              help="a multicast AP title the relay also answers to (Table 122); repeatable")
@click.option("--security-mode", type=SECURITY_MODE, default=0, show_default=True,
              help="mode of the relay's own requests and the weakest it accepts for itself")
@click.option("--key", "keys", type=KEY, multiple=True,
              help="a C12.22 key of the network; repeatable")
@click.option("--key-id", type=KEY_ID, help="key id to send with [the first key]")
@click.option("--segment-size", type=SEGMENT_SIZE, help=SEGMENT_SIZE_HELP)
@click.option("--max-apdu-size", type=APDU_SIZE, default=DEFAULT_MAX_APDU_SIZE,
              show_default=True, help=APDU_SIZE_HELP)
@click.option("--pcap", type=OutputFile(), help="record every APDU to this pcap")
@click.option("--metrics", type=AddressType(METRICS_PORT, listen=True, udp=False),
              help=f"HOST:PORT to serve Prometheus metrics on, at /metrics (port 0 picks one; "
                   f"HOST alone: port {METRICS_PORT}) [none]")
@click.option("-v", "--verbose", count=True,
              help="log more (-v info, -vv debug); warnings are always shown")
def relay(ap_title: str, listen: Address, master: bool, upstream: Address | None,
          keys: tuple[str, ...], key_id: int | None, security_mode: int,
          pcap: Path | None, multicast: tuple[str, ...], metrics: Address | None, verbose: int,
          **options: Any) -> None:
    """Run a C12.22 relay (with --upstream) or the master relay (--master).

    A relay forwards APDUs by called AP title between the nodes registered through it and its
    upstream, learns routes from the Register responses it passes down, and answers UAT, NETR
    or NETT when it cannot deliver. The master relay registers nodes, assigns titles from
    --assign-branch, and notifies the head-ends that registered as notification hosts. Both
    serve Identify, Read (Tables 0, 1, 122, 127), Resolve and Trace under their own title.
    """
    from c1222.relay.node import Relay, RelayConfig

    if master and upstream is not None:
        raise click.BadParameter("a master relay has no upstream", param_hint="'--upstream'")
    if not master and upstream is None:
        raise click.UsageError("give --upstream HOST:PORT (the next relay up) or --master")
    if metrics is not None and metrics[1] and metrics[1] == listen[1]:
        raise click.BadParameter("the metrics cannot share the C12.22 port",
                                 param_hint="'--metrics'")
    table = key_table(keys)
    check_keys(table, key_id, security_mode, what="relay")
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = RelayConfig(ap_title=ap_title, listen=listen, master=master, upstream=upstream,
                             security_mode=security_mode, keys=table, key_id=key_id,
                             pcap=pcap, multicast=multicast, **options)
        node = Relay(config)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    asyncio.run(_run(node, metrics))


async def _run(node: Any, metrics: Address | None) -> None:
    from c1222.relay.metrics import MetricsServer, relay_registry

    server = MetricsServer(relay_registry(node), metrics) if metrics is not None else None

    async def start() -> list[str]:
        web: socket.socket | None = None
        if metrics is not None:  # first: a port taken since the check is one clear line
            web = listening_socket(metrics, "'--metrics'")
        try:
            await node.start()
        except BaseException:
            if web is not None:
                web.close()
            raise
        lines = [node.summary()]
        if server is not None:
            try:
                host, port = await server.start(web)
            except BaseException:
                await node.stop()
                raise
            shown = f"[{host}]" if ":" in host else host  # an IPv6 literal in a URL
            lines.append(f"metrics at http {shown}:{port}  ->  http://{shown}:{port}/metrics")
        return lines

    async def stop() -> None:
        if server is not None:
            await server.stop()
        await node.stop()

    await run_until_interrupted("relay", start, stop)
