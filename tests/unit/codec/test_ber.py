"""BER primitives: lengths, integers, identifiers (digest section 1)."""

from __future__ import annotations

import pytest

from c1222.codec.ber import (
    Uid,
    decode_unsigned,
    encode_length,
    encode_unsigned,
    read_length,
    read_uid,
)
from c1222.errors import BerError, DecodeLimitExceeded, LocalProtocolError, Truncated


@pytest.mark.parametrize("n, wire", [
    (0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"),
    (65535, "82ffff"), (65536, "83010000"), (2**32 - 1, "84ffffffff"),
])
def test_lengths_are_minimal_and_read_back(n, wire):
    assert encode_length(n).hex() == wire
    data = bytes.fromhex(wire)
    assert read_length(data, 0, len(data)) == (n, len(data))


@pytest.mark.parametrize("wire, error", [
    ("80", BerError),          # indefinite form
    ("8105", BerError),        # non-minimal: 5 fits one byte
    ("820080", BerError),      # non-minimal: leading zero octet
    ("850100000000", BerError),  # five length octets
    ("82ff", Truncated),
    ("", Truncated),
])
def test_bad_lengths_are_refused(wire, error):
    data = bytes.fromhex(wire)
    with pytest.raises(error) as info:
        read_length(data, 0, len(data), "x")
    assert info.value.path == "x"


def test_length_over_four_octets_cannot_be_encoded():
    with pytest.raises(LocalProtocolError):
        encode_length(2**32)


def test_unsigned_integers_minimal_without_sign_byte():
    assert encode_unsigned(0x80).hex() == "80"  # MSDK style, no 00 sign byte
    assert encode_unsigned(333976609).hex() == "13e81421"
    with pytest.raises(DecodeLimitExceeded):
        decode_unsigned(bytes.fromhex("0102030405"), 0, "")
    with pytest.raises(BerError):
        decode_unsigned(b"", 0, "")


@pytest.mark.parametrize("dotted, wire", [
    ("2.16.124.113620.1.22.0.123.8437", "060b607c86f7540116007bc175"),
    ("2.16.124.113620.1.22.0.123.4", "060a607c86f7540116007b04"),
    (".123.8437", "0d037bc175"),
    ("1.3.6.1.4.1.33507.1919.12345678.0", "060f2b060104018285638e7f85f1c24e00"),
])
def test_worked_identifier_encodings(dotted, wire):
    uid = Uid.parse(dotted)
    assert uid.encode().hex() == wire
    assert str(uid) == dotted
    data = bytes.fromhex(wire)
    assert read_uid(data, 0, len(data), "") == (uid, len(data))


def test_relative_titles_expand_under_the_c1222_base():
    assert str(Uid.parse(".123.8437").absolute()) == "2.16.124.113620.1.22.0.123.8437"
    assert Uid.parse(".123.8437").encode(0x80).hex() == "80037bc175"
    data = bytes.fromhex("80037bc175")
    assert read_uid(data, 0, 5, "")[0] == Uid.parse(".123.8437")


@pytest.mark.parametrize("wire, error", [
    ("0600", BerError),              # empty OID
    ("0602 8001", BerError),         # non-minimal arc (leading 0x80)
    ("0602 2b86", Truncated),        # last arc unfinished
    ("0208 2b06010401828563", BerError),  # not an identifier tag
    ("0d07 ffffffffffff7f", DecodeLimitExceeded),  # arc of 7 bytes
])
def test_bad_identifiers_are_refused(wire, error):
    data = bytes.fromhex(wire.replace(" ", ""))
    with pytest.raises(error):
        read_uid(data, 0, len(data), "uid")


def test_identifier_text_is_validated():
    with pytest.raises(LocalProtocolError):
        Uid.parse("2.x.3")
    with pytest.raises(LocalProtocolError):
        Uid((3, 1))


@pytest.mark.parametrize("content", ["0014", "0080", "00000001", "00"])
def test_an_integer_decodes_only_from_the_bytes_it_re_encodes_to(content):
    # Issue 15 finding 10: `02 02 00 14` decoded to 20 and re-encoded as `02 01 14`.
    raw = bytes.fromhex(content)
    try:
        value = decode_unsigned(raw, 0, "x")
    except BerError as exc:
        assert "non-minimal" in str(exc) and exc.path == "x"
        return
    assert encode_unsigned(value) == raw


def test_a_non_minimal_invocation_id_in_an_apdu_is_a_decode_error():
    from c1222.codec import acse

    from c1222.codec.acse import Apdu
    from c1222.codec.ber import Uid
    from c1222.codec.epsem import Epsem
    from c1222.codec.services import IdentifyRequest

    apdu = Apdu(epsem=Epsem(services=(IdentifyRequest(),)), called_ap_title=Uid.parse(".123.8437"),
                calling_ap_invocation_id=0x14)
    data = acse.encode(apdu)
    assert acse.encode(acse.decode(data)) == data
    a8 = bytes.fromhex("a803020114")
    assert a8 in data
    # Same APDU with A8 `02 02 00 14`: every enclosing length grows by one.
    padded = data.replace(a8, bytes.fromhex("a80402020014"))
    padded = bytes([padded[0], padded[1] + 1]) + padded[2:]
    with pytest.raises(BerError, match="non-minimal"):
        acse.decode(padded)


# ---------------------------------------------------------------------------- byte helpers
# The compiled codec takes one-byte values from a table and leaves bytes as they are instead
# of calling the bytes type (docs/performance.md); these keep bytes()'s answers and errors.


def test_the_byte_table_is_bytes_of_each_value():
    from c1222.codec.ber import BYTES, byte

    assert len(BYTES) == 256
    assert all(BYTES[n] == bytes((n,)) == byte(n) for n in range(256))


@pytest.mark.parametrize("value", [-1, 256, 1 << 40])
def test_byte_refuses_what_bytes_refuses(value):
    from c1222.codec.ber import byte

    with pytest.raises(ValueError):
        bytes((value,))
    with pytest.raises(ValueError):
        byte(value)  # never BYTES[-1], which would be 0xFF


@pytest.mark.parametrize("code", [-1, 256])
def test_a_response_code_out_of_a_byte_is_a_local_error_not_a_wrapped_byte(code):
    from c1222.codec.services import OkResponse

    with pytest.raises(LocalProtocolError, match="does not fit"):
        OkResponse(response_code=code).encode()


def test_as_bytes_keeps_bytes_and_copies_the_rest():
    from c1222.codec.ber import as_bytes

    data = b"\x01\x02\x03"
    assert as_bytes(data) is data
    for other in (bytearray(data), memoryview(data)):
        copied = as_bytes(other)
        assert type(copied) is bytes and copied == data


def test_tlv_heads_short_and_long_contents():
    from c1222.codec.ber import tlv

    assert tlv(0xA4, b"\x02\x01\x05") == bytes.fromhex("a403020105")
    assert tlv(0x81, bytes(127))[:2] == bytes.fromhex("817f")
    assert tlv(0x81, bytes(128))[:3] == bytes.fromhex("818180")
    assert tlv(0x81, bytes(300))[:4] == bytes.fromhex("8182012c")
    with pytest.raises(ValueError):
        tlv(0x100, b"")
