"""`c1222 tables decode` and `c1222 tables list` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from c1222.cli.main import cli

EXAMPLE_A = ("020A8A53494D55020010100100 0A00020001 00 EB1DF11800009CF0C107 B806 "
             "E0000000000000000000")


def _run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_decode_clock_with_default_profile() -> None:
    result = _run("tables", "decode", "52", "18 03 0F 0D 2D 1E 15")
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    assert record["name"] == "CLOCK_TBL" and record["size"] == 7
    assert record["value"]["clock_calendar"] == "2024-03-15T13:45:30"
    assert record["value"]["time_date_qual"]["day_of_week"] == 5
    assert record["value"]["time_date_qual"]["gmt_flag"] is True


def test_decode_table0_and_sets() -> None:
    result = _run("tables", "decode", "ST0", EXAMPLE_A)
    value = json.loads(result.stdout)["value"]
    assert value["device_class"] == "53494d55"
    assert value["std_proc_used"] == [3, 4, 5, 7, 9, 10]
    assert value["format_control_3"] == {"ni_format1": 10, "ni_format2": 8}


def test_decode_with_a_given_table0_and_dimension() -> None:
    # A big-endian Table 0 (DATA_ORDER 1) changes how Table 23 reads.
    be_table0 = "03" + EXAMPLE_A.replace(" ", "")[2:]
    result = _run("tables", "decode", "23", "00000012D687", "--table0", be_table0)
    assert json.loads(result.stdout)["value"]["tot_data_block"]["summations"] == [1234567]
    # Two summations declared through --dim 21=...
    result = _run("tables", "decode", "23", "010000000000" "020000000000", "--dim",
                  "21=00000002000001000005")
    assert json.loads(result.stdout)["value"]["tot_data_block"]["summations"] == [1, 2]


def test_decode_unknown_table_as_raw() -> None:
    result = _run("tables", "decode", "MT3", "0102ff")
    record = json.loads(result.stdout)
    assert record["table"] == 2048 + 3 and record["value"] == {"data": "0102ff"}


def test_decode_errors() -> None:
    result = CliRunner().invoke(cli, ["tables", "decode", "0", "020A8A"])
    assert result.exit_code == 1
    error = json.loads(result.stderr)["error"]
    assert error["path"] == "device_class" and error["offset"] == 3
    result = CliRunner().invoke(cli, ["tables", "decode", "1", "zz"])
    assert result.exit_code == 2 and "not hexadecimal" in result.output
    result = CliRunner().invoke(cli, ["tables", "decode", "42", "00"])
    assert result.exit_code == 1 and "table 41" in json.loads(result.stderr)["error"]["reason"]


def test_list() -> None:
    result = _run("tables", "list", "--json")
    rows = {r["table"]: r for r in map(json.loads, result.stdout.splitlines())}
    # 42 bytes, and 2 of manufacturer table SETs for MT2 (the customer notice)
    assert rows[0]["name"] == "GEN_CONFIG_TBL" and rows[0]["size"] == 44
    assert rows[2050]["name"] == "MT2 CUSTOMER_NOTICE_TBL" and rows[2050]["size"] == 502
    assert rows[2050]["writable"]
    assert rows[64]["size"] == 39080 and rows[74]["size"] == 1211
    assert rows[7]["writable"] and not rows[1]["writable"]
    assert rows[42]["size"] is None and not rows[42]["default_profile"]
    text = _run("tables", "list").stdout
    assert "LP_DATA_SET1_TBL" in text and "39080" in text


def test_as_a_user_runs_it() -> None:
    proc = subprocess.run([sys.executable, "-m", "c1222.cli", "tables", "decode", "3",
                           "0441010000"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    value = json.loads(proc.stdout)["value"]
    # Section 5.3 example: meter-shop mode; unprogrammed + clock error + low battery.
    assert value["ed_mode"]["meter_shop_mode"] is True
    flags = value["ed_std_status1"]
    assert flags["unprogrammed"] and flags["clock_error"] and flags["low_battery"]
    assert not flags["power_failure"]
