"""Whole messages against the worked examples of the digest (sections 8, 4, 7)."""

from __future__ import annotations

import pytest

from c1222.codec import acse, services as sv, text
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codes import ResponseCode
from c1222.errors import BerError, DecodeLimitExceeded, Truncated, UnknownCode
from tests.vectors import EX8_REQUEST, IDENT_RESPONSE, READ_REQUEST, READ_RESPONSE



def test_full_read_request_of_table_0():
    apdu = acse.decode(READ_REQUEST)
    assert apdu == acse.Apdu(Epsem((sv.FullReadRequest(0),)), calling_ap_invocation_id=33,
                             called_ap_title=Uid.parse(".123.8437"),
                             calling_ap_title=Uid.parse(".123.4"))
    assert apdu.encode() == READ_REQUEST


def test_full_read_response_with_its_checksum():
    apdu = acse.decode(READ_RESPONSE, [sv.FullReadRequest(0)])
    (response,) = apdu.epsem.services
    assert apdu.called_ap_invocation_id == 33 and apdu.calling_ap_invocation_id == 5
    assert response == sv.ReadResponse(table_data=sv.TableData(bytes.fromhex("0200004c4749521b0000")))
    assert response.table_data.checksum_ok
    assert apdu.encode() == READ_RESPONSE


def test_a_response_alone_keeps_its_bytes():
    apdu = acse.decode(READ_RESPONSE)
    (response,) = apdu.epsem.services
    assert response == sv.RawResponse(data=bytes.fromhex("000a0200004c4749521b0000b5"))
    assert apdu.encode() == READ_RESPONSE


def test_identify_response_features():
    apdu = acse.decode(IDENT_RESPONSE, [sv.IdentifyRequest()])
    (response,) = apdu.epsem.services
    assert response == sv.IdentifyResponse(
        std=3, ver=1, rev=0, security_mechanisms=(Uid.parse("1.3.6.1.4.1.33507"),),
        session_ctrl=0x08, device_class=Uid.parse("1.3.6.1.4.1.33507"),
        device_identity=sv.DeviceIdentity(1, bytes.fromhex("000102030a040d050607")))
    assert apdu.encode() == IDENT_RESPONSE


def test_example8_header_and_ciphertext():
    apdu = acse.decode(EX8_REQUEST)
    assert (apdu.key_id, apdu.iv.hex(), apdu.calling_ap_invocation_id) == (2, "48f3d061", 3)
    assert apdu.epsem.security_mode == 2 and apdu.epsem.mac.hex() == "99c5d4e8"
    assert len(apdu.epsem.ciphertext) == 33
    assert apdu.encode() == EX8_REQUEST


def test_register_request_from_the_capture_layout():
    service = bytes.fromhex("27fdef0182856306082b0601040182856306082b060104018285630866697a7a"
                            "62757a7a0102030462656566")
    req = sv.decode_request(service, 0, len(service))
    assert req == sv.RegisterRequest(0xFD, 0xEF, bytes.fromhex("01828563"),
                                     Uid.parse("1.3.6.1.4.1.33507"), Uid.parse("1.3.6.1.4.1.33507"),
                                     b"fizzbuzz", 66051, b"beef")
    assert req.encode() == service
    answer = bytes.fromhex("0006082b060104018285630e1000000" "0ef")
    resp = sv.decode_response(answer, 0, len(answer), req)
    assert resp == sv.RegisterResponse(reg_ap_title=Uid.parse("1.3.6.1.4.1.33507"),
                                       reg_delay=3600, reg_period=0, reg_info=0xEF)


@pytest.mark.parametrize("service, expected", [
    ("3100000000 0001", sv.PartialReadIndexRequest(0, (0,), 1)),
    ("3f000100001 00010", sv.PartialReadOffsetRequest(1, 16, 16)),
    ("4f 0006 000004 000a 4d455445522d30303031 95",
     sv.PartialWriteOffsetRequest(6, 4, sv.TableData(b"METER-0001"))),
    ("5012346865 6c6c6f776f726c640000", sv.LogonRequest(0x1234, b"helloworld", 0)),
    ("7070", sv.WaitRequest(0x70)),
    ("24 0d037bc175", sv.DeregisterRequest(Uid.parse(".123.8437"))),
])
def test_request_layouts(service, expected):
    data = bytes.fromhex(service.replace(" ", ""))
    assert sv.decode_request(data, 0, len(data)) == expected
    assert expected.encode() == data


def test_security_request_length_decides_the_user_id():
    pw = b"PASSWORD".ljust(20, b" ")
    assert sv.decode_request(b"\x51" + pw, 0, 21) == sv.SecurityRequest(pw)
    assert sv.decode_request(b"\x51" + pw + b"\x00\x02", 0, 23) == sv.SecurityRequest(pw, 2)
    with pytest.raises(BerError):
        sv.decode_request(b"\x51" + pw + b"\x00", 0, 22)


def test_bad_checksum_is_kept_and_reported():
    data = bytes.fromhex("40 0006 0003 414243 00".replace(" ", ""))
    req = sv.decode_request(data, 0, len(data))
    assert not req.table_data.checksum_ok
    assert req.encode() == data  # the wrong checksum survives, so a tester can send it
    assert text.service_to_json(req)["table_data"]["checksum_ok"] is False


def test_large_table_data_uses_continuation_chunks():
    td = sv.TableData(bytes(range(256)) * 300)  # 76,800 bytes: one full chunk and a short one
    raw = td.encode()
    assert raw[:2] == b"\xff\xff" and len(raw) == 2 + 0xFFFF + 1 + 2 + (76800 - 0xFFFF) + 1
    assert sv.read_table_data(raw, 0, len(raw), "") == (td, len(raw))
    exact = sv.TableData(bytes(0xFFFF))
    assert exact.encode()[-3:] == b"\x00\x00\x00"  # trailing empty chunk


def test_error_responses():
    for code in range(1, 0x13):
        resp = sv.decode_response(bytes([code]), 0, 1, sv.FullReadRequest(0))
        assert resp == sv.ErrorResponse(response_code=code)
    rqtl = bytes.fromhex("0f00007fff")
    assert sv.decode_response(rqtl, 0, 5) == sv.ErrorResponse(response_code=ResponseCode.RQTL,
                                                              max_size=0x7FFF)


@pytest.mark.parametrize("wire, error, path", [
    ("6003a80100", Truncated, "apdu.calling_ap_invocation_id"),         # INTEGER cut short
    ("6004a8020400", BerError, "apdu.calling_ap_invocation_id"),        # not an INTEGER
    ("6005a803020101", BerError, "apdu"),                             # no BE
    ("6008be06280481020000", BerError, "apdu"),                       # no A8
    ("600fa803020101be08280681040020 0000", BerError, "apdu"),        # bytes after APDU
    ("6010a803020101be0928078105800130", Truncated, "apdu.length"),   # cut short
    ("6009a803020101be02 2800", Truncated, "apdu.user_information"),
    ("600ea803020101be072805810300 0120", BerError, "apdu.user_information.epsem.control"),
    ("600ea803020101be07280581038c0120", UnknownCode, "apdu.user_information.epsem.control"),
    ("6008a803020101bf1500", BerError, "apdu"),                       # multi-byte tag
    ("6084ffffffff", Truncated, "apdu.length"),                       # claims 4 GiB
])
def test_malformed_messages_name_offset_and_path(wire, error, path):
    data = bytes.fromhex(wire.replace(" ", ""))
    with pytest.raises(error) as info:
        acse.decode(data)
    assert info.value.path.startswith(path)
    assert 0 <= info.value.offset <= len(data)


def test_chunk_count_is_limited():
    chunk = b"\xff\xff" + bytes(0xFFFF) + b"\x00"
    data = chunk * 257
    with pytest.raises(DecodeLimitExceeded):
        sv.read_table_data(data, 0, len(data), "")


def test_tree_of_a_decrypted_message_shows_the_plaintext_services():
    apdu = acse.Apdu(Epsem((sv.FullReadRequest(1),), security_mode=2, mac=b"\x01\x02\x03\x04"),
                     calling_ap_invocation_id=7, key_id=2, iv=b"\x00\x00\x00\x01")
    rows = text.tree(apdu)
    assert (3, "service=full_read code=48 table_id=1", bytes.fromhex("03300001")) in rows
    assert rows[-1] == (2, "mac", b"\x01\x02\x03\x04")


def _service_dataclasses() -> list[type]:
    import dataclasses

    return [c for c in vars(sv).values()
            if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == sv.__name__]


def test_every_service_class_names_itself_and_has_only_its_own_fields():
    """``service`` and ``code`` are class attributes, never dataclass fields (a mypyc build
    would make them fields if they were assigned in the dataclass bodies)."""
    import dataclasses

    for cls in text.REQUESTS.values():
        assert cls.service in text.REQUESTS and text.REQUESTS[cls.service] is cls
    assert sv.IdentifyRequest.code == 0x20 and sv.IdentifyRequest().encode() == b"\x20"
    assert sv.PartialReadIndexRequest(3, (1, 2), 4).code == 0x32
    for cls in _service_dataclasses():
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & {"service", "code"}, cls


def test_field_types_written_out_match_the_service_classes():
    """services.FIELD_TYPES says what the classes declare (in a compiled build: what their
    annotations were erased from), and every other field is of a plain class."""
    import dataclasses
    import typing

    from tests.unit.codec.field_types import as_declared, compiled

    listed = set()
    for cls in _service_dataclasses():
        hints = typing.get_type_hints(cls)
        for name in (f.name for f in dataclasses.fields(cls)):
            hint = hints[name]
            expected = sv.FIELD_TYPES.get(cls, {}).get(name)
            if expected is None:
                assert isinstance(hint, type) and typing.get_origin(hint) is None, (cls, name)
            else:
                assert hint == expected or compiled(cls) and as_declared(hint, expected), \
                    (cls, name)
                listed.add((cls, name))
    assert listed == {(cls, name) for cls, types in sv.FIELD_TYPES.items() for name in types}
