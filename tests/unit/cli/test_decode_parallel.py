"""`c1222 decode --jobs N`: a capture split by connection over worker processes gives the
serial path's output, in capture order, with the same exit status."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from c1222.cli import codec as codec_cli
from c1222.cli import parallel
from c1222.cli.main import cli
from c1222.codec import samples
from c1222.transport.pcap import PcapWriter

KEY = "2:" + bytes(range(16)).hex()


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _capture(path: Path, connections: int = 7, rounds: int = 3) -> int:
    """Every sample exchange on several interleaved connections (same invocation ids on each,
    so a response typed by another connection's request would show), plus UDP and a
    message that does not decode; returns the message count."""
    templates = samples.messages()
    count = 0
    with PcapWriter.open(path, start_time=1_700_000_000.0, time_step=0.001) as writer:
        conns = [writer.tcp_connection((f"10.0.0.{i + 1}", 40000 + i), ("10.9.0.1", 1153))
                 for i in range(connections)]
        for r in range(rounds):
            for i in range(0, len(templates), 2):
                for k, conn in enumerate(conns):
                    req, resp = templates[i], templates[i + 1]
                    if (k + r) % 3 == 0:  # requests in flight on one connection at once
                        req = replace(req, calling_ap_invocation_id=100 + i)
                        resp = replace(resp, called_ap_invocation_id=100 + i)
                    conn.send(req.encode())
                    conn.send(resp.encode(), from_client=False)
                    count += 2
            writer.udp(("10.0.1.1", 1153), ("10.9.0.1", 1153), templates[0].encode())
            writer.udp(("10.0.1.1", 1153), ("10.9.0.1", 1153), bytes.fromhex("6003a80102"))
            count += 2
    return count


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # several chunks in flight even on a small capture, so the merge order is exercised
    monkeypatch.setattr(parallel, "CHUNK", 37)


@pytest.mark.parametrize("options", [("--json",), (), ("--json", "--service", "read"),
                                     ("--json", "--key", KEY)])
def test_parallel_output_is_the_serial_output(tmp_path: Path, options: tuple[str, ...]) -> None:
    path = tmp_path / "many.pcap"
    count = _capture(path)
    serial = _run("decode", *options, "--jobs", "1", str(path))
    for jobs in ("2", "3"):
        split = _run("decode", *options, "--jobs", jobs, str(path))
        assert split.stdout == serial.stdout
        assert split.exit_code == serial.exit_code == 1  # the broken message
        assert split.stderr == serial.stderr
    if options == ("--json",):
        frames = [json.loads(line)["frame"] for line in serial.stdout.splitlines()]
        assert len(frames) == count and frames == sorted(frames)


def test_a_capture_cut_short_writes_what_was_read_then_fails(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    _capture(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    serial = _run("decode", "--json", "--jobs", "1", str(path))
    split = _run("decode", "--json", "--jobs", "2", str(path))
    assert split.stdout == serial.stdout and split.stdout.count("\n") > 100
    assert split.exit_code == serial.exit_code


def test_jobs_zero_uses_workers_only_for_a_large_capture(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "small.pcap"
    _capture(path, connections=2, rounds=1)
    assert codec_cli._workers(0, [path]) == 1
    assert codec_cli._workers(0, ["60"]) == 1
    monkeypatch.setattr(codec_cli, "PARALLEL_FROM_BYTES", 1)
    monkeypatch.setattr(codec_cli.os, "sched_getaffinity", lambda pid: set(range(2)))
    assert codec_cli._workers(0, [path]) == 2  # two cores: a worker on each, the reader beside
    monkeypatch.setattr(codec_cli.os, "sched_getaffinity", lambda pid: set(range(6)))
    assert codec_cli._workers(0, [path]) == 5
    assert codec_cli._workers(4, [path]) == 4
    hexfile = tmp_path / "hex.txt"
    hexfile.write_text("60\n" * 10)
    assert codec_cli._workers(0, [hexfile]) == 1


@pytest.mark.parametrize("value", ["-1", "65", "two", ""])
def test_bad_jobs_is_a_usage_error(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(cli, ["decode", "--jobs", value, "60"])
    assert result.exit_code == 2
    assert "--jobs" in result.stderr and "Traceback" not in result.output
