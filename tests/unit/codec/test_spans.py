"""The codec keeps the raw span of every ACSE element (architecture rule 7), and crypto builds
the authenticated cleartext N from those spans: checked here against the bytes themselves and
against N built the old way (an independent walk of the BER elements, digest 5.2)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings

from c1222.codec import acse, samples
from c1222.codec.ber import TAG_OID, read_tlv, tlv
from c1222.crypto import policy
from c1222.crypto.keys import KeyTable
from c1222.errors import DecodeError
from tests.property.strategies import exchanges

KEYS = KeyTable({2: bytes(range(16))})
BASE = policy.AP_TITLE_BASE_CONTENT
#: digest 5.2 items 1-7, then BE .. ctl, then A6, key id, IV
HEAD = (0xA1, 0xA2, 0xA4, 0xA7, 0xA8, 0x8B, 0xAC)


def reference_cleartext(data: bytes) -> bytes:
    """N the way crypto/policy built it before the codec kept spans: walk the elements, rebuild
    relative titles under the base, take AC's key id and IV from its 17-byte form."""
    pos = 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F)
    elements: dict[int, tuple[int, int, int]] = {}
    while True:
        tag, start, stop = read_tlv(data, pos, len(data))
        if tag == 0xBE:
            _, p, _ = read_tlv(data, start, stop)  # 28
            itag, vstart, vstop = read_tlv(data, p, stop)
            if itag == 0x02:
                itag, vstart, vstop = read_tlv(data, vstop, stop)
            control, be = vstart, pos
            break
        elements[tag] = (pos, start, stop)
        pos = stop

    def title(tag: int) -> bytes:
        p, start, stop = elements[tag]
        inner, istart, istop = read_tlv(data, start, stop)
        if inner == TAG_OID:
            return data[p:stop]
        return tlv(tag, tlv(TAG_OID, BASE + data[istart:istop]))

    ac = data[elements[0xAC][0] : elements[0xAC][2]]
    parts = [title(t) if t == 0xA2 else data[elements[t][0] : elements[t][2]]
             for t in HEAD if t in elements]
    parts.append(data[be : control + 1])
    if 0xA6 in elements:
        parts.append(title(0xA6))
    return b"".join(parts) + ac[10:11] + ac[13:17]


def check_spans(data: bytes, apdu: acse.Apdu) -> None:
    """Every span reads back its element: the re-encoded element's bytes, and the EPSEM."""
    spans = apdu.spans
    assert spans is not None
    encoded = acse.header_elements(apdu)
    assert [s[0] for s in spans.elements[:-1]] == list(encoded)  # all of them, in order
    for tag, start, vstart, vstop in spans.elements:
        assert read_tlv(data, start, len(data)) == (tag, vstart, vstop)
        if tag != acse.TAG_USER_INFORMATION:
            assert data[start:vstop] == encoded[tag]
    be = spans.elements[-1]
    assert be[0] == acse.TAG_USER_INFORMATION and be[3] == len(data)
    epsem = apdu.epsem.encode()
    assert data[be[1] : be[3]] == acse.user_information(epsem, apdu.indirect_reference)
    assert data[spans.epsem[0] : spans.epsem[1]] == epsem


def secured_messages() -> list[bytes]:
    out = []
    for i, apdu in enumerate(samples.messages()):
        for mode in (1, 2):
            iv = bytes((0x5F, 0, 0, i % 256))
            out.append(policy.protect(samples.secured_variant(apdu, mode, 2, iv), KEYS))
    return out


@pytest.mark.parametrize("index", range(len(samples.messages())))
def test_sample_spans_read_back_their_elements(index: int) -> None:
    data = samples.messages()[index].encode()
    check_spans(data, acse.decode(data))


def test_secured_samples_cleartext_from_spans_equals_the_walk() -> None:
    messages = secured_messages()
    assert len(messages) > 20
    for data in messages:
        assert policy.authenticated_cleartext(data) == reference_cleartext(data)
        apdu = policy.unprotect(data, KEYS)
        check_spans(data, acse.decode(data))
        assert apdu.spans == acse.decode(data).spans  # unprotect keeps the header's spans


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(exchanges())
def test_generated_apdus_spans_and_cleartext(exchange) -> None:
    request, response, reqs = exchange
    for apdu in (request, response):
        data = apdu.encode()
        decoded = acse.decode(data, reqs if apdu is response else None)
        check_spans(data, decoded)
        if apdu.key_id is not None and apdu.iv is not None:
            assert policy.authenticated_cleartext(data) == reference_cleartext(data)
        if apdu.epsem.secured and apdu.epsem.ciphertext is None:
            keyed = dataclasses.replace(apdu, key_id=2, iv=apdu.iv or bytes(4))
            secured = policy.protect(keyed, KEYS)
            assert policy.authenticated_cleartext(secured) == reference_cleartext(secured)
            assert policy.unprotect(secured, KEYS, requests=reqs if apdu is response else None
                                    ).epsem.services == apdu.epsem.services


def test_a_spans_key_in_a_json_record_is_ignored_as_any_unknown_key() -> None:
    from c1222.codec import text

    made = samples.messages()[0]
    for junk in ("x", [[1, 2, 3, 4]], {"elements": []}, None):
        value = text.to_json(made)
        value["spans"] = junk
        assert text.from_json(value) == made and text.from_json(value).spans is None


def test_spans_are_not_part_of_the_value() -> None:
    """Equality, repr and dataclasses.replace ignore the spans (a changed APDU has other
    bytes); an APDU made in code has none."""
    made = samples.messages()[0]
    decoded = acse.decode(made.encode())
    assert made.spans is None and decoded.spans is not None
    assert decoded == made and "spans" not in repr(decoded)
    assert dataclasses.replace(decoded, calling_ap_invocation_id=9).spans is None


@pytest.mark.parametrize("data", [
    b"", b"\x60", b"\x60\x00", b"\x60\x03\xa8\x01\x02",  # no BE, A8 broken
    bytes.fromhex("6009a803020101be022800"),  # EXTERNAL without the octet string
    bytes.fromhex("600ca803020101be052803810100") + b"\x00",  # a byte after the APDU
    bytes.fromhex("600aa2028000a8020200be00"),  # empty relative title, A8 non-minimal
    bytes.fromhex("6084ffffffffa803020101"),  # a length claiming 4 GiB
])
def test_hostile_headers_give_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        acse.decode_header(data)
    with pytest.raises(DecodeError):
        policy.authenticated_cleartext(data)


def test_empty_epsem_is_refused_before_any_mac() -> None:
    data = bytes.fromhex("600ba803020101be0428028100")
    assert acse.decode_header(data).spans.epsem == (13, 13)
    with pytest.raises(DecodeError):
        policy.unprotect(data, KEYS)
    with pytest.raises(DecodeError):
        policy.unprotect(data, KEYS, header=acse.decode_header(data))
