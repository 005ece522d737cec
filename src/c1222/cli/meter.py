"""`c1222 meter`: run the software meter until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import click

from c1222.cli.lifecycle import run_until_interrupted
from c1222.cli.params import (
    AP_TITLE, APDU_SIZE, APDU_SIZE_HELP, KEY, KEY_ID, SECURITY_MODE, SEGMENT_SIZE,
    SEGMENT_SIZE_HELP, SPEED, AddressType, FiniteRange, InputFile, OutputDir, OutputFile,
    bind_problem, checked, seconds,
)
from c1222.errors import ConfigurationError
from c1222.meter.config import MAX_START_TIME


def _options(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@click.command()
@click.option("--listen", type=AddressType(listen=True),
              help="HOST:PORT for TCP and UDP (port 0 picks one) [127.0.0.1:1153]")
@click.option("--headend", type=AddressType(), help="HOST:PORT of the head-end to register with")
@click.option("--headend-ap-title", type=AP_TITLE, help="the head-end's AP title [...123.4]")
@click.option("--relay", type=AddressType(),
              help="HOST:PORT of a C12.22 relay to register through (instead of --headend); "
                   "without --ap-title the master relay assigns the title")
@click.option("--master-ap-title", type=AP_TITLE,
              help="with --relay: the master relay's AP title, when known (the first Register "
                   "is addressed to it; else to no title until the master answers)")
@click.option("--ihd", type=AddressType(1155),
              help="HOST:PORT of the in-home display to feed every second")
@click.option("--ihd-ap-title", type=AP_TITLE,
              help="the display's AP title [2.16.124.113620.1.22.0.123.8437.1]")
@click.option("--profile", "profile_path", type=InputFile(),
              help="TOML meter profile (command-line options override it)")
@click.option("--state-dir", type=OutputDir(),
              help="where registers, load profile and event log survive restarts")
@click.option("--speed", type=SPEED, help="simulated seconds per real second [1]")
@click.option("--security-mode", type=SECURITY_MODE,
              help="weakest mode accepted, and the mode the meter sends in [0]")
@click.option("--key", "keys", type=KEY, multiple=True,
              help="a C12.22 key (decimal key id, 32 hex digits); repeatable")
@click.option("--key-id", type=KEY_ID, help="key id the meter sends with [the first key]")
@click.option("--ap-title", type=AP_TITLE,
              help="the meter's AP title [2.16.124.113620.1.22.0.123.8437]")
@click.option("--serial-number", help="electronic serial number")
@click.option("--pcap", type=OutputFile(), help="record every APDU to this pcap")
@click.option("--start-time", type=FiniteRange(0, MAX_START_TIME),
              help="simulated clock start, Unix seconds [now]")
@click.option("--max-connections", type=click.IntRange(1, 65535),
              help="TCP connections at once [256]")
@click.option("--message-timeout", type=seconds(maximum=86400),
              help="seconds from an APDU's first byte to its last before the connection is "
                   "closed [30]")
@click.option("--idle-timeout", type=seconds(maximum=86400),
              help="seconds a quiet TCP connection is kept [300]")
@click.option("--segment-size", type=SEGMENT_SIZE, help=SEGMENT_SIZE_HELP)
@click.option("--max-apdu-size", type=APDU_SIZE,
              help=APDU_SIZE_HELP + ", and largest response sent (RSTL beyond) [32767]")
@click.option("-v", "--verbose", count=True,
              help="log more (-v info, -vv debug); warnings are always shown")
def meter(profile_path: Path | None, keys: tuple[str, ...], verbose: int,
          **options: Any) -> None:
    """Run a simulated ANSI C12.22 meter serving its C12.19 tables on TCP and UDP.

    It prints the address it listens on once ready, registers with --headend (or through
    the C12.22 relay at --relay, taking the AP title the master relay assigns), feeds the
    in-home display at --ihd every second, and stops cleanly on Ctrl-C. It warns when the
    head-end cannot be reached or refuses its keys, then again at intervals, and when that ends.
    """
    from c1222.meter import config as meter_config
    from c1222.meter.node import Meter

    try:
        data = meter_config.load_profile(profile_path) if profile_path else {}
        overrides = _options(**options)
        if keys:
            overrides["keys"] = list(data.get("keys", [])) + list(keys)
        if (overrides.get("relay") or data.get("relay")) and "ap_title" not in overrides \
                and "ap_title" not in data and "request_title" not in data:
            overrides["request_title"] = True  # ask the master relay for a title (0D 00)
        config = meter_config.from_mapping({**data, **overrides})
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    # What the profile gave, the options' types did not check: the same checks here.
    for name, hint, check in (("state_dir", "state_dir", OutputDir()),
                              ("pcap", "pcap", OutputFile())):
        if name in data and name not in overrides:
            checked(check, getattr(config, name), f"profile {hint}")
    problem = bind_problem(config.listen)
    if problem:
        raise click.BadParameter(problem, param_hint="'--listen'")
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        node = Meter(config)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    asyncio.run(_run(node))


async def _run(node: Any) -> None:
    # stdout, like the listening line: tests and scripts read the title a relay's master
    # relay assigned from here
    node.on_retitled = lambda title: click.echo(f"meter {title} assigned by the master relay")

    async def start() -> list[str]:
        host, port = await node.start()
        title = node.ap_title if node.ap_title.arcs else "(title to be assigned)"
        return [f"meter {title} listening on tcp+udp {host}:{port}"]

    await run_until_interrupted("meter", start, node.stop)
