"""The routing view of an APDU, the proxy bit and the relay's own errors (relay/wire.py)."""

from __future__ import annotations

import pytest

from c1222.codec import acse
from c1222.codec.ber import Uid
from c1222.codec.epsem import FLAG_PROXY_SERVICE_USED
from c1222.codec.services import ErrorResponse, FullReadRequest
from c1222.codes import ResponseCode
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import FixedNonceSource
from c1222.crypto.policy import unprotect
from c1222.errors import DecodeError
from c1222.relay.wire import error_response, peek, title_key, with_proxy_bit
from c1222.session.requester import Requester

KEYS = KeyTable.from_cli(["2:000102030405060708090A0B0C0D0E0F"])
METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")
HEADEND = Uid.parse(".123.4")
RELAY = Uid.parse("2.16.124.113620.1.22.0.123.2")


def _request(mode: int) -> bytes:
    requester = Requester(HEADEND, FixedNonceSource(b"\0\0\0\1", 4242), keys=KEYS,
                          security_mode=mode, key_id=2 if mode else None)
    return requester.request([FullReadRequest(1)], METER).data


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_peek_reads_the_header(mode: int) -> None:
    header = peek(_request(mode))
    assert header.called == METER and header.calling == HEADEND
    assert header.calling_invocation_id == 4242 and not header.is_response
    assert header.mode(_request(mode)) == mode


def test_proxy_bit_only_in_cleartext() -> None:
    clear = _request(0)
    marked = with_proxy_bit(clear, peek(clear))
    assert acse.decode(marked).epsem.proxy_service_used
    assert len(marked) == len(clear)
    secured = _request(2)
    assert with_proxy_bit(secured, peek(secured)) == secured  # the MAC covers the control byte
    unprotect(secured, KEYS)  # still verifies


def test_proxy_bit_set_once() -> None:
    clear = _request(0)
    marked = with_proxy_bit(clear, peek(clear))
    assert with_proxy_bit(marked, peek(marked)) == marked
    assert marked[peek(marked).control] & FLAG_PROXY_SERVICE_USED


def test_error_response_answers_the_request() -> None:
    request = peek(_request(2))
    data = error_response(request, ResponseCode.NETT, RELAY, 99)
    apdu = acse.decode(data)
    assert apdu.called_ap_invocation_id == 4242 and apdu.calling_ap_invocation_id == 99
    assert apdu.called_ap_title == HEADEND and apdu.calling_ap_title == RELAY
    assert apdu.epsem.security_mode == 0
    (service,) = apdu.epsem.services
    assert isinstance(service, ErrorResponse) and service.response_code == ResponseCode.NETT


def test_title_keys() -> None:
    assert title_key(None) == "" and title_key(Uid((), relative=True)) == ""
    assert title_key(HEADEND) == "2.16.124.113620.1.22.0.123.4"


@pytest.mark.parametrize("data", [b"", b"\x60", b"\x61\x00", b"\x60\x05\xa2\x03\x80\x01",
                                  b"\x60\x03\xbe\x01\x00", bytes(300), b"\x60\x84\xff\xff\xff\xff"])
def test_hostile_headers_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        peek(data)
