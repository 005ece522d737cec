"""tshark judges the messages we secure (digest 5, 11): "Crypto good" and the decrypted services.

Every request and typed response of ``c1222.codec.samples`` is secured in modes 1 and 2 with
varied headers (relative/absolute AP titles, A1, A4, A7, 8B, ed-class), written with our pcap
writer and given to tshark with the same keys. tshark must report ``c1222.crypto_good`` for
each, and its decoded service codes and read/write fields must be what we sent (Wireshark 4.0
does not name 0x24-0x27, 0x31-0x39 and 0x41-0x49, so codes are compared). Then ``c1222 decode
--key`` reads the same pcap and must verify every frame.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from c1222.cli.main import cli
from c1222.codec import samples, text
from c1222.codec import services as sv
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codes import AP_TITLE_BASE, C1222_CONTEXT, EAX_PRIME_MECHANISM, ServiceCode
from c1222.crypto.keys import KeyTable
from c1222.crypto.policy import protect, unprotect
from c1222.transport.pcap import PcapWriter
from tests.interop.tshark import tshark_fields

pytestmark = pytest.mark.interop

# Two keys, so the hexadecimal key ids of Wireshark's table are exercised (0x77 = 119).
KEY_BYTES = {2: bytes.fromhex("01020304050607080102030405060708"),
             119: bytes.fromhex("000102030405060708090a0b0c0d0e0f")}
KEYS = KeyTable(KEY_BYTES)
CLI_KEYS = [f"--key={i}:{k.hex()}" for i, k in KEY_BYTES.items()]
FIELDS = ["c1222.crypto_good", "c1222.crypto_bad", "c1222.epsem.flags", "c1222.cmd", "c1222.err",
          "c1222.read.table", "c1222.read.offset", "c1222.read.count", "c1222.write.table",
          "c1222.write.data"]

# (absolute titles, A1, 8B, A7, ed-class); A1 only with absolute titles (digest 5.2 caveat).
COMBOS = [c for c in itertools.product((False, True), repeat=5) if c[0] or not c[1]]


def _variant(apdu: Apdu, mode: int, n: int) -> tuple[Apdu, tuple[bool, ...]]:
    """The sample message secured in ``mode`` with header combination number ``n``."""
    absolute, a1, mech, a7, ed = combo = COMBOS[n % len(COMBOS)]

    def title(t: Uid | None) -> Uid | None:
        if t is None:
            return None
        if absolute:
            return t.absolute()
        # The samples' absolute titles all lie under the AP-title base: make them relative.
        return t if t.relative else Uid(t.arcs[len(AP_TITLE_BASE):], relative=True)

    epsem = dataclasses.replace(apdu.epsem, ed_class=b"ED%02d" % (n % 100) if ed else None,
                                ed_class_included=ed)
    apdu = dataclasses.replace(
        apdu, epsem=epsem, called_ap_title=title(apdu.called_ap_title),
        calling_ap_title=title(apdu.calling_ap_title),
        aso_context=Uid(C1222_CONTEXT) if a1 else None,
        mechanism_name=Uid(EAX_PRIME_MECHANISM) if mech else None,
        calling_ae_qualifier=(n % 8) if a7 else None)
    key_id = 2 if n % 3 else 119
    return samples.secured_variant(apdu, mode, key_id, (0x5F000000 + n).to_bytes(4, "big")), combo


def _messages() -> list[tuple[Apdu, bytes, tuple[bool, ...]]]:
    out = []
    base = samples.messages()
    n = 0
    for mode in (1, 2):
        for apdu in base:
            secured, combo = _variant(apdu, mode, n)
            out.append((secured, protect(secured, KEYS), combo))
            n += 1
    return out


def _expected(apdu: Apdu) -> dict[str, list[str]]:
    """The tshark fields our services should produce (digest 11)."""
    exp: dict[str, list[str]] = {name: [] for name in FIELDS}
    exp["c1222.crypto_good"] = ["1"]
    exp["c1222.crypto_bad"] = ["0"]
    exp["c1222.epsem.flags"] = [f"0x{apdu.epsem.control:02x}"]
    for s in apdu.epsem.services:
        if isinstance(s, sv.Request):
            exp["c1222.cmd"].append(f"0x{s.code:02x}")
            if isinstance(s, sv.FullReadRequest):
                exp["c1222.read.table"].append(f"0x{s.table_id:04x}")
            elif isinstance(s, sv.PartialReadOffsetRequest):
                exp["c1222.read.table"].append(f"0x{s.table_id:04x}")
                exp["c1222.read.offset"].append(f"0x{s.offset:06x}")
                exp["c1222.read.count"].append(str(s.octet_count))
            elif isinstance(s, (sv.FullWriteRequest, sv.PartialWriteOffsetRequest)):
                exp["c1222.write.table"].append(f"0x{s.table_id:04x}")
                exp["c1222.write.data"].append(s.table_data.data.hex())
        else:
            exp["c1222.err"].append(f"0x{s.response_code:02x}")
    return exp


@pytest.fixture(scope="module")
def secured_pcap(tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, list[tuple[Apdu, bytes, tuple[bool, ...]]]]:
    messages = _messages()
    path = tmp_path_factory.mktemp("secured") / "secured.pcap"
    with PcapWriter.open(path, start_time=1_700_000_000.0) as writer:
        conn = writer.tcp_connection(("10.0.0.1", 40000), ("10.0.0.2", 1153))
        for apdu, data, _ in messages:
            conn.send(data, from_client=not apdu.is_response)
    return path, messages


def test_the_set_covers_every_service_and_header_form(secured_pcap) -> None:
    _, messages = secured_pcap
    combos = {(apdu.epsem.security_mode, combo) for apdu, _, combo in messages}
    assert combos == {(mode, c) for mode in (1, 2) for c in COMBOS}
    request_types = {type(s) for a, _, _ in messages for s in a.epsem.services
                     if isinstance(s, sv.Request)}
    response_types = {type(s) for a, _, _ in messages for s in a.epsem.services
                      if not isinstance(s, sv.Request)}
    assert request_types == set(text.REQUESTS.values()) - {sv.UnknownRequest}
    assert set(text.TYPED_RESPONSES.values()) | {sv.OkResponse, sv.ErrorResponse} <= response_types
    assert any(a.called_ap_invocation_id is not None for a, _, _ in messages)  # A4
    assert {a.key_id for a, _, _ in messages} == {2, 119}
    codes = {s.code for a, _, _ in messages for s in a.epsem.services if isinstance(s, sv.Request)}
    assert {ServiceCode.REGISTER, ServiceCode.DEREGISTER, ServiceCode.RESOLVE,
            ServiceCode.TRACE} <= codes


def test_tshark_finds_every_message_crypto_good_with_our_services(secured_pcap) -> None:
    path, messages = secured_pcap
    rows = tshark_fields(path, FIELDS, keys=KEY_BYTES, display_filter="c1222")
    assert len(rows) == len(messages)
    for (apdu, _, combo), row in zip(messages, rows, strict=True):
        got = {name: row[name] for name in FIELDS}
        assert got == _expected(apdu), (row["frame.number"], apdu.epsem.security_mode, combo)


def test_without_the_key_tshark_cannot_vouch_for_them(secured_pcap) -> None:
    """The judge is not blind: with the wrong key nothing is "crypto good"."""
    path, messages = secured_pcap
    wrong = {i: bytes(16) for i in KEY_BYTES}
    rows = tshark_fields(path, ["c1222.crypto_good", "c1222.crypto_bad"], keys=wrong,
                         display_filter="c1222")
    assert len(rows) == len(messages)
    assert all(row["c1222.crypto_good"] == ["0"] for row in rows)
    assert all(row["c1222.crypto_bad"] == ["1"] for row in rows)


def test_c1222_decode_with_keys_verifies_every_frame(secured_pcap) -> None:
    path, messages = secured_pcap
    result = CliRunner().invoke(cli, ["decode", "--json", *CLI_KEYS, str(path)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    assert len(records) == len(messages)
    for record, (apdu, data, _) in zip(records, messages, strict=True):
        assert record["mac_verified"] is True, record["frame"]
        assert record["services"] == [text.service_to_json(s) for s in apdu.epsem.services]
        assert record["ciphertext"] is None
        assert protect(text.from_json(record), KEYS) == data
    # Without keys the frames are reported as not checked, and mode 2 stays ciphertext.
    bare = CliRunner().invoke(cli, ["decode", "--json", str(path)], catch_exceptions=False)
    plain = [json.loads(line) for line in bare.output.splitlines() if line.strip()]
    assert all(r["mac_verified"] is None for r in plain)
    assert all(r["ciphertext"] is not None for r in plain if r["security_mode"] == 2)


def test_a_tampered_frame_is_bad_for_tshark_and_for_us(tmp_path: Path) -> None:
    apdu, data, _ = _messages()[45]  # a mode-2 message
    assert apdu.epsem.security_mode == 2
    tampered = bytearray(data)
    tampered[-6] ^= 0x01  # a ciphertext bit
    path = tmp_path / "tampered.pcap"
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection()
        conn.send(data)
        conn.send(bytes(tampered))
    rows = tshark_fields(path, ["c1222.crypto_good", "c1222.crypto_bad"], keys=KEY_BYTES,
                         display_filter="c1222")
    assert [r["c1222.crypto_good"] for r in rows] == [["1"], ["0"]]
    result = CliRunner().invoke(cli, ["decode", "--json", *CLI_KEYS, str(path)],
                                catch_exceptions=False)
    verdicts = [json.loads(line)["mac_verified"] for line in result.output.splitlines()]
    assert verdicts == [True, False]


def _sized(body: int) -> bytes:
    """A mode-2 Full Write of ``body`` data bytes (octet string: ``body`` + 11 bytes)."""
    apdu = Apdu(Epsem((sv.FullWriteRequest(5, sv.TableData(bytes(body))),), security_mode=2),
                calling_ap_invocation_id=5, called_ap_title=Uid.parse(".1.2"),
                calling_ap_title=Uid.parse(".1.3"))
    return protect(apdu, KEYS, key_id=2, iv=body.to_bytes(4, "big"))


def _length_sizes(data: bytes) -> tuple[int, int, int]:
    """Sizes of the BE, 28 and 81 length fields."""
    pos = data.index(b"\xbe", 20)
    sizes = []
    for _ in range(3):
        first = data[pos + 1]
        size = 1 if first < 0x80 else 1 + (first & 0x7F)
        sizes.append(size)
        pos += 1 + size
    return sizes[0], sizes[1], sizes[2]


@pytest.mark.xfail(strict=True, reason=(
    "Wireshark 4.0 copies 3 + 2*s bytes of the user-information header (s = size of BE's "
    "length field, digest 5.2), so when BE, 28 and 81 lengths differ in size its N includes "
    "ciphertext bytes; we follow digest 5.2 (the header as transmitted). Strict: a fixed "
    "Wireshark makes this test fail, so the note gets updated."))
def test_wireshark_when_ber_length_sizes_differ(tmp_path: Path) -> None:
    messages = [_sized(n) for n in range(100, 140)]
    mixed = [m for m in messages if len(set(_length_sizes(m))) > 1]
    path = tmp_path / "mixed.pcap"
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection()
        for m in mixed:
            conn.send(m)
    rows = tshark_fields(path, ["c1222.crypto_good"], keys=KEY_BYTES, display_filter="c1222")
    assert [r["c1222.crypto_good"] for r in rows] == [["1"]] * len(mixed)


def test_equal_length_sizes_across_boundaries_are_good(tmp_path: Path) -> None:
    """Around the 1/2/3-byte BER boundaries, every size where the three agree verifies."""
    messages = [_sized(n) for n in (*range(100, 140), *range(230, 270))]
    uniform = [m for m in messages if len(set(_length_sizes(m))) == 1]
    assert {_length_sizes(m) for m in uniform} == {(1, 1, 1), (2, 2, 2), (3, 3, 3)}
    # We verify all of them, including those Wireshark 4.0 gets wrong (the xfail above).
    assert all(unprotect(m, KEYS).epsem.services for m in messages)
    assert len(uniform) < len(messages)
    path = tmp_path / "uniform.pcap"
    with PcapWriter.open(path) as writer:
        conn = writer.tcp_connection()
        for m in uniform:
            conn.send(m)
    rows = tshark_fields(path, ["c1222.crypto_good"], keys=KEY_BYTES, display_filter="c1222")
    assert [r["c1222.crypto_good"] for r in rows] == [["1"]] * len(uniform)
