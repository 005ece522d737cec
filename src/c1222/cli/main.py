"""The `c1222` command: a thin front end that holds no protocol logic."""

from __future__ import annotations

import importlib
import os
import re
import sys

import click

from c1222 import __version__


#: Each subcommand's module, imported only when the command runs (or help lists it): `decode`
#: does not pay for the head-end's web stack, asyncio, the tables engine (python -X importtime).
_COMMANDS = {
    "decode": ("c1222.cli.codec", "decode"),
    "encode": ("c1222.cli.codec", "encode"),
    "demo": ("c1222.cli.demo", "demo"),
    "samples": ("c1222.cli.demo", "samples_command"),
    "tables": ("c1222.cli.tables", "tables"),
    "meter": ("c1222.cli.meter", "meter"),
    "headend": ("c1222.cli.headend", "headend"),
    "ihd": ("c1222.cli.ihd", "ihd"),
    "tariff": ("c1222.cli.tariff", "tariff"),
    "conformance": ("c1222.cli.conformance", "conformance"),
    "relay": ("c1222.cli.relay", "relay"),
    "sink": ("c1222.cli.sink", "sink"),
    "fleet": ("c1222.cli.fleet", "fleet"),
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
