"""The KEPCO residential tariff engine against spec/kepco-tariff.md.

Expected amounts are worked out by hand from the spec's rates (the arithmetic is in the
comments), never recomputed with the engine's own formulas.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from c1222.errors import ConfigurationError
from c1222.ihd.tariff import (
    HIGH_BAND_WATTS,
    KEPCO,
    KEPCO_TARIFF_TOML,
    LOW_BAND_WATTS,
    Bill,
    BlockStatus,
    TariffFileError,
    TariffNotInForce,
    bill,
    block_status,
    consumption_band,
    cost_per_hour,
    parse_tariff,
    projection,
)

D = Decimal
COMPONENTS = ("basic", "energy", "climate", "fuel", "subtotal", "vat", "fund", "total")


def amounts(b: Bill) -> tuple[int, ...]:
    return tuple(int(getattr(b, name)) for name in COMPONENTS)


# --------------------------------------------------------------------------------------------
# The spec's worked examples


def test_worked_example_350_kwh_non_summer_at_2_7_percent():
    b = bill(350, "2025-09")
    assert amounts(b) == (1600, 56190, 3150, 1750, 62690, 6269, 1690, 70640)
    assert (b.block, b.season, b.fund_rate) == (2, "other", D("0.027"))


def test_worked_example_350_kwh_summer():
    b = bill(350, "2025-08")
    assert amounts(b) == (1600, 46730, 3150, 1750, 53230, 5323, 1430, 59980)
    assert (b.block, b.season) == (2, "summer")


def test_worked_example_350_kwh_non_summer_at_3_2_percent():
    # 62,690 x 3.2% = 2,006.08 -> 2,000; 62,690 + 6,269 + 2,000 = 70,959 -> 70,950
    b = bill(350, "2025-03")
    assert amounts(b) == (1600, 56190, 3150, 1750, 62690, 6269, 2000, 70950)
    assert b.fund_rate == D("0.032")


def test_components_are_whole_won_decimals_and_to_dict_is_json_friendly():
    b = bill(D("350"), date(2025, 9, 17))
    for name in COMPONENTS:
        value = getattr(b, name)
        assert isinstance(value, Decimal) and value == value.to_integral_value()
    assert b.month == date(2025, 9, 1)
    assert b.to_dict() == {
        "month": "2025-09", "season": "other", "block": 2, "kwh": "350",
        "basic": 1600, "energy": 56190, "climate": 3150, "fuel": 1750, "subtotal": 62690,
        "vat": 6269, "fund": 1690, "total": 70640, "vat_rate": "0.10", "fund_rate": "0.027",
    }
    assert all(type(b.to_dict()[k]) is int for k in COMPONENTS)


def test_bill_is_frozen():
    b = bill(1, "2025-09")
    with pytest.raises(AttributeError):
        b.total = D(0)  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Block edges: basic charge of the block the total falls in; marginal energy


@pytest.mark.parametrize(("kwh", "month", "block", "expected"), [
    # other seasons, bounds 200/400
    (200, "2025-09", 1, (910, 24000, 1800, 1000, 27710, 2771, 740, 31220)),
    # 24,000 + 214.6 = 24,214.6 -> 24,214; 28,628 x 2.7% = 772.9 -> 770
    (201, "2025-09", 2, (1600, 24214, 1809, 1005, 28628, 2863, 770, 32260)),
    (400, "2025-09", 2, (1600, 66920, 3600, 2000, 74120, 7412, 2000, 83530)),
    # 66,920 + 307.3 = 67,227.3 -> 67,227
    (401, "2025-09", 3, (7300, 67227, 3609, 2005, 80141, 8014, 2160, 90310)),
    # summer, bounds 300/450
    (300, "2025-08", 1, (910, 36000, 2700, 1500, 41110, 4111, 1100, 46320)),
    (301, "2025-08", 2, (1600, 36214, 2709, 1505, 42028, 4203, 1130, 47360)),
    (450, "2025-08", 2, (1600, 68190, 4050, 2250, 76090, 7609, 2050, 85740)),
    (451, "2025-08", 3, (7300, 68497, 4059, 2255, 82111, 8211, 2210, 92530)),
])
def test_block_edges(kwh, month, block, expected):
    b = bill(kwh, month)
    assert b.block == block
    assert amounts(b) == expected


def test_summer_bounds_do_not_apply_outside_july_and_august():
    # 300 kWh: block 1 in summer, block 2 in June and September
    assert bill(300, "2025-07").block == 1
    assert bill(300, "2025-06").block == 2
    assert bill(300, "2025-09").block == 2


def test_marginal_energy_at_each_bound():
    def step(kwh, month):
        return bill(D(kwh) + D("0.1"), month).energy - bill(kwh, month).energy

    # a tenth of a kWh past each bound: 12.0 (block 1), 21.46 (2), 30.73 (3), 73.62 (super)
    # truncated to the won after the whole-kWh amount, which is itself whole here
    assert step(100, "2025-09") == 12
    assert step(200, "2025-09") == 21
    assert step(400, "2025-09") == 30
    assert step(300, "2025-08") == 21
    assert step(450, "2025-08") == 30
    assert step(1000, "2026-01") == 73


# --------------------------------------------------------------------------------------------
# Super-user block


# other-season energy at 1,000 kWh: 200x120 + 200x214.6 + 600x307.3 = 24,000 + 42,920 + 184,380
OTHER_1000 = 251300
# summer: 300x120 + 150x214.6 + 550x307.3 = 36,000 + 32,190 + 169,015
SUMMER_1000 = 237205


@pytest.mark.parametrize("month", ["2025-12", "2026-01", "2026-02"])
def test_super_user_in_winter_months(month):
    at, above = bill(1000, month), bill(1001, month)
    assert (at.block, int(at.energy)) == (3, OTHER_1000)
    # 251,300 + 736.2 = 252,036.2 -> 252,036
    assert (above.block, int(above.energy), int(above.basic)) == (4, 252036, 7300)


@pytest.mark.parametrize("month", ["2025-07", "2025-08"])
def test_super_user_in_summer_months(month):
    at, above = bill(1000, month), bill(1001, month)
    assert (at.block, int(at.energy)) == (3, SUMMER_1000)
    assert (above.block, int(above.energy)) == (4, 237941)


@pytest.mark.parametrize("month", ["2025-03", "2025-04", "2025-05", "2025-06", "2025-09",
                                   "2025-10", "2025-11"])
def test_no_super_user_outside_its_months(month):
    above = bill(1001, month)
    # 251,300 + 307.3 = 251,607.3 -> 251,607
    assert (above.block, int(above.energy)) == (3, 251607)


def test_super_user_full_bill_and_vat_half_up():
    # 1,200 kWh in August: 237,205 + 200 x 736.2 = 384,445. Subtotal 408,545 makes VAT
    # 40,854.5: half-up gives 40,855 (half-even would give 40,854).
    b = bill(1200, "2025-08")
    assert amounts(b) == (7300, 384445, 10800, 6000, 408545, 40855, 11030, 460430)


# --------------------------------------------------------------------------------------------
# Fund rate by date (100 kWh: block 1 in every season, subtotal 14,310, VAT 1,431)


@pytest.mark.parametrize(("month", "rate", "fund", "total"), [
    ("2023-06", "0.037", 520, 16260),   # 529.47 -> 520
    ("2024-06", "0.037", 520, 16260),
    ("2024-07", "0.032", 450, 16190),   # 457.92 -> 450
    ("2025-06", "0.032", 450, 16190),
    ("2025-07", "0.027", 380, 16120),   # 386.37 -> 380
    ("2026-03", "0.027", 380, 16120),
])
def test_fund_rate_changes_by_date(month, rate, fund, total):
    b = bill(100, month)
    assert int(b.subtotal) == 14310 and int(b.vat) == 1431
    assert (b.fund_rate, int(b.fund), int(b.total)) == (D(rate), fund, total)


def test_fund_rate_schedule_is_data_with_effective_dates():
    assert [(d, v) for d, v in KEPCO.schedules["fund_rate"]] == [
        (date(2023, 5, 16), D("0.037")), (date(2024, 7, 1), D("0.032")),
        (date(2025, 7, 1), D("0.027"))]
    assert KEPCO.rates_on(date(2024, 6, 30)).fund_rate == D("0.037")
    assert KEPCO.rates_on(date(2024, 7, 1)).fund_rate == D("0.032")


def test_month_is_billed_at_the_rates_of_its_first_day():
    # any day of July 2024 (or a datetime in it) is billed at July 1st's 3.2%
    assert bill(100, date(2024, 7, 31)).fund_rate == D("0.032")
    assert bill(100, datetime(2024, 6, 30, 23, 59)).fund_rate == D("0.037")


def test_month_before_the_table_is_refused_clearly():
    with pytest.raises(TariffNotInForce, match="2023-05-01.*starts on 2023-05-16"):
        bill(100, "2023-05")
    with pytest.raises(ValueError, match="no tariff in force"):
        bill(100, date(2020, 1, 1))
    assert bill(100, "2023-06").total == 16260


# --------------------------------------------------------------------------------------------
# Arguments


def test_zero_kwh_pays_the_basic_charge():
    # 910 + VAT 91 + fund 24.57 -> 20 = 1,021 -> 1,020
    assert amounts(bill(0, "2025-09")) == (910, 0, 0, 0, 910, 91, 20, 1020)


def test_fractional_kwh():
    # 200.5 kWh is over 200: block 2. Energy 24,000 + 0.5 x 214.6 = 24,107.3 -> 24,107;
    # climate 1,804.5 -> 1,804; fuel 1,002.5 -> 1,002
    b = bill(D("200.5"), "2025-09")
    assert b.block == 2
    assert amounts(b) == (1600, 24107, 1804, 1002, 28513, 2851, 760, 32120)


def test_float_kwh_is_taken_at_its_decimal_value():
    assert bill(0.1, "2025-09").kwh == D("0.1")
    assert bill(200.5, "2025-09") == bill(D("200.5"), "2025-09")


@pytest.mark.parametrize("kwh", [-1, D("-0.001"), -0.5])
def test_negative_kwh_is_a_value_error(kwh):
    with pytest.raises(ValueError, match="negative"):
        bill(kwh, "2025-09")


@pytest.mark.parametrize("kwh", ["abc", None, True, float("nan"), float("inf"), D("NaN")])
def test_non_numeric_kwh_is_a_value_error(kwh):
    with pytest.raises(ValueError):
        bill(kwh, "2025-09")


@pytest.mark.parametrize("month", ["2025-13", "2025-00", "2025-1", "25-01", "2025/01", "",
                                   None, 202501])
def test_bad_month_is_a_value_error(month):
    with pytest.raises(ValueError):
        bill(100, month)


# --------------------------------------------------------------------------------------------
# Block status


def test_block_status_in_block_1():
    s = block_status(150, "2025-09")
    assert s == BlockStatus(kwh=D(150), block=1, season="other", kwh_to_next_block=D(50),
                            kwh_to_super_user=None, marginal_rate=D("134.0"),
                            marginal_rate_with_taxes=D("134.0") * D("1.127"))


def test_block_status_at_a_bound_prices_the_next_kwh_at_the_next_block():
    s = block_status(200, "2025-09")
    assert (s.block, s.kwh_to_next_block) == (1, 0)
    assert s.marginal_rate == D("228.6")  # 214.6 + 9 + 5


def test_block_status_summer_block_2():
    s = block_status(320, "2025-08")
    assert (s.block, s.season, s.kwh_to_next_block) == (2, "summer", D(130))
    assert s.kwh_to_super_user == D(680)
    assert s.marginal_rate == D("228.6")


def test_block_status_last_block_outside_super_user_months():
    s = block_status(900, "2025-09")
    assert (s.block, s.kwh_to_next_block, s.kwh_to_super_user) == (3, None, None)
    assert s.marginal_rate == D("321.3")


def test_block_status_block_3_in_a_super_user_month_counts_down_to_the_threshold():
    s = block_status(D("950.5"), "2026-01")
    assert (s.block, s.kwh_to_next_block, s.kwh_to_super_user) == (3, D("49.5"), D("49.5"))
    assert s.marginal_rate == D("321.3")
    at = block_status(1000, "2026-01")
    assert (at.block, at.kwh_to_super_user, at.marginal_rate) == (3, 0, D("750.2"))


def test_block_status_super_user():
    s = block_status(1200, "2025-07")
    assert (s.block, s.kwh_to_next_block, s.kwh_to_super_user) == (4, None, None)
    assert s.marginal_rate == D("750.2")  # 736.2 + 9 + 5
    assert s.marginal_rate_with_taxes == D("750.2") * D("1.127")


# --------------------------------------------------------------------------------------------
# Projection


def test_projection_half_the_month_doubles_the_usage():
    # April has 30 days; at 16 April 00:00, 15 days have elapsed
    b = projection(150, datetime(2025, 4, 16))
    assert b.kwh == 300
    assert b == bill(300, "2025-04")
    assert int(b.total) == 58020


def test_projection_in_february_and_with_a_time_zone():
    kst = timezone(timedelta(hours=9))
    b = projection(D("75.5"), datetime(2026, 2, 8, tzinfo=kst))  # 7 of 28 days
    assert b.kwh == D("302.000")
    assert b.month == date(2026, 2, 1)


def test_projection_rounds_to_the_watt_hour():
    # 10 kWh after 3 of 31 days -> 103.333... -> 103.333
    assert projection(10, datetime(2025, 10, 4)).kwh == D("103.333")


def test_projection_at_the_first_instant_bills_usage_so_far():
    assert projection(0, datetime(2025, 9, 1)).kwh == 0
    assert projection(2, datetime(2025, 9, 1)).kwh == 2


def test_projection_refuses_bad_arguments():
    with pytest.raises(ValueError):
        projection(-1, datetime(2025, 9, 10))
    with pytest.raises(ValueError):
        projection(1, date(2025, 9, 10))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Cost per hour and consumption band


def test_cost_per_hour_includes_surcharges_vat_and_fund():
    # 1 kW in block 1: (120 + 9 + 5) x (1 + 0.10 + 0.027) = 151.018 won/h
    assert cost_per_hour(1000, 100, "2025-09") == D("151.02")
    # at 3.2% fund: 134 x 1.132 = 151.688
    assert cost_per_hour(1000, 100, "2025-03") == D("151.69")
    # 500 W in block 2: 0.5 x 228.6 x 1.127 = 128.816...
    assert cost_per_hour(500, 250, "2025-09") == D("128.82")
    # 2 kW in the super-user block: 2 x 750.2 x 1.127 = 1,690.9508
    assert cost_per_hour(2000, 1500, "2026-01") == D("1690.95")
    assert cost_per_hour(0, 100, "2025-09") == 0


def test_cost_per_hour_refuses_negative_power():
    with pytest.raises(ValueError, match="power_watts"):
        cost_per_hour(-10, 100, "2025-09")


@pytest.mark.parametrize(("watts", "band"), [
    (0, "low"), (-50, "low"), (299, "low"), (D("299.9"), "low"), (300, "medium"),
    (450, "medium"), (1499.9, "medium"), (1500, "high"), (3000, "high"),
])
def test_consumption_band(watts, band):
    assert consumption_band(watts) == band


def test_band_thresholds_are_named_constants():
    assert (LOW_BAND_WATTS, HIGH_BAND_WATTS) == (300, 1500)


# --------------------------------------------------------------------------------------------
# TOML tariff tables


def test_builtin_table_is_the_toml_text():
    assert parse_tariff(KEPCO_TARIFF_TOML) == KEPCO
    assert KEPCO.starts == date(2023, 5, 16)


def _with(old: str, new: str) -> str:
    assert old in KEPCO_TARIFF_TOML, old
    return KEPCO_TARIFF_TOML.replace(old, new)


def test_alternative_table_changes_the_bill():
    text = _with("{from = 2025-07-01, value = 0.027},",
                 "{from = 2025-07-01, value = 0.027},\n    {from = 2026-01-01, value = 0.020},")
    assert text.count("value = 5.0}") == 1
    text = text.replace("value = 5.0}", "value = -5.0}")  # the fuel adjustment
    tariff = parse_tariff(text, "test.toml")
    # fuel -5: 350 x -5 = -1,750; subtotal 1,600 + 56,190 + 3,150 - 1,750 = 59,190;
    # VAT 5,919; fund 2% 1,183.8 -> 1,180; 66,289 -> 66,280
    b = bill(350, "2026-03", tariff=tariff)
    assert amounts(b) == (1600, 56190, 3150, -1750, 59190, 5919, 1180, 66280)
    assert bill(350, "2025-09", tariff=tariff).fund_rate == D("0.027")


def test_minimal_table_in_long_form():
    text = """
name = "test utility"
[rates]
summer_months = [{from = 2030-01-01, value = []}]
super_user_months = [{from = 2030-01-01, value = []}]
super_user_threshold = [{from = 2030-01-01, value = 1}]
super_user_rate = [{from = 2030-01-01, value = 0}]
climate_rate = [{from = 2030-01-01, value = 0}]
fuel_adjustment = [{from = 2030-01-01, value = 0}]
vat_rate = [{from = 2030-01-01, value = 0}]
fund_rate = [{from = 2030-01-01, value = 0}]

[[rates.block_bounds_summer]]
from = 2030-01-01
value = [10, 20]

[[rates.block_bounds_other]]
from = 2030-01-01
value = [10, 20]

[[rates.basic_charges]]
from = 2030-01-01
value = [100, 200, 300]

[[rates.energy_rates]]
from = 2030-01-01
value = [1, 2, 3]
"""
    t = parse_tariff(text)
    assert t.name == "test utility"
    # 300 + 10x1 + 10x2 + 5x3 = 345 -> 340; super-user threshold unused (no months)
    b = bill(25, "2030-02", tariff=t)
    assert (b.block, int(b.subtotal), int(b.total)) == (3, 345, 340)
    with pytest.raises(TariffNotInForce):
        bill(25, "2029-12", tariff=t)


@pytest.mark.parametrize(("old", "new", "field"), [
    ("fund_rate            = [", "fund_rates = [", "rates.fund_rates"),
    ("vat_rate             = [{from = 2023-05-16, value = 0.10}]", "", "rates.vat_rate"),
    ("value = 0.10}", "value = 10}", "rates.vat_rate[0].value"),
    ("value = 0.10}", 'value = "0.10"}', "rates.vat_rate[0].value"),
    ("value = 9.0}", "value = true}", "rates.climate_rate[0].value"),
    ("value = 9.0}", "value = -9.0}", "rates.climate_rate[0].value"),
    ("{from = 2024-07-01, value = 0.032}", "{from = 2023-01-01, value = 0.032}",
     "rates.fund_rate[1].from"),
    ("{from = 2024-07-01, value = 0.032}", "{from = 2024-07-01T00:00:00, value = 0.032}",
     "rates.fund_rate[1].from"),
    ("{from = 2024-07-01, value = 0.032}", '{from = "2024-07-01", value = 0.032}',
     "rates.fund_rate[1].from"),
    ("{from = 2024-07-01, value = 0.032}", "{value = 0.032}", "rates.fund_rate[1].from"),
    ("{from = 2024-07-01, value = 0.032}", "{from = 2024-07-01, value = 0.032, note = 1}",
     "rates.fund_rate[1].note"),
    ("value = [300, 450]", "value = [450, 300]", "rates.block_bounds_summer[0].value"),
    ("value = [300, 450]", "value = [300]", "rates.block_bounds_summer[0].value"),
    ("value = [910, 1600, 7300]", "value = [910, 1600]", "rates.basic_charges[0].value"),
    ("value = [120.0, 214.6, 307.3]", "value = [120.0, -1, 307.3]",
     "rates.energy_rates[0].value[1]"),
    ("value = [12, 1, 2, 7, 8]", "value = [12, 1, 2, 7, 13]",
     "rates.super_user_months[0].value[4]"),
    ("value = [7, 8]", "value = [7, 7]", "rates.summer_months[0].value"),
    ("value = 1000}", "value = 420}", "rates.super_user_threshold"),
    ("super_user_rate      = [{from = 2023-05-16, value = 736.2}]",
     "super_user_rate      = []", "rates.super_user_rate"),
    ('name = "KEPCO', 'nme = "KEPCO', "nme"),
    ("[rates]", "[rates", "(syntax)"),
])
def test_bad_tariff_fields_are_named(old, new, field):
    with pytest.raises(ConfigurationError) as info:
        parse_tariff(_with(old, new), "utility.toml")
    assert isinstance(info.value, TariffFileError)
    assert info.value.field == field
    assert str(info.value).startswith(f"utility.toml: {field}: ")


def test_missing_rates_table():
    with pytest.raises(TariffFileError, match=re.escape("rates: missing")):
        parse_tariff('name = "x"\n')


# --------------------------------------------------------------------------------------------
# Properties

MONTHS = [f"{y}-{m:02d}" for y in (2023, 2024, 2025, 2026) for m in range(1, 13)
          if (y, m) >= (2023, 6)]
KWH = st.decimals(min_value=0, max_value=3000, places=3, allow_nan=False,
                  allow_infinity=False)


@given(st.sampled_from(MONTHS), KWH, KWH)
def test_total_is_monotonic_in_kwh_and_a_multiple_of_ten(month, a, b):
    low, high = sorted((a, b))
    lo, hi = bill(low, month), bill(high, month)
    assert lo.total <= hi.total
    assert lo.total % 10 == 0 and hi.total % 10 == 0
    assert hi.subtotal == hi.basic + hi.energy + hi.climate + hi.fuel
    assert hi.total <= hi.subtotal + hi.vat + hi.fund < hi.total + 10


def test_projection_from_the_first_reading_of_a_display_started_mid_month():
    # started 20 April 12:00, 3 kWh by 21 April 12:00: 3 kWh a day for 30 days
    b = projection(3, datetime(2025, 4, 21, 12), since=datetime(2025, 4, 20, 12))
    assert b.kwh == 90 and b == bill(90, "2025-04")
    # a first reading before the month (last month's) counts from the 1st
    assert projection(150, datetime(2025, 4, 16), since=datetime(2025, 3, 30)).kwh == 300
    assert projection(2, datetime(2025, 4, 16), since=datetime(2025, 4, 16)).kwh == 2
    with pytest.raises(ValueError):
        projection(1, datetime(2025, 4, 16), since=date(2025, 4, 1))  # type: ignore[arg-type]
