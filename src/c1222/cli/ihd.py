"""`c1222 ihd`: run the in-home display (C12.22 node + web page) until Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from c1222.cli.lifecycle import run_until_interrupted
from c1222.cli.params import (
    AP_TITLE, KEY, MQTT_NODE_ID, MQTT_PREFIX, MQTT_URL, SECURITY_MODE, TIME_ZONE, AddressType,
    InputFile, OutputDir, check_keys, key_table,
)
from c1222.errors import ConfigurationError
from c1222.ihd.mqtt import DEFAULT_PREFIX, MqttSettings, check_credentials
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
@click.option("--mqtt", "mqtt_url", type=MQTT_URL,
              help="publish to Home Assistant through this MQTT broker: "
                   "mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://... (TLS)")
@click.option("--mqtt-prefix", type=MQTT_PREFIX, default=DEFAULT_PREFIX, show_default=True,
              help="Home Assistant's discovery prefix")
@click.option("--mqtt-node-id", type=MQTT_NODE_ID,
              help="the device's node id in topics [c1222_ and the meter's AP title's arcs]")
@click.option("--mqtt-user", help="MQTT user name (instead of the URL's)")
@click.option("--mqtt-password", envvar="C1222_MQTT_PASSWORD",
              help="MQTT password (instead of the URL's; or $C1222_MQTT_PASSWORD)")
@click.option("--mqtt-ca", type=InputFile(),
              help="CA certificate(s) (PEM) that signed an mqtts:// broker's certificate "
                   "[the system's]")
@click.option("-v", "--verbose", count=True)
def ihd(listen: Address, http: Address, state_dir: Path, ap_title: str | None,
        meter_ap_title: str | None, security_mode: int, keys: tuple[str, ...], tz: str,
        mqtt_url: MqttSettings | None, mqtt_prefix: str, mqtt_node_id: str | None,
        mqtt_user: str | None, mqtt_password: str | None, mqtt_ca: Path | None,
        verbose: int) -> None:
    """Run the in-home display: live values, 24-hour graph, energy and the KEPCO bill.

    Prints the feed address and the page's address once ready; Ctrl-C stops it.
    """
    from c1222.ihd.app import Display

    table = key_table(keys)
    check_keys(table, None, security_mode, what="display")
    if listen[1] and listen == http:
        raise click.BadParameter("the page cannot share the feed's port", param_hint="'--http'")
    mqtt = _mqtt(mqtt_url, mqtt_prefix, mqtt_node_id, mqtt_user, mqtt_password, mqtt_ca)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)])
    try:
        display = Display(listen=listen, http=http, state_dir=state_dir, ap_title=ap_title,
                          keys=table, security_mode=security_mode, tz=tz,
                          meter_ap_title=meter_ap_title, mqtt=mqtt)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    asyncio.run(_run(display))


def _mqtt(url: MqttSettings | None, prefix: str, node_id: str | None, user: str | None,
          password: str | None, ca: Path | None) -> MqttSettings | None:
    """The MQTT settings from the URL and the options (the options win over the URL)."""
    ctx = click.get_current_context()
    given = [name for name in ("mqtt_node_id", "mqtt_user", "mqtt_ca")
             if ctx.params.get(name) is not None]
    if ctx.get_parameter_source("mqtt_prefix") == click.core.ParameterSource.COMMANDLINE:
        given.append("mqtt_prefix")
    if url is None:
        if given:
            option = "--" + given[0].replace("_", "-")
            raise click.BadParameter("needs --mqtt URL", param_hint=f"'{option}'")
        return None
    if ca is not None and not url.tls:
        raise click.BadParameter("a CA certificate is for mqtts:// only",
                                 param_hint="'--mqtt-ca'")
    if ca is not None:
        try:
            ssl.create_default_context(cafile=str(ca))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise click.BadParameter(f"not a PEM CA certificate ({exc.__class__.__name__})",
                                     param_hint="'--mqtt-ca'") from None
    settings = replace(url, prefix=prefix, node_id=node_id,
                       username=user if user is not None else url.username,
                       password=password if password is not None else url.password,
                       ca_file=None if ca is None else str(ca))
    try:
        check_credentials(settings.username, settings.password)
    except ConfigurationError as exc:
        option = "--mqtt-password" if "password" in str(exc) else "--mqtt-user"
        raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None
    return settings


async def _run(display: Any) -> None:
    async def start() -> list[str]:
        (host, port), (web_host, web_port) = await display.start()
        lines = [f"display listening on tcp+udp {host}:{port}",
                 f"display page at http {web_host}:{web_port}  ->  http://{web_host}:{web_port}/"]
        if display.mqtt is not None:
            m = display.mqtt
            lines.append(f"display publishing to Home Assistant via {m.settings.url} "
                         f"(discovery prefix {m.settings.prefix}, node {m.node_id}; "
                         f"state on {m.topics['state']})")
        return lines

    await run_until_interrupted("display", start, display.stop)
