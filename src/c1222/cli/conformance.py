"""`c1222 conformance`: run the C12.22 conformance suite against any endpoint (docs/conformance.md).

Exit status: 0 every tested case passed, 1 a case failed, 2 usage error, 3 nothing could be
tested (the target unreachable, or every case NOT TESTED).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from c1222.cli.params import (
    AP_TITLE, KEY, KEY_ID, PASSWORD, SEGMENT_SIZE, AddressType, OutputFile, seconds,
)
from c1222.errors import ConfigurationError, LocalProtocolError
from c1222.transport.endpoint import Address

DEFAULT_TESTER_TITLE = "2.16.124.113620.1.22.0.123.4"  # the head-end's
#: The tester's title as a notification host of a master relay: not the head-end's.
NETWORK_TESTER_TITLE = "2.16.124.113620.1.22.0.123.5"


def _split(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _modes(values: tuple[str, ...]) -> tuple[int, ...]:
    modes: list[int] = []
    for part in _split(values) or ["0"]:
        if part not in ("0", "1", "2"):
            raise click.BadParameter(f"{part!r}: security modes are 0, 1 and 2",
                                     param_hint="--security-mode")
        if int(part) not in modes:
            modes.append(int(part))
    return tuple(modes)


@click.command()
@click.argument("target", required=False, metavar="[HOST:PORT]", type=AddressType())
@click.option("--listen", metavar="HOST:PORT", type=AddressType(listen=True),
              help="be the target's registrar here and wait for its Register first "
                   "(port 0 picks one); without HOST:PORT the registered address is tested")
@click.option("--via-relay", metavar="HOST:PORT", type=AddressType(),
              help="reach the target through this relay by its --called-ap-title; Resolve "
                   "and Trace are asked of the relay")
@click.option("--master-relay", metavar="HOST:PORT", type=AddressType(),
              help="register with this master relay as a notification host, judge its "
                   "notification of the target as Register, and run through it")
@click.option("--relay-ap-title", type=AP_TITLE,
              help="the relay's AP title [from its answer to Identify / its Register answer]")
@click.option("--target-role", type=click.Choice(["auto", "node", "relay"]), default="auto",
              show_default=True, help="relay: the services a relay need not serve may be "
              "refused; auto: a target answering Trace of its own title is a relay")
@click.option("--register-timeout", type=seconds(zero=True), default=30.0,
              show_default=True, help="seconds to wait for the target to register")
@click.option("--security-mode", "modes", multiple=True, metavar="M[,M...]",
              help="security modes to test (0, 1, 2); repeatable or a comma list [0]")
@click.option("--transport", type=click.Choice(["tcp", "udp", "both"]), default="tcp",
              show_default=True)
@click.option("--key", "keys", type=KEY, multiple=True,
              help="a C12.22 key (decimal key id, 32 hex digits); repeatable")
@click.option("--key-id", type=KEY_ID, help="key id to secure requests with [the lowest given]")
@click.option("--called-ap-title", type=AP_TITLE,
              help="the target's AP title [from its registration or first response]")
@click.option("--calling-ap-title", type=AP_TITLE,
              help="the tester's own AP title (the registrar's, with --listen) "
                   "[2.16.124.113620.1.22.0.123.4; with --master-relay ...123.5, so that it "
                   "does not take the head-end's registration]")
@click.option("--user-id", type=click.IntRange(0, 0xFFFF), default=2, show_default=True,
              help="user id of the Security and Logon services")
@click.option("--password", type=PASSWORD, help="password of --user-id (20 bytes at most); without it the "
                                 "cases that need credentials are NOT TESTED")
@click.option("--reader-id", type=click.IntRange(0, 0xFFFF), default=1, show_default=True,
              help="a read-only user, for the insufficient-clearance case")
@click.option("--reader-password", type=PASSWORD, default="READER", show_default=True,
              help="password of --reader-id")
@click.option("--write-table", type=click.IntRange(0, 4095), default=6, show_default=True,
              help="table written back with its own bytes by the write cases")
@click.option("--unknown-table", type=click.IntRange(0, 0xFFFF),
              help="a table the target does not have [first gap in its Table 0 list]")
@click.option("--oversize", type=click.IntRange(1, 16 * 1024 * 1024), default=40_000,
              show_default=True, help="bytes of the oversized request")
@click.option("--segment-size", type=SEGMENT_SIZE,
              help="the tester's link segment size: the segmentation case sends a request "
                   "larger than it, as segments [none: NOT TESTED]")
@click.option("--deregister", is_flag=True,
              help="also deregister the target itself (it should register again)")
@click.option("--timeout", type=seconds(0.1, 3600), default=5.0, show_default=True,
              help="seconds to wait for each response")
@click.option("--invocation-id-size", "id_size", type=click.Choice(["auto", "1", "2", "4"]),
              default="auto", show_default=True,
              help="bytes of every calling AP invocation id (A8); auto: 4, then 2 and 1 when "
                   "the target answers in March-2006 form (a January-2008-draft device)")
@click.option("--case", "only", multiple=True, metavar="ID[,ID...]",
              help="run only these cases (see --list); repeatable or a comma list")
@click.option("--list", "list_cases", is_flag=True, help="list the cases and exit")
@click.option("--json", "json_path", type=OutputFile(),
              help="write every case with its messages (hex and decoded) as JSON")
@click.option("--junit", "junit_path", type=OutputFile(),
              help="write JUnit XML (one testcase per case and mode)")
@click.option("--pcap", type=OutputFile(),
              help="record every APDU of the run to this pcap")
@click.option("-v", "--verbose", count=True, help="-v: print each case as it completes")
def conformance(target: Address | None, listen: Address | None, via_relay: Address | None,
                master_relay: Address | None, relay_ap_title: str | None, target_role: str,
                register_timeout: float,
                modes: tuple[str, ...], transport: str, keys: tuple[str, ...],
                key_id: int | None, called_ap_title: str | None, calling_ap_title: str | None,
                user_id: int, password: str | None, reader_id: int, reader_password: str,
                write_table: int, unknown_table: int | None, oversize: int,
                segment_size: int | None, deregister: bool,
                timeout: float, id_size: str, only: tuple[str, ...], list_cases: bool,
                json_path: str | None, junit_path: str | None, pcap: str | None,
                verbose: int) -> None:
    """Test a C12.22 endpoint at HOST:PORT: every service, and the refusals it owes.

    Each case runs in every --security-mode over each --transport and ends PASS, FAIL, or
    NOT TESTED with the reason (a precondition failed, or the target does not support an
    optional service). Prints a table and a summary; exit status 0 when every tested case
    passed, 1 when one failed, 2 for a usage error, 3 when nothing could be tested.
    """
    from c1222.codec.ber import Uid
    from c1222.crypto.keys import KeyTable
    from c1222.headend.conformance import CaseSettings, Settings, Tester
    from c1222.tables.access import pad_password

    if list_cases:
        _print_cases()
        return
    if calling_ap_title is None:
        calling_ap_title = NETWORK_TESTER_TITLE if master_relay else DEFAULT_TESTER_TITLE
    try:
        settings = Settings(
            target=target, listen=listen,
            modes=_modes(modes),
            transports=("tcp", "udp") if transport == "both" else (transport,),
            keys=KeyTable.from_cli(keys), key_id=key_id,
            called_ap_title=Uid.parse(called_ap_title) if called_ap_title else None,
            cases=CaseSettings(
                user_id=user_id, password=pad_password(password) if password else None,
                reader_id=reader_id,
                reader_password=pad_password(reader_password) if reader_password else None,
                write_table=write_table, unknown_table=unknown_table, oversize=oversize,
                deregister=deregister, calling_ap_title=Uid.parse(calling_ap_title),
                segment_size=segment_size),
            timeout=timeout, quiet_timeout=min(2.0, timeout),
            register_timeout=register_timeout, pcap=pcap,
            only=frozenset(_split(only)) if only else None,
            invocation_id_size=None if id_size == "auto" else int(id_size),
            via_relay=via_relay, master_relay=master_relay, target_role=target_role,
            relay_ap_title=Uid.parse(relay_ap_title) if relay_ap_title else None)
        tester = Tester(settings, on_listening=_listening(settings, register_timeout),
                        on_result=_progress if verbose else None)
    except (ConfigurationError, LocalProtocolError) as exc:
        raise click.UsageError(str(exc)) from None
    try:
        report = asyncio.run(tester.run())
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("conformance: interrupted", err=True)
        sys.exit(130)
    _print_report(report)
    for path, content in ((json_path, lambda: json.dumps(report.to_json(), indent=1) + "\n"),
                          (junit_path, report.junit_xml)):
        if path:
            try:
                Path(path).write_text(content(), encoding="utf-8")
            except OSError as exc:
                raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
    sys.exit(report.exit_status)


def _listening(settings: Any, wait: float) -> Any:
    def announce(address: tuple[str, int]) -> None:
        click.echo(f"conformance tester {settings.cases.calling_ap_title} listening on tcp+udp "
                   f"{address[0]}:{address[1]}")
        click.echo(f"waiting up to {wait:g} s for the target to register")
        sys.stdout.flush()

    return announce


def _progress(result: Any) -> None:
    mode = "" if result.mode is None else f" mode {result.mode} {result.transport}"
    seen = "" if result.response == "-" else f" {result.response}"
    reason = f" ({result.reason})" if result.reason else ""
    click.echo(f"{result.verdict.value:<10} {result.case}{mode}:{seen}{reason}")
    sys.stdout.flush()


_STYLE = {"PASS": "green", "FAIL": "bold red", "NOT TESTED": "yellow"}


def _console() -> Any:
    from rich.console import Console

    # Piped output (CI logs) gets a wide table instead of rich's 80 columns.
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _print_report(report: Any) -> None:
    from rich.table import Table

    console = _console()
    if report.results:
        both = len(report.transports) > 1
        table = Table(title=f"C12.22 conformance of {report.target or 'the target'}"
                            + (f" ({report.called_ap_title})" if report.called_ap_title else ""))
        table.add_column("service")
        table.add_column("case")
        table.add_column("mode", justify="right")
        if both:
            table.add_column("transport")
        table.add_column("verdict")
        table.add_column("response seen")
        table.add_column("reason")
        for r in report.results:
            row = [r.service, r.case, "-" if r.mode is None else str(r.mode)]
            if both:
                row.append(r.transport or "-")
            row += [f"[{_STYLE[r.verdict.value]}]{r.verdict.value}[/]", r.response, r.reason]
            table.add_row(*(_escape(c) if i != len(row) - 3 else c for i, c in enumerate(row)))
        console.print(table)
    for note in report.notes:
        console.print(f"note: {_escape(note)}")
    if report.error:
        console.print(f"[bold red]conformance: {_escape(report.error)}[/]")
    style = {0: "bold green", 1: "bold red"}.get(report.exit_status, "bold yellow")
    console.print(f"[{style}]{_escape(report.summary())}[/]")


def _escape(value: str) -> str:
    from rich.markup import escape

    return escape(value)


def _print_cases() -> None:
    from rich.table import Table

    from c1222.headend.conformance import CASES, REGISTER

    table = Table(title="c1222 conformance cases")
    for column in ("case", "service", "modes", "sends", "passes", "needs"):
        table.add_column(column)
    for case in (REGISTER, *CASES):
        modes = "once" if case is REGISTER else ",".join(map(str, sorted(case.modes)))
        table.add_row(case.id, case.service, modes,
                      _escape(case.sends), _escape(case.passes), ", ".join(case.needs))
    _console().print(table)
