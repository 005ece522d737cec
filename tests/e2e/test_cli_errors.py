"""Every bad option or argument of every command, as a user types it: one line on stderr,
``c1222 CMD: error: ...``, exit status 2, no traceback, nothing started. And the meter says at
the default log level when its head-end is unreachable or refuses its keys, and when that ends.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import Running

KEY = "2:" + "00" * 16
OTHER_KEY = "2:" + "FF" * 16
ADDR = "127.0.0.1:1"  # a peer address for commands that need one (never reached: refused first)


def _files(tmp: Path) -> dict[str, str]:
    (tmp / "broken.toml").write_text("a = \n")
    (tmp / "unknown.toml").write_text("nope = 1\n")
    (tmp / "badaddr.toml").write_text('listen = "x:y"\n')
    (tmp / "statefile.toml").write_text(f'state_dir = "{tmp / "afile"}"\n')
    (tmp / "afile").write_text("")
    (tmp / "big.toml").write_bytes(b"#" * (1024 * 1024 + 1))
    return {name.removesuffix(".toml"): str(tmp / name) for name in
            ("broken.toml", "unknown.toml", "badaddr.toml", "statefile.toml", "afile",
             "big.toml")}


# (arguments, words the one error line must contain); {name} is a file made by _files,
# {tmp} the test's folder.
BAD = [
    (["nosuch"], "No such command"),
    (["meter", "--nosuch"], "No such option"),
    # addresses
    (["meter", "--listen", "x:y"], "'--listen'"),
    (["meter", "--listen", "127.0.0.1:70000"], "port out of range"),
    (["meter", "--listen", "256.1.1.1:1153"], "not a host name or IP address"),
    (["meter", "--listen", "no.such.host.invalid:0"], "cannot listen on"),
    (["meter", "--listen", "192.0.2.1:0"], "not an address of this machine"),
    (["meter", "--headend", "1.2.3.4:-5"], "'--headend'"),
    (["meter", "--headend", "127.0.0.1:0"], "port 0 only means"),
    (["meter", "--ihd", "h:p"], "'--ihd'"),
    (["meter", "--headend", "bad host:1"], "not a host name"),
    (["headend", "--listen", "x:y"], "'--listen'"),
    (["headend", "--http", "h:p"], "'--http'"),
    (["ihd", "--http", "h:99999"], "'--http'"),
    (["ihd", "--listen", "[::1:5"], "'--listen'"),
    (["conformance", "bad:port"], "HOST:PORT"),
    (["conformance", "127.0.0.1:0"], "port 0 only means"),
    (["conformance", "--listen", "x:y"], "'--listen'"),
    (["demo", "--display-http", "bad"], "'--display-http'"),
    (["demo", "--console-http", "h:p"], "'--console-http'"),
    # AP titles
    (["meter", "--ap-title", "x"], "not an AP title"),
    (["meter", "--headend-ap-title", "abc"], "not an AP title"),
    (["meter", "--ihd-ap-title", "1..2"], "not an AP title"),
    (["headend", "--ap-title", "junk"], "not an AP title"),
    (["ihd", "--ap-title", "."], "not an AP title"),
    (["conformance", ADDR, "--called-ap-title", "junk"], "not an AP title"),
    (["conformance", ADDR, "--calling-ap-title", "9" * 5000], "not an AP title"),
    # keys and modes
    (["meter", "--key", "2:zz"], "32 hex digits"),
    (["meter", "--key", "300:" + "00" * 16], "0-255"),
    (["headend", "--key", "bad"], "'--key'"),
    (["ihd", "--key", "2:" + "00" * 15], "'--key'"),
    (["conformance", ADDR, "--key", "x"], "'--key'"),
    (["meter", "--key-id", "5", "--key", KEY], "key_id"),
    (["meter", "--key-id", "-1"], "'--key-id'"),
    (["headend", "--key-id", "9", "--key", KEY], "no --key with id 9"),
    (["headend", "--master-key", "2:zz"], "'--master-key'"),
    (["headend", "--master-key", KEY, "--key", KEY], "given twice"),
    (["headend", "--master-key", KEY, "--master-key", KEY], "given twice"),
    (["conformance", ADDR, "--key-id", "7"], "key id 7"),
    (["meter", "--security-mode", "2"], "needs a key"),
    (["headend", "--security-mode", "2"], "needs a --key"),
    (["ihd", "--security-mode", "2"], "needs a --key"),
    (["meter", "--security-mode", "3"], "'--security-mode'"),
    (["headend", "--security-mode", "-1"], "'--security-mode'"),
    (["conformance", ADDR, "--security-mode", "3"], "security modes are 0, 1 and 2"),
    # passwords and user ids
    (["headend", "--password", "x" * 21], "at most 20"),
    (["headend", "--password", "비밀"], "Latin-1"),
    (["conformance", ADDR, "--password", "x" * 21], "at most 20"),
    (["conformance", ADDR, "--reader-password", "x" * 40], "at most 20"),
    (["headend", "--user-id", "-1"], "'--user-id'"),
    (["headend", "--user-id", "70000"], "'--user-id'"),
    # numbers: negative, zero, huge, not finite, not numbers
    (["meter", "--speed", "0"], "'--speed'"),
    (["meter", "--speed", "-1"], "'--speed'"),
    (["meter", "--speed", "nan"], "not a finite number"),
    (["meter", "--speed", "inf"], "not a finite number"),
    (["meter", "--speed", "abc"], "not a valid float"),
    (["meter", "--speed", "1e9"], "'--speed'"),
    (["meter", "--start-time", "nan"], "not a finite number"),
    (["meter", "--start-time", "-1e300"], "'--start-time'"),
    (["meter", "--max-connections", "0"], "'--max-connections'"),
    (["meter", "--max-connections", "100000"], "'--max-connections'"),
    (["meter", "--message-timeout", "0"], "'--message-timeout'"),
    (["meter", "--idle-timeout", "-1"], "'--idle-timeout'"),
    (["meter", "--serial-number", ""], "serial_number"),
    (["meter", "--serial-number", "미터"], "serial_number"),
    (["headend", "--collect-interval", "-1"], "'--collect-interval'"),
    (["headend", "--collect-interval", "0"], "'--collect-interval'"),
    (["headend", "--collect-interval", "nan"], "not a finite number"),
    (["headend", "--collect-interval", "inf"], "not a finite number"),
    (["headend", "--log-interval", "-1"], "'--log-interval'"),
    (["headend", "--collect-concurrency", "0"], "'--collect-concurrency'"),
    (["headend", "--collect-concurrency", "5000"], "'--collect-concurrency'"),
    (["headend", "--collect-concurrency", "many"], "'--collect-concurrency'"),
    (["headend", "--collect-attempts", "0"], "'--collect-attempts'"),
    (["headend", "--collect-attempts", "11"], "'--collect-attempts'"),
    (["headend", "--reg-period", "-5"], "'--reg-period'"),
    (["headend", "--reg-period", str(2**24)], "'--reg-period'"),
    (["demo", "--speed", "0"], "'--speed'"),
    (["demo", "--speed", "nan"], "not a finite number"),
    (["conformance", ADDR, "--timeout", "0"], "'--timeout'"),
    (["conformance", ADDR, "--register-timeout", "nan"], "not a finite number"),
    (["conformance", ADDR, "--oversize", "0"], "'--oversize'"),
    (["tables", "decode", "--", "-1", "00"], "table numbers are 0 .. 2047"),
    (["tables", "decode", "99999", "00"], "table numbers are 0 .. 2047"),
    (["tables", "decode", "MT4096", "00"], "table numbers are 0 .. 2047"),
    (["tables", "decode", "abc", "00"], "not a table number"),
    (["tables", "decode", "23", "zz"], "not hexadecimal"),
    (["tables", "decode", "--dim", "11=zz", "23", "00"], "not hexadecimal"),
    (["tariff", "100", "--month", "2024-13"], "'--month'"),
    (["tariff", "abc", "--month", "2024-01"], "kWh"),
    (["tariff", "1e30", "--month", "2024-01"], "no household's month"),
    (["tariff", "1e999999999", "--month", "2024-01"], "no household's month"),
    (["headend", "--ap-title", ".".join(["1"] * 3000)], "(5999 chars) is not an AP title"),
    (["meter", "--listen", "h" * 10_000 + ":1"], "(10002 chars) is not HOST:PORT"),
    # the display's MQTT broker (c1222.ihd.mqtt)
    (["ihd", "--mqtt", "http://127.0.0.1:1883"], "mqtt:// or mqtts://"),
    (["ihd", "--mqtt", "mqtt://:1883"], "no host"),
    (["ihd", "--mqtt", "mqtt://h:99999"], "'--mqtt'"),
    (["ihd", "--mqtt", "mqtt://h:1883/topic"], "nothing after the port"),
    (["ihd", "--mqtt-prefix", "home/+"], "'--mqtt-prefix'"),
    (["ihd", "--mqtt-node-id", "node"], "needs --mqtt URL"),
    (["ihd", "--mqtt", "mqtt://h", "--mqtt-node-id", "a/b"], "'--mqtt-node-id'"),
    (["ihd", "--mqtt", "mqtt://h", "--mqtt-ca", "{afile}"], "for mqtts:// only"),
    (["ihd", "--mqtt", "mqtts://h", "--mqtt-ca", "/dev/zero"], "not a regular file"),
    (["ihd", "--mqtt", "mqtts://h", "--mqtt-ca", "{broken}"], "not a PEM CA certificate"),
    (["ihd", "--mqtt", "mqtt://h", "--mqtt-user", "u" * 5000], "1 to 128 printable"),
    (["ihd", "--mqtt", "mqtt://h", "--mqtt-password", "p" * 5000], "at most 1024 bytes"),
    (["ihd", "--mqtt", "mqtt://a%0Ab@h"], "1 to 128 printable"),
    # time zones
    (["ihd", "--tz", "Mars/Olympus"], "not a time zone"),
    (["ihd", "--tz", "../../etc/passwd"], "not a time zone"),
    (["ihd", "--tz", ""], "not a time zone"),
    # paths: files that are directories, folders that are files, places nobody can write
    (["demo", "--out", "{afile}"], "not a directory"),
    (["demo", "--out", "/proc/c1222-demo/out"], "cannot write in '/proc'"),
    (["samples", "--out", "{afile}"], "not a directory"),
    (["meter", "--state-dir", "{afile}"], "not a directory"),
    (["ihd", "--state-dir", "{afile}"], "not a directory"),
    (["meter", "--pcap", "{tmp}"], "is a directory"),
    (["meter", "--pcap", "/nonexistent/x.pcap"], "does not exist"),
    (["headend", "--pcap", "/proc/x.pcap"], "cannot write"),
    (["conformance", ADDR, "--json", "{tmp}"], "is a directory"),
    (["conformance", ADDR, "--junit", "/nonexistent/x.xml"], "does not exist"),
    (["meter", "--profile", "/nonexistent.toml"], "cannot read"),
    (["meter", "--profile", "{tmp}"], "is a directory"),
    (["meter", "--profile", "/dev/zero"], "not a regular file"),
    (["meter", "--profile", "{big}"], "at most"),
    (["meter", "--profile", "{broken}"], "line 1"),
    (["meter", "--profile", "{unknown}"], "not a meter profile field"),
    (["meter", "--profile", "{badaddr}"], "listen"),
    (["meter", "--profile", "{statefile}"], "not a directory"),
    (["tariff", "100", "--month", "2024-01", "--tariff-file", "/dev/zero"],
     "not a regular file"),
    (["headend", "--db", "foo://x"], "'--db'"),
    (["headend", "--db", "sqlite:////nonexistent/dir/x.db"], "does not exist"),
    (["headend", "--db", "{tmp}"], "is a directory"),
]


def run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "c1222.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def assert_usage_error(result: subprocess.CompletedProcess[str], command: str,
                       words: str) -> str:
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"c1222{' ' if command else ''}{command}: error: "), lines[0]
    assert words in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "words"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_a_bad_input_is_one_line_and_exit_2_before_anything_starts(
        tmp_path: Path, args: list[str], words: str) -> None:
    names = _files(tmp_path)
    args = [a.format(tmp=tmp_path, **names) for a in args]
    before = set(os.listdir(tmp_path))
    command = {"tables": "tables decode", "nosuch": ""}.get(args[0], args[0])
    assert_usage_error(run(args, tmp_path), command, words)
    # nothing was started: no database, no state folder, no capture in the working folder
    assert set(os.listdir(tmp_path)) == before


@pytest.fixture
def busy() -> Iterator[tuple[int, int]]:
    """A TCP port with a listener, and a UDP port with a bound socket."""
    with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        yield tcp.getsockname()[1], udp.getsockname()[1]


@pytest.mark.parametrize(("command", "option", "proto"), [
    ("meter", "--listen", "tcp"), ("meter", "--listen", "udp"),
    ("headend", "--listen", "tcp"), ("headend", "--http", "tcp"),
    ("ihd", "--listen", "udp"), ("ihd", "--http", "tcp"),
    ("conformance", "--listen", "tcp"),
])
def test_a_port_in_use_is_the_same_message_whichever_port(
        tmp_path: Path, busy: tuple[int, int], command: str, option: str, proto: str) -> None:
    port = busy[0] if proto == "tcp" else busy[1]
    args = [command, option, f"127.0.0.1:{port}"]
    for other in ("--listen", "--http"):
        if other != option and command in ("headend", "ihd"):
            args += [other, "127.0.0.1:0"]
    if command == "headend":
        args += ["--db", f"sqlite:///{tmp_path / 'h.db'}"]
    line = assert_usage_error(run(args, tmp_path), command, f"'{option}'")
    assert line.endswith(f"port {port} is in use (on 127.0.0.1); pick another or stop what "
                         "holds it"), line
    assert not (tmp_path / "h.db").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_line(proc: Running, pattern: str, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        found = [line for line in list(proc.lines) if regex.search(line)]
        if found:
            return found
        assert proc.proc.poll() is None, "\n".join(proc.lines)
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in {timeout} s:\n" + "\n".join(proc.lines))


def test_an_unreachable_head_end_is_a_warning_at_the_default_level_then_its_recovery(
        tmp_path: Path) -> None:
    port = _free_port()
    meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend", f"127.0.0.1:{port}"])
    headend = None
    try:
        meter.address()
        _wait_line(meter, r"WARNING cannot reach the head-end.*127\.0\.0\.1:%d" % port)
        time.sleep(4)  # a few more retries, each only INFO: the warning is not repeated
        headend = Running(["headend", "--listen", f"127.0.0.1:{port}", "--http", "127.0.0.1:0",
                           "--db", f"sqlite:///{tmp_path / 'h.db'}"])
        headend.address()
        again = _wait_line(meter, r"WARNING registered with the head-end at 127\.0\.0\.1:%d, "
                                  r"after (\d+) failed attempts" % port, timeout=120)
        failures = int(re.search(r"after (\d+) failed", again[0]).group(1))  # type: ignore
        warned = [line for line in meter.lines if "cannot reach the head-end" in line]
        assert len(warned) == 1 and failures >= 2, meter.lines
        assert not any("INFO" in line or "Traceback" in line for line in meter.lines)
    finally:
        assert meter.stop() == 0, "\n".join(meter.lines[-40:])
        if headend is not None:
            headend.stop()


def test_mismatched_keys_are_a_warning_naming_the_keys(tmp_path: Path) -> None:
    headend = Running(["headend", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", f"sqlite:///{tmp_path / 'h.db'}", "--security-mode", "2",
                       "--key", KEY])
    meter = None
    try:
        host, port = headend.address()
        meter = Running(["meter", "--listen", "127.0.0.1:0", "--headend", f"{host}:{port}",
                         "--security-mode", "2", "--key", OTHER_KEY])
        line = _wait_line(meter, r"WARNING the head-end at .* does not accept our security")[0]
        assert "SME" in line and "keys" in line and "key id 2" in line, line
        assert OTHER_KEY[2:] not in "\n".join(meter.lines)  # never print a key
    finally:
        if meter is not None:
            assert meter.stop() == 0, "\n".join(meter.lines[-40:])
        headend.stop()
