"""The hot frozen dataclasses whose ``__init__`` is written out (so that mypyc compiles it)
still behave as the generated one would: every init field by name and position, its
default, the rest set, frozen, ``dataclasses.replace``. A field added to one of them and not
to its ``__init__`` fails here, in the pure build and the compiled one alike."""

from __future__ import annotations

import dataclasses

import pytest

from c1222.codec.acse import Apdu, Header, Spans
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.errors import DecodeError, LocalProtocolError
from c1222.session.dissect import Dissected
from c1222.transport.pcap import CapturedApdu

#: A value of each field's type that is no field's default, by field name.
VALUES: dict[str, object] = {
    "epsem": Epsem(security_mode=1, mac=b"MMMM"), "calling_ap_invocation_id": 7,
    "called_ap_title": Uid.parse(".1.2"), "calling_ap_title": Uid.parse(".3.4"),
    "called_ap_invocation_id": 8, "calling_ae_qualifier": 9, "aso_context": Uid.parse("1.2.3"),
    "mechanism_name": Uid.parse("1.2.4"), "key_id": 3, "iv": b"IVIV",
    "authentication_value": b"auth", "called_ae_qualifier": 10, "indirect_reference": 11,
    "services": (), "security_mode": 1, "response_control": 2, "recovery_session": True,
    "proxy_service_used": True, "ed_class": b"EDCL", "ed_class_included": True,
    "mac": b"MMMM", "ciphertext": None, "padding": b"\x00\x01",
    "elements": ((0xBE, 0, 2, 5),), "fields": {"calling_ap_invocation_id": 1},
    "spans": Spans(((0xBE, 0, 2, 5),), (4, 5)), "data": b"\x60\x00",
    "apdu": Apdu(Epsem(), 1), "error": DecodeError("x", 0, "apdu"), "mac_verified": False,
    "frame": 12, "time": 1.5, "src": "10.0.0.1:1", "dst": "10.0.0.2:1153", "transport": "tcp",
}

CLASSES = [Apdu, Epsem, Spans, Header, Dissected, CapturedApdu]


def _value(cls: type, name: str) -> object:
    return (4, 5) if (cls, name) == (Spans, "epsem") else VALUES[name]  # Spans.epsem: a span


def _init_fields(cls: type) -> list[dataclasses.Field]:  # type: ignore[type-arg]
    return [f for f in dataclasses.fields(cls) if f.init]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_by_keyword_and_by_position(cls: type) -> None:
    fields = _init_fields(cls)
    by_name = cls(**{f.name: _value(cls, f.name) for f in fields})
    by_position = cls(*(_value(cls, f.name) for f in fields))
    for f in fields:
        assert getattr(by_name, f.name) == _value(cls, f.name), f.name
    assert by_name == by_position
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(by_name, fields[0].name, _value(cls, fields[0].name))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_defaults_are_the_dataclass_defaults(cls: type) -> None:
    required = {f.name: _value(cls, f.name) for f in _init_fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    made = cls(**required)
    for f in dataclasses.fields(cls):
        if f.name not in required:
            assert getattr(made, f.name) == f.default, f.name  # init=False ones too


def test_replace_goes_through_the_written_init() -> None:
    apdu = Apdu(Epsem(), 5, key_id=1)
    changed = dataclasses.replace(apdu, key_id=2)
    assert (changed.key_id, changed.calling_ap_invocation_id, changed.spans) == (2, 5, None)
    with pytest.raises(LocalProtocolError, match="MAC is 4 bytes"):
        dataclasses.replace(Epsem(), mac=b"M")


def test_epsem_checks_what_post_init_checked() -> None:
    assert Epsem(ed_class=b"EDCL").ed_class_included is True
    with pytest.raises(LocalProtocolError, match="ed-class is 4 bytes"):
        Epsem(ed_class=b"E")
    with pytest.raises(LocalProtocolError, match="flag without an ed-class"):
        Epsem(ed_class_included=True)
    assert Epsem(ed_class_included=True, ciphertext=b"c").ed_class_included is True
