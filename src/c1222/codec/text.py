"""The canonical text form of every message: plain JSON values (docs/messages.md).

Numbers are JSON numbers, byte strings lowercase hex, identifiers dotted
strings (a leading dot marks a relative AP title). ``from_json(to_json(m)) == m``
for every message, and keys this module does not know (the frame number,
endpoints, expanded titles a decoder adds) are ignored on the way back.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from c1222.codec import services as sv
from c1222.codec.acse import Apdu, Spans
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import DeviceIdentity, TableData
from c1222.codes import ResponseCode
from c1222.errors import LocalProtocolError

REQUESTS: dict[str, type[sv.Request]] = {
    cls.service: cls
    for cls in (sv.IdentifyRequest, sv.TerminateRequest, sv.DisconnectRequest, sv.LogoffRequest,
                sv.DefaultReadRequest, sv.DeregisterRequest, sv.ResolveRequest, sv.TraceRequest,
                sv.RegisterRequest, sv.FullReadRequest, sv.PartialReadIndexRequest,
                sv.PartialReadOffsetRequest, sv.FullWriteRequest, sv.PartialWriteIndexRequest,
                sv.PartialWriteOffsetRequest, sv.LogonRequest, sv.SecurityRequest,
                sv.WaitRequest, sv.UnknownRequest)
}
TYPED_RESPONSES: dict[str, type[sv.Response]] = {
    cls.service: cls  # type: ignore[misc]
    for cls in (sv.ReadResponse, sv.LogonResponse, sv.IdentifyResponse, sv.RegisterResponse,
                sv.ResolveResponse, sv.TraceResponse)
}

_APDU_FIELDS = ("aso_context", "called_ap_title", "called_ae_qualifier",
                "called_ap_invocation_id", "calling_ap_title", "calling_ae_qualifier",
                "calling_ap_invocation_id", "mechanism_name", "key_id", "iv",
                "authentication_value", "indirect_reference")
_EPSEM_FLAGS = ("security_mode", "response_control", "recovery_session", "proxy_service_used",
                "ed_class_included", "ed_class", "padding", "ciphertext", "mac")


# --------------------------------------------------------------------------- to JSON


def response_code_name(code: int) -> str | int:
    """``"ok"``, ``"isss"`` ...; an undefined status stays a number."""
    return _CODE_NAMES.get(code, code)


_CODE_NAMES: dict[int, str] = {int(c): c.name.lower() for c in ResponseCode}


def _value(v: Any) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, Uid):
        return str(v)
    if isinstance(v, TableData):
        return table_data_to_json(v)
    if isinstance(v, DeviceIdentity):
        return {"format": v.format, "identity": v.identity.hex()}
    if isinstance(v, tuple):
        return [_value(x) for x in v]
    raise TypeError(f"no JSON form for {type(v).__name__}")


def table_data_to_json(td: TableData) -> dict[str, Any]:
    sums = td.checksums if td.checksums is not None else td.computed_checksums()
    return {"count": len(td.data), "data": td.data.hex(), "checksum": sums.hex(),
            "checksum_ok": td.checksum_ok}


def service_to_json(service: sv.Service) -> dict[str, Any]:
    """One request or response."""
    if isinstance(service, sv.Request):
        out: dict[str, Any] = {"service": service.service, "code": int(service.code)}
    else:
        out = {"service": service.service,
               "response_code": response_code_name(service.response_code)}
    names = _FIELD_NAMES.get(service.__class__)
    if names is None:
        names = _FIELD_NAMES[service.__class__] = tuple(
            f.name for f in dataclasses.fields(service) if f.name != "response_code")
    for name in names:
        v = getattr(service, name)
        out[name] = _value(v)
        if v.__class__ is Uid and v.relative:
            # As the ACSE titles: a relative UID (".8437") with what it stands for.
            out[name + "_absolute"] = str(v.absolute())
    return out


#: service class -> its field names but response_code, in declaration order
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def to_json(apdu: Apdu, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """The canonical JSON value of one message (ACSE fields, EPSEM flags, services); with
    ``into``, its keys are added to that dict (after the keys it holds) and it is returned."""
    # Written out field by field: this is the hot path of `c1222 decode --json`, whose records
    # put a capture's fields first (``into`` spares them a second dict and its copy).
    out: dict[str, Any] = {} if into is None else into
    called, calling = apdu.called_ap_title, apdu.calling_ap_title
    iv, auth = apdu.iv, apdu.authentication_value
    epsem = apdu.epsem
    ed_class, ciphertext, mac = epsem.ed_class, epsem.ciphertext, epsem.mac
    out["aso_context"] = None if apdu.aso_context is None else str(apdu.aso_context)
    out["called_ap_title"] = None if called is None else str(called)
    out["called_ae_qualifier"] = apdu.called_ae_qualifier
    out["called_ap_invocation_id"] = apdu.called_ap_invocation_id
    out["calling_ap_title"] = None if calling is None else str(calling)
    out["calling_ae_qualifier"] = apdu.calling_ae_qualifier
    out["calling_ap_invocation_id"] = apdu.calling_ap_invocation_id
    out["mechanism_name"] = None if apdu.mechanism_name is None else str(apdu.mechanism_name)
    out["key_id"] = apdu.key_id
    out["iv"] = None if iv is None else iv.hex()
    out["authentication_value"] = None if auth is None else auth.hex()
    out["indirect_reference"] = apdu.indirect_reference
    out["called_ap_title_absolute"] = None if called is None else str(called.absolute())
    out["calling_ap_title_absolute"] = None if calling is None else str(calling.absolute())
    out["security_mode"] = int(epsem.security_mode)
    out["response_control"] = int(epsem.response_control)
    out["recovery_session"] = epsem.recovery_session
    out["proxy_service_used"] = epsem.proxy_service_used
    out["ed_class_included"] = epsem.ed_class_included
    out["ed_class"] = None if ed_class is None else ed_class.hex()
    out["padding"] = epsem.padding.hex()
    out["ciphertext"] = None if ciphertext is None else ciphertext.hex()
    out["mac"] = None if mac is None else mac.hex()
    out["services"] = [service_to_json(s) for s in epsem.services]
    return out


# --------------------------------------------------------------------------- from JSON


def _bytes(v: Any, name: str) -> bytes:
    if not isinstance(v, str):
        raise LocalProtocolError(f"{name}: expected a hex string")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise LocalProtocolError(f"{name}: not hex: {v!r}") from None


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise LocalProtocolError(f"{name}: expected a number")
    return v


def _uid(v: Any, name: str) -> Uid:
    if not isinstance(v, str):
        raise LocalProtocolError(f"{name}: expected a dotted identifier")
    return Uid.parse(v)


def table_data_from_json(v: Any, name: str = "table_data") -> TableData:
    if not isinstance(v, dict):
        raise LocalProtocolError(f"{name}: expected an object")
    td = TableData(_bytes(v.get("data", ""), name + ".data"))
    if v.get("checksum") is not None:
        sums = _bytes(v["checksum"], name + ".checksum")
        if sums != td.computed_checksums():
            td = TableData(td.data, sums)
    return td


def _convert(hint: Any, v: Any, name: str) -> Any:
    union = isinstance(hint, types.UnionType)
    if v is None:
        if union and type(None) in typing.get_args(hint):
            return None
        raise LocalProtocolError(f"{name} is required")
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if union else hint
    if base is bytes:
        return _bytes(v, name)
    if base is Uid:
        return _uid(v, name)
    if base is bool:
        if not isinstance(v, bool):
            raise LocalProtocolError(f"{name}: expected true or false")
        return v
    if base is int:
        return _int(v, name)
    if base is TableData:
        return table_data_from_json(v, name)
    if base is DeviceIdentity:
        if not isinstance(v, dict):
            raise LocalProtocolError(f"{name}: expected an object")
        return DeviceIdentity(_int(v.get("format"), name + ".format"),
                              _bytes(v.get("identity", ""), name + ".identity"))
    if typing.get_origin(base) is tuple:
        if not isinstance(v, list):
            raise LocalProtocolError(f"{name}: expected a list")
        item = typing.get_args(base)[0]
        return tuple(_convert(item, x, f"{name}[{i}]") for i, x in enumerate(v))
    raise LocalProtocolError(f"{name}: unsupported field type")


#: Field types written out where a build compiled with mypyc keeps only a plain class in the
#: annotations (``type`` for ``X | None``): Apdu's and Epsem's here, the services' in
#: ``services.FIELD_TYPES`` (tests/unit/codec/test_text_output.py and test_messages.py check
#: both against the classes' own annotations).
_FIELD_TYPES: dict[type, dict[str, Any]] = {
    **sv.FIELD_TYPES,
    Apdu: {"epsem": Epsem, "calling_ap_invocation_id": int, "called_ap_title": Uid | None,
           "calling_ap_title": Uid | None, "called_ap_invocation_id": int | None,
           "calling_ae_qualifier": int | None, "aso_context": Uid | None,
           "mechanism_name": Uid | None, "key_id": int | None, "iv": bytes | None,
           "authentication_value": bytes | None, "called_ae_qualifier": int | None,
           "indirect_reference": int | None, "spans": Spans | None},
    Epsem: {"services": tuple[sv.Service, ...], "security_mode": int, "response_control": int,
            "recovery_session": bool, "proxy_service_used": bool, "ed_class": bytes | None,
            "ed_class_included": bool, "mac": bytes | None, "ciphertext": bytes | None,
            "padding": bytes},
}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return {**typing.get_type_hints(cls), **_FIELD_TYPES.get(cls, {})}


def _build(cls: type, d: dict[str, Any], skip: tuple[str, ...] = (), **given: Any) -> Any:
    hints = _hints(cls)
    kwargs = dict(given)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name in given or not f.init:  # init=False: Apdu.spans
            continue
        has_default = (f.default is not dataclasses.MISSING
                       or f.default_factory is not dataclasses.MISSING)
        if f.name not in d and has_default:
            continue
        kwargs[f.name] = _convert(hints[f.name], d.get(f.name), f.name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise LocalProtocolError(f"{cls.__name__}: {exc}") from None


def service_from_json(d: Any) -> sv.Service:
    if not isinstance(d, dict):
        raise LocalProtocolError("a service is a JSON object")
    name = d.get("service")
    if name is not None and not isinstance(name, str):
        raise LocalProtocolError("service: expected a service name")
    if "response_code" not in d:
        cls: type | None = REQUESTS.get(name)  # type: ignore[arg-type]
        if cls is None:
            raise LocalProtocolError(f"unknown service {d.get('service')!r}")
        return _build(cls, d)
    code = d["response_code"]
    if isinstance(code, str):
        try:
            code = ResponseCode[code.upper()]
        except KeyError:
            raise LocalProtocolError(f"unknown response code {code!r}") from None
    code = _int(code, "response_code")
    if not 0 <= code < 0x20:
        raise LocalProtocolError("response codes are below 0x20")
    if "data" in d:
        return sv.RawResponse(response_code=code, data=_bytes(d["data"], "data"))
    if code != ResponseCode.OK:
        max_size = d.get("max_size")
        return sv.ErrorResponse(response_code=code,
                                max_size=None if max_size is None else _int(max_size, "max_size"))
    response_cls: type = TYPED_RESPONSES.get(name, sv.OkResponse)  # type: ignore[arg-type]
    return _build(response_cls, d, skip=("response_code",))


def from_json(d: Any) -> Apdu:
    """The message that ``to_json`` gave ``d`` for; LocalProtocolError names a bad field."""
    if not isinstance(d, dict):
        raise LocalProtocolError("a message is a JSON object")
    services = d.get("services") or []
    if not isinstance(services, list):
        raise LocalProtocolError("services: expected a list")
    epsem = _build(Epsem, d, services=tuple(service_from_json(s) for s in services))
    return _build(Apdu, d, epsem=epsem)


# --------------------------------------------------------------------------- tree


def _describe(d: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    parts = []
    for key, v in d.items():
        if key in skip or v is None or v is False or v == "" or v == [] \
                or key.endswith("_absolute"):
            continue
        if isinstance(v, dict):
            v = "{" + _describe(v) + "}"
        elif isinstance(v, list):
            v = "[" + ", ".join(map(str, v)) + "]"
        absolute = d.get(key + "_absolute")
        parts.append(f"{key}={v}" if absolute is None else f"{key}={v} ({absolute})")
    return " ".join(parts)


def describe_service(service: sv.Service) -> str:
    """One service as the tree labels it: ``service=full_read code=48 table_id=0``."""
    return _describe(service_to_json(service), skip=("checksum_ok",))


def tree(apdu: Apdu) -> list[tuple[int, str, bytes]]:
    """The message as ``(depth, label, bytes)`` rows: each element with the bytes it occupies."""
    from c1222.codec import acse
    from c1222.codec.ber import encode_length

    epsem = apdu.epsem
    if epsem.ciphertext is None and epsem.security_mode == 2:
        # A decrypted message: show the plaintext where the ciphertext travelled.
        from c1222.codec.epsem import encode_body

        octets = bytes((epsem.control,)) + encode_body(epsem) + (epsem.mac or b"")
    else:
        octets = epsem.encode()
    elements = acse.header_elements(apdu)
    user_info = acse.user_information(octets, apdu.indirect_reference)
    total = sum(map(len, elements.values())) + len(user_info)
    rows: list[tuple[int, str, bytes]] = [(0, f"apdu ({total} bytes)",
                                           b"\x60" + encode_length(total))]
    for tag, element in elements.items():
        name = acse.ELEMENT_NAMES[tag]
        if tag == acse.TAG_CALLING_AUTHENTICATION_VALUE:
            label = (f"{name} key_id={apdu.key_id} iv={apdu.iv.hex() if apdu.iv else None}"
                     if apdu.authentication_value is None else name)
        else:
            value = getattr(apdu, name)
            label = f"{name} {value}"
            if isinstance(value, Uid) and value.relative:
                label += f" ({value.absolute()})"
        rows.append((1, label, element))
    rows.append((1, "user_information", user_info[: len(user_info) - len(octets)]))
    flags = {k: _value(getattr(epsem, k)) for k in _EPSEM_FLAGS[:5]}
    rows.append((2, "epsem " + _describe(flags), octets[:1]))
    if epsem.ciphertext is not None:
        rows.append((2, "ciphertext", epsem.ciphertext))
    else:
        if epsem.ed_class is not None:
            rows.append((2, "ed_class", epsem.ed_class))
        for service in epsem.services:
            data = service.encode()
            label = describe_service(service)
            rows.append((3, label, encode_length(len(data)) + data))
        if epsem.padding:
            rows.append((2, "padding", epsem.padding))
    if epsem.mac is not None:
        rows.append((2, "mac", epsem.mac))
    return rows
