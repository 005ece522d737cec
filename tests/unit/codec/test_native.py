"""Native addresses: binary IPv4/IPv6 + port sent, binary or text accepted (c1222-network.md)."""

from __future__ import annotations

import pytest

from c1222.codec.native import (
    decode_native_address,
    encode_native_address,
    native_address_from_text,
    native_address_text,
)
from c1222.errors import DecodeError, LocalProtocolError


@pytest.mark.parametrize("host, port, wire", [
    ("127.0.0.1", 1153, "7f0000010481"),
    ("10.1.2.3", 0, "0a0102030000"),
    ("::1", 65535, "00000000000000000000000000000001ffff"),
    ("[2001:db8::5]", 1153, "20010db8000000000000000000000005" "0481"),
    ("::ffff:192.0.2.7", 80, "c00002070050"),  # a dual-stack socket's IPv4 peer: 6 bytes
])
def test_encode_binary(host, port, wire):
    assert encode_native_address(host, port).hex() == wire


@pytest.mark.parametrize("host, port", [("meter.example", 1153), ("", 1), ("1.2.3.4", 70000),
                                        ("1.2.3.4", -1)])
def test_encode_refuses_names_and_bad_ports(host, port):
    with pytest.raises(LocalProtocolError):
        encode_native_address(host, port)


@pytest.mark.parametrize("wire, expected", [
    (bytes.fromhex("7f0000010481"), ("127.0.0.1", 1153)),
    (bytes.fromhex("c0a80001"), ("192.168.0.1", 1153)),  # no port: C12.22's own
    (bytes(15) + b"\x01", ("::1", 1153)),
    (bytes(15) + b"\x01\x12\x34", ("::1", 0x1234)),
    (b"127.0.0.1:4000", ("127.0.0.1", 4000)),  # text, from peers before the binary form
    (b"[::1]:4000", ("::1", 4000)),
    (b"[fe80::2]", ("fe80::2", 1153)),
    (b"10.0.0.9", ("10.0.0.9", 1153)),
    (b"2001:db8::1", ("2001:db8::1", 1153)),
])
def test_decode_binary_and_text(wire, expected):
    assert decode_native_address(wire) == expected


@pytest.mark.parametrize("wire", [
    b"", b"\x01", b"\x01\x02\x03\x04\x05", bytes(17), bytes(19), bytes(255),
    b"meter.example.com:1153",  # a name: never looked up
    b"localhost",
    b"127.0.0.1:65536", b"127.0.0.1:", b"127.0.0.1:x", b"[::1]4000", b"[::1:",
    b"1.2.3.4:+1", b"1.2.3.4: 1",
])
def test_decode_refuses_everything_else(wire):
    with pytest.raises(DecodeError) as info:
        decode_native_address(wire)
    assert info.value.path == "native_address"


def test_text_of_a_binary_length_is_binary():
    """The documented ambiguity: 18 printable bytes that are not IP text are an IPv6 address
    (still never a name looked up)."""
    host, port = decode_native_address(b"meter.example:1153")
    assert host == "6d65:7465:722e:6578:616d:706c:653a:3131" and port == 0x3533


def test_text_form_for_people():
    assert native_address_text(encode_native_address("10.0.0.1", 1153)) == "10.0.0.1:1153"
    assert native_address_text(encode_native_address("::1", 7)) == "[::1]:7"
    assert native_address_text(b"10.0.0.1:99") == "10.0.0.1:99"
    assert native_address_text(b"\x01\x02\x03") == "010203"


@pytest.mark.parametrize("native", [bytes.fromhex("0a0000010481"), bytes(15) + b"\x01\x00\x07",
                                    b"\x01\x02\x03", bytes.fromhex("313233343536")])
def test_stored_text_comes_back_as_the_same_address(native):
    """The head-end stores native_address_text and reads it back after a restart."""
    back = native_address_from_text(native_address_text(native))
    assert native_address_text(back) == native_address_text(native)
    if len(native) in (6, 18):
        assert back == native


def test_stored_text_that_is_neither_is_a_decode_error():
    with pytest.raises(DecodeError):
        native_address_from_text("meter.example:1153")
