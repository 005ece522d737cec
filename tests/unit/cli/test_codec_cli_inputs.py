"""`c1222 decode`: what it reads, what it says about inputs it cannot read, its exit statuses,
the one-line view (the default, as tshark's packet list), the filters and the tree's wording."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from c1222.cli.main import cli
from c1222.codec import samples, text
from c1222.codes import ResponseCode
from c1222.transport.pcap import PcapWriter

READ_T0 = "601da20580037bc175a60480027b04a803020121be09280781058003300000"
READ_T0_RESPONSE = ("602da20480027b04a403020121a60580037bc175a803020105be1428128110800e00000a"
                    "0200004c4749521b0000b5")
KEY = "2:01020304050607080102030405060708"


def _run(*args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def _sample_hex() -> list[str]:
    return [m.encode().hex() for m in samples.messages()]


# --------------------------------------------------------------------------- inputs, exit status


def test_a_missing_file_is_an_error_not_hex(tmp_path: Path) -> None:
    result = _run("decode", str(tmp_path / "nonexistent.pcap"))
    assert result.exit_code == 2
    assert "nonexistent.pcap: no such file" in result.stderr
    assert result.stdout == ""  # no "message 1 (0 bytes) error: not hexadecimal"


def test_a_directory_is_an_error(tmp_path: Path) -> None:
    result = _run("decode", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_a_binary_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 4)
    result = _run("decode", str(path))
    assert result.exit_code == 2
    assert "neither a pcap/pcapng capture nor hex text" in result.stderr and result.stdout == ""
    binary_stdin = _run("decode", input=b"\x00\x01\x02garbage")
    assert binary_stdin.exit_code == 2 and "standard input" in binary_stdin.stderr


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:  # root reads a mode-0 file; this one refuses every read (EINVAL)
        path, reason = Path("/proc/self/clear_refs"), "invalid argument"
    else:
        path, reason = tmp_path / "secret.hex", "permission denied"
        path.write_text(READ_T0)
        path.chmod(0)
    result = _run("decode", str(path))
    assert result.exit_code == 2 and reason in result.stderr.lower()


def test_a_file_whose_name_is_hex_is_read_as_a_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("beef").write_text(READ_T0 + "\n")
    result = _run("decode", "--json", "beef")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["services"][0]["service"] == "full_read"


def test_a_capture_cut_short_shows_the_messages_before_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection(("10.0.0.1", 40000), ("10.0.0.2", 1153))
        conn.send(bytes.fromhex(READ_T0))
        conn.send(bytes.fromhex(READ_T0_RESPONSE), from_client=False)
    path.write_bytes(path.read_bytes()[:-10])
    result = _run("decode", str(path))
    assert result.exit_code == 1  # the last frame's message is incomplete
    assert "full_read" in result.stdout and "not captured whole" in result.stdout


def test_a_damaged_capture_header_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 6)
    result = _run("decode", str(path))
    assert result.exit_code == 2 and "not a pcap or pcapng file" in result.stderr


def test_exit_1_when_a_message_does_not_decode_and_0_when_all_do() -> None:
    assert _run("decode", READ_T0).exit_code == 0
    bad = _run("decode", "6005a8030201", READ_T0)
    assert bad.exit_code == 1 and "1 message(s) did not decode" in bad.stderr
    assert "full_read" in bad.stdout  # decoding went on
    not_hex = _run("decode", input="zz\n")
    assert not_hex.exit_code == 1 and "not hexadecimal" in not_hex.stdout


def test_exit_1_when_nothing_is_found(tmp_path: Path) -> None:
    path = tmp_path / "http.pcap"
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection(("10.0.0.1", 40000), ("10.0.0.2", 80))
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    result = _run("decode", str(path))
    assert result.exit_code == 1 and result.stdout == ""
    assert "no C12.22 message found" in result.stderr and "--port" in result.stderr
    empty = tmp_path / "empty.hex"
    empty.write_text("# nothing here\n")
    assert _run("decode", str(empty)).exit_code == 1


def test_usage_errors_exit_2() -> None:
    assert _run("decode", "--security-mode", "7", READ_T0).exit_code == 2
    assert _run("decode", "--response-code", "nope", READ_T0).exit_code == 2
    assert _run("decode", "--ap-title", "1.x", READ_T0).exit_code == 2


# --------------------------------------------------------------------------- one line per message


def test_the_default_view_is_one_line_per_message() -> None:
    result = _run("decode", input=f"{READ_T0}\n{READ_T0_RESPONSE}\n")
    first, second = result.stdout.splitlines()
    assert re.fullmatch(r"\s+1 \.123\.4 (→|->) \.123\.8437 mode 0 id 33 full_read table_id=0",
                        first)
    # the response: paired with its request (re = its A4), status and size of the data
    assert re.fullmatch(r"\s+2 \.123\.8437 (→|->) \.123\.4 mode 0 re 33 id 5 "
                        r"read ok table_data=10 bytes", second)


def test_one_line_of_a_capture_has_time_and_endpoints(tmp_path: Path) -> None:
    path = tmp_path / "two.pcap"
    with PcapWriter.open(path, start_time=1_700_000_000.0, time_step=0.25) as writer:
        conn = writer.tcp_connection(("10.0.0.1", 40000), ("10.0.0.2", 1153))
        conn.send(bytes.fromhex(READ_T0))
        conn.send(bytes.fromhex(READ_T0_RESPONSE), from_client=False)
    lines = _run("decode", str(path)).stdout.splitlines()
    assert re.match(r"\s+4\s+0\.000000 10\.0\.0\.1:40000 (→|->) 10\.0\.0\.2:1153 TCP \.123\.4",
                    lines[0])
    assert re.match(r"\s+5\s+0\.250000 10\.0\.0\.2:1153 (→|->) 10\.0\.0\.1:40000 TCP", lines[1])


def test_one_line_flags_a_bad_table_checksum() -> None:
    record = text.to_json(samples.messages()[12])  # full_write of table 6, 10 bytes
    record["services"][0]["table_data"]["checksum"] = "00"  # wrong, as a tester may send it
    line = _run("decode", text.from_json(record).encode().hex()).stdout
    assert "full_write table_id=6 table_data=10 bytes BAD CHECKSUM" in line


def test_one_line_of_an_error_and_of_ciphertext() -> None:
    error = _run("decode", "6005a8030201").stdout
    assert "error:" in error and "apdu.length" in error
    ex8 = ("604fa20580037bc175a60480027b04a803020103ac0fa20da00ba109800102810448f3d061"
           "be2a282881268841d10cda76206811b36f781489a11997773e117cb07aa3aa40374a7107c5"
           "0da7f799c5d4e8")
    assert "mode 2 id 3 [encrypted, 33 bytes]" in _run("decode", ex8).stdout
    decrypted = _run("decode", "--key", KEY, ex8).stdout
    assert "MAC ok" in decrypted and "partial_read_offset table_id=1 offset=16" in decrypted


# --------------------------------------------------------------------------- filters


def _frames(*args: str) -> list[int]:
    result = _run("decode", "--json", *args, input="\n".join(_sample_hex()))
    assert result.exit_code == 0, result.output
    return [json.loads(line)["frame"] for line in result.stdout.splitlines()]


def test_filters_choose_the_messages_shown() -> None:
    messages = samples.messages()

    def numbers(test) -> list[int]:
        return [i for i, m in enumerate(messages, 1) if test(m)]

    def names(m) -> set[str]:
        return {s.service or "" for s in m.epsem.services}

    reads = numbers(lambda m: any("read" in n.split("_") for n in names(m)))
    assert _frames("--service", "read") == reads and len(reads) > 8
    assert _frames("--service", "full_read") == numbers(lambda m: "full_read" in names(m))
    assert _frames("--service", "logon", "--service", "logoff") == numbers(
        lambda m: names(m) & {"logon", "logoff"})
    assert _frames("--response-code", "rstl") == numbers(
        lambda m: any(getattr(s, "response_code", None) == ResponseCode.RSTL
                      for s in m.epsem.services))
    assert _frames("--response-code", "16") == _frames("--response-code", "RSTL") != []
    # relative or absolute spelling, calling or called
    assert _frames("--ap-title", "2.16.124.113620.1.22.0.123.4") == list(
        range(1, len(messages) + 1))
    assert _frames("--ap-title", ".99") == []
    assert _frames("--security-mode", "1") == []
    # two filters: both must hold
    assert _frames("--service", "read", "--response-code", "ok") == [
        i for i in reads if i % 2 == 0]


def test_filters_hide_undecodable_messages_but_the_exit_status_counts_them() -> None:
    result = _run("decode", "--service", "full_read", input=f"6005a8030201\n{READ_T0}\n")
    assert result.exit_code == 1 and "error" not in result.stdout
    assert "full_read" in result.stdout


# --------------------------------------------------------------------------- the tree's wording


def test_decrypted_services_are_shown_as_cleartext_ones_not_as_python_reprs() -> None:
    write = samples.messages()[12]  # full_write of table 6
    assert write.epsem.services[0].service == "full_write"
    secured = _run("encode", "--key", KEY, "--security-mode", "2", "--iv", "01020304",
                   input=json.dumps(text.to_json(write)) + "\n")
    tree = _run("decode", "-V", "--key", KEY, secured.stdout.strip()).stdout
    assert "decrypted:" in tree
    assert "table_data={count=10 data=4d455445522d30303031" in tree
    assert "{'count'" not in tree and "'data'" not in tree


def test_a_relative_uid_in_a_service_is_shown_with_its_absolute_form() -> None:
    register = next(m for m in samples.messages()
                    if m.epsem.services and m.epsem.services[0].service == "register")
    serial = register.epsem.services[0].serial_number
    assert serial.relative
    tree = _run("decode", "-V", register.encode().hex()).stdout
    assert f"serial_number={serial} ({serial.absolute()})" in tree
    record = json.loads(_run("decode", "--json", register.encode().hex()).stdout)
    assert record["services"][0]["serial_number_absolute"] == str(serial.absolute())


def test_a_reader_that_stops_early_ends_the_run_quietly_with_status_0(tmp_path: Path) -> None:
    """`c1222 decode big.pcap | head`: status 1 would claim undecodable messages."""
    import subprocess
    import sys

    path = tmp_path / "many.hex"
    path.write_text((READ_T0 + "\n") * 50_000)
    proc = subprocess.Popen([sys.executable, "-m", "c1222.cli", "decode", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert b"full_read" in proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""
