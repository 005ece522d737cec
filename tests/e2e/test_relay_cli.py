"""`c1222 relay` and `c1222 meter --relay` with bad options: one line, exit 2, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli_errors import assert_usage_error, run

TITLE = "2.16.124.113620.1.22.0.123.2"

BAD = [
    (["relay", "--master"], "--ap-title"),
    (["relay", "--ap-title", TITLE], "--upstream HOST:PORT"),
    (["relay", "--ap-title", "not-a-title", "--master"], "'--ap-title'"),
    (["relay", "--ap-title", TITLE, "--master", "--upstream", "127.0.0.1:1"], "no upstream"),
    (["relay", "--ap-title", TITLE, "--upstream", "h:p"], "'--upstream'"),
    (["relay", "--ap-title", TITLE, "--master", "--forward-timeout", "nan"], "finite"),
    (["relay", "--ap-title", TITLE, "--master", "--reg-period", "0"], "--reg-period"),
    (["relay", "--ap-title", TITLE, "--master", "--max-pending", "0"], "--max-pending"),
    (["relay", "--ap-title", TITLE, "--master", "--assign-branch", "x"], "--assign-branch"),
    (["relay", "--ap-title", TITLE, "--master", "--security-mode", "2"], "needs a --key"),
    (["relay", "--ap-title", TITLE, "--master", "--key", "2:" + "00" * 16, "--key-id", "3"],
     "no --key with id 3"),
    (["relay", "--ap-title", TITLE, "--master", "--multicast", "1.2.3.x"], "'--multicast'"),
    (["relay", "--ap-title", TITLE, "--master", "--segment-size", "1"], "'--segment-size'"),
    (["relay", "--ap-title", TITLE, "--master", "--max-connections", "0"],
     "'--max-connections'"),
    (["relay", "--ap-title", TITLE, "--master", "--max-connections-per-address", "70000"],
     "'--max-connections-per-address'"),
    (["meter", "--relay", "h:p"], "'--relay'"),
    (["meter", "--relay", "127.0.0.1:1", "--headend", "127.0.0.1:2"], "one or the other"),
]


@pytest.mark.parametrize(("args", "words"), BAD, ids=[" ".join(a)[:70] for a, _ in BAD])
def test_a_bad_relay_option_is_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                                   words: str) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    assert_usage_error(run(args, tmp_path), args[0], words)
