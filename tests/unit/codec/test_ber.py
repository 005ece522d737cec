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
    assert decode_unsigned(bytes.fromhex("0080"), 0, "") == 0x80  # a sign byte is tolerated
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
