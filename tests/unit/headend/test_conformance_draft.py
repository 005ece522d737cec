"""Answers the tester cannot read: what it says about them (draft.explain), how it waits for
them (an unreadable answer ends the wait at once, a stale readable one does not), the
invocation-id fallback settling on the first answer, and the sized invocation ids it sends."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from c1222.codec import acse
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid, tlv
from c1222.codec.epsem import Epsem
from c1222.codec.services import (
    ErrorResponse,
    IdentifyRequest,
    IdentifyResponse,
    ReadResponse,
    Response,
    TableData,
)
from c1222.codes import ResponseCode
from c1222.crypto.nonces import RandomNonceSource
from c1222.errors import ConfigurationError, LocalProtocolError
from c1222.headend.conformance import Report, Settings, Verdict, runner
from c1222.headend.conformance.draft import MAX_TEXT, explain
from c1222.transport.endpoint import Endpoint, Link

METER = Uid.parse("2.16.124.113620.1.22.0.123.2008")
TESTER = Uid.parse("2.16.124.113620.1.22.0.123.4")
#: A January-2008-draft device's RQTL to a request whose A8 contents were 02 04 13 e8 14 21.
ANSWER_2006 = tlv(0x60, tlv(0xA2, TESTER.encode()) + bytes.fromhex(
    "a6050d037b8f58" "a4020204" "a8020001" "be0782050f00000000"))
SENT_A8 = bytes.fromhex("020413e81421")


def _answer(request: Apdu, *services: Response, a4: int | None = None) -> bytes:
    return Apdu(Epsem(services), calling_ap_invocation_id=5,
                called_ap_invocation_id=request.calling_ap_invocation_id if a4 is None else a4,
                called_ap_title=request.calling_ap_title, calling_ap_title=METER).encode()


# --------------------------------------------------------------------------- explain


def test_a_march_2006_answer_is_recognised_and_explained() -> None:
    refusal = explain(ANSWER_2006, [IdentifyRequest()], sent_a8=SENT_A8)
    assert refusal.draft and refusal.size == len(ANSWER_2006)
    assert refusal.short == f"March-2006 form, {len(ANSWER_2006)} bytes"
    for words in ("A4 is the bare bytes 0204, not an INTEGER",
                  "A8 is the bare bytes 0001", "calling AP title .123.2008 with tag 0D",
                  "bare EPSEM, without EXTERNAL (28): RQTL (0x0f), max 0",
                  f"called AP title {TESTER}", "(ours: A8 06 020413e81421)"):
        assert words in refusal.text, refusal.text
    # A 1- or 2-byte A8 is read as 2008 form by such a device: no blame on the A8 then.
    assert "ours" not in explain(ANSWER_2006, sent_a8=bytes.fromhex("02020102")).text


def test_the_reference_stacks_own_answer() -> None:
    # What Itron's stack, built and run locally, logged as its answer to our Identify with the
    # A8 contents 02 04 40 d8 28 d2 (its node title empty: 0D 00).
    answer = bytes.fromhex("6023a20c060a607c86f7540116007b04a6020d00a4020204a8024568"
                           "be0782050f00000000")
    refusal = explain(answer, [IdentifyRequest()], sent_a8=bytes.fromhex("020440d828d2"))
    assert refusal.draft and refusal.short == "March-2006 form, 37 bytes"
    assert "calling AP title (empty) with tag 0D" in refusal.text
    assert "A4 is the bare bytes 0204" in refusal.text and "RQTL (0x0f), max 0" in refusal.text


def test_a_readable_form_is_not_called_a_draft() -> None:
    request = Apdu(Epsem((IdentifyRequest(),)), calling_ap_invocation_id=7,
                   calling_ap_title=TESTER)
    refusal = explain(_answer(request, IdentifyResponse()), why="the response's MAC is bad")
    assert not refusal.draft
    assert refusal.text.startswith("answer in a form the tester cannot read")
    assert "A4 7" in refusal.text and "[the response's MAC is bad]" in refusal.text
    assert explain(b"HTTP/1.1 400 Bad Request\r\n").short == "not C12.22, 26 bytes"


def test_hostile_answers_are_explained_never_raise() -> None:
    rng = random.Random(1703)
    request = Apdu(Epsem((IdentifyRequest(),)), calling_ap_invocation_id=7,
                   calling_ap_title=TESTER)
    seeds = [ANSWER_2006, _answer(request, IdentifyResponse())]
    inputs = [seed[:n] for seed in seeds for n in range(len(seed) + 1)]
    inputs += [seed[:i] + bytes([seed[i] ^ (1 << b)]) + seed[i + 1:]
               for seed in seeds for i in range(len(seed)) for b in range(8)]
    inputs += [bytes([0x60]) + rng.randbytes(rng.randrange(0, 80)) for _ in range(2000)]
    inputs += [rng.randbytes(rng.randrange(0, 80)) for _ in range(1000)]
    inputs.append(tlv(0x60, b"".join(tlv(0xA9, b"x" * 100) for _ in range(300))))
    for data in inputs:
        refusal = explain(data, [IdentifyRequest()], sent_a8=SENT_A8)
        assert len(refusal.text) <= MAX_TEXT and refusal.size == len(data)
    assert len(inputs) > 3500


# --------------------------------------------------------------------------- sized ids


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_sized_invocation_ids_have_exactly_that_many_bytes(size: int) -> None:
    source = RandomNonceSource(random.Random(size).randbytes, invocation_id_size=size)
    for _ in range(2000):
        value = source.invocation_id()
        encoded = acse.header_elements(Apdu(Epsem(), calling_ap_invocation_id=value))[0xA8]
        assert len(encoded) == 4 + size and encoded[4] < 0x80 and value > 0
    assert f"invocation_id_size={size}" in repr(source)


def test_unsized_invocation_ids_are_as_before() -> None:
    high, low = RandomNonceSource(lambda n: b"\xff" * n), RandomNonceSource(lambda n: b"\0" * n)
    assert (high.invocation_id(), low.invocation_id()) == (0x7FFF_FFFF, 1)
    with pytest.raises(LocalProtocolError):
        RandomNonceSource(invocation_id_size=5)


def test_settings_refuse_other_sizes() -> None:
    with pytest.raises(ConfigurationError, match="1, 2 or 4"):
        Settings(target=("127.0.0.1", 1153), invocation_id_size=3).validate()


def test_the_json_report_keeps_the_size() -> None:
    report = Report(None, None, str(TESTER), [0], ["tcp"], invocation_id_size=2)
    assert Report.from_json(report.to_json()).invocation_id_size == 2


# --------------------------------------------------------------------------- the runner

Script = Callable[[bytes, Apdu, Link], Awaitable[bytes | None]]


async def _run(script: Script, **settings: object) -> Report:
    """The tester against an in-process target whose answers ``script`` gives."""
    seen: list[bytes] = []

    async def on_request(data: bytes, link: Link) -> tuple[bytes | None, bool]:
        seen.append(data)
        return await script(data, acse.decode(data), link), False

    target = Endpoint(on_request)
    address = await target.listen("127.0.0.1", 0)
    try:
        # A long time-out: had the tester waited for it, the reason would say "no response".
        options: dict = {"target": address, "timeout": 30.0, **settings}
        return await runner.Tester(Settings(**options)).run()
    finally:
        await target.close()


def test_an_unreadable_answer_ends_the_wait_and_is_described() -> None:
    async def script(data: bytes, request: Apdu, link: Link) -> bytes:
        return ANSWER_2006

    report = asyncio.run(_run(script, only=frozenset({"identify"}), invocation_id_size=4))
    [identify] = report.results
    assert identify.verdict is Verdict.FAIL and identify.response.startswith("March-2006")
    assert identify.reason.startswith("the answer was refused: answer in March-2006 form")
    assert identify.exchanges[0].response_hex == ANSWER_2006.hex()
    assert report.error is None and report.exit_status == 1


def test_a_stale_readable_answer_does_not_end_the_wait() -> None:
    async def script(data: bytes, request: Apdu, link: Link) -> bytes:
        # A late answer to some other request first, then the real one.
        await link.send(_answer(request, IdentifyResponse(), a4=request.calling_ap_invocation_id
                                ^ 1))
        return _answer(request, IdentifyResponse())

    report = asyncio.run(_run(script, only=frozenset({"identify"})))
    assert [r.verdict for r in report.results] == [Verdict.PASS]


def test_a_first_readable_answer_settles_the_size() -> None:
    # Identify is answered; a later March-2006 answer is only that case's FAIL, no fallback.
    async def script(data: bytes, request: Apdu, link: Link) -> bytes:
        if isinstance(request.epsem.services[0], IdentifyRequest):
            return _answer(request, IdentifyResponse())
        return ANSWER_2006

    report = asyncio.run(_run(script, only=frozenset({"identify", "full_read"})))
    verdicts = {r.case: r.verdict for r in report.results}
    assert verdicts == {"identify": Verdict.PASS, "full_read": Verdict.FAIL}
    assert report.invocation_id_size == 4 and not report.notes
    assert len(report.results[1].exchanges) == 1


def test_the_fallback_tries_one_byte_and_reports_every_size() -> None:
    sizes: list[int] = []

    async def script(data: bytes, request: Apdu, link: Link) -> bytes:
        sizes.append(request.calling_ap_invocation_id.bit_length() + 7 >> 3)
        if sizes[-1] > 1:
            return ANSWER_2006
        if isinstance(request.epsem.services[0], IdentifyRequest):
            return _answer(request, IdentifyResponse())
        return _answer(request, ReadResponse(table_data=TableData(b"\x00" * 4)))

    report = asyncio.run(_run(script, only=frozenset({"identify", "full_read"})))
    assert sizes == [4, 2, 1, 1]
    assert [(r.case, r.verdict) for r in report.results] == [
        ("identify", Verdict.PASS), ("invocation_id", Verdict.FAIL), ("full_read", Verdict.PASS)]
    assert "it answers 1-byte ids" in report.results[1].reason
    assert report.invocation_id_size == 1 and "1-byte invocation ids" in report.notes[0]


def test_when_every_size_is_refused_the_run_says_so() -> None:
    async def script(data: bytes, request: Apdu, link: Link) -> bytes:
        return ANSWER_2006

    report = asyncio.run(_run(script, only=frozenset({"identify"})))
    assert [(r.case, r.verdict) for r in report.results] == [
        ("identify", Verdict.FAIL), ("invocation_id", Verdict.FAIL)]
    assert len(report.results[0].exchanges) == 3
    assert any("4, 2, 1-byte invocation ids" in n for n in report.notes), report.notes


def test_an_error_code_alone_is_not_a_refusal() -> None:
    # A readable SNS to Identify is the target's answer, not a reason to change the size.
    async def script(data: bytes, request: Apdu, link: Link) -> bytes:
        return _answer(request, ErrorResponse(response_code=ResponseCode.SNS))

    report = asyncio.run(_run(script, only=frozenset({"identify"})))
    assert [(r.case, r.verdict) for r in report.results] == [("identify", Verdict.FAIL)]
    assert report.invocation_id_size == 4


def _size(request: Apdu) -> int:
    return (request.calling_ap_invocation_id.bit_length() + 7) // 8


def test_a_slow_first_answer_is_not_blamed_on_the_size() -> None:
    # Only the very first request goes unanswered: 2 bytes are answered, then 4 again, so the
    # run stays with 4 bytes and nothing FAILs.
    sizes: list[int] = []

    async def script(data: bytes, request: Apdu, link: Link) -> bytes | None:
        sizes.append(_size(request))
        return None if len(sizes) == 1 else _answer(request, IdentifyResponse())

    report = asyncio.run(_run(script, only=frozenset({"identify"}), timeout=1.0))
    assert sizes == [4, 2, 4]
    assert [(r.case, r.verdict) for r in report.results] == [("identify", Verdict.PASS)]
    assert report.invocation_id_size == 4 and not report.notes


def test_silence_where_it_is_a_valid_answer_does_not_change_the_size() -> None:
    # The oversized write may go unanswered; the Identify after it is the first owed answer.
    sizes: list[int] = []

    async def script(data: bytes, request: Apdu, link: Link) -> bytes | None:
        sizes.append(_size(request))
        if not isinstance(request.epsem.services[0], IdentifyRequest):
            return None
        return _answer(request, IdentifyResponse())

    report = asyncio.run(_run(script, only=frozenset({"oversized"}), timeout=1.0,
                              quiet_timeout=0.5))
    assert sizes == [4, 4] and report.results[0].verdict is Verdict.PASS
    assert report.invocation_id_size == 4


def test_a_silent_target_is_unreachable_with_every_size() -> None:
    async def script(data: bytes, request: Apdu, link: Link) -> None:
        return None

    report = asyncio.run(_run(script, only=frozenset({"identify"}), timeout=0.5))
    assert report.error is not None and "no response within 0.5 s" in report.error
    assert report.error.endswith("(sent with 4, 2, 1-byte invocation ids)")
    assert report.exit_status == 3 and not report.results
