"""Native addresses: every IP address and port round-trips; any bytes decode or raise
DecodeError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from c1222.codec.native import decode_native_address, encode_native_address, native_address_text
from c1222.errors import DecodeError


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(0, 0xFFFF))
def test_every_address_round_trips(ip, port):
    data = encode_native_address(str(ip), port)
    assert len(data) in (6, 18)
    host, got_port = decode_native_address(data)
    expected = ip.ipv4_mapped if getattr(ip, "ipv4_mapped", None) else ip
    assert (host, got_port) == (str(expected), port)
    # the text form people see is itself an accepted native address
    assert decode_native_address(native_address_text(data).encode()) == (host, got_port)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.text(alphabet="0123456789abcdef.:[]x ",
                                                   max_size=45).map(str.encode)))
def test_any_bytes_decode_or_raise_decode_error(data):
    try:
        host, port = decode_native_address(data)
    except DecodeError:
        return
    assert 0 <= port <= 0xFFFF and host
