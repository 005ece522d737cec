"""Bad segmentation options, as a user types them: one line, ``c1222 CMD: error: ...``, exit 2
(docs/segmentation.md, "Options")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli_errors import assert_usage_error, run

BAD = [
    (["meter", "--segment-size", "10"], "'--segment-size'"),
    (["headend", "--max-apdu-size", "0"], "'--max-apdu-size'"),
    (["meter", "--profile", "{tmp}/p.toml"], "segment_size: 128"),
]


@pytest.mark.parametrize(("args", "words"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_segment_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                                     words: str) -> None:
    (tmp_path / "p.toml").write_text("segment_size = 5\nwritable_tables = [64]\n")
    command = args[0]
    assert_usage_error(run([a.format(tmp=tmp_path) for a in args], tmp_path), command, words)


def test_writable_tables_must_be_numbers(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text('writable_tables = ["x"]\n')
    assert_usage_error(run(["meter", "--profile", str(tmp_path / "p.toml")], tmp_path), "meter",
                       "writable_tables")
