"""`c1222 tariff`: one month's KEPCO residential bill, broken down.

Thin front end over :mod:`c1222.ihd.tariff`; it holds no tariff logic. The tariff file is
read here because the engine does no I/O.
"""

from __future__ import annotations

import json
import unicodedata
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from c1222.cli.params import InputFile, shown
from c1222.errors import ConfigurationError
from c1222.ihd.tariff import KEPCO, Bill, Tariff, bill, month_start, parse_tariff

# (field, label): Korean as on the KEPCO bill, then English
_LINES = (
    ("basic", "기본요금 basic charge"),
    ("energy", "전력량요금 energy charge"),
    ("climate", "기후환경요금 climate charge"),
    ("fuel", "연료비조정요금 fuel adjustment"),
    ("subtotal", "전기요금계 subtotal"),
    ("vat", "부가가치세 VAT"),
    ("fund", "전력산업기반기금 fund"),
    ("total", "청구금액 amount billed"),
)
_SEASONS = {"summer": "하계 summer", "other": "기타계절 other seasons"}
_LABEL_WIDTH = 34
#: Largest month's usage billed (a household uses hundreds of kWh; amounts stay exact to here).
MAX_KWH = 10**12


def _width(text: str) -> int:
    # Hangul takes two terminal columns; padding by len() would misalign the amounts
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int = _LABEL_WIDTH) -> str:
    return text + " " * max(width - _width(text), 1)


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f}%"


def _render(result: Bill, tariff: Tariff) -> str:
    block = "super-user 슈퍼유저" if result.block == 4 else f"{result.block}단계 block {result.block}"
    lines = [
        tariff.name,
        f"{_pad('청구월 month')}{result.month:%Y-%m} ({_SEASONS[result.season]})",
        f"{_pad('사용량 usage')}{result.kwh:f} kWh ({block})",
    ]
    for name, label in _LINES:
        if name == "vat":
            label = f"{label} ({_percent(result.vat_rate)})"
        elif name == "fund":
            label = f"{label} ({_percent(result.fund_rate)})"
        if name in ("subtotal", "total"):
            lines.append("-" * (_LABEL_WIDTH + 12))
        lines.append(f"{_pad(label)}{int(getattr(result, name)):>10,} 원")
    return "\n".join(lines)


def _kwh(ctx: click.Context, param: click.Parameter, value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{shown(value)} is not a number of kWh") from None
    if not number.is_finite() or number < 0:
        raise click.BadParameter(f"{value!r} must be a finite, non-negative number of kWh")
    if number > MAX_KWH:
        # the won amounts would outgrow decimal's precision (a traceback, not a bill)
        raise click.BadParameter(f"{shown(value)} kWh is over {MAX_KWH:,} kWh, no household's "
                                 "month")
    return number


def _month(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        month_start(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("kwh", metavar="KWH", callback=_kwh)
@click.option("--month", "month", metavar="YYYY-MM", required=True, callback=_month,
              help="Billing month; billed at the rates in force on its first day.")
@click.option("--json", "as_json", is_flag=True, help="Print the bill as JSON.")
@click.option("--tariff-file", type=InputFile(),
              help="A TOML tariff table instead of the built-in KEPCO one (see docs/tariff.md).")
def tariff(kwh: Decimal, month: str, as_json: bool, tariff_file: Path | None) -> None:
    """Bill KWH used in a month under the KEPCO residential low-voltage tariff (주택용 저압)."""
    table = KEPCO
    if tariff_file is not None:
        try:
            table = parse_tariff(tariff_file.read_text(encoding="utf-8"), str(tariff_file))
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(str(exc), param_hint="'--tariff-file'") from None
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), param_hint="'--tariff-file'") from None
    try:
        result = bill(kwh, month, tariff=table)
    except ValueError as exc:
        # a month before the table starts: the user's argument, so a usage error
        raise click.BadParameter(str(exc), param_hint="'--month'") from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        click.echo(_render(result, table))
