"""EPSEM: the control byte, ed-class and the service list (digest section 3).

``<ctl> [<ed-class:4>] <len><service> ... [00 ...] [<MAC:4>]``. In security
mode 2 everything between the control byte and the MAC is ciphertext; it is
kept as ``ciphertext`` until crypto/policy decrypts it and calls
:func:`decode_body` on the plaintext.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from c1222 import limits
from c1222.codec.ber import as_bytes, byte, encode_length, read_length
from c1222.codec.services import Request, Service, decode_service
from c1222.codes import ResponseControl, SecurityMode
from c1222.errors import BerError, DecodeLimitExceeded, LocalProtocolError, Truncated, UnknownCode

MAC_SIZE: Final = 4
ED_CLASS_SIZE: Final = 4

FLAG_RESERVED: Final = 0x80  # always 1
FLAG_RECOVERY_SESSION: Final = 0x40
FLAG_PROXY_SERVICE_USED: Final = 0x20
FLAG_ED_CLASS_INCLUDED: Final = 0x10


# Plain ints for the per-message tests (an IntEnum member is an attribute lookup each time).
_CLEARTEXT: Final = int(SecurityMode.CLEARTEXT)
_CIPHERTEXT: Final = int(SecurityMode.CIPHERTEXT_AUTHENTICATED)


@dataclass(frozen=True, slots=True)
class Epsem:
    """One EPSEM. ``ed_class_included`` follows ``ed_class`` unless the body is still ciphertext.

    ``padding`` holds a zero service-length terminator and whatever followed it
    (accepted, never produced by default: digest 3.3). ``ciphertext`` is the
    undecrypted body of a security-mode-2 EPSEM; ``services`` is then empty.
    """

    services: tuple[Service, ...] = ()
    security_mode: int = SecurityMode.CLEARTEXT
    response_control: int = ResponseControl.ALWAYS
    recovery_session: bool = False
    proxy_service_used: bool = False
    ed_class: bytes | None = None
    ed_class_included: bool = False
    mac: bytes | None = None
    ciphertext: bytes | None = None
    padding: bytes = b""

    # The dataclass's __init__ and __post_init__ in one, written out: @dataclass keeps an
    # __init__ the class defines, and compiled by mypyc each ``object.__setattr__`` becomes a
    # native store (the generated one stays interpreted, about 1 µs per decoded message).
    def __init__(self, services: tuple[Service, ...] = (),
                 security_mode: int = SecurityMode.CLEARTEXT,
                 response_control: int = ResponseControl.ALWAYS, recovery_session: bool = False,
                 proxy_service_used: bool = False, ed_class: bytes | None = None,
                 ed_class_included: bool = False, mac: bytes | None = None,
                 ciphertext: bytes | None = None, padding: bytes = b"") -> None:
        if ed_class is not None:
            if len(ed_class) != ED_CLASS_SIZE:
                raise LocalProtocolError("ed-class is 4 bytes")
            ed_class_included = True
        elif ciphertext is None and ed_class_included:
            raise LocalProtocolError("ed-class flag without an ed-class")
        if mac is not None and len(mac) != MAC_SIZE:
            raise LocalProtocolError("MAC is 4 bytes")
        object.__setattr__(self, "services", services)
        object.__setattr__(self, "security_mode", security_mode)
        object.__setattr__(self, "response_control", response_control)
        object.__setattr__(self, "recovery_session", recovery_session)
        object.__setattr__(self, "proxy_service_used", proxy_service_used)
        object.__setattr__(self, "ed_class", ed_class)
        object.__setattr__(self, "ed_class_included", ed_class_included)
        object.__setattr__(self, "mac", mac)
        object.__setattr__(self, "ciphertext", ciphertext)
        object.__setattr__(self, "padding", padding)

    @property
    def control(self) -> int:
        if not 0 <= self.security_mode <= 3 or not 0 <= self.response_control <= 3:
            raise LocalProtocolError("security mode and response control are 2 bits")
        return (FLAG_RESERVED
                | (FLAG_RECOVERY_SESSION if self.recovery_session else 0)
                | (FLAG_PROXY_SERVICE_USED if self.proxy_service_used else 0)
                | (FLAG_ED_CLASS_INCLUDED if self.ed_class_included else 0)
                | self.security_mode << 2
                | self.response_control)

    @property
    def secured(self) -> bool:
        return self.security_mode != _CLEARTEXT

    def encode(self) -> bytes:
        """The octet-string contents: control byte, body (or ciphertext) and MAC."""
        if self.ciphertext is not None:
            body = self.ciphertext
        elif self.security_mode == _CIPHERTEXT:
            raise LocalProtocolError("security mode 2 needs the ciphertext (crypto/policy makes it)")
        else:
            body = encode_body(self)
        if self.secured:
            if self.mac is None:
                raise LocalProtocolError("a secured EPSEM needs a MAC (crypto/policy adds it)")
            return b"".join((byte(self.control), body, self.mac))
        if self.mac is not None:
            raise LocalProtocolError("a cleartext EPSEM carries no MAC")
        return byte(self.control) + body


def encode_body(epsem: Epsem) -> bytes:
    """ed-class and services: the plaintext that security mode 2 encrypts."""
    parts = [epsem.ed_class] if epsem.ed_class else []
    for service in epsem.services:
        data = service.encode()
        parts.append(encode_length(len(data)))
        parts.append(data)
    parts.append(epsem.padding)
    return b"".join(parts)


def control_and_mac(buf: bytes, pos: int, end: int, path: str = "epsem") -> tuple[int, int]:
    """Check the control byte at ``pos``; return it and where the MAC starts (``end`` if none).

    The one place that decides whether an EPSEM is well formed enough to carry
    a MAC: both this decoder and crypto/policy (before it verifies) use it.
    """
    if pos >= end:
        raise Truncated("empty EPSEM", pos, path)
    ctl = buf[pos]
    if not ctl & FLAG_RESERVED:
        raise BerError("EPSEM control bit 7 must be 1", pos, path + ".control")
    mode = (ctl >> 2) & 3
    if mode == 3:
        raise UnknownCode("security mode 3 is not defined", pos, path + ".control")
    if mode == _CLEARTEXT:
        return ctl, end
    if end - pos - 1 < MAC_SIZE:
        raise Truncated("secured EPSEM shorter than its MAC", pos, path + ".mac")
    return ctl, end - MAC_SIZE


def decode(buf: bytes, pos: int, end: int, requests: Sequence[Request] | None = None,
           path: str = "epsem") -> Epsem:
    """Decode the EPSEM in ``buf[pos:end]`` (the user-information octet string)."""
    ctl, body_end = control_and_mac(buf, pos, end, path)
    mode = (ctl >> 2) & 3
    control = ctl & 3
    recovery = bool(ctl & FLAG_RECOVERY_SESSION)
    proxy = bool(ctl & FLAG_PROXY_SERVICE_USED)
    edc = bool(ctl & FLAG_ED_CLASS_INCLUDED)
    mac = as_bytes(buf[body_end:end]) if mode else None
    if mode == _CIPHERTEXT:
        return Epsem(security_mode=mode, response_control=control, recovery_session=recovery,
                     proxy_service_used=proxy, ed_class_included=edc, mac=mac,
                     ciphertext=as_bytes(buf[pos + 1 : body_end]))
    ed_class, services, padding = decode_body(buf, pos + 1, body_end, edc, requests, path)
    return Epsem(services, security_mode=mode, response_control=control,
                 recovery_session=recovery, proxy_service_used=proxy, ed_class=ed_class,
                 mac=mac, padding=padding)


def decode_body(buf: bytes, pos: int, end: int, ed_class_included: bool,
                requests: Sequence[Request] | None = None, path: str = "epsem"
                ) -> tuple[bytes | None, tuple[Service, ...], bytes]:
    """ed-class, services and padding from a (decrypted) EPSEM body in ``buf[pos:end]``.

    A response at position i is typed by ``requests[i]`` when given.
    """
    ed_class = None
    if ed_class_included:
        if end - pos < ED_CLASS_SIZE:
            raise Truncated("ed-class cut short", pos, path + ".ed_class")
        ed_class = as_bytes(buf[pos : pos + ED_CLASS_SIZE])
        pos += ED_CLASS_SIZE
    services: list[Service] = []
    while pos < end:
        n = buf[pos]
        if n < 0x80:  # the short form, inline (the error paths are built only on error)
            start = pos + 1
        else:
            n, start = read_length(buf, pos, end, f"{path}.services[{len(services)}].length")
        if n == 0:
            return ed_class, tuple(services), as_bytes(buf[pos:end])
        if start + n > end:
            raise Truncated(f"service claims {n} bytes, {end - start} left", pos,
                            f"{path}.services[{len(services)}]")
        if len(services) >= limits.MAX_SERVICES:
            raise DecodeLimitExceeded("too many services", pos, path + ".services")
        i = len(services)
        request = requests[i] if requests is not None and i < len(requests) else None
        services.append(decode_service(buf, start, start + n, request, f"{path}.services[{i}]"))
        pos = start + n
    return ed_class, tuple(services), b""
