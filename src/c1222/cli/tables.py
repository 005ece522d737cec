"""`c1222 tables`: decode C12.19 tables and list the ones this package knows.

Thin front end over :mod:`c1222.tables`; it holds no table logic.
"""

from __future__ import annotations

import json
import sys

import click

from c1222.cli.params import table_number
from c1222.errors import C1222Error, ConfigurationError, DecodeError
from c1222.tables.engine import TableEnv, to_jsonable
from c1222.tables.profile import default_store
from c1222.tables.registry import MFG_BASE, TABLES, decode_table, table_name


def _hex(text: str, what: str) -> bytes:
    cleaned = "".join(text.split()).replace(":", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise click.BadParameter(f"{what} is not hexadecimal") from None


def _fail(exc: C1222Error, table: int) -> None:
    if isinstance(exc, DecodeError):
        record = {"error": {"table": table, "reason": exc.reason, "path": exc.path,
                            "offset": exc.offset}}
    else:
        record = {"error": {"table": table, "reason": str(exc)}}
    click.echo(json.dumps(record), err=True)
    sys.exit(1)


@click.group()
def tables() -> None:
    """C12.19 data tables."""


@tables.command("decode")
@click.argument("table")
@click.argument("hexdata")
@click.option("--table0", "table0_hex", metavar="HEX",
              help="Table 0 of the meter (default: the default profile's).")
@click.option("--dim", "dims", multiple=True, metavar="N=HEX",
              help="A dimension table of the meter (11, 21, 61, 62, 71 ...); repeatable. "
                   "Missing ones come from the default profile.")
@click.option("--lenient", is_flag=True, help="Ignore bytes after the end of the layout.")
def decode(table: str, hexdata: str, table0_hex: str | None, dims: tuple[str, ...],
           lenient: bool) -> None:
    """Print table TABLE, given as HEXDATA, as JSON (unknown tables as raw hex)."""
    number = table_number(table, "'TABLE'")
    data = _hex(hexdata, "HEXDATA")
    profile = default_store()
    known = {n: profile.get(n) for n in profile.numbers()}
    try:
        if table0_hex is not None:
            known[0] = decode_table(0, _hex(table0_hex, "--table0"))
        env = TableEnv(known[0].context(), known)
        for item in dims:
            key, sep, value = item.partition("=")
            if not sep:
                raise click.BadParameter(f"--dim {item!r}: use N=HEX")
            dim = table_number(key, "'--dim'")
            known[dim] = decode_table(dim, _hex(value, f"--dim {key}"), env)
        value = decode_table(number, data, env, strict=not lenient)
    except (DecodeError, ConfigurationError) as exc:
        _fail(exc, number)
        return
    record = {"table": number, "name": table_name(number), "size": len(data),
              "value": to_jsonable(value)}
    click.echo(json.dumps(record, indent=2))


@tables.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per table.")
def list_tables(as_json: bool) -> None:
    """The tables with a known layout, their names and sizes under the default profile."""
    store = default_store()
    gc = store.gen_config
    for number in sorted(TABLES):
        served = number in store
        size = len(store.get_bytes(number)) if served else None
        writable = (number - MFG_BASE in gc.mfg_tbls_write if number >= MFG_BASE
                    else number in gc.std_tbls_write)
        # a manufacturer table: MTn and this package's name of it (docs/tables.md)
        name = (f"{table_name(number)} {TABLES[number].name}" if number >= MFG_BASE
                else table_name(number))
        if as_json:
            click.echo(json.dumps({"table": number, "name": name, "size": size,
                                   "default_profile": served, "writable": writable}))
        else:
            shown = f"{size:>6}" if size is not None else "     -"
            click.echo(f"{number:>5}  {name:<34} {shown} {'w' if writable else ' '}")
