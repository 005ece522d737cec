"""The hot dataclasses (the decoded message, the services, the responder's per-request ones)
whose ``__init__`` is written out (so that mypyc compiles it) still behave as the generated one
would: every init field by name and position, its default, the rest set, frozen (those that
are), ``dataclasses.replace``. A field added to one of them and not
to its ``__init__`` fails here, in the pure build and the compiled one alike."""

from __future__ import annotations

import dataclasses

import pytest

from c1222.codec import services as sv
from c1222.codec.acse import Apdu, Header, Spans
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codes import ResponseCode
from c1222.errors import DecodeError, LocalProtocolError
from c1222.session.dissect import Dissected
from c1222.session.responder import Reply, ServiceContext, Session
from c1222.tables.access import Principal
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
    "frame": 12, "time": 1.5, "peer": ("10.0.0.1", 1), "now": 2.5, "close": True,
    "request": Apdu(Epsem(), 2), "response": Apdu(Epsem(), 3), "principal": Principal(2, 3),
    "session": Session(2, b"operator  ", 60, 1.0), "src": "10.0.0.1:1", "dst": "10.0.0.2:1153", "transport": "tcp",
    # the services
    "checksums": b"\x07", "ap_title": Uid.parse(".5.6"), "node_type": 0x80,
    "connection_type": 1, "device_class": b"DCLS", "serial_number": Uid.parse(".7"),
    "native_address": b"\x0a\x00", "registration_period": 60, "domain_pattern": b"dom",
    "table_id": 23, "indices": (1, 2), "element_count": 3, "offset": 4, "octet_count": 5,
    "table_data": sv.TableData(b"td"), "user_id": 6, "user": b"operator  ",
    "req_session_idle_timeout": 7, "password": b"p" * 20, "seconds": 8, "request_code": 0x7E,
    "response_code": 0x0B, "max_size": 900, "resp_session_idle_timeout": 9, "format": 1,
    "identity": b"id", "std": 4, "ver": 2, "rev": 1, "security_mechanisms": (Uid.parse("1.2"),),
    "session_ctrl": 0x81, "device_identity": sv.DeviceIdentity(1, b"me"),
    "reg_ap_title": Uid.parse(".9"), "reg_delay": 10, "reg_period": 11, "reg_info": 12,
    "ap_titles": (Uid.parse(".1"), Uid.parse(".2")),
}

CLASSES = [Apdu, Epsem, Spans, Header, Dissected, CapturedApdu,
           sv.TableData, sv.DeviceIdentity, sv.DeregisterRequest, sv.ResolveRequest,
           sv.TraceRequest, sv.RegisterRequest, sv.FullReadRequest, sv.PartialReadIndexRequest,
           sv.PartialReadOffsetRequest, sv.FullWriteRequest, sv.PartialWriteIndexRequest,
           sv.PartialWriteOffsetRequest, sv.LogonRequest, sv.SecurityRequest, sv.WaitRequest,
           sv.UnknownRequest, sv.RawResponse, sv.ErrorResponse, sv.OkResponse, sv.ReadResponse,
           sv.LogonResponse, sv.IdentifyResponse, sv.RegisterResponse, sv.ResolveResponse,
           sv.TraceResponse, Reply, ServiceContext]
#: Of those, the ones that are not frozen.
MUTABLE = {ServiceContext}
#: Fields whose value in VALUES is of another field's type of the same name.
OWN_VALUES: dict[tuple[type, str], object] = {
    (Spans, "epsem"): (4, 5),  # a span
    (sv.IdentifyResponse, "device_class"): Uid.parse("1.3"),  # a Uid, Register's is 4 bytes
}


def _value(cls: type, name: str) -> object:
    return OWN_VALUES.get((cls, name), VALUES[name])


def _init_fields(cls: type) -> list[dataclasses.Field]:  # type: ignore[type-arg]
    return [f for f in dataclasses.fields(cls) if f.init]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_by_keyword_and_by_position(cls: type) -> None:
    fields = _init_fields(cls)
    by_name = cls(**{f.name: _value(cls, f.name) for f in fields})
    for f in fields:
        assert getattr(by_name, f.name) == _value(cls, f.name), f.name
    if fields[0].kw_only:  # the responses: keywords only, as the dataclass made them
        with pytest.raises(TypeError):
            cls(*(_value(cls, f.name) for f in fields))
    else:
        assert by_name == cls(*(_value(cls, f.name) for f in fields))
    if cls not in MUTABLE:
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


def test_the_services_keep_their_kind() -> None:
    # the subclasses that take _ApTitleRequest's __init__ and the ClassVars set after the bodies
    request = sv.ResolveRequest(Uid.parse(".5"))
    assert (request.service, request.code) == ("resolve", 0x25)
    assert request.encode() == b"\x25\x0d\x01\x05"
    assert sv.ErrorResponse().response_code == ResponseCode.ERR
    assert sv.OkResponse().service is None
    assert dataclasses.replace(sv.ReadResponse(table_data=sv.TableData(b"x")),
                               response_code=0x0B).response_code == 0x0B


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


def test_uid_and_message_id_compare_and_hash_as_their_fields() -> None:
    """Their written-out ``__eq__``/``__hash__`` (eq=False dataclasses): equal exactly when
    the compared fields are, the cached text and absolute form left out."""
    from c1222.crypto.replay import MessageId

    a, b = Uid.parse(".123.4"), Uid((123, 4), relative=True)
    str(a), a.absolute()  # fill a's caches only
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Uid.parse("1.2.123.4") and a != Uid.parse(".123.5") and a != (123, 4)
    assert a.absolute() == Uid.parse("2.16.124.113620.1.22.0.123.4")
    m = MessageId("2.16.1", 2, b"IVIV", 7)
    assert m == MessageId("2.16.1", 2, bytearray(b"IVIV"), 7)
    assert hash(m) == hash(MessageId("2.16.1", 2, b"IVIV", 7))
    for other in (MessageId("2.16.2", 2, b"IVIV", 7), MessageId("2.16.1", 3, b"IVIV", 7),
                  MessageId("2.16.1", 2, b"IVIW", 7), MessageId("2.16.1", 2, b"IVIV", 8)):
        assert m != other
