"""The exception tree of the project (docs/architecture.md, "Errors").

Decoders raise only :class:`DecodeError` subclasses; a well-formed request that
cannot be served raises a :class:`ServiceError` subclass named after the C12.19
response code, which one place (the meter's dispatcher) turns into a response.
"""

from __future__ import annotations

from c1222.codes import ResponseCode


class C1222Error(Exception):
    """Root of every error this package raises on purpose."""


class ProtocolError(C1222Error):
    """Something in an exchange broke the protocol."""


class LocalProtocolError(ProtocolError):
    """Our caller asked for something illegal (e.g. encoding an out-of-range value)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something illegal. ``response_hint`` is the code to answer with."""

    response_hint: ResponseCode = ResponseCode.ERR


class DecodeError(RemoteProtocolError):
    """Bytes that do not decode. ``offset`` is the byte offset, ``path`` the field path."""

    def __init__(self, reason: str, offset: int = 0, path: str = "") -> None:
        self.reason = reason
        self.offset = offset
        self.path = path
        where = f" at {path}" if path else ""
        super().__init__(f"{reason}{where} (offset {offset})")


class Truncated(DecodeError):
    """The bytes end before the structure does."""


class BerError(DecodeError):
    """A BER tag, length or value that breaks the encoding rules."""


class ChecksumMismatch(DecodeError):
    """Table data whose checksum does not match its bytes."""


class UnknownCode(DecodeError):
    """A code (service, response, feature) that the standard does not define."""


class LimitExceeded(RemoteProtocolError):
    """A size, count or depth over one of the limits in :mod:`c1222.limits`."""

    response_hint = ResponseCode.RQTL


class DecodeLimitExceeded(LimitExceeded, DecodeError):
    """A limit hit while decoding: both a limit and a decode error, so decoders raise only DecodeError."""


class UnexpectedMessage(RemoteProtocolError):
    """A well-formed message that is illegal in the current state."""

    response_hint = ResponseCode.ISSS


class SecurityError(RemoteProtocolError):
    """Bad MAC, unknown key id or replay. The message is generic on purpose."""

    response_hint = ResponseCode.SME

    def __init__(self, message: str = "security check failed") -> None:
        super().__init__(message)


class ServiceError(C1222Error):
    """A request that cannot be served; the subclass names the C12.19 response code."""

    code: ResponseCode = ResponseCode.ERR

    def __init__(self, message: str = "", *, max_size: int | None = None) -> None:
        self.max_size = max_size
        super().__init__(message or self.__doc__ or self.code.name)


def _service_error(code: ResponseCode, doc: str) -> type[ServiceError]:
    return type(code.name, (ServiceError,), {"code": code, "__doc__": doc, "__module__": __name__})


# One subclass per response code, named by the standard's abbreviation.
ERR = _service_error(ResponseCode.ERR, "Error: rejected, no more specific code applies.")
SNS = _service_error(ResponseCode.SNS, "Service Not Supported.")
ISC = _service_error(ResponseCode.ISC, "Insufficient Security Clearance.")
ONP = _service_error(ResponseCode.ONP, "Operation Not Possible.")
IAR = _service_error(ResponseCode.IAR, "Inappropriate Action Requested.")
BSY = _service_error(ResponseCode.BSY, "Device Busy.")
DNR = _service_error(ResponseCode.DNR, "Data Not Ready.")
DLK = _service_error(ResponseCode.DLK, "Data Locked.")
RNO = _service_error(ResponseCode.RNO, "Renegotiate Request.")
ISSS = _service_error(ResponseCode.ISSS, "Invalid Service Sequence State.")
SME = _service_error(ResponseCode.SME, "Security Mechanism Error.")
UAT = _service_error(ResponseCode.UAT, "Unknown Application Title.")
NETT = _service_error(ResponseCode.NETT, "Network Time-out.")
NETR = _service_error(ResponseCode.NETR, "Network Not Reachable.")
RQTL = _service_error(ResponseCode.RQTL, "Request Too Large (carries the maximum request size).")
RSTL = _service_error(ResponseCode.RSTL, "Response Too Large (carries the maximum response size).")
SGNP = _service_error(ResponseCode.SGNP, "Segmentation Not Possible.")
SGERR = _service_error(ResponseCode.SGERR, "Segmentation Error.")

SERVICE_ERRORS: dict[ResponseCode, type[ServiceError]] = {
    cls.code: cls
    for cls in (ERR, SNS, ISC, ONP, IAR, BSY, DNR, DLK, RNO, ISSS, SME, UAT, NETT, NETR,
                RQTL, RSTL, SGNP, SGERR)
}


class TransportError(C1222Error):
    """Connection refused or lost, or no response in time."""


class ResponseTimeout(TransportError):
    """No response to a request within its time-out (the peer is silent, not unreachable)."""


class ConfigurationError(C1222Error):
    """Bad settings, profile or key file."""
