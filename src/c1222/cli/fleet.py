"""`c1222 fleet`: thousands of simulated meters against any C12.22 head-end (docs/fleet.md)."""

from __future__ import annotations

from typing import Any

import click

from c1222.cli.params import (
    AP_TITLE, KEY, KEY_ID, SECURITY_MODE, SPEED, AddressType, FiniteRange, bind_problem,
    check_keys, key_table, seconds,
)
from c1222.meter.config import MAX_START_TIME

#: Meters one fleet runs at most, and workers at most.
MAX_METERS = 1_000_000
MAX_WORKERS = 64


@click.command()
@click.option("--meters", type=click.IntRange(1, MAX_METERS), default=100, show_default=True,
              help="simulated meters")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
              help="processes the meters are split across (each on its own port)")
@click.option("--headend", type=AddressType(), help="HOST:PORT of the head-end to register with")
@click.option("--relay", type=AddressType(),
              help="HOST:PORT of a relay to register through (empty titles; assigned ones kept)")
@click.option("--headend-ap-title", type=AP_TITLE, default="2.16.124.113620.1.22.0.123.4",
              show_default=True, help="the AP title Register is sent to")
@click.option("--transport", type=click.Choice(["tcp", "udp"]), default="tcp", show_default=True,
              help="registration over TCP (the connection stays open) or UDP")
@click.option("--listen", type=AddressType(listen=True), default="127.0.0.1:0",
              show_default=True,
              help="HOST:PORT of worker 0 (worker N listens on PORT+N; port 0: any free port)")
@click.option("--seed", type=click.IntRange(0, 2**62), default=1, show_default=True,
              help="the households' seed (the same seed gives the same fleet)")
@click.option("--security-mode", type=SECURITY_MODE, default=0, show_default=True,
              help="weakest mode accepted, and the mode of the meters' own requests")
@click.option("--key", "keys", type=KEY, multiple=True,
              help="a key every meter shares (decimal key id, 32 hex digits); repeatable")
@click.option("--master-key", type=KEY,
              help="ID:HEX master secret: each meter gets its own key derived from its AP title "
                   "(docs/fleet.md)")
@click.option("--key-id", type=KEY_ID, help="key id of the meters' own requests [the first key]")
@click.option("--ramp", type=seconds(zero=True, maximum=86400), default=None,
              help="seconds over which the meters first register [meters / 500]")
@click.option("--speed", type=SPEED, default=1.0, show_default=True,
              help="simulated seconds per real second")
@click.option("--start-time", type=FiniteRange(0, MAX_START_TIME),
              help="simulated clock start, Unix seconds [now]")
@click.option("--title-base", type=AP_TITLE, default="2.16.124.113620.1.22.0.123",
              show_default=True, help="meter i's AP title is TITLE-BASE.(SERIAL-BASE + i)")
@click.option("--serial-base", type=click.IntRange(0, 99_999_999 - MAX_METERS), default=100000,
              show_default=True, help="meter i's serial number is SERIAL-BASE + i (8 digits)")
@click.option("--registration-period", type=click.IntRange(60, 0xFFFFFF), default=3600,
              show_default=True, help="seconds asked for between registrations")
@click.option("--max-in-flight", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="registrations outstanding at once, per worker")
@click.option("-v", "--verbose", count=True,
              help="log more (-v info, -vv debug); warnings are always shown")
def fleet(meters: int, workers: int, headend: Any, relay: Any, headend_ap_title: str,
          transport: str, listen: Any, seed: int, security_mode: int, keys: tuple[str, ...],
          master_key: str | None, key_id: int | None, ramp: float | None, speed: float,
          start_time: float | None, title_base: str, serial_base: int,
          registration_period: int, max_in_flight: int, verbose: int) -> None:
    """Run many simulated C12.22 meters, registering with a head-end (or through a relay).

    Each meter has its own AP title, serial number, keys and household; a worker's meters
    share one port and answer by called AP title. Prints each worker's address once ready, a
    progress bar while the meters register, and a summary on Ctrl-C.
    """
    from c1222.crypto.keys import parse_key_spec
    from c1222.fleet.node import WorkerConfig
    from c1222.fleet.runner import FleetError, run_fleet, split

    if headend is not None and relay is not None:
        raise click.BadParameter("give --headend or --relay, not both", param_hint="'--relay'")
    if title_base.startswith("."):
        raise click.BadParameter("an absolute AP title (2.16.124...)", param_hint="'--title-base'")
    table = key_table(keys)
    master = parse_key_spec(master_key) if master_key else None
    if master is not None and master[0] in table:
        raise click.BadParameter(f"key id {master[0]} is also a --key", param_hint="'--master-key'")
    if master is not None:
        check_keys(table, key_id, 0, what="fleet")
        if key_id is None and security_mode:
            key_id = master[0]
    else:
        check_keys(table, key_id, security_mode, what="fleet")
    if security_mode and key_id is None:
        key_id = sorted(table)[0]
    if key_id is not None and key_id not in table and (master is None or key_id != master[0]):
        raise click.BadParameter(f"no --key with id {key_id}", param_hint="'--key-id'")
    host, port = listen
    if port:
        if port + workers - 1 > 65535:
            raise click.BadParameter(f"workers need ports {port}..{port + workers - 1}",
                                     param_hint="'--listen'")
        for w in range(1, workers):
            problem = bind_problem((host, port + w))
            if problem:
                raise click.BadParameter(f"worker {w}: {problem}", param_hint="'--listen'")
    base = WorkerConfig(first=0, count=meters, listen=listen, headend=headend, relay=relay,
                        headend_ap_title=headend_ap_title, transport=transport, seed=seed,
                        security_mode=security_mode, keys=keys, key_id=key_id,
                        master_key=master, ramp=meters / 500 if ramp is None else ramp,
                        speed=speed, start_time=start_time, title_base=title_base,
                        serial_base=serial_base, registration_period=registration_period,
                        max_in_flight=max_in_flight)
    try:
        run_fleet(split(base, meters, workers), verbose=verbose, echo=click.echo)
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("fleet stopped")
