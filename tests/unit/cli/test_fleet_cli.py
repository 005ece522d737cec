"""`c1222 fleet`: every bad option is one line, `c1222 fleet: error: ...`, exit 2, before any
worker starts."""

from __future__ import annotations

import socket

import pytest

from c1222.cli.main import main

KEY = "2:" + "00" * 16


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(["fleet", *args])
    _, err = capsys.readouterr()
    return int(exit_.value.code or 0), err


BAD = [
    (["--meters", "0"], "'--meters'"),
    (["--meters", "-5"], "'--meters'"),
    (["--meters", "1000001"], "'--meters'"),
    (["--meters", "many"], "'--meters'"),
    (["--workers", "0"], "'--workers'"),
    (["--workers", "65"], "'--workers'"),
    (["--headend", "x:y"], "'--headend'"),
    (["--headend", "127.0.0.1:0"], "port 0 only means"),
    (["--relay", "bad host:1"], "not a host name"),
    (["--headend", "127.0.0.1:1", "--relay", "127.0.0.1:2"], "not both"),
    (["--transport", "sctp"], "'--transport'"),
    (["--listen", "256.1.1.1:0"], "not a host name or IP address"),
    (["--security-mode", "3"], "'--security-mode'"),
    (["--security-mode", "2"], "needs a --key"),
    (["--key", "2:zz"], "'--key'"),
    (["--master-key", "nothex"], "'--master-key'"),
    (["--master-key", KEY, "--key", KEY], "also a --key"),
    (["--key", KEY, "--key-id", "5"], "no --key with id 5"),
    (["--ramp", "nan"], "'--ramp'"),
    (["--ramp", "-1"], "'--ramp'"),
    (["--speed", "0"], "'--speed'"),
    (["--speed", "inf"], "'--speed'"),
    (["--title-base", ".123"], "absolute"),
    (["--title-base", "not.a.title"], "not an AP title"),
    (["--serial-base", "-1"], "'--serial-base'"),
    (["--registration-period", "5"], "'--registration-period'"),
    (["--max-in-flight", "0"], "'--max-in-flight'"),
    (["--seed", "x" * 10_000], "'--seed'"),
]


@pytest.mark.parametrize(("args", "words"), BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_a_bad_option_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                             args: list[str], words: str) -> None:
    status, err = run(capsys, *args)
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("c1222 fleet: error: ") and words in err, err


def test_a_port_in_use_names_the_worker_whose_port_it_is(
        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        status, err = run(capsys, "--listen", f"127.0.0.1:{port}")
        assert status == 2 and f"port {port} is in use" in err, err
        status, err = run(capsys, "--workers", "2", "--listen", f"127.0.0.1:{port - 1}")
        assert status == 2, err
        assert "worker 1" in err or f"port {port - 1} is in use" in err, err
    status, err = run(capsys, "--workers", "3", "--listen", "127.0.0.1:65534")
    assert status == 2 and "ports 65534..65536" in err, err
