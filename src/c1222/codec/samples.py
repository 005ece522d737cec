"""A set of messages covering every service and every ACSE element, made by our own encoder.

Used by the demo, the interoperability tests (tshark judges them) and the
decode benchmark. Each request comes with a conforming response: A4 equal to
the request's A8, titles swapped, the responder's own A8.
"""

from __future__ import annotations

from dataclasses import replace

from c1222.codec import services as sv
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codes import EAX_PRIME_MECHANISM, C1222_CONTEXT, ResponseCode

METER = Uid.parse(".123.8437")
HEADEND = Uid.parse(".123.4")
METER_ABSOLUTE = METER.absolute()
HEADEND_ABSOLUTE = HEADEND.absolute()

_PASSWORD = b"PASSWORD".ljust(20, b" ")
_NAME = b"METER-0001"


def exchanges() -> list[tuple[list[sv.Request], list[sv.Response]]]:
    """Request services and the response services that answer them, one pair per exchange."""
    ok = sv.OkResponse()
    td = sv.TableData(_NAME)
    return [
        ([sv.IdentifyRequest()],
         [sv.IdentifyResponse(security_mechanisms=(Uid(EAX_PRIME_MECHANISM),), session_ctrl=0x81,
                              device_class=Uid.parse(".0.1.2.3"),
                              device_identity=sv.DeviceIdentity(1, b"SN-0001"))]),
        ([sv.FullReadRequest(0)], [sv.ReadResponse(table_data=sv.TableData(bytes(range(20))))]),
        ([sv.FullReadRequest(0x0801)], [sv.ErrorResponse(response_code=ResponseCode.SNS)]),
        ([sv.PartialReadIndexRequest(64, (1, 2), 3)],
         [sv.ReadResponse(table_data=sv.TableData(b"\x01\x02\x03"))]),
        ([sv.PartialReadOffsetRequest(1, 16, 16)],
         [sv.ReadResponse(table_data=sv.TableData(b"MANUFACTURER SN "))]),
        ([sv.DefaultReadRequest()], [sv.ReadResponse(table_data=sv.TableData(b"\x00" * 4))]),
        ([sv.FullWriteRequest(6, td)], [ok]),
        ([sv.PartialWriteIndexRequest(7, (0,), sv.TableData(b"\x0a\x00\x07"))], [ok]),
        ([sv.PartialWriteOffsetRequest(6, 4, td)], [ok]),
        ([sv.LogonRequest(2, b"OPERATOR  ", 60)], [sv.LogonResponse(resp_session_idle_timeout=60)]),
        ([sv.SecurityRequest(_PASSWORD)], [ok]),
        ([sv.SecurityRequest(_PASSWORD, 2), sv.FullReadRequest(23)],
         [ok, sv.ReadResponse(table_data=sv.TableData(bytes(8)))]),
        ([sv.LogoffRequest()], [ok]),
        ([sv.TerminateRequest()], [ok]),
        ([sv.DisconnectRequest()], [ok]),
        ([sv.WaitRequest(30)], [ok]),
        ([sv.RegisterRequest(0x20, 0xC0, b"\x00\x01\x02\x03", METER, Uid.parse(".1.2.3.4"),
                             b"\x7f\x00\x00\x01\x04\x81", 86400)],
         [sv.RegisterResponse(reg_ap_title=METER, reg_delay=60, reg_period=3600, reg_info=0x01)]),
        ([sv.DeregisterRequest(METER)], [ok]),
        ([sv.ResolveRequest(METER)], [sv.ResolveResponse(native_address=b"\x7f\x00\x00\x01\x04\x81")]),
        ([sv.TraceRequest(METER)], [sv.TraceResponse(ap_titles=(Uid.parse(".123.1"), METER))]),
        ([sv.FullReadRequest(2048)],
         [sv.ErrorResponse(response_code=ResponseCode.RSTL, max_size=0x7FFF)]),
        ([sv.FullWriteRequest(0, sv.TableData(b"\x01"))],
         [sv.ErrorResponse(response_code=ResponseCode.IAR)]),
    ]


def messages(invocation_base: int = 0x21) -> list[Apdu]:
    """Request and response APDUs for every exchange, with varied ACSE elements."""
    out: list[Apdu] = []
    for i, (requests, responses) in enumerate(exchanges()):
        a8 = invocation_base + i
        absolute = i % 4 == 3
        called, calling = (METER_ABSOLUTE, HEADEND_ABSOLUTE) if absolute else (METER, HEADEND)
        request = Apdu(
            Epsem(tuple(requests), ed_class=b"TEST" if i % 5 == 4 else None),
            calling_ap_invocation_id=a8, called_ap_title=called, calling_ap_title=calling,
            aso_context=Uid(C1222_CONTEXT) if absolute else None,
            calling_ae_qualifier=0x01 if i % 6 == 5 else None,
        )
        response = Apdu(
            Epsem(tuple(responses)), calling_ap_invocation_id=0x100 + i,
            called_ap_title=calling, calling_ap_title=called, called_ap_invocation_id=a8,
        )
        out += [request, response]
    return out


def secured_variant(apdu: Apdu, mode: int, key_id: int, iv: bytes) -> Apdu:
    """The same message asking for security mode 1 or 2 (crypto/policy adds the MAC)."""
    return replace(apdu, key_id=key_id, iv=iv, epsem=replace(apdu.epsem, security_mode=mode))
