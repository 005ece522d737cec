"""`c1222 tariff` as a user runs it (the click command object, through CliRunner)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from c1222.cli.tariff import tariff
from c1222.ihd.tariff import KEPCO_TARIFF_TOML


def _run(*args: str):
    return CliRunner().invoke(tariff, list(args))


def test_breakdown_with_korean_and_english_labels():
    result = _run("350", "--month", "2025-09")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    expected = [
        ("기본요금 basic charge", "1,600 원"),
        ("전력량요금 energy charge", "56,190 원"),
        ("기후환경요금 climate charge", "3,150 원"),
        ("연료비조정요금 fuel adjustment", "1,750 원"),
        ("전기요금계 subtotal", "62,690 원"),
        ("부가가치세 VAT (10%)", "6,269 원"),
        ("전력산업기반기금 fund (2.7%)", "1,690 원"),
        ("청구금액 amount billed", "70,640 원"),
    ]
    for label, amount in expected:
        [line] = [line for line in lines if line.startswith(label)]
        assert line.endswith(amount), line
    assert "2025-09" in result.output and "block 2" in result.output


def test_super_user_month_in_text():
    result = _run("1200", "--month", "2025-08")
    assert result.exit_code == 0
    assert "super-user" in result.output and "460,430 원" in result.output


def test_json():
    result = _run("350", "--month", "2025-08", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {
        "month": "2025-08", "season": "summer", "block": 2, "kwh": "350",
        "basic": 1600, "energy": 46730, "climate": 3150, "fuel": 1750, "subtotal": 53230,
        "vat": 5323, "fund": 1430, "total": 59980, "vat_rate": "0.10", "fund_rate": "0.027",
    }


def test_fractional_kwh():
    result = _run("200.5", "--month", "2025-09", "--json")
    assert json.loads(result.output)["total"] == 32120


def test_bad_kwh_is_a_usage_error():
    for bad in ("abc", "nan", "inf", "1e"):
        result = _run(bad, "--month", "2025-09")
        assert result.exit_code == 2, (bad, result.output)
        assert "Invalid value for 'KWH'" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_negative_kwh_is_a_usage_error():
    result = _run("--month", "2025-09", "--", "-5")
    assert result.exit_code == 2
    assert "non-negative" in result.output


def test_bad_month_is_a_usage_error():
    for bad in ("2025-13", "2025/09", "march"):
        result = _run("350", "--month", bad)
        assert result.exit_code == 2, (bad, result.output)
        assert "Invalid value for '--month'" in result.output


def test_month_before_the_table_is_a_usage_error():
    result = _run("350", "--month", "2023-05")
    assert result.exit_code == 2
    assert "no tariff in force on 2023-05-01" in result.output


def test_month_is_required():
    result = _run("350")
    assert result.exit_code == 2 and "--month" in result.output


def test_tariff_file(tmp_path):
    path = tmp_path / "utility.toml"
    path.write_text(KEPCO_TARIFF_TOML.replace('name = "KEPCO residential low voltage',
                                              'name = "Test utility'), encoding="utf-8")
    result = _run("350", "--month", "2025-09", "--tariff-file", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Test utility")
    assert "70,640 원" in result.output


def test_bad_tariff_file_names_the_field(tmp_path):
    path = tmp_path / "utility.toml"
    path.write_text(KEPCO_TARIFF_TOML.replace("value = 0.10}", "value = 10}"), encoding="utf-8")
    result = _run("350", "--month", "2025-09", "--tariff-file", str(path))
    assert result.exit_code == 2
    assert "rates.vat_rate[0].value" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_tariff_file_is_a_usage_error(tmp_path):
    result = _run("350", "--month", "2025-09", "--tariff-file", str(tmp_path / "none.toml"))
    assert result.exit_code == 2
