"""The `c1222` command: a thin front end that holds no protocol logic."""

from __future__ import annotations

import os
import re
import sys

import click

from c1222 import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="c1222")
def cli() -> None:
    """ANSI C12.22 metering: codec, security, tables, meter, head-end and in-home display."""


_ARGV: list[str] = []


def invoked_args() -> list[str]:
    """The arguments this run of `c1222` was given (`headend --workers` starts its workers
    with the same options)."""
    return list(_ARGV)


def main(args: list[str] | None = None) -> None:
    """Run the command; a usage or runtime error is one line on stderr,
    ``c1222 CMD: error: ...``, with click's exit status (2 for a bad option or argument)."""
    argv = sys.argv[1:] if args is None else list(args)
    _ARGV[:] = argv
    try:
        status = cli.main(argv, prog_name="c1222", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # `c1222` or `c1222 tables` alone: the help, as click shows it
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(error_line(exc, argv), err=True)
        sys.exit(exc.exit_code)
    except click.Abort as exc:
        interrupted = isinstance(exc.__context__ or exc.__cause__, KeyboardInterrupt)
        click.echo(f"{_command_path(argv)}: {'interrupted' if interrupted else 'aborted'}",
                   err=True)
        sys.exit(130 if interrupted else 1)
    except BrokenPipeError:
        # `c1222 tables list | head -1`: the reader left; say nothing more to it
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
        sys.exit(1)
    # --help and --version end with click's Exit, returned here as its status
    sys.exit(status if isinstance(status, int) else 0)


def error_line(exc: click.ClickException, argv: list[str]) -> str:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else _command_path(argv)
    # One line however the message was built (libpq and TOML errors carry newlines).
    message = re.sub(r"\s*\n\s*", "; ", exc.format_message().strip())
    return f"{path}: error: {message}"


def _command_path(argv: list[str]) -> str:
    """``c1222 tables decode`` from the arguments: the (sub)command names they select."""
    path = ["c1222"]
    command: click.Command = cli
    for arg in argv:
        if not isinstance(command, click.Group):
            break
        if arg.startswith("-"):
            continue
        sub = command.get_command(click.Context(command), arg)
        if sub is None:
            break
        path.append(arg)
        command = sub
    return " ".join(path)


def _register_commands() -> None:
    from c1222.cli.codec import decode, encode
    from c1222.cli.conformance import conformance
    from c1222.cli.demo import demo, samples_command
    from c1222.cli.fleet import fleet
    from c1222.cli.headend import headend
    from c1222.cli.ihd import ihd
    from c1222.cli.meter import meter
    from c1222.cli.relay import relay
    from c1222.cli.sink import sink
    from c1222.cli.tables import tables
    from c1222.cli.tariff import tariff

    for command in (decode, encode, demo, samples_command, tables, meter, headend, ihd,
                    tariff, conformance, relay, sink, fleet):
        cli.add_command(command)


_register_commands()
