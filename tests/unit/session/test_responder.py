"""The responder and requester, without sockets: every path a request can take."""

from __future__ import annotations

import dataclasses

import pytest

from c1222.codec import acse
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import (
    DisconnectRequest,
    ErrorResponse,
    FullReadRequest,
    FullWriteRequest,
    IdentifyRequest,
    IdentifyResponse,
    LogoffRequest,
    LogonRequest,
    LogonResponse,
    OkResponse,
    ReadResponse,
    RegisterRequest,
    Response,
    SecurityRequest,
    TableData,
    TerminateRequest,
    UnknownRequest,
    WaitRequest,
)
from c1222.codes import ResponseCode, ResponseControl
from c1222.crypto.keys import KeyTable
from c1222.errors import SecurityError, UnexpectedMessage
from c1222.meter.services import MeterServices
from c1222.session.requester import Requester
from c1222.session.responder import Responder, ResponderConfig
from c1222.tables.access import pad_password
from c1222.tables.profile import MeterProfile, build_tables
from c1222.tables.types import TimeDate

METER = Uid.parse("2.16.124.113620.1.22.0.123.8437")
HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")
KEY = bytes(range(16))
KEYS = KeyTable({2: KEY})
NOW = 1_700_000_000.0


class Nonces:
    """Distinct invocation ids and IVs, deterministic."""

    def __init__(self, start: int = 1) -> None:
        self.n = start

    def iv(self) -> bytes:
        self.n += 1
        return self.n.to_bytes(4, "big")

    def invocation_id(self) -> int:
        self.n += 1
        return self.n


class Noted:
    """The meter's services, with every notice also written down (a wrapper: the services
    may be compiled, and a compiled object's methods cannot be replaced)."""

    def __init__(self, services: MeterServices) -> None:
        self.services = services
        self.notices: list[str] = []

    def handle(self, request, ctx):
        return self.services.handle(request, ctx)

    def authenticate(self, user_id, password):
        return self.services.authenticate(user_id, password)

    def notice(self, event, ctx, detail=""):
        self.notices.append(event)
        self.services.notice(event, ctx, detail)


def make(minimum_mode: int = 0, **config: object) -> tuple[Responder, MeterServices, list]:
    tables = build_tables(MeterProfile(ap_title=str(METER)), now=TimeDate(2026, 1, 1, 0, 0, 0))
    services = MeterServices(tables, METER, clock=lambda: TimeDate(2026, 1, 1, 0, 0, 0))
    noted = Noted(services)
    responder = Responder(ResponderConfig(ap_title=METER, keys=KEYS, minimum_mode=minimum_mode,
                                          **config),  # type: ignore[arg-type]
                          noted, Nonces(1000))
    return responder, services, noted.notices


def requester(mode: int = 0) -> Requester:
    return Requester(HEADEND, Nonces(), keys=KEYS, security_mode=mode,
                     key_id=2 if mode else None)


def exchange(responder: Responder, req: Requester, services, *, peer=1, now=NOW,
             called=METER, **options) -> list[Response]:
    pending = req.request(services, called, **options)
    reply = responder.receive(pending.data, peer, now)
    assert reply.data is not None
    return [s for s in req.accept(reply.data, pending, now).epsem.services]


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_identify_and_read_in_each_mode(mode: int) -> None:
    responder, _, _ = make()
    got = exchange(responder, requester(mode), [IdentifyRequest(), FullReadRequest(0)])
    assert isinstance(got[0], IdentifyResponse) and got[0].std == 3
    assert isinstance(got[1], ReadResponse) and len(got[1].table_data.data) > 10


def test_response_is_secured_like_the_request_with_a4_and_swapped_titles() -> None:
    responder, _, _ = make()
    req = requester(2)
    pending = req.request([IdentifyRequest()], METER)
    data = responder.receive(pending.data, 1, NOW).data
    apdu = acse.decode(data)
    assert apdu.epsem.security_mode == 2 and apdu.key_id == 2
    assert apdu.called_ap_invocation_id == pending.invocation_id
    assert apdu.called_ap_title == HEADEND and apdu.calling_ap_title == METER
    assert apdu.iv != pending.apdu.iv


def test_unknown_ap_title_gets_uat() -> None:
    responder, _, notices = make()
    got = exchange(responder, requester(), [IdentifyRequest()],
                   called=Uid.parse("2.16.124.113620.1.22.0.123.9999"))
    assert got[0].response_code == ResponseCode.UAT
    assert "unknown_title" in notices


def test_relative_and_absolute_forms_of_our_title_both_match() -> None:
    responder, _, _ = make()
    got = exchange(responder, requester(), [IdentifyRequest()], called=Uid.parse(".123.8437"))
    assert got[0].response_code == ResponseCode.OK


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("called, calling", [
    (".123.8437", ".123.4"), ("2.16.124.113620.1.22.0.123.8437", ".123.4"),
    (".123.8437", "2.16.124.113620.1.22.0.123.4"),
    ("2.16.124.113620.1.22.0.123.8437", "2.16.124.113620.1.22.0.123.4")])
def test_the_answer_uses_the_titles_in_the_form_the_request_used(mode, called, calling) -> None:
    """Issue 17 item 9: MeteringSDK addressed the meter as `.123.8437` and refused an answer
    from the absolute title ("Ap title mismatch, tampering is suspected")."""
    responder, _, _ = make()
    req = Requester(Uid.parse(calling), Nonces(), keys=KEYS, security_mode=mode,
                    key_id=2 if mode else None)
    pending = req.request([IdentifyRequest()], Uid.parse(called))
    answer = acse.decode(responder.receive(pending.data, 1, NOW).data)
    assert str(answer.calling_ap_title) == called  # A6 as the request's A2, byte for byte
    assert str(answer.called_ap_title) == calling
    assert req.accept(acse.encode(answer), pending, NOW).epsem.services[0].response_code == 0


def test_a_new_title_is_answered_and_the_old_one_refused_though_it_was_just_served() -> None:
    """The responder remembers the decoded title that last named it: a title assigned at
    registration (set_ap_title) must make it forget that one."""
    responder, _, _ = make()
    req = requester()
    assert exchange(responder, req, [IdentifyRequest()])[0].response_code == ResponseCode.OK
    assert exchange(responder, req, [IdentifyRequest()])[0].response_code == ResponseCode.OK
    new = Uid.parse("2.16.124.113620.1.22.0.123.5555")
    responder.set_ap_title(new)
    assert exchange(responder, req, [IdentifyRequest()])[0].response_code == ResponseCode.UAT
    assert exchange(responder, req, [IdentifyRequest()],
                    called=new)[0].response_code == ResponseCode.OK


def test_uat_is_answered_from_our_own_title_not_the_one_asked_for() -> None:
    responder, _, _ = make()
    req = requester()
    pending = req.request([IdentifyRequest()], Uid.parse(".123.9999"))
    answer = acse.decode(responder.receive(pending.data, 1, NOW).data)
    assert answer.epsem.services[0].response_code == ResponseCode.UAT
    assert answer.calling_ap_title == METER


def test_read_protected_table_without_security_is_isc_and_with_password_ok() -> None:
    responder, _, _ = make()
    req = requester()
    assert exchange(responder, req, [FullReadRequest(23)])[0].response_code == ResponseCode.ISC
    got = exchange(responder, req, [SecurityRequest(pad_password("PASSWORD"), 2),
                                    FullReadRequest(23)])
    assert [r.response_code for r in got] == [0, 0]
    # sessionless: the next message is anonymous again
    assert exchange(responder, req, [FullReadRequest(23)])[0].response_code == ResponseCode.ISC


def test_wrong_password_is_isc_and_logs_a_tamper_event() -> None:
    responder, services, notices = make()
    before = services.store.get_bytes(74)
    got = exchange(responder, requester(), [SecurityRequest(pad_password("WRONG"), 2)])
    assert got[0].response_code == ResponseCode.ISC
    assert "security_failed" in notices
    assert services.store.get_bytes(74) != before  # event 47 appended


def test_reader_may_not_write() -> None:
    responder, services, _ = make()
    before = services.store.get_bytes(6)
    got = exchange(responder, requester(), [
        SecurityRequest(pad_password("READER"), 1),
        FullWriteRequest(6, TableData(before))])
    assert [r.response_code for r in got] == [0, ResponseCode.ISC]


def test_a_full_read_after_a_write_gives_the_new_bytes() -> None:
    """The meter keeps the response of a table's latest full read; a write makes a new one."""
    responder, services, _ = make()
    req = requester()
    login = SecurityRequest(pad_password("PASSWORD"), 2)
    before = services.store.get_bytes(6)
    for _ in range(2):
        got = exchange(responder, req, [login, FullReadRequest(6)])
        assert got[1].table_data.data == before
    after = bytes([before[0] ^ 1]) + before[1:]
    got = exchange(responder, req, [login, FullWriteRequest(6, TableData(after)),
                                    FullReadRequest(6)])
    assert [r.response_code for r in got] == [0, 0, 0]
    assert got[2].table_data.data == after != before
    assert exchange(responder, req, [login, FullReadRequest(6)])[1].table_data.data == after


def test_bad_checksum_is_err_and_changes_nothing() -> None:
    responder, services, _ = make()
    before = services.store.get_bytes(6)
    bad = TableData(before, checksums=bytes([(TableData(before).computed_checksums()[0] + 1)
                                             & 0xFF]))
    got = exchange(responder, requester(), [SecurityRequest(pad_password("PASSWORD"), 2),
                                            FullWriteRequest(6, bad)])
    assert [r.response_code for r in got] == [0, ResponseCode.ERR]
    assert services.store.get_bytes(6) == before


def test_session_logon_security_wait_logoff_and_sequence_errors() -> None:
    responder, _, _ = make()
    req = requester()
    assert exchange(responder, req, [LogoffRequest()])[0].response_code == ResponseCode.ISSS
    assert exchange(responder, req, [WaitRequest(5)])[0].response_code == ResponseCode.ISSS
    got = exchange(responder, req, [LogonRequest(2, b"operator  ", 60)])
    assert isinstance(got[0], LogonResponse) and got[0].resp_session_idle_timeout == 60
    assert exchange(responder, req, [LogonRequest(2, b"operator  ", 60)])[0].response_code \
        == ResponseCode.ISSS
    assert exchange(responder, req, [FullReadRequest(23)])[0].response_code == ResponseCode.ISC
    assert exchange(responder, req, [SecurityRequest(pad_password("PASSWORD"))])[0] \
        .response_code == 0
    assert exchange(responder, req, [FullReadRequest(23)])[0].response_code == 0
    assert exchange(responder, req, [WaitRequest(30)])[0].response_code == 0
    assert exchange(responder, req, [LogoffRequest()])[0].response_code == 0
    assert exchange(responder, req, [FullReadRequest(23)])[0].response_code == ResponseCode.ISC


def test_session_belongs_to_its_association_and_times_out() -> None:
    responder, _, notices = make()
    req = requester()
    exchange(responder, req, [LogonRequest(2, b"x" * 10, 10),
                              SecurityRequest(pad_password("PASSWORD"))], peer="a")
    assert exchange(responder, req, [FullReadRequest(23)], peer="b")[0].response_code == 3
    assert exchange(responder, req, [FullReadRequest(23)], peer="a", now=NOW + 5)[0] \
        .response_code == 0
    assert exchange(responder, req, [FullReadRequest(23)], peer="a", now=NOW + 20)[0] \
        .response_code == 3
    assert "session_expired" in notices


def test_terminate_ends_the_session() -> None:
    responder, _, _ = make()
    req = requester()
    exchange(responder, req, [LogonRequest(2, b"x" * 10, 60)])
    assert exchange(responder, req, [TerminateRequest()])[0].response_code == 0
    assert exchange(responder, req, [LogoffRequest()])[0].response_code == ResponseCode.ISSS


def test_session_messages_without_ac_reuse_the_logon_key_and_iv() -> None:
    """MeteringSDK's session use (digest 12): later requests omit AC; N takes the key id and
    IV of the Logon message."""
    from c1222.codec.epsem import encode_body
    from c1222.crypto import policy

    responder, _, _ = make()
    req = requester(1)
    logon = req.request([LogonRequest(2, b" " * 10, 60)], METER)
    responder.receive(logon.data, 7, NOW)
    epsem = Epsem((IdentifyRequest(),), security_mode=1, mac=bytes(4))
    follow = Apdu(epsem=epsem, calling_ap_invocation_id=1, called_ap_title=METER,
                  calling_ap_title=HEADEND)
    data = acse.encode(follow)
    n = policy._cleartext_of(data, acse.decode_header(data), logon.apdu.key_id, logon.apdu.iv)
    data = data[:-4] + KEYS.cipher(2).authenticate(n, encode_body(epsem))
    apdu = acse.decode(responder.receive(data, 7, NOW).data)
    assert apdu.epsem.services[0].response_code == 0 and apdu.epsem.security_mode == 1
    # Without the session (another association) the same bytes are refused.
    other = responder.receive(data, 8, NOW + 1)
    assert acse.decode(other.data).epsem.services[0].response_code == ResponseCode.SME


def test_bad_mac_gets_sme_in_cleartext_and_no_service_runs() -> None:
    responder, services, notices = make()
    req = requester(1)
    before = services.store.get_bytes(6)
    pending = req.request([SecurityRequest(pad_password("PASSWORD"), 2),
                           FullWriteRequest(6, TableData(before))], METER)
    tampered = pending.data[:-1] + bytes([pending.data[-1] ^ 1])
    reply = responder.receive(tampered, 1, NOW)
    apdu = acse.decode(reply.data)
    assert apdu.epsem.security_mode == 0
    assert apdu.epsem.services[0].response_code == ResponseCode.SME
    assert "mac_failed" in notices
    with pytest.raises(UnexpectedMessage):
        # a requester never takes a weaker response for a success
        req.accept(acse.encode(dataclasses.replace(apdu, epsem=dataclasses.replace(
            apdu.epsem, services=(OkResponse(),)))), pending, NOW)


def test_unknown_key_id_gets_sme() -> None:
    responder, _, _ = make()
    other = Requester(HEADEND, Nonces(), keys=KeyTable({9: KEY}), security_mode=2, key_id=9)
    pending = other.request([IdentifyRequest()], METER)
    apdu = acse.decode(responder.receive(pending.data, 1, NOW).data)
    assert apdu.epsem.services[0].response_code == ResponseCode.SME


def test_minimum_mode_refuses_cleartext() -> None:
    responder, _, _ = make(minimum_mode=2)
    got = exchange(responder, requester(0), [IdentifyRequest()])
    assert got[0].response_code == ResponseCode.SME
    assert exchange(responder, requester(2), [IdentifyRequest()])[0].response_code == 0


def test_identical_resend_gets_the_same_response_but_a_replay_later_is_refused() -> None:
    responder, _, _ = make()
    req = requester(2)
    pending = req.request([IdentifyRequest()], METER)
    first = responder.receive(pending.data, 1, NOW).data
    assert responder.receive(pending.data, 1, NOW + 1).data == first
    late = responder.receive(pending.data, 1, NOW + 61).data  # past the resend cache, inside the replay window
    assert acse.decode(late).epsem.services[0].response_code == ResponseCode.SME
    with pytest.raises(SecurityError):
        req.accept(first, pending, NOW + 2)  # the requester refuses a replayed response too
        req.accept(first, pending, NOW + 2)


@pytest.mark.parametrize("control,errors,sent", [
    (ResponseControl.ALWAYS, False, True), (ResponseControl.ON_EXCEPTION, False, False),
    (ResponseControl.ON_EXCEPTION, True, True), (ResponseControl.NEVER, True, False)])
def test_response_control(control: int, errors: bool, sent: bool) -> None:
    responder, _, _ = make()
    service = FullReadRequest(23) if errors else IdentifyRequest()
    pending = requester().request([service], METER, response_control=control)
    assert (responder.receive(pending.data, 1, NOW).data is not None) is sent


def test_unsupported_services_get_sns() -> None:
    responder, _, _ = make()
    got = exchange(responder, requester(), [
        UnknownRequest(0x7E, b""),
        RegisterRequest(0x20, 0, b"SIMU", METER, Uid.parse(".1"), b"x", 60)])
    assert [r.response_code for r in got] == [ResponseCode.SNS, ResponseCode.SNS]


def test_disconnect_asks_the_transport_to_close() -> None:
    responder, _, _ = make()
    pending = requester().request([DisconnectRequest()], METER)
    reply = responder.receive(pending.data, 1, NOW)
    assert reply.close and reply.data is not None


def test_oversized_request_gets_rqtl_with_the_limit() -> None:
    responder, _, _ = make(max_request_size=512)
    pending = requester().request([FullWriteRequest(6, TableData(bytes(600)))], METER)
    apdu = acse.decode(responder.receive(pending.data, 1, NOW).data)
    service = apdu.epsem.services[0]
    assert service.response_code == ResponseCode.RQTL
    assert isinstance(service, ErrorResponse) or service.data == (512).to_bytes(4, "big")


def test_garbage_and_responses_get_no_answer() -> None:
    responder, _, _ = make()
    for junk in (b"", b"\x60", b"\x60\x84\xff\xff\xff\xff", bytes(range(256)), b"\x60\x03\xa8\x01"):
        assert responder.receive(junk, 1, NOW).data is None
    pending = requester().request([IdentifyRequest()], METER)
    response = responder.receive(pending.data, 1, NOW).data
    assert responder.receive(response, 1, NOW).data is None


def test_wrong_a4_is_refused_by_the_requester() -> None:
    responder, _, _ = make()
    req = requester()
    first = req.request([IdentifyRequest()], METER)
    second = req.request([IdentifyRequest()], METER)
    data = responder.receive(first.data, 1, NOW).data
    with pytest.raises(UnexpectedMessage):
        req.accept(data, second, NOW)


def _session_message(logon, a8: int) -> bytes:
    """An MSDK-style session request: no AC, N built with the Logon's key id and IV."""
    from c1222.codec.epsem import encode_body
    from c1222.crypto import policy

    epsem = Epsem((IdentifyRequest(),), security_mode=1, mac=bytes(4))
    data = acse.encode(Apdu(epsem=epsem, calling_ap_invocation_id=a8, called_ap_title=METER,
                            calling_ap_title=HEADEND))
    n = policy._cleartext_of(data, acse.decode_header(data), logon.apdu.key_id, logon.apdu.iv)
    return data[:-4] + KEYS.cipher(2).authenticate(n, encode_body(epsem))


def test_session_messages_are_served_once_in_order_even_in_a_long_timed_session() -> None:
    """Session messages share the Logon's IV, so the replay window cannot tell them apart
    (and its time mode would find that IV stale): their A8 must rise instead."""
    from c1222.crypto.replay import ReplayWindow

    responder, _, _ = make()
    responder.replay = ReplayWindow(iv_tolerance=900.0)
    req = Requester(HEADEND, Nonces(), keys=KEYS, security_mode=1, key_id=2)
    req.nonces.iv = lambda: int(NOW).to_bytes(4, "big")  # a time-based IV, as MSDK sends
    logon = req.request([LogonRequest(2, b" " * 10, 600)], METER)
    assert acse.decode(responder.receive(logon.data, 7, NOW).data).epsem.services[0] \
        .response_code == 0
    codes = []
    for a8, at in ((0, 10), (1, 500), (1, 570), (0, 580), (2, 1000)):
        reply = responder.receive(_session_message(logon, a8), 7, NOW + at)
        codes.append(acse.decode(reply.data).epsem.services[0].response_code)
    assert codes == [0, 0, ResponseCode.SME, ResponseCode.SME, 0]
