"""Secrets out of every stored or displayed form of a message (docs/headend.md, "Secrets").

The Security service carries a password and Logon a user name; in security modes 0 and 1
they cross the wire in clear, and a decrypted mode-2 message holds them too. Anything that
keeps or shows a message (the head-end's message log, its API and console, a conformance
report) passes it through :func:`redact` first, and the bytes through :func:`redact_bytes`.

Redacted fields keep their length, filled with ``*``, so the redacted message still encodes,
its tree still lines up with its bytes, and ``redact_bytes`` only overwrites bytes in place.
Keys are never part of a message; the key table never prints them (crypto/keys).

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses

from c1222.codec.acse import Apdu
from c1222.codec.epsem import encode_body
from c1222.codec.services import LogonRequest, SecurityRequest, Service
from c1222.codes import SecurityMode

__all__ = ["FILL", "has_secrets", "redact", "redact_bytes", "redact_service"]

#: The byte a redacted field is filled with ("*").
FILL = 0x2A


def _filled(value: bytes) -> bytes:
    return bytes((FILL,)) * len(value)


def redact_service(service: Service) -> Service:
    """The service with its password / user name filled with ``*`` (others unchanged)."""
    if isinstance(service, SecurityRequest):
        return dataclasses.replace(service, password=_filled(service.password))
    if isinstance(service, LogonRequest):
        return dataclasses.replace(service, user=_filled(service.user))
    return service


def has_secrets(apdu: Apdu) -> bool:
    """Whether the message's (cleartext or decrypted) services carry a password or user name."""
    return any(isinstance(s, (SecurityRequest, LogonRequest)) for s in apdu.epsem.services)


def redact(apdu: Apdu) -> Apdu:
    """The message with every Security password and Logon user name filled with ``*``."""
    if not has_secrets(apdu):
        return apdu
    services = tuple(redact_service(s) for s in apdu.epsem.services)
    return dataclasses.replace(apdu, epsem=dataclasses.replace(apdu.epsem, services=services))


def redact_bytes(raw: bytes, apdu: Apdu) -> bytes:
    """``raw`` (the bytes ``apdu`` was decoded from or encoded to) with the same fields filled.

    Only modes 0 and 1 carry services in clear; a mode-2 message's bytes are ciphertext and
    stay as they are. The EPSEM body is the end of an APDU (before a 4-byte MAC when secured),
    so the redacted body is written over that span. Should the span not hold the body as this
    codec encodes it (a message that did not come from this codec), every occurrence of each
    secret is overwritten instead, so a secret never survives.
    """
    epsem = apdu.epsem
    if not has_secrets(apdu) or epsem.security_mode == SecurityMode.CIPHERTEXT_AUTHENTICATED:
        return raw
    body = encode_body(epsem)
    end = len(raw) - (len(epsem.mac or b"\0" * 4) if epsem.secured else 0)
    start = end - len(body)
    if start >= 0 and raw[start:end] == body:
        return raw[:start] + encode_body(redact(apdu).epsem) + raw[end:]
    out = bytes(raw)
    for service in epsem.services:
        secret = (service.password if isinstance(service, SecurityRequest)
                  else service.user if isinstance(service, LogonRequest) else b"")
        if secret:
            out = out.replace(secret, _filled(secret))
    return out
