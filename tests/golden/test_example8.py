"""The standard's Example 8 (digest 5.6 TV5, 8.3) and the cross-check APDUs X0-X3 (digest 5.7).

Both directions, byte for byte: every message verifies and decrypts with key id 2, and
``protect`` of the decrypted message gives back the received bytes. Example 8 is read from
../shared/captures through the project's own capture reader.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from c1222.codec import services as sv
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codes import EAX_PRIME_MECHANISM, C1222_CONTEXT, ResponseControl, SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.policy import authenticated_cleartext, make_unprotect, protect, unprotect
from c1222.session.dissect import Dissector
from c1222.transport.pcap import read_capture
from tests.interop.tshark import require_captures

H = bytes.fromhex
KEY = H("01020304050607080102030405060708")
KEYS = KeyTable({2: KEY})

# Digest 5.6 TV5.
MESSAGE_1 = H(
    "604fa20580037bc175a60480027b04a803020103ac0fa20da00ba109800102810448f3d061"
    "be2a282881268841d10cda76206811b36f781489a11997773e117cb07aa3aa40374a7107c5"
    "0da7f799c5d4e8")
MESSAGE_2 = H(
    "6048a20480027b04a403020103a60580037bc175a803020103ac0fa20da00ba109800102810448f3d060"
    "be1e281c811a884baee4349631ab5e56a0e6e0e90dfad558591ee4ea334cb268")
# Digest 5.2 (63 bytes) and 5.6 (68 bytes).
CLEARTEXT_1 = H(
    "a20d060b607c86f7540116007bc175" "a803020103" "ac0fa20da00ba109800102810448f3d061"
    "be2a2828812688" "a60c060a607c86f7540116007b04" "02" "48f3d061")
CLEARTEXT_2 = H(
    "a20c060a607c86f7540116007b04" "a403020103" "a803020103"
    "ac0fa20da00ba109800102810448f3d060" "be1e281c811a88"
    "a60d060b607c86f7540116007bc175" "02" "48f3d060")
PASSWORD = b"PASSWORD".ljust(20, b" ")
REQUEST_SERVICES = (sv.SecurityRequest(PASSWORD, 2), sv.PartialReadOffsetRequest(1, 16, 16))

# Digest 5.7.
X0 = H("6030a20580037bc175a60480027b04a803020107ac0fa20da00ba10980010281045f000001"
       "be0b28098107840120a7d6786e")
X0_CLEARTEXT = H("a20d060b607c86f7540116007bc175" "a803020107"
                 "ac0fa20da00ba10980010281045f000001" "be0b2809810784"
                 "a60c060a607c86f7540116007b04" "02" "5f000001")
X1 = H("6041a20480027b04a403020107a60580037bc175a703020104a80402021234"
       "ac0fa20da00ba10980010281045f000002be11280f810d9a25540fcccca83952d1be990d")
X1_CLEARTEXT = H("a20c060a607c86f7540116007b04" "a403020107" "a703020104" "a80402021234"
                 "ac0fa20da00ba10980010281045f000002" "be11280f810d9a"
                 "a60d060b607c86f7540116007bc175" "02" "5f000002")
X2 = H("6052a20d060b607c86f7540116007bc175a60c060a607c86f7540116007b04a8030201c8"
       "8b09607c86f75401160201ac0fa20da00ba10980010281045f000003be122810810e88"
       "6aed2903001d46e78650684b34")
X3 = H("604ba1090607607c86f7540116a20d060b607c86f7540116007bc175a60c060a607c86f7540116007b04"
       "a803020109ac0fa20da00ba10980010281045f000004be0b280981078829fd9464c084")

METER = Uid.parse(".123.8437")
HEADEND = Uid.parse(".123.4")


@pytest.fixture(scope="module")
def example8() -> list[bytes]:
    path = require_captures() / "c1222_std_example8.pcap"
    # The path as the architecture names it, relative to the repository: ../shared/captures.
    assert path.resolve() == (Path(__file__).resolve().parents[2].parent / "shared" / "captures"
                              / "c1222_std_example8.pcap").resolve()
    records = list(read_capture(path))
    assert [r.error for r in records] == [None, None]
    return [r.data for r in records]


def test_capture_holds_the_digest_bytes(example8: list[bytes]) -> None:
    assert example8 == [MESSAGE_1, MESSAGE_2]


def test_authenticated_cleartext_of_both_messages(example8: list[bytes]) -> None:
    assert authenticated_cleartext(example8[0]) == CLEARTEXT_1
    assert authenticated_cleartext(example8[1]) == CLEARTEXT_2


def test_both_messages_verify_and_decrypt(example8: list[bytes]) -> None:
    request = unprotect(example8[0], KEYS)
    assert request.epsem.services == REQUEST_SERVICES
    assert request.epsem.ciphertext is None
    assert request.epsem.mac == H("99c5d4e8")
    assert (request.key_id, request.iv) == (2, H("48f3d061"))
    response = unprotect(example8[1], KEYS, requests=REQUEST_SERVICES)
    assert response.called_ap_invocation_id == request.calling_ap_invocation_id == 3
    (entry,) = response.epsem.services
    assert entry.response_code == 0
    # The single response entry answers the read, not the first request (digest 3.3 note).
    assert isinstance(entry, sv.RawResponse)
    assert entry.data == H("0010") + b"MANUFACTURER SN " + H("92")
    assert b"MANUFACTURER SN" in entry.data


def test_protect_of_the_decrypted_messages_gives_the_original_bytes(example8: list[bytes]) -> None:
    request = unprotect(example8[0], KEYS)
    response = unprotect(example8[1], KEYS, requests=REQUEST_SERVICES)
    assert protect(request, KEYS) == example8[0]
    assert protect(response, KEYS) == example8[1]


def test_protect_from_scratch_reproduces_message_1() -> None:
    """Built from values, not from a decode: the sender path alone gives the standard's bytes."""
    apdu = Apdu(Epsem(REQUEST_SERVICES, security_mode=SecurityMode.CIPHERTEXT_AUTHENTICATED),
                calling_ap_invocation_id=3, called_ap_title=METER, calling_ap_title=HEADEND)
    assert protect(apdu, KEYS, key_id=2, iv=H("48f3d061")) == MESSAGE_1


def test_protect_from_scratch_reproduces_message_2() -> None:
    read = sv.ReadResponse(table_data=sv.TableData(b"MANUFACTURER SN "))
    apdu = Apdu(Epsem((read,), security_mode=SecurityMode.CIPHERTEXT_AUTHENTICATED),
                calling_ap_invocation_id=3, called_ap_invocation_id=3,
                called_ap_title=HEADEND, calling_ap_title=METER, key_id=2, iv=H("48f3d060"))
    assert protect(apdu, KEYS) == MESSAGE_2


def test_dissector_verifies_the_capture(example8: list[bytes]) -> None:
    dissector = Dissector(unprotect=make_unprotect(KEYS))
    first = dissector.dissect(example8[0], "client", "meter")
    second = dissector.dissect(example8[1], "meter", "client")
    assert (first.mac_verified, second.mac_verified) == (True, True)
    assert first.apdu is not None and first.apdu.epsem.services == REQUEST_SERVICES
    assert second.apdu is not None
    assert b"MANUFACTURER SN" in second.apdu.epsem.services[0].encode()


# --------------------------------------------------------------------------- X0-X3

CROSS_CHECKS = {
    "X0": (X0, SecurityMode.CLEARTEXT_AUTHENTICATED, None, (sv.IdentifyRequest(),)),
    "X1": (X1, SecurityMode.CIPHERTEXT_AUTHENTICATED, b"TEST", (sv.FullReadRequest(0),)),
    "X2": (X2, SecurityMode.CIPHERTEXT_AUTHENTICATED, None,
           (sv.PartialReadOffsetRequest(1, 16, 16),)),
    "X3": (X3, SecurityMode.CIPHERTEXT_AUTHENTICATED, None, (sv.IdentifyRequest(),)),
}


@pytest.mark.parametrize("name", sorted(CROSS_CHECKS))
def test_cross_check_verifies_and_round_trips(name: str) -> None:
    data, mode, ed_class, services = CROSS_CHECKS[name]
    apdu = unprotect(data, KEYS)
    assert apdu.epsem.security_mode == mode
    assert apdu.epsem.ed_class == ed_class
    assert apdu.epsem.services == services
    assert protect(apdu, KEYS) == data


def test_x0_and_x1_cleartexts_are_the_digest_ones() -> None:
    assert authenticated_cleartext(X0) == X0_CLEARTEXT
    assert authenticated_cleartext(X1) == X1_CLEARTEXT
    assert X0[-4:] == H("a7d6786e")


def test_x1_from_scratch() -> None:
    apdu = Apdu(Epsem((sv.FullReadRequest(0),), ed_class=b"TEST",
                      security_mode=SecurityMode.CIPHERTEXT_AUTHENTICATED,
                      response_control=ResponseControl.NEVER),
                calling_ap_invocation_id=0x1234, called_ap_invocation_id=7,
                called_ap_title=HEADEND, calling_ap_title=METER, calling_ae_qualifier=0x04)
    assert protect(apdu, KEYS, key_id=2, iv=H("5f000002")) == X1


def test_x2_and_x3_from_scratch() -> None:
    """Absolute titles, 8B (part of N) and A1 (part of N)."""
    x2 = Apdu(Epsem((sv.PartialReadOffsetRequest(1, 16, 16),),
                    security_mode=SecurityMode.CIPHERTEXT_AUTHENTICATED),
              calling_ap_invocation_id=200, called_ap_title=METER.absolute(),
              calling_ap_title=HEADEND.absolute(), mechanism_name=Uid(EAX_PRIME_MECHANISM))
    assert protect(x2, KEYS, key_id=2, iv=H("5f000003")) == X2
    x3 = Apdu(Epsem((sv.IdentifyRequest(),), security_mode=SecurityMode.CIPHERTEXT_AUTHENTICATED),
              calling_ap_invocation_id=9, called_ap_title=METER.absolute(),
              calling_ap_title=HEADEND.absolute(), aso_context=Uid(C1222_CONTEXT))
    assert protect(x3, KEYS, key_id=2, iv=H("5f000004")) == X3
