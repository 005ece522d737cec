"""The registrar's additions for the master relay (session/registrar.py): its own assignment
branch, expiry, Registers a relay forwarded, and native addresses."""

from __future__ import annotations

import pytest

from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import RegisterRequest, RegisterResponse
from c1222.errors import ONP
from c1222.session.registrar import (
    RegistrarServices, decode_native, encode_native, native_address_text,
)
from c1222.session.responder import ServiceContext

MASTER = Uid.parse("2.16.124.113620.1.22.0.123.1")
EMPTY = Uid((), relative=True)


def register(title: Uid = EMPTY, period: int = 60) -> RegisterRequest:
    return RegisterRequest(node_type=0x20, connection_type=0xF0, device_class=b"SIMU",
                           ap_title=title, serial_number=Uid.parse(".1"),
                           native_address=encode_native("127.0.0.1", 1153),
                           registration_period=period)


def ctx(peer: int, now: float = 1000.0) -> ServiceContext:
    return ServiceContext(peer=peer, now=now, apdu=Apdu(epsem=Epsem(),
                                                       calling_ap_invocation_id=1))


def test_titles_come_from_the_branch_and_skip_held_ones() -> None:
    registrar = RegistrarServices(MASTER, assign_base=(2, 16, 124, 113620, 1, 22, 0, 7))
    taken = Uid.parse("2.16.124.113620.1.22.0.7.1")
    registrar.handle(register(taken), ctx(1))
    answer = registrar.handle(register(), ctx(2))
    assert isinstance(answer, RegisterResponse)
    assert str(answer.reg_ap_title) == "2.16.124.113620.1.22.0.7.2"  # .1 is held


def test_expire_drops_nodes_past_their_period() -> None:
    registrar = RegistrarServices(MASTER, reg_period=100)
    registrar.handle(register(period=50), ctx(1, now=1000.0))
    registrar.handle(register(period=500), ctx(1, now=1000.0))
    (gone,) = registrar.expire(1051.0)
    assert gone.registration_period == 50 and gone.state == "expired"
    assert len(registrar.nodes) == 1
    assert registrar.expire(1099.0) == [] and len(registrar.expire(1101.0)) == 1


def test_registers_forwarded_by_a_relay_are_not_capped_by_its_address() -> None:
    relays = {7}
    registrar = RegistrarServices(MASTER, max_per_source=2, source_of=lambda peer: "10.0.0.1",
                                  trusted_peer=relays.__contains__)
    for _ in range(5):  # a relay forwards many meters' Registers
        registrar.handle(register(), ctx(7))
    registrar.handle(register(), ctx(1))
    registrar.handle(register(), ctx(1))
    with pytest.raises(ONP):  # a node of its own from that address is still capped
        registrar.handle(register(), ctx(1))


@pytest.mark.parametrize(("host", "port", "size"), [("127.0.0.1", 1153, 6),
                                                    ("::1", 40000, 18)])
def test_native_addresses_are_binary_and_read_back(host: str, port: int, size: int) -> None:
    data = encode_native(host, port)
    assert len(data) == size and decode_native(data) == (host, port)
    assert native_address_text(data) in (f"{host}:{port}", f"[{host}]:{port}")


def test_text_native_addresses_are_still_read() -> None:
    assert decode_native(b"10.1.2.3:1153") == ("10.1.2.3", 1153)
    assert decode_native(bytes([10, 1, 2, 3])) == ("10.1.2.3", 1153)  # no port: 1153


@pytest.mark.parametrize("data", [b"", b"\x01\x02\x03", b"host.example:1153", b"1.2.3.4:99999",
                                  bytes(7), b"\xff" * 40])
def test_hostile_native_addresses_are_value_errors_and_hex_text(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_native(data)
    assert native_address_text(data) == data.hex()
