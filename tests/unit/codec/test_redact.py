"""codec.redact: secrets filled in the message and in its bytes, in every security mode."""

from __future__ import annotations

import pytest

from c1222.codec import acse, text
from c1222.codec.ber import Uid
from c1222.codec.redact import has_secrets, redact, redact_bytes
from c1222.codec.services import FullReadRequest, LogonRequest, SecurityRequest
from c1222.crypto.keys import KeyTable
from c1222.crypto.nonces import FixedNonceSource
from c1222.crypto.policy import unprotect
from c1222.session.requester import Requester
from c1222.tables.access import pad_password

PASSWORD = b"Hunter2-Secret"
USER = b"alice     "
KEYS = KeyTable({2: bytes(range(16))})
METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")


def sent(mode: int, services: list) -> tuple[bytes, object]:
    req = Requester(Uid.parse("2.16.124.113620.1.22.0.123.4"),
                    FixedNonceSource(b"\x00\x00\x00\x09", 77), keys=KEYS, security_mode=mode,
                    key_id=2 if mode else None)
    pending = req.request(services, METER)
    return pending.data, pending.apdu


SERVICES = [LogonRequest(2, USER, 60), SecurityRequest(pad_password(PASSWORD), 2),
            FullReadRequest(1)]


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_the_message_and_its_bytes_lose_the_password_and_user_name(mode: int) -> None:
    data, apdu = sent(mode, SERVICES)
    shown = redact(apdu)
    js = str(text.to_json(shown))
    assert PASSWORD.hex() not in js and USER.hex() not in js
    assert shown.epsem.services[1].password == b"*" * 20
    assert shown.epsem.services[0].user == b"*" * 10
    assert shown.epsem.services[2] == apdu.epsem.services[2]
    raw = redact_bytes(data, apdu)
    assert len(raw) == len(data) and PASSWORD not in raw and USER not in raw
    if mode == 2:
        assert raw == data  # ciphertext: nothing in clear to redact
    else:
        # only the secret bytes changed, and the redacted bytes are the redacted message's
        assert sum(a != b for a, b in zip(raw, data)) <= 30
        rows = b"".join(d for _, _, d in text.tree(shown))
        assert rows == raw


def test_a_received_message_is_redacted_the_same_way() -> None:
    data, _ = sent(1, SERVICES)
    apdu = unprotect(data, KEYS)
    assert PASSWORD not in redact_bytes(data, apdu)


def test_bytes_that_do_not_hold_the_encoded_body_are_scrubbed_anyway() -> None:
    data, apdu = sent(0, SERVICES)
    odd = data + b"\x00"  # not the bytes this codec would give
    out = redact_bytes(odd, apdu)
    assert pad_password(PASSWORD) not in out and USER not in out


def test_messages_without_secrets_are_unchanged() -> None:
    data, apdu = sent(0, [FullReadRequest(1)])
    assert not has_secrets(apdu) and redact(apdu) is apdu
    assert redact_bytes(data, apdu) is data
    assert acse.decode(data) == apdu
