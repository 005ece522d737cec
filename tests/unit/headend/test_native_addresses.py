"""The head-end and native addresses: binary or text accepted, binary sent (codec.native)."""

from __future__ import annotations

from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import RegisterRequest, ResolveRequest, ResolveResponse
from c1222.headend.registry import RegistrarServices
from c1222.session.responder import ServiceContext

#: The request a service handler is handed in these tests (the handlers do not read it).
NO_APDU = Apdu(epsem=Epsem(), calling_ap_invocation_id=1)

HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")
METER = Uid.parse("2.16.124.113620.1.22.0.5.1")


def _register(native: bytes) -> RegistrarServices:
    registrar = RegistrarServices(HEADEND)
    ctx = ServiceContext(peer=1, now=1000.0, apdu=NO_APDU)
    registrar.handle(RegisterRequest(node_type=0x20, connection_type=0x40,
                                     device_class=b"SIMU", ap_title=METER,
                                     serial_number=Uid.parse(".1"), native_address=native,
                                     registration_period=60), ctx)
    return registrar


def _resolve(registrar: RegistrarServices) -> bytes:
    ctx = ServiceContext(peer=2, now=1001.0, apdu=NO_APDU)
    answer = registrar.handle(ResolveRequest(METER), ctx)
    assert isinstance(answer, ResolveResponse)
    return answer.native_address


def test_resolve_answers_binary_for_a_binary_or_text_registration() -> None:
    for native in (bytes.fromhex("0a0000070481"), b"10.0.0.7:1153"):
        registrar = _register(native)
        assert registrar.nodes[str(METER)].address == "10.0.0.7:1153"
        assert _resolve(registrar).hex() == "0a0000070481"


def test_a_non_ip_address_is_kept_and_shown_in_hex() -> None:
    registrar = _register(b"\x01\x02\x03")  # another network's address: not ours to judge
    assert registrar.nodes[str(METER)].address == "010203"
    assert _resolve(registrar) == b"\x01\x02\x03"
