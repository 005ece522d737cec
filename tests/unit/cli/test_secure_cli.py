"""`c1222 decode --key/--keys` and `c1222 encode --key/--security-mode` (digest 5, 11)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from c1222.cli.main import cli
from c1222.crypto.keys import KeyTable
from c1222.crypto.policy import unprotect

KEY_HEX = "01020304050607080102030405060708"
KEY = f"2:{KEY_HEX}"
# Example 8 (digest 5.6 TV5) and X0 (digest 5.7, mode 1).
EX8_1 = ("604fa20580037bc175a60480027b04a803020103ac0fa20da00ba109800102810448f3d061"
         "be2a282881268841d10cda76206811b36f781489a11997773e117cb07aa3aa40374a7107c5"
         "0da7f799c5d4e8")
EX8_2 = ("6048a20480027b04a403020103a60580037bc175a803020103ac0fa20da00ba109800102810448f3d060"
         "be1e281c811a884baee4349631ab5e56a0e6e0e90dfad558591ee4ea334cb268")
X0 = ("6030a20580037bc175a60480027b04a803020107ac0fa20da00ba10980010281045f000001"
      "be0b28098107840120a7d6786e")
# X0's message in cleartext (mode 0): what --security-mode secures.
IDENTIFY = "601ba20580037bc175a60480027b04a803020107be0728058103800120"


def _run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def _records(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_decode_key_verifies_and_decrypts() -> None:
    result = _run("decode", "--json", "--key", KEY, EX8_1, EX8_2)
    assert result.exit_code == 0, result.output
    first, second = _records(result.output)
    assert first["mac_verified"] is True and second["mac_verified"] is True
    assert [s["service"] for s in first["services"]] == ["security", "partial_read_offset"]
    assert first["ciphertext"] is None and first["mac"] == "99c5d4e8"
    # The response is typed by the request before it: one entry, "MANUFACTURER SN".
    assert b"MANUFACTURER SN" in bytes.fromhex(second["services"][0]["data"])
    assert KEY_HEX not in result.output


def test_decode_without_keys_leaves_it_unchecked() -> None:
    (record,) = _records(_run("decode", "--json", EX8_1).output)
    assert record["mac_verified"] is None
    assert record["services"] == [] and record["ciphertext"]


def test_decode_with_the_wrong_key_or_another_key_id() -> None:
    wrong = _records(_run("decode", "--json", "--key", "2:" + "00" * 16, EX8_1).output)
    other = _records(_run("decode", "--json", "--key", f"3:{KEY_HEX}", EX8_1).output)
    assert wrong[0]["mac_verified"] is False and wrong[0]["ciphertext"]
    assert other[0]["mac_verified"] is None


def test_decode_mode_1_and_cleartext() -> None:
    records = _records(_run("decode", "--json", "--key", KEY, X0, IDENTIFY).output)
    assert [r["mac_verified"] for r in records] == [True, None]
    assert [r["security_mode"] for r in records] == [1, 0]


def test_decode_tree_says_verified_and_shows_the_decrypted_services() -> None:
    result = _run("decode", "-V", "--key", KEY, EX8_1)
    assert "MAC verified: yes" in result.output
    assert "ciphertext" in result.output and "decrypted:" in result.output
    assert "service=partial_read_offset code=63 table_id=1 offset=16 octet_count=16" in (
        result.output)
    bad = _run("decode", "-V", "--key", "2:" + "00" * 16, EX8_1)
    assert "MAC verified: NO" in bad.output and "decrypted:" not in bad.output


def test_decode_keys_file_in_wireshark_format(tmp_path: Path) -> None:
    path = tmp_path / "c1222_decryption_table"
    path.write_text('# key for Example 8\n"02",' + KEY_HEX + "\n")
    (record,) = _records(_run("decode", "--json", "--keys", str(path), EX8_1).output)
    assert record["mac_verified"] is True
    # --key overrides the file for the same id.
    (record,) = _records(_run("decode", "--json", "--keys", str(path), "--key",
                              "2:" + "11" * 16, EX8_1).output)
    assert record["mac_verified"] is False


def test_bad_key_options_never_echo_key_bytes(tmp_path: Path) -> None:
    secret = "abcdef0123456789abcdef012345678"  # 31 digits: malformed
    result = CliRunner().invoke(cli, ["decode", "--key", f"2:{secret}", EX8_1])
    assert result.exit_code == 2 and secret not in result.output
    path = tmp_path / "keys"
    path.write_text(f'"2",{secret}x\n')
    result = CliRunner().invoke(cli, ["decode", "--keys", str(path), EX8_1])
    assert result.exit_code == 2 and "line 1" in result.output and secret not in result.output
    result = CliRunner().invoke(cli, ["decode", "--keys", str(tmp_path / "missing"), EX8_1])
    assert result.exit_code == 2 and "cannot read key file" in result.output


def test_encode_key_round_trip_is_byte_identical() -> None:
    decoded = _run("decode", "--json", "--key", KEY, EX8_1, EX8_2, X0).output
    again = _run("encode", "--key", KEY, input=decoded)
    assert again.exit_code == 0, again.output
    assert again.output.split() == [EX8_1, EX8_2, X0]


def test_encode_without_key_passes_ciphertext_records_through() -> None:
    decoded = _run("decode", "--json", EX8_1).output
    assert _run("encode", input=decoded).output.split() == [EX8_1]
    # A decrypted record cannot be re-encrypted without the key: a clear error, no bytes.
    plain = _run("decode", "--json", "--key", KEY, EX8_1).output
    result = CliRunner().invoke(cli, ["encode"], input=plain)
    assert result.exit_code == 1 and "line 1" in result.output


def test_encode_security_mode_1_reproduces_x0() -> None:
    cleartext = _run("decode", "--json", IDENTIFY).output
    result = _run("encode", "--key", KEY, "--security-mode", "1", "--iv", "5f000001",
                  input=cleartext)
    assert result.output.split() == [X0]


def test_encode_security_mode_2_with_a_fresh_iv() -> None:
    cleartext = _run("decode", "--json", IDENTIFY, IDENTIFY).output
    result = _run("encode", "--key", KEY, "--security-mode", "2", input=cleartext)
    first, second = result.output.split()
    keys = KeyTable.from_cli([KEY])
    a, b = unprotect(bytes.fromhex(first), keys), unprotect(bytes.fromhex(second), keys)
    assert a.epsem.security_mode == 2 and a.key_id == 2
    # the same record twice: same A8, so the IV must differ (else the EAX' nonce repeats)
    assert a.calling_ap_invocation_id == b.calling_ap_invocation_id and a.iv != b.iv
    assert [type(s).__name__ for s in a.epsem.services] == ["IdentifyRequest"]


def test_encode_security_mode_with_several_keys_needs_key_id() -> None:
    cleartext = _run("decode", "--json", IDENTIFY).output
    two = ["--key", KEY, "--key", f"7:{'22' * 16}"]
    result = CliRunner().invoke(cli, ["encode", *two, "--security-mode", "1"], input=cleartext)
    assert result.exit_code == 1 and "--key-id" in result.output
    result = _run("encode", *two, "--security-mode", "1", "--key-id", "7", "--iv", "00000001",
                  input=cleartext)
    (hex_out,) = result.output.split()
    assert unprotect(bytes.fromhex(hex_out), KeyTable.from_cli(two[1::2])).key_id == 7


def test_encode_option_errors() -> None:
    cleartext = _run("decode", "--json", IDENTIFY).output
    result = CliRunner().invoke(cli, ["encode", "--security-mode", "1"], input=cleartext)
    assert result.exit_code == 2 and "need --key" in result.output
    result = CliRunner().invoke(cli, ["encode", "--key", KEY, "--iv", "5f00"], input=cleartext)
    assert result.exit_code == 2 and "--iv" in result.output
    result = CliRunner().invoke(cli, ["encode", "--key", KEY, "--security-mode", "3"],
                                input=cleartext)
    assert result.exit_code == 2
    # A record naming a key id we have no key for: an error naming the id, not a key.
    record = json.loads(_run("decode", "--json", "--key", KEY, EX8_1).output)
    record["key_id"] = 9
    result = CliRunner().invoke(cli, ["encode", "--key", KEY], input=json.dumps(record))
    assert result.exit_code == 1 and "no key for key id 9" in result.output
    assert KEY_HEX not in result.output
