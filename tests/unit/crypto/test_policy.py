"""Security policy (digest 5.1, 5.2, 5.5): tamper detection, replay, modes, errors, round trips.

Contract under test for hostile input: ``unprotect`` raises only SecurityError or DecodeError.
A tampered message that is still well formed (the codec decodes it) must give SecurityError —
never DecodeError, never a result. DecodeError is allowed only for bytes the codec itself
rejects, i.e. when the flip broke the structure; SecurityError is also acceptable there when
the structure still lets the MAC inputs be located (the MAC check comes first, digest 5.5).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c1222.codec import acse, samples
from c1222.codec import services as sv
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codes import SecurityMode
from c1222.crypto.keys import KeyTable
from c1222.crypto.policy import (
    authenticated_cleartext,
    make_unprotect,
    message_id,
    protect,
    unprotect,
)
from c1222.crypto.replay import MessageId, ReplayWindow
from c1222.errors import (
    BerError,
    ConfigurationError,
    DecodeError,
    LocalProtocolError,
    SecurityError,
    Truncated,
    UnknownCode,
)
from tests.property import strategies as pst

H = bytes.fromhex
KEY = H("01020304050607080102030405060708")
KEYS = KeyTable({2: KEY})
MODE1 = SecurityMode.CLEARTEXT_AUTHENTICATED
MODE2 = SecurityMode.CIPHERTEXT_AUTHENTICATED

# Example 8 message 1 (mode 2, digest 5.6 TV5) and X0 (mode 1, digest 5.7).
EX8 = H("604fa20580037bc175a60480027b04a803020103ac0fa20da00ba109800102810448f3d061"
        "be2a282881268841d10cda76206811b36f781489a11997773e117cb07aa3aa40374a7107c5"
        "0da7f799c5d4e8")
X0 = H("6030a20580037bc175a60480027b04a803020107ac0fa20da00ba10980010281045f000001"
       "be0b28098107840120a7d6786e")


def _body_start(data: bytes) -> int:
    """Offset of the first byte after the EPSEM control byte (single-byte BE/28/81 lengths)."""
    be = data.index(b"\xbe", data.index(b"\xac") + 17)
    return be + 7


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def _well_formed(data: bytes) -> bool:
    try:
        acse.decode(data)
    except DecodeError:
        return False
    return True


def _outcome(data: bytes) -> type[Exception]:
    """The exception class unprotect raises for ``data`` (a receiver requiring security)."""
    with pytest.raises((SecurityError, DecodeError)) as info:
        unprotect(data, KEYS, minimum_mode=MODE1)
    return type(info.value)


# --------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("message", [EX8, X0], ids=["mode2-example8", "mode1-X0"])
def test_every_single_bit_flip_is_refused(message: bytes) -> None:
    """Header (up to and including the control byte), body/ciphertext and MAC: all 8n flips."""
    body = _body_start(message)
    counts = {SecurityError: 0, DecodeError: 0}
    for bit in range(len(message) * 8):
        flipped = _flip(message, bit)
        kind = _outcome(flipped)
        byte = bit // 8
        if byte >= body:
            # Ciphertext/body and MAC: the structure is untouched, so always a MAC failure.
            assert kind is SecurityError, f"bit {bit}"
        elif _well_formed(flipped):
            assert kind is SecurityError, f"bit {bit}"
        else:
            assert issubclass(kind, (SecurityError, DecodeError)), f"bit {bit}"
        counts[SecurityError if kind is SecurityError else DecodeError] += 1
    # Both outcomes occur, so neither branch above is vacuous. (The header is decoded once,
    # values included, before the MAC check: a flip that breaks a title's arc or an integer's
    # minimal form is a DecodeError, so a little under half the flips are MAC failures.)
    assert counts[SecurityError] > len(message) * 3
    assert counts[DecodeError] > 0


CONTROL_FLIPS = [
    # (mask flipped in the control byte 0x88, exact outcome)
    (0x80, BerError),  # reserved bit cleared: not an EPSEM
    (0x40, SecurityError),  # recovery-session: ctl is part of N
    (0x20, SecurityError),  # proxy-service-used
    (0x10, SecurityError),  # ed-class-included
    (0x08, SecurityError),  # mode 2 -> 0: a downgrade, refused by minimum_mode
    (0x04, UnknownCode),  # mode 2 -> 3: undefined
    (0x02, SecurityError),  # response control
    (0x01, SecurityError),
]


@pytest.mark.parametrize(("mask", "expected"), CONTROL_FLIPS)
def test_control_byte_flips_exactly(mask: int, expected: type[Exception]) -> None:
    data = bytearray(EX8)
    data[_body_start(EX8) - 1] ^= mask
    with pytest.raises(expected):
        unprotect(bytes(data), KEYS, minimum_mode=MODE1)


def test_downgrade_to_mode_0_without_minimum_mode() -> None:
    """Mode 0 passes through by default, so a stripped mode is no longer checked.

    X0 downgraded reads its MAC ``a7 d6 78 6e`` as a service whose BER length claims 39 length
    octets: BerError. A receiver
    that needs security sets ``minimum_mode`` and gets SecurityError instead.
    """
    data = bytearray(X0)
    data[_body_start(X0) - 1] = 0x80
    with pytest.raises(BerError):
        unprotect(bytes(data), KEYS)
    with pytest.raises(SecurityError):
        unprotect(bytes(data), KEYS, minimum_mode=MODE1)


def test_dissector_hook_reports_a_bad_mac_and_keeps_the_ciphertext() -> None:
    step = make_unprotect(KEYS)
    for bit in (8 * _body_start(EX8), 8 * (len(EX8) - 1)):  # first ciphertext bit, last MAC bit
        tampered = _flip(EX8, bit)
        apdu = acse.decode(tampered)
        result, verified = step(tampered, apdu, None)
        assert verified is False
        assert result is apdu and result.epsem.ciphertext is not None
        assert result.epsem.services == ()


def test_truncations_are_decode_errors() -> None:
    for message in (EX8, X0):
        for cut in range(len(message)):
            with pytest.raises(Truncated):
                unprotect(message[:cut], KEYS)


def test_extended_and_appended_bytes() -> None:
    with pytest.raises(BerError):
        unprotect(EX8 + b"\x00", KEYS)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120))
def test_random_bytes_give_a_value_or_the_two_errors(data: bytes) -> None:
    try:
        unprotect(data, KEYS)
    except (DecodeError, SecurityError):
        pass


@settings(max_examples=300)
@given(st.integers(0, len(EX8) - 1), st.integers(1, 255))
def test_random_byte_substitutions(position: int, xor: int) -> None:
    data = bytearray(EX8)
    data[position] ^= xor
    kind = _outcome(bytes(data))
    if position >= _body_start(EX8) or _well_formed(bytes(data)):
        assert kind is SecurityError


# --------------------------------------------------------------------------- keys and AC


def test_unknown_key_id_is_a_generic_security_error() -> None:
    reasons: list[str] = []
    with pytest.raises(SecurityError) as info:
        unprotect(EX8, KeyTable({3: KEY}), debug=reasons.append)
    assert str(info.value) == "security check failed"
    assert reasons == ["unknown key id"]
    assert make_unprotect(KeyTable())(EX8, acse.decode(EX8), None)[1] is None


def test_wrong_key_for_the_id_is_a_bad_mac() -> None:
    reasons: list[str] = []
    other = KeyTable({2: bytes(16)})
    with pytest.raises(SecurityError) as info:
        unprotect(EX8, other, debug=reasons.append)
    assert reasons == ["MAC mismatch"]
    assert KEY.hex() not in str(info.value) and bytes(16).hex() not in str(info.value)


def _secured_without_ac() -> bytes:
    apdu = acse.decode(EX8)
    return acse.encode(dataclasses.replace(apdu, key_id=None, iv=None))


def test_missing_ac_is_a_security_error() -> None:
    data = _secured_without_ac()
    reasons: list[str] = []
    with pytest.raises(SecurityError):
        unprotect(data, KEYS, debug=reasons.append)
    assert reasons == ["secured message without a C12.22 key id/IV (AC) element"]
    with pytest.raises(SecurityError):
        authenticated_cleartext(data)
    assert make_unprotect(KEYS)(data, acse.decode(data), None)[1] is None


@pytest.mark.parametrize("fields", [dict(iv=None), dict(key_id=None),
                                    dict(key_id=None, iv=None, authentication_value=H("a100"))])
def test_non_c1222_ac_forms_are_security_errors(fields: dict[str, object]) -> None:
    apdu = dataclasses.replace(acse.decode(EX8), **fields)  # type: ignore[arg-type]
    with pytest.raises(SecurityError):
        unprotect(acse.encode(apdu), KEYS)


# --------------------------------------------------------------------------- replay


def test_replayed_message_is_refused() -> None:
    window = ReplayWindow(max_age=60.0)
    reasons: list[str] = []
    first = unprotect(EX8, KEYS, replay=window, now=0.0)
    with pytest.raises(SecurityError) as info:
        unprotect(EX8, KEYS, replay=window, now=1.0, debug=reasons.append)
    assert str(info.value) == "security check failed"
    assert reasons == ["replayed or stale message"]
    assert message_id(first) == MessageId("2.16.124.113620.1.22.0.123.4", 2, H("48f3d061"), 3)
    # After the window forgets it, the same message is accepted again.
    unprotect(EX8, KEYS, replay=window, now=120.0)


def test_replay_key_ignores_the_title_encoding() -> None:
    """Relative and absolute forms of one calling title are the same sender (dotted absolute)."""
    window = ReplayWindow()
    request = unprotect(EX8, KEYS, replay=window, now=0.0)
    absolute = dataclasses.replace(request, calling_ap_title=request.calling_ap_title.absolute(),
                                   called_ap_title=request.called_ap_title.absolute())
    again = protect(absolute, KEYS)
    assert again != EX8
    with pytest.raises(SecurityError):
        unprotect(again, KEYS, replay=window, now=1.0)


def test_a_new_iv_or_invocation_id_is_not_a_replay() -> None:
    window = ReplayWindow()
    request = unprotect(EX8, KEYS, replay=window, now=0.0)
    unprotect(protect(dataclasses.replace(request, iv=H("48f3d062")), KEYS),
              KEYS, replay=window, now=0.0)
    unprotect(protect(dataclasses.replace(request, calling_ap_invocation_id=4), KEYS),
              KEYS, replay=window, now=0.0)
    assert len(window) == 3


def test_forgeries_do_not_enter_the_window() -> None:
    window = ReplayWindow()
    with pytest.raises(SecurityError):
        unprotect(_flip(EX8, 8 * (len(EX8) - 1)), KEYS, replay=window, now=0.0)
    assert len(window) == 0
    unprotect(EX8, KEYS, replay=window, now=0.0)  # the genuine message is still accepted


def test_replay_check_needs_now() -> None:
    with pytest.raises(LocalProtocolError):
        unprotect(EX8, KEYS, replay=ReplayWindow())


# --------------------------------------------------------------------------- modes


def _identify(mode: int = 0, **fields: object) -> Apdu:
    return Apdu(Epsem((sv.IdentifyRequest(),), security_mode=mode), calling_ap_invocation_id=7,
                called_ap_title=Uid.parse(".123.8437"), calling_ap_title=Uid.parse(".123.4"),
                **fields)  # type: ignore[arg-type]


def test_mode_0_passes_through() -> None:
    apdu = _identify()
    data = protect(apdu, KEYS, key_id=2, iv=H("5f000001"))
    assert data == acse.encode(apdu)  # no AC, no MAC: the key id and IV are not used
    assert unprotect(data, KEYS) == apdu
    assert unprotect(data, KeyTable()) == apdu
    assert make_unprotect(KEYS)(data, apdu, None) == (apdu, None)


def test_mode_0_refused_when_security_is_required() -> None:
    reasons: list[str] = []
    with pytest.raises(SecurityError):
        unprotect(acse.encode(_identify()), KEYS, minimum_mode=MODE1, debug=reasons.append)
    assert reasons == ["security mode 0 below the required mode 1"]
    with pytest.raises(SecurityError):
        unprotect(X0, KEYS, minimum_mode=MODE2)


def test_x0_from_scratch_in_mode_1() -> None:
    assert protect(_identify(MODE1), KEYS, key_id=2, iv=H("5f000001")) == X0


def test_message_values_win_over_arguments() -> None:
    apdu = _identify(MODE1, key_id=2, iv=H("5f000001"))
    assert protect(apdu, KEYS, key_id=9, iv=H("00000000")) == X0


def test_mode_1_body_stays_in_clear_and_mode_2_hides_it() -> None:
    secret = sv.SecurityRequest(b"VERY-SECRET-PASSWORD")
    base = dataclasses.replace(_identify(), epsem=Epsem((secret,)))
    for mode, visible in ((MODE1, True), (MODE2, False)):
        apdu = dataclasses.replace(base, epsem=dataclasses.replace(base.epsem, security_mode=mode))
        data = protect(apdu, KEYS, key_id=2, iv=H("01020304"))
        assert (b"VERY-SECRET-PASSWORD" in data) is visible
        assert unprotect(data, KEYS).epsem.services == (secret,)


@pytest.mark.parametrize(("apdu", "error"), [
    (_identify(MODE2), LocalProtocolError),  # no key id / IV anywhere
    (_identify(3, key_id=2, iv=H("01020304")), LocalProtocolError),
    (_identify(MODE2, key_id=9, iv=H("01020304")), ConfigurationError),
    (acse.decode(EX8), LocalProtocolError),  # still ciphertext
    (dataclasses.replace(_identify(MODE1), authentication_value=H("a100")), LocalProtocolError),
])
def test_protect_refuses(apdu: Apdu, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        protect(apdu, KEYS)
    assert KEY.hex() not in str(info.value)


def test_empty_plaintext_in_mode_2() -> None:
    apdu = dataclasses.replace(_identify(), epsem=Epsem((), security_mode=MODE2))
    data = protect(apdu, KEYS, key_id=2, iv=H("01020304"))
    assert data.endswith(b"\x88" + data[-4:])
    assert unprotect(data, KEYS).epsem.services == ()


@pytest.mark.parametrize("size", [0, 1, 100, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124,
                                  125, 126, 127, 128, 200, 240, 250, 251, 252, 253, 254, 255,
                                  256, 257, 1000, 70_000])
@pytest.mark.parametrize("mode", [MODE1, MODE2])
def test_round_trip_across_length_boundaries(size: int, mode: int) -> None:
    """BE, 28 and 81 lengths cross 1-, 2- and 3-byte forms at different body sizes."""
    apdu = dataclasses.replace(_identify(), epsem=Epsem(
        (sv.UnknownRequest(0x7F, bytes(range(256)) * (size // 256) + bytes(size % 256)),),
        security_mode=mode, ed_class=b"EDC1"))
    data = protect(apdu, KEYS, key_id=2, iv=H("01020304"))
    back = unprotect(data, KEYS)
    assert back.epsem.mac == data[-4:]
    assert dataclasses.replace(back.epsem, mac=None) == apdu.epsem
    assert protect(back, KEYS) == data


def test_every_sample_message_round_trips_in_both_modes() -> None:
    messages = samples.messages()
    for i in range(0, len(messages), 2):
        request, response = messages[i], messages[i + 1]
        requests = [s for s in request.epsem.services if isinstance(s, sv.Request)]
        for mode in (MODE1, MODE2):
            for apdu, reqs in ((request, None), (response, requests)):
                secured = samples.secured_variant(apdu, mode, 2, (i * 16 + mode).to_bytes(4, "big"))
                data = protect(secured, KEYS)
                back = unprotect(data, KEYS, requests=reqs)
                assert dataclasses.replace(back, epsem=dataclasses.replace(back.epsem, mac=None)
                                           ) == secured
                assert protect(back, KEYS) == data


@st.composite
def _secured_exchanges(draw: st.DrawFn) -> tuple[Apdu, list[sv.Request]]:
    request, response, requests = draw(pst.exchanges())
    apdu = draw(st.sampled_from([request, response]))
    services = tuple(requests) if apdu is request else tuple(
        draw(pst.response_for(r)) for r in requests)
    epsem = Epsem(services, security_mode=draw(st.sampled_from([MODE1, MODE2])),
                  ed_class=draw(st.none() | st.binary(min_size=4, max_size=4)),
                  response_control=draw(st.integers(0, 2)),
                  recovery_session=draw(st.booleans()), proxy_service_used=draw(st.booleans()))
    # Segment-only fields stay out: an indirect-reference in BE defeats Wireshark's rebuild.
    apdu = dataclasses.replace(apdu, epsem=epsem, key_id=draw(st.integers(0, 3)),
                               iv=draw(st.binary(min_size=4, max_size=4)),
                               authentication_value=None)
    return apdu, requests


_ALL_KEYS = KeyTable({i: bytes([i + 1]) * 16 for i in range(4)})


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_secured_exchanges())
def test_property_round_trip(case: tuple[Apdu, list[sv.Request]]) -> None:
    apdu, requests = case
    data = protect(apdu, _ALL_KEYS)
    back = unprotect(data, _ALL_KEYS, requests=requests if apdu.is_response else None)
    assert dataclasses.replace(back, epsem=dataclasses.replace(back.epsem, mac=None)) == apdu
    assert back.epsem.mac == data[-4:]
    assert protect(back, _ALL_KEYS) == data
    step = make_unprotect(_ALL_KEYS)
    assert step(data, acse.decode(data), requests if apdu.is_response else None)[1] is True


def test_a_master_key_id_seals_and_opens_with_each_node_s_derived_key() -> None:
    """The head-end side holds the master (``--master-key``); each meter holds its derived
    key. What the head-end sends to a meter opens with that meter's key only; what a meter
    sends opens at the head-end (derived from its calling title)."""
    from c1222.crypto.keys import derive_key

    master = bytes(range(16))
    headend = KeyTable()
    headend.set_master(2, master)
    meter_title, other_title = Uid.parse("2.16.124.113620.1.22.0.123.100000"), Uid.parse(
        "2.16.124.113620.1.22.0.123.100001")
    headend_title = Uid.parse("2.16.124.113620.1.22.0.123.4")
    meter = KeyTable({2: derive_key(master, meter_title)})
    other = KeyTable({2: derive_key(master, other_title)})
    request = Apdu(called_ap_title=meter_title, calling_ap_title=headend_title,
                   calling_ap_invocation_id=7, key_id=2, iv=H("01020304"),
                   epsem=Epsem(services=(sv.IdentifyRequest(),), security_mode=MODE2))
    sealed = protect(request, headend)
    assert unprotect(sealed, meter).epsem.services == (sv.IdentifyRequest(),)
    with pytest.raises(SecurityError):
        unprotect(sealed, other)
    reply = dataclasses.replace(request, called_ap_title=headend_title,
                                calling_ap_title=meter_title)
    assert unprotect(protect(reply, meter), headend).epsem.services == (sv.IdentifyRequest(),)
    # a node claiming another's title: the head-end derives that title's key, the MAC fails
    forged = dataclasses.replace(reply, calling_ap_title=other_title)
    reasons: list[str] = []
    with pytest.raises(SecurityError):
        unprotect(protect(forged, meter), headend, debug=reasons.append)
    assert reasons == ["MAC mismatch"]
    # no calling title to derive from: unknown key; no called title to seal for: our error
    anonymous = dataclasses.replace(reply, calling_ap_title=None)
    reasons.clear()
    with pytest.raises(SecurityError):
        unprotect(protect(anonymous, meter), headend, debug=reasons.append)
    assert reasons == ["unknown key id"]
    with pytest.raises(ConfigurationError):
        protect(dataclasses.replace(request, called_ap_title=None), headend)
