"""`c1222 decode` and `c1222 encode` as a user runs them."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from click.testing import CliRunner

from c1222.cli.main import cli
from c1222.codec import samples
from c1222.transport.pcap import PcapWriter

READ_T0 = "601da20580037bc175a60480027b04a803020121be09280781058003300000"
READ_T0_RESPONSE = ("602da20480027b04a403020121a60580037bc175a803020105be1428128110800e00000a"
                    "0200004c4749521b0000b5")


def _run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_decode_verbose_is_a_tree_with_hex_beside_it():
    result = _run("decode", "-V", READ_T0)
    assert result.exit_code == 0
    assert "called_ap_title .123.8437 (2.16.124.113620.1.22.0.123.8437)" in result.output
    assert "a2 05 80 03 7b c1 75" in result.output
    assert "service=full_read code=48 table_id=0" in result.output


def test_decode_leaves_the_collector_as_it_found_it():
    # decode raises the collection threshold for its loop (cli/codec.py says why), and
    # restores it for a caller that goes on
    before = gc.get_threshold()
    assert _run("decode", "--json", READ_T0).exit_code == 0
    assert gc.get_threshold() == before


def test_decode_json_pairs_the_response_with_its_request():
    result = _run("decode", "--json", input=f"{READ_T0}\n{READ_T0_RESPONSE}\n")
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["frame"] == 1 and first["calling_ap_invocation_id"] == 33
    assert first["called_ap_title_absolute"] == "2.16.124.113620.1.22.0.123.8437"
    (service,) = second["services"]
    assert service["service"] == "read" and service["response_code"] == "ok"
    assert service["table_data"] == {"count": 10, "data": "0200004c4749521b0000",
                                     "checksum": "b5", "checksum_ok": True}


def test_a_bad_message_is_reported_and_decoding_goes_on():
    result = _run("decode", "--json", input=f"6005a8030201\nzz\n{READ_T0}\n")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["error"]["path"] == "apdu.length" and records[0]["error"]["offset"] == 1
    assert records[1]["error"]["reason"] == "not hexadecimal"
    assert records[2]["services"][0]["service"] == "full_read"


def test_decode_then_encode_gives_the_same_bytes(tmp_path):
    messages = [m.encode() for m in samples.messages()]
    decoded = _run("decode", "--json", input="\n".join(m.hex() for m in messages))
    encoded = _run("encode", input=decoded.stdout)
    assert encoded.exit_code == 0
    assert encoded.stdout.split() == [m.hex() for m in messages]


def test_encode_names_the_bad_field():
    result = CliRunner().invoke(cli, ["encode"], input='{"calling_ap_invocation_id": "x"}\n')
    assert result.exit_code == 1
    assert "calling_ap_invocation_id" in result.output


def test_decode_a_capture_file_with_endpoints(tmp_path):
    path = tmp_path / "two.pcap"
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection(("10.0.0.1", 40000), ("10.0.0.2", 1153))
        both = bytes.fromhex(READ_T0) + bytes.fromhex(READ_T0_RESPONSE)
        conn.send(both[:20])  # an APDU split over segments...
        conn.send(both[20:31])
        conn.send(bytes.fromhex(READ_T0_RESPONSE), from_client=False)
    records = [json.loads(x) for x in _run("decode", "--json", str(path)).stdout.splitlines()]
    assert [(r["src"], r["dst"], r["transport"]) for r in records] == [
        ("10.0.0.1:40000", "10.0.0.2:1153", "tcp"), ("10.0.0.2:1153", "10.0.0.1:40000", "tcp")]
    assert records[1]["services"][0]["service"] == "read"


def test_console_command_is_installed():
    out = subprocess.run([sys.executable, "-m", "c1222.cli", "decode", READ_T0],
                         capture_output=True, text=True, check=True)
    assert "full_read" in out.stdout
