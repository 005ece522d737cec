"""KEPCO residential low-voltage tariff (주택용 저압): the in-home display's bill estimate.

Pure code: no I/O and no clock. Dates enter as arguments; money is :class:`~decimal.Decimal`.
The standard followed is the project's spec ``spec/kepco-tariff.md``; the page for users is
``docs/tariff.md``.

Every figure lives in a dated tariff table (:data:`KEPCO_TARIFF_TOML`, parsed into
:data:`KEPCO`): each rate is a list of ``{from = DATE, value = ...}`` entries, because rates
change on their own dates (the fund rate changed twice in two years). A utility can replace
the table with a TOML file of the same shape (:func:`parse_tariff`) without touching code.

Choices this module makes (also documented in ``docs/tariff.md``):

* A month is billed with the rates in force on its **first day**. KEPCO prorates a billing
  period across a rate change by days; an IHD estimate does not, so a rate that starts
  mid-month applies from the next month.
* Bad arguments (negative or non-numeric kWh, a malformed month, a month before the table
  starts) raise :class:`ValueError` — they are the caller's input, not configuration. A bad
  tariff table raises :class:`c1222.errors.ConfigurationError` naming the field.
* ``cost_per_hour`` and ``BlockStatus.marginal_rate_with_taxes`` include VAT and the fund,
  because that is what the household pays.
"""

from __future__ import annotations

import calendar
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from c1222.errors import ConfigurationError

__all__ = [
    "HIGH_BAND_WATTS",
    "KEPCO",
    "KEPCO_TARIFF_TOML",
    "LOW_BAND_WATTS",
    "Bill",
    "BlockStatus",
    "Rates",
    "Tariff",
    "TariffFileError",
    "TariffNotInForce",
    "bill",
    "block_status",
    "consumption_band",
    "cost_per_hour",
    "month_start",
    "parse_tariff",
    "projection",
]

# --------------------------------------------------------------------------------------------
# Consumption bands for the display's colour. An average Korean household uses ~300-350 kWh a
# month, i.e. ~450 W on average. Below 300 W is the always-on base load (fridge, router,
# standby) and, held for a month, ~216 kWh: about the end of block 1. From 1,500 W a large
# appliance is running (air conditioner, induction hob, dryer, kettle); held for a month that
# is ~1,080 kWh, beyond the 1,000 kWh super-user threshold.
LOW_BAND_WATTS = Decimal(300)
HIGH_BAND_WATTS = Decimal(1500)

SUMMER = "summer"
OTHER = "other"
SUPER_USER_BLOCK = 4

_WON = Decimal(1)
_TEN_WON = Decimal(10)
_KWH_QUANTUM = Decimal("0.001")  # a projection is shown to the watt-hour, not to 28 digits
_COST_QUANTUM = Decimal("0.01")
_MONTH_RE = re.compile(r"(\d{4})-(\d{2})")

# --------------------------------------------------------------------------------------------
# The built-in table, in the same TOML shape a utility would ship. Keeping it as TOML text
# means the built-in table goes through the same validation as a file, and the docs can show
# the real thing as the example.
KEPCO_TARIFF_TOML = """\
name = "KEPCO residential low voltage (주택용 저압)"

# Each rate is a list of {from = DATE, value = ...}: the entry with the latest `from` on or
# before the first day of the billed month applies. Rates in force since 2023-05-16.
[rates]
summer_months        = [{from = 2023-05-16, value = [7, 8]}]
block_bounds_summer  = [{from = 2023-05-16, value = [300, 450]}]    # kWh: block 1 | 2 | 3
block_bounds_other   = [{from = 2023-05-16, value = [200, 400]}]
basic_charges        = [{from = 2023-05-16, value = [910, 1600, 7300]}]       # won/month
energy_rates         = [{from = 2023-05-16, value = [120.0, 214.6, 307.3]}]   # won/kWh
super_user_months    = [{from = 2023-05-16, value = [12, 1, 2, 7, 8]}]
super_user_threshold = [{from = 2023-05-16, value = 1000}]         # kWh
super_user_rate      = [{from = 2023-05-16, value = 736.2}]        # won/kWh above threshold
climate_rate         = [{from = 2023-05-16, value = 9.0}]          # won/kWh 기후환경요금
fuel_adjustment      = [{from = 2023-05-16, value = 5.0}]          # won/kWh 연료비조정요금
vat_rate             = [{from = 2023-05-16, value = 0.10}]
fund_rate            = [                                           # 전력산업기반기금
    {from = 2023-05-16, value = 0.037},
    {from = 2024-07-01, value = 0.032},
    {from = 2025-07-01, value = 0.027},
]
"""


class TariffNotInForce(ValueError):
    """The tariff table has no rates for the requested date (before its first entry)."""


class TariffFileError(ConfigurationError):
    """A tariff table that does not validate; ``field`` names the offending field."""

    def __init__(self, source: str, field: str, reason: str) -> None:
        self.source = source
        self.field = field
        self.reason = reason
        super().__init__(f"{source}: {field}: {reason}")


# --------------------------------------------------------------------------------------------
# Rates and tariff tables


@dataclass(frozen=True)
class Rates:
    """Every rate in force on one day: one snapshot of a :class:`Tariff`."""

    summer_months: frozenset[int]
    block_bounds_summer: tuple[Decimal, Decimal]
    block_bounds_other: tuple[Decimal, Decimal]
    basic_charges: tuple[Decimal, Decimal, Decimal]
    energy_rates: tuple[Decimal, Decimal, Decimal]
    super_user_months: frozenset[int]
    super_user_threshold: Decimal
    super_user_rate: Decimal
    climate_rate: Decimal
    fuel_adjustment: Decimal
    vat_rate: Decimal
    fund_rate: Decimal

    def season(self, month: int) -> str:
        return SUMMER if month in self.summer_months else OTHER

    def bounds(self, season: str) -> tuple[Decimal, Decimal]:
        return self.block_bounds_summer if season == SUMMER else self.block_bounds_other


RATE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Rates))


@dataclass(frozen=True)
class Tariff:
    """A dated tariff table: for each rate, ``(effective_from, value)`` pairs in date order."""

    name: str
    schedules: Mapping[str, tuple[tuple[date, Any], ...]]

    @property
    def starts(self) -> date:
        """The first day on which every rate has a value."""
        return max(entries[0][0] for entries in self.schedules.values())

    def change_dates(self) -> list[date]:
        """Every day on which some rate changes, from :attr:`starts` on."""
        start = self.starts
        days = {d for entries in self.schedules.values() for d, _ in entries if d >= start}
        return sorted(days | {start})

    def rates_on(self, day: date) -> Rates:
        """The rates in force on ``day``; :class:`TariffNotInForce` before the table starts."""
        if isinstance(day, datetime):
            day = day.date()
        if day < self.starts:
            raise TariffNotInForce(
                f"no tariff in force on {day.isoformat()}: the table {self.name!r} starts on "
                f"{self.starts.isoformat()} (a month is billed at the rates of its first day)")
        values = {}
        for name in RATE_FIELDS:
            # the latest entry on or before the day; entries are sorted by date
            values[name] = [v for d, v in self.schedules[name] if d <= day][-1]
        return Rates(**values)


# --------------------------------------------------------------------------------------------
# Parsing and validating a TOML tariff table


def _number(src: str, where: str, value: Any, *, minimum: Decimal | None = Decimal(0),
            below: Decimal | None = None) -> Decimal:
    # bool is an int in Python; a rate of `true` is a mistake, not 1
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TariffFileError(src, where, f"expected a number, got {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise TariffFileError(src, where, f"expected a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise TariffFileError(src, where, f"must be at least {minimum}, got {value}")
    if below is not None and number >= below:
        raise TariffFileError(src, where, f"must be below {below}, got {value}")
    return number


def _numbers(src: str, where: str, value: Any, count: int) -> tuple[Decimal, ...]:
    if not isinstance(value, list) or len(value) != count:
        raise TariffFileError(src, where, f"expected a list of {count} numbers, got {value!r}")
    return tuple(_number(src, f"{where}[{i}]", v) for i, v in enumerate(value))


def _bounds(src: str, where: str, value: Any) -> tuple[Decimal, ...]:
    lower, upper = _numbers(src, where, value, 2)
    if not Decimal(0) < lower < upper:
        raise TariffFileError(src, where,
                              f"block bounds must satisfy 0 < first < second, got {value!r}")
    return lower, upper


def _months(src: str, where: str, value: Any) -> frozenset[int]:
    if not isinstance(value, list):
        raise TariffFileError(src, where, f"expected a list of months 1-12, got {value!r}")
    for i, m in enumerate(value):
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 12:
            raise TariffFileError(src, f"{where}[{i}]", f"expected a month 1-12, got {m!r}")
    if len(set(value)) != len(value):
        raise TariffFileError(src, where, f"a month is listed twice in {value!r}")
    return frozenset(value)


# How each rate's value is read. The fuel adjustment may be negative (KEPCO sets it within
# +-5 won/kWh each quarter); VAT and fund are fractions, not percentages.
_VALIDATORS = {
    "summer_months": _months,
    "block_bounds_summer": _bounds,
    "block_bounds_other": _bounds,
    "basic_charges": lambda s, w, v: _numbers(s, w, v, 3),
    "energy_rates": lambda s, w, v: _numbers(s, w, v, 3),
    "super_user_months": _months,
    "super_user_threshold": lambda s, w, v: _number(s, w, v, minimum=Decimal("0.001")),
    "super_user_rate": _number,
    "climate_rate": _number,
    "fuel_adjustment": lambda s, w, v: _number(s, w, v, minimum=None),
    "vat_rate": lambda s, w, v: _number(s, w, v, below=Decimal(1)),
    "fund_rate": lambda s, w, v: _number(s, w, v, below=Decimal(1)),
}
assert set(_VALIDATORS) == set(RATE_FIELDS)


def _schedule(src: str, name: str, raw: Any, validate) -> tuple[tuple[date, Any], ...]:
    where = f"rates.{name}"
    if not isinstance(raw, list) or not raw:
        raise TariffFileError(src, where,
                              "expected a non-empty list of {from = DATE, value = ...} entries")
    entries: list[tuple[date, Any]] = []
    for i, entry in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise TariffFileError(src, here,
                                  f"expected {{from = DATE, value = ...}}, got {entry!r}")
        extra = set(entry) - {"from", "value"}
        if extra:
            raise TariffFileError(src, f"{here}.{sorted(extra)[0]}", "unknown key")
        for key in ("from", "value"):
            if key not in entry:
                raise TariffFileError(src, f"{here}.{key}", "missing")
        day = entry["from"]
        # a TOML offset/local date-time parses as datetime, a subclass of date: refuse it,
        # rates take effect on a day
        if isinstance(day, datetime) or not isinstance(day, date):
            raise TariffFileError(src, f"{here}.from",
                                  f"expected a TOML date like 2024-07-01, got {day!r}")
        if entries and day <= entries[-1][0]:
            raise TariffFileError(src, f"{here}.from",
                                  f"dates must increase: {day} is not after {entries[-1][0]}")
        entries.append((day, validate(src, f"{here}.value", entry["value"])))
    return tuple(entries)


def _check_consistent(src: str, tariff: Tariff) -> None:
    """Rules across rates, checked on every day some rate changes."""
    for day in tariff.change_dates():
        r = tariff.rates_on(day)
        if not r.super_user_months:
            continue
        top = max(r.block_bounds_summer[1], r.block_bounds_other[1])
        if r.super_user_threshold < top:
            raise TariffFileError(
                src, "rates.super_user_threshold",
                f"from {day}: {r.super_user_threshold} kWh is below the block 3 bound {top} kWh")


def parse_tariff(text: str, source: str = "<tariff>") -> Tariff:
    """Parse and validate a TOML tariff table (the shape of :data:`KEPCO_TARIFF_TOML`).

    Raises :class:`TariffFileError` (a :class:`~c1222.errors.ConfigurationError`) naming the
    field at fault, e.g. ``rates.fund_rate[1].value``. ``source`` names the file in messages.
    Reading the file is the caller's job: this module does no I/O.
    """
    try:
        # Decimal floats: 214.6 must stay 214.6, not 214.599999...
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise TariffFileError(source, "(syntax)", f"not valid TOML: {exc}") from None
    extra = set(data) - {"name", "rates"}
    if extra:
        raise TariffFileError(source, sorted(extra)[0], "unknown key (expected name, [rates])")
    name = data.get("name", source)
    if not isinstance(name, str) or not name.strip():
        raise TariffFileError(source, "name", f"expected a non-empty string, got {name!r}")
    rates = data.get("rates")
    if not isinstance(rates, dict):
        raise TariffFileError(source, "rates", "missing [rates] table")
    unknown = set(rates) - set(RATE_FIELDS)
    if unknown:
        # a typo would otherwise silently leave a rate at... nothing: name it
        raise TariffFileError(source, f"rates.{sorted(unknown)[0]}",
                              f"unknown rate (known: {', '.join(RATE_FIELDS)})")
    schedules = {}
    for field_name in RATE_FIELDS:
        if field_name not in rates:
            raise TariffFileError(source, f"rates.{field_name}", "missing")
        schedules[field_name] = _schedule(source, field_name, rates[field_name],
                                          _VALIDATORS[field_name])
    tariff = Tariff(name=name, schedules=MappingProxyType(schedules))
    _check_consistent(source, tariff)
    return tariff


KEPCO: Tariff = parse_tariff(KEPCO_TARIFF_TOML, "built-in KEPCO table")

# --------------------------------------------------------------------------------------------
# Arguments


def _kwh(value: Any, what: str = "kWh") -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        # floats through repr, so 0.1 is 0.1 and not its binary expansion
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if number < 0:
        raise ValueError(f"{what} cannot be negative, got {value!r}")
    return number


def month_start(month: date | str) -> date:
    """The first day of ``month``: a :class:`date`/:class:`datetime` (any day) or "YYYY-MM"."""
    if isinstance(month, datetime):
        return month.date().replace(day=1)
    if isinstance(month, date):
        return month.replace(day=1)
    if isinstance(month, str):
        match = _MONTH_RE.fullmatch(month.strip())
        if match and 1 <= int(match[2]) <= 12 and int(match[1]) >= 1:
            return date(int(match[1]), int(match[2]), 1)
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    raise ValueError(f"month must be a date or a YYYY-MM string, got {month!r}")


def _won(amount: Decimal) -> Decimal:
    """Fractions of a won truncated (toward zero: a negative fuel charge is truncated too)."""
    return amount.quantize(_WON, rounding=ROUND_DOWN)


def _ten_won(amount: Decimal) -> Decimal:
    return (amount / _TEN_WON).quantize(_WON, rounding=ROUND_DOWN) * _TEN_WON


# --------------------------------------------------------------------------------------------
# The bill


@dataclass(frozen=True)
class Bill:
    """One month's bill. Won amounts are whole-won Decimals; ``block`` is 1-3, or 4 for the
    super-user block (a super-user month with usage above the threshold)."""

    kwh: Decimal
    basic: Decimal
    energy: Decimal
    climate: Decimal
    fuel: Decimal
    subtotal: Decimal
    vat: Decimal
    fund: Decimal
    total: Decimal
    block: int
    season: str
    month: date
    vat_rate: Decimal
    fund_rate: Decimal

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: ints for won, strings for kWh and rates (exact decimals)."""
        won = ("basic", "energy", "climate", "fuel", "subtotal", "vat", "fund", "total")
        return {
            "month": self.month.strftime("%Y-%m"),
            "season": self.season,
            "block": self.block,
            "kwh": format(self.kwh, "f"),
            **{name: int(getattr(self, name)) for name in won},
            "vat_rate": format(self.vat_rate, "f"),
            "fund_rate": format(self.fund_rate, "f"),
        }


def _block(kwh: Decimal, r: Rates, season: str, first: date) -> int:
    lower, upper = r.bounds(season)
    if first.month in r.super_user_months and kwh > r.super_user_threshold:
        return SUPER_USER_BLOCK
    # bounds are inclusive: 200 kWh is still block 1, 200.1 kWh is block 2
    return 1 if kwh <= lower else 2 if kwh <= upper else 3


def _energy(kwh: Decimal, r: Rates, season: str, super_month: bool) -> Decimal:
    """Progressive marginal energy charge (before truncation)."""
    lower, upper = r.bounds(season)
    r1, r2, r3 = r.energy_rates
    zero = Decimal(0)
    top = r.super_user_threshold if super_month else None
    in3 = max(kwh - upper, zero) if top is None else min(max(kwh - upper, zero), top - upper)
    amount = min(kwh, lower) * r1 + min(max(kwh - lower, zero), upper - lower) * r2 + in3 * r3
    if top is not None and kwh > top:
        # the super-user rate replaces block 3's rate above the threshold
        amount += (kwh - top) * r.super_user_rate
    return amount


def bill(kwh: Decimal | float | int, month: date | str, *, tariff: Tariff | None = None) -> Bill:
    """Bill ``kwh`` (the month's total usage) at the rates in force on the month's first day.

    ``month`` is any day of the month (a ``date`` or ``datetime``) or "YYYY-MM". Raises
    :class:`ValueError` for negative or non-numeric kWh or a malformed month, and
    :class:`TariffNotInForce` (a ``ValueError``) for a month before the table starts.
    """
    tariff = KEPCO if tariff is None else tariff
    usage = _kwh(kwh)
    first = month_start(month)
    r = tariff.rates_on(first)
    season = r.season(first.month)
    block = _block(usage, r, season, first)
    basic = r.basic_charges[min(block, 3) - 1]  # the super-user block keeps block 3's basic
    energy = _won(_energy(usage, r, season, first.month in r.super_user_months))
    climate = _won(usage * r.climate_rate)
    fuel = _won(usage * r.fuel_adjustment)
    basic = _won(basic)
    subtotal = basic + energy + climate + fuel
    vat = (subtotal * r.vat_rate).quantize(_WON, rounding=ROUND_HALF_UP)
    fund = _ten_won(subtotal * r.fund_rate)
    total = _ten_won(subtotal + vat + fund)
    return Bill(kwh=usage, basic=basic, energy=energy, climate=climate, fuel=fuel,
                subtotal=subtotal, vat=vat, fund=fund, total=total, block=block, season=season,
                month=first, vat_rate=r.vat_rate, fund_rate=r.fund_rate)


# --------------------------------------------------------------------------------------------
# What the display shows


@dataclass(frozen=True)
class BlockStatus:
    """Where this month's usage stands.

    ``marginal_rate`` is the price of the *next* kWh in won/kWh: energy + climate + fuel
    (at a block bound, the next block's rate). ``marginal_rate_with_taxes`` multiplies it by
    (1 + VAT rate + fund rate): what the household pays per extra kWh, before the rounding
    of the whole bill; :func:`cost_per_hour` uses this one.
    ``kwh_to_next_block`` is None in the last block (block 3 outside super-user months,
    block 4 in them); ``kwh_to_super_user`` is None outside super-user months or above the
    threshold.
    """

    kwh: Decimal
    block: int
    season: str
    kwh_to_next_block: Decimal | None
    kwh_to_super_user: Decimal | None
    marginal_rate: Decimal
    marginal_rate_with_taxes: Decimal


def block_status(kwh: Decimal | float | int, month: date | str, *,
                 tariff: Tariff | None = None) -> BlockStatus:
    """The block in force for ``kwh`` used so far in ``month``, and the price of the next kWh."""
    tariff = KEPCO if tariff is None else tariff
    usage = _kwh(kwh)
    first = month_start(month)
    r = tariff.rates_on(first)
    season = r.season(first.month)
    lower, upper = r.bounds(season)
    super_month = first.month in r.super_user_months
    block = _block(usage, r, season, first)

    to_super = r.super_user_threshold - usage if super_month and block != 4 else None
    if block == 1:
        to_next = lower - usage
    elif block == 2:
        to_next = upper - usage
    elif block == 3 and super_month:
        to_next = to_super
    else:
        to_next = None

    # the block the next kWh falls in: at a bound (nothing left), that is the next block
    next_block = block + 1 if to_next == 0 else block
    energy_rate = r.super_user_rate if next_block == 4 else r.energy_rates[next_block - 1]
    marginal = energy_rate + r.climate_rate + r.fuel_adjustment
    with_taxes = marginal * (1 + r.vat_rate + r.fund_rate)
    return BlockStatus(kwh=usage, block=block, season=season, kwh_to_next_block=to_next,
                       kwh_to_super_user=to_super, marginal_rate=marginal,
                       marginal_rate_with_taxes=with_taxes)


def projection(kwh_so_far: Decimal | float | int, now: datetime, *,
               tariff: Tariff | None = None, since: datetime | None = None) -> Bill:
    """Bill the month's usage projected linearly to a whole month from the elapsed time.

    Elapsed time runs from ``since`` — when the usage started being measured, e.g. a display's
    first reading of the month — or, without it, from midnight on the month's first day (in
    ``now``'s time zone, if any), to ``now``; the month's usage is that rate over the whole
    month. ``since`` before the month's start counts from the start. At the very start
    (nothing elapsed) there is nothing to scale, so ``kwh_so_far`` is billed as it is. The
    projected kWh are rounded to the watt-hour.
    """
    if not isinstance(now, datetime):
        raise ValueError(f"now must be a datetime, got {now!r}")
    if since is not None and not isinstance(since, datetime):
        raise ValueError(f"since must be a datetime, got {since!r}")
    usage = _kwh(kwh_so_far)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if since is not None and since > start:
        start = since
    days = calendar.monthrange(now.year, now.month)[1]
    micro = timedelta(microseconds=1)
    # integer microseconds keep the ratio exact (timedelta / timedelta would be a float)
    elapsed = (now - start) // micro
    length = timedelta(days=days) // micro
    if elapsed <= 0:
        return bill(usage, now.date(), tariff=tariff)
    projected = (usage * length / elapsed).quantize(_KWH_QUANTUM, rounding=ROUND_HALF_UP)
    return bill(projected, now.date(), tariff=tariff)


def cost_per_hour(power_watts: Decimal | float | int, kwh_so_far: Decimal | float | int,
                  month: date | str, *, tariff: Tariff | None = None) -> Decimal:
    """Won per hour at ``power_watts``: power x the marginal rate in force, **including**
    climate, fuel, VAT and the fund (what the household pays), rounded to 0.01 won.

    The rate is the one for the next kWh at ``kwh_so_far``; an hour that crosses a block
    bound is not split. Negative power (export) raises :class:`ValueError`: this tariff
    has no export price.
    """
    power = _kwh(power_watts, "power_watts")
    status = block_status(kwh_so_far, month, tariff=tariff)
    won = power / 1000 * status.marginal_rate_with_taxes
    return won.quantize(_COST_QUANTUM, rounding=ROUND_HALF_UP)


def consumption_band(power_watts: Decimal | float | int) -> str:
    """"low" below :data:`LOW_BAND_WATTS`, "high" from :data:`HIGH_BAND_WATTS`, else "medium".

    Negative power (export from solar panels) counts as "low".
    """
    if isinstance(power_watts, bool):
        raise ValueError(f"power_watts must be a number, got {power_watts!r}")
    try:
        power = Decimal(repr(power_watts)) if isinstance(power_watts, float) else Decimal(
            power_watts)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"power_watts must be a number, got {power_watts!r}") from None
    if power.is_nan():
        raise ValueError("power_watts must be a number, got NaN")
    if power < LOW_BAND_WATTS:
        return "low"
    return "high" if power >= HIGH_BAND_WATTS else "medium"
