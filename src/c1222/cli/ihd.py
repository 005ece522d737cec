"""`c1222 ihd`: run the in-home display (C12.22 node + web page) until Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import click

from c1222.cli.lifecycle import run_until_interrupted
from c1222.cli.params import (
    AP_TITLE, KEY, SECURITY_MODE, TIME_ZONE, AddressType, OutputDir, check_keys, key_table,
)
from c1222.errors import ConfigurationError
from c1222.transport.endpoint import Address


@click.command()
@click.option("--listen", type=AddressType(1155, listen=True), default="127.0.0.1:1155",
              show_default=True,
              help="HOST:PORT where the meter's C12.22 feed arrives (TCP and UDP; 0 picks)")
@click.option("--http", "http", type=AddressType(8080, listen=True, udp=False),
              default="127.0.0.1:8080", show_default=True,
              help="HOST:PORT of the web page (0 picks a port)")
@click.option("--state-dir", type=OutputDir(), default="ihd-state",
              show_default=True, help="where the 24-hour history and daily totals are kept")
@click.option("--ap-title", type=AP_TITLE,
              help="the display's AP title [2.16.124.113620.1.22.0.123.8437.1]")
@click.option("--meter-ap-title", type=AP_TITLE,
              help="AP title of the display's meter; writes from others are refused "
                   "[2.16.124.113620.1.22.0.123.8437]")
@click.option("--security-mode", type=SECURITY_MODE, default=0, show_default=True,
              help="weakest security mode accepted from the meter")
@click.option("--key", "keys", type=KEY, multiple=True, help="a C12.22 key; repeatable")
@click.option("--tz", type=TIME_ZONE, default="Asia/Seoul", show_default=True,
              help="the household's time zone (days and billing months)")
@click.option("-v", "--verbose", count=True)
def ihd(listen: Address, http: Address, state_dir: Path, ap_title: str | None,
        meter_ap_title: str | None, security_mode: int, keys: tuple[str, ...], tz: str,
        verbose: int) -> None:
    """Run the in-home display: live values, 24-hour graph, energy and the KEPCO bill.

    Prints the feed address and the page's address once ready; Ctrl-C stops it.
    """
    from c1222.ihd.app import Display

    table = key_table(keys)
    check_keys(table, None, security_mode, what="display")
    if listen[1] and listen == http:
        raise click.BadParameter("the page cannot share the feed's port", param_hint="'--http'")
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)])
    try:
        display = Display(listen=listen, http=http, state_dir=state_dir, ap_title=ap_title,
                          keys=table, security_mode=security_mode, tz=tz,
                          meter_ap_title=meter_ap_title)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    asyncio.run(_run(display))


async def _run(display: Any) -> None:
    async def start() -> list[str]:
        (host, port), (web_host, web_port) = await display.start()
        return [f"display listening on tcp+udp {host}:{port}",
                f"display page at http {web_host}:{web_port}  ->  http://{web_host}:{web_port}/"]

    await run_until_interrupted("display", start, display.stop)
