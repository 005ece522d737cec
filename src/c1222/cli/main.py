"""The `c1222` command: a thin front end that holds no protocol logic."""

from __future__ import annotations

import click

from c1222 import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="c1222")
def cli() -> None:
    """ANSI C12.22 metering: codec, security, tables, meter, head-end and in-home display."""


def main() -> None:
    cli()


def _register_commands() -> None:
    from c1222.cli.codec import decode, encode
    from c1222.cli.conformance import conformance
    from c1222.cli.demo import demo, samples_command
    from c1222.cli.headend import headend
    from c1222.cli.ihd import ihd
    from c1222.cli.meter import meter
    from c1222.cli.tables import tables
    from c1222.cli.tariff import tariff

    for command in (decode, encode, demo, samples_command, tables, meter, headend, ihd,
                    tariff, conformance):
        cli.add_command(command)


_register_commands()
