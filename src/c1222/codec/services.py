"""EPSEM services: one frozen dataclass per request and per response (digest section 4).

A request starts with its service code (>= 0x20); a response starts with a
status byte (< 0x20). What follows an ``OK`` depends on the request it
answers, so a response is decoded against the request at the same position
of the request EPSEM (``decode_response(data, request)``); without one it
stays a generic :class:`Response` whose bytes are kept as they are.

Each class carries ``service``, the name used in the canonical JSON form
(docs/messages.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from c1222 import limits
from c1222.codec.ber import BYTES, FROM_BYTES, Uid, byte, read_uid
from c1222.codes import IdentifyFeature, ResponseCode, ServiceCode
from c1222.errors import (
    BerError,
    ChecksumMismatch,
    DecodeError,
    DecodeLimitExceeded,
    LocalProtocolError,
    Truncated,
    UnknownCode,
)

CHUNK_MAX: Final = 0xFFFF  # a table-data chunk of this count is followed by another (digest 4.3)


def checksum(data: bytes) -> int:
    """C12.19 table-data checksum: two's complement of the 8-bit sum (digest 4.3)."""
    return -sum(data) & 0xFF


# --------------------------------------------------------------------------- table data


@dataclass(frozen=True, slots=True)
class TableData:
    """``<count:2> <data> <cksum:1>``, in 0xFFFF-byte chunks for large tables.

    ``checksums`` is None when every chunk's checksum is right (they are
    computed on encoding); otherwise it holds the received (or deliberately
    wrong) checksum of each chunk, so bad bytes survive a round trip and a
    test can send them on purpose.
    """

    data: bytes
    checksums: bytes | None = None

    # Each service class writes its dataclass __init__ out, so that mypyc compiles it to
    # native stores (codec.acse.Apdu says why; tests/unit/codec/test_written_inits.py checks
    # each against the dataclass's fields).
    def __init__(self, data: bytes, checksums: bytes | None = None) -> None:
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "checksums", checksums)

    def chunk_sizes(self) -> list[int]:
        sizes = [CHUNK_MAX] * (len(self.data) // CHUNK_MAX)
        sizes.append(len(self.data) % CHUNK_MAX)  # a final short (possibly empty) chunk
        return sizes if len(self.data) >= CHUNK_MAX else [len(self.data)]

    def computed_checksums(self) -> bytes:
        if len(self.data) < CHUNK_MAX:  # one chunk, as nearly every table: no chunk list
            return BYTES[checksum(self.data)]
        out, pos = bytearray(), 0
        for size in self.chunk_sizes():
            out.append(checksum(self.data[pos : pos + size]))
            pos += size
        return bytes(out)

    @property
    def checksum_ok(self) -> bool:
        return self.checksums is None or self.checksums == self.computed_checksums()

    def verified(self) -> TableData:
        """Self, or ChecksumMismatch when a checksum is wrong."""
        if not self.checksum_ok:
            raise ChecksumMismatch("table data checksum mismatch", 0, "table_data")
        return self

    def encode(self) -> bytes:
        data = self.data
        if len(data) < CHUNK_MAX and self.checksums is None:  # nearly every table: one chunk
            return b"".join((len(data).to_bytes(2, "big"), data, BYTES[checksum(data)]))
        sums = self.checksums if self.checksums is not None else self.computed_checksums()
        sizes = self.chunk_sizes()
        if len(sums) != len(sizes):
            raise LocalProtocolError(f"{len(sizes)} chunks need {len(sizes)} checksums")
        out, pos = bytearray(), 0
        for size, cks in zip(sizes, sums):
            out += size.to_bytes(2, "big")
            out += self.data[pos : pos + size]
            out.append(cks)
            pos += size
        return bytes(out)


def read_table_data(buf: bytes, pos: int, end: int, path: str) -> tuple[TableData, int]:
    """Read table data (all its chunks) at ``pos``; return it and the position after it."""
    parts: list[bytes] = []
    sums = bytearray()
    bad = False
    while True:
        if len(parts) >= limits.MAX_TABLE_DATA_CHUNKS:
            raise DecodeLimitExceeded("too many table-data chunks", pos, path)
        if pos + 2 > end:
            raise Truncated("table-data count missing", pos, path)
        count = (buf[pos] << 8) | buf[pos + 1]
        stop = pos + 2 + count
        if stop + 1 > end:
            raise Truncated(f"table data claims {count} bytes", pos, path)
        chunk = buf[pos + 2 : stop]
        parts.append(chunk)
        sums.append(buf[stop])
        bad = bad or buf[stop] != checksum(chunk)
        pos = stop + 1
        if count != CHUNK_MAX:
            break
    return TableData(b"".join(parts), bytes(sums) if bad else None), pos


# --------------------------------------------------------------------------- requests


class _RequestKind:
    """What every request class says about itself: its JSON name and service code.

    Declared here, on a plain class, and set on each subclass by an assignment after its
    body: a build compiled with mypyc hands @dataclass every name assigned in a dataclass's
    body as an annotated one (``ClassVar`` dropped), which would make them dataclass fields.
    """

    __slots__ = ()
    service: ClassVar[str] = "request"
    code: ClassVar[int]


@dataclass(frozen=True, slots=True)
class Request(_RequestKind):
    """Base of every request service."""

    def encode(self) -> bytes:
        try:
            return byte(self.code) + self.encode_parameters()
        except (ValueError, OverflowError) as exc:
            raise _out_of_range(self.service, exc) from None

    def encode_parameters(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class IdentifyRequest(Request):
    """Identify: no parameters."""


IdentifyRequest.service, IdentifyRequest.code = "identify", ServiceCode.IDENTIFY


@dataclass(frozen=True, slots=True)
class TerminateRequest(Request):
    """Terminate: no parameters."""


TerminateRequest.service, TerminateRequest.code = "terminate", ServiceCode.TERMINATE


@dataclass(frozen=True, slots=True)
class DisconnectRequest(Request):
    """Disconnect: no parameters."""


DisconnectRequest.service, DisconnectRequest.code = "disconnect", ServiceCode.DISCONNECT


@dataclass(frozen=True, slots=True)
class LogoffRequest(Request):
    """Logoff: no parameters."""


LogoffRequest.service, LogoffRequest.code = "logoff", ServiceCode.LOGOFF


@dataclass(frozen=True, slots=True)
class DefaultReadRequest(Request):
    """Default read: no parameters."""


DefaultReadRequest.service, DefaultReadRequest.code = "default_read", ServiceCode.DEFAULT_READ


@dataclass(frozen=True, slots=True)
class _ApTitleRequest(Request):
    ap_title: Uid

    def __init__(self, ap_title: Uid) -> None:  # written out (TableData says why)
        object.__setattr__(self, "ap_title", ap_title)

    def encode_parameters(self) -> bytes:
        return self.ap_title.encode()


@dataclass(frozen=True, slots=True, init=False)  # _ApTitleRequest's __init__
class DeregisterRequest(_ApTitleRequest):
    """Deregister (digest 7.2): the AP title it names."""


DeregisterRequest.service, DeregisterRequest.code = "deregister", ServiceCode.DEREGISTER


@dataclass(frozen=True, slots=True, init=False)  # _ApTitleRequest's __init__
class ResolveRequest(_ApTitleRequest):
    """Resolve (digest 7.2): the AP title it names."""


ResolveRequest.service, ResolveRequest.code = "resolve", ServiceCode.RESOLVE


@dataclass(frozen=True, slots=True, init=False)  # _ApTitleRequest's __init__
class TraceRequest(_ApTitleRequest):
    """Trace (digest 7.2): the AP title it names."""


TraceRequest.service, TraceRequest.code = "trace", ServiceCode.TRACE


@dataclass(frozen=True, slots=True)
class RegisterRequest(Request):
    """Register (digest 7.2). ``domain_pattern`` is present exactly when node_type bit 7 is set."""

    node_type: int
    connection_type: int
    device_class: bytes
    ap_title: Uid
    serial_number: Uid
    native_address: bytes
    registration_period: int
    domain_pattern: bytes | None = None

    def __init__(self, node_type: int, connection_type: int, device_class: bytes, ap_title: Uid,
                 serial_number: Uid, native_address: bytes, registration_period: int,
                 domain_pattern: bytes | None = None) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "node_type", node_type)
        object.__setattr__(self, "connection_type", connection_type)
        object.__setattr__(self, "device_class", device_class)
        object.__setattr__(self, "ap_title", ap_title)
        object.__setattr__(self, "serial_number", serial_number)
        object.__setattr__(self, "native_address", native_address)
        object.__setattr__(self, "registration_period", registration_period)
        object.__setattr__(self, "domain_pattern", domain_pattern)

    def encode_parameters(self) -> bytes:
        if len(self.device_class) != 4:
            raise LocalProtocolError("device class is 4 bytes")
        if len(self.native_address) > 255 or not 0 <= self.registration_period < 1 << 24:
            raise LocalProtocolError("native address or registration period out of range")
        if (self.domain_pattern is not None) != bool(self.node_type & 0x80):
            raise LocalProtocolError("domain pattern goes with node-type bit 7")
        out = bytes((self.node_type, self.connection_type)) + self.device_class
        out += self.ap_title.encode() + self.serial_number.encode()
        out += bytes((len(self.native_address),)) + self.native_address
        out += self.registration_period.to_bytes(3, "big")
        if self.domain_pattern is not None:
            if len(self.domain_pattern) > 255:
                raise LocalProtocolError("domain pattern over 255 bytes")
            out += bytes((len(self.domain_pattern),)) + self.domain_pattern
        return out


RegisterRequest.service, RegisterRequest.code = "register", ServiceCode.REGISTER


@dataclass(frozen=True, slots=True)
class FullReadRequest(Request):
    table_id: int

    def __init__(self, table_id: int) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "table_id", table_id)

    def encode_parameters(self) -> bytes:
        return _u16(self.table_id)


FullReadRequest.service, FullReadRequest.code = "full_read", ServiceCode.FULL_READ


@dataclass(frozen=True, slots=True)
class PartialReadIndexRequest(Request):
    """Partial read by index: code 0x30 + number of indices (1..9)."""

    table_id: int
    indices: tuple[int, ...]
    element_count: int

    def __init__(self, table_id: int, indices: tuple[int, ...], element_count: int) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "table_id", table_id)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "element_count", element_count)

    @property
    def code(self) -> int:  # type: ignore[override]
        return ServiceCode.FULL_READ + _index_count(self.indices)

    def encode_parameters(self) -> bytes:
        return _u16(self.table_id) + b"".join(map(_u16, self.indices)) + _u16(self.element_count)


PartialReadIndexRequest.service = "partial_read_index"


@dataclass(frozen=True, slots=True)
class PartialReadOffsetRequest(Request):
    table_id: int
    offset: int
    octet_count: int

    def __init__(self, table_id: int, offset: int, octet_count: int) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "table_id", table_id)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "octet_count", octet_count)

    def encode_parameters(self) -> bytes:
        return _u16(self.table_id) + _u24(self.offset) + _u16(self.octet_count)


PartialReadOffsetRequest.service = "partial_read_offset"
PartialReadOffsetRequest.code = ServiceCode.PARTIAL_READ_OFFSET


@dataclass(frozen=True, slots=True)
class FullWriteRequest(Request):
    table_id: int
    table_data: TableData

    def __init__(self, table_id: int, table_data: TableData) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "table_id", table_id)
        object.__setattr__(self, "table_data", table_data)

    def encode_parameters(self) -> bytes:
        return _u16(self.table_id) + self.table_data.encode()


FullWriteRequest.service, FullWriteRequest.code = "full_write", ServiceCode.FULL_WRITE


@dataclass(frozen=True, slots=True)
class PartialWriteIndexRequest(Request):
    """Partial write by index: code 0x40 + number of indices (1..9)."""

    table_id: int
    indices: tuple[int, ...]
    table_data: TableData

    def __init__(self, table_id: int, indices: tuple[int, ...], table_data: TableData) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "table_id", table_id)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "table_data", table_data)

    @property
    def code(self) -> int:  # type: ignore[override]
        return ServiceCode.FULL_WRITE + _index_count(self.indices)

    def encode_parameters(self) -> bytes:
        return _u16(self.table_id) + b"".join(map(_u16, self.indices)) + self.table_data.encode()


PartialWriteIndexRequest.service = "partial_write_index"


@dataclass(frozen=True, slots=True)
class PartialWriteOffsetRequest(Request):
    table_id: int
    offset: int
    table_data: TableData

    def __init__(self, table_id: int, offset: int, table_data: TableData) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "table_id", table_id)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "table_data", table_data)

    def encode_parameters(self) -> bytes:
        return _u16(self.table_id) + _u24(self.offset) + self.table_data.encode()


PartialWriteOffsetRequest.service = "partial_write_offset"
PartialWriteOffsetRequest.code = ServiceCode.PARTIAL_WRITE_OFFSET


@dataclass(frozen=True, slots=True)
class LogonRequest(Request):
    """Logon: user id, 10-byte user name (space padded), requested idle time-out in seconds."""

    user_id: int
    user: bytes
    req_session_idle_timeout: int

    def __init__(self, user_id: int, user: bytes, req_session_idle_timeout: int) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "user_id", user_id)
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "req_session_idle_timeout", req_session_idle_timeout)

    def encode_parameters(self) -> bytes:
        if len(self.user) != 10:
            raise LocalProtocolError("logon user name is 10 bytes")
        return _u16(self.user_id) + self.user + _u16(self.req_session_idle_timeout)


LogonRequest.service, LogonRequest.code = "logon", ServiceCode.LOGON


@dataclass(frozen=True, slots=True)
class SecurityRequest(Request):
    """Security: 20-byte password, then a user id in sessionless use (digest 4.1)."""

    password: bytes
    user_id: int | None = None

    def __init__(self, password: bytes, user_id: int | None = None) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "password", password)
        object.__setattr__(self, "user_id", user_id)

    def encode_parameters(self) -> bytes:
        if len(self.password) != 20:
            raise LocalProtocolError("security password is 20 bytes")
        return self.password + (b"" if self.user_id is None else _u16(self.user_id))


SecurityRequest.service, SecurityRequest.code = "security", ServiceCode.SECURITY


@dataclass(frozen=True, slots=True)
class WaitRequest(Request):
    seconds: int

    def __init__(self, seconds: int) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "seconds", seconds)

    def encode_parameters(self) -> bytes:
        if not 0 <= self.seconds <= 255:
            raise LocalProtocolError("wait is 0..255 seconds")
        return bytes((self.seconds,))


WaitRequest.service, WaitRequest.code = "wait", ServiceCode.WAIT


@dataclass(frozen=True, slots=True)
class UnknownRequest(Request):
    """A request code whose parameters this codec does not define; bytes kept as they are."""

    request_code: int = 0
    data: bytes = b""

    def __init__(self, request_code: int = 0, data: bytes = b"") -> None:
        # written out (TableData says why)
        object.__setattr__(self, "request_code", request_code)
        object.__setattr__(self, "data", data)

    @property
    def code(self) -> int:  # type: ignore[override]
        return self.request_code

    def encode_parameters(self) -> bytes:
        return self.data


UnknownRequest.service = "unknown"


# --------------------------------------------------------------------------- responses
# Keyword-only, so that each response names its fields and the status code defaults to OK.


class _ResponseKind:
    """A response class's JSON name (None: a generic response), set as :class:`_RequestKind`'s."""

    __slots__ = ()
    service: ClassVar[str | None] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(_ResponseKind):
    """Base of every response: the status code (< 0x20)."""

    response_code: int = ResponseCode.OK

    def encode(self) -> bytes:
        try:
            return byte(self.response_code) + self.encode_parameters()
        except (ValueError, OverflowError) as exc:
            raise _out_of_range(self.service or "response", exc) from None

    def encode_parameters(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True, kw_only=True)
class RawResponse(Response):
    """A response not decoded against a request: the bytes after the status, kept as they are."""

    data: bytes = b""

    def __init__(self, *, response_code: int = ResponseCode.OK, data: bytes = b"") -> None:
        # written out (TableData says why)
        object.__setattr__(self, "response_code", response_code)
        object.__setattr__(self, "data", data)

    def encode_parameters(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorResponse(Response):
    """A non-OK response. RQTL and RSTL carry the largest acceptable size (digest 4.4)."""

    response_code: int = ResponseCode.ERR
    max_size: int | None = None

    def __init__(self, *, response_code: int = ResponseCode.ERR,
                 max_size: int | None = None) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "response_code", response_code)
        object.__setattr__(self, "max_size", max_size)

    def encode_parameters(self) -> bytes:
        if self.max_size is None:
            return b""
        if not 0 <= self.max_size <= 0xFFFFFFFF:
            raise LocalProtocolError(f"max size {self.max_size} does not fit 4 bytes")
        return self.max_size.to_bytes(4, "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class OkResponse(Response):
    """OK with no data: Terminate, Disconnect, Deregister, writes, Security, Logoff, Wait."""

    def __init__(self, *, response_code: int = ResponseCode.OK) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "response_code", response_code)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadResponse(Response):
    """OK + table data, for any read."""

    table_data: TableData

    def __init__(self, *, response_code: int = ResponseCode.OK, table_data: TableData) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "response_code", response_code)
        object.__setattr__(self, "table_data", table_data)

    def encode_parameters(self) -> bytes:
        return self.table_data.encode()


ReadResponse.service = "read"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogonResponse(Response):
    resp_session_idle_timeout: int

    def __init__(self, *, response_code: int = ResponseCode.OK,
                 resp_session_idle_timeout: int) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "response_code", response_code)
        object.__setattr__(self, "resp_session_idle_timeout", resp_session_idle_timeout)

    def encode_parameters(self) -> bytes:
        return _u16(self.resp_session_idle_timeout)


LogonResponse.service = "logon"


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Identify feature 0x07: format (1 = 7-bit ASCII) and identity bytes."""

    format: int
    identity: bytes

    def __init__(self, format: int, identity: bytes) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "format", format)
        object.__setattr__(self, "identity", identity)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentifyResponse(Response):
    """OK + ``<std> <ver> <rev> {feature} 00`` (digest 4.2)."""

    std: int = 3
    ver: int = 1
    rev: int = 0
    security_mechanisms: tuple[Uid, ...] = ()
    session_ctrl: int | None = None
    device_class: Uid | None = None
    device_identity: DeviceIdentity | None = None

    def __init__(self, *, response_code: int = ResponseCode.OK, std: int = 3, ver: int = 1,
                 rev: int = 0, security_mechanisms: tuple[Uid, ...] = (),
                 session_ctrl: int | None = None, device_class: Uid | None = None,
                 device_identity: DeviceIdentity | None = None) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "response_code", response_code)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "ver", ver)
        object.__setattr__(self, "rev", rev)
        object.__setattr__(self, "security_mechanisms", security_mechanisms)
        object.__setattr__(self, "session_ctrl", session_ctrl)
        object.__setattr__(self, "device_class", device_class)
        object.__setattr__(self, "device_identity", device_identity)

    def encode_parameters(self) -> bytes:
        out = bytearray((self.std, self.ver, self.rev))
        for mech in self.security_mechanisms:
            out += bytes((IdentifyFeature.SECURITY_MECHANISM,)) + mech.encode()
        if self.session_ctrl is not None:
            out += bytes((IdentifyFeature.SESSION_CTRL, self.session_ctrl))
        if self.device_class is not None:
            out += bytes((IdentifyFeature.DEVICE_CLASS,)) + self.device_class.encode()
        if self.device_identity is not None:
            ident = self.device_identity
            if len(ident.identity) > 254:
                raise LocalProtocolError("device identity over 254 bytes")
            out += bytes((IdentifyFeature.DEVICE_IDENTITY, len(ident.identity) + 1, ident.format))
            out += ident.identity
        out.append(IdentifyFeature.END)
        return bytes(out)


IdentifyResponse.service = "identify"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterResponse(Response):
    reg_ap_title: Uid
    reg_delay: int
    reg_period: int
    reg_info: int

    def __init__(self, *, response_code: int = ResponseCode.OK, reg_ap_title: Uid,
                 reg_delay: int, reg_period: int, reg_info: int) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "response_code", response_code)
        object.__setattr__(self, "reg_ap_title", reg_ap_title)
        object.__setattr__(self, "reg_delay", reg_delay)
        object.__setattr__(self, "reg_period", reg_period)
        object.__setattr__(self, "reg_info", reg_info)

    def encode_parameters(self) -> bytes:
        return (self.reg_ap_title.encode() + _u16(self.reg_delay) + _u24(self.reg_period)
                + bytes((self.reg_info,)))


RegisterResponse.service = "register"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveResponse(Response):
    native_address: bytes

    def __init__(self, *, response_code: int = ResponseCode.OK, native_address: bytes) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "response_code", response_code)
        object.__setattr__(self, "native_address", native_address)

    def encode_parameters(self) -> bytes:
        if len(self.native_address) > 255:
            raise LocalProtocolError("native address over 255 bytes")
        return bytes((len(self.native_address),)) + self.native_address


ResolveResponse.service = "resolve"


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceResponse(Response):
    ap_titles: tuple[Uid, ...]

    def __init__(self, *, response_code: int = ResponseCode.OK,
                 ap_titles: tuple[Uid, ...]) -> None:
        # written out (TableData says why)
        object.__setattr__(self, "response_code", response_code)
        object.__setattr__(self, "ap_titles", ap_titles)

    def encode_parameters(self) -> bytes:
        return b"".join(t.encode() for t in self.ap_titles)


TraceResponse.service = "trace"


Service = Request | Response

#: The field types that are not a plain class, as the classes declare them. A build compiled
#: with mypyc keeps only plain classes in a class's annotations (``type`` for ``X | None``,
#: bare ``tuple`` for ``tuple[Uid, ...]``); text's ``from_json`` takes these instead (one
#: look-up, ``text._hints``). A test checks the table against the classes' own annotations.
FIELD_TYPES: dict[type, dict[str, object]] = {
    TableData: {"checksums": bytes | None},
    RegisterRequest: {"domain_pattern": bytes | None},
    PartialReadIndexRequest: {"indices": tuple[int, ...]},
    PartialWriteIndexRequest: {"indices": tuple[int, ...]},
    SecurityRequest: {"user_id": int | None},
    ErrorResponse: {"max_size": int | None},
    IdentifyResponse: {"security_mechanisms": tuple[Uid, ...], "session_ctrl": int | None,
                       "device_class": Uid | None, "device_identity": DeviceIdentity | None},
    TraceResponse: {"ap_titles": tuple[Uid, ...]},
}


# --------------------------------------------------------------------------- helpers


def _out_of_range(service: str, exc: Exception) -> LocalProtocolError:
    """A field value that does not fit its wire size (a byte over 255, a negative size)."""
    return LocalProtocolError(f"{service}: a field does not fit its size on the wire ({exc})")


def _u16(v: int) -> bytes:
    if not 0 <= v <= 0xFFFF:
        raise LocalProtocolError(f"{v} does not fit 2 bytes")
    return v.to_bytes(2, "big")


def _u24(v: int) -> bytes:
    if not 0 <= v <= 0xFFFFFF:
        raise LocalProtocolError(f"{v} does not fit 3 bytes")
    return v.to_bytes(3, "big")


def _index_count(indices: tuple[int, ...]) -> int:
    if not 1 <= len(indices) <= 9:
        raise LocalProtocolError("1 to 9 indices")
    return len(indices)


def _need(end: int, pos: int, n: int, what: str, path: str) -> None:
    if pos + n > end:
        raise Truncated(f"{what} needs {n} bytes, {end - pos} left", pos, path)


def _done(end: int, pos: int, path: str) -> None:
    if pos != end:
        raise BerError(f"{end - pos} unexpected bytes after the parameters", pos, path)


# --------------------------------------------------------------------------- decoding


# Plain ints for the decoders below: reading an IntEnum member costs an attribute lookup
# through the enum class (0.1-0.3 µs) at every comparison of every message.
_FEATURE_DEVICE_CLASS: Final = int(IdentifyFeature.DEVICE_CLASS)
_FEATURE_DEVICE_IDENTITY: Final = int(IdentifyFeature.DEVICE_IDENTITY)
_FEATURE_END: Final = int(IdentifyFeature.END)
_FEATURE_SECURITY_MECHANISM: Final = int(IdentifyFeature.SECURITY_MECHANISM)
_FEATURE_SESSION_CTRL: Final = int(IdentifyFeature.SESSION_CTRL)
_OK: Final = int(ResponseCode.OK)
_RQTL: Final = int(ResponseCode.RQTL)
_RSTL: Final = int(ResponseCode.RSTL)
_DEFAULT_READ: Final = int(ServiceCode.DEFAULT_READ)
_DEREGISTER: Final = int(ServiceCode.DEREGISTER)
_DISCONNECT: Final = int(ServiceCode.DISCONNECT)
_FULL_READ: Final = int(ServiceCode.FULL_READ)
_FULL_WRITE: Final = int(ServiceCode.FULL_WRITE)
_IDENTIFY: Final = int(ServiceCode.IDENTIFY)
_LOGOFF: Final = int(ServiceCode.LOGOFF)
_LOGON: Final = int(ServiceCode.LOGON)
_PARTIAL_READ_OFFSET: Final = int(ServiceCode.PARTIAL_READ_OFFSET)
_PARTIAL_WRITE_OFFSET: Final = int(ServiceCode.PARTIAL_WRITE_OFFSET)
_REGISTER: Final = int(ServiceCode.REGISTER)
_RESOLVE: Final = int(ServiceCode.RESOLVE)
_SECURITY: Final = int(ServiceCode.SECURITY)
_TERMINATE: Final = int(ServiceCode.TERMINATE)
_TRACE: Final = int(ServiceCode.TRACE)
_WAIT: Final = int(ServiceCode.WAIT)
_MAX_RESPONSE_CODE: Final = int(max(ResponseCode))


def decode_request(buf: bytes, pos: int, end: int, path: str = "service") -> Request:
    """Decode the request occupying ``buf[pos:end]`` (code byte first)."""
    code = buf[pos]
    p = pos + 1
    if code in _NO_PARAMETERS:
        _done(end, p, path)
        return _NO_PARAMETERS[code]
    if code == _FULL_READ:
        _need(end, p, 2, "full read", path)
        _done(end, p + 2, path)
        return FullReadRequest((buf[p] << 8) | buf[p + 1])
    if code == _PARTIAL_READ_OFFSET:
        _need(end, p, 7, "partial read", path)
        _done(end, p + 7, path)
        return PartialReadOffsetRequest(
            FROM_BYTES(buf[p : p + 2], "big"), FROM_BYTES(buf[p + 2 : p + 5], "big"),
            FROM_BYTES(buf[p + 5 : p + 7], "big"))
    if 0x31 <= code <= 0x39:
        n = code - 0x30
        _need(end, p, 4 + 2 * n, "partial read", path)
        _done(end, p + 4 + 2 * n, path)
        words = _u16s(buf, p, n + 2)
        return PartialReadIndexRequest(words[0], tuple(words[1:-1]), words[-1])
    if code == _FULL_WRITE:
        _need(end, p, 2, "full write", path)
        data, q = read_table_data(buf, p + 2, end, path + ".table_data")
        _done(end, q, path)
        return FullWriteRequest((buf[p] << 8) | buf[p + 1], data)
    if 0x41 <= code <= 0x49:
        n = code - 0x40
        _need(end, p, 2 + 2 * n, "partial write", path)
        words = _u16s(buf, p, n + 1)
        data, q = read_table_data(buf, p + 2 + 2 * n, end, path + ".table_data")
        _done(end, q, path)
        return PartialWriteIndexRequest(words[0], tuple(words[1:]), data)
    if code == _PARTIAL_WRITE_OFFSET:
        _need(end, p, 5, "partial write", path)
        data, q = read_table_data(buf, p + 5, end, path + ".table_data")
        _done(end, q, path)
        return PartialWriteOffsetRequest(FROM_BYTES(buf[p : p + 2], "big"),
                                         FROM_BYTES(buf[p + 2 : p + 5], "big"), data)
    if code == _LOGON:
        _need(end, p, 14, "logon", path)
        _done(end, p + 14, path)
        return LogonRequest(FROM_BYTES(buf[p : p + 2], "big"), bytes(buf[p + 2 : p + 12]),
                            FROM_BYTES(buf[p + 12 : p + 14], "big"))
    if code == _SECURITY:
        # 21 bytes: no user id (session use); 23: sessionless, user id follows (digest 4.1).
        if end - p == 20:
            return SecurityRequest(bytes(buf[p:end]))
        if end - p == 22:
            return SecurityRequest(bytes(buf[p : p + 20]), FROM_BYTES(buf[p + 20 : end], "big"))
        raise BerError(f"security service of {end - pos} bytes, not 21 or 23", pos, path)
    if code == _WAIT:
        _need(end, p, 1, "wait", path)
        _done(end, p + 1, path)
        return WaitRequest(buf[p])
    if code in (_DEREGISTER, _RESOLVE, _TRACE):
        title, q = read_uid(buf, p, end, path + ".ap_title")
        _done(end, q, path)
        return _AP_TITLE_REQUESTS[code](title)
    if code == _REGISTER:
        return _decode_register(buf, p, end, path)
    if code < 0x20:
        raise UnknownCode(f"status {code:#04x} where a request was expected", pos, path)
    return UnknownRequest(code, bytes(buf[p:end]))


def _u16s(buf: bytes, p: int, n: int) -> list[int]:
    return [(buf[p + 2 * i] << 8) | buf[p + 2 * i + 1] for i in range(n)]


def _decode_register(buf: bytes, p: int, end: int, path: str) -> RegisterRequest:
    _need(end, p, 6, "register", path)
    node_type, connection_type = buf[p], buf[p + 1]
    device_class = bytes(buf[p + 2 : p + 6])
    ap_title, q = read_uid(buf, p + 6, end, path + ".ap_title")
    serial, q = read_uid(buf, q, end, path + ".serial_number")
    _need(end, q, 1, "native address length", path)
    n = buf[q]
    _need(end, q + 1, n + 3, "native address and period", path)
    address = bytes(buf[q + 1 : q + 1 + n])
    q += 1 + n
    period = FROM_BYTES(buf[q : q + 3], "big")
    q += 3
    pattern = None
    if node_type & 0x80:
        _need(end, q, 1, "domain pattern length", path)
        m = buf[q]
        _need(end, q + 1, m, "domain pattern", path)
        pattern = bytes(buf[q + 1 : q + 1 + m])
        q += 1 + m
    _done(end, q, path)
    return RegisterRequest(node_type, connection_type, device_class, ap_title, serial, address,
                           period, pattern)


_NO_PARAMETERS: Final[dict[int, Request]] = {
    _IDENTIFY: IdentifyRequest(),
    _TERMINATE: TerminateRequest(),
    _DISCONNECT: DisconnectRequest(),
    _LOGOFF: LogoffRequest(),
    _DEFAULT_READ: DefaultReadRequest(),
}
_AP_TITLE_REQUESTS: Final[dict[int, type[_ApTitleRequest]]] = {
    _DEREGISTER: DeregisterRequest,
    _RESOLVE: ResolveRequest,
    _TRACE: TraceRequest,
}
_READS: Final = (FullReadRequest, PartialReadIndexRequest, PartialReadOffsetRequest, DefaultReadRequest)


def decode_response(buf: bytes, pos: int, end: int, request: Request | None = None,
                    path: str = "service") -> Response:
    """Decode the response occupying ``buf[pos:end]``, typed by the request it answers."""
    code = buf[pos]
    p = pos + 1
    if code >= 0x20:
        raise UnknownCode(f"service code {code:#04x} where a response was expected", pos, path)
    if code != _OK:
        if code in (_RQTL, _RSTL) and end - p == 4:
            return ErrorResponse(response_code=code, max_size=FROM_BYTES(buf[p:end], "big"))
        if end == p and code <= _MAX_RESPONSE_CODE:
            return ErrorResponse(response_code=code)
        return RawResponse(response_code=code, data=bytes(buf[p:end]))
    if request is None:
        return RawResponse(response_code=code, data=bytes(buf[p:end]))
    if isinstance(request, _READS):
        data, q = read_table_data(buf, p, end, path + ".table_data")
        _done(end, q, path)
        return ReadResponse(table_data=data)
    if isinstance(request, IdentifyRequest):
        return _decode_identify(buf, p, end, path)
    if isinstance(request, LogonRequest):
        _need(end, p, 2, "logon response", path)
        _done(end, p + 2, path)
        return LogonResponse(resp_session_idle_timeout=FROM_BYTES(buf[p : p + 2], "big"))
    if isinstance(request, RegisterRequest):
        title, q = read_uid(buf, p, end, path + ".reg_ap_title")
        _need(end, q, 6, "register response", path)
        _done(end, q + 6, path)
        return RegisterResponse(reg_ap_title=title, reg_delay=FROM_BYTES(buf[q : q + 2], "big"),
                                reg_period=FROM_BYTES(buf[q + 2 : q + 5], "big"),
                                reg_info=buf[q + 5])
    if isinstance(request, ResolveRequest):
        _need(end, p, 1, "resolve response", path)
        n = buf[p]
        _need(end, p + 1, n, "native address", path)
        _done(end, p + 1 + n, path)
        return ResolveResponse(native_address=bytes(buf[p + 1 : end]))
    if isinstance(request, TraceRequest):
        titles: list[Uid] = []
        q = p
        while q < end:
            if len(titles) >= limits.MAX_TRACE_HOPS:
                raise DecodeLimitExceeded("too many relays in a trace", q, path)
            title, q = read_uid(buf, q, end, f"{path}.ap_titles[{len(titles)}]")
            titles.append(title)
        return TraceResponse(ap_titles=tuple(titles))
    if isinstance(request, UnknownRequest):
        return RawResponse(response_code=code, data=bytes(buf[p:end]))
    _done(end, p, path)
    return OkResponse()


def _decode_identify(buf: bytes, p: int, end: int, path: str) -> IdentifyResponse:
    _need(end, p, 4, "identify response", path)
    std, ver, rev = buf[p], buf[p + 1], buf[p + 2]
    q = p + 3
    mechanisms: list[Uid] = []
    session_ctrl = None
    device_class = None
    identity = None
    for _ in range(limits.MAX_IDENTIFY_FEATURES + 1):
        _need(end, q, 1, "identify feature", path)
        tag = buf[q]
        q += 1
        if tag == _FEATURE_END:
            _done(end, q, path)
            return IdentifyResponse(std=std, ver=ver, rev=rev,
                                    security_mechanisms=tuple(mechanisms),
                                    session_ctrl=session_ctrl, device_class=device_class,
                                    device_identity=identity)
        if tag == _FEATURE_SECURITY_MECHANISM:
            mech, q = read_uid(buf, q, end, path + ".security_mechanism")
            mechanisms.append(mech)
        elif tag == _FEATURE_SESSION_CTRL and session_ctrl is None:
            _need(end, q, 1, "session ctrl", path)
            session_ctrl = buf[q]
            q += 1
        elif tag == _FEATURE_DEVICE_CLASS and device_class is None:
            device_class, q = read_uid(buf, q, end, path + ".device_class")
        elif tag == _FEATURE_DEVICE_IDENTITY and identity is None:
            _need(end, q, 2, "device identity", path)
            n = buf[q]
            if n == 0:
                raise BerError("device identity without a format byte", q, path)
            _need(end, q + 1, n, "device identity", path)
            identity = DeviceIdentity(buf[q + 1], bytes(buf[q + 2 : q + 1 + n]))
            q += 1 + n
        else:
            # Feature lengths are implicit in their tag, so nothing after an unknown one can be read.
            raise UnknownCode(f"identify feature {tag:#04x}", q - 1, path)
    raise DecodeLimitExceeded("too many identify features", q, path)


def decode_service(buf: bytes, pos: int, end: int, request: Request | None = None,
                   path: str = "service") -> Service:
    """A request (code >= 0x20) or a response (status < 0x20) occupying ``buf[pos:end]``."""
    if pos >= end:
        raise Truncated("empty service", pos, path)
    if buf[pos] >= 0x20:
        return decode_request(buf, pos, end, path)
    try:
        return decode_response(buf, pos, end, request, path)
    except DecodeError:
        if request is None:
            raise
        # The pairing is only a guess from position; an answer that does not fit it is still
        # shown, as bytes.
        return RawResponse(response_code=buf[pos], data=bytes(buf[pos + 1 : end]))
