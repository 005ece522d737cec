"""`c1222` turns every click error into one line, `c1222 CMD: error: ...`, with click's status."""

from __future__ import annotations

import click
import pytest

from c1222.cli.main import _command_path, error_line, main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_a_nested_command_is_named_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "tables", "decode", "--", "-1", "00")
    assert status == 2
    assert err.splitlines() == [
        "c1222 tables decode: error: Invalid value for 'TABLE': '-1': table numbers are "
        "0 .. 2047 (ST0 .. ST2047, MT0 .. MT2047)"]


def test_a_message_with_newlines_stays_one_line() -> None:
    line = error_line(click.ClickException("first\n  second\nthird"), ["demo", "--out", "x"])
    assert line == "c1222 demo: error: first; second; third"


def test_the_command_path_skips_options_and_stops_at_arguments() -> None:
    assert _command_path(["-v", "tables", "decode", "23", "00"]) == "c1222 tables decode"
    assert _command_path(["meter", "--listen", "tables"]) == "c1222 meter"
    assert _command_path(["nosuch"]) == "c1222"


def test_help_version_and_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.startswith("c1222, version ")
    status, out, _ = run(capsys, "meter", "--help")
    assert status == 0 and out.startswith("Usage: c1222 meter")
    status, _, err = run(capsys, "tables")
    assert status == 2 and err.startswith("Usage: c1222 tables") and "decode" in err
